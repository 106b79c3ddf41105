//! The SQL for the entity API (pure): statements with bind parameters only.
//!
//! Identifiers come from the checked model and are quoted; every value is a text parameter cast
//! to its column's type. Tables are unqualified: the connection's `search_path` is the app's
//! schema. Each row comes back as one JSON text (`row_to_json`), decimals cast to text first so
//! they keep their precision.

use std::fmt::Write as _;

use neo_model::FieldType;

use crate::model::{Entity, Field, quote};

/// A statement and its parameters, in order (`None` binds `NULL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The SQL text with `$1`, `$2`, … placeholders.
    pub sql: String,
    /// The parameters.
    pub params: Vec<Option<String>>,
}

impl Statement {
    fn new() -> Self {
        Self {
            sql: String::new(),
            params: Vec::new(),
        }
    }

    /// Adds a parameter and returns its placeholder, cast to `cast`.
    fn bind(&mut self, value: Option<String>, cast: &str) -> String {
        self.params.push(value);
        format!("${}::{cast}", self.params.len())
    }
}

/// The output columns of a row: `id`, the fields, `created_at`, `updated_at`.
fn output_columns(entity: &Entity) -> String {
    let mut cols = String::from("id");
    for f in &entity.fields {
        let c = quote(&f.column);
        let name = quote(&f.name);
        match f.kind {
            FieldType::Decimal => {
                let _ = write!(cols, ", {c}::text AS {name}");
            }
            _ if f.name == f.column => {
                let _ = write!(cols, ", {c}");
            }
            _ => {
                let _ = write!(cols, ", {c} AS {name}");
            }
        }
    }
    cols.push_str(", created_at, updated_at");
    cols
}

/// `SELECT` one row by id.
pub fn get(entity: &Entity, id: i64) -> Statement {
    let mut st = Statement::new();
    let id = st.bind(Some(id.to_string()), "bigint");
    st.sql = format!(
        "SELECT row_to_json(r)::text FROM (SELECT {} FROM {} WHERE id = {id}) r",
        output_columns(entity),
        quote(&entity.table)
    );
    st
}

/// The order of a list: by a field (rows without a value last), then by id; by id alone when
/// no field is given.
#[derive(Debug, Clone, Copy, Default)]
pub struct Order<'e> {
    /// The field to sort by.
    pub field: Option<&'e Field>,
    /// Largest first.
    pub descending: bool,
}

