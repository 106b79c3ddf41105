//! The generated screens: from the model alone, a web UI for every entity, rendered on the
//! server (plain HTML forms, no script): a home page, a list with paging, sorting and filters,
//! a detail view with the rows that refer to it, and create and edit forms that show each
//! refusal beside its field.
//!
//! Every link is relative to the app's root (`<base href>`), so the pages work behind the stage
//! address's `/{tenant}/{app}/` prefix. A project's own screen replaces a generated page:
//! `screens/index.html` the home page at `/`, `screens/{entity}.html` (e.g. `product.html`)
//! the entity's list; its other screens are linked from every page.

mod detail;
mod form;
mod layout;
mod list;
mod rows;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::ApiError;
use super::entities::{self, Write};
use crate::state::AppState;

pub use layout::Ui;

/// The Content-Security-Policy of every generated page: nothing but the app's own stylesheet
/// and forms; no script at all.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                   base-uri 'self'; frame-ancestors 'self'";

/// The generated screens' routes, under `/ui`.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/ui", get(home))
        .route("/ui/_style.css", get(style))
        .route("/ui/{entity}", get(list::page).post(create))
        .route("/ui/{entity}/new", get(new))
        .route("/ui/{entity}/{id}", get(detail::page).post(update))
        .route("/ui/{entity}/{id}/edit", get(edit))
        .route("/ui/{entity}/{id}/delete", post(delete))
}

/// `GET /ui`, and `GET /` when the project has no `screens/index.html`: the app's entities.
pub async fn home(State(state): State<Arc<AppState>>, uri: Uri) -> Response {
    let ui = Ui::new(&state, uri.path()).await;
    let model = &state.bundle.model;
    let body = maud::html! {
        h1 { (model.name) }
        @if !model.description.is_empty() { p.lead { (model.description) } }
        ul.cards {
            @for entity in &model.entities {
                li {
                    a href=(format!("ui/{}", entity.table)) { (entity.name) }
                    p.muted {
                        @for (i, field) in entity.fields.iter().enumerate() {
                            @if i > 0 { ", " }
                            (field.name)
                        }
                    }
                }
            }
        }
    };
    ui.page(StatusCode::OK, &model.name, None, &body)
}

/// `GET /ui/_style.css`.
async fn style() -> Response {
    let mut response = include_str!("ui/style.css").into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=300"),
    );
    response
}

/// `GET /ui/{entity}/new`: the create form, with the defaults and any `?field=value` given.
async fn new(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    uri: Uri,
) -> Response {
    let ui = Ui::new(&state, uri.path()).await;
    let answer = async {
        let (pool, entity) = entities::target(&state, &name)?;
        let mut values = form::Values::defaults(entity);
        for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            if entity.field(&key).is_some() {
                values.set(&key, value.into_owned());
            }
        }
        let form = form::Form::new(entity, None, values, Vec::new());
        form.render(&ui, pool, StatusCode::OK).await
    };
    ui.answer(answer.await)
}

/// `GET /ui/{entity}/{id}/edit`.
async fn edit(
    State(state): State<Arc<AppState>>,
    Path((name, id)): Path<(String, String)>,
    uri: Uri,
) -> Response {
    let ui = Ui::new(&state, uri.path()).await;
    let answer = async {
        let (pool, entity) = entities::target(&state, &name)?;
        let id = entities::row_id(&id)?;
        let row = rows::one(pool, entity, id).await?;
        let values = form::Values::of_row(entity, &row);
        let form = form::Form::new(entity, Some(id), values, Vec::new());
        form.render(&ui, pool, StatusCode::OK).await
    };
    ui.answer(answer.await)
}

/// `POST /ui/{entity}`: creates the row and shows it, or shows the form again with each
/// refusal beside its field (422).
async fn create(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    uri: Uri,
    body: Bytes,
) -> Response {
    let ui = Ui::new(&state, uri.path()).await;
    let answer = save(&ui, &state, &name, None, &body).await;
    ui.answer(answer)
}

/// `POST /ui/{entity}/{id}`: saves the edit form (every field; an empty one is cleared).
async fn update(
    State(state): State<Arc<AppState>>,
    Path((name, id)): Path<(String, String)>,
    uri: Uri,
    body: Bytes,
) -> Response {
    let ui = Ui::new(&state, uri.path()).await;
    let answer = match entities::row_id(&id) {
        Ok(id) => save(&ui, &state, &name, Some(id), &body).await,
        Err(e) => Err(e),
    };
    ui.answer(answer)
}

async fn save(
    ui: &Ui,
    state: &AppState,
    name: &str,
    id: Option<i64>,
    body: &[u8],
) -> Result<Response, ApiError> {
    let (pool, entity) = entities::target(state, name)?;
    let values = form::Values::posted(body);
    let how = if id.is_some() {
        Write::Replace
    } else {
        Write::Create
    };
    let (checked, mut errors) = values.checked(entity, how);
    if errors.is_empty() {
        match rows::write(pool, state, entity, id, checked).await {
            Ok(saved) => return Ok(ui.redirect(&format!("ui/{}/{saved}", entity.table))),
            Err(
                error @ (ApiError::BadRequest { .. }
                | ApiError::Invalid { .. }
                | ApiError::Duplicate { .. }),
            ) => {
                errors.push(error);
            }
            Err(other) => return Err(other),
        }
    }
    let form = form::Form::new(entity, id, values, errors);
    form.render(ui, pool, StatusCode::UNPROCESSABLE_ENTITY)
        .await
}

/// `POST /ui/{entity}/{id}/delete`: deletes the row and shows the list.
async fn delete(
    State(state): State<Arc<AppState>>,
    Path((name, id)): Path<(String, String)>,
    uri: Uri,
) -> Response {
    let ui = Ui::new(&state, uri.path()).await;
    let answer = async {
        let (pool, entity) = entities::target(&state, &name)?;
        let id = entities::row_id(&id)?;
        rows::delete(pool, ui.model(), entity, id).await?;
        Ok(ui.redirect(&format!("ui/{}", entity.table)))
    };
    ui.answer(answer.await)
}
