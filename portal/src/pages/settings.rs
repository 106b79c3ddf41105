//! An app's settings and secrets on one stage: settings with their values, secrets by name and
//! version only (a value goes in and never comes back), what the running build still needs, and
//! for who may change them, forms to set and unset each (a refusal beside its field).

use maud::{Markup, html};
use neo_gateway::api;

use super::layout;
use crate::respond::{Refusal, encode};

/// Which form a refusal came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// Setting (or unsetting) a setting.
    Setting,
    /// Setting (or unsetting) a secret.
    Secret,
}

/// What the page shows.
#[derive(Debug, Clone, Default)]
pub struct SettingsPage {
    /// The stage's settings and secrets.
    pub settings: api::StageSettings,
    /// Whether the user may change them.
    pub may_change: bool,
    /// The CSRF value the forms carry.
    pub csrf: String,
    /// The last refusal, and the form and the name typed.
    pub refused: Option<(Form, Refusal, String)>,
    /// What the last change did ("secret db_password set: version 2").
    pub done: Option<String>,
}

/// The page's body.
pub fn page(p: &SettingsPage) -> Markup {
    let s = &p.settings;
    let base = format!("/apps/{}/{}", encode(&s.app), encode(&s.stage));
    let refused = |form: Form| {
        p.refused
            .as_ref()
            .filter(|(f, _, _)| *f == form)
            .map(|(_, r, name)| (r, name.as_str()))
    };
    let missing = s.missing.clone().unwrap_or_default();
    html! {
        h1 { a href=(format!("/apps/{}", encode(&s.app))) { (s.app) } " on " (s.stage) ": settings and secrets" }
        @if let Some(done) = &p.done { p.done role="status" #done { (done) } }
        @if !missing.settings.is_empty() || !missing.secrets.is_empty() {
            p.error #missing {
                "The running build needs what this stage lacks: "
                (missing.settings.iter().chain(&missing.secrets).cloned().collect::<Vec<_>>().join(", "))
            }
        }
        section #settings {
            h2 { "Settings" }
            @if s.settings.is_empty() { p.none { "No setting." } }
            @else {
                table.grid {
                    thead { tr { th scope="col" { "Name" } th scope="col" { "Value" } @if p.may_change { th scope="col" { span.visually-hidden { "Actions" } } } } }
                    tbody {
                        @for (name, value) in &s.settings {
                            tr id=(format!("setting-{name}")) {
                                td { code { (name) } } td { (value) }
                                @if p.may_change { td { (unset(&format!("{base}/settings"), &p.csrf, name)) } }
                            }
                        }
                    }
                }
            }
            @if p.may_change { (set_form(&format!("{base}/settings"), &p.csrf, Form::Setting, refused(Form::Setting))) }
        }
        section #secrets {
            h2 { "Secrets" }
            p.hint { "A secret's value is sealed in the secrets store: it is never shown again." }
            @if s.secrets.is_empty() { p.none { "No secret." } }
            @else {
                table.grid {
                    thead { tr {
                        th scope="col" { "Name" } th scope="col" { "Version" } th scope="col" { "Changed by" }
                        @if p.may_change { th scope="col" { span.visually-hidden { "Actions" } } }
                    } }
                    tbody {
                        @for secret in &s.secrets {
                            tr id=(format!("secret-{}", secret.name)) {
                                td { code { (secret.name) } }
                                td { (secret.version) }
                                td { (secret.changed_by) }
                                @if p.may_change { td { (unset(&format!("{base}/secrets"), &p.csrf, &secret.name)) } }
                            }
                        }
                    }
                }
            }
            @if p.may_change { (set_form(&format!("{base}/secrets"), &p.csrf, Form::Secret, refused(Form::Secret))) }
        }
    }
}

fn unset(action: &str, csrf: &str, name: &str) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="unset" value=(name);
            button.secondary type="submit" aria-label=(format!("Unset {name}")) { "Unset" }
        }
    }
}

fn set_form(action: &str, csrf: &str, form: Form, refused: Option<(&Refusal, &str)>) -> Markup {
    let (what, input_type, prefix) = match form {
        Form::Setting => ("setting", "text", "setting"),
        Form::Secret => ("secret", "password", "secret"),
    };
    let refusal = refused.map(|(r, _)| r);
    let typed = refused.map(|(_, name)| name).unwrap_or_default();
    html! {
        form.fields id=(format!("{prefix}-form")) method="post" action=(action) {
            h3 { "Set a " (what) }
            input type="hidden" name="csrf" value=(csrf);
            (layout::form_error(&format!("{prefix}-error"), Refusal::general(refusal, &["name", "value"]).as_deref()))
            div.field {
                label for=(format!("{prefix}-name")) { "Name" }
                input id=(format!("{prefix}-name")) type="text" name="name" value=(typed) required
                    autocomplete="off" aria-describedby=(format!("{prefix}-name-hint"));
                span.hint id=(format!("{prefix}-name-hint")) { "lower case letters, digits and _" }
                (layout::field_error(&format!("{prefix}-name"), Refusal::about(refusal, "name").as_deref()))
            }
            div.field {
                label for=(format!("{prefix}-value")) { "Value" }
                input id=(format!("{prefix}-value")) type=(input_type) name="value" autocomplete="off" required;
                (layout::field_error(&format!("{prefix}-value"), Refusal::about(refusal, "value").as_deref()))
            }
            button type="submit" { "Set " (what) }
        }
    }
}
