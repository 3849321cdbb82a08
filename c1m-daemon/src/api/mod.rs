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

use crate::{model::report::Report, monitor::DaemonInfo};

pub mod access;
mod assets;
mod events;
mod metrics;
pub mod overview;

/// The latest published state.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub report: Option<Arc<Report>>,
    pub daemon: Option<DaemonInfo>,
    /// Ramp progress while `ramp` or `selftest` runs.
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
    let for_report = latest.clone();
    let for_events = latest.clone();
    Router::new()
        .route("/", get(assets::index))
        .route("/assets/{*path}", get(assets::asset))
        .route(
            "/api/v1/health",
            get(|| async { Json(json!({"status": "ok"})) }),
        )
        .route(
            "/api/v1/report",
            get(move || {
                let snapshot = for_report.borrow().clone();
                async move { report(snapshot) }
            }),
        )
        .route(
            "/api/v1/events",
            get(move || {
                let latest = for_events.clone();
                async move { events::events(latest) }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let snapshot = latest.borrow().clone();
                async move { metrics_response(&snapshot) }
            }),
        )
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "no such route; the API serves GET /, /api/v1/report, /api/v1/events, \
                 /api/v1/health and /metrics",
            )
        })
}

fn metrics_response(snapshot: &Snapshot) -> Response {
    match metrics::render(snapshot) {
        Ok(text) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "cannot render metrics"),
    }
}

