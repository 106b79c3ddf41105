//! A row's page: its fields (references as links), edit and delete, and for every entity with
//! a reference to it, the rows that refer to it (a category's products) with a link to add one.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use maud::html;
use serde_json::Value;

use super::Ui;
use super::list::{PAGE_ROWS, cell, table};
use super::rows::{self, Labels};
use crate::http::ApiError;
use crate::http::entities::{self, Page};
use crate::sql::Order;
use crate::state::AppState;

/// `GET /ui/{entity}/{id}`.
pub async fn page(
    State(state): State<Arc<AppState>>,
    Path((name, id)): Path<(String, String)>,
    uri: Uri,
) -> Response {
    let ui = Ui::new(&state, uri.path()).await;
    let answer = show(&ui, &state, &name, &id).await;
    ui.answer(answer)
}

async fn show(ui: &Ui, state: &AppState, name: &str, id: &str) -> Result<Response, ApiError> {
    let (pool, entity) = entities::target(state, name)?;
    let id = entities::row_id(id)?;
    let row = rows::one(pool, entity, id).await?;
    let model = ui.model();
    let labels = Labels::of(pool, ui.state(), entity, std::slice::from_ref(&row)).await?;
    let mut related = Vec::new();
    for child in &model.entities {
        for field in child.refs_to(&entity.name) {
            let page = Page {
                limit: PAGE_ROWS + 1,
                offset: 0,
                order: Order::default(),
                filters: vec![(field, id.to_string())],
                expand: Vec::new(),
            };
            let mut found = rows::page(pool, child, &page).await?;
            let more = found.len() as i64 > PAGE_ROWS;
            found.truncate(PAGE_ROWS as usize);
            let labels = Labels::of(pool, ui.state(), child, &found).await?;
            related.push((child, field, found, labels, more));
        }
    }
    let title = format!("{} {}", entity.name, rows::label(entity, &row));
    let body = html! {
        div.heading {
            h1 { (title) }
            a.button href=(format!("ui/{}/{id}/edit", entity.table)) { "Edit" }
        }
        dl.record {
            dt { "id" } dd { (id) }
            @for field in &entity.fields {
                dt { (field.name) }
                dd { (cell(model, field, row.get(&field.name), &labels)) }
            }
            @for stamp in ["created_at", "updated_at"] {
                dt { (stamp) } dd.muted { (row.get(stamp).and_then(Value::as_str).unwrap_or("")) }
            }
        }
        @for (child, field, found, labels, more) in &related {
            section.related aria-label=(format!("{} by {}", child.name, field.name)) {
                div.heading {
                    h2 { (child.name) " " span.muted { "(" (field.name) ")" } }
                    a.button href=(format!("ui/{}/new?{}={id}", child.table, field.name)) { "New " (child.name) }
                }
                @if found.is_empty() {
                    p.empty { "None yet." }
                } @else {
                    (table(model, child, found, labels, None))
                }
                @if *more {
                    p { a href=(format!("ui/{}?{}={id}", child.table, field.name)) { "All of them →" } }
                }
            }
        }
        form.danger method="post" action=(format!("ui/{}/{id}/delete", entity.table)) {
            button type="submit" { "Delete " (entity.name) }
        }
    };
    Ok(ui.page(StatusCode::OK, &title, Some(&entity.table), &body))
}
