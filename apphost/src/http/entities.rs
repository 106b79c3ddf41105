//! The REST API of the app's entities: create, read, list, replace, update, delete, and the rows
//! that refer to a row (one-to-many).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value};
use sqlx::PgPool;
use sqlx::postgres::PgDatabaseError;

mod expand;
mod references;

use super::{ApiError, json_text};
use crate::model::{Entity, Field, Model, RESERVED_COLUMNS};
use crate::sql::{self, Order, Statement};
use crate::state::AppState;
use crate::values;

/// Rows per page when `limit` is not given.
pub const DEFAULT_LIMIT: i64 = 50;
/// The largest page; a larger `limit` is cut down to it.
pub const MAX_LIMIT: i64 = 500;

/// `POST /api/{entity}`: 201 with the new row.
pub async fn create(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (pool, entity) = target(&state, &name)?;
    let body = object(&body)?;
    let values = checked_values(entity, &body, Write::Create)?;
    let row = store(pool, &state, entity, None, values).await?;
    Ok(json_text(StatusCode::CREATED, row))
}

/// `GET /api/{entity}/{id}?expand=field,…`.
pub async fn read(
    State(state): State<Arc<AppState>>,
    Path((name, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let (pool, entity) = target(&state, &name)?;
    let id = row_id(&id)?;
    let mut fields = Vec::new();
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "expand" => fields.extend(expand::fields(entity, &value)?),
            other => {
                return Err(ApiError::field(
                    other,
                    format!("unknown parameter {other:?} (only expand)"),
                ));
            }
        }
    }
    let row = fetch(pool, sql::get(entity, id))
        .await
        .map_err(ApiError::database)?;
    let row = expand::rows(pool, &state, &fields, row).await?;
    one(row, &name, id)
}

/// `GET /api/{entity}?limit=&offset=&sort=[-]<field>&expand=<field>,…&<field>=<value>`:
/// `{"items": [...], "limit", "offset"}`.
pub async fn list(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let (pool, entity) = target(&state, &name)?;
    let (page, _) = Page::of(entity, query.as_deref(), None)?;
    page.answer(&state, pool, entity).await
}

