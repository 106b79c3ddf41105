//! The tenants page (switch, and create for platform admins) and the members page.

use axum::http::StatusCode;
use axum::response::Response;
use neo_gateway::api;
use neo_gateway::auth::role_word;
use tonic::{Code, Status};

use super::{CheckedForm, SignedIn};
use crate::pages::layout;
use crate::pages::tenants::{self, ROLES};
use crate::respond::{FIELD_TRAILER, Refusal, failure, html, http_status, redirect, with_field};

async fn tenants_response(
    signed: &SignedIn,
    refused: Option<&Status>,
    typed: &[(&str, String)],
) -> Response {
    let mine = match signed
        .user
        .identity()
        .list_my_tenants(api::ListMyTenantsRequest {})
        .await
    {
        Ok(m) => m.into_inner().tenants,
        Err(status) => return failure(&status),
    };
    let refusal = refused.map(Refusal::of);
    let code = refused.map_or(StatusCode::OK, http_status);
    html(
        code,
        layout::page(
            "Tenants",
            Some(&signed.who),
            tenants::tenants(&signed.who, &mine, refusal.as_ref(), typed),
        ),
        &[],
    )
}

/// `GET /tenants`.
pub async fn list(signed: SignedIn) -> Response {
    tenants_response(&signed, None, &[]).await
}

/// `POST /tenants`: create one (platform admins).
pub async fn create(CheckedForm { signed, fields }: CheckedForm) -> Response {
    let field = |n: &str| {
        fields
            .get(n)
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    let stages: Vec<String> = field("stages")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let request = api::CreateTenantRequest {
        name: field("name"),
        display_name: field("display_name"),
        stages,
        admin: field("admin"),
    };
    match signed.user.tenants().create_tenant(request).await {
        Ok(_) => redirect("/tenants", &[]),
        Err(status) => {
            // `stages[2]` is the form's `stages`.
            let stages_field = status
                .metadata()
                .get(FIELD_TRAILER)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|f| f.starts_with("stages["));
            let status = if stages_field {
                with_field(status, "stages")
            } else {
                status
            };
            let typed: Vec<(&str, String)> = ["name", "display_name", "stages", "admin"]
                .into_iter()
                .map(|n| (n, field(n)))
                .collect();
            tenants_response(&signed, Some(&status), &typed).await
        }
    }
}

async fn members_response(
    signed: &SignedIn,
    refused: Option<&Status>,
    typed_user: &str,
) -> Response {
    let tenant = match signed
        .user
        .tenants()
        .get_tenant(api::GetTenantRequest {
            tenant: signed.who.tenant.clone(),
        })
        .await
    {
        Ok(t) => t.into_inner(),
        Err(status) => return failure(&status),
    };
    let refusal = refused.map(Refusal::of);
    let code = refused.map_or(StatusCode::OK, http_status);
    html(
        code,
        layout::page(
            "Members",
            Some(&signed.who),
            tenants::members(&signed.who, &tenant, refusal.as_ref(), typed_user),
        ),
        &[],
    )
}

/// `GET /members`.
pub async fn members(signed: SignedIn) -> Response {
    members_response(&signed, None, "").await
}

/// `POST /members`: set `user`'s `role`, or `remove` them.
pub async fn change_member(CheckedForm { signed, fields }: CheckedForm) -> Response {
    let user = fields
        .get("user")
        .map(|u| u.trim().to_owned())
        .unwrap_or_default();
    let tenant = signed.who.tenant.clone();
    let outcome = if fields.contains_key("remove") {
        let request = api::RemoveMemberRequest {
            tenant,
            user: user.clone(),
        };
        signed.user.tenants().remove_member(request).await
    } else {
        let word = fields.get("role").map(String::as_str).unwrap_or_default();
        let role = ROLES
            .into_iter()
            .find(|r| role_word(*r) == word)
            .map_or(0, |r| r as i32);
        let request = api::SetMemberRequest {
            tenant,
            user: user.clone(),
            role,
        };
        signed.user.tenants().set_member(request).await
    };
    match outcome {
        Ok(_) => redirect("/members", &[]),
        Err(status) => {
            // An unknown user is the form's `user` field.
            let status = if status.code() == Code::NotFound {
                with_field(status, "user")
            } else {
                status
            };
            members_response(&signed, Some(&status), &user).await
        }
    }
}
