//! The app model as the apphost reads it from `model.json`, checked and resolved to SQL names.
//!
//! `model.json` is the contract between the Build Service and the apphost: this module defines
//! its own serde types for the parts it serves and ignores everything else, so the builder can
//! add keys without breaking older hosts.

use std::collections::HashSet;

use neo_model::FieldType;
use serde::Deserialize;

/// Why a model cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A name does not resolve to a valid SQL identifier.
    #[error(
        "{what} name {name:?} is not a valid identifier (letters, digits and underscores, starting with a letter, at most 63)"
    )]
    InvalidName {
        /// What carries the name: "app", "entity", "field", "setting" or "secret".
        what: &'static str,
        /// The name as written in the model.
        name: String,
    },
    /// Two entities, or two fields of one entity, resolve to the same SQL name.
    #[error("{what} name {name:?} is declared twice")]
    Duplicate {
        /// "entity", "field", "setting" or "secret".
        what: &'static str,
        /// The resolved name.
        name: String,
    },
    /// A field uses a name the host keeps for itself (`id`, `created_at`, `updated_at`).
    #[error("field {entity}.{field} uses a reserved name")]
    ReservedField {
        /// The entity.
        entity: String,
        /// The field.
        field: String,
    },
    /// A field's pattern is not a regular expression.
    #[error("field {entity}.{field} has an invalid pattern: {error}")]
    Pattern {
        /// The entity.
        entity: String,
        /// The field.
        field: String,
        /// The regex crate's message.
        error: String,
    },
    /// The bundle was written in a newer layout than this host knows.
    #[error("bundle format {0} is newer than this apphost supports ({BUNDLE_FORMAT})")]
    Format(u32),
    /// A field's type is not one the host knows.
    #[error("field {entity}.{field} has unknown type {ty:?}")]
    UnknownType {
        /// The entity.
        entity: String,
        /// The field.
        field: String,
        /// The type as written.
        ty: String,
    },
}

/// `model.json` as written by the Build Service (unknown keys are ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct RawModel {
    /// The bundle layout's version (absent in hand-written bundles).
    #[serde(default)]
    pub format: Option<u32>,
    /// The app's name.
    pub name: String,
    /// A description for people.
    #[serde(default)]
    pub description: String,
    /// The entities the app owns.
    #[serde(default)]
    pub entities: Vec<RawEntity>,
    /// Declared settings.
    #[serde(default)]
    pub settings: Vec<RawSetting>,
    /// Declared secret settings.
    #[serde(default)]
    pub secrets: Vec<RawSecret>,
    /// Other apps' entities it reads.
    #[serde(default)]
    pub consumes: Vec<RawConsume>,
}

/// One entity in `model.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct RawEntity {
    /// The entity's name, e.g. `Order`.
    pub name: String,
    /// Whether other apps may consume it.
    #[serde(default)]
    pub expose: bool,
    /// Its fields.
    #[serde(default)]
    pub fields: Vec<RawField>,
}

/// One field in `model.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct RawField {
    /// The field's name.
    pub name: String,
    /// Its type: `text`, `integer`, `decimal`, `boolean`, `date`, `datetime` or `ref:<Entity>`.
    #[serde(rename = "type")]
    pub ty: String,
    /// Whether a value is required.
    #[serde(default)]
    pub required: bool,
    /// Its other rules and default (absent in older bundles: none).
    #[serde(flatten)]
    pub rules: neo_model::Rules,
}

/// One `[[consumes]]` entry in `model.json`: another app's entity this one reads.
#[derive(Debug, Clone, Deserialize)]
pub struct RawConsume {
    /// The producer app.
    pub app: String,
    /// Its exposed entity.
    pub entity: String,
    /// The fields this app uses.
    #[serde(default)]
    pub fields: Vec<String>,
}

/// One declared setting in `model.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct RawSetting {
    /// The setting's name.
    pub name: String,
    /// Its default, if any (any JSON scalar).
    #[serde(default)]
    pub default: Option<serde_json::Value>,
}

/// One declared secret in `model.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct RawSecret {
    /// The secret's name.
    pub name: String,
}

/// A field, resolved.
#[derive(Debug, Clone)]
pub struct Field {
    /// The name clients use in JSON and filters.
    pub name: String,
    /// The column: the field's name, used quoted.
    pub column: String,
    /// The type.
    pub kind: FieldType,
    /// Whether a value is required.
    pub required: bool,
    /// Its other rules and default.
    pub rules: neo_model::Rules,
    /// `rules.pattern`, compiled to match whole values.
    pub pattern: Option<regex::Regex>,
}

/// An entity, resolved.
#[derive(Debug, Clone)]
pub struct Entity {
    /// The name as declared, e.g. `Order`.
    pub name: String,
    /// The snake-case name: the table and the path segment under `/api`.
    pub table: String,
    /// Whether other apps may consume it.
    pub expose: bool,
    /// Its fields, in declared order.
    pub fields: Vec<Field>,
}

impl Entity {
    /// The field clients call `name`.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The field that names a row to people: the first text field, if any.
    pub fn label_field(&self) -> Option<&Field> {
        self.fields.iter().find(|f| f.kind == FieldType::Text)
    }

