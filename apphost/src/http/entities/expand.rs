//! `?expand=field,…` on reads: each named reference replaced by the row it names (this app's
//! row, or a consumed app's with only the declared fields, read through its API). A row that
//! no longer exists leaves the id as it is; a producer that does not answer fails the read
//! with 503 naming it.

use std::collections::BTreeMap;

use neo_model::FieldType;
use serde_json::Value;
use sqlx::PgPool;

use super::fetch;
use crate::http::ApiError;
use crate::model::{Entity, Field};
use crate::producers::ProducerError;
use crate::sql;
use crate::state::AppState;

/// The reference fields `value` names (comma-separated); 400 naming `expand` for anything else.
pub fn fields<'e>(entity: &'e Entity, value: &str) -> Result<Vec<&'e Field>, ApiError> {
    value
        .split(',')
        .filter(|name| !name.is_empty())
        .map(|name| {
            entity
                .field(name)
                .filter(|f| matches!(f.kind, FieldType::Ref(_)))
                .ok_or_else(|| {
                    ApiError::field(
                        "expand",
                        format!("{name:?} is not a reference field of {}", entity.name),
                    )
                })
        })
        .collect()
}

/// `rows` (JSON texts) with `fields` expanded.
pub async fn rows(
    pool: &PgPool,
    state: &AppState,
    fields: &[&Field],
    rows: Vec<String>,
) -> Result<Vec<String>, ApiError> {
    if fields.is_empty() {
        return Ok(rows);
    }
    let mut parsed: Vec<Value> = rows
        .iter()
        .map(|r| serde_json::from_str(r).unwrap_or(Value::Null))
        .collect();
    for field in fields {
        let mut ids: Vec<i64> = parsed
            .iter()
            .filter_map(|r| r.get(&field.name).and_then(Value::as_i64))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let mut found = BTreeMap::new();
        for id in ids {
            if let Some(row) = target(pool, state, field, id).await? {
                found.insert(id, row);
            }
        }
        for row in &mut parsed {
            let Some(value) = row.get_mut(&field.name) else {
                continue;
            };
            if let Some(target) = value.as_i64().and_then(|id| found.get(&id)) {
                *value = target.clone();
            }
        }
    }
    Ok(parsed.iter().map(Value::to_string).collect())
}

/// The row `field` names with `id`, if it exists.
async fn target(
    pool: &PgPool,
    state: &AppState,
    field: &Field,
    id: i64,
) -> Result<Option<Value>, ApiError> {
    let FieldType::Ref(target) = &field.kind else {
        return Ok(None);
    };
    let model = &state.bundle.model;
    if let Some(consumed) = model.consumed(target) {
        return match state.producers.get(consumed, id).await {
            Ok(row) => Ok(Some(Value::Object(row))),
            Err(ProducerError::Missing { .. }) => Ok(None),
            Err(e @ ProducerError::Down { .. }) => Err(ApiError::Unavailable(format!(
                "cannot expand {}: {e}",
                field.name
            ))),
        };
    }
    let Some(target) = model.entity_named(target) else {
        return Ok(None);
    };
    let rows = fetch(pool, sql::get(target, id))
        .await
        .map_err(ApiError::database)?;
    Ok(rows.first().and_then(|r| serde_json::from_str(r).ok()))
}
