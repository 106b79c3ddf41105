//! An entity's list: a page of rows with links to each, sortable columns, a filter per field,
//! and the previous and next pages.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use maud::{Markup, html};
use neo_model::FieldType;
use serde_json::Value;

use super::Ui;
use super::rows::{self, Labels, Row};
use crate::http::entities::{self, Page};
use crate::http::{ApiError, screens};
use crate::model::{Consumed, Entity, Field, Model};
use crate::state::AppState;

/// Rows on a page.
pub const PAGE_ROWS: i64 = 25;

/// `GET /ui/{entity}?sort=&offset=&<field>=<value>`, or the project's `screens/{entity}.html`
/// when it has one.
pub async fn page(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    uri: Uri,
) -> Response {
    let ui = Ui::new(&state, uri.path()).await;
    let own = format!("{name}.html");
    if state.bundle.model.entity(&name).is_some()
        && tokio::fs::try_exists(state.bundle.screens_dir().join(&own))
            .await
            .unwrap_or(false)
    {
        return ui.answer(screens::serve(&state.bundle.screens_dir(), &own).await);
    }
    if let Some(consumed) = state.bundle.model.consumes.iter().find(|c| c.table == name) {
        return ui.answer(consumed_list(&ui, consumed, query.as_deref()).await);
    }
    ui.answer(list(&ui, &state, &name, query.as_deref()).await)
}

/// A consumed entity's rows, read-only, from its producer: the declared fields, a page at a
/// time.
async fn consumed_list(
    ui: &Ui,
    consumed: &Consumed,
    query: Option<&str>,
) -> Result<Response, ApiError> {
    let mut offset = 0;
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if key == "offset" {
            offset = value
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| {
                    ApiError::field("offset", "offset must be a non-negative integer")
                })?;
        }
    }
    let asked = format!("limit={}&offset={offset}", PAGE_ROWS + 1);
    let mut rows = ui
        .state()
        .producers
        .list(consumed, &asked)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let more = rows.len() as i64 > PAGE_ROWS;
    rows.truncate(PAGE_ROWS as usize);
    let link = |offset: i64| match offset {
        0 => format!("ui/{}", consumed.table),
        n => format!("ui/{}?offset={n}", consumed.table),
    };
    let body = html! {
        h1 { (consumed.entity) " " span.muted { "from " (consumed.app) } }
        p.muted { "Read-only: " (consumed.app) " owns these rows; this app reads the fields it declares." }
        @if rows.is_empty() {
            p.empty { "No " (consumed.entity) " yet." }
        } @else {
            div.scroll { table {
                thead { tr {
                    th scope="col" { "#" }
                    @for field in &consumed.fields { th scope="col" { (field) } }
                } }
                tbody {
                    @for row in &rows {
                        tr {
                            td { (row.get("id").cloned().unwrap_or_default().to_string()) }
                            @for field in &consumed.fields {
                                td { @match row.get(field) {
                                    None | Some(Value::Null) => span.muted { "—" },
                                    Some(Value::String(s)) => (s),
                                    Some(other) => (other.to_string()),
                                } }
                            }
                        }
                    }
                }
            } }
        }
        nav.pager aria-label="Pages" {
            @if offset > 0 { a rel="prev" href=(link((offset - PAGE_ROWS).max(0))) { "← Previous" } }
            @if more { a rel="next" href=(link(offset + PAGE_ROWS)) { "Next →" } }
        }
    };
    Ok(ui.page(
        StatusCode::OK,
        &consumed.entity,
        Some(&consumed.table),
        &body,
    ))
}

async fn list(
    ui: &Ui,
    state: &AppState,
    name: &str,
    query: Option<&str>,
) -> Result<Response, ApiError> {
    let (pool, entity) = entities::target(state, name)?;
    // An empty filter input means no filter.
    let query: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .filter(|(key, value)| !value.is_empty() && key != "limit")
        .collect();
    let encoded = encode(query.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let (mut page, _) = Page::of(entity, Some(&encoded), None)?;
    page.limit = PAGE_ROWS + 1;
    let mut rows = rows::page(pool, entity, &page).await?;
    let more = rows.len() as i64 > PAGE_ROWS;
    rows.truncate(PAGE_ROWS as usize);
    let labels = Labels::of(pool, ui.state(), entity, &rows).await?;
    let view = View {
        entity,
        query: &query,
    };
    let filtered = query.iter().any(|(k, _)| entity.field(k).is_some());
    let body = html! {
        div.heading {
            h1 { (entity.name) }
            a.button href=(format!("ui/{}/new", entity.table)) { "New " (entity.name) }
        }
        (view.filters())
        @if rows.is_empty() {
            p.empty { @if filtered { "No " (entity.name) " matches these filters." } @else { "No " (entity.name) " yet." } }
        } @else {
            (table(ui.model(), entity, &rows, &labels, Some(&view)))
        }
        nav.pager aria-label="Pages" {
            @if page.offset > 0 {
                a rel="prev" href=(view.link(&[("offset", Some((page.offset - PAGE_ROWS).max(0).to_string()))])) { "← Previous" }
            }
            @if !rows.is_empty() {
                span { "Rows " (page.offset + 1) "–" (page.offset + rows.len() as i64) }
            }
            @if more {
                a rel="next" href=(view.link(&[("offset", Some((page.offset + PAGE_ROWS).to_string()))])) { "Next →" }
            }
        }
    };
    Ok(ui.page(StatusCode::OK, &entity.name, Some(&entity.table), &body))
}

/// What a list shows, to link to its other orders and pages.
pub struct View<'a> {
    entity: &'a Entity,
    /// The query's parameters but `limit`, without empty ones.
    query: &'a [(String, String)],
}

