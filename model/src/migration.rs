//! What a deploy's schema migration does to the data already stored on a stage: the entities
//! and fields of the build it deploys compared with those of the build running there.
//!
//! The schema migration an app's bundle carries (the Build Service's `schema_sql`) makes every
//! table and column match the model whatever revision ran before: a new field is a new, empty
//! column; a retyped field's column is converted in place, a value that does not convert is
//! emptied; a dropped field or entity keeps its column or table (its values are no longer
//! served, and come back with a revision that has the field again). [`plan`] says which of those
//! a deploy runs and whether it loses data; a deploy that loses data is refused unless forced,
//! and its release records the changes (`neo_actors`' deploy facts; the gateway's Impact call
//! shows them beforehand).

use std::collections::BTreeMap;

use neo_protocol::{EntityRef, TenantName, pb};

use crate::FieldType;
use crate::impact::{AssessError, Builds};

/// One change the migration makes to the stored data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataChange {
    /// The entity.
    pub entity: String,
    /// The field; `None` for the whole entity.
    pub field: Option<String>,
    /// Whether stored values are lost or altered (a deploy doing it must be forced).
    pub loses_data: bool,
    /// What happens, e.g. `text → decimal: values that do not read as a decimal are emptied`.
    pub message: String,
}

impl std::fmt::Display for DataChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{}.{field}: {}", self.entity, self.message),
            None => write!(f, "{}: {}", self.entity, self.message),
        }
    }
}

impl DataChange {
    /// The line a deploy records among its blockers (when it loses data) and in its release.
    pub fn line(&self) -> String {
        format!("data: {self}")
    }
}

