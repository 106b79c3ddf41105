//! An app's pages: the app (revisions, builds, releases, scale policies), its settings and
//! secrets on a stage, and a build with its live log.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use neo_gateway::api;
use neo_protocol::pb;
use tonic::Status;

use super::{CheckedForm, SignedIn};
use crate::pages::app::{self as app_page, AppPage, Stage};
use crate::pages::settings::{self, Form, SettingsPage};
use crate::pages::{board, build, layout};
use crate::respond::{Refusal, encode, failure, html, http_status, redirect, with_field};

/// How often, and how far apart, a build's outcome is asked for once its log ended.
const END_ASKS: u32 = 20;
const END_ASK_EVERY: Duration = Duration::from_millis(250);

/// How many releases of a stage the app page lists.
const RELEASES_SHOWN: u32 = 20;

/// Everything the app page shows.
async fn load(signed: &SignedIn, app: &str) -> Result<AppPage, Status> {
    let (user, who) = (&signed.user, &signed.who);
    let tenant = who.tenant.clone();
    let (found, builds, names, status) = tokio::try_join!(
        async {
            user.apps()
                .get_app(api::GetAppRequest {
                    tenant: tenant.clone(),
                    app: app.to_owned(),
                })
                .await
        },
        async {
            user.builds()
                .list_builds(api::ListBuildsRequest {
                    tenant: tenant.clone(),
                    app: app.to_owned(),
                    page: Some(api::Page {
                        page_size: 500,
                        ..Default::default()
                    }),
                })
                .await
        },
        user.stages(&tenant),
        async {
            user.runtime()
                .status(api::StatusRequest {
                    tenant: tenant.clone(),
                    app: app.to_owned(),
                    ..Default::default()
                })
                .await
        },
    )?;
    let state = found.into_inner().state.unwrap_or_default();
    let mut status: HashMap<String, api::PodgroupStatus> = status
        .into_inner()
        .podgroups
        .into_iter()
        .map(|p| (p.stage.clone(), p))
        .collect();
    let releases = futures::future::try_join_all(names.iter().map(|stage| async {
        user.deployments()
            .list_releases(api::ListReleasesRequest {
                tenant: tenant.clone(),
                app: app.to_owned(),
                stage: stage.clone(),
                page: Some(api::Page {
                    page_size: RELEASES_SHOWN,
                    ..Default::default()
                }),
            })
            .await
            .map(|r| r.into_inner().releases)
            .or_else(|status| match status.code() {
                // Nothing deployed on that stage yet.
                tonic::Code::NotFound => Ok(Vec::new()),
                _ => Err(status),
            })
    }))
    .await?;
    let after = status
        .values()
        .map(|s| s.deployment_sequence.max(s.podgroup_sequence))
        .max()
        .unwrap_or(0);
    let stages = names
        .iter()
        .zip(releases)
        .map(|(name, releases)| Stage {
            name: name.clone(),
            releases,
            status: status.remove(name),
            may_release: board::may_release(who, &names, name),
        })
        .collect();
    let mut revisions = state.revisions;
    revisions.reverse();
    Ok(AppPage {
        app: app.to_owned(),
        description: state.description,
        revisions,
        builds: builds
            .into_inner()
            .builds
            .into_iter()
            .filter_map(|b| Some((b.state.as_ref()?.revision, b)))
            .collect(),
        stages,
        csrf: who.csrf.clone(),
        refused: None,
        after,
    })
}

fn app_response(signed: &SignedIn, p: &AppPage, status: StatusCode) -> Response {
    html(
        status,
        layout::page(&p.app, Some(&signed.who), app_page::page(p)),
        &[],
    )
}

/// `GET /apps/{app}`.
pub async fn page(signed: SignedIn, Path(app): Path<String>) -> Response {
    match load(&signed, &app).await {
        Ok(p) => app_response(&signed, &p, StatusCode::OK),
        Err(status) => failure(&status),
    }
}

/// `GET /apps/{app}/releases`: the releases part of the app's page.
pub async fn releases(signed: SignedIn, Path(app): Path<String>) -> Response {
    match load(&signed, &app).await {
        Ok(p) => html(StatusCode::OK, app_page::releases(&p), &[]),
        Err(status) => failure(&status),
    }
}

/// A policy field of a form, else `INVALID_ARGUMENT` naming it as the gateway would.
fn policy_field(fields: &HashMap<String, String>, name: &str) -> Result<u32, Status> {
    let value = fields.get(name).map(String::as_str).unwrap_or_default();
    value.trim().parse().map_err(|_| {
        let status = Status::invalid_argument(format!("{name}: `{value}` is not a whole number"));
        with_field(status, &format!("policy.{name}"))
    })
}