/// `GET /api/{entity}/{id}/{related}`: the rows of entity `related` whose reference field to
/// `entity` holds `id` (a one-to-many view: `/api/category/3/product`), paged and filtered like
/// a list. With several such fields, `?via=FIELD` names the one. 404 when the row does not
/// exist or no field of `related` refers to `entity`.
pub async fn related(
    State(state): State<Arc<AppState>>,
    Path((name, id, related)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let (pool, parent) = target(&state, &name)?;
    let id = row_id(&id)?;
    let (_, child) = target(&state, &related)?;
    let (mut page, via) = Page::of(child, query.as_deref(), Some("via"))?;
    let refs: Vec<&Field> = child.refs_to(&parent.name).collect();
    let field = match (via.as_deref(), refs.as_slice()) {
        (Some(via), _) => refs
            .iter()
            .find(|f| f.name == via)
            .copied()
            .ok_or_else(|| {
                ApiError::field(
                    "via",
                    format!(
                        "{via:?} is not a field of {} that refers to {}",
                        child.name, parent.name
                    ),
                )
            })?,
        (None, [one]) => *one,
        (None, []) => {
            return Err(ApiError::NotFound(format!(
                "no field of {} refers to {}",
                child.name, parent.name
            )));
        }
        (None, several) => {
            let names: Vec<&str> = several.iter().map(|f| f.name.as_str()).collect();
            return Err(ApiError::field(
                "via",
                format!(
                    "several fields of {} refer to {}: name one with ?via= ({})",
                    child.name,
                    parent.name,
                    names.join(", ")
                ),
            ));
        }
    };
    let exists = fetch(pool, sql::get(parent, id))
        .await
        .map_err(ApiError::database)?;
    if exists.is_empty() {
        return Err(ApiError::NotFound(format!("no {name} with id {id}")));
    }
    page.filters.push((field, id.to_string()));
    page.answer(&state, pool, child).await
}

/// A list's page, order and filters, from its query string.
pub(super) struct Page<'e> {
    /// Rows per page.
    pub limit: i64,
    /// Rows skipped.
    pub offset: i64,
    /// The order.
    pub order: Order<'e>,
    /// `(field, value)` pairs every row matches, the values checked.
    pub filters: Vec<(&'e Field, String)>,
    /// The references to expand ([`expand`]).
    pub expand: Vec<&'e Field>,
}

impl<'e> Page<'e> {
    /// `limit`, `offset`, `sort` (`field` or `-field`), `expand` and `<field>=<value>` filters of
    /// `entity` from `query`, and the value of the `extra` parameter when it is allowed and
    /// given.
    pub fn of(
        entity: &'e Entity,
        query: Option<&str>,
        extra: Option<&str>,
    ) -> Result<(Self, Option<String>), ApiError> {
        let mut page = Page {
            limit: DEFAULT_LIMIT,
            offset: 0,
            order: Order::default(),
            filters: Vec::new(),
            expand: Vec::new(),
        };
        let mut extra_value = None;
        for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match key.as_ref() {
                "limit" => page.limit = count(&key, &value)?.min(MAX_LIMIT),
                "offset" => page.offset = count(&key, &value)?,
                "sort" => page.order = order(entity, &value)?,
                "expand" => page.expand.extend(expand::fields(entity, &value)?),
                other if Some(other) == extra => extra_value = Some(value.into_owned()),
                other => {
                    let field = entity.field(other).ok_or_else(|| {
                        ApiError::field(other, format!("unknown filter field {other:?}"))
                    })?;
                    let value = values::from_text(&field.kind, &value)
                        .map_err(|m| ApiError::field(other, format!("filter {other}: {m}")))?;
                    page.filters.push((field, value));
                }
            }
        }
        Ok((page, extra_value))
    }

    /// The rows of the page, as JSON texts.
    pub async fn rows(&self, pool: &PgPool, entity: &Entity) -> Result<Vec<String>, ApiError> {
        let st = sql::list(entity, &self.filters, self.order, self.limit, self.offset);
        fetch(pool, st).await.map_err(ApiError::database)
    }

    /// The page of `entity`'s rows: `{"items": [...], "limit", "offset"}`.
    async fn answer(
        self,
        state: &AppState,
        pool: &PgPool,
        entity: &Entity,
    ) -> Result<Response, ApiError> {
        let (limit, offset) = (self.limit, self.offset);
        let rows = self.rows(pool, entity).await?;
        let rows = expand::rows(pool, state, &self.expand, rows).await?;
        let body = format!(
            r#"{{"items":[{}],"limit":{limit},"offset":{offset}}}"#,
            rows.join(",")
        );
        Ok(json_text(StatusCode::OK, body))
    }
}

