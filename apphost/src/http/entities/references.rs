//! References, checked by the host: a write naming a row that does not exist is refused with
//! 422 naming the field, whether the row is this app's (the generated schema has no foreign
//! keys: its migrations only ever add) or a consumed app's (asked through its API: a producer
//! that does not answer is said so, also 422); and a row that others of this app refer to is
//! not deleted (409 naming who refers to it).

use neo_model::FieldType;
use sqlx::PgPool;

use super::fetch;
use crate::http::ApiError;
use crate::model::{Entity, Field, Model};
use crate::producers::ProducerError;
use crate::sql::{self, Order};
use crate::state::AppState;

/// Every value of a reference to an entity of this app names a row of it.
pub async fn check_targets(
    pool: &PgPool,
    state: &AppState,
    values: &[(&Field, Option<String>)],
) -> Result<(), ApiError> {
    let model = &state.bundle.model;
    for (field, value) in values {
        let (FieldType::Ref(target), Some(value)) = (&field.kind, value) else {
            continue;
        };
        let Ok(id) = value.parse::<i64>() else {
            continue;
        };
        if let Some(consumed) = model.consumed(target) {
            state
                .producers
                .get(consumed, id)
                .await
                .map_err(|e| ApiError::Invalid {
                    message: match e {
                        ProducerError::Missing { .. } => format!("{}: {e}", field.name),
                        ProducerError::Down { .. } => {
                            format!("{}: cannot check it: {e}", field.name)
                        }
                    },
                    field: field.name.clone(),
                })?;
            continue;
        }
        let Some(target) = model.entity_named(target) else {
            continue;
        };
        let found = fetch(pool, sql::get(target, id))
            .await
            .map_err(ApiError::database)?;
        if found.is_empty() {
            return Err(ApiError::Invalid {
                message: format!("{}: no {} with id {id}", field.name, target.name),
                field: field.name.clone(),
            });
        }
    }
    Ok(())
}

/// No row of this app refers to row `id` of `entity`.
pub async fn check_unreferenced(
    pool: &PgPool,
    model: &Model,
    entity: &Entity,
    id: i64,
) -> Result<(), ApiError> {
    for child in &model.entities {
        for field in child.refs_to(&entity.name) {
            let filter = [(field, id.to_string())];
            let found = fetch(pool, sql::list(child, &filter, Order::default(), 1, 0))
                .await
                .map_err(ApiError::database)?;
            if !found.is_empty() {
                return Err(ApiError::Conflict(format!(
                    "{} {id} is referenced by other rows ({}.{})",
                    entity.name, child.name, field.name
                )));
            }
        }
    }
    Ok(())
}
