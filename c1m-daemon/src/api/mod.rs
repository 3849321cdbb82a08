//! The HTTP API `run` serves: read-only views of the latest report. The
//! sampling loop publishes each new snapshot through a `watch` channel; the
//! handlers only read the latest one, so a slow client never delays a
//! sample.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    Json, Router,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use serde::Serialize;
use serde_json::json;
use tokio::sync::watch;

use crate::model::report::Report;

/// What c1m itself is doing, shown next to the report so a reader knows
/// how far to trust it.
#[derive(Debug, Clone, Serialize)]
pub struct DaemonInfo {
    pub version: &'static str,
    /// How TCP state changes are observed (e.g. `tp_btf/inet_sock_set_state`).
    pub attach_mode: String,
    /// How child processes are followed, or why not.
    pub children: Result<String, String>,
    /// Socket/fd scans through BPF iterators, or why they are unavailable.
    pub scans: Result<(), String>,
    pub interval_ms: u64,
    pub samples: u64,
    /// The daemon's own resident memory and CPU time.
    pub rss_bytes: u64,
    pub cpu_seconds: f64,
}

/// The latest published state.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub report: Option<Arc<Report>>,
    pub daemon: Option<DaemonInfo>,
    /// Ramp progress while `selftest` runs.
    pub selftest: Option<serde_json::Value>,
}

#[derive(Serialize)]
struct ReportWithDaemon<'a> {
    #[serde(flatten)]
    report: &'a Report,
    daemon: &'a Option<DaemonInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    selftest: &'a Option<serde_json::Value>,
}

pub fn router(latest: watch::Receiver<Snapshot>) -> Router {
    Router::new()
        .route(
            "/api/v1/health",
            get(|| async { Json(json!({"status": "ok"})) }),
        )
        .route(
            "/api/v1/report",
            get(move || {
                let snapshot = latest.borrow().clone();
                async move { report(snapshot) }
            }),
        )
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "no such route; the API serves GET /api/v1/report and /api/v1/health",
            )
        })
}

fn report(snapshot: Snapshot) -> Response {
    match &snapshot.report {
        Some(report) => Json(ReportWithDaemon {
            report,
            daemon: &snapshot.daemon,
            selftest: &snapshot.selftest,
        })
        .into_response(),
        None => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no sample yet; the first report is ready after one interval",
        ),
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

/// Bind before anything is attached, so a busy port fails fast and clean.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.map_err(|err| {
        let hint = if err.kind() == std::io::ErrorKind::AddrInUse {
            "; is another c1m-daemon running? Pass --listen with another port \
             (port 0 picks a free one)"
        } else {
            ""
        };
        anyhow::anyhow!("cannot serve the API on {addr}: {err}{hint}")
    })
}

#[cfg(test)]
mod tests {
    use axum::body::{Body, to_bytes};
    use tower::ServiceExt as _;

    use super::*;
    use crate::model::report::tests::sample_report;

    async fn get(router: Router, uri: &str) -> (StatusCode, String, serde_json::Value) {
        let request = axum::http::Request::get(uri).body(Body::empty()).unwrap();
        let response = router.oneshot(request).await.unwrap();
        let status = response.status();
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, content_type, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn report_is_unavailable_until_the_first_sample_then_served() {
        let (publish, latest) = watch::channel(Snapshot::default());
        let (status, _, body) = get(router(latest.clone()), "/api/v1/report").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body["error"].as_str().unwrap().contains("no sample yet"));

        publish.send_replace(Snapshot {
            report: Some(Arc::new(sample_report())),
            daemon: None,
            selftest: None,
        });
        let (status, content_type, body) = get(router(latest), "/api/v1/report").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type, "application/json");
        assert_eq!(body["connections"]["current"], 400);
        assert!(
            body["cost_per_connection"]["kernel_bytes"]
                .as_u64()
                .unwrap()
                > 0
        );
    }

    #[tokio::test]
    async fn health_and_unknown_routes() {
        let (_publish, latest) = watch::channel(Snapshot::default());
        let (status, _, body) = get(router(latest.clone()), "/api/v1/health").await;
        assert_eq!(
            (status, body["status"].as_str()),
            (StatusCode::OK, Some("ok"))
        );
        let (status, content_type, body) = get(router(latest), "/nope").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(content_type, "application/json");
        assert!(body["error"].as_str().unwrap().contains("/api/v1/report"));
    }
}
