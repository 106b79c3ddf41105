//! Tenants and members: the user's tenants to switch between (every tenant and a form to
//! create one for a platform admin), and a tenant's members and roles (changed by its admins).

use maud::{Markup, html};
use neo_gateway::api;
use neo_gateway::auth::role_word;
use neo_protocol::pb::Role;

use super::layout::{self, Who};
use crate::respond::Refusal;

/// The roles a member may have, least first.
pub const ROLES: [Role; 4] = [Role::Viewer, Role::Developer, Role::Devops, Role::Admin];

/// The tenants page's body: `mine` to switch to; for a platform admin the creation form, with
/// `refused` beside its field and `typed` the values kept.
pub fn tenants(
    who: &Who,
    mine: &[api::Membership],
    refused: Option<&Refusal>,
    typed: &[(&str, String)],
) -> Markup {
    let value = |name: &str| {
        typed
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    html! {
        h1 { "Tenants" }
        @if mine.is_empty() { p.none { "You are a member of no tenant." } }
        @else {
            table.grid #tenants {
                thead { tr { th scope="col" { "Tenant" } th scope="col" { "Your role" } th scope="col" { span.visually-hidden { "Actions" } } } }
                tbody {
                    @for m in mine {
                        @let role = Role::try_from(m.role).unwrap_or(Role::Unspecified);
                        tr id=(format!("tenant-{}", m.tenant)) {
                            td { (m.tenant) }
                            td { @if role == Role::Unspecified { "platform admin" } @else { (role_word(role)) } }
                            td {
                                @if m.tenant == who.tenant { strong { "current" } }
                                @else {
                                    form.inline method="post" action="/switch" {
                                        input type="hidden" name="csrf" value=(who.csrf);
                                        input type="hidden" name="tenant" value=(m.tenant);
                                        button type="submit" aria-label=(format!("Switch to {}", m.tenant)) { "Switch" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if who.platform_admin {
            form.fields #create-tenant method="post" action="/tenants" {
                h2 { "Create a tenant" }
                input type="hidden" name="csrf" value=(who.csrf);
                (layout::form_error("create-tenant-error", Refusal::general(refused, &["name", "display_name", "stages", "admin"]).as_deref()))
                @for (name, label, hint) in [
                    ("name", "Name", "lower case letters, digits and -"),
                    ("display_name", "Display name", ""),
                    ("stages", "Stages", "in promotion order, comma-separated (empty: dev, test, prod)"),
                    ("admin", "First admin", "an existing user"),
                ] {
                    div.field {
                        label for=(format!("tenant-{name}")) { (label) }
                        input id=(format!("tenant-{name}")) type="text" name=(name) value=(value(name)) required[name == "name"];
                        @if !hint.is_empty() { span.hint { (hint) } }
                        (layout::field_error(name, Refusal::about(refused, name).as_deref()))
                    }
                }
                button type="submit" { "Create the tenant" }
            }
        }
    }
}

/// The members page's body.
pub fn members(
    who: &Who,
    tenant: &api::Tenant,
    refused: Option<&Refusal>,
    typed_user: &str,
) -> Markup {
    let state = tenant.state.clone().unwrap_or_default();
    let admin = who.platform_admin || who.role == Role::Admin;
    let mut members: Vec<(String, Role)> = state
        .members
        .iter()
        .map(|(u, r)| (u.clone(), Role::try_from(*r).unwrap_or(Role::Unspecified)))
        .collect();
    members.sort();
    html! {
        h1 { "Members of " (tenant.name) }
        table.grid #members {
            thead { tr { th scope="col" { "User" } th scope="col" { "Role" } @if admin { th scope="col" { span.visually-hidden { "Actions" } } } } }
            tbody {
                @for (user, role) in &members {
                    tr id=(format!("member-{user}")) {
                        td { (user) }
                        td { (role_word(*role)) }
                        @if admin {
                            td {
                                form.inline method="post" action="/members" {
                                    input type="hidden" name="csrf" value=(who.csrf);
                                    input type="hidden" name="user" value=(user);
                                    input type="hidden" name="remove" value="1";
                                    button.secondary type="submit" aria-label=(format!("Remove {user}")) { "Remove" }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if admin {
            form.fields #set-member method="post" action="/members" {
                h2 { "Add a member or change a role" }
                input type="hidden" name="csrf" value=(who.csrf);
                (layout::form_error("member-error", Refusal::general(refused, &["user", "role"]).as_deref()))
                div.field {
                    label for="member-user" { "User" }
                    input #member-user type="text" name="user" value=(typed_user) required;
                    (layout::field_error("user", Refusal::about(refused, "user").as_deref()))
                }
                div.field {
                    label for="member-role" { "Role" }
                    select #member-role name="role" {
                        @for role in ROLES { option value=(role_word(role)) { (role_word(role)) } }
                    }
                    (layout::field_error("role", Refusal::about(refused, "role").as_deref()))
                }
                button type="submit" { "Set the role" }
            }
        }
    }
}