/// `POST /apps/{app}/{stage}/scale`: the whole policy from the form.
pub async fn scale(
    Path((app, stage)): Path<(String, String)>,
    CheckedForm { signed, fields }: CheckedForm,
) -> Response {
    let policy = (|| {
        Ok::<_, Status>(pb::ScalePolicy {
            min_replicas: policy_field(&fields, "min_replicas")?,
            max_replicas: policy_field(&fields, "max_replicas")?,
            target_cpu_percent: policy_field(&fields, "target_cpu_percent")?,
            target_memory_percent: policy_field(&fields, "target_memory_percent")?,
            scale_down_window_s: policy_field(&fields, "scale_down_window_s")?,
            // A form from before scale to zero has no such field: never.
            idle_to_zero_s: if fields.contains_key("idle_to_zero_s") {
                policy_field(&fields, "idle_to_zero_s")?
            } else {
                0
            },
        })
    })();
    let set = match policy {
        Ok(policy) => signed
            .user
            .runtime()
            .set_scale_policy(api::SetScalePolicyRequest {
                tenant: signed.who.tenant.clone(),
                app: app.clone(),
                stage: stage.clone(),
                policy: Some(policy),
            })
            .await
            .map(|_| ()),
        Err(status) => Err(status),
    };
    let refused = match set {
        Ok(()) => {
            return redirect(
                &format!("/apps/{}#scale-{}", encode(&app), encode(&stage)),
                &[],
            );
        }
        Err(status) => status,
    };
    match load(&signed, &app).await {
        Ok(mut p) => {
            p.refused = Some((stage, Refusal::of(&refused)));
            app_response(&signed, &p, http_status(&refused))
        }
        Err(_) => failure(&refused),
    }
}

/// The settings page of `app` on `stage`, with the last change's outcome.
async fn settings_response(
    signed: &SignedIn,
    app: &str,
    stage: &str,
    refused: Option<(Form, Status, String)>,
    done: Option<String>,
) -> Response {
    let settings = signed
        .user
        .settings()
        .get_settings(api::GetSettingsRequest {
            tenant: signed.who.tenant.clone(),
            app: app.to_owned(),
            stage: stage.to_owned(),
        })
        .await;
    let settings = match settings {
        Ok(s) => s.into_inner(),
        Err(status) => return failure(&status),
    };
    let names = match signed.user.stages(&signed.who.tenant).await {
        Ok(names) => names,
        Err(status) => return failure(&status),
    };
    let code = refused
        .as_ref()
        .map_or(StatusCode::OK, |(_, status, _)| http_status(status));
    let p = SettingsPage {
        settings,
        may_change: board::may_release(&signed.who, &names, stage),
        csrf: signed.who.csrf.clone(),
        refused: refused.map(|(form, status, name)| (form, Refusal::of(&status), name)),
        done,
    };
    let title = format!("{app} on {stage}: settings");
    html(
        code,
        layout::page(&title, Some(&signed.who), settings::page(&p)),
        &[],
    )
}

/// `GET /apps/{app}/{stage}/settings`.
pub async fn settings_page(
    signed: SignedIn,
    Path((app, stage)): Path<(String, String)>,
) -> Response {
    settings_response(&signed, &app, &stage, None, None).await
}

/// `POST /apps/{app}/{stage}/settings`: set `name` to `value`, or `unset` one.
pub async fn change_setting(
    Path((app, stage)): Path<(String, String)>,
    CheckedForm { signed, fields }: CheckedForm,
) -> Response {
    let field = |n: &str| fields.get(n).cloned().unwrap_or_default();
    let (name, unset) = match fields.get("unset") {
        Some(unset) => (unset.clone(), true),
        None => (field("name"), false),
    };
    let mut request = api::ChangeSettingsRequest {
        tenant: signed.who.tenant.clone(),
        app: app.clone(),
        stage: stage.clone(),
        ..Default::default()
    };
    if unset {
        request.unset.push(name.clone());
    } else {
        request.set.insert(name.clone(), field("value"));
    }
    let outcome = signed.user.settings().change_settings(request).await;
    let done = |what: &str| Some(format!("setting {name} {what}"));
    match outcome {
        Ok(_) => {
            let what = if unset { "unset" } else { "set" };
            settings_response(&signed, &app, &stage, None, done(what)).await
        }
        Err(status) => {
            let status = setting_field(status, &name);
            settings_response(
                &signed,
                &app,
                &stage,
                Some((Form::Setting, status, name)),
                None,
            )
            .await
        }
    }
}

