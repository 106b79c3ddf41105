//! Reading `neo.toml` into raw, spanned declarations: syntax, keys and value types only.
//!
//! Every problem is collected (unknown keys, wrong types, missing keys), not just the first;
//! the rules about values (names, references, duplicates) live in `validate`.

use std::ops::Range;

use toml_edit::{ImDocument, Item, Value};

/// A value and the byte span it came from in the manifest.
#[derive(Debug, Clone)]
pub(super) struct Sp<T> {
    pub value: T,
    pub span: Range<usize>,
}

/// A problem found while reading: a span and a message.
pub(super) type Problem = (Range<usize>, String);

/// The manifest as written, before the value rules are checked.
#[derive(Debug, Default)]
pub(super) struct RawManifest {
    pub name: Option<Sp<String>>,
    pub description: Option<Sp<String>>,
    pub entities: Vec<RawEntity>,
    pub settings: Vec<RawSetting>,
    pub secrets: Vec<RawSecret>,
    pub screens: Vec<RawScreen>,
    pub consumes: Vec<RawConsume>,
}

#[derive(Debug)]
pub(super) struct RawEntity {
    pub name: Option<Sp<String>>,
    pub expose: bool,
    pub fields: Vec<RawField>,
}

#[derive(Debug)]
pub(super) struct RawField {
    pub name: Option<Sp<String>>,
    pub ty: Option<Sp<String>>,
    pub required: bool,
    pub unique: Option<Sp<bool>>,
    pub min: Option<Sp<Scalar>>,
    pub max: Option<Sp<Scalar>>,
    pub max_length: Option<Sp<Scalar>>,
    pub pattern: Option<Sp<String>>,
    pub values: Option<Sp<Vec<Sp<String>>>>,
    pub default: Option<Sp<Scalar>>,
}

/// A scalar value as written: its text, and what kind of TOML value it was.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Scalar {
    Text(String),
    Bool(bool),
    /// An integer or a float, as its text (`"12"`, `"9.5"`).
    Number {
        text: String,
        integer: bool,
    },
}

impl Scalar {
    /// What kind of value it is, for messages ("a string").
    pub fn kind(&self) -> &'static str {
        match self {
            Scalar::Text(_) => "a string",
            Scalar::Bool(_) => "a boolean",
            Scalar::Number { integer: true, .. } => "an integer",
            Scalar::Number { .. } => "a float",
        }
    }
}

#[derive(Debug)]
pub(super) struct RawSetting {
    pub name: Option<Sp<String>>,
    pub default: Option<String>,
}

#[derive(Debug)]
pub(super) struct RawSecret {
    pub name: Option<Sp<String>>,
}

#[derive(Debug)]
pub(super) struct RawScreen {
    pub path: Option<Sp<String>>,
}

#[derive(Debug)]
pub(super) struct RawConsume {
    pub span: Range<usize>,
    pub app: Option<Sp<String>>,
    pub entity: Option<Sp<String>>,
    pub fields: Vec<Sp<String>>,
}

/// The keys a field may have.
const FIELD_KEYS: [&str; 10] = [
    "name",
    "type",
    "required",
    "unique",
    "min",
    "max",
    "max_length",
    "pattern",
    "values",
    "default",
];

/// A TOML value reduced to what the manifest needs, with spans everywhere.
#[derive(Debug)]
enum Node {
    Str(String),
    Bool(bool),
    /// An integer or a float, as its text.
    Number {
        text: String,
        integer: bool,
    },
    /// Any other scalar; holds its kind for messages ("a date-time").
    Other(&'static str),
    Array(Vec<Sp<Node>>),
    Table(Vec<(Sp<String>, Sp<Node>)>),
}

impl Node {
    fn kind(&self) -> &'static str {
        match self {
            Node::Str(_) => "a string",
            Node::Bool(_) => "a boolean",
            Node::Number { integer: true, .. } => "an integer",
            Node::Number { .. } => "a float",
            Node::Other(kind) => kind,
            Node::Array(_) => "an array",
            Node::Table(_) => "a table",
        }
    }
}

