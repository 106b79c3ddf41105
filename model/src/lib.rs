//! The app model, pure (no I/O): `neo.toml` parsed and validated into a [`Model`], every error
//! positioned, and what one app's model means for the apps that consume it.
//!
//! - [`load`] reads the manifest from a project's [`ProjectFiles`] and returns the model or
//!   *all* the [`Diagnostic`]s found, each at the offending value
//!   (`neo.toml:LINE:COLUMN: message`).
//! - The [`Model`] is also the normalised model written as JSON into the bundle, which the
//!   apphost reads back.
//! - [`compat`]: what a consumer uses of a producer, checked against what the producer exposes.
//! - [`impact`]: what a producer's deploy would break for the consumers on a stage.
//! - [`migration`]: what a deploy's schema migration does to the data of the release it replaces.
//!
//! The manifest format is documented in `docs/app-model.md`. The Build Service (`neo-builder`)
//! reads projects from disk and archives and compiles models into images; the platform
//! (`neo-actors`) and the gateway assess impact; none of that I/O is here.

pub mod compat;
mod diagnostic;
pub mod impact;
mod manifest;
pub mod migration;
mod validate;

use std::collections::BTreeMap;

use std::fmt;
use std::str::FromStr;

use neo_protocol::pb;
use serde::{Deserialize, Serialize};

pub use diagnostic::{Diagnostic, Position};

/// The files of a project, by path in the project (`neo.toml`, `screens/index.html`): what a
/// model is read from.
pub trait ProjectFiles {
    /// The content of the file at `path`, if the project has it.
    fn file(&self, path: &str) -> Option<&[u8]>;
}

impl ProjectFiles for BTreeMap<String, Vec<u8>> {
    fn file(&self, path: &str) -> Option<&[u8]> {
        self.get(path).map(Vec::as_slice)
    }
}

/// The manifest's path in a project.
pub const MANIFEST: &str = "neo.toml";

/// Field names every table has, which an entity may not declare.
pub const RESERVED_FIELDS: [&str; 3] = ["id", "created_at", "updated_at"];

/// Reads and validates the manifest of `project`.
///
/// # Errors
///
/// Every problem found, sorted by position: a missing manifest (at `neo.toml:1:1`), a TOML
/// syntax error, unknown keys, wrong types, and every rule of `docs/app-model.md`.
pub fn load(project: &impl ProjectFiles) -> Result<Model, Vec<Diagnostic>> {
    validate::load(project)
}

/// A validated app model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Model {
    /// The app's name (`[a-z][a-z0-9-]{0,62}`, not ending with `-`).
    pub name: String,
    /// What the app is for (may be empty).
    pub description: String,
    /// The app's own entities, in declaration order.
    pub entities: Vec<Entity>,
    /// The settings it declares, in declaration order.
    pub settings: Vec<Setting>,
    /// The secret settings it declares, in declaration order.
    pub secrets: Vec<Secret>,
    /// The paths of its screens, e.g. `screens/index.html`, in declaration order.
    pub screens: Vec<String>,
    /// The entities of other apps it consumes, in declaration order.
    pub consumes: Vec<Consume>,
}

impl Model {
    /// The entity named `name`, if the app declares it.
    pub fn entity(&self, name: &str) -> Option<&Entity> {
        self.entities.iter().find(|e| e.name == name)
    }

    /// What a stage must set before this model may run there: the settings without a default
    /// and every secret.
    pub fn needs(&self) -> pb::ConfigNeeds {
        pb::ConfigNeeds {
            settings: self
                .settings
                .iter()
                .filter(|s| s.default.is_none())
                .map(|s| s.name.clone())
                .collect(),
            secrets: self.secrets.iter().map(|s| s.name.clone()).collect(),
        }
    }

    /// The entities declared with `expose = true`, as other apps see them.
    pub fn exposes(&self) -> Vec<pb::ExposedEntity> {
        self.entities
            .iter()
            .filter(|e| e.expose)
            .map(Entity::spec)
            .collect()
    }

    /// Every entity with its fields and their types: the stored data's shape, which a build
    /// records so that a deploy can tell what its migration does to the data of the release it
    /// replaces ([`migration`]).
    pub fn schema(&self) -> Vec<pb::ExposedEntity> {
        self.entities.iter().map(Entity::spec).collect()
    }
}

/// An entity: a kind of record the app stores, with typed fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entity {
    /// `[A-Z][A-Za-z0-9]{0,62}`.
    pub name: String,
    /// Whether other apps may consume it.
    pub expose: bool,
    /// Its fields, in declaration order.
    pub fields: Vec<Field>,
}

impl Entity {
    /// The SQL table of the entity: its name in snake case (`OrderLine` → `order_line`).
    pub fn table_name(&self) -> String {
        snake_case(&self.name)
    }

