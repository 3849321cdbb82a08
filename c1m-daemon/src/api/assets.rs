//! The dashboard's files (`web/`), embedded in the binary at build time so
//! one binary works anywhere, offline.

use axum::{
    extract::Path,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use rust_embed::RustEmbed;

/// Only the page's own files: not the browser test (`web/tests/`) nor the
/// packages `npm ci` puts beside it (rust-embed ignores `.gitignore`).
#[derive(RustEmbed)]
#[folder = "../web/"]
#[exclude = "tests/*"]
#[exclude = "*/node_modules/*"]
struct Web;

pub async fn index() -> Response {
    file("index.html")
}

/// The host overview's page (`run` without a target).
pub async fn overview_index() -> Response {
    file("overview.html")
}

pub async fn asset(Path(path): Path<String>) -> Response {
    file(&path)
}

fn file(path: &str) -> Response {
    match Web::get(path) {
        Some(content) => {
            let mime = mime_guess::from_path(path).first_or_octet_stream();
            (
                [
                    (header::CONTENT_TYPE, mime.as_ref().to_owned()),
                    (header::CACHE_CONTROL, "no-cache".to_owned()),
                ],
                content.data,
            )
                .into_response()
        }
        None => super::error(StatusCode::NOT_FOUND, "no such dashboard file"),
    }
}