/// `SELECT` a page of rows matching every `(field, value)` filter, in `order`.
///
/// The filters' values must already be checked against their fields' types.
pub fn list(
    entity: &Entity,
    filters: &[(&Field, String)],
    order: Order<'_>,
    limit: i64,
    offset: i64,
) -> Statement {
    let mut st = Statement::new();
    let mut conditions = Vec::with_capacity(filters.len());
    for (field, value) in filters {
        let p = st.bind(Some(value.clone()), field.kind.postgres_type());
        conditions.push(format!("{} = {p}", quote(&field.column)));
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    let limit = st.bind(Some(limit.to_string()), "bigint");
    let offset = st.bind(Some(offset.to_string()), "bigint");
    let direction = if order.descending { "DESC" } else { "ASC" };
    let order_by = match order.field {
        // Qualified: an output column of the same name (a decimal as text) must not sort.
        Some(field) => format!(
            "{}.{} {direction} NULLS LAST, id {direction}",
            quote(&entity.table),
            quote(&field.column)
        ),
        None => format!("id {direction}"),
    };
    st.sql = format!(
        "SELECT row_to_json(r)::text FROM (SELECT {} FROM {}{filter} ORDER BY {order_by} LIMIT {limit} OFFSET {offset}) r",
        output_columns(entity),
        quote(&entity.table)
    );
    st
}

/// The label of each of the rows `ids` (its first text field, else its id) as
/// `{"id": 1, "label": "…"}`.
pub fn labels(entity: &Entity, ids: &[i64]) -> Statement {
    let mut st = Statement::new();
    let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    let ids = st.bind(Some(format!("{{{list}}}")), "bigint[]");
    st.sql = format!(
        "SELECT json_build_object('id', id, 'label', {})::text FROM {} WHERE id = ANY({ids})",
        label_column(entity),
        quote(&entity.table)
    );
    st
}

/// The first `limit` rows of an entity as `{"id": 1, "label": "…"}`, by label: a picker's
/// choices.
pub fn choices(entity: &Entity, limit: i64) -> Statement {
    let mut st = Statement::new();
    let limit = st.bind(Some(limit.to_string()), "bigint");
    let label = label_column(entity);
    st.sql = format!(
        "SELECT json_build_object('id', id, 'label', {label})::text FROM {} ORDER BY {label}, id LIMIT {limit}",
        quote(&entity.table)
    );
    st
}

/// The SQL of a row's label: its first text field (its id when empty), else its id.
fn label_column(entity: &Entity) -> String {
    match entity.label_field() {
        Some(field) => format!("coalesce(nullif({}, ''), id::text)", quote(&field.column)),
        None => "id::text".to_owned(),
    }
}

/// `INSERT` a row with the given `(field, value)` pairs; returns it.
pub fn insert(entity: &Entity, values: Vec<(&Field, Option<String>)>) -> Statement {
    let mut st = Statement::new();
    let mut columns = Vec::with_capacity(values.len() + 2);
    let mut placeholders = Vec::with_capacity(values.len() + 2);
    for (field, value) in values {
        columns.push(quote(&field.column));
        placeholders.push(st.bind(value, field.kind.postgres_type()));
    }
    columns.extend(["created_at".to_owned(), "updated_at".to_owned()]);
    placeholders.extend(["now()".to_owned(), "now()".to_owned()]);
    st.sql = format!(
        "WITH r AS (INSERT INTO {} ({}) VALUES ({}) RETURNING {}) SELECT row_to_json(r)::text FROM r",
        quote(&entity.table),
        columns.join(", "),
        placeholders.join(", "),
        output_columns(entity)
    );
    st
}

/// `UPDATE` the given `(field, value)` pairs of one row (and its `updated_at`); returns it.
pub fn update(entity: &Entity, id: i64, values: Vec<(&Field, Option<String>)>) -> Statement {
    let mut st = Statement::new();
    let mut sets = Vec::with_capacity(values.len() + 1);
    for (field, value) in values {
        let p = st.bind(value, field.kind.postgres_type());
        sets.push(format!("{} = {p}", quote(&field.column)));
    }
    sets.push("updated_at = now()".to_owned());
    let id = st.bind(Some(id.to_string()), "bigint");
    st.sql = format!(
        "WITH r AS (UPDATE {} SET {} WHERE id = {id} RETURNING {}) SELECT row_to_json(r)::text FROM r",
        quote(&entity.table),
        sets.join(", "),
        output_columns(entity)
    );
    st
}

/// `DELETE` one row.
pub fn delete(entity: &Entity, id: i64) -> Statement {
    let mut st = Statement::new();
    let id = st.bind(Some(id.to_string()), "bigint");
    st.sql = format!("DELETE FROM {} WHERE id = {id}", quote(&entity.table));
    st
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Model, RawModel};

    fn order() -> Entity {
        let raw: RawModel = serde_json::from_str(
            r#"{"name":"orders","entities":[{"name":"Order","fields":[
                {"name":"customer","type":"text","required":true},{"name":"total","type":"decimal"}]}]}"#,
        )
        .unwrap();
        Model::resolve(raw).unwrap().entities.remove(0)
    }

    #[test]
    fn insert_binds_every_value_and_casts_it() {
        let e = order();
        let st = insert(
            &e,
            vec![(&e.fields[0], Some("Ann".into())), (&e.fields[1], None)],
        );
        assert_eq!(
            st.sql,
            "WITH r AS (INSERT INTO \"order\" (\"customer\", \"total\", created_at, updated_at) \
             VALUES ($1::text, $2::numeric, now(), now()) RETURNING id, \"customer\", \"total\"::text AS \"total\", \
             created_at, updated_at) SELECT row_to_json(r)::text FROM r"
        );
        assert_eq!(st.params, vec![Some("Ann".into()), None]);
    }

    #[test]
    fn list_filters_then_pages() {
        let e = order();
        let st = list(
            &e,
            &[(&e.fields[0], "Ann".into())],
            Order::default(),
            10,
            20,
        );
        assert!(st.sql.contains(
            "WHERE \"customer\" = $1::text ORDER BY id ASC LIMIT $2::bigint OFFSET $3::bigint"
        ));
        assert_eq!(
            st.params,
            vec![Some("Ann".into()), Some("10".into()), Some("20".into())]
        );
        let by_total = Order {
            field: Some(&e.fields[1]),
            descending: true,
        };
        let st = list(&e, &[], by_total, 10, 0);
        assert!(
            st.sql
                .contains("ORDER BY \"order\".\"total\" DESC NULLS LAST, id DESC LIMIT $1::bigint")
        );
    }

    #[test]
    fn labels_are_the_first_text_field() {
        let e = order();
        let st = labels(&e, &[3, 5]);
        assert_eq!(
            st.sql,
            "SELECT json_build_object('id', id, 'label', coalesce(nullif(\"customer\", ''), id::text))::text \
             FROM \"order\" WHERE id = ANY($1::bigint[])"
        );
        assert_eq!(st.params, vec![Some("{3,5}".into())]);
    }

    #[test]
    fn update_touches_updated_at() {
        let e = order();
        let st = update(&e, 7, vec![(&e.fields[1], Some("1.50".into()))]);
        assert!(
            st.sql
                .contains("SET \"total\" = $1::numeric, updated_at = now() WHERE id = $2::bigint")
        );
        assert_eq!(st.params, vec![Some("1.50".into()), Some("7".into())]);
    }
}
