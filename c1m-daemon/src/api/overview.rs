//! The routes `run` serves without a target: the host overview page at `/`
//! and its JSON at `/api/v1/overview` (the document `top --json` prints),
//! published by the refresh loop through a `watch` channel as the target
//! routes are.

use std::sync::Arc;

use axum::{
    Json, Router,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::json;
use tokio::sync::watch;

use super::{assets, error};
use crate::model::overview::Overview;

/// The latest overview (`None` before the first walk).
pub type Latest = watch::Receiver<Option<Arc<Overview>>>;

pub fn router(latest: Latest) -> Router {
    Router::new()
        .route("/", get(assets::overview_index))
        .route("/assets/{*path}", get(assets::asset))
        .route(
            "/api/v1/health",
            get(|| async { Json(json!({"status": "ok"})) }),
        )
        .route(
            "/api/v1/overview",
            get(move || {
                let overview = latest.borrow().clone();
                async move { overview_response(overview) }
            }),
        )
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "no such route; without a target the API serves GET /, /api/v1/overview \
                 and /api/v1/health (start `run --pid <PID>` for a process's report)",
            )
        })
}

fn overview_response(overview: Option<Arc<Overview>>) -> Response {
    match overview {
        Some(overview) => Json(&*overview).into_response(),
        None => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no walk yet; the first overview is ready within a second",
        ),
    }
}

#[cfg(test)]
mod tests {
    use axum::body::{Body, to_bytes};
    use tower::ServiceExt as _;

    use super::*;

    async fn get(router: Router, uri: &str) -> (StatusCode, String, Vec<u8>) {
        let request = axum::http::Request::get(uri).body(Body::empty()).unwrap();
        let response = router.oneshot(request).await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, content_type, body.to_vec())
    }

    #[tokio::test]
    async fn overview_is_json_once_walked_and_the_page_is_html() {
        let (publish, latest) = watch::channel(None);
        let (status, content_type, _) = get(router(latest.clone()), "/api/v1/overview").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(content_type, "application/json");

        let mut overview = Overview::default();
        overview.totals.connections = 80;
        publish.send_replace(Some(Arc::new(overview)));
        let (status, content_type, body) = get(router(latest.clone()), "/api/v1/overview").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type, "application/json");
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["totals"]["connections"], 80);
        assert!(body["processes"].is_array());

        let (status, content_type, body) = get(router(latest.clone()), "/").await;
        assert_eq!(status, StatusCode::OK);
        assert!(content_type.starts_with("text/html"), "{content_type}");
        assert!(String::from_utf8_lossy(&body).contains("/assets/overview.js"));
        let (status, content_type, _) = get(router(latest.clone()), "/assets/overview.js").await;
        assert_eq!(status, StatusCode::OK);
        assert!(content_type.contains("javascript"), "{content_type}");

        let (status, _, body) = get(router(latest), "/api/v1/report").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(String::from_utf8_lossy(&body).contains("run --pid"));
    }
}