/// The changes from the entities `from` (the running build's) to `to` (the deployed build's),
/// entity by entity in `to`'s order, then what `to` drops.
pub fn plan(from: &[pb::ExposedEntity], to: &[pb::ExposedEntity]) -> Vec<DataChange> {
    let before: BTreeMap<&str, &pb::ExposedEntity> =
        from.iter().map(|e| (e.name.as_str(), e)).collect();
    let mut changes = Vec::new();
    for entity in to {
        let Some(old) = before.get(entity.name.as_str()) else {
            changes.push(change(
                entity,
                None,
                false,
                "added: a new, empty table".into(),
            ));
            continue;
        };
        let old_fields: BTreeMap<&str, &pb::FieldSpec> =
            old.fields.iter().map(|f| (f.name.as_str(), f)).collect();
        for field in &entity.fields {
            match old_fields.get(field.name.as_str()) {
                None => changes.push(change(
                    entity,
                    Some(field),
                    false,
                    format!("added ({}): empty in the rows stored so far", field.r#type),
                )),
                Some(was) if was.r#type != field.r#type => {
                    let (loses_data, what) = retype(&was.r#type, &field.r#type);
                    changes.push(change(
                        entity,
                        Some(field),
                        loses_data,
                        format!("{} → {}: {what}", was.r#type, field.r#type),
                    ));
                }
                Some(_) => {}
            }
        }
        for dropped in old
            .fields
            .iter()
            .filter(|f| !entity.fields.iter().any(|n| n.name == f.name))
        {
            changes.push(change(
                entity,
                Some(dropped),
                false,
                "dropped: its column and values are kept, no longer served".into(),
            ));
        }
    }
    for dropped in from.iter().filter(|e| !to.iter().any(|n| n.name == e.name)) {
        changes.push(change(
            dropped,
            None,
            false,
            "dropped: its table and rows are kept, no longer served".into(),
        ));
    }
    changes
}

fn change(
    entity: &pb::ExposedEntity,
    field: Option<&pb::FieldSpec>,
    loses_data: bool,
    message: String,
) -> DataChange {
    DataChange {
        entity: entity.name.clone(),
        field: field.map(|f| f.name.clone()),
        loses_data,
        message,
    }
}

/// Whether converting a column from the type spelled `from` to `to` loses data, and what
/// happens to the values (as the migration's conversion does it: through the value's text,
/// rounding to integers, emptying what does not convert).
fn retype(from: &str, to: &str) -> (bool, String) {
    use FieldType::{Date, DateTime, Decimal, Integer, Ref, Text};
    let (Ok(from), Ok(to)) = (from.parse::<FieldType>(), to.parse::<FieldType>()) else {
        return (true, "values that do not convert are emptied".into());
    };
    match (&from, &to) {
        (_, Text) => (false, "every value is kept as its text".into()),
        (Integer, Decimal) => (false, "every value converts".into()),
        (Ref(_), Integer) => (false, "the ids are kept as numbers".into()),
        (Integer, Ref(entity)) => (
            false,
            format!("the numbers are kept as {entity} ids (not checked)"),
        ),
        (Date, DateTime) => (false, "every date becomes its midnight (UTC)".into()),
        (Decimal, Integer) => (true, "values are rounded to whole numbers".into()),
        (DateTime, Date) => (true, "the time of day is dropped".into()),
        (Ref(old), Ref(new)) => (
            true,
            format!("the ids it holds, of {old} rows, are read as {new} ids"),
        ),
        (Text, _) => (true, format!("values that do not read as {to} are emptied")),
        _ => (
            true,
            format!("values that do not convert to {to} are emptied"),
        ),
    }
}

/// The build of the release running on a stage (its deployment's current release), if any.
fn running_build(tenant: &TenantName, deployment: &pb::DeploymentState) -> Option<EntityRef> {
    let current = deployment
        .releases
        .iter()
        .find(|r| r.number == deployment.current)?;
    EntityRef::parse(tenant.as_str(), "build", &current.build_id).ok()
}

/// What running a build whose entities are `to` on a stage of `tenant` whose deployment is
/// `deployment` does to the data of the release running there (no changes when nothing runs
/// there, or when the running build did not record its entities: builds from before they did).
///
/// # Errors
/// When the running build cannot be read.
pub async fn assess(
    builds: &dyn Builds,
    tenant: &TenantName,
    deployment: &pb::DeploymentState,
    to: &[pb::ExposedEntity],
) -> Result<Vec<DataChange>, AssessError> {
    let Some(running) = running_build(tenant, deployment) else {
        return Ok(Vec::new());
    };
    let build = builds
        .build(&running)
        .await
        .map_err(AssessError::Producer)?;
    if build.entities.is_empty() {
        return Ok(Vec::new());
    }
    Ok(plan(&build.entities, to))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity(name: &str, fields: &[(&str, &str)]) -> pb::ExposedEntity {
        pb::ExposedEntity {
            name: name.into(),
            fields: fields
                .iter()
                .map(|(n, t)| pb::FieldSpec {
                    name: (*n).into(),
                    r#type: (*t).into(),
                    required: false,
                })
                .collect(),
        }
    }

    fn lines(changes: &[DataChange]) -> Vec<(String, bool)> {
        changes
            .iter()
            .map(|c| (c.to_string(), c.loses_data))
            .collect()
    }

    #[test]
    fn the_same_entities_change_nothing() {
        let product = entity("Product", &[("title", "text"), ("price", "decimal")]);
        let same = std::slice::from_ref(&product);
        assert!(plan(same, same).is_empty());
    }

    #[test]
    fn a_retype_says_what_becomes_of_the_values_and_whether_they_are_lost() {
        let cases = [
            (
                "text",
                "decimal",
                true,
                "values that do not read as decimal are emptied",
            ),
            ("decimal", "text", false, "every value is kept as its text"),
            ("integer", "decimal", false, "every value converts"),
            (
                "decimal",
                "integer",
                true,
                "values are rounded to whole numbers",
            ),
            ("datetime", "date", true, "the time of day is dropped"),
            (
                "date",
                "datetime",
                false,
                "every date becomes its midnight (UTC)",
            ),
            (
                "boolean",
                "integer",
                true,
                "values that do not convert to integer are emptied",
            ),
            (
                "ref:Product",
                "integer",
                false,
                "the ids are kept as numbers",
            ),
            (
                "ref:Product",
                "ref:Category",
                true,
                "the ids it holds, of Product rows, are read as Category ids",
            ),
        ];
        for (from, to, loses, what) in cases {
            let changes = plan(
                &[entity("Product", &[("price", from)])],
                &[entity("Product", &[("price", to)])],
            );
            assert_eq!(
                lines(&changes),
                [(format!("Product.price: {from} → {to}: {what}"), loses)],
                "{from} → {to}"
            );
        }
    }

    #[test]
    fn added_and_dropped_fields_and_entities_keep_every_value() {
        let changes = plan(
            &[
                entity("Product", &[("title", "text"), ("notes", "text")]),
                entity("Coupon", &[("code", "text")]),
            ],
            &[
                entity("Product", &[("title", "text"), ("sku", "text")]),
                entity("Review", &[("stars", "integer")]),
            ],
        );
        assert_eq!(
            lines(&changes),
            [
                (
                    "Product.sku: added (text): empty in the rows stored so far".to_owned(),
                    false
                ),
                (
                    "Product.notes: dropped: its column and values are kept, no longer served"
                        .to_owned(),
                    false
                ),
                ("Review: added: a new, empty table".to_owned(), false),
                (
                    "Coupon: dropped: its table and rows are kept, no longer served".to_owned(),
                    false
                ),
            ]
        );
        assert_eq!(
            changes[0].line(),
            "data: Product.sku: added (text): empty in the rows stored so far"
        );
    }

    #[test]
    fn the_running_build_is_the_current_releases() {
        let tenant = TenantName::new("acme").expect("tenant");
        let release = |number, build_id: &str| pb::Release {
            number,
            build_id: build_id.into(),
            ..Default::default()
        };
        let state = pb::DeploymentState {
            releases: vec![release(1, "catalog_r1"), release(2, "catalog_r2")],
            current: 1,
            ..Default::default()
        };
        assert_eq!(
            running_build(&tenant, &state).map(|b| b.to_string()),
            Some("acme/build/catalog_r1".to_owned())
        );
        assert_eq!(
            running_build(&tenant, &pb::DeploymentState::default()),
            None
        );
    }
}