/// `PUT /api/{entity}/{id}`: replaces every field (absent ones become null).
pub async fn replace(
    State(state): State<Arc<AppState>>,
    Path((name, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    write(&state, &name, &id, &body, Write::Replace).await
}

/// `PATCH /api/{entity}/{id}`: changes the fields given.
pub async fn update(
    State(state): State<Arc<AppState>>,
    Path((name, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    write(&state, &name, &id, &body, Write::Update).await
}

/// `DELETE /api/{entity}/{id}`: 204.
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Path((name, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (pool, entity) = target(&state, &name)?;
    let id = row_id(&id)?;
    remove(pool, &state.bundle.model, entity, id).await?;
    Ok(axum::response::IntoResponse::into_response(
        StatusCode::NO_CONTENT,
    ))
}

/// Deletes one row: 404 when there is none, 409 when other rows refer to it.
pub(super) async fn remove(
    pool: &PgPool,
    model: &Model,
    entity: &Entity,
    id: i64,
) -> Result<(), ApiError> {
    references::check_unreferenced(pool, model, entity, id).await?;
    let st = sql::delete(entity, id);
    let mut query = sqlx::query(&st.sql);
    for p in st.params {
        query = query.bind(p);
    }
    let done = query
        .execute(pool)
        .await
        .map_err(|e| match code(&e).as_deref() {
            Some("23503") => {
                ApiError::Conflict(format!("{} {id} is referenced by other rows", entity.table))
            }
            _ => ApiError::database(e),
        })?;
    if done.rows_affected() == 0 {
        return Err(ApiError::NotFound(format!(
            "no {} with id {id}",
            entity.table
        )));
    }
    Ok(())
}

async fn write(
    state: &AppState,
    name: &str,
    id: &str,
    body: &[u8],
    how: Write,
) -> Result<Response, ApiError> {
    let (pool, entity) = target(state, name)?;
    let id = row_id(id)?;
    let body = object(body)?;
    let values = checked_values(entity, &body, how)?;
    let row = store(pool, state, entity, Some(id), values).await?;
    Ok(json_text(StatusCode::OK, row))
}

/// Writes checked values: a new row (`id` none) or row `id`; the row as JSON text. The
/// references are checked first ([`references::check_targets`]); the database's refusals
/// become 400/409 naming the field ([`write_error`]); 404 when row `id` does not exist.
pub(super) async fn store(
    pool: &PgPool,
    state: &AppState,
    entity: &Entity,
    id: Option<i64>,
    values: Vec<(&Field, Option<String>)>,
) -> Result<String, ApiError> {
    references::check_targets(pool, state, &values).await?;
    let st = match id {
        None => sql::insert(entity, values),
        Some(id) => sql::update(entity, id, values),
    };
    let rows = fetch(pool, st).await.map_err(|e| write_error(entity, e))?;
    rows.into_iter().next().ok_or_else(|| {
        ApiError::NotFound(format!(
            "no {} with id {}",
            entity.table,
            id.unwrap_or_default()
        ))
    })
}

/// `sort=field` (smallest first) or `sort=-field` (largest first); `id` sorts by id.
fn order<'e>(entity: &'e Entity, value: &str) -> Result<Order<'e>, ApiError> {
    let (descending, name) = match value.strip_prefix('-') {
        Some(name) => (true, name),
        None => (false, value),
    };
    let field = match name {
        "id" => None,
        name => Some(entity.field(name).ok_or_else(|| {
            ApiError::field("sort", format!("cannot sort by {name:?}: no such field"))
        })?),
    };
    Ok(Order { field, descending })
}

/// The entity served at `/api/{name}` and the pool, or 404 / 503.
pub(super) fn target<'a>(
    state: &'a AppState,
    name: &str,
) -> Result<(&'a PgPool, &'a Entity), ApiError> {
    let entity = state
        .bundle
        .model
        .entity(name)
        .ok_or_else(|| ApiError::NotFound(format!("no entity {name:?}")))?;
    let pool = state
        .ready_pool()
        .ok_or_else(|| ApiError::Unavailable("the database is not ready".into()))?;
    Ok((pool, entity))
}

pub(super) fn row_id(id: &str) -> Result<i64, ApiError> {
    id.parse()
        .map_err(|_| ApiError::field("id", "id must be an integer"))
}

fn count(key: &str, value: &str) -> Result<i64, ApiError> {
    value
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| ApiError::field(key, format!("{key} must be a non-negative integer")))
}

fn object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::BadRequest {
            message: "the body must be a JSON object".into(),
            field: None,
        }),
        Err(e) => Err(ApiError::BadRequest {
            message: format!("the body is not valid JSON: {e}"),
            field: None,
        }),
    }
}

/// What a write does with the fields its body leaves out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Write {
    /// `POST`: a field left out gets its default, else null.
    Create,
    /// `PUT`: a field left out becomes null.
    Replace,
    /// `PATCH`: a field left out keeps its value.
    Update,
}

