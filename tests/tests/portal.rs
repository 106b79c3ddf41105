//! The portal on the real stack (nats-server, Postgres, the registry, S3, the platform, a build
//! worker, the process runtime on dev and test), spoken to as a browser would over HTTP: sign-in
//! with the CSRF value, the pipeline board of the published catalog, a viewer offered nothing
//! and refused by the gateway when it forges a promotion, a promotion confirmed by devops and
//! announced on the live stream, a promotion as a canary shown on the board and aborted there,
//! forms without their CSRF value refused.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use futures::StreamExt;
use neo_portal::gateway::Gateway;
use neo_portal::{Portal, PortalConfig};
use neo_protocol::pb::CanaryPhase;
use neo_tests::build_stack::{edited, example};
use neo_tests::eventually;
use neo_tests::gateway::{ROOT, ROOT_PASSWORD, Stack, password, req};
use neo_tests::runtime_stack::RuntimeStack;

/// A browser's cookies for the portal, kept by hand (the session cookie is `Secure`).
struct Visitor {
    base: String,
    http: reqwest::Client,
    cookies: Vec<(String, String)>,
}

impl Visitor {
    fn new(portal: &Portal) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self {
            base: portal.url(),
            http: reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
            cookies: Vec::new(),
        }
    }

    fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn keep(&mut self, response: &reqwest::Response) {
        for set in response.headers().get_all("set-cookie") {
            let set = set.to_str().unwrap();
            assert!(
                set.contains("HttpOnly")
                    && set.contains("Secure")
                    && set.contains("SameSite=Strict"),
                "{set}"
            );
            let (pair, _) = set.split_once(';').unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            self.cookies.retain(|(n, _)| n != name);
            if !value.is_empty() {
                self.cookies.push((name.to_owned(), value.to_owned()));
            }
        }
    }

    fn header(&self) -> String {
        self.cookies
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn get(&mut self, path: &str) -> (u16, String) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", self.header())
            .send()
            .await
            .unwrap();
        let csp = response.headers()["content-security-policy"]
            .to_str()
            .unwrap();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        self.keep(&response);
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> (u16, String) {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", self.header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        self.keep(&response);
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    /// Signs in as `user` of acme.
    async fn sign_in(portal: &Portal, user: &str) -> Self {
        Self::sign_in_to(portal, user, "acme").await
    }

    /// Signs in as `user` of `tenant` (none: the platform).
    async fn sign_in_to(portal: &Portal, user: &str, tenant: &str) -> Self {
        let mut visitor = Self::new(portal);
        let (status, page) = visitor.get("/login").await;
        assert_eq!(status, 200, "{page}");
        let csrf = visitor.cookie("neo_csrf").unwrap().to_owned();
        assert!(
            page.contains(&format!("value=\"{csrf}\"")),
            "the form carries it"
        );
        let password = if user == ROOT {
            ROOT_PASSWORD.to_owned()
        } else {
            password(user)
        };
        let fields = [
            ("csrf", csrf.as_str()),
            ("user", user),
            ("password", password.as_str()),
            ("tenant", tenant),
        ];
        let (status, _) = visitor.post("/login", &fields).await;
        assert_eq!(status, 303);
        assert!(visitor.cookie("neo_session").is_some());
        visitor
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_board_shows_the_release_and_a_promotion_is_offered_confirmed_and_announced() {
    let stack = RuntimeStack::start(&["dev", "test"]).await.unwrap();
    let people = stack.build.stack.people().await.unwrap();
    stack
        .build
        .publish_deployed(&people.dave, "acme", &example("catalog"))
        .await
        .unwrap();
    let gateway = Gateway::new(stack.build.stack.channel());
    let config = PortalConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: None,
    };
    let portal = Portal::start(config, gateway).await.unwrap();

    // Not signed in: to the sign-in page. A wrong password is said so; a form without its
    // CSRF value is refused.
    let mut anonymous = Visitor::new(&portal);
    let (status, _) = anonymous.get("/").await;
    assert_eq!(status, 303);
    let (_, _) = anonymous.get("/login").await;
    let csrf = anonymous.cookie("neo_csrf").unwrap().to_owned();
    let (status, page) = anonymous
        .post(
            "/login",
            &[("csrf", &csrf), ("user", "otto"), ("password", "nope")],
        )
        .await;
    assert_eq!(status, 401, "{page}");
    assert!(page.contains("login-error"), "{page}");
    let (status, _) = anonymous
        .post(
            "/login",
            &[("user", "otto"), ("password", &password("otto"))],
        )
        .await;
    assert_eq!(status, 403);

    // devops sees catalog's release on dev, once its replica is ready, and may promote it.
    let mut otto = Visitor::sign_in(&portal, "otto").await;
    let board = eventually(
        Duration::from_secs(60),
        "catalog ready on the board",
        || async {
            let mut otto = Visitor {
                base: otto.base.clone(),
                http: otto.http.clone(),
                cookies: otto.cookies.clone(),
            };
            let (status, page) = otto.get("/").await;
            (status == 200 && page.contains("1/1 ready")).then_some(page)
        },
    )
    .await;
    assert!(board.contains("id=\"cell-catalog-dev\""), "{board}");
    assert!(board.contains("v1 · revision 1"), "{board}");
    assert!(board.contains("Promote to test"), "{board}");
    assert!(board.contains("id=\"who-role\">devops<"), "{board}");

    // A viewer is offered no promotion, and one forged with the viewer's own session is
    // refused by the gateway.
    let mut vic = Visitor::sign_in(&portal, "vic").await;
    let (_, board) = vic.get("/").await;
    assert!(board.contains("v1 · revision 1"), "{board}");
    assert!(!board.contains("Promote"), "{board}");
    let vic_csrf = vic.cookie("neo_csrf").unwrap().to_owned();
    let (status, page) = vic
        .post(
            "/promote",
            &[("csrf", &vic_csrf), ("app", "catalog"), ("stage", "test")],
        )
        .await;
    assert_eq!(status, 403, "{page}");

    // The live stream announces the promotion.
    let (_, after) = otto.get("/").await;
    let sequence = after
        .split("sse-connect=\"/live?after=")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    let live = otto
        .http
        .get(format!("{}/live?after={sequence}", otto.base))
        .header("cookie", otto.header())
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    let mut live = live.bytes_stream();

    // devops confirms the promotion after reading its impact.
    let (status, confirm) = otto.get("/promote?app=catalog&stage=test").await;
    assert_eq!(status, 200, "{confirm}");
    assert!(confirm.contains("Nothing would break"), "{confirm}");
    let csrf = otto.cookie("neo_csrf").unwrap().to_owned();
    let (status, page) = otto
        .post("/promote", &[("app", "catalog"), ("stage", "test")])
        .await;
    assert_eq!(status, 403, "without its CSRF value: {page}");
    let (status, page) = otto
        .post(
            "/promote",
            &[("csrf", &csrf), ("app", "catalog"), ("stage", "test")],
        )
        .await;
    assert_eq!(status, 303, "{page}");
    let announced = tokio::time::timeout(Duration::from_secs(30), async {
        let mut seen = String::new();
        while let Some(chunk) = live.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            if seen.contains("event: changed") {
                return seen;
            }
        }
        panic!("the live stream ended: {seen}");
    })
    .await
    .expect("the promotion is announced");
    assert!(announced.contains("catalog_test"), "{announced}");
    let (_, board) = otto.get("/board").await;
    let test_cell = board.split("id=\"cell-catalog-test\"").nth(1).unwrap();
    assert!(test_cell.contains("v1 · revision 1"), "{board}");

    // Deploy and roll back, each confirmed with its impact first.
    let (status, confirm) = otto.get("/deploy?app=catalog&stage=test&revision=1").await;
    assert_eq!(status, 200, "{confirm}");
    assert!(
        confirm.contains("Deploy catalog revision 1 to test"),
        "{confirm}"
    );
    let (status, page) = send(
        &mut otto,
        "/deploy",
        &[("app", "catalog"), ("stage", "test"), ("revision", "1")],
    )
    .await;
    assert_eq!(status, 303, "{page}");
    let (_, app) = otto.get("/apps/catalog").await;
    let test = app.split("id=\"stage-test\"").nth(1).unwrap();
    assert!(
        test.contains("v2") && test.contains("deployed revision 1"),
        "{app}"
    );
    assert!(
        test.contains("/rollback?app=catalog&amp;stage=test&amp;release=1"),
        "{app}"
    );
    let (status, confirm) = otto.get("/rollback?app=catalog&stage=test&release=1").await;
    assert_eq!(status, 200, "{confirm}");
    assert!(confirm.contains("back to v1"), "{confirm}");
    let (status, page) = send(
        &mut otto,
        "/rollback",
        &[("app", "catalog"), ("stage", "test"), ("release", "1")],
    )
    .await;
    assert_eq!(status, 303, "{page}");
    let (_, app) = otto.get("/apps/catalog").await;
    assert!(app.contains("rolled back to v1"), "{app}");

    // catalog r2 on dev is promoted to test as a canary beside v3, shown on the board with the
    // buttons that end it, and aborted: v3 takes all the traffic again.
    let r2 = edited("catalog", |m| {
        m.replace(
            "The products we sell, in categories",
            "The products we sell",
        )
    })
    .unwrap();
    stack
        .build
        .publish_deployed(&people.dave, "acme", r2.path())
        .await
        .unwrap();
    let (status, confirm) = otto.get("/promote?app=catalog&stage=test").await;
    assert_eq!(status, 200, "{confirm}");
    assert!(
        confirm.contains("type=\"checkbox\" name=\"canary\" value=\"1\"")
            && confirm.contains("Roll out as a canary")
            && confirm.contains("beside v3"),
        "{confirm}"
    );
    let (status, page) = send(
        &mut otto,
        "/promote",
        &[("app", "catalog"), ("stage", "test"), ("canary", "1")],
    )
    .await;
    assert_eq!(status, 303, "{page}");
    let canary = || async {
        let deployment = stack
            .build
            .stack
            .deployments(&people.otto)
            .get_deployment(req::get_deployment("acme", "catalog", "test"))
            .await
            .unwrap()
            .into_inner();
        let newest = deployment.state.unwrap().releases.pop().unwrap();
        (newest.number, newest.canary.unwrap())
    };
    let (number, running) = canary().await;
    assert_eq!((number, running.baseline), (4, 3));
    assert_eq!(running.phase(), CanaryPhase::Running, "{running:?}");
    let (_, board) = otto.get("/").await;
    let test_cell = board.split("id=\"cell-catalog-test\"").nth(1).unwrap();
    assert!(
        test_cell.contains("canary v4: step 1 of 2") && test_cell.contains("(v3 the rest)"),
        "{board}"
    );
    assert!(
        test_cell.contains("Abort canary") && test_cell.contains("Promote now"),
        "{board}"
    );
    let (_, board) = vic.get("/").await;
    assert!(board.contains("canary v4"), "{board}");
    assert!(
        !board.contains("Abort canary"),
        "a viewer may not end it: {board}"
    );
    let (status, page) = send(
        &mut otto,
        "/canary/abort",
        &[("app", "catalog"), ("stage", "test"), ("release", "4")],
    )
    .await;
    assert_eq!(status, 303, "{page}");
    let (_, ended) = canary().await;
    assert_eq!(ended.phase(), CanaryPhase::RolledBack, "{ended:?}");
    let (_, board) = otto.get("/").await;
    let test_cell = board.split("id=\"cell-catalog-test\"").nth(1).unwrap();
    assert!(test_cell.contains("canary v4 rolled back"), "{board}");
    assert!(!test_cell.contains("Abort canary"), "{board}");
    let (_, app) = otto.get("/apps/catalog").await;
    let release = app.split("id=\"release-test-4\"").nth(1).unwrap();
    assert!(release.contains("rolled back to v3: aborted"), "{app}");
    // Aborted twice: refused, and said so in the canary's cell.
    let (status, page) = send(
        &mut otto,
        "/canary/abort",
        &[("app", "catalog"), ("stage", "test"), ("release", "4")],
    )
    .await;
    assert_eq!(status, 409, "{page}");
    assert!(page.contains("id=\"canary-error-catalog-test\""), "{page}");

    // A scale policy out of bounds is refused beside its field; a good one is set.
    let policy = |max: &'static str| {
        [
            ("min_replicas", "1"),
            ("max_replicas", max),
            ("target_cpu_percent", "70"),
            ("target_memory_percent", "80"),
            ("scale_down_window_s", "300"),
        ]
    };
    let (status, page) = send(&mut otto, "/apps/catalog/dev/scale", &policy("0")).await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("id=\"field-max_replicas-error\""), "{page}");
    let (status, page) = send(&mut otto, "/apps/catalog/dev/scale", &policy("4")).await;
    assert_eq!(status, 303, "{page}");
    let (_, app) = otto.get("/apps/catalog").await;
    assert!(
        app.contains(
            "id=\"dev-max_replicas\" type=\"number\" min=\"0\" name=\"max_replicas\" value=\"4\""
        ),
        "{app}"
    );

    // Signed out: the session is gone.
    let csrf = otto.cookie("neo_csrf").unwrap().to_owned();
    let (status, _) = otto.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(status, 303);
    assert!(otto.cookie("neo_session").is_none());
    let (status, _) = otto.get("/").await;
    assert_eq!(status, 303);
    portal.shutdown().await;
}

