//! The rules of the app model: names, duplicates, references, screens; raw manifest → [`Model`].

use std::collections::HashMap;
use std::ops::Range;

use super::diagnostic::{Diagnostic, Position, SourceMap};
use super::manifest::{self, RawManifest, Scalar, Sp};
use super::{
    Consume, Entity, Field, FieldType, MANIFEST, Model, ProjectFiles, RESERVED_FIELDS, Rules,
    Secret, Setting, snake_case,
};

const MAX_NAME: usize = 63;

/// `[A-Z][A-Za-z0-9]{0,62}`.
pub(super) fn is_entity_name(s: &str) -> bool {
    s.len() <= MAX_NAME
        && s.as_bytes().first().is_some_and(u8::is_ascii_uppercase)
        && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// `[a-z][a-z0-9_]{0,62}`: field, setting and secret names (the rule the stages' settings and
/// the secrets store check too).
fn is_snake_name(s: &str) -> bool {
    neo_protocol::names::validate_setting_name("name", s).is_ok()
}

pub(super) fn load(project: &impl ProjectFiles) -> Result<Model, Vec<Diagnostic>> {
    let start = Position::start_of(MANIFEST);
    let Some(bytes) = project.file(MANIFEST) else {
        return Err(vec![
            start.diagnostic(format!("the project has no `{MANIFEST}` manifest")),
        ]);
    };
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let prefix = String::from_utf8_lossy(&bytes[..e.valid_up_to()]).into_owned();
            let at = SourceMap::new(MANIFEST, &prefix).position(prefix.len());
            return Err(vec![at.diagnostic("the manifest is not valid UTF-8")]);
        }
    };
    let map = SourceMap::new(MANIFEST, text);
    let (raw, problems) =
        manifest::read(text).map_err(|(span, msg)| vec![map.diagnostic(&span, msg)])?;
    let mut checker = Checker {
        map: &map,
        diagnostics: problems
            .into_iter()
            .map(|(span, msg)| map.diagnostic(&span, msg))
            .collect(),
    };
    let model = checker.model(raw, project);
    let mut diagnostics = checker.diagnostics;
    if diagnostics.is_empty() {
        return Ok(model);
    }
    diagnostics.sort_by_key(|d| (d.line, d.column));
    Err(diagnostics)
}