    /// The entity's name and fields with their types, as a build records them.
    fn spec(&self) -> pb::ExposedEntity {
        pb::ExposedEntity {
            name: self.name.clone(),
            fields: self
                .fields
                .iter()
                .map(|f| pb::FieldSpec {
                    name: f.name.clone(),
                    r#type: f.ty.to_string(),
                    required: f.required,
                })
                .collect(),
        }
    }
}

/// `OrderLine` → `order_line`, `HTTPRequest` → `http_request`, `Item2` → `item2`.
pub fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(char::is_ascii_lowercase);
            if prev.is_ascii_lowercase()
                || prev.is_ascii_digit()
                || (prev.is_ascii_uppercase() && next_lower)
            {
                out.push('_');
            }
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// A field of an entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    /// `[a-z][a-z0-9_]{0,62}`, not one of [`RESERVED_FIELDS`].
    pub name: String,
    /// Its type, serialised with the manifest spelling (`"text"`, `"ref:Product"`).
    #[serde(rename = "type")]
    pub ty: FieldType,
    /// Whether a record must have a value for it (enforced by the apphost).
    pub required: bool,
    /// What its values must satisfy besides their type, and its default.
    #[serde(flatten)]
    pub rules: Rules,
}

/// A field's rules besides its type (each enforced by the apphost on every write, a violation
/// answered 422 naming the field), and its default. Absent rules are left out of `model.json`,
/// so a model without them reads and hashes as before.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rules {
    /// No two records may have the same value (a unique index; a duplicate is refused 409).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unique: bool,
    /// The smallest value allowed (integer and decimal fields), as written: `0`, `9.5`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<String>,
    /// The largest value allowed (integer and decimal fields).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<String>,
    /// The most characters a value may have (text fields).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u32>,
    /// A regular expression every whole value must match (text fields; Rust `regex` syntax).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// The only values allowed, in order (an enumeration; text fields).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// The value a new record gets when it gives none, as text (`"EUR"`, `"1"`, `"true"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

impl Rules {
    /// Why `value` (already of the field's type, as text) breaks a rule, if it does; `None`
    /// when it keeps them all. `pattern` is the rule's compiled pattern.
    pub fn violation(&self, value: &str, pattern: Option<&regex::Regex>) -> Option<String> {
        let number = || value.parse::<f64>().ok();
        if let (Some(min), Some(n)) = (&self.min, number())
            && min.parse::<f64>().is_ok_and(|min| n < min)
        {
            return Some(format!("must be at least {min}"));
        }
        if let (Some(max), Some(n)) = (&self.max, number())
            && max.parse::<f64>().is_ok_and(|max| n > max)
        {
            return Some(format!("must be at most {max}"));
        }
        if let Some(max) = self.max_length
            && value.chars().count() > max as usize
        {
            return Some(format!("must be at most {max} characters long"));
        }
        if !self.values.is_empty() && !self.values.iter().any(|v| v == value) {
            return Some(format!("must be one of: {}", self.values.join(", ")));
        }
        if let (Some(text), Some(pattern)) = (&self.pattern, pattern)
            && !pattern.is_match(value)
        {
            return Some(format!("must match the pattern {text}"));
        }
        None
    }

    /// The pattern compiled to match whole values (`^(?:…)$`).
    ///
    /// # Errors
    /// The regex crate's message for an invalid pattern.
    pub fn compiled_pattern(&self) -> Result<Option<regex::Regex>, regex::Error> {
        self.pattern
            .as_deref()
            .map(|p| regex::Regex::new(&format!("^(?:{p})$")))
            .transpose()
    }
}

/// The type of a field.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum FieldType {
    /// `text`: a UTF-8 string.
    Text,
    /// `integer`: a 64-bit signed integer.
    Integer,
    /// `decimal`: an exact decimal number.
    Decimal,
    /// `boolean`.
    Boolean,
    /// `date`: a calendar date.
    Date,
    /// `datetime`: an instant, with time zone.
    DateTime,
    /// `ref:Entity`: the id of a record of an entity of this app or of a consumed one.
    Ref(String),
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldType::Text => f.write_str("text"),
            FieldType::Integer => f.write_str("integer"),
            FieldType::Decimal => f.write_str("decimal"),
            FieldType::Boolean => f.write_str("boolean"),
            FieldType::Date => f.write_str("date"),
            FieldType::DateTime => f.write_str("datetime"),
            FieldType::Ref(entity) => write!(f, "ref:{entity}"),
        }
    }
}

impl FieldType {
    /// The Postgres type of the field's column, as Postgres' `format_type` spells it (`text`,
    /// `bigint`, `numeric`, `boolean`, `date`, `timestamp with time zone`): what the apphost
    /// casts its parameters to and what a retyped column is converted to. A `ref` is a
    /// `bigint` id.
    pub fn postgres_type(&self) -> &'static str {
        match self {
            FieldType::Text => "text",
            FieldType::Integer | FieldType::Ref(_) => "bigint",
            FieldType::Decimal => "numeric",
            FieldType::Boolean => "boolean",
            FieldType::Date => "date",
            FieldType::DateTime => "timestamp with time zone",
        }
    }
}

