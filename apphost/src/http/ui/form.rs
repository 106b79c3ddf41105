//! The create and edit forms: the right input per field type, the values as they were typed,
//! each refusal beside its field; and a posted form read into checked values.

use std::collections::HashMap;

use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use neo_model::FieldType;
use serde_json::Value;
use sqlx::PgPool;
use time::format_description::well_known::Rfc3339;

use super::Ui;
use super::rows::{self, Row};
use crate::http::ApiError;
use crate::http::entities::{self, Write};
use crate::model::{Entity, Field};
use crate::values;

/// A form's values as text, by field name, as an `<input>` holds them.
#[derive(Debug, Default, Clone)]
pub struct Values(HashMap<String, String>);

impl Values {
    /// The defaults of `entity`'s fields: a new row's form.
    pub fn defaults(entity: &Entity) -> Self {
        Self(
            entity
                .fields
                .iter()
                .filter_map(|f| Some((f.name.clone(), f.rules.default.clone()?)))
                .collect(),
        )
    }

    /// A row's values: an edit form.
    pub fn of_row(entity: &Entity, row: &Row) -> Self {
        Self(
            entity
                .fields
                .iter()
                .map(|f| (f.name.clone(), input_text(&f.kind, row.get(&f.name))))
                .collect(),
        )
    }

    /// A posted `application/x-www-form-urlencoded` body.
    pub fn posted(body: &[u8]) -> Self {
        Self(form_urlencoded::parse(body).into_owned().collect())
    }

    /// Sets one value.
    pub fn set(&mut self, name: &str, value: String) {
        self.0.insert(name.to_owned(), value);
    }

    fn get(&self, name: &str) -> &str {
        self.0.get(name).map_or("", String::as_str)
    }

    /// The values to write, each checked against its field's type and rules as the API checks
    /// them (an empty input is no value), and every refusal, each naming its field.
    pub fn checked<'e>(
        &self,
        entity: &'e Entity,
        how: Write,
    ) -> (Vec<(&'e Field, Option<String>)>, Vec<ApiError>) {
        let mut checked = Vec::with_capacity(entity.fields.len());
        let mut errors = Vec::new();
        for field in &entity.fields {
            let text = self.get(&field.name);
            let text = if field.kind == FieldType::Text {
                text
            } else {
                text.trim()
            };
            let given = if text.is_empty() {
                None
            } else {
                match typed(&field.kind, text) {
                    Ok(value) => Some(value),
                    Err(m) => {
                        errors.push(entities::mismatch(field, &m));
                        continue;
                    }
                }
            };
            match entities::settled(field, Some(given), how) {
                Ok(Some(value)) => checked.push((field, value)),
                Ok(None) => {}
                Err(error) => errors.push(error),
            }
        }
        (checked, errors)
    }
}

/// An input's text as the API's value: a `datetime-local` input's value is read as UTC.
fn typed(kind: &FieldType, text: &str) -> Result<String, values::Mismatch> {
    if *kind == FieldType::DateTime && time::OffsetDateTime::parse(text, &Rfc3339).is_err() {
        let seconds = if text.len() == "YYYY-MM-DDTHH:MM".len() {
            ":00"
        } else {
            ""
        };
        return values::from_text(kind, &format!("{text}{seconds}Z"));
    }
    values::from_text(kind, text)
}

/// A row's value as an input holds it (a date-time in UTC, without its offset).
fn input_text(kind: &FieldType, value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) if *kind == FieldType::DateTime => {
            match time::OffsetDateTime::parse(s, &Rfc3339) {
                Ok(t) => {
                    let t = t.to_offset(time::UtcOffset::UTC);
                    format!(
                        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                        t.year(),
                        u8::from(t.month()),
                        t.day(),
                        t.hour(),
                        t.minute(),
                        t.second()
                    )
                }
                Err(_) => s.clone(),
            }
        }
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// A create or edit form with its values and refusals.
pub struct Form<'e> {
    entity: &'e Entity,
    id: Option<i64>,
    values: Values,
    errors: Vec<ApiError>,
}

impl<'e> Form<'e> {
    /// The form of `entity`: a new row's (`id` none) or row `id`'s.
    pub fn new(entity: &'e Entity, id: Option<i64>, values: Values, errors: Vec<ApiError>) -> Self {
        Self {
            entity,
            id,
            values,
            errors,
        }
    }

    /// The page, with `status` (422 when it shows refusals).
    pub async fn render(
        &self,
        ui: &Ui,
        pool: &PgPool,
        status: StatusCode,
    ) -> Result<Response, ApiError> {
        let entity = self.entity;
        let mut pickers = HashMap::new();
        let mut unavailable = HashMap::new();
        for field in &entity.fields {
            let FieldType::Ref(target) = &field.kind else {
                continue;
            };
            let choices = if let Some(consumed) = ui.model().consumed(target) {
                rows::consumed_choices(ui.state(), consumed)
                    .await
                    .unwrap_or_else(|e| {
                        unavailable.insert(field.name.as_str(), e.to_string());
                        None
                    })
            } else if let Some(target) = ui.model().entity_named(target) {
                rows::choices(pool, target).await?
            } else {
                None
            };
            if let Some(choices) = choices {
                pickers.insert(field.name.as_str(), choices);
            }
        }
        let (title, action, cancel, submit) = match self.id {
            None => (
                format!("New {}", entity.name),
                format!("ui/{}", entity.table),
                format!("ui/{}", entity.table),
                "Create",
            ),
            Some(id) => (
                format!("Edit {} #{id}", entity.name),
                format!("ui/{}/{id}", entity.table),
                format!("ui/{}/{id}", entity.table),
                "Save",
            ),
        };
        let general: Vec<&ApiError> = self
            .errors
            .iter()
            .filter(|e| {
                e.field_name()
                    .is_none_or(|name| entity.field(name).is_none())
            })
            .collect();
        let body = html! {
            h1 { (title) }
            @if !self.errors.is_empty() {
                div.alert role="alert" {
                    p { "Not saved: " (self.errors.len()) " "
                        (if self.errors.len() == 1 { "problem" } else { "problems" }) "." }
                    @for error in &general { p { (error.to_string()) } }
                }
            }
            form.record method="post" action=(action) novalidate {
                @for field in &entity.fields {
                    (self.field(field, pickers.get(field.name.as_str()), unavailable.get(field.name.as_str())))
                }
                div.actions {
                    button type="submit" { (submit) }
                    a href=(cancel) { "Cancel" }
                }
            }
        };
        Ok(ui.page(status, &title, Some(&entity.table), &body))
    }

