//! The REST API of the app's entities: create, read, list, replace, update, delete, and the rows
//! that refer to a row (one-to-many).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use neo_model::FieldType;
use serde_json::{Map, Value};
use sqlx::PgPool;
use sqlx::postgres::PgDatabaseError;

use super::{ApiError, json_text};
use crate::model::{Entity, Field, RESERVED_COLUMNS};
use crate::sql::{self, Statement};
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
    let row = fetch(pool, sql::insert(entity, values))
        .await
        .map_err(|e| write_error(entity, e))?;
    let row = row
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::NotFound(format!("no {name} created")))?;
    Ok(json_text(StatusCode::CREATED, row))
}

/// `GET /api/{entity}/{id}`.
pub async fn read(
    State(state): State<Arc<AppState>>,
    Path((name, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (pool, entity) = target(&state, &name)?;
    let id = row_id(&id)?;
    let row = fetch(pool, sql::get(entity, id))
        .await
        .map_err(ApiError::database)?;
    one(row, &name, id)
}

/// `GET /api/{entity}?limit=&offset=&<field>=<value>`: `{"items": [...], "limit", "offset"}`.
pub async fn list(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let (pool, entity) = target(&state, &name)?;
    let (page, _) = Page::of(entity, query.as_deref(), None)?;
    page.answer(pool, entity).await
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
    let refs: Vec<&Field> = child
        .fields
        .iter()
        .filter(|f| matches!(&f.kind, FieldType::Ref(target) if *target == parent.name))
        .collect();
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
    page.answer(pool, child).await
}

/// A list's page and filters, from its query string.
struct Page<'e> {
    limit: i64,
    offset: i64,
    filters: Vec<(&'e Field, String)>,
}

impl<'e> Page<'e> {
    /// `limit`, `offset` and `<field>=<value>` filters of `entity` from `query`, and the value
    /// of the `extra` parameter when it is allowed and given.
    fn of(
        entity: &'e Entity,
        query: Option<&str>,
        extra: Option<&str>,
    ) -> Result<(Self, Option<String>), ApiError> {
        let mut page = Page {
            limit: DEFAULT_LIMIT,
            offset: 0,
            filters: Vec::new(),
        };
        let mut extra_value = None;
        for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match key.as_ref() {
                "limit" => page.limit = count(&key, &value)?.min(MAX_LIMIT),
                "offset" => page.offset = count(&key, &value)?,
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

    /// The page of `entity`'s rows: `{"items": [...], "limit", "offset"}`.
    async fn answer(self, pool: &PgPool, entity: &Entity) -> Result<Response, ApiError> {
        let (limit, offset) = (self.limit, self.offset);
        let rows = fetch(pool, sql::list(entity, &self.filters, limit, offset))
            .await
            .map_err(ApiError::database)?;
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
    let st = sql::delete(entity, id);
    let mut query = sqlx::query(&st.sql);
    for p in st.params {
        query = query.bind(p);
    }
    let done = query
        .execute(pool)
        .await
        .map_err(|e| match code(&e).as_deref() {
            Some("23503") => ApiError::Conflict(format!("{name} {id} is referenced by other rows")),
            _ => ApiError::database(e),
        })?;
    if done.rows_affected() == 0 {
        return Err(ApiError::NotFound(format!("no {name} with id {id}")));
    }
    Ok(axum::response::IntoResponse::into_response(
        StatusCode::NO_CONTENT,
    ))
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
    let row = fetch(pool, sql::update(entity, id, values))
        .await
        .map_err(|e| write_error(entity, e))?;
    one(row, name, id)
}

/// The entity served at `/api/{name}` and the pool, or 404 / 503.
fn target<'a>(state: &'a AppState, name: &str) -> Result<(&'a PgPool, &'a Entity), ApiError> {
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

fn row_id(id: &str) -> Result<i64, ApiError> {
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
enum Write {
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
        let value = match (body.get(&field.name), how, &field.rules.default) {
            (Some(v), _, _) => values::from_json(&field.kind, v)
                .map_err(|m| ApiError::field(&field.name, format!("{}: {m}", field.name)))?,
            (None, Write::Create, Some(default)) => Some(
                values::from_text(&field.kind, default)
                    .map_err(|m| ApiError::field(&field.name, format!("{}: {m}", field.name)))?,
            ),
            (None, Write::Create | Write::Replace, _) => None,
            (None, Write::Update, _) => continue,
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
        values.push((field, value));
    }
    Ok(values)
}

async fn fetch(pool: &PgPool, st: Statement) -> Result<Vec<String>, sqlx::Error> {
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
fn write_error(entity: &Entity, e: sqlx::Error) -> ApiError {
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
