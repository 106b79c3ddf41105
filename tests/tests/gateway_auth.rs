//! The gateway's authentication and authorisation: each role against each RPC, tokens of one
//! tenant against the resources of another, bad tokens, failed logins, and no event written by
//! any refused call.

#![allow(clippy::unwrap_used)] // a test fails loudly on the first unexpected error

use std::time::{SystemTime, UNIX_EPOCH};

use neo_gateway::api::{
    self, events_client::EventsClient, identity_client::IdentityClient,
    tenants_client::TenantsClient,
};
use neo_gateway::auth::{Claims, sign};
use neo_protocol::pb::Role;
use neo_tests::gateway::{People, ROOT, Stack, first_event, password, req, rule};
use tonic::metadata::MetadataValue;
use tonic::{Code, Request, Status};

/// Every RPC that takes a token, with arguments that the platform would accept for an
/// allowed caller (Deploy and Rollback twice: on the first stage and on a later one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rpc {
    WhoAmI,
    CreateUser,
    CreateTenant,
    GetTenant,
    ListTenants,
    AddStage,
    RemoveStage,
    SetMember,
    RemoveMember,
    CreateApp,
    GetApp,
    ListApps,
    ListRevisions,
    UploadRevision,
    RequestBuild,
    GetBuild,
    ListBuilds,
    CancelBuild,
    DeployFirstStage,
    DeployLaterStage,
    Promote,
    RollbackFirstStage,
    RollbackLaterStage,
    GetDeployment,
    ListReleases,
    Watch,
}

/// The callers of the matrix, in its column order: (name, used to make names unique).
const ROLES: [&str; 5] = ["viewer", "developer", "devops", "admin", "platform"];

/// Who may call what: viewer, developer, devops, admin (all of tenant acme), platform admin.
const MATRIX: [(Rpc, [bool; 5]); 26] = {
    const ALL: [bool; 5] = [true; 5];
    const ADMINS: [bool; 5] = [false, false, false, true, true];
    const DEVELOPERS: [bool; 5] = [false, true, false, true, true];
    const RELEASERS: [bool; 5] = [false, true, true, true, true];
    const OPERATORS: [bool; 5] = [false, false, true, true, true];
    const PLATFORM: [bool; 5] = [false, false, false, false, true];
    [
        (Rpc::WhoAmI, ALL),
        (Rpc::CreateUser, ADMINS),
        (Rpc::CreateTenant, PLATFORM),
        (Rpc::GetTenant, ALL),
        (Rpc::ListTenants, PLATFORM),
        (Rpc::AddStage, ADMINS),
        (Rpc::RemoveStage, ADMINS),
        (Rpc::SetMember, ADMINS),
        (Rpc::RemoveMember, ADMINS),
        (Rpc::CreateApp, DEVELOPERS),
        (Rpc::GetApp, ALL),
        (Rpc::ListApps, ALL),
        (Rpc::ListRevisions, ALL),
        (Rpc::UploadRevision, DEVELOPERS),
        (Rpc::RequestBuild, DEVELOPERS),
        (Rpc::GetBuild, ALL),
        (Rpc::ListBuilds, ALL),
        (Rpc::CancelBuild, DEVELOPERS),
        (Rpc::DeployFirstStage, RELEASERS),
        (Rpc::DeployLaterStage, OPERATORS),
        (Rpc::Promote, OPERATORS),
        (Rpc::RollbackFirstStage, RELEASERS),
        (Rpc::RollbackLaterStage, OPERATORS),
        (Rpc::GetDeployment, ALL),
        (Rpc::ListReleases, ALL),
        (Rpc::Watch, ALL),
    ]
};

/// The RPCs that name no tenant.
fn names_a_tenant(rpc: Rpc) -> bool {
    !matches!(
        rpc,
        Rpc::WhoAmI | Rpc::CreateUser | Rpc::CreateTenant | Rpc::ListTenants
    )
}

