//! The gateway's API end to end: every RPC's answer and refusals, validation, uploads, lists,
//! the build → deploy → promote → roll back flow, health and reflection.

#![allow(clippy::unwrap_used)] // a test fails loudly on the first unexpected error

use std::time::{SystemTime, UNIX_EPOCH};

use neo_gateway::api::{self, upload_revision_request::Part};
use neo_protocol::pb::{BuildStatus, ReleaseOrigin, Role};
use neo_tests::commands::digest;
use neo_tests::gateway::{
    People, ROOT, Stack, content_digest, field, first_event, page, pages, password, refused, req,
    upload_parts,
};
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

async fn stack() -> (Stack, People) {
    let stack = Stack::start().await.unwrap();
    let people = stack.people().await.unwrap();
    (stack, people)
}

/// `(field, outcome of call)`, the outcome without its value.
macro_rules! named {
    ($field:literal => $call:expr) => {
        ($field, $call.await.map(drop))
    };
}

#[tokio::test]
async fn health_and_reflection_are_served_without_a_token() {
    let stack = Stack::start().await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(stack.channel());
    let check = HealthCheckRequest {
        service: String::new(),
    };
    let reply = health.check(check).await.unwrap().into_inner();
    assert_eq!(reply.status(), ServingStatus::Serving);

    let mut reflection = ServerReflectionClient::new(stack.channel());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let reply = replies.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("not a list of services: {reply:?}");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    for service in "Identity Tenants Apps Builds Deployments Events".split(' ') {
        let name = format!("neo.gateway.v1.{service}");
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
}

#[tokio::test]
async fn login_and_who_am_i_describe_the_token() {
    let (stack, people) = stack().await;
    let login = api::LoginRequest {
        user: "otto".into(),
        password: password("otto"),
        tenant: "acme".into(),
    };
    let reply = stack.anonymous().login(login).await.unwrap().into_inner();
    assert_eq!(
        (reply.tenant.as_str(), reply.role(), reply.platform_admin),
        ("acme", Role::Devops, false)
    );
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let ttl = reply.expires_at - i64::try_from(now.as_secs()).unwrap();
    assert!((3500..=3700).contains(&ttl), "expires in {ttl} s, not ~1 h");

    let who_am_i = |token: &str| {
        let mut identity = stack.identity(token);
        async move { identity.who_am_i(api::WhoAmIRequest {}).await.unwrap() }
    };
    let me = who_am_i(&reply.token).await.into_inner();
    assert_eq!(
        (me.user.as_str(), me.tenant.as_str(), me.role()),
        ("otto", "acme", Role::Devops)
    );
    assert!(!me.platform_admin && me.expires_at == reply.expires_at);
    let root = who_am_i(&people.root).await.into_inner();
    let root = (
        root.user.as_str(),
        root.tenant.as_str(),
        root.platform_admin,
    );
    assert_eq!(root, (ROOT, "", true));
}

#[tokio::test]
async fn users_and_tenants_are_created_read_and_changed() {
    let (stack, people) = stack().await;
    let root = &people.root;
    let user = stack.identity(root).create_user(req::user("carol")).await;
    let user = user.unwrap().into_inner();
    assert_eq!((user.name.as_str(), user.platform_admin), ("carol", false));
    let mut identity = stack.identity(&people.alice);
    refused(
        identity.create_user(req::user("carol")).await,
        Code::AlreadyExists,
        "",
    );

    let mut tenants = stack.tenants(root);
    let gamma = api::CreateTenantRequest {
        display_name: "Gamma Corp".into(),
        ..req::tenant("gamma", "carol")
    };
    let created = tenants.create_tenant(gamma).await.unwrap().into_inner();
    let state = created.state.clone().unwrap();
    assert_eq!(created.name, "gamma");
    assert!(state.exists && created.sequence > 0);
    assert_eq!(state.display_name, "Gamma Corp");
    assert_eq!(state.stages, ["dev", "test", "prod"]);
    assert_eq!(state.members.get("carol"), Some(&(Role::Admin as i32)));
    let twice = tenants.create_tenant(req::tenant("gamma", "carol")).await;
    refused(twice, Code::AlreadyExists, "");

    // The tenant's admin changes stages and members; each change moves the sequence on.
    let carol = stack.login("carol", &password("carol"), "gamma").await;
    let mut tenants = stack.tenants(&carol.unwrap());
    let got = tenants.get_tenant(req::get_tenant("gamma")).await.unwrap();
    assert_eq!(got.into_inner(), created);
    let qa = req::add_stage("gamma", "qa", "test");
    let added = tenants.add_stage(qa).await.unwrap().into_inner();
    assert_eq!(added.state.unwrap().stages, ["dev", "test", "qa", "prod"]);
    assert!(added.sequence > created.sequence);
    let dev = req::remove_stage("gamma", "dev");
    let removed = tenants.remove_stage(dev).await.unwrap().into_inner();
    assert_eq!(removed.state.unwrap().stages, ["test", "qa", "prod"]);
    let dave = req::set_member("gamma", "dave", Role::Developer);
    let member = tenants.set_member(dave).await.unwrap().into_inner();
    let members = member.state.unwrap().members;
    assert_eq!(members.get("dave"), Some(&(Role::Developer as i32)));
    stack
        .login("dave", &password("dave"), "gamma")
        .await
        .unwrap();
    let dave = req::remove_member("gamma", "dave");
    let left = tenants.remove_member(dave).await.unwrap().into_inner();
    assert!(!left.state.unwrap().members.contains_key("dave"));
    let login = stack.login("dave", &password("dave"), "gamma").await;
    refused(login, Code::PermissionDenied, "");

    // Domain refusals carry their rule.
    let last_admin = tenants
        .remove_member(req::remove_member("gamma", "carol"))
        .await;
    refused(last_admin, Code::FailedPrecondition, "member.last_admin");
    let not_member = tenants.remove_member(req::remove_member("gamma", "vic"));
    refused(not_member.await, Code::NotFound, "");
    let same_stage = tenants.add_stage(req::add_stage("gamma", "qa", ""));
    refused(same_stage.await, Code::InvalidArgument, "");
    let mut tenants = stack.tenants(root);
    let solo = api::CreateTenantRequest {
        stages: vec!["main".into()],
        ..req::tenant("solo", "carol")
    };
    tenants.create_tenant(solo).await.unwrap();
    let only_stage = tenants.remove_stage(req::remove_stage("solo", "main"));
    refused(only_stage.await, Code::FailedPrecondition, "stage.last");
    let missing = tenants.get_tenant(req::get_tenant("nowhere")).await;
    refused(missing, Code::NotFound, "");
}

#[tokio::test]
async fn bad_names_and_missing_fields_are_invalid_arguments_naming_the_field() {
    let (stack, people) = stack().await;
    let (root, alice) = (people.root.as_str(), people.alice.as_str());
    let (mut tenants, mut identity) = (stack.tenants(root), stack.identity(root));
    let (mut apps, mut builds) = (stack.apps(alice), stack.builds(alice));
    let mut deployments = stack.deployments(alice);
    let before = stack.event_count().await.unwrap();
    let two_stages = api::CreateTenantRequest {
        stages: vec!["dev".into(), "pre prod".into()],
        ..req::tenant("gamma", "alice")
    };
    let no_password = api::CreateUserRequest {
        password: String::new(),
        ..req::user("nopass")
    };
    let robots = api::WatchRequest {
        kind: "robot".into(),
        ..req::watch("acme", 0)
    };
    let (mut alices_tenants, mut roots_apps) = (stack.tenants(alice), stack.apps(root));
    let bad_role = req::set_member("acme", "bob", Role::Unspecified);
    let cases = [
        named!("name" => tenants.create_tenant(req::tenant("*", "alice"))),
        named!("stages" => tenants.create_tenant(two_stages)),
        named!("stage" => alices_tenants.add_stage(req::add_stage("acme", "a b", ""))),
        named!("role" => alices_tenants.set_member(bad_role)),
        named!("user" => identity.create_user(req::user("has space"))),
        named!("password" => identity.create_user(no_password)),
        named!("app" => apps.create_app(req::create_app("acme", "a.b"))),
        named!("app" => apps.get_app(req::get_app("acme", ""))),
        named!("tenant" => roots_apps.create_app(req::create_app("", "shop"))),
        named!("build_id" => builds.get_build(req::get_build("acme", "shop-1"))),
        named!("revision" => builds.request_build(req::request_build("acme", "shop", 0))),
        named!("revision" => deployments.deploy(req::deploy("acme", "shop", "dev", 0))),
        named!("stage" => deployments.deploy(req::deploy("acme", "shop", "", 1))),
        named!("to_release" => deployments.rollback(req::rollback("acme", "shop", "dev", 0))),
        named!("kind" => first_event(&mut stack.events(alice), robots)),
    ];
    for (name, result) in cases {
        let status = result.expect_err(name);
        assert_eq!(status.code(), Code::InvalidArgument, "{name}: {status:?}");
        assert!(status.message().contains(name), "{name}: {status:?}");
        assert!(
            field(&status).contains(name),
            "neo-field of {name}: {status:?}"
        );
    }
    let after = stack.event_count().await.unwrap();
    assert_eq!(after, before, "nothing written");
}

#[tokio::test]
async fn apps_record_uploaded_revisions_by_content_digest() {
    let (stack, people) = stack().await;
    let mut apps = stack.apps(&people.dave);
    let shop = api::CreateAppRequest {
        description: "the shop".into(),
        ..req::create_app("acme", "shop")
    };
    let app = apps.create_app(shop).await.unwrap().into_inner();
    assert_eq!((app.tenant.as_str(), app.name.as_str()), ("acme", "shop"));
    let state = app.state.unwrap();
    assert!(state.exists && state.revisions.is_empty());
    assert_eq!(state.description, "the shop");
    let twice = apps.create_app(req::create_app("acme", "shop")).await;
    refused(twice, Code::AlreadyExists, "");
    let missing = apps.get_app(req::get_app("acme", "ghost")).await;
    refused(missing, Code::NotFound, "");

    // A 200 KiB model in several chunks, then a second one by another user.
    let first: Vec<u8> = (0..200 * 1024).map(|i| (i % 251) as u8).collect();
    let parts = upload_parts("acme", "shop", "first model", &first);
    assert!(parts.len() > 2, "sent in several chunks");
    let r1 = apps.upload_revision(tokio_stream::iter(parts)).await;
    let r1 = r1.unwrap().into_inner();
    assert_eq!((r1.number, r1.size), (1, first.len() as u64));
    assert_eq!(r1.digest, content_digest(&first));
    assert_eq!(
        (r1.author.as_str(), r1.message.as_str()),
        ("dave", "first model")
    );
    let r2 = stack.upload(&people.alice, "acme", "shop", b"second").await;
    let r2 = r2.unwrap();
    assert_eq!((r2.number, r2.author.as_str()), (2, "alice"));
    // The latest revision's content again is refused; an unknown app is not found.
    let same = stack.upload(&people.dave, "acme", "shop", b"second").await;
    refused(same, Code::FailedPrecondition, "revision.unchanged");
    let ghost = stack.upload(&people.dave, "acme", "ghost", b"model").await;
    refused(ghost, Code::NotFound, "");

    let got = apps.get_app(req::get_app("acme", "shop")).await.unwrap();
    let got = got.into_inner();
    assert_eq!(got.state.unwrap().revisions, [r1.clone(), r2.clone()]);
    assert!(got.sequence > 0);
    let listed = stack
        .apps(&people.vic)
        .list_revisions(req::list_revisions("acme", "shop", None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.revisions, [r1, r2]);
    assert!(listed.next_page_token.is_empty());
}

#[tokio::test]
async fn oversized_and_headless_uploads_are_refused_and_record_nothing() {
    let (stack, people) = stack().await;
    stack
        .app_with_revisions(&people.dave, "acme", "shop", &[])
        .await
        .unwrap();
    let before = stack.event_count().await.unwrap();
    let mut apps = stack.apps(&people.dave);

    // 9 MiB against the 8 MiB limit, in 1 MiB chunks.
    let header = upload_parts("acme", "shop", "too big", &[]);
    let chunks = (0..9u8).map(|i| api::UploadRevisionRequest {
        part: Some(Part::Chunk(vec![i; 1024 * 1024].into())),
    });
    let parts = header.into_iter().chain(chunks);
    let big = apps.upload_revision(tokio_stream::iter(parts)).await;
    refused(big, Code::ResourceExhausted, "");

    let mut headless = upload_parts("acme", "shop", "no header", b"model bytes");
    headless.remove(0);
    let headless = apps.upload_revision(tokio_stream::iter(headless)).await;
    refused(headless, Code::InvalidArgument, "");
    let nothing: Vec<api::UploadRevisionRequest> = Vec::new();
    let nothing = apps.upload_revision(tokio_stream::iter(nothing)).await;
    refused(nothing, Code::InvalidArgument, "");
    // One message over the 4 MiB message limit, a chunk or a plain call, is "too large" too.
    let header = upload_parts("acme", "shop", "one huge chunk", &[]);
    let chunk = api::UploadRevisionRequest {
        part: Some(Part::Chunk(vec![1; 5 * 1024 * 1024].into())),
    };
    let huge = apps
        .upload_revision(tokio_stream::iter(header.into_iter().chain([chunk])))
        .await;
    refused(huge, Code::ResourceExhausted, "");
    let huge = apps
        .create_app(api::CreateAppRequest {
            tenant: "acme".into(),
            app: "huge".into(),
            description: "x".repeat(5 * 1024 * 1024),
        })
        .await;
    refused(huge, Code::ResourceExhausted, "");

    let after = stack.event_count().await.unwrap();
    assert_eq!(after, before, "nothing written");
    // The gateway still takes a good upload afterwards.
    let ok = stack.upload(&people.dave, "acme", "shop", b"fine").await;
    assert_eq!(ok.unwrap().number, 1);
}

#[tokio::test]
async fn every_list_walks_all_items_once_in_order() {
    let (stack, people) = stack().await;
    let stack = &stack;
    let (root, dave) = (people.root.as_str(), people.dave.as_str());
    for name in ["zeta", "eta", "theta", "iota"] {
        let mut tenants = stack.tenants(root);
        tenants
            .create_tenant(req::tenant(name, "alice"))
            .await
            .unwrap();
    }
    let tenants = pages(|token| {
        let mut client = stack.tenants(root);
        async move {
            let r = client
                .list_tenants(req::list_tenants(page(4, &token)))
                .await;
            let r = r.unwrap().into_inner();
            (r.tenants, r.next_page_token)
        }
    })
    .await;
    let expected = [vec!["acme", "beta", "eta", "iota"], vec!["theta", "zeta"]];
    assert_eq!(tenants, expected);

    let names = ["kiwi", "apple", "mango", "fig", "banana", "cherry", "date"];
    for name in names {
        stack
            .app_with_revisions(dave, "acme", name, &[])
            .await
            .unwrap();
    }
    // beta's apps are not acme's.
    stack
        .app_with_revisions(&people.bob, "beta", "banana2", &[])
        .await
        .unwrap();
    let list_apps = |size: u32| {
        move |token: String| {
            let mut client = stack.apps(dave);
            async move {
                let r = client.list_apps(req::list_apps("acme", page(size, &token)));
                let r = r.await.unwrap().into_inner();
                (r.apps, r.next_page_token)
            }
        }
    };
    let mut sorted = names.map(String::from).to_vec();
    sorted.sort();
    let by_three = [&sorted[0..3], &sorted[3..6], &sorted[6..7]];
    assert_eq!(pages(list_apps(3)).await, by_three);
    assert_eq!(pages(list_apps(0)).await, [sorted], "default 50");

    let contents: Vec<String> = (1..=5).map(|i| format!("model {i}")).collect();
    let contents: Vec<&[u8]> = contents.iter().map(String::as_bytes).collect();
    stack
        .app_with_revisions(dave, "acme", "shop", &contents)
        .await
        .unwrap();
    let revisions = pages(|token| {
        let mut client = stack.apps(dave);
        async move {
            let r = client.list_revisions(req::list_revisions("acme", "shop", page(2, &token)));
            let r = r.await.unwrap().into_inner();
            let numbers: Vec<u32> = r.revisions.iter().map(|r| r.number).collect();
            (numbers, r.next_page_token)
        }
    })
    .await;
    assert_eq!(revisions, [vec![1, 2], vec![3, 4], vec![5]]);

    for revision in 1..=3 {
        stack
            .built(dave, "acme", "shop", revision, 1)
            .await
            .unwrap();
    }
    stack
        .app_with_revisions(dave, "acme", "cart", &[b"cart model"])
        .await
        .unwrap();
    stack.built(dave, "acme", "cart", 1, 9).await.unwrap();
    let list_builds = |app: &'static str| {
        move |token: String| {
            let mut client = stack.builds(dave);
            async move {
                let r = client.list_builds(req::list_builds("acme", app, page(2, &token)));
                let r = r.await.unwrap().into_inner();
                let ids: Vec<String> = r.builds.into_iter().map(|b| b.id).collect();
                (ids, r.next_page_token)
            }
        }
    };
    let shop = [vec!["shop_r1", "shop_r2"], vec!["shop_r3"]];
    assert_eq!(pages(list_builds("shop")).await, shop);
    let all = [vec!["cart_r1", "shop_r1"], vec!["shop_r2", "shop_r3"]];
    assert_eq!(pages(list_builds("")).await, all);

    for revision in [1, 2, 3] {
        let mut deployments = stack.deployments(dave);
        let deploy = req::deploy("acme", "shop", "dev", revision);
        deployments.deploy(deploy).await.unwrap();
    }
    let releases = pages(|token| {
        let mut client = stack.deployments(&people.vic);
        async move {
            let list = req::list_releases("acme", "shop", "dev", page(2, &token));
            let r = client.list_releases(list).await.unwrap().into_inner();
            let numbers: Vec<u32> = r.releases.iter().map(|r| r.number).collect();
            (numbers, r.next_page_token)
        }
    })
    .await;
    assert_eq!(releases, [vec![3, 2], vec![1]], "newest first");
}

#[tokio::test]
async fn builds_are_requested_cancelled_retried_and_never_rebuilt() {
    let (stack, people) = stack().await;
    let revisions = stack
        .app_with_revisions(&people.dave, "acme", "shop", &[b"model"])
        .await
        .unwrap();
    let mut builds = stack.builds(&people.dave);
    let request = || req::request_build("acme", "shop", 1);
    let build = builds.request_build(request()).await.unwrap().into_inner();
    assert_eq!(
        (build.tenant.as_str(), build.id.as_str()),
        ("acme", "shop_r1")
    );
    let state = build.state.unwrap();
    assert_eq!(state.status(), BuildStatus::Requested);
    assert_eq!(
        (state.app.as_str(), state.revision, state.attempt),
        ("shop", 1, 1)
    );
    assert_eq!(state.revision_digest, revisions[0].digest);
    let busy = builds.request_build(request()).await;
    refused(busy, Code::FailedPrecondition, "build.in_progress");

    let cancel = || req::cancel_build("acme", "shop_r1", "wrong branch");
    let cancelled = builds.cancel_build(cancel()).await.unwrap().into_inner();
    let state = cancelled.state.unwrap();
    assert_eq!(
        (state.status(), state.reason.as_str()),
        (BuildStatus::Cancelled, "wrong branch")
    );
    let retried = builds.request_build(request()).await.unwrap().into_inner();
    assert_eq!(retried.state.unwrap().attempt, 2);
    let image = stack.finish_build("acme", "shop", 1, 7).await.unwrap();
    let mut viewer = stack.builds(&people.vic);
    let got = viewer.get_build(req::get_build("acme", "shop_r1")).await;
    let got = got.unwrap().into_inner();
    let state = got.state.unwrap();
    assert_eq!(
        (state.status(), state.image_digest.as_str(), state.attempt),
        (BuildStatus::Succeeded, image.as_str(), 2)
    );
    assert!(got.sequence > retried.sequence);

    let again = builds.request_build(request()).await;
    refused(again, Code::FailedPrecondition, "build.once");
    let cancel_done = builds.cancel_build(cancel()).await;
    refused(cancel_done, Code::FailedPrecondition, "build.transition");
    let missing = builds.get_build(req::get_build("acme", "shop_r7")).await;
    refused(missing, Code::NotFound, "");
    let ghost = builds.request_build(req::request_build("acme", "ghost", 1));
    refused(ghost.await, Code::NotFound, "");
    let before = stack.event_count().await.unwrap();
    let no_revision = builds.request_build(req::request_build("acme", "shop", 7));
    let status = no_revision.await.unwrap_err();
    let code = status.code();
    assert!(
        matches!(code, Code::NotFound | Code::FailedPrecondition),
        "{status:?}"
    );
    assert_eq!(stack.event_count().await.unwrap(), before);
}

#[tokio::test]
async fn deploy_needs_a_succeeded_build_then_promotes_and_rolls_back() {
    let (stack, people) = stack().await;
    let (dave, otto) = (people.dave.as_str(), people.otto.as_str());
    stack
        .app_with_revisions(dave, "acme", "shop", &[b"one", b"two"])
        .await
        .unwrap();
    let (mut dev, mut ops) = (stack.deployments(dave), stack.deployments(otto));
    let deploy = |stage: &str, revision| req::deploy("acme", "shop", stage, revision);
    let promote = |app: &str, stage: &str| req::promote("acme", app, stage);
    let rollback = |stage: &str, to| req::rollback("acme", "shop", stage, to);

    // No build yet, then a build that has not succeeded: refused, nothing written.
    let before = stack.event_count().await.unwrap();
    refused(
        dev.deploy(deploy("dev", 1)).await,
        Code::FailedPrecondition,
        "",
    );
    let mut builds = stack.builds(dave);
    let request = builds.request_build(req::request_build("acme", "shop", 1));
    request.await.unwrap();
    let requested = stack.event_count().await.unwrap();
    assert_eq!(requested, before + 1);
    refused(
        dev.deploy(deploy("dev", 1)).await,
        Code::FailedPrecondition,
        "",
    );
    assert_eq!(stack.event_count().await.unwrap(), requested);

    let image1 = stack.finish_build("acme", "shop", 1, 1).await.unwrap();
    let v1 = dev.deploy(deploy("dev", 1)).await.unwrap().into_inner();
    assert_eq!(
        (v1.tenant.as_str(), v1.app.as_str(), v1.stage.as_str()),
        ("acme", "shop", "dev")
    );
    let state = v1.state.unwrap();
    let release = &state.releases[0];
    assert_eq!((state.current, release.number, release.revision), (1, 1, 1));
    assert_eq!(
        (release.build_id.as_str(), release.image_digest.as_str()),
        ("shop_r1", image1.as_str())
    );
    assert_eq!(release.origin(), ReleaseOrigin::Deploy);

    // Promotion: the same image, from the previous stage.
    let test = ops.promote(promote("shop", "test")).await.unwrap();
    let state = test.into_inner().state.unwrap();
    let release = &state.releases[0];
    assert_eq!(
        (state.current, release.origin()),
        (1, ReleaseOrigin::Promotion)
    );
    assert_eq!(release.image_digest, image1, "promotion never rebuilds");
    let from = release.promoted_from.clone().unwrap();
    assert_eq!((from.stage.as_str(), from.number), ("dev", 1));
    let unchanged = ops.promote(promote("shop", "test")).await;
    refused(unchanged, Code::FailedPrecondition, "promotion.unchanged");
    let first = ops.promote(promote("shop", "dev")).await;
    refused(first, Code::FailedPrecondition, "promotion.first_stage");
    stack
        .app_with_revisions(dave, "acme", "cart", &[])
        .await
        .unwrap();
    let no_source = ops.promote(promote("cart", "test")).await;
    refused(no_source, Code::FailedPrecondition, "promotion.no_source");
    let no_stage = ops.deploy(deploy("qa", 1)).await;
    refused(no_stage, Code::FailedPrecondition, "stage.not_found");

    // A second revision, then back to the first as a new release.
    let image2 = stack.built(dave, "acme", "shop", 2, 2).await.unwrap();
    let v2 = dev.deploy(deploy("dev", 2)).await.unwrap().into_inner();
    assert_eq!(v2.state.unwrap().releases[1].image_digest, image2);
    let v3 = dev.rollback(rollback("dev", 1)).await.unwrap().into_inner();
    let state = v3.state.unwrap();
    let release = &state.releases[2];
    assert_eq!((state.current, release.number), (3, 3));
    assert_eq!(
        (release.origin(), release.rolled_back_to),
        (ReleaseOrigin::Rollback, 1)
    );
    assert_eq!(release.image_digest, image1);
    let not_earlier = dev.rollback(rollback("dev", 3)).await;
    refused(
        not_earlier,
        Code::FailedPrecondition,
        "rollback.not_earlier",
    );
    let nothing = ops.rollback(rollback("prod", 1)).await;
    refused(nothing, Code::FailedPrecondition, "deployment.no_release");

    // Reads.
    let mut viewer = stack.deployments(&people.vic);
    let got = viewer.get_deployment(req::get_deployment("acme", "shop", "dev"));
    let got = got.await.unwrap().into_inner();
    assert_eq!((got.state.unwrap().current, got.sequence), (3, v3.sequence));
    let list = req::list_releases("acme", "shop", "dev", None);
    let listed = viewer.list_releases(list).await.unwrap().into_inner();
    let numbers: Vec<u32> = listed.releases.iter().map(|r| r.number).collect();
    assert_eq!(numbers, [3, 2, 1]);
    assert_eq!(listed.releases[0].image_digest, digest(1));
    let missing = viewer.get_deployment(req::get_deployment("acme", "shop", "prod"));
    refused(missing.await, Code::NotFound, "");
    // A revision that was never built cannot be deployed.
    let unbuilt = ops.deploy(deploy("prod", 9)).await.unwrap_err();
    assert!(
        matches!(unbuilt.code(), Code::FailedPrecondition | Code::NotFound),
        "{unbuilt:?}"
    );
}
