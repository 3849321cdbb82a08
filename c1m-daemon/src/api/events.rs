//! `GET /api/v1/events`: the report pushed as a server-sent event
//! (`event: report`) every time the daemon publishes a sample.

use std::convert::Infallible;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use tokio::sync::watch;

use super::{Snapshot, report_json};

pub fn events(
    mut latest: watch::Receiver<Snapshot>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    // The current snapshot first (if any), then each new one.
    latest.mark_changed();
    let stream = stream::unfold(latest, |mut latest| async move {
        loop {
            latest.changed().await.ok()?;
            let snapshot = latest.borrow_and_update().clone();
            if let Some(json) = report_json(&snapshot) {
                return Some((Ok(Event::default().event("report").data(json)), latest));
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
