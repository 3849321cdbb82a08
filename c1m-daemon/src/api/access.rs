//! Who may read the API. It is read-only, but it shows what a production
//! server is doing, so:
//! - on loopback (the default), a request must name the daemon's own
//!   address in its Host header: a web page on another origin that rebinds
//!   its DNS name to 127.0.0.1 cannot read it;
//! - anywhere else, the daemon refuses to start without a token, and every
//!   data route wants it (`Authorization: Bearer <token>`, or
//!   `?token=<token>` for the dashboard in a browser); the health check and
//!   the page's static files hold no data and need none.

use std::net::SocketAddr;

use axum::{
    extract::{Request, State},
    http::{StatusCode, header},
    middleware::Next,
    response::Response,
};

#[derive(Debug, Clone)]
pub struct Access {
    pub bound: SocketAddr,
    pub token: Option<String>,
}

impl Access {
    /// Refuse a non-loopback address without a token.
    pub fn new(bound: SocketAddr, token: Option<String>) -> anyhow::Result<Access> {
        let token = token.filter(|t| !t.is_empty());
        if !bound.ip().is_loopback() && token.is_none() {
            anyhow::bail!(
                "refusing to serve the API on {bound} without a token: pass --token or set \
                 C1M_TOKEN (or keep the default loopback address)"
            );
        }
        Ok(Access { bound, token })
    }

    fn host_allowed(&self, host: &str) -> bool {
        if !self.bound.ip().is_loopback() {
            return true;
        }
        let port = self.bound.port();
        [
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("[::1]:{port}"),
            self.bound.to_string(),
        ]
        .iter()
        .any(|allowed| allowed.eq_ignore_ascii_case(host))
    }

    fn token_ok(&self, request: &Request) -> bool {
        let Some(expected) = &self.token else {
            return true;
        };
        let bearer = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let query = request
            .uri()
            .query()
            .and_then(|q| q.split('&').find_map(|pair| pair.strip_prefix("token=")));
        [bearer, query]
            .into_iter()
            .flatten()
            .any(|given| constant_time_eq(given.as_bytes(), expected.as_bytes()))
    }
}

/// Routes without data: the health check and the dashboard's static files
/// (the page then reads the data routes with the token from its own URL).
fn public(path: &str) -> bool {
    path == "/api/v1/health" || path == "/" || path.starts_with("/assets/")
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub async fn check(State(access): State<Access>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !access.host_allowed(host) {
        return super::error(
            StatusCode::FORBIDDEN,
            "the Host header does not name this daemon's address (DNS rebinding protection); \
             use http://127.0.0.1:<port>/",
        );
    }
    if !public(request.uri().path()) && !access.token_ok(&request) {
        return super::error(
            StatusCode::UNAUTHORIZED,
            "this daemon wants its token: Authorization: Bearer <token>, or ?token=<token>",
        );
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use axum::{Router, body::Body, middleware::from_fn_with_state, routing::get};
    use tower::ServiceExt as _;

    use super::*;

    fn app(access: Access) -> Router {
        Router::new()
            .route("/api/v1/report", get(|| async { "report" }))
            .route("/api/v1/health", get(|| async { "ok" }))
            .layer(from_fn_with_state(access, check))
    }

    async fn status(app: Router, host: &str, uri: &str, auth: Option<&str>) -> StatusCode {
        let mut request = axum::http::Request::get(uri).header("host", host);
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        app.oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
            .status()
    }

    #[tokio::test]
    async fn loopback_answers_only_requests_naming_it() {
        let access = Access::new("127.0.0.1:8080".parse().unwrap(), None).unwrap();
        for host in ["127.0.0.1:8080", "localhost:8080", "[::1]:8080"] {
            assert_eq!(
                status(app(access.clone()), host, "/api/v1/report", None).await,
                StatusCode::OK
            );
        }
        for host in ["evil.example:8080", "127.0.0.1:9999", ""] {
            assert_eq!(
                status(app(access.clone()), host, "/api/v1/report", None).await,
                StatusCode::FORBIDDEN,
                "{host}"
            );
        }
    }

    #[tokio::test]
    async fn elsewhere_a_token_is_required_except_for_health() {
        assert!(Access::new("0.0.0.0:8080".parse().unwrap(), None).is_err());
        let access = Access::new("0.0.0.0:8080".parse().unwrap(), Some("s3cret".into())).unwrap();
        let host = "box.internal:8080";
        assert_eq!(
            status(app(access.clone()), host, "/api/v1/report", None).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(
                app(access.clone()),
                host,
                "/api/v1/report",
                Some("Bearer wrong")
            )
            .await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(
                app(access.clone()),
                host,
                "/api/v1/report",
                Some("Bearer s3cret")
            )
            .await,
            StatusCode::OK
        );
        assert_eq!(
            status(
                app(access.clone()),
                host,
                "/api/v1/report?token=s3cret",
                None
            )
            .await,
            StatusCode::OK
        );
        assert_eq!(
            status(app(access), host, "/api/v1/health", None).await,
            StatusCode::OK
        );
    }
}