    /// Its fields that refer to entity `name`.
    pub fn refs_to<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Field> + 'a {
        self.fields
            .iter()
            .filter(move |f| matches!(&f.kind, FieldType::Ref(target) if target == name))
    }
}

/// Another app's entity this app reads (read-only, through the producer's API).
#[derive(Debug, Clone)]
pub struct Consumed {
    /// The producer app.
    pub app: String,
    /// The entity, as the producer declares it (`Product`).
    pub entity: String,
    /// Its path segment in the producer's API (`product`).
    pub table: String,
    /// The fields this app reads.
    pub fields: Vec<String>,
}

impl Consumed {
    /// `row` with only its id and the declared fields.
    pub fn declared(
        &self,
        row: &serde_json::Map<String, serde_json::Value>,
    ) -> serde_json::Map<String, serde_json::Value> {
        row.iter()
            .filter(|(k, _)| *k == "id" || self.fields.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// A row's label: its first declared field that holds text, else `#id`.
    pub fn label(&self, row: &serde_json::Map<String, serde_json::Value>) -> String {
        self.fields
            .iter()
            .find_map(|f| row.get(f).and_then(serde_json::Value::as_str))
            .filter(|s| !s.is_empty())
            .map_or_else(
                || format!("#{}", row.get("id").cloned().unwrap_or_default()),
                str::to_owned,
            )
    }
}

/// A declared setting.
#[derive(Debug, Clone)]
pub struct Setting {
    /// The name.
    pub name: String,
    /// The default, rendered as a string (`None` when there is none).
    pub default: Option<String>,
}

/// The checked model the host serves.
#[derive(Debug, Clone)]
pub struct Model {
    /// The app's name.
    pub name: String,
    /// Its description.
    pub description: String,
    /// The entities.
    pub entities: Vec<Entity>,
    /// Declared settings.
    pub settings: Vec<Setting>,
    /// Declared secret names.
    pub secrets: Vec<String>,
    /// Other apps' entities it reads.
    pub consumes: Vec<Consumed>,
}

/// The newest bundle layout this host reads (`format` in `model.json`).
pub const BUNDLE_FORMAT: u32 = 1;

/// Columns every entity table has besides its fields.
pub const RESERVED_COLUMNS: [&str; 3] = ["id", "created_at", "updated_at"];

impl Model {
    /// Checks a raw model and resolves its SQL names.
    ///
    /// # Errors
    /// A name that is not a valid identifier, a duplicate, a reserved field name or an unknown
    /// field type.
    pub fn resolve(raw: RawModel) -> Result<Self, ModelError> {
        if let Some(format) = raw.format.filter(|f| *f > BUNDLE_FORMAT) {
            return Err(ModelError::Format(format));
        }
        if !is_identifier(&snake_case(&raw.name)) {
            return Err(ModelError::InvalidName {
                what: "app",
                name: raw.name,
            });
        }
        let mut tables = HashSet::new();
        let mut entities = Vec::with_capacity(raw.entities.len());
        for e in raw.entities {
            let table = checked("entity", &e.name)?;
            if !tables.insert(table.clone()) {
                return Err(ModelError::Duplicate {
                    what: "entity",
                    name: table,
                });
            }
            let mut columns = HashSet::new();
            let mut fields = Vec::with_capacity(e.fields.len());
            for f in e.fields {
                // The Build Service names columns exactly as the fields (quoted).
                if !is_field_name(&f.name) {
                    return Err(ModelError::InvalidName {
                        what: "field",
                        name: f.name,
                    });
                }
                let column = f.name.clone();
                if RESERVED_COLUMNS.contains(&column.as_str()) {
                    return Err(ModelError::ReservedField {
                        entity: e.name,
                        field: f.name,
                    });
                }
                if !columns.insert(column.clone()) {
                    return Err(ModelError::Duplicate {
                        what: "field",
                        name: column,
                    });
                }
                let Ok(kind) = f.ty.parse::<FieldType>() else {
                    return Err(ModelError::UnknownType {
                        entity: e.name,
                        field: f.name,
                        ty: f.ty,
                    });
                };
                let pattern = f
                    .rules
                    .compiled_pattern()
                    .map_err(|error| ModelError::Pattern {
                        entity: e.name.clone(),
                        field: f.name.clone(),
                        error: error.to_string(),
                    })?;
                fields.push(Field {
                    name: f.name,
                    column,
                    kind,
                    required: f.required,
                    rules: f.rules,
                    pattern,
                });
            }
            entities.push(Entity {
                name: e.name,
                table,
                expose: e.expose,
                fields,
            });
        }
        let mut names = HashSet::new();
        let mut settings = Vec::with_capacity(raw.settings.len());
        for s in raw.settings {
            checked("setting", &s.name)?;
            if !names.insert(s.name.clone()) {
                return Err(ModelError::Duplicate {
                    what: "setting",
                    name: s.name,
                });
            }
            let default = match s.default {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(text)) => Some(text),
                Some(other) => Some(other.to_string()),
            };
            settings.push(Setting {
                name: s.name,
                default,
            });
        }
        let mut secrets = Vec::with_capacity(raw.secrets.len());
        for s in raw.secrets {
            checked("secret", &s.name)?;
            if !names.insert(s.name.clone()) {
                return Err(ModelError::Duplicate {
                    what: "secret",
                    name: s.name,
                });
            }
            secrets.push(s.name);
        }
        let mut consumes = Vec::with_capacity(raw.consumes.len());
        for c in raw.consumes {
            checked("app", &c.app)?;
            let table = checked("entity", &c.entity)?;
            consumes.push(Consumed {
                app: c.app,
                entity: c.entity,
                table,
                fields: c.fields,
            });
        }
        Ok(Self {
            name: raw.name,
            description: raw.description,
            entities,
            settings,
            secrets,
            consumes,
        })
    }

    /// The entity served under `/api/{table}`.
    pub fn entity(&self, table: &str) -> Option<&Entity> {
        self.entities.iter().find(|e| e.table == table)
    }

    /// The entity declared as `name` (as a reference names it: `ref:Product`).
    pub fn entity_named(&self, name: &str) -> Option<&Entity> {
        self.entities.iter().find(|e| e.name == name)
    }

    /// The consumed entity `name` refers to (`ref:Product`), when no entity of this app has it.
    pub fn consumed(&self, name: &str) -> Option<&Consumed> {
        self.consumes.iter().find(|c| c.entity == name)
    }

    /// The default schema: the app's name with `-` turned into `_`.
    pub fn default_schema(&self) -> String {
        snake_case(&self.name)
    }
}

fn checked(what: &'static str, name: &str) -> Result<String, ModelError> {
    let snake = snake_case(name);
    if is_identifier(&snake) {
        Ok(snake)
    } else {
        Err(ModelError::InvalidName {
            what,
            name: name.to_owned(),
        })
    }
}

/// `OrderLine` → `order_line`, `HTTPRequest` → `http_request`, `my-app` → `my_app`.
pub fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c == '-' || c == ' ' {
            out.push('_');
        } else if c.is_ascii_uppercase() {
            let prev = i.checked_sub(1).and_then(|p| chars.get(p)).copied();
            let next = chars.get(i + 1).copied();
            let boundary = match prev {
                Some(p) if p.is_ascii_lowercase() || p.is_ascii_digit() => true,
                Some(p) if p.is_ascii_uppercase() => next.is_some_and(|n| n.is_ascii_lowercase()),
                _ => false,
            };
            if boundary && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// A lower-case SQL identifier: `[a-z][a-z0-9_]*`, at most 63 bytes.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63
}

/// A field name: `[A-Za-z][A-Za-z0-9_]*`, at most 63 bytes (used quoted, so case matters).
pub fn is_field_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 63
}

