//! The compiled bundle of an app (normalised model, SQL migration, screens, settings) and
//! its deterministic image layer under `app/bundle/`.
//!
//! Compiling is pure and cannot fail: the [`Model`] was validated by [`neo_model::load`]
//! and its dependencies resolved by [`neo_model::compat::resolve`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use neo_protocol::pb;
use serde::Serialize;

use neo_image::layer::{Layer, TarEntry, tar};
use neo_model::{FieldType, Model};

use crate::project::Project;

/// Where the bundle's files sit in the image.
pub const LAYER_ROOT: &str = "app/bundle";
/// The normalised model, with the resolved dependencies.
pub const MODEL_JSON: &str = "model.json";
/// The schema migration.
pub const SCHEMA_SQL: &str = "migrations/0001_schema.sql";
/// The declared settings (with defaults) and secret names.
pub const SETTINGS_JSON: &str = "settings.json";
/// The version of the bundle's layout, written into `model.json`.
pub const BUNDLE_FORMAT: u32 = 1;

/// The files of a compiled app: bundle-relative paths to contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    files: BTreeMap<String, Vec<u8>>,
}

/// Compiles a validated model, its project and its resolved dependencies into a bundle.
///
/// # Guarantees
///
/// The same inputs give the same files. The bundle holds `model.json`,
/// `migrations/0001_schema.sql`, `settings.json` and every project file under `screens/`.
pub fn compile(model: &Model, project: &Project, dependencies: &[pb::Dependency]) -> Bundle {
    let mut files = BTreeMap::new();
    files.insert(MODEL_JSON.to_owned(), model_json(model, dependencies));
    files.insert(SCHEMA_SQL.to_owned(), schema_sql(model).into_bytes());
    files.insert(SETTINGS_JSON.to_owned(), settings_json(model));
    for (path, contents) in project.files() {
        if path.starts_with("screens/") {
            files.insert(path.clone(), contents.clone());
        }
    }
    Bundle { files }
}

impl Bundle {
    /// All files, sorted by path.
    pub fn files(&self) -> &BTreeMap<String, Vec<u8>> {
        &self.files
    }

    /// The bundle as a deterministic layer: every file under `app/bundle/`, with a directory
    /// entry for each folder (`app/`, `app/bundle/`, …), sorted by path, mode 0644 (files) and
    /// 0755 (folders), mtime 0, uid/gid 0; gzip header mtime 0. The same bundle gives the same
    /// digest.
    pub fn layer(&self) -> Layer {
        let mut dirs = BTreeSet::new();
        let mut paths = BTreeMap::new();
        for (path, contents) in &self.files {
            let full = format!("{LAYER_ROOT}/{path}");
            let mut end = 0;
            while let Some(i) = full[end..].find('/') {
                end += i;
                dirs.insert(full[..end].to_owned());
                end += 1;
            }
            paths.insert(full, contents.as_slice());
        }
        // Sort by the path as it appears in the tar (folders end with `/`).
        let mut entries: Vec<(String, TarEntry<'_>)> = dirs
            .into_iter()
            .map(|d| (format!("{d}/"), TarEntry::Dir { path: d }))
            .chain(paths.into_iter().map(|(p, c)| {
                (
                    p.clone(),
                    TarEntry::File {
                        path: p,
                        contents: c,
                    },
                )
            }))
            .collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        Layer::from_tar(&tar(entries.into_iter().map(|(_, e)| e)))
    }
}

/// One resolved dependency, as written into `model.json`.
#[derive(Serialize)]
struct DependencyJson<'a> {
    producer_app: &'a str,
    entity: &'a str,
    producer_revision: u32,
    fields: &'a [String],
}

/// `model.json`: the bundle format, the model and its dependencies.
#[derive(Serialize)]
struct ModelJson<'a> {
    format: u32,
    #[serde(flatten)]
    model: &'a Model,
    dependencies: Vec<DependencyJson<'a>>,
}

fn model_json(model: &Model, dependencies: &[pb::Dependency]) -> Vec<u8> {
    let doc = ModelJson {
        format: BUNDLE_FORMAT,
        model,
        dependencies: dependencies
            .iter()
            .map(|d| DependencyJson {
                producer_app: &d.producer_app,
                entity: &d.entity,
                producer_revision: d.producer_revision,
                fields: &d.fields,
            })
            .collect(),
    };
    pretty_json(&doc)
}

fn settings_json(model: &Model) -> Vec<u8> {
    #[derive(Serialize)]
    struct SettingsJson<'a> {
        settings: &'a [neo_model::Setting],
        secrets: Vec<&'a str>,
    }
    pretty_json(&SettingsJson {
        settings: &model.settings,
        secrets: model.secrets.iter().map(|s| s.name.as_str()).collect(),
    })
}

