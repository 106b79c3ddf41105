//! The shell of every page: the stylesheet and htmx (no inline script, no inline style), the
//! header with the sections, who is signed in and a sign-out form.

use maud::{DOCTYPE, Markup, html};
use neo_gateway::auth::role_word;
use neo_protocol::pb::Role;

/// Who is signed in, for the header.
#[derive(Debug, Clone)]
pub struct Who {
    /// The user.
    pub user: String,
    /// Their tenant.
    pub tenant: String,
    /// Their role in it.
    pub role: Role,
    /// Whether they administer the whole platform.
    pub platform_admin: bool,
    /// The CSRF value the sign-out form carries.
    pub csrf: String,
}

/// A whole page titled `title` around `body`.
pub fn page(title: &str, who: Option<&Who>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                // htmx must not add its indicator <style> (the CSP allows no inline style).
                meta name="htmx-config" content=r#"{"includeIndicatorStyles":false}"#;
                title { (title) " · Neo Portal" }
                link rel="stylesheet" href="/assets/portal.css";
                script src="/assets/htmx.min.js" {}
                script src="/assets/sse.js" {}
            }
            body {
                a.skip href="#main" { "Skip to the content" }
                header {
                    a.brand href="/" { "Neo Portal" }
                    @if let Some(who) = who {
                        nav aria-label="Sections" {
                            a href="/" { "Board" }
                            a href="/logs" { "Logs" }
                            a href="/metrics" { "Metrics" }
                            a href="/audit" { "Audit" }
                            @if who.platform_admin || who.role == Role::Admin {
                                a href="/members" { "Members" }
                            }
                            a href="/tenants" { "Tenants" }
                        }
                        span.who {
                            span #who-user { (who.user) } " · "
                            span #who-tenant { (if who.tenant.is_empty() { "platform" } else { &who.tenant }) } " · "
                            span #who-role { (if who.platform_admin { "platform admin" } else { role_word(who.role) }) }
                        }
                        form.signout method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(who.csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main #main { (body) }
            }
        }
    }
}

/// An error page body: what went wrong, and a way back.
pub fn error(message: &str) -> Markup {
    html! {
        h1 { "Something went wrong" }
        p.error role="alert" #error { (message) }
        p { a href="/" { "Back to the board" } }
    }
}

/// A refusal beside the form field `name` (`#field-{name}-error`, announced to screen readers).
pub fn field_error(name: &str, message: Option<&str>) -> Markup {
    html! {
        @if let Some(message) = message {
            span.field-error role="alert" id=(format!("field-{name}-error")) { (message) }
        }
    }
}

/// A refusal above a form.
pub fn form_error(id: &str, message: Option<&str>) -> Markup {
    html! {
        @if let Some(message) = message {
            p.error role="alert" id=(id) { (message) }
        }
    }
}
