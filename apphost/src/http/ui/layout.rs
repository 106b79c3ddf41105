//! The frame of every generated page: `<base href>` at the app's root, the stylesheet, the
//! navigation, the headers; redirects, and failures shown as pages.

use std::sync::Arc;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::CSP;
use crate::http::ApiError;
use crate::model::Model;
use crate::state::AppState;

/// What a generated page needs besides its body: the app, and where its root is.
pub struct Ui {
    state: Arc<AppState>,
    /// `./`, `../`, `../../`: from the page to the app's root.
    base: String,
    /// The project's own screens other than `index.html`, by file name.
    pages: Vec<String>,
}

impl Ui {
    /// The frame for the page at `path` (the request's path, as the host sees it).
    pub async fn new(state: &Arc<AppState>, path: &str) -> Self {
        Self {
            state: Arc::clone(state),
            base: base(path),
            pages: own_pages(state).await,
        }
    }

    /// The app's model.
    pub fn model(&self) -> &Model {
        &self.state.bundle.model
    }

    /// What the handlers share (the producers, among others).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// A whole page: `title`, the navigation (`current` is the entity shown, by table name),
    /// and `body` as the main content.
    pub fn page(
        &self,
        status: StatusCode,
        title: &str,
        current: Option<&str>,
        body: &Markup,
    ) -> Response {
        let model = self.model();
        let doc = html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) " · " (model.name) }
                    base href=(self.base);
                    link rel="stylesheet" href="ui/_style.css";
                }
                body {
                    header {
                        a.app href="./" { (model.name) }
                        nav aria-label="Entities" {
                            ul {
                                @for entity in &model.entities {
                                    li {
                                        a href=(format!("ui/{}", entity.table))
                                          aria-current=[(current == Some(entity.table.as_str())).then_some("page")] {
                                            (entity.name)
                                        }
                                    }
                                }
                                @for consumed in &model.consumes {
                                    li {
                                        a href=(format!("ui/{}", consumed.table))
                                          aria-current=[(current == Some(consumed.table.as_str())).then_some("page")] {
                                            (consumed.entity) " " span.muted { "(" (consumed.app) ")" }
                                        }
                                    }
                                }
                                @for page in &self.pages {
                                    li { a href=(format!("screens/{page}")) { (page.trim_end_matches(".html")) } }
                                }
                            }
                        }
                    }
                    main { (body) }
                }
            }
        };
        let mut response = (status, doc.into_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }

    /// 303 to `to`, a path from the app's root (`ui/product/3`).
    pub fn redirect(&self, to: &str) -> Response {
        let location = format!("{}{to}", self.base);
        match HeaderValue::from_str(&location) {
            Ok(location) => {
                let mut response = StatusCode::SEE_OTHER.into_response();
                response.headers_mut().insert(header::LOCATION, location);
                response
            }
            Err(_) => self.failure(ApiError::BadRequest {
                message: format!("cannot redirect to {to:?}"),
                field: None,
            }),
        }
    }

    /// The page, or the failure as a page.
    pub fn answer(&self, answer: Result<Response, ApiError>) -> Response {
        answer.unwrap_or_else(|error| self.failure(error))
    }

    /// An error as a page with the API's status (and its `Retry-After`).
    pub fn failure(&self, error: ApiError) -> Response {
        let message = error.to_string();
        let api = error.into_response();
        let status = api.status();
        let body = html! {
            h1 { "Not shown" }
            p.alert role="alert" { (message) }
            p { a href="./" { "Back to the start" } }
        };
        let mut response = self.page(status, "Not shown", None, &body);
        if let Some(retry) = api.headers().get(header::RETRY_AFTER) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, retry.clone());
        }
        response
    }
}

/// From the page at `path` to the app's root: one `../` per directory below it.
pub fn base(path: &str) -> String {
    match path.matches('/').count().saturating_sub(1) {
        0 => "./".to_owned(),
        ups => "../".repeat(ups),
    }
}

/// The project's own pages: the `.html` files at the top of `screens/` but `index.html` and
/// those that replace an entity's list.
async fn own_pages(state: &AppState) -> Vec<String> {
    let mut pages = Vec::new();
    let Ok(mut dir) = tokio::fs::read_dir(state.bundle.screens_dir()).await else {
        return pages;
    };
    while let Ok(Some(entry)) = dir.next_entry().await {
        let name = entry.file_name().to_string_lossy().into_owned();
        let replaces = name
            .strip_suffix(".html")
            .is_some_and(|stem| state.bundle.model.entity(stem).is_some());
        if name.ends_with(".html") && name != "index.html" && !replaces {
            pages.push(name);
        }
    }
    pages.sort();
    pages
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_climbs_to_the_apps_root() {
        assert_eq!(base("/"), "./");
        assert_eq!(base("/ui"), "./");
        assert_eq!(base("/ui/product"), "../");
        assert_eq!(base("/ui/product/3/edit"), "../../../");
        assert_eq!(base("/ui/product/"), "../../");
    }
}
