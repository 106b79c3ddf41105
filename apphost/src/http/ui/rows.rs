//! Rows for the pages: read, written and deleted with the API's statements, and the labels
//! people see for the rows a page refers to.

use std::collections::HashMap;

use neo_model::FieldType;
use serde_json::{Map, Value};
use sqlx::PgPool;

use crate::http::ApiError;
use crate::http::entities::{self, Page};
use crate::model::{Consumed, Entity, Field, Model};
use crate::producers::ProducerError;
use crate::sql;
use crate::state::AppState;

/// A row as the API answers it: field name → JSON value (`id`, the fields, the timestamps).
pub type Row = Map<String, Value>;

/// The most choices a reference picker offers; a larger table gets an id input instead.
pub const MAX_CHOICES: i64 = 1000;

/// The most choices a picker of a consumed entity offers (the producer's largest page).
pub const CONSUMED_CHOICES: i64 = 499;

/// One row; 404 when there is none.
pub async fn one(pool: &PgPool, entity: &Entity, id: i64) -> Result<Row, ApiError> {
    let rows = entities::fetch(pool, sql::get(entity, id))
        .await
        .map_err(ApiError::database)?;
    rows.first()
        .map(|text| parse(text))
        .ok_or_else(|| ApiError::NotFound(format!("no {} with id {id}", entity.name)))
}

/// The rows of a page.
pub async fn page(pool: &PgPool, entity: &Entity, page: &Page<'_>) -> Result<Vec<Row>, ApiError> {
    Ok(page
        .rows(pool, entity)
        .await?
        .iter()
        .map(|text| parse(text))
        .collect())
}

/// Inserts a row (`id` none) or replaces one, as the API does; the row's id.
pub async fn write(
    pool: &PgPool,
    state: &AppState,
    entity: &Entity,
    id: Option<i64>,
    values: Vec<(&Field, Option<String>)>,
) -> Result<i64, ApiError> {
    let row = entities::store(pool, state, entity, id, values).await?;
    parse(&row)
        .get("id")
        .and_then(Value::as_i64)
        .ok_or_else(|| ApiError::NotFound(format!("no {} written", entity.name)))
}

/// Deletes a row (404 when there is none, 409 when others refer to it).
pub async fn delete(
    pool: &PgPool,
    model: &Model,
    entity: &Entity,
    id: i64,
) -> Result<(), ApiError> {
    entities::remove(pool, model, entity, id).await
}

/// A row's JSON text as a map (empty if the database answered something else).
fn parse(text: &str) -> Row {
    match serde_json::from_str(text) {
        Ok(Value::Object(row)) => row,
        _ => Row::new(),
    }
}

/// A row's label: its first text field, else `#id`.
pub fn label(entity: &Entity, row: &Row) -> String {
    let id = row.get("id").and_then(Value::as_i64).unwrap_or_default();
    entity
        .label_field()
        .and_then(|f| row.get(&f.name))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map_or_else(|| format!("#{id}"), str::to_owned)
}

/// The labels of the rows that the references of a page's rows point to.
#[derive(Default)]
pub struct Labels(HashMap<String, HashMap<i64, String>>);

impl Labels {
    /// Reads, for every reference field of `entity` to an entity of this app, the labels of
    /// the rows `rows` refer to (one query per field).
    /// A consumed entity's rows are asked of its producer, one by one; those it does not
    /// give (it is down, or they are gone) show without a label.
    pub async fn of(
        pool: &PgPool,
        state: &AppState,
        entity: &Entity,
        rows: &[Row],
    ) -> Result<Self, ApiError> {
        let model = &state.bundle.model;
        let mut labels = HashMap::new();
        for field in &entity.fields {
            let FieldType::Ref(target) = &field.kind else {
                continue;
            };
            let mut ids: Vec<i64> = rows
                .iter()
                .filter_map(|r| r.get(&field.name).and_then(Value::as_i64))
                .collect();
            ids.sort_unstable();
            ids.dedup();
            if ids.is_empty() {
                continue;
            }
            let found = if let Some(consumed) = model.consumed(target) {
                let mut found = Vec::with_capacity(ids.len());
                for id in ids {
                    if let Ok(row) = state.producers.get(consumed, id).await {
                        found.push((id, consumed.label(&row)));
                    }
                }
                found
            } else if let Some(target) = model.entity_named(target) {
                id_labels(pool, sql::labels(target, &ids)).await?
            } else {
                continue;
            };
            labels.insert(field.name.clone(), found.into_iter().collect());
        }
        Ok(Self(labels))
    }

    /// The label of row `id` that `field` refers to.
    pub fn get(&self, field: &str, id: i64) -> Option<&str> {
        self.0.get(field)?.get(&id).map(String::as_str)
    }
}

/// A picker's choices for a reference to `target`: `(id, label)` by label, or `None` when the
/// table holds more than [`MAX_CHOICES`] rows.
pub async fn choices(
    pool: &PgPool,
    target: &Entity,
) -> Result<Option<Vec<(i64, String)>>, ApiError> {
    let found = id_labels(pool, sql::choices(target, MAX_CHOICES + 1)).await?;
    Ok((found.len() as i64 <= MAX_CHOICES).then_some(found))
}

/// A picker's choices for a reference to a consumed entity, asked of its producer (its first
/// page of [`CONSUMED_CHOICES`]), by label; `None` when it has more.
pub async fn consumed_choices(
    state: &AppState,
    consumed: &Consumed,
) -> Result<Option<Vec<(i64, String)>>, ProducerError> {
    let query = format!("limit={}", CONSUMED_CHOICES + 1);
    let rows = state.producers.list(consumed, &query).await?;
    if rows.len() as i64 > CONSUMED_CHOICES {
        return Ok(None);
    }
    let mut found: Vec<(i64, String)> = rows
        .iter()
        .filter_map(|row| Some((row.get("id")?.as_i64()?, consumed.label(row))))
        .collect();
    found.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
    Ok(Some(found))
}

async fn id_labels(pool: &PgPool, st: sql::Statement) -> Result<Vec<(i64, String)>, ApiError> {
    let rows = entities::fetch(pool, st)
        .await
        .map_err(ApiError::database)?;
    Ok(rows
        .iter()
        .map(|text| parse(text))
        .filter_map(|row| {
            let id = row.get("id")?.as_i64()?;
            let label = row.get("label")?.as_str()?.to_owned();
            Some((id, label))
        })
        .collect())
}