/// Parses `text`; on a syntax error returns that one problem.
pub(super) fn read(text: &str) -> Result<(RawManifest, Vec<Problem>), Problem> {
    let doc = ImDocument::parse(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        let message = e
            .message()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        (span, format!("invalid TOML: {message}"))
    })?;
    let root = from_table(doc.as_table(), 0..0);
    let mut reader = Reader::default();
    let manifest = reader.manifest(&root);
    Ok((manifest, reader.problems))
}

fn from_table(table: &toml_edit::Table, fallback: Range<usize>) -> Vec<(Sp<String>, Sp<Node>)> {
    let span = table.span().unwrap_or(fallback);
    table
        .iter()
        .map(|(key, item)| {
            let key_span = table
                .key(key)
                .and_then(toml_edit::Key::span)
                .unwrap_or_else(|| span.clone());
            let value = from_item(item, key_span.clone());
            (
                Sp {
                    value: key.to_owned(),
                    span: key_span,
                },
                value,
            )
        })
        .collect()
}

fn from_item(item: &Item, fallback: Range<usize>) -> Sp<Node> {
    match item {
        Item::Value(value) => from_value(value, fallback),
        Item::Table(table) => Sp {
            span: table.span().unwrap_or_else(|| fallback.clone()),
            value: Node::Table(from_table(table, fallback)),
        },
        Item::ArrayOfTables(tables) => Sp {
            span: tables.span().unwrap_or_else(|| fallback.clone()),
            value: Node::Array(
                tables
                    .iter()
                    .map(|t| Sp {
                        span: t.span().unwrap_or_else(|| fallback.clone()),
                        value: Node::Table(from_table(t, fallback.clone())),
                    })
                    .collect(),
            ),
        },
        Item::None => Sp {
            span: fallback,
            value: Node::Other("nothing"),
        },
    }
}

fn from_value(value: &Value, fallback: Range<usize>) -> Sp<Node> {
    let span = value.span().unwrap_or(fallback);
    let node = match value {
        Value::String(s) => Node::Str(s.value().clone()),
        Value::Boolean(b) => Node::Bool(*b.value()),
        Value::Integer(i) => Node::Number {
            text: i.value().to_string(),
            integer: true,
        },
        Value::Float(f) => Node::Number {
            text: f.value().to_string(),
            integer: false,
        },
        Value::Datetime(_) => Node::Other("a date-time"),
        Value::Array(array) => {
            Node::Array(array.iter().map(|v| from_value(v, span.clone())).collect())
        }
        Value::InlineTable(table) => Node::Table(
            table
                .iter()
                .map(|(key, v)| {
                    let key_span = table
                        .key(key)
                        .and_then(toml_edit::Key::span)
                        .unwrap_or_else(|| span.clone());
                    (
                        Sp {
                            value: key.to_owned(),
                            span: key_span.clone(),
                        },
                        from_value(v, key_span),
                    )
                })
                .collect(),
        ),
    };
    Sp { value: node, span }
}

/// One table being read: its entries, its span, and what it is called in messages.
struct Table<'a> {
    entries: &'a [(Sp<String>, Sp<Node>)],
    span: Range<usize>,
    what: &'static str,
}

impl<'a> Table<'a> {
    fn get(&self, key: &str) -> Option<&'a Sp<Node>> {
        self.entries
            .iter()
            .find(|(k, _)| k.value == key)
            .map(|(_, v)| v)
    }
}

#[derive(Default)]
struct Reader {
    problems: Vec<Problem>,
}

impl Reader {
    fn problem(&mut self, span: &Range<usize>, message: String) {
        self.problems.push((span.clone(), message));
    }