/// A settings change names the map entry (`change_settings.set.{name}`) whether its name or
/// its value is wrong: the form's field is the name when it is not a setting name, else the
/// value.
fn setting_field(status: Status, name: &str) -> Status {
    let named = status
        .metadata()
        .get(crate::respond::FIELD_TRAILER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|f| f.starts_with("change_settings.set"));
    if !named {
        return status;
    }
    let field = if neo_protocol::names::validate_setting_name("name", name).is_ok() {
        "value"
    } else {
        "name"
    };
    with_field(status, field)
}

/// `POST /apps/{app}/{stage}/secrets`: seal `value` as `name`'s next version, or `unset` one.
pub async fn change_secret(
    Path((app, stage)): Path<(String, String)>,
    CheckedForm { signed, fields }: CheckedForm,
) -> Response {
    let tenant = signed.who.tenant.clone();
    let settings = signed.user.settings();
    let (name, outcome) = match fields.get("unset") {
        Some(name) => {
            let request = api::UnsetSecretRequest {
                tenant,
                app: app.clone(),
                stage: stage.clone(),
                name: name.clone(),
            };
            (
                name.clone(),
                settings
                    .clone()
                    .unset_secret(request)
                    .await
                    .map(|_| "unset".to_owned()),
            )
        }
        None => {
            let name = fields.get("name").cloned().unwrap_or_default();
            let request = api::SetSecretRequest {
                tenant,
                app: app.clone(),
                stage: stage.clone(),
                name: name.clone(),
                value: fields.get("value").cloned().unwrap_or_default(),
            };
            let set = settings.clone().set_secret(request).await.map(|s| {
                let version = s
                    .into_inner()
                    .secrets
                    .iter()
                    .find(|x| x.name == name)
                    .map_or(0, |x| x.version);
                format!("set: version {version}")
            });
            (name, set)
        }
    };
    match outcome {
        Ok(what) => {
            let done = Some(format!("secret {name} {what}"));
            settings_response(&signed, &app, &stage, None, done).await
        }
        Err(status) => {
            settings_response(
                &signed,
                &app,
                &stage,
                Some((Form::Secret, status, name)),
                None,
            )
            .await
        }
    }
}

/// The build `id`.
async fn get_build(signed: &SignedIn, id: &str) -> Result<api::Build, Status> {
    Ok(signed
        .user
        .builds()
        .get_build(api::GetBuildRequest {
            tenant: signed.who.tenant.clone(),
            build_id: id.to_owned(),
        })
        .await?
        .into_inner())
}

/// `GET /builds/{id}`: a finished build's whole log, or a running one's page that streams it.
pub async fn build_page(signed: SignedIn, Path(id): Path<String>) -> Response {
    let b = match get_build(&signed, &id).await {
        Ok(b) => b,
        Err(status) => return failure(&status),
    };
    let mut lines = Vec::new();
    if !build::running(&b) {
        let log = signed
            .user
            .builds()
            .build_log(api::BuildLogRequest {
                tenant: signed.who.tenant.clone(),
                build_id: id.clone(),
                follow: false,
            })
            .await;
        match log {
            Ok(log) => {
                let mut log = log.into_inner();
                while let Ok(Some(line)) = log.message().await {
                    lines.push(line);
                }
            }
            Err(status) => return failure(&status),
        }
    }
    let title = format!("Build {id}");
    html(
        StatusCode::OK,
        layout::page(&title, Some(&signed.who), build::page(&b, &lines)),
        &[],
    )
}

/// `GET /builds/{id}/log`: the log's lines as `line` events (each an HTML list item) until the
/// build's attempt ends, then `end` with the build's status.
pub async fn build_log(signed: SignedIn, Path(id): Path<String>) -> Response {
    let request = api::BuildLogRequest {
        tenant: signed.who.tenant.clone(),
        build_id: id.clone(),
        follow: true,
    };
    let log = match signed.user.builds().build_log(request).await {
        Ok(log) => log.into_inner(),
        Err(status) => return failure(&status),
    };
    Sse::new(log_events(signed, id, log))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

fn log_events(
    signed: SignedIn,
    id: String,
    log: tonic::Streaming<pb::BuildLogLine>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let lines = log
        .take_while(|r| futures::future::ready(r.is_ok()))
        .filter_map(|r| futures::future::ready(r.ok()))
        .map(|line| {
            Ok(Event::default()
                .event("line")
                .data(build::line(&line).into_string()))
        });
    // The log's last line may come just before the build's outcome is recorded: ask again,
    // briefly.
    let end = futures::stream::once(async move {
        let mut word = "ended";
        for _ in 0..END_ASKS {
            match get_build(&signed, &id).await {
                Ok(b) if !build::running(&b) => {
                    word = app_page::build_word(&b);
                    break;
                }
                Ok(_) => tokio::time::sleep(END_ASK_EVERY).await,
                Err(_) => break,
            }
        }
        Ok(Event::default().event("end").data(word))
    });
    lines.chain(end)
}