struct Checker<'a> {
    map: &'a SourceMap<'a>,
    diagnostics: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn error(&mut self, span: &Range<usize>, message: impl Into<String>) {
        let d = self.map.diagnostic(span, message);
        self.diagnostics.push(d);
    }

    /// Records `name` in `seen`; reports it when already there (`what` names it).
    fn unique(&mut self, seen: &mut HashMap<String, u32>, name: &Sp<String>, what: &str) {
        let line = self.map.position(name.span.start).line;
        if let Some(first) = seen.get(&name.value) {
            self.error(
                &name.span,
                format!(
                    "{what} `{}` is declared twice (first on line {first})",
                    name.value
                ),
            );
        } else {
            seen.insert(name.value.clone(), line);
        }
    }

    fn snake_name(&mut self, name: &Sp<String>, what: &str) -> bool {
        if is_snake_name(&name.value) {
            return true;
        }
        self.error(
            &name.span,
            format!(
                "{what} `{}` is invalid: it must match [a-z][a-z0-9_]{{0,62}}",
                name.value
            ),
        );
        false
    }

    fn model(&mut self, raw: RawManifest, project: &impl ProjectFiles) -> Model {
        let name = raw.name.map(|name| {
            if let Err(e) = neo_protocol::names::validate_name("app name", &name.value) {
                self.error(&name.span, e.to_string());
            }
            name.value
        });
        let name = name.unwrap_or_default();
        let declares_something = !raw.entities.is_empty() || !raw.screens.is_empty();

        // Consumes first: refs may point at consumed entities.
        let mut consumed: HashMap<String, String> = HashMap::new();
        let mut consumes = Vec::new();
        for c in raw.consumes {
            let at = self.map.position(c.span.start);
            if let Some(app) = &c.app {
                if let Err(e) = neo_protocol::names::validate_name("app name", &app.value) {
                    self.error(&app.span, e.to_string());
                } else if app.value == name {
                    self.error(&app.span, "an app cannot consume its own entities");
                }
            }
            if let Some(entity) = &c.entity {
                if !is_entity_name(&entity.value) {
                    self.error(
                        &entity.span,
                        format!(
                            "entity name `{}` is invalid: it must match [A-Z][A-Za-z0-9]{{0,62}}",
                            entity.value
                        ),
                    );
                } else if let Some(app) = &c.app {
                    match consumed.get(&entity.value) {
                        Some(other) if *other == app.value => self.error(
                            &entity.span,
                            format!(
                                "entity `{}` of app `{}` is consumed twice",
                                entity.value, app.value
                            ),
                        ),
                        Some(other) => self.error(
                            &entity.span,
                            format!(
                                "an entity named `{}` is already consumed from app `{other}`; \
                                 entity names must be unique within an app",
                                entity.value
                            ),
                        ),
                        None => {
                            consumed.insert(entity.value.clone(), app.value.clone());
                        }
                    }
                }
            }
            let mut seen = HashMap::new();
            for field in &c.fields {
                if self.snake_name(field, "field name") {
                    self.unique(&mut seen, field, "field");
                }
            }
            consumes.push(Consume {
                app: c.app.map(|a| a.value).unwrap_or_default(),
                entity: c.entity.map(|e| e.value).unwrap_or_default(),
                fields: c.fields.into_iter().map(|f| f.value).collect(),
                at,
            });
        }

        let entities = self.entities(raw.entities, &consumed);

        let mut env_names = HashMap::new();
        let settings = raw
            .settings
            .into_iter()
            .filter_map(|s| {
                let name = s.name?;
                if self.snake_name(&name, "setting name") {
                    self.unique(&mut env_names, &name, "setting or secret");
                }
                Some(Setting {
                    name: name.value,
                    default: s.default,
                })
            })
            .collect();
        let secrets = raw
            .secrets
            .into_iter()
            .filter_map(|s| {
                let name = s.name?;
                if self.snake_name(&name, "secret name") {
                    self.unique(&mut env_names, &name, "setting or secret");
                }
                Some(Secret { name: name.value })
            })
            .collect();

        let mut seen_screens = HashMap::new();
        let screens: Vec<String> = raw
            .screens
            .into_iter()
            .filter_map(|s| {
                let path = s.path?;
                if !path.value.starts_with("screens/") {
                    self.error(
                        &path.span,
                        format!("screen `{}` must be a path under `screens/`", path.value),
                    );
                } else if project.file(&path.value).is_none() {
                    self.error(
                        &path.span,
                        format!("screen `{}` is not a file of the project", path.value),
                    );
                } else {
                    self.unique(&mut seen_screens, &path, "screen");
                }
                Some(path.value)
            })
            .collect();

        if !declares_something {
            self.error(
                &(0..0),
                "the app declares no entities and no screens; declare at least one",
            );
        }

        Model {
            name,
            description: raw.description.map(|d| d.value).unwrap_or_default(),
            entities,
            settings,
            secrets,
            screens,
            consumes,
        }
    }

    fn entities(
        &mut self,
        raw: Vec<manifest::RawEntity>,
        consumed: &HashMap<String, String>,
    ) -> Vec<Entity> {
        let own: HashMap<&str, ()> = raw
            .iter()
            .filter_map(|e| e.name.as_ref().map(|n| (n.value.as_str(), ())))
            .collect();
        let mut names = HashMap::new();
        let mut tables: HashMap<String, String> = HashMap::new();
        let mut entities = Vec::new();
        for e in &raw {
            let Some(name) = &e.name else { continue };
            if !is_entity_name(&name.value) {
                self.error(
                    &name.span,
                    format!(
                        "entity name `{}` is invalid: it must match [A-Z][A-Za-z0-9]{{0,62}}",
                        name.value
                    ),
                );
            } else if let Some(app) = consumed.get(&name.value) {
                self.error(
                    &name.span,
                    format!(
                        "entity `{}` is also consumed from app `{app}`; \
                         entity names must be unique within an app",
                        name.value
                    ),
                );
            } else if names.contains_key(&name.value) {
                self.unique(&mut names, name, "entity");
            } else {
                names.insert(name.value.clone(), self.map.position(name.span.start).line);
                let table = snake_case(&name.value);
                if let Some(other) = tables.get(&table) {
                    self.error(
                        &name.span,
                        format!(
                            "entity `{}` and entity `{other}` would share the table `{table}`",
                            name.value
                        ),
                    );
                } else {
                    tables.insert(table, name.value.clone());
                }
            }
            let mut seen = HashMap::new();
            let mut fields = Vec::new();
            for f in &e.fields {
                if let Some(field_name) = &f.name {
                    if RESERVED_FIELDS.contains(&field_name.value.as_str()) {
                        self.error(
                            &field_name.span,
                            format!(
                                "field name `{}` is reserved: every entity has `id`, \
                                 `created_at` and `updated_at`",
                                field_name.value
                            ),
                        );
                    } else if self.snake_name(field_name, "field name") {
                        self.unique(&mut seen, field_name, "field");
                    }
                }
                let ty =
                    f.ty.as_ref()
                        .and_then(|ty| match ty.value.parse::<FieldType>() {
                            Err(err) => {
                                self.error(&ty.span, err.to_string());
                                None
                            }
                            Ok(FieldType::Ref(target))
                                if !own.contains_key(target.as_str())
                                    && !consumed.contains_key(&target) =>
                            {
                                self.error(
                                    &ty.span,
                                    format!(
                                        "`{}` refers to an unknown entity `{target}`: \
                                 declare it or consume it from another app",
                                        ty.value
                                    ),
                                );
                                None
                            }
                            Ok(ty) => Some(ty),
                        });
                if let (Some(field_name), Some(ty)) = (&f.name, ty) {
                    let rules = self.rules(f, &ty);
                    fields.push(Field {
                        name: field_name.value.clone(),
                        ty,
                        required: f.required,
                        rules,
                    });
                }
            }
            entities.push(Entity {
                name: name.value.clone(),
                expose: e.expose,
                fields,
            });
        }
        entities
    }

    /// The rules of field `f` of type `ty`: each only where it applies, bounds that are
    /// numbers of the field's type, a pattern that compiles, a default of the field's type that
    /// keeps the rules.
    fn rules(&mut self, f: &manifest::RawField, ty: &FieldType) -> Rules {
        let numeric = matches!(ty, FieldType::Integer | FieldType::Decimal);
        let text = *ty == FieldType::Text;
        let mut rules = Rules::default();
        if let Some(unique) = &f.unique {
            if unique.value && *ty == FieldType::Boolean {
                self.error(&unique.span, "`unique` does not apply to a boolean field");
            } else {
                rules.unique = unique.value;
            }
        }
        let bound = |checker: &mut Self, key: &str, value: &Option<Sp<Scalar>>| {
            let b = value.as_ref()?;
            if !numeric {
                checker.error(
                    &b.span,
                    format!("`{key}` applies to integer and decimal fields, not to {ty}"),
                );
                return None;
            }
            match &b.value {
                Scalar::Number { text, integer } if *integer || *ty == FieldType::Decimal => {
                    Some(text.clone())
                }
                Scalar::Number { .. } => {
                    checker.error(
                        &b.span,
                        format!("`{key}` of an integer field must be an integer"),
                    );
                    None
                }
                other => {
                    checker.error(
                        &b.span,
                        format!("`{key}` must be a number, found {}", other.kind()),
                    );
                    None
                }
            }
        };
        rules.min = bound(self, "min", &f.min);
        rules.max = bound(self, "max", &f.max);
        if let (Some(min), Some(max), Some(at)) = (&rules.min, &rules.max, &f.max)
            && min.parse::<f64>().ok() > max.parse::<f64>().ok()
        {
            self.error(&at.span, format!("`max` ({max}) is below `min` ({min})"));
        }
        if let Some(length) = &f.max_length {
            match &length.value {
                _ if !text => self.error(
                    &length.span,
                    format!("`max_length` applies to text fields, not to {ty}"),
                ),
                Scalar::Number {
                    text: n,
                    integer: true,
                } if n.parse::<u32>().is_ok_and(|n| n > 0) => {
                    rules.max_length = n.parse().ok();
                }
                _ => self.error(&length.span, "`max_length` must be a positive integer"),
            }
        }
        if let Some(pattern) = &f.pattern {
            if !text {
                self.error(
                    &pattern.span,
                    format!("`pattern` applies to text fields, not to {ty}"),
                );
            } else {
                rules.pattern = Some(pattern.value.clone());
                if let Err(e) = rules.compiled_pattern() {
                    let why = e.to_string();
                    let why = why.lines().last().unwrap_or_default().trim().to_owned();
                    self.error(
                        &pattern.span,
                        format!("`pattern` is not a regular expression: {why}"),
                    );
                    rules.pattern = None;
                }
            }
        }
        if let Some(values) = &f.values {
            if !text {
                self.error(
                    &values.span,
                    format!("`values` applies to text fields, not to {ty}"),
                );
            } else if values.value.is_empty() {
                self.error(&values.span, "`values` must list at least one value");
            } else {
                let mut seen = HashMap::new();
                for value in &values.value {
                    self.unique(&mut seen, value, "value");
                }
                rules.values = values.value.iter().map(|v| v.value.clone()).collect();
            }
        }
        if let Some(default) = &f.default {
            let value = match (ty, &default.value) {
                (FieldType::Ref(_), _) => {
                    self.error(&default.span, "a reference field has no default");
                    None
                }
                (FieldType::Text | FieldType::Date | FieldType::DateTime, Scalar::Text(t)) => {
                    Some(t.clone())
                }
                (
                    FieldType::Integer,
                    Scalar::Number {
                        text,
                        integer: true,
                    },
                ) => Some(text.clone()),
                (FieldType::Decimal, Scalar::Number { text, .. }) => Some(text.clone()),
                (FieldType::Decimal, Scalar::Text(t)) if t.parse::<f64>().is_ok() => {
                    Some(t.clone())
                }
                (FieldType::Boolean, Scalar::Bool(b)) => Some(b.to_string()),
                (_, other) => {
                    self.error(
                        &default.span,
                        format!(
                            "the default of a field of type {ty} cannot be {}",
                            other.kind()
                        ),
                    );
                    None
                }
            };
            if let Some(value) = value {
                let pattern = rules.compiled_pattern().ok().flatten();
                if let Some(why) = rules.violation(&value, pattern.as_ref()) {
                    self.error(&default.span, format!("the default `{value}` {why}"));
                } else {
                    rules.default = Some(value);
                }
            }
        }
        rules
    }
}
