//! The web UI: two static pages and a script, embedded in the binary, that read the JSON API
//! and poll it while a saga runs. No front-end build.

use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Redirect};

const LIST_HTML: &str = include_str!("ui/list.html");
const SAGA_HTML: &str = include_str!("ui/saga.html");
const APP_JS: &str = include_str!("ui/app.js");
const STYLE_CSS: &str = include_str!("ui/style.css");

pub(crate) async fn index_redirect() -> Redirect {
    Redirect::to("/ui")
}

pub(crate) async fn list_page() -> impl IntoResponse {
    html(LIST_HTML)
}

/// The saga page; the script reads the id from the path, so any id gets the page and a
/// missing saga shows the API's error.
pub(crate) async fn saga_page(Path(_id): Path<String>) -> impl IntoResponse {
    html(SAGA_HTML)
}

pub(crate) async fn app_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        APP_JS,
    )
}

pub(crate) async fn style_css() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        STYLE_CSS,
    )
}

fn html(page: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        page,
    )
}