    /// One field: its label, its input, its hint and its refusal; `unavailable` says why a
    /// consumed entity's choices could not be listed.
    fn field(
        &self,
        field: &Field,
        choices: Option<&Vec<(i64, String)>>,
        unavailable: Option<&String>,
    ) -> Markup {
        let id = format!("field-{}", field.name);
        let error = self
            .errors
            .iter()
            .find(|e| e.field_name() == Some(field.name.as_str()));
        let mut hint = hint(field, choices.is_some());
        if let Some(why) = unavailable {
            hint = format!("{hint} (no list: {why})");
        }
        let described = [
            error.map(|_| format!("{id}-error")),
            (!hint.is_empty()).then(|| format!("{id}-hint")),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
        let described = (!described.is_empty()).then_some(described);
        let value = self.values.get(&field.name);
        let invalid = error.is_some().then_some("true");
        html! {
            div.field.invalid[error.is_some()] {
                label for=(id) {
                    (field.name)
                    @if field.required { " " abbr title="required" { "*" } }
                }
                @match (&field.kind, choices) {
                    (FieldType::Ref(_), Some(choices)) => {
                        select id=(id) name=(field.name) aria-invalid=[invalid] aria-describedby=[&described] {
                            option value="" { "—" }
                            @for (choice, label) in choices {
                                @let choice = choice.to_string();
                                option value=(choice) selected[choice == value] { (label) " (#" (choice) ")" }
                            }
                        }
                    }
                    (FieldType::Boolean, _) => {
                        select id=(id) name=(field.name) aria-invalid=[invalid] aria-describedby=[&described] {
                            option value="" { "—" }
                            option value="true" selected[value == "true"] { "Yes" }
                            option value="false" selected[value == "false"] { "No" }
                        }
                    }
                    (FieldType::Text, _) if !field.rules.values.is_empty() => {
                        select id=(id) name=(field.name) aria-invalid=[invalid] aria-describedby=[&described] {
                            option value="" { "—" }
                            @for choice in &field.rules.values {
                                option value=(choice) selected[choice == value] { (choice) }
                            }
                        }
                    }
                    (kind, _) => {
                        input id=(id) name=(field.name) type=(input_type(kind)) value=(value)
                            step=[step(kind)]
                            min=[field.rules.min.as_deref()] max=[field.rules.max.as_deref()]
                            maxlength=[field.rules.max_length]
                            required[field.required]
                            aria-invalid=[invalid] aria-describedby=[&described];
                    }
                }
                @if !hint.is_empty() { p.hint id=(format!("{id}-hint")) { (hint) } }
                @if let Some(error) = error {
                    p.error id=(format!("{id}-error")) { (error.to_string()) }
                }
            }
        }
    }
}

/// The `<input type>` of a field type.
fn input_type(kind: &FieldType) -> &'static str {
    match kind {
        FieldType::Integer | FieldType::Decimal | FieldType::Ref(_) => "number",
        FieldType::Date => "date",
        FieldType::DateTime => "datetime-local",
        FieldType::Text | FieldType::Boolean => "text",
    }
}

/// The `step` of a number or time input.
fn step(kind: &FieldType) -> Option<&'static str> {
    match kind {
        FieldType::Integer | FieldType::Ref(_) => Some("1"),
        FieldType::Decimal => Some("any"),
        FieldType::DateTime => Some("1"),
        _ => None,
    }
}

/// What the field accepts, in words, for the line under its input (`picked`: chosen from a
/// list).
fn hint(field: &Field, picked: bool) -> String {
    let rules = &field.rules;
    let mut parts = Vec::new();
    if let FieldType::Ref(target) = &field.kind
        && !picked
    {
        parts.push(format!("the id of a {target}"));
    }
    if field.kind == FieldType::DateTime {
        parts.push("in UTC".to_owned());
    }
    if let Some(min) = &rules.min {
        parts.push(format!("at least {min}"));
    }
    if let Some(max) = &rules.max {
        parts.push(format!("at most {max}"));
    }
    if let Some(n) = rules.max_length {
        parts.push(format!("up to {n} characters"));
    }
    if let Some(pattern) = &rules.pattern {
        parts.push(format!("matching {pattern}"));
    }
    if rules.unique {
        parts.push("unique".to_owned());
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_datetime_local_input_is_read_as_utc() {
        let kind = FieldType::DateTime;
        assert_eq!(
            typed(&kind, "2026-12-03T10:15").as_deref(),
            Ok("2026-12-03T10:15:00Z")
        );
        assert_eq!(
            typed(&kind, "2026-12-03T10:15:30").as_deref(),
            Ok("2026-12-03T10:15:30Z")
        );
        assert!(typed(&kind, "yesterday").is_err());
        let stored = Value::String("2026-12-03T11:15:30+01:00".into());
        assert_eq!(input_text(&kind, Some(&stored)), "2026-12-03T10:15:30");
    }
}
