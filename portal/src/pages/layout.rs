//! The shell of every page: the stylesheet and htmx (no inline script, no inline style), the
//! header with who is signed in and a sign-out form.

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
                header {
                    a.brand href="/" { "Neo Portal" }
                    @if let Some(who) = who {
                        span.who {
                            span #who-user { (who.user) } " · "
                            span #who-tenant { (who.tenant) } " · "
                            span #who-role { (role_word(who.role)) }
                        }
                        form.signout method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(who.csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { (body) }
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
