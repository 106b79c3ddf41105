//! The project's own screens under `screens/` of the bundle, without path traversal.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::ApiError;
use crate::state::AppState;

/// `GET /`: the project's `screens/index.html`, else the generated home page.
pub async fn index(State(state): State<Arc<AppState>>, uri: Uri) -> Response {
    let root = state.bundle.screens_dir();
    if tokio::fs::try_exists(root.join("index.html"))
        .await
        .unwrap_or(false)
    {
        serve(&root, "index.html").await.into_response()
    } else {
        super::ui::home(State(state), uri).await
    }
}

/// `GET /screens/{*path}`.
pub async fn file(
    State(state): State<Arc<AppState>>,
    UrlPath(path): UrlPath<String>,
) -> Result<Response, ApiError> {
    serve(&state.bundle.screens_dir(), &path).await
}

/// The file `relative` under `root` (a directory: its `index.html`).
pub async fn serve(root: &Path, relative: &str) -> Result<Response, ApiError> {
    let not_found = || ApiError::NotFound(format!("no screen {relative}"));
    let path =
        resolve(root, relative).ok_or_else(|| ApiError::field("path", "invalid screen path"))?;
    let (Ok(root), Ok(mut path)) = (
        tokio::fs::canonicalize(root).await,
        tokio::fs::canonicalize(&path).await,
    ) else {
        return Err(not_found());
    };
    // A symlink may not lead out of the screens.
    if !path.starts_with(&root) {
        return Err(not_found());
    }
    if tokio::fs::metadata(&path).await.is_ok_and(|m| m.is_dir()) {
        path.push("index.html");
    }
    let body = tokio::fs::read(&path).await.map_err(|_| not_found())?;
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(&path)),
    );
    Ok(response)
}

/// Joins `relative` under `root`, refusing empty, `.` and `..` segments, backslashes and NULs.
fn resolve(root: &Path, relative: &str) -> Option<PathBuf> {
    let mut path = root.to_owned();
    for segment in relative.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." || segment.contains(['\\', '\0'])
        {
            return None;
        }
        path.push(segment);
    }
    Some(path)
}

/// The content type for a file, by its extension.
fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" | "map" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "wasm" => "application/wasm",
        "xml" => "application/xml",
        "pdf" => "application/pdf",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_is_refused() {
        let root = Path::new("/b/screens");
        assert_eq!(
            resolve(root, "css/app.css"),
            Some(PathBuf::from("/b/screens/css/app.css"))
        );
        for bad in [
            "../model.json",
            "a/../../x",
            "./a",
            "a//b",
            "",
            "a\\..\\b",
            "/etc/passwd",
        ] {
            assert_eq!(resolve(root, bad), None, "{bad}");
        }
    }

    #[test]
    fn content_types_by_extension() {
        assert_eq!(
            content_type(Path::new("a/index.HTML")),
            "text/html; charset=utf-8"
        );
        assert_eq!(
            content_type(Path::new("app.js")),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type(Path::new("blob")), "application/octet-stream");
    }
}