    fn manifest(&mut self, root: &[(Sp<String>, Sp<Node>)]) -> RawManifest {
        let t = Table {
            entries: root,
            span: 0..0,
            what: "the manifest",
        };
        self.keys(
            &t,
            &[
                "name",
                "description",
                "entities",
                "settings",
                "secrets",
                "screens",
                "consumes",
            ],
        );
        RawManifest {
            name: self.required_string(&t, "name"),
            description: self.string(&t, "description"),
            entities: self
                .tables(&t, "entities", "an entity")
                .into_iter()
                .map(|e| self.entity(&e))
                .collect(),
            settings: self
                .tables(&t, "settings", "a setting")
                .into_iter()
                .map(|s| {
                    self.keys(&s, &["name", "default"]);
                    RawSetting {
                        name: self.required_string(&s, "name"),
                        default: self.string(&s, "default").map(|d| d.value),
                    }
                })
                .collect(),
            secrets: self
                .tables(&t, "secrets", "a secret")
                .into_iter()
                .map(|s| {
                    self.keys(&s, &["name"]);
                    RawSecret {
                        name: self.required_string(&s, "name"),
                    }
                })
                .collect(),
            screens: self
                .tables(&t, "screens", "a screen")
                .into_iter()
                .map(|s| {
                    self.keys(&s, &["path"]);
                    RawScreen {
                        path: self.required_string(&s, "path"),
                    }
                })
                .collect(),
            consumes: self
                .tables(&t, "consumes", "a consumes entry")
                .into_iter()
                .map(|c| self.consume(&c))
                .collect(),
        }
    }

    fn entity(&mut self, t: &Table<'_>) -> RawEntity {
        self.keys(t, &["name", "expose", "fields"]);
        RawEntity {
            name: self.required_string(t, "name"),
            expose: self.boolean(t, "expose"),
            fields: self
                .tables(t, "fields", "a field")
                .into_iter()
                .map(|f| {
                    self.keys(&f, &FIELD_KEYS);
                    RawField {
                        name: self.required_string(&f, "name"),
                        ty: self.required_string(&f, "type"),
                        required: self.boolean(&f, "required"),
                        unique: f.get("unique").map(|n| Sp {
                            value: self.boolean(&f, "unique"),
                            span: n.span.clone(),
                        }),
                        min: self.scalar(&f, "min"),
                        max: self.scalar(&f, "max"),
                        max_length: self.scalar(&f, "max_length"),
                        pattern: self.string(&f, "pattern"),
                        values: self.strings(&f, "values"),
                        default: self.scalar(&f, "default"),
                    }
                })
                .collect(),
        }
    }

    fn consume(&mut self, t: &Table<'_>) -> RawConsume {
        self.keys(t, &["app", "entity", "fields"]);
        let fields = match t.get("fields") {
            None => {
                self.problem(
                    &t.span,
                    "a consumes entry needs `fields`, the fields it uses".to_owned(),
                );
                Vec::new()
            }
            Some(Sp {
                value: Node::Array(items),
                span,
            }) => {
                if items.is_empty() {
                    self.problem(span, "`fields` must list at least one field".to_owned());
                }
                items
                    .iter()
                    .filter_map(|item| match &item.value {
                        Node::Str(s) => Some(Sp {
                            value: s.clone(),
                            span: item.span.clone(),
                        }),
                        other => {
                            self.problem(
                                &item.span,
                                format!("a field name must be a string, found {}", other.kind()),
                            );
                            None
                        }
                    })
                    .collect()
            }
            Some(other) => {
                self.problem(
                    &other.span,
                    format!(
                        "`fields` must be an array of field names, found {}",
                        other.value.kind()
                    ),
                );
                Vec::new()
            }
        };
        RawConsume {
            span: t.span.clone(),
            app: self.required_string(t, "app"),
            entity: self.required_string(t, "entity"),
            fields,
        }
    }