/// Checks a body against the entity: every key a field (`id`, `created_at` and `updated_at`
/// are ignored), every value of its field's type (400), required fields present and not null
/// (400), every value within its field's rules (422). See [`Write`] for the fields left out.
fn checked_values<'e>(
    entity: &'e Entity,
    body: &Map<String, Value>,
    how: Write,
) -> Result<Vec<(&'e Field, Option<String>)>, ApiError> {
    for key in body.keys() {
        if entity.field(key).is_none() && !RESERVED_COLUMNS.contains(&key.as_str()) {
            return Err(ApiError::field(key, format!("unknown field {key:?}")));
        }
    }
    let mut values = Vec::with_capacity(entity.fields.len());
    for field in &entity.fields {
        let given = body
            .get(&field.name)
            .map(|v| values::from_json(&field.kind, v).map_err(|m| mismatch(field, &m)))
            .transpose()?;
        if let Some(value) = settled(field, given, how)? {
            values.push((field, value));
        }
    }
    Ok(values)
}

/// A value of the wrong type or form for `field` (400).
pub(super) fn mismatch(field: &Field, m: &values::Mismatch) -> ApiError {
    ApiError::field(&field.name, format!("{}: {m}", field.name))
}

/// What a write stores in `field`: the value `given` (`Some(None)` is null, already checked
/// against the field's type), else per [`Write`] its default, null, or nothing (`Ok(None)`: the
/// column is left alone). A required field without a value is refused (400), a value that
/// breaks a rule too (422).
pub(super) fn settled(
    field: &Field,
    given: Option<Option<String>>,
    how: Write,
) -> Result<Option<Option<String>>, ApiError> {
    let value = match (given, how, &field.rules.default) {
        (Some(v), _, _) => v,
        (None, Write::Create, Some(default)) => {
            Some(values::from_text(&field.kind, default).map_err(|m| mismatch(field, &m))?)
        }
        (None, Write::Create | Write::Replace, _) => None,
        (None, Write::Update, _) => return Ok(None),
    };
    if value.is_none() && field.required {
        return Err(ApiError::field(
            &field.name,
            format!("{} is required", field.name),
        ));
    }
    if let Some(text) = &value
        && let Some(why) = field.rules.violation(text, field.pattern.as_ref())
    {
        return Err(ApiError::Invalid {
            message: format!("{} {why}", field.name),
            field: field.name.clone(),
        });
    }
    Ok(Some(value))
}

pub(super) async fn fetch(pool: &PgPool, st: Statement) -> Result<Vec<String>, sqlx::Error> {
    let mut query = sqlx::query_scalar::<_, String>(&st.sql);
    for p in st.params {
        query = query.bind(p);
    }
    query.fetch_all(pool).await
}

fn one(rows: Vec<String>, name: &str, id: i64) -> Result<Response, ApiError> {
    let row = rows
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::NotFound(format!("no {name} with id {id}")))?;
    Ok(json_text(StatusCode::OK, row))
}

fn code(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

/// Maps the database's refusals of a write to 400/409 naming the field where it can.
pub(super) fn write_error(entity: &Entity, e: sqlx::Error) -> ApiError {
    let sqlx::Error::Database(db) = &e else {
        return ApiError::database(e);
    };
    let pg = db.try_downcast_ref::<PgDatabaseError>();
    let column = pg.and_then(PgDatabaseError::column);
    let detail = pg.and_then(PgDatabaseError::detail).unwrap_or("");
    let field = entity
        .fields
        .iter()
        .find(|f| {
            column == Some(f.column.as_str()) || detail.contains(&format!("Key ({})=", f.column))
        })
        .map(|f| f.name.clone());
    let bad = |message: &str| ApiError::BadRequest {
        message: message.to_owned(),
        field: field.clone(),
    };
    match code(&e).as_deref() {
        Some("23503") => bad("the referenced row does not exist"),
        Some("23502") => bad("a value is required"),
        Some("23514") => bad("the value breaks a check"),
        Some("22003" | "22008" | "22007" | "22P02" | "22001") => bad("the value is out of range"),
        Some("23505") => ApiError::Duplicate {
            message: match &field {
                Some(field) => format!("another {} has this {field}", entity.name),
                None => "a row with this value already exists".into(),
            },
            field,
        },
        _ => ApiError::database(e),
    }
}
