//! The rules of the app model: names, duplicates, references, screens; raw manifest → [`Model`].

use std::collections::HashMap;
use std::ops::Range;

use super::diagnostic::{Diagnostic, Position, SourceMap};
use super::manifest::{self, RawManifest, Sp};
use super::{
    Consume, Entity, Field, FieldType, MANIFEST, Model, ProjectFiles, RESERVED_FIELDS, Secret,
    Setting, snake_case,
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
                    fields.push(Field {
                        name: field_name.value.clone(),
                        ty,
                        required: f.required,
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
}