    /// Reports every key of `t` not in `allowed`.
    fn keys(&mut self, t: &Table<'_>, allowed: &[&str]) {
        for (key, _) in t.entries {
            if !allowed.contains(&key.value.as_str()) {
                self.problem(
                    &key.span,
                    format!(
                        "unknown key `{}` in {}; expected one of: {}",
                        key.value,
                        t.what,
                        allowed.join(", ")
                    ),
                );
            }
        }
    }

    /// A scalar (string, boolean, integer or float) at `key`.
    fn scalar(&mut self, t: &Table<'_>, key: &str) -> Option<Sp<Scalar>> {
        let node = t.get(key)?;
        let value = match &node.value {
            Node::Str(s) => Scalar::Text(s.clone()),
            Node::Bool(b) => Scalar::Bool(*b),
            Node::Number { text, integer } => Scalar::Number {
                text: text.clone(),
                integer: *integer,
            },
            other => {
                self.problem(
                    &node.span,
                    format!(
                        "`{key}` must be a string, a number or a boolean, found {}",
                        other.kind()
                    ),
                );
                return None;
            }
        };
        Some(Sp {
            value,
            span: node.span.clone(),
        })
    }

    /// An array of strings at `key`.
    fn strings(&mut self, t: &Table<'_>, key: &str) -> Option<Sp<Vec<Sp<String>>>> {
        let node = t.get(key)?;
        let Node::Array(items) = &node.value else {
            self.problem(
                &node.span,
                format!(
                    "`{key}` must be an array of strings, found {}",
                    node.value.kind()
                ),
            );
            return None;
        };
        let mut strings = Vec::new();
        for item in items {
            match &item.value {
                Node::Str(s) => strings.push(Sp {
                    value: s.clone(),
                    span: item.span.clone(),
                }),
                other => self.problem(
                    &item.span,
                    format!("each of `{key}` must be a string, found {}", other.kind()),
                ),
            }
        }
        Some(Sp {
            value: strings,
            span: node.span.clone(),
        })
    }

    fn string(&mut self, t: &Table<'_>, key: &str) -> Option<Sp<String>> {
        let node = t.get(key)?;
        match &node.value {
            Node::Str(s) => Some(Sp {
                value: s.clone(),
                span: node.span.clone(),
            }),
            other => {
                self.problem(
                    &node.span,
                    format!("`{key}` must be a string, found {}", other.kind()),
                );
                None
            }
        }
    }

    fn required_string(&mut self, t: &Table<'_>, key: &str) -> Option<Sp<String>> {
        if t.get(key).is_none() {
            self.problem(&t.span, format!("{} needs `{key}`", t.what));
            return None;
        }
        self.string(t, key)
    }

    fn boolean(&mut self, t: &Table<'_>, key: &str) -> bool {
        match t.get(key) {
            None => false,
            Some(Sp {
                value: Node::Bool(b),
                ..
            }) => *b,
            Some(node) => {
                self.problem(
                    &node.span,
                    format!("`{key}` must be true or false, found {}", node.value.kind()),
                );
                false
            }
        }
    }

    /// The tables of the array `key` (`[[key]]` or `key = [{ … }]`).
    fn tables<'a>(&mut self, t: &Table<'a>, key: &str, what: &'static str) -> Vec<Table<'a>> {
        let Some(node) = t.get(key) else {
            return Vec::new();
        };
        let Node::Array(items) = &node.value else {
            self.problem(
                &node.span,
                format!(
                    "`{key}` must be an array of tables (`[[{key}]]`), found {}",
                    node.value.kind()
                ),
            );
            return Vec::new();
        };
        items
            .iter()
            .filter_map(|item| match &item.value {
                Node::Table(entries) => Some(Table {
                    entries,
                    span: item.span.clone(),
                    what,
                }),
                other => {
                    self.problem(
                        &item.span,
                        format!("each of `{key}` must be a table, found {}", other.kind()),
                    );
                    None
                }
            })
            .collect()
    }
}
