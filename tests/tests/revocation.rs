//! Access ends when it should: a token whose member was removed or whose role changed, whose
//! user was deleted or logged out, or whose tenant was deleted fails on its next calls within a
//! second, on a real gateway and platform; a new login gets what is true now.
#![allow(clippy::unwrap_used)] // a test fails loudly on the first unexpected error

use std::time::Duration;

use neo_gateway::api;
use neo_protocol::pb::Role;
use neo_tests::eventually;
use neo_tests::gateway::{People, Stack, password, req};
use tonic::Code;

async fn stack() -> (Stack, People) {
    let stack = Stack::start().await.unwrap();
    let people = stack.people().await.unwrap();
    (stack, people)
}

/// What a call to acme's apps with `token` answers: `Ok` or the status code.
async fn lists_apps(stack: &Stack, token: &str) -> Result<(), Code> {
    stack
        .apps(token)
        .list_apps(req::list_apps("acme", None))
        .await
        .map(drop)
        .map_err(|s| s.code())
}

/// Waits at most a second for `token` to be refused as unauthenticated.
async fn refused_within_a_second(stack: &Stack, token: &str, why: &str) {
    eventually(Duration::from_secs(1), why, || async {
        (lists_apps(stack, token).await == Err(Code::Unauthenticated)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_removed_member_or_a_changed_role_ends_the_old_token() {
    let (stack, people) = stack().await;
    assert_eq!(lists_apps(&stack, &people.dave).await, Ok(()));
    stack
        .tenants(&people.alice)
        .remove_member(req::remove_member("acme", "dave"))
        .await
        .unwrap();
    refused_within_a_second(&stack, &people.dave, "dave's token refused").await;
    // Creating an app with it is refused as well: nothing is written.
    let create = stack
        .apps(&people.dave)
        .create_app(req::create_app("acme", "sneaky"))
        .await
        .unwrap_err();
    assert_eq!(create.code(), Code::Unauthenticated, "{create:?}");
    assert!(create.message().contains("membership"), "{create:?}");
    let again = stack.login("dave", &password("dave"), "acme").await;
    assert_eq!(again.unwrap_err().code(), Code::PermissionDenied);

    // Otto, devops, lowered to viewer: his devops token ends; a new login is a viewer's.
    assert_eq!(lists_apps(&stack, &people.otto).await, Ok(()));
    stack
        .tenants(&people.alice)
        .set_member(req::set_member("acme", "otto", Role::Viewer))
        .await
        .unwrap();
    refused_within_a_second(&stack, &people.otto, "otto's devops token refused").await;
    let viewer = stack
        .login("otto", &password("otto"), "acme")
        .await
        .unwrap();
    assert_eq!(lists_apps(&stack, &viewer).await, Ok(()));
    let who = stack
        .identity(&viewer)
        .who_am_i(api::WhoAmIRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(who.role(), Role::Viewer);
    // Others are untouched.
    assert_eq!(lists_apps(&stack, &people.vic).await, Ok(()));
}

#[tokio::test]
async fn logout_and_deleting_a_user_end_every_token_of_theirs() {
    let (stack, people) = stack().await;
    let second = stack.login("vic", &password("vic"), "acme").await.unwrap();
    let out = stack
        .identity(&people.vic)
        .logout(api::LogoutRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(out.user, "vic");
    refused_within_a_second(&stack, &people.vic, "vic's first token refused").await;
    refused_within_a_second(&stack, &second, "vic's second token refused").await;
    let fresh = stack.login("vic", &password("vic"), "acme").await.unwrap();
    assert_eq!(lists_apps(&stack, &fresh).await, Ok(()));

    // Only a platform admin deletes users.
    let denied = stack
        .identity(&people.alice)
        .delete_user(api::DeleteUserRequest {
            user: "otto".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert_eq!(lists_apps(&stack, &people.otto).await, Ok(()));
    stack
        .identity(&people.root)
        .delete_user(api::DeleteUserRequest {
            user: "otto".into(),
        })
        .await
        .unwrap();
    refused_within_a_second(&stack, &people.otto, "deleted otto's token refused").await;
    let login = stack.login("otto", &password("otto"), "acme").await;
    assert_eq!(login.unwrap_err().code(), Code::Unauthenticated);
    let gone = stack
        .identity(&people.root)
        .delete_user(api::DeleteUserRequest {
            user: "otto".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    // The name can be taken again; the old token stays refused.
    stack
        .identity(&people.root)
        .create_user(api::CreateUserRequest {
            user: "otto".into(),
            password: password("otto"),
        })
        .await
        .unwrap();
    assert_eq!(
        lists_apps(&stack, &people.otto).await,
        Err(Code::Unauthenticated)
    );
}

#[tokio::test]
async fn a_deleted_tenant_ends_its_tokens() {
    let (stack, people) = stack().await;
    assert_eq!(lists_apps(&stack, &people.dave).await, Ok(()));
    // It cannot be undone: the tenant's own admin may not delete it.
    let denied = stack
        .tenants(&people.alice)
        .delete_tenant(api::DeleteTenantRequest {
            tenant: "acme".into(),
            reason: "oops".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert_eq!(lists_apps(&stack, &people.dave).await, Ok(()));
    stack
        .tenants(&people.root)
        .delete_tenant(api::DeleteTenantRequest {
            tenant: "acme".into(),
            reason: "closing".into(),
        })
        .await
        .unwrap();
    for token in [&people.alice, &people.dave, &people.vic] {
        refused_within_a_second(&stack, token, "acme's tokens refused").await;
    }
    // It is not listed any more.
    let listed = stack
        .tenants(&people.root)
        .list_tenants(api::ListTenantsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tenants;
    assert_eq!(listed, ["beta"]);
    // Another tenant's tokens go on.
    let beta = stack
        .apps(&people.bob)
        .list_apps(req::list_apps("beta", None))
        .await;
    assert!(beta.is_ok(), "{beta:?}");
}
