//! Sign-in with the platform's users: user, password and (for a user of several tenants) the
//! tenant; a refusal is shown above the form.

use maud::{Markup, html};

/// The sign-in form, with `error` when the last attempt was refused and the values typed.
pub fn form(csrf: &str, user: &str, tenant: &str, error: Option<&str>) -> Markup {
    html! {
        h1 { "Sign in" }
        @if let Some(error) = error {
            p.error role="alert" #login-error { (error) }
        }
        form.login method="post" action="/login" {
            input type="hidden" name="csrf" value=(csrf);
            label for="user" { "User" }
            input #user type="text" name="user" value=(user) autocomplete="username" required autofocus;
            label for="password" { "Password" }
            input #password type="password" name="password" autocomplete="current-password" required;
            label for="tenant" { "Tenant " span.hint { "(if you belong to several)" } }
            input #tenant type="text" name="tenant" value=(tenant);
            button #sign-in type="submit" { "Sign in" }
        }
    }
}
