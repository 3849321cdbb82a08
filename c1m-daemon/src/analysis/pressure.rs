//! Which limit the target is hitting right now, from its own signs.
//!
//! A server at a limit turns new connections away while its count holds
//! still: it refuses them (closes them right after accepting, unread), or
//! stops accepting (its listeners' queues fill and drop), or its `accept()`
//! fails. The count it holds then is the limit's value: the limit whose
//! allowance matches it is the one being hit, whatever its kind. When none
//! matches, the server caps itself in a way c1m cannot read (its own code,
//! a setting of a server c1m does not know): that is a limit too, observed.

use super::inputs::CeilingInputs;
use crate::model::ceiling::{Limit, LimitKind};
use crate::model::evidence::WindowEvidence;

/// How close a limit's allowance must be to the count held for the limit
/// to explain it: 5%, or 2 connections for small counts. A server's own
/// cap gets 10%: servers keep headroom below it (nginx starts reclaiming
/// idle connections when fewer than 1/16 of a worker's slots are free, and
/// was seen holding 540 of 596 while it closed 100 a second).
fn explains(limit: &Limit, held: u64) -> bool {
    let Some(allowed) = limit.max_connections else {
        return false;
    };
    let tolerance = match limit.kind {
        LimitKind::Application => held.max(allowed) / 10,
        _ => held / 20,
    };
    allowed.abs_diff(held) <= tolerance.max(2)
}

/// Mark the limits the target is hitting now, with the evidence; add an
/// observed application limit when none explains what it does.
pub fn attribute(i: &CeilingInputs, limits: &mut Vec<Limit>) {
    let e = &i.evidence;
    // A failed accept names its limit by its errno.
    for (errno, name) in [
        ("EMFILE", "nofile"),
        ("ENFILE", "file_max"),
        ("ENOMEM", "memory"),
    ] {
        let failures = e.accept_error(errno);
        if failures == 0 {
            continue;
        }
        if let Some(l) = limits.iter_mut().find(|l| l.name == name) {
            l.exceeded = true;
            l.evidence.push(format!(
                "accept() failed with {errno} {failures} times in the last {:.0} s",
                e.seconds
            ));
        }
    }
    // Accepted connections (those in the accept queues are not yet).
    // The least it held lately: a connection it accepted and is about to
    // refuse counts for a moment too.
    let held = e.connections_min;
    let turning_away = e.turning_away();
    let refusing = e.refused > 0;
    let stopped_accepting = turning_away && !refusing;
    // A server may read a client's first bytes before refusing it (a
    // PostgreSQL startup packet): that counts against its own cap only, as
    // plain HTTP servers close after reading too.
    // nginx at worker_connections closes its idle connections (unread, of
    // any age) to make room: like an idle timeout, a sign for a server's
    // own cap only.
    let closing_early = e.closed_after_accept > 0 || e.closed_unread > 0;
    if held == 0 || !(turning_away || closing_early) {
        return;
    }
    let signs = signs(e);
    let matching = limits
        .iter_mut()
        .filter(|l| {
            let pressed = turning_away || (closing_early && l.kind == LimitKind::Application);
            pressed && explains(l, held)
        })
        // A server's own cap explains a plateau better than a kernel or
        // process limit that allows about as many (memcached sets its fd
        // limit from its cap), then the closest.
        .min_by_key(|l| (l.kind, l.max_connections.unwrap_or(0).abs_diff(held)));
    if let Some(l) = matching {
        l.exceeded = true;
        l.evidence.push(format!(
            "holding {held} connections (it allows {}) while turning new ones away",
            l.max_connections.unwrap_or(0)
        ));
        l.evidence.extend(signs);
        return;
    }
    // Refusals, or a queue that fills while the count holds still and no
    // accept() fails: the server's own doing.
    let own_doing = refusing || (stopped_accepting && e.accept_errors.is_empty());
    if own_doing && e.plateau() {
        limits.push(observed(held, signs, e));
    }
}

/// What the target did, in words.
fn signs(e: &WindowEvidence) -> Vec<String> {
    let seconds = e.seconds;
    let mut signs = Vec::new();
    if e.refused > 0 {
        signs.push(format!(
            "it refused {} new connections in the last {seconds:.0} s (closed them within a second \
             of accepting, without reading)",
            e.refused
        ));
    }
    let idle_closed = e.closed_unread.saturating_sub(e.refused);
    if idle_closed > 0 {
        signs.push(format!(
            "it closed {idle_closed} connections it had not read from in the last {seconds:.0} s"
        ));
    }
    let read_then_closed = e.closed_after_accept.saturating_sub(e.refused);
    if read_then_closed > 0 {
        signs.push(format!(
            "it closed {read_then_closed} new connections within a second of accepting them in the \
             last {seconds:.0} s"
        ));
    }
    for l in &e.listeners {
        if l.dropped > 0 {
            signs.push(format!(
                "port {}'s accept queue dropped {} connections in the last {seconds:.0} s",
                l.port, l.dropped
            ));
        } else if l.queue_max > 0 && l.queued >= l.queue_max {
            signs.push(format!(
                "port {}'s accept queue is full ({} of {})",
                l.port, l.queued, l.queue_max
            ));
        } else if l.stuck > 0 {
            signs.push(format!(
                "{} connections wait in port {}'s accept queue and are not being accepted",
                l.queued, l.port
            ));
        }
    }
    signs
}

/// The cap of a server c1m has no reader for, from what it did.
fn observed(held: u64, signs: Vec<String>, e: &WindowEvidence) -> Limit {
    let how = if e.refused > 0 {
        "refuses new connections"
    } else {
        "stops accepting new connections"
    };
    Limit {
        kind: LimitKind::Application,
        name: "application.observed",
        source: "observed: the target's own sockets (no configuration c1m can read sets it)".into(),
        value: Some(held as f64),
        used: Some(held as f64),
        per_connection: Some(1.0),
        max_connections: Some(held),
        exceeded: true,
        evidence: signs,
        explanation: format!(
            "the server {how} at {held} connections by itself, below every limit c1m reads"
        ),
        remedy: "find the server's own connection cap (a max-connections setting, a worker or \
                 thread pool, a semaphore or limiter in its accept loop) and raise it"
            .into(),
    }
}