/// Calls `rpc` on `tenant`'s resources with `token`; `salt` makes the names it creates unique.
async fn call(stack: &Stack, rpc: Rpc, token: &str, t: &str, salt: &str) -> Result<(), Status> {
    let (mut identity, mut tenants) = (stack.identity(token), stack.tenants(token));
    let (mut apps, mut builds) = (stack.apps(token), stack.builds(token));
    let mut deployments = stack.deployments(token);
    let (stage, user, app) = (
        format!("s-{salt}"),
        format!("u-{salt}"),
        format!("app-{salt}"),
    );
    match rpc {
        Rpc::WhoAmI => drop(identity.who_am_i(api::WhoAmIRequest {}).await?),
        Rpc::CreateUser => drop(
            identity
                .create_user(req::user(&format!("n-{salt}")))
                .await?,
        ),
        Rpc::CreateTenant => {
            let tenant = req::tenant(&format!("t-{salt}"), "alice");
            drop(tenants.create_tenant(tenant).await?);
        }
        Rpc::GetTenant => drop(tenants.get_tenant(req::get_tenant(t)).await?),
        Rpc::ListTenants => drop(tenants.list_tenants(req::list_tenants(None)).await?),
        Rpc::AddStage => drop(tenants.add_stage(req::add_stage(t, &stage, "prod")).await?),
        Rpc::RemoveStage => drop(tenants.remove_stage(req::remove_stage(t, &stage)).await?),
        Rpc::SetMember => {
            let member = req::set_member(t, &user, Role::Viewer);
            drop(tenants.set_member(member).await?);
        }
        Rpc::RemoveMember => drop(tenants.remove_member(req::remove_member(t, &user)).await?),
        Rpc::CreateApp => drop(apps.create_app(req::create_app(t, &app)).await?),
        Rpc::GetApp => drop(apps.get_app(req::get_app(t, "shop")).await?),
        Rpc::ListApps => drop(apps.list_apps(req::list_apps(t, None)).await?),
        Rpc::ListRevisions => {
            drop(
                apps.list_revisions(req::list_revisions(t, "shop", None))
                    .await?,
            );
        }
        Rpc::UploadRevision => {
            let content = format!("model by {salt}");
            drop(stack.upload(token, t, "shop", content.as_bytes()).await?);
        }
        Rpc::RequestBuild => {
            drop(
                builds
                    .request_build(req::request_build(t, "shop", 2))
                    .await?,
            );
        }
        Rpc::GetBuild => drop(builds.get_build(req::get_build(t, "shop_r1")).await?),
        Rpc::ListBuilds => drop(builds.list_builds(req::list_builds(t, "", None)).await?),
        Rpc::CancelBuild => {
            let cancel = req::cancel_build(t, "shop_r2", salt);
            drop(builds.cancel_build(cancel).await?);
        }
        Rpc::DeployFirstStage => {
            drop(deployments.deploy(req::deploy(t, "shop", "dev", 1)).await?);
        }
        Rpc::DeployLaterStage => {
            drop(
                deployments
                    .deploy(req::deploy(t, "shop", "prod", 1))
                    .await?,
            );
        }
        Rpc::Promote => drop(deployments.promote(req::promote(t, "shop", "test")).await?),
        Rpc::RollbackFirstStage => {
            let rollback = req::rollback(t, "shop", "dev", 1);
            drop(deployments.rollback(rollback).await?);
        }
        Rpc::RollbackLaterStage => {
            let rollback = req::rollback(t, "shop", "prod", 1);
            drop(deployments.rollback(rollback).await?);
        }
        Rpc::GetDeployment => {
            let get = req::get_deployment(t, "shop", "dev");
            drop(deployments.get_deployment(get).await?);
        }
        Rpc::ListReleases => {
            let list = req::list_releases(t, "shop", "dev", None);
            drop(deployments.list_releases(list).await?);
        }
        Rpc::Watch => drop(first_event(&mut stack.events(token), req::watch(t, 0)).await?),
    }
    Ok(())
}

/// Both tenants with an app `shop` (two revisions, the first built) released twice on `dev`
/// (and, in acme, on `prod`), and the users the matrix adds as members.
async fn world() -> (Stack, People) {
    let stack = Stack::start().await.unwrap();
    let people = stack.people().await.unwrap();
    for salt in ROLES.iter().chain(&["beta"]) {
        stack
            .create_user(&people.root, &format!("u-{salt}"))
            .await
            .unwrap();
    }
    for (tenant, developer, operator) in [
        ("acme", &people.dave, &people.otto),
        ("beta", &people.bob, &people.bob),
    ] {
        stack
            .app_with_revisions(developer, tenant, "shop", &[b"one", b"two"])
            .await
            .unwrap();
        stack.built(developer, tenant, "shop", 1, 1).await.unwrap();
        let stages: &[&str] = if tenant == "acme" {
            &["dev", "prod"]
        } else {
            &["dev"]
        };
        for stage in stages {
            for _ in 0..2 {
                let deploy = req::deploy(tenant, "shop", stage, 1);
                stack.deployments(operator).deploy(deploy).await.unwrap();
            }
        }
    }
    (stack, people)
}