fn pretty_json(value: &impl Serialize) -> Vec<u8> {
    // Serialising plain structs of strings, numbers and vectors cannot fail.
    let mut json = serde_json::to_vec_pretty(value).unwrap_or_default();
    json.push(b'\n');
    json
}

/// The Postgres column type of a field type.
pub fn sql_type(ty: &FieldType) -> &'static str {
    match ty {
        FieldType::Text => "TEXT",
        FieldType::Integer => "BIGINT",
        FieldType::Decimal => "NUMERIC",
        FieldType::Boolean => "BOOLEAN",
        FieldType::Date => "DATE",
        FieldType::DateTime => "TIMESTAMPTZ",
        FieldType::Ref(_) => "BIGINT",
    }
}

/// The functions the schema migration converts retyped columns with (in the app's schema).
/// `_neo_convert` converts one value through its text, rounding to integers and giving NULL for
/// what does not convert; `_neo_retype` converts a column in place when its type is not the
/// field's (nothing when it is, or when the column does not exist).
const RETYPE_FUNCTIONS: &str = r#"
-- Converting a retyped field's column in place: a value that does not convert is emptied.
CREATE OR REPLACE FUNCTION "_neo_convert"(value TEXT, target TEXT) RETURNS TEXT
LANGUAGE plpgsql SET timezone TO 'UTC' AS $neo$
DECLARE converted TEXT;
BEGIN
    IF value IS NULL THEN
        RETURN NULL;
    END IF;
    IF target = 'bigint' THEN
        RETURN round(value::numeric)::bigint::text;
    END IF;
    EXECUTE format('SELECT (%L::%s)::text', value, target) INTO converted;
    RETURN converted;
EXCEPTION WHEN OTHERS THEN
    RETURN NULL;
END
$neo$;
CREATE OR REPLACE FUNCTION "_neo_retype"(tbl TEXT, col TEXT, target TEXT) RETURNS VOID
LANGUAGE plpgsql AS $neo$
DECLARE was TEXT;
BEGIN
    SELECT format_type(atttypid, atttypmod) INTO was FROM pg_attribute
     WHERE attrelid = format('%I', tbl)::regclass AND attname = col AND NOT attisdropped;
    IF was IS NULL OR was = target THEN
        RETURN;
    END IF;
    EXECUTE format('ALTER TABLE %I ALTER COLUMN %I TYPE %s USING "_neo_convert"(%I::text, %L)::%s',
                   tbl, col, target, col, target, target);
END
$neo$;
"#;

/// The schema migration: idempotent, so applying it again, or after any earlier revision's, is
/// safe; it brings the tables to this model whatever revision ran before. No schema name: the
/// apphost sets `search_path`.
///
/// A new field is a new column; a retyped field's column is converted in place
/// (`_neo_retype`, values that do not convert are emptied: what `neo_model::migration` reports
/// before a deploy); a dropped field or entity keeps its column or table. Columns are nullable:
/// `required` is enforced by the apphost, so a field added to a table that has rows needs no
/// default; the other rules are the apphost's too, but for `unique`, a unique index (named
/// `{table}_{field}_key`, which the apphost maps back to the field). A ref is a `BIGINT` id
/// without a foreign key (it may point into another app's schema).
pub fn schema_sql(model: &Model) -> String {
    let mut sql = format!(
        "-- Schema of app `{}`, generated by the Neo Build Service. Idempotent: it brings the \
         tables to this revision's model.\n",
        model.name
    );
    sql.push_str(RETYPE_FUNCTIONS);
    for entity in &model.entities {
        let table = quote(&entity.table_name());
        let _ = write!(
            sql,
            "\n-- Entity {}\nCREATE TABLE IF NOT EXISTS {table} (\n    \
             \"id\" BIGSERIAL PRIMARY KEY,\n    \
             \"created_at\" TIMESTAMPTZ NOT NULL DEFAULT now(),\n    \
             \"updated_at\" TIMESTAMPTZ NOT NULL DEFAULT now()\n);\n",
            entity.name
        );
        for field in &entity.fields {
            let _ = writeln!(
                sql,
                "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {} {};\n\
                 SELECT \"_neo_retype\"('{}', '{}', '{}');",
                quote(&field.name),
                sql_type(&field.ty),
                entity.table_name(),
                field.name,
                field.ty.postgres_type(),
            );
        }
        for field in entity.fields.iter().filter(|f| f.rules.unique) {
            let index = quote(&format!("{}_{}_key", entity.table_name(), field.name));
            let _ = writeln!(
                sql,
                "CREATE UNIQUE INDEX IF NOT EXISTS {index} ON {table} ({});",
                quote(&field.name)
            );
        }
    }
    sql
}

/// A quoted SQL identifier.
fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}