/// Quotes an identifier for SQL.
pub fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> RawModel {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn snake_case_follows_word_boundaries() {
        assert_eq!(snake_case("Order"), "order");
        assert_eq!(snake_case("OrderLine"), "order_line");
        assert_eq!(snake_case("HTTPRequest"), "http_request");
        assert_eq!(snake_case("my-app"), "my_app");
        assert_eq!(snake_case("already_snake"), "already_snake");
        assert_eq!(snake_case("Item2Price"), "item2_price");
    }

    #[test]
    fn resolves_tables_columns_and_kinds() {
        let m = Model::resolve(raw(r#"{"name":"orders","extra":1,"entities":[{"name":"OrderLine","fields":[
            {"name":"qty","type":"integer","required":true},{"name":"product","type":"ref:Product"}]}],
            "settings":[{"name":"currency","default":"EUR"},{"name":"limit","default":10}]}"#))
        .unwrap();
        let e = m.entity("order_line").unwrap();
        assert_eq!(e.fields[1].kind, FieldType::Ref("Product".into()));
        assert!(e.fields[0].required);
        assert_eq!(m.settings[1].default.as_deref(), Some("10"));
    }

    #[test]
    fn rejects_bad_models() {
        let bad_type =
            r#"{"name":"a","entities":[{"name":"E","fields":[{"name":"x","type":"blob"}]}]}"#;
        assert!(matches!(
            Model::resolve(raw(bad_type)),
            Err(ModelError::UnknownType { .. })
        ));
        let reserved =
            r#"{"name":"a","entities":[{"name":"E","fields":[{"name":"id","type":"text"}]}]}"#;
        assert!(matches!(
            Model::resolve(raw(reserved)),
            Err(ModelError::ReservedField { .. })
        ));
        let injected = r#"{"name":"a","entities":[{"name":"E\"; DROP","fields":[]}]}"#;
        assert!(matches!(
            Model::resolve(raw(injected)),
            Err(ModelError::InvalidName { .. })
        ));
        let newer = r#"{"format":2,"name":"a"}"#;
        assert!(matches!(
            Model::resolve(raw(newer)),
            Err(ModelError::Format(2))
        ));
        let dup = r#"{"name":"a","entities":[{"name":"E"},{"name":"e"}]}"#;
        assert!(matches!(
            Model::resolve(raw(dup)),
            Err(ModelError::Duplicate { .. })
        ));
    }
}