/// A field type that is not one of the manifest spellings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown field type `{0}`; expected text, integer, decimal, boolean, date, datetime or ref:Entity"
)]
pub struct UnknownFieldType(pub String);

impl FromStr for FieldType {
    type Err = UnknownFieldType;

    /// Parses the manifest spelling. `ref:` must be followed by an entity name
    /// (`[A-Z][A-Za-z0-9]{0,62}`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "text" => FieldType::Text,
            "integer" => FieldType::Integer,
            "decimal" => FieldType::Decimal,
            "boolean" => FieldType::Boolean,
            "date" => FieldType::Date,
            "datetime" => FieldType::DateTime,
            _ => match s.strip_prefix("ref:") {
                Some(entity) if validate::is_entity_name(entity) => {
                    FieldType::Ref(entity.to_owned())
                }
                _ => return Err(UnknownFieldType(s.to_owned())),
            },
        })
    }
}

impl From<FieldType> for String {
    fn from(ty: FieldType) -> String {
        ty.to_string()
    }
}

impl TryFrom<String> for FieldType {
    type Error = UnknownFieldType;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// A setting the app declares; its value comes from the stage's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Setting {
    /// `[a-z][a-z0-9_]{0,62}`.
    pub name: String,
    /// The value used when the stage sets none.
    pub default: Option<String>,
}

/// A secret setting the app declares; its value is never part of a build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret {
    /// `[a-z][a-z0-9_]{0,62}`.
    pub name: String,
}

/// An entity of another app that this app consumes.
///
/// Equality ignores [`Consume::at`], which is where the entry was written, not what it says.
#[derive(Debug, Clone, Eq, Serialize, Deserialize)]
pub struct Consume {
    /// The producer app.
    pub app: String,
    /// The producer's exposed entity.
    pub entity: String,
    /// The fields of the entity this app uses (at least one).
    pub fields: Vec<String>,
    /// Where this entry is in `neo.toml`, to position a failure to resolve it.
    #[serde(skip)]
    pub at: Position,
}

impl PartialEq for Consume {
    fn eq(&self, other: &Self) -> bool {
        self.app == other.app && self.entity == other.entity && self.fields == other.fields
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_types_round_trip_their_spelling() {
        for s in [
            "text",
            "integer",
            "decimal",
            "boolean",
            "date",
            "datetime",
            "ref:Product",
        ] {
            let ty: FieldType = s.parse().unwrap();
            assert_eq!(ty.to_string(), s);
        }
        assert!("money".parse::<FieldType>().is_err());
        assert!("ref:".parse::<FieldType>().is_err());
        assert!("ref:product".parse::<FieldType>().is_err());
    }

    #[test]
    fn snake_case_of_entity_names() {
        assert_eq!(snake_case("Order"), "order");
        assert_eq!(snake_case("OrderLine"), "order_line");
        assert_eq!(snake_case("HTTPRequest"), "http_request");
        assert_eq!(snake_case("Item2Price"), "item2_price");
    }

    #[test]
    fn field_serialises_type_with_manifest_spelling() {
        let field = Field {
            name: "product".into(),
            ty: FieldType::Ref("Product".into()),
            required: false,
            rules: Rules::default(),
        };
        let json = serde_json::to_value(&field).unwrap();
        assert_eq!(json["type"], "ref:Product");
        assert_eq!(
            json.as_object().unwrap().len(),
            3,
            "no rules, no keys: {json}"
        );
        assert_eq!(serde_json::from_value::<Field>(json).unwrap(), field);
    }

    #[test]
    fn rules_say_which_one_a_value_breaks() {
        let rules = Rules {
            min: Some("1".into()),
            max: Some("9.5".into()),
            ..Rules::default()
        };
        assert_eq!(
            rules.violation("0", None).as_deref(),
            Some("must be at least 1")
        );
        assert_eq!(
            rules.violation("9.6", None).as_deref(),
            Some("must be at most 9.5")
        );
        assert_eq!(rules.violation("9.5", None), None);
        let text = Rules {
            max_length: Some(3),
            pattern: Some("[A-Z]+".into()),
            ..Rules::default()
        };
        let pattern = text.compiled_pattern().unwrap();
        assert_eq!(text.violation("ABC", pattern.as_ref()), None);
        assert!(
            text.violation("ABCD", pattern.as_ref())
                .unwrap()
                .contains("3 characters")
        );
        assert!(
            text.violation("xAB", pattern.as_ref())
                .unwrap()
                .contains("pattern")
        );
        let choice = Rules {
            values: vec!["new".into(), "paid".into()],
            ..Rules::default()
        };
        assert_eq!(choice.violation("paid", None), None);
        assert_eq!(
            choice.violation("lost", None).as_deref(),
            Some("must be one of: new, paid")
        );
    }
}