#[tokio::test]
async fn each_role_may_call_exactly_what_the_matrix_allows_and_a_refusal_writes_nothing() {
    let (stack, people) = world().await;
    let tokens = [
        &people.vic,
        &people.dave,
        &people.otto,
        &people.alice,
        &people.root,
    ];
    let mut wrong = Vec::new();
    for (column, (role, token)) in ROLES.iter().zip(tokens).enumerate() {
        for (rpc, allowed) in MATRIX {
            let before = stack.event_count().await.unwrap();
            let result = call(&stack, rpc, token, "acme", role).await;
            let written = stack.event_count().await.unwrap() - before;
            match (allowed[column], result) {
                // Allowed: done (a second Promote finds the stage already on that image).
                (true, Ok(())) => {}
                (true, Err(s)) if rule(&s) == "promotion.unchanged" => {}
                (true, Err(s)) => wrong.push(format!("{role} {rpc:?}: allowed, got {s:?}")),
                (false, Ok(())) => wrong.push(format!("{role} {rpc:?}: forbidden, but it worked")),
                (false, Err(s)) if s.code() != Code::PermissionDenied => {
                    wrong.push(format!("{role} {rpc:?}: forbidden, got {s:?}"));
                }
                (false, Err(_)) if written != 0 => {
                    wrong.push(format!(
                        "{role} {rpc:?}: refused but wrote {written} events"
                    ));
                }
                (false, Err(_)) => {}
            }
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

#[tokio::test]
async fn a_token_of_one_tenant_is_denied_on_every_resource_of_another() {
    let (stack, people) = world().await;
    let mut wrong = Vec::new();
    for (who, token, tenant) in [
        ("bob of beta", &people.bob, "acme"),
        ("alice of acme", &people.alice, "beta"),
        ("alice of acme", &people.alice, "nowhere"),
    ] {
        for (rpc, _) in MATRIX.into_iter().filter(|(rpc, _)| names_a_tenant(*rpc)) {
            let before = stack.event_count().await.unwrap();
            let result = call(&stack, rpc, token, tenant, "beta").await;
            let written = stack.event_count().await.unwrap() - before;
            match result {
                Err(s) if s.code() == Code::PermissionDenied && written == 0 => {}
                Err(s) if s.code() == Code::PermissionDenied => {
                    wrong.push(format!("{who} {rpc:?} on {tenant}: wrote {written} events"));
                }
                other => wrong.push(format!("{who} {rpc:?} on {tenant}: {other:?}")),
            }
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
    // beta's admin still manages beta.
    call(&stack, Rpc::AddStage, &people.bob, "beta", "beta")
        .await
        .unwrap();
}

fn now_s() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// A request whose `authorization` metadata is exactly `auth` (none when `None`).
fn raw<T>(message: T, auth: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(auth) = auth {
        let value = MetadataValue::try_from(auth).unwrap();
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// Calls WhoAmI, CreateTenant, GetTenant and Watch with `auth`; their statuses.
async fn calls_with(stack: &Stack, auth: Option<&str>) -> Vec<(&'static str, Result<(), Status>)> {
    let mut identity = IdentityClient::new(stack.channel());
    let mut tenants = TenantsClient::new(stack.channel());
    let mut events = EventsClient::new(stack.channel());
    let who_am_i = identity.who_am_i(raw(api::WhoAmIRequest {}, auth)).await;
    let create = tenants.create_tenant(raw(req::tenant("forged", "alice"), auth));
    let create = create.await.map(drop);
    let get = tenants.get_tenant(raw(req::get_tenant("acme"), auth)).await;
    let watch = async {
        let watch = events.watch(raw(req::watch("acme", 0), auth)).await;
        watch?.into_inner().message().await.map(drop)
    };
    vec![
        ("WhoAmI", who_am_i.map(drop)),
        ("CreateTenant", create),
        ("GetTenant", get.map(drop)),
        ("Watch", watch.await),
    ]
}

#[tokio::test]
async fn missing_garbage_expired_and_forged_tokens_are_unauthenticated() {
    let stack = Stack::start().await.unwrap();
    let people = stack.people().await.unwrap();
    let claims = |exp: i64| Claims {
        sub: ROOT.into(),
        tenant: String::new(),
        role: String::new(),
        platform_admin: true,
        iat: now_s() - 7200,
        iat_ms: 0,
        exp,
    };
    let expired = sign(&stack.key, &claims(now_s() - 60)).unwrap();
    let wrong_key = sign(b"not the gateway's key", &claims(now_s() + 3600)).unwrap();
    // A real token's signature under forged claims, and the same claims unsigned.
    let forged_payload = wrong_key.split('.').nth(1).unwrap();
    let real_signature = people.vic.rsplit('.').next().unwrap();
    let spliced = format!("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.{forged_payload}.{real_signature}");
    let unsigned = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{forged_payload}.");
    let cases = [
        ("no authorization", None),
        ("a word, not a token", Some("Bearer garbage".to_owned())),
        ("an empty bearer", Some("Bearer ".to_owned())),
        ("another scheme", Some(format!("Basic {}", people.vic))),
        ("an expired token", Some(format!("Bearer {expired}"))),
        ("another key's token", Some(format!("Bearer {wrong_key}"))),
        ("a spliced token", Some(format!("Bearer {spliced}"))),
        ("an unsigned token", Some(format!("Bearer {unsigned}"))),
    ];
    let before = stack.event_count().await.unwrap();
    let mut wrong = Vec::new();
    for (case, auth) in &cases {
        for (rpc, result) in calls_with(&stack, auth.as_deref()).await {
            match result {
                Err(s) if s.code() == Code::Unauthenticated => {}
                other => wrong.push(format!("{case}, {rpc}: {other:?}")),
            }
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
    assert_eq!(
        stack.event_count().await.unwrap(),
        before,
        "nothing written"
    );

    // The same claims, signed with the gateway's key and not expired, are a platform admin.
    let valid = sign(&stack.key, &claims(now_s() + 60)).unwrap();
    for (rpc, result) in calls_with(&stack, Some(&format!("Bearer {valid}"))).await {
        assert!(result.is_ok(), "{rpc}: {result:?}");
    }
}

#[tokio::test]
async fn failed_logins_say_who_failed_and_write_nothing() {
    let stack = Stack::start().await.unwrap();
    stack.people().await.unwrap();
    let before = stack.event_count().await.unwrap();
    let cases = [
        (
            "an unknown user",
            "mallory",
            password("mallory"),
            "acme",
            Code::Unauthenticated,
        ),
        (
            "a wrong password",
            "alice",
            password("bob"),
            "acme",
            Code::Unauthenticated,
        ),
        (
            "a tenant of others",
            "alice",
            password("alice"),
            "beta",
            Code::PermissionDenied,
        ),
        (
            "a missing tenant",
            "alice",
            password("alice"),
            "nowhere",
            Code::PermissionDenied,
        ),
        (
            "the platform, not an admin",
            "alice",
            password("alice"),
            "",
            Code::PermissionDenied,
        ),
        (
            "the platform, wrong password",
            ROOT,
            password("root"),
            "",
            Code::Unauthenticated,
        ),
    ];
    for (case, user, password, tenant, code) in cases {
        let status = stack.login(user, &password, tenant).await.unwrap_err();
        assert_eq!(status.code(), code, "{case}: {status:?}");
    }
    assert_eq!(
        stack.event_count().await.unwrap(),
        before,
        "nothing written"
    );

    // Each user gets a token of their own tenant and role.
    let mut identity = stack.anonymous();
    for (user, tenant, role) in [
        ("alice", "acme", Role::Admin),
        ("dave", "acme", Role::Developer),
        ("otto", "acme", Role::Devops),
        ("vic", "acme", Role::Viewer),
        ("bob", "beta", Role::Admin),
    ] {
        let reply = identity
            .login(api::LoginRequest {
                user: user.into(),
                password: password(user),
                tenant: tenant.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (reply.tenant.as_str(), reply.role()),
            (tenant, role),
            "{user}"
        );
        assert!(!reply.platform_admin, "{user}");
    }
}