impl View<'_> {
    /// This list with the parameters `changes` set (or removed, `None`); a new order or
    /// filter starts at the first page.
    fn link(&self, changes: &[(&str, Option<String>)]) -> String {
        let kept = self
            .query
            .iter()
            .filter(|(k, _)| !changes.iter().any(|(c, _)| c == k) && k != "offset")
            .map(|(k, v)| (k.as_str(), v.as_str()));
        let changed = changes
            .iter()
            .filter_map(|(k, v)| Some((*k, v.as_deref()?)))
            .filter(|(k, v)| *k != "offset" || *v != "0");
        let query = encode(kept.chain(changed));
        if query.is_empty() {
            format!("ui/{}", self.entity.table)
        } else {
            format!("ui/{}?{query}", self.entity.table)
        }
    }

    fn value(&self, key: &str) -> &str {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map_or("", |(_, v)| v.as_str())
    }

    /// A column's heading: a link that sorts by it, the other way round when it is the order.
    fn heading(&self, name: &str, text: &str) -> Markup {
        let sort = self.value("sort");
        let (next, state) = if sort == name {
            (format!("-{name}"), Some("ascending"))
        } else if sort.strip_prefix('-') == Some(name) {
            (name.to_owned(), Some("descending"))
        } else {
            (name.to_owned(), None)
        };
        let arrow = match state {
            Some("ascending") => " ▲",
            Some(_) => " ▼",
            None => "",
        };
        html! {
            th scope="col" aria-sort=[state] {
                a href=(self.link(&[("sort", Some(next))])) { (text) (arrow) }
            }
        }
    }

    /// The filter form: one input per field, the order kept.
    fn filters(&self) -> Markup {
        let sort = self.value("sort");
        html! {
            details.filters open[self.query.iter().any(|(k, _)| self.entity.field(k).is_some())] {
                summary { "Filter" }
                form method="get" action=(format!("ui/{}", self.entity.table)) role="search" {
                    @for field in &self.entity.fields {
                        @let id = format!("filter-{}", field.name);
                        div.field {
                            label for=(id) { (field.name) }
                            (self.filter_input(field, &id))
                        }
                    }
                    @if !sort.is_empty() { input type="hidden" name="sort" value=(sort); }
                    div.actions {
                        button type="submit" { "Filter" }
                        a href=(format!("ui/{}", self.entity.table)) { "Clear" }
                    }
                }
            }
        }
    }

    fn filter_input(&self, field: &Field, id: &str) -> Markup {
        let value = self.value(&field.name);
        match &field.kind {
            FieldType::Boolean => html! {
                select id=(id) name=(field.name) {
                    option value="" { "any" }
                    option value="true" selected[value == "true"] { "Yes" }
                    option value="false" selected[value == "false"] { "No" }
                }
            },
            FieldType::Text if !field.rules.values.is_empty() => html! {
                select id=(id) name=(field.name) {
                    option value="" { "any" }
                    @for choice in &field.rules.values {
                        option value=(choice) selected[choice == value] { (choice) }
                    }
                }
            },
            kind => html! {
                input id=(id) name=(field.name) value=(value) type=(match kind {
                    FieldType::Integer | FieldType::Decimal | FieldType::Ref(_) => "number",
                    FieldType::Date => "date",
                    _ => "text",
                }) step=[matches!(kind, FieldType::Decimal).then_some("any")];
            },
        }
    }
}

/// A table of rows: the id (a link to the row) and every field; headings sort when `view` is
/// the list's.
pub fn table(
    model: &Model,
    entity: &Entity,
    rows: &[Row],
    labels: &Labels,
    view: Option<&View<'_>>,
) -> Markup {
    html! {
        div.scroll {
            table {
                thead {
                    tr {
                        @match view {
                            Some(view) => {
                                (view.heading("id", "#"))
                                @for field in &entity.fields { (view.heading(&field.name, &field.name)) }
                            }
                            None => {
                                th scope="col" { "#" }
                                @for field in &entity.fields { th scope="col" { (field.name) } }
                            }
                        }
                    }
                }
                tbody {
                    @for row in rows {
                        @let id = row.get("id").and_then(Value::as_i64).unwrap_or_default();
                        tr {
                            td { a href=(format!("ui/{}/{id}", entity.table)) { (id) } }
                            @for field in &entity.fields {
                                td { (cell(model, field, row.get(&field.name), labels)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A value as people read it: a reference as a link with its label, a boolean as Yes/No.
pub fn cell(model: &Model, field: &Field, value: Option<&Value>, labels: &Labels) -> Markup {
    match (value, &field.kind) {
        (None | Some(Value::Null), _) => html! { span.muted { "—" } },
        (Some(Value::Number(n)), FieldType::Ref(target)) => {
            let id = n.as_i64().unwrap_or_default();
            match model.entity_named(target) {
                Some(target) => html! {
                    a href=(format!("ui/{}/{id}", target.table)) {
                        (labels.get(&field.name, id).map_or_else(|| format!("#{id}"), str::to_owned))
                    }
                },
                None => html! {
                    (labels.get(&field.name, id).map_or_else(|| format!("{target} #{id}"), |l| format!("{l} (#{id})")))
                },
            }
        }
        (Some(Value::Bool(b)), _) => html! { (if *b { "Yes" } else { "No" }) },
        (Some(Value::String(s)), _) => html! { (s) },
        (Some(other), _) => html! { (other.to_string()) },
    }
}

/// `key=value&…`, form-encoded.
fn encode<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        query.append_pair(k, v);
    }
    query.finish()
}