/// The report as the API serves it, or `None` before the first sample.
pub fn report_json(snapshot: &Snapshot) -> Option<String> {
    let report = snapshot.report.as_ref()?;
    serde_json::to_string(&ReportWithDaemon {
        report,
        daemon: &snapshot.daemon,
        selftest: &snapshot.selftest,
    })
    .ok()
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

pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

/// Serve on a thread of its own, so a long sample (walking a million
/// sockets takes about a second) never delays a request.
pub fn serve_in_background(
    listener: tokio::net::TcpListener,
    latest: watch::Receiver<Snapshot>,
    access: access::Access,
) -> anyhow::Result<()> {
    serve_router_in_background(router(latest), listener, access)
}

/// Serve `app` behind the access rules on a thread of its own.
pub fn serve_router_in_background(
    app: Router,
    listener: tokio::net::TcpListener,
    access: access::Access,
) -> anyhow::Result<()> {
    let app = app.layer(axum::middleware::from_fn_with_state(access, access::check));
    let listener = listener.into_std()?;
    std::thread::Builder::new()
        .name("api".into())
        .spawn(move || {
            let runtime = match crate::runtime::current_thread() {
                Ok(runtime) => runtime,
                Err(err) => return log::error!("API server cannot start: {err}"),
            };
            runtime.block_on(async move {
                let served = match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => axum::serve(listener, app).await,
                    Err(err) => Err(err),
                };
                if let Err(err) = served {
                    log::error!("API server stopped: {err}");
                }
            });
        })?;
    Ok(())
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

    async fn get_text(router: Router, uri: &str) -> (StatusCode, String, String) {
        let request = axum::http::Request::get(uri).body(Body::empty()).unwrap();
        let response = router.oneshot(request).await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = to_bytes(response.into_body(), 4 << 20).await.unwrap();
        (
            status,
            content_type,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    #[tokio::test]
    async fn the_dashboard_and_its_assets_are_embedded() {
        let (_publish, latest) = watch::channel(Snapshot::default());
        let (status, content_type, body) = get_text(router(latest.clone()), "/").await;
        assert_eq!(status, StatusCode::OK);
        assert!(content_type.starts_with("text/html"), "{content_type}");
        assert!(body.contains("/assets/common.js"));
        assert!(body.contains("/assets/app.js"));
        for (path, kind) in [
            ("/assets/common.js", "javascript"),
            ("/assets/app.js", "javascript"),
            ("/assets/style.css", "text/css"),
            ("/assets/vendor/uplot/uPlot.iife.min.js", "javascript"),
        ] {
            let (status, content_type, _) = get_text(router(latest.clone()), path).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert!(content_type.contains(kind), "{path}: {content_type}");
        }
        let (status, _, _) = get_text(router(latest), "/assets/nope.js").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn the_browser_test_and_its_packages_are_not_served() {
        let (_publish, latest) = watch::channel(Snapshot::default());
        for path in [
            "/assets/tests/dashboard.test.mjs",
            "/assets/tests/package.json",
            "/assets/tests/node_modules/playwright-core/package.json",
        ] {
            let (status, _, _) = get_text(router(latest.clone()), path).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        }
    }

    #[tokio::test]
    async fn metrics_are_prometheus_text_with_units_and_no_per_connection_labels() {
        let (publish, latest) = watch::channel(Snapshot::default());
        publish.send_replace(Snapshot {
            report: Some(Arc::new(sample_report())),
            daemon: None,
            selftest: None,
        });
        let (status, content_type, body) = get_text(router(latest), "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            content_type.starts_with("application/openmetrics-text"),
            "{content_type}"
        );
        assert!(body.contains("c1m_connections_open 400"), "{body}");
        assert!(
            body.contains("c1m_connections_accepted_total 400"),
            "{body}"
        );
        assert!(body.contains("c1m_cost_kernel_bytes "), "{body}");
        assert!(
            body.contains(r#"c1m_connections{state="ESTABLISHED"} 400"#),
            "{body}"
        );
        assert!(body.contains("# EOF"));
        for line in body.lines().filter(|l| !l.starts_with('#')) {
            assert!(!line.contains("port=") && !line.contains("pid="), "{line}");
        }
    }

    #[tokio::test]
    async fn metrics_carry_forecasts_and_the_namespace_netstat_counters() {
        use crate::model::ceiling::{Ceiling, Forecast};
        let mut report = sample_report();
        report.ceiling = Some(Ceiling {
            binding: None,
            limits: Vec::new(),
            verdict: String::new(),
            window: Default::default(),
            forecasts: vec![Forecast {
                limit: "ephemeral_ports",
                seconds: 200.0,
                rate_per_second: 310.0,
                basis: String::new(),
            }],
        });
        report.netstat = [
            ("TcpExt.ListenOverflows", 7),
            ("TcpExt.ListenDrops", 9),
            ("TcpExt.TCPTimeWaitOverflow", 3),
            ("TcpExt.TCPMemoryPressures", 1),
            ("TcpExt.TCPAbortOnMemory", 2),
            ("TcpExt.TCPReqQFullDrop", 4),
            ("TcpExt.TCPReqQFullDoCookies", 5),
            ("NfConntrack.insert_failed", 6),
            ("NfConntrack.drop", 8),
            ("NfConntrack.early_drop", 10),
        ]
        .into();
        let (publish, latest) = watch::channel(Snapshot::default());
        publish.send_replace(Snapshot {
            report: Some(Arc::new(report)),
            daemon: None,
            selftest: None,
        });
        let (status, _, body) = get_text(router(latest), "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        for line in [
            r#"c1m_seconds_to_exhaustion{limit="ephemeral_ports"} 200.0"#,
            "c1m_netstat_listen_overflows_total 7",
            "c1m_netstat_listen_drops_total 9",
            "c1m_netstat_tcp_timewait_overflow_total 3",
            "c1m_netstat_tcp_memory_pressures_total 1",
            "c1m_netstat_tcp_abort_on_memory_total 2",
            "c1m_netstat_tcp_reqq_full_drop_total 4",
            "c1m_netstat_tcp_reqq_full_do_cookies_total 5",
            "c1m_conntrack_insert_failed_total 6",
            "c1m_conntrack_drop_total 8",
            "c1m_conntrack_early_drop_total 10",
        ] {
            assert!(body.lines().any(|l| l == line), "{line} missing:\n{body}");
        }
    }

    #[tokio::test]
    async fn events_stream_the_report() {
        let (publish, latest) = watch::channel(Snapshot::default());
        publish.send_replace(Snapshot {
            report: Some(Arc::new(sample_report())),
            daemon: None,
            selftest: None,
        });
        let request = axum::http::Request::get("/api/v1/events")
            .body(Body::empty())
            .unwrap();
        let response = router(latest).oneshot(request).await.unwrap();
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let mut body = response.into_body().into_data_stream();
        use futures_util::StreamExt as _;
        let first = tokio::time::timeout(std::time::Duration::from_secs(5), body.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let text = String::from_utf8_lossy(&first);
        assert!(text.starts_with("event: report"), "{text}");
        assert!(text.contains(r#""current":400"#), "{text}");
    }
}