/// The CSRF value a visitor's forms carry.
fn csrf(visitor: &Visitor) -> String {
    visitor.cookie("neo_csrf").unwrap().to_owned()
}

/// Posts `fields` to `path` with the visitor's CSRF value.
async fn send(visitor: &mut Visitor, path: &str, fields: &[(&str, &str)]) -> (u16, String) {
    let csrf = csrf(visitor);
    let mut all = vec![("csrf", csrf.as_str())];
    all.extend_from_slice(fields);
    visitor.post(path, &all).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tenants_and_members_are_managed_and_a_member_of_two_tenants_switches() {
    let stack = Stack::start().await.unwrap();
    let people = stack.people().await.unwrap();
    stack
        .tenants(&people.bob)
        .set_member(req::set_member(
            "beta",
            "otto",
            neo_protocol::pb::Role::Viewer,
        ))
        .await
        .unwrap();
    let config = PortalConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: None,
    };
    let portal = Portal::start(config, Gateway::new(stack.channel()))
        .await
        .unwrap();

    // otto belongs to acme (devops) and beta (viewer): he switches without a password.
    let mut otto = Visitor::sign_in(&portal, "otto").await;
    let (status, page) = otto.get("/tenants").await;
    assert_eq!(status, 200, "{page}");
    let beta = page.split("id=\"tenant-beta\"").nth(1).unwrap();
    assert!(beta.contains("viewer") && beta.contains("Switch"), "{page}");
    assert!(
        !page.contains("create-tenant"),
        "only a platform admin creates tenants"
    );
    let token = otto.cookie("neo_session").unwrap().to_owned();
    let (status, _) = send(&mut otto, "/switch", &[("tenant", "beta")]).await;
    assert_eq!(status, 303);
    assert_ne!(otto.cookie("neo_session").unwrap(), token, "a new token");
    let (_, board) = otto.get("/").await;
    assert!(board.contains("id=\"who-tenant\">beta<"), "{board}");
    assert!(board.contains("id=\"who-role\">viewer<"), "{board}");
    let (status, page) = send(&mut otto, "/switch", &[("tenant", "gamma")]).await;
    assert!(status == 403 || status == 404, "{status}: {page}");
    let (status, _) = otto.post("/switch", &[("tenant", "acme")]).await;
    assert_eq!(status, 403, "without its CSRF value");

    // acme's admin adds bob as a developer, then removes him; an unknown user is said so
    // beside the field.
    let mut alice = Visitor::sign_in(&portal, "alice").await;
    let (status, page) = alice.get("/members").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("id=\"member-vic\""), "{page}");
    let (status, _) = send(
        &mut alice,
        "/members",
        &[("user", "bob"), ("role", "developer")],
    )
    .await;
    assert_eq!(status, 303);
    let (_, page) = alice.get("/members").await;
    let bob = page.split("id=\"member-bob\"").nth(1).unwrap();
    assert!(bob.contains("developer"), "{page}");
    let (status, page) = send(
        &mut alice,
        "/members",
        &[("user", "nobody"), ("role", "viewer")],
    )
    .await;
    assert_eq!(status, 404, "{page}");
    assert!(page.contains("id=\"field-user-error\""), "{page}");
    let (status, _) = send(&mut alice, "/members", &[("user", "bob"), ("remove", "1")]).await;
    assert_eq!(status, 303);
    let (_, page) = alice.get("/members").await;
    assert!(!page.contains("id=\"member-bob\""), "{page}");

    // devops sees the members but may not change them: no form, and the gateway refuses.
    let mut otto = Visitor::sign_in(&portal, "otto").await;
    let (_, page) = otto.get("/members").await;
    assert!(page.contains("id=\"member-alice\""), "{page}");
    assert!(!page.contains("set-member"), "{page}");
    let (status, _) = send(&mut otto, "/members", &[("user", "bob"), ("role", "admin")]).await;
    assert_eq!(status, 403);

    // The platform admin starts from the tenants, and creates one (a bad name beside its field).
    let mut root = Visitor::sign_in_to(&portal, "root", "").await;
    let (status, page) = root.get("/").await;
    assert_eq!(status, 303, "{page}");
    let (_, page) = root.get("/tenants").await;
    assert!(
        page.contains("id=\"tenant-acme\"") && page.contains("id=\"tenant-beta\""),
        "{page}"
    );
    let create = |name: &'static str| {
        [
            ("name", name),
            ("display_name", "Gamma"),
            ("stages", "dev, prod"),
            ("admin", "alice"),
        ]
    };
    let (status, page) = send(&mut root, "/tenants", &create("Not A Name")).await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("id=\"field-name-error\""), "{page}");
    let (status, page) = send(&mut root, "/tenants", &create("gamma")).await;
    assert_eq!(status, 303, "{page}");
    let (_, page) = root.get("/tenants").await;
    assert!(page.contains("id=\"tenant-gamma\""), "{page}");
    portal.shutdown().await;
}
