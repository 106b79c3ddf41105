//! Releasing: promote (at once or as a canary), deploy and roll back, each confirmed on a page
//! with its impact first.

use axum::extract::RawQuery;
use axum::http::StatusCode;
use axum::response::Response;
use neo_gateway::api;
use tonic::Status;

use super::{CheckedForm, SignedIn, required};
use crate::pages::layout;
use crate::pages::release::{self, CanaryOffer, Confirm, Kind};
use crate::respond::{encode, failure, html, http_status, query, redirect};

/// The number a form or query gives as `name`, else `INVALID_ARGUMENT` naming it.
fn number(params: &std::collections::HashMap<String, String>, name: &str) -> Result<u32, Status> {
    required(params, name)?
        .parse()
        .map_err(|_| Status::invalid_argument(format!("{name}: not a number")))
}

/// The release a request asks for: its kind and the revision it would run.
async fn resolve(
    signed: &SignedIn,
    params: &std::collections::HashMap<String, String>,
    promote: bool,
) -> Result<(Kind, String, String, u32), Status> {
    let app = required(params, "app")?.to_owned();
    let stage = required(params, "stage")?.to_owned();
    let tenant = signed.who.tenant.clone();
    if promote {
        let board = super::board::load(&signed.user, &signed.who).await?;
        let index = board
            .stages
            .iter()
            .position(|s| *s == stage)
            .ok_or_else(|| Status::not_found(format!("{tenant} has no stage {stage}")))?;
        let from = index
            .checked_sub(1)
            .and_then(|i| board.stages.get(i))
            .ok_or_else(|| {
                Status::failed_precondition(format!(
                    "{stage} is the first stage: deploy to it instead"
                ))
            })?
            .clone();
        let source = board
            .apps
            .get(&app)
            .and_then(|stages| stages.get(&from))
            .filter(|s| s.release > 0)
            .ok_or_else(|| {
                Status::failed_precondition(format!("{app} has no release on {from} to promote"))
            })?;
        let revision = source.revision;
        return Ok((Kind::Promote { from }, app, stage, revision));
    }
    if params.contains_key("revision") {
        let revision = number(params, "revision")?;
        return Ok((Kind::Deploy, app, stage, revision));
    }
    let to_release = number(params, "release")?;
    let deployment = signed
        .user
        .deployments()
        .get_deployment(api::GetDeploymentRequest {
            tenant,
            app: app.clone(),
            stage: stage.clone(),
        })
        .await?
        .into_inner();
    let revision = deployment
        .state
        .and_then(|s| s.releases.into_iter().find(|r| r.number == to_release))
        .map(|r| r.revision)
        .ok_or_else(|| {
            Status::not_found(format!("{app} has no release v{to_release} on {stage}"))
        })?;
    Ok((Kind::Rollback { to_release }, app, stage, revision))
}

/// The confirmation of the release `params` ask for, with `refused` when the last attempt was.
async fn confirmation(
    signed: &SignedIn,
    params: &std::collections::HashMap<String, String>,
    promote: bool,
    refused: Option<String>,
) -> Result<Confirm, Status> {
    let (kind, app, stage, revision) = resolve(signed, params, promote).await?;
    let impact = async {
        signed
            .user
            .deployments()
            .impact(api::ImpactRequest {
                tenant: signed.who.tenant.clone(),
                app: app.clone(),
                stage: stage.clone(),
                revision,
            })
            .await
            .map(tonic::Response::into_inner)
    };
    let checked = params.get("canary").is_some_and(|c| c == "1");
    let canary = async {
        match &kind {
            Kind::Promote { .. } => canary_offer(signed, &app, &stage, checked).await,
            Kind::Deploy | Kind::Rollback { .. } => Ok(None),
        }
    };
    let (impact, canary) = tokio::try_join!(impact, canary)?;
    Ok(Confirm {
        kind,
        app,
        stage,
        revision,
        impact,
        csrf: signed.who.csrf.clone(),
        refused,
        canary,
    })
}

/// A promotion onto `stage` may roll out as a canary when the stage runs a release to compare
/// it with: under the stage's canary policy, ticked when `checked`.
async fn canary_offer(
    signed: &SignedIn,
    app: &str,
    stage: &str,
    checked: bool,
) -> Result<Option<CanaryOffer>, Status> {
    let found = signed
        .user
        .deployments()
        .get_deployment(api::GetDeploymentRequest {
            tenant: signed.who.tenant.clone(),
            app: app.to_owned(),
            stage: stage.to_owned(),
        })
        .await;
    let state = match found {
        Ok(d) => d.into_inner().state.unwrap_or_default(),
        // Never deployed there: nothing to compare a canary with.
        Err(status) if status.code() == tonic::Code::NotFound => return Ok(None),
        Err(status) => return Err(status),
    };
    Ok((state.current > 0).then_some(CanaryOffer {
        baseline: state.current,
        policy: state.canary_policy,
        checked,
    }))
}

async fn confirm_page(signed: SignedIn, raw: Option<String>, promote: bool) -> Response {
    let params = query(raw.as_deref());
    match confirmation(&signed, &params, promote, None).await {
        Ok(c) => html(
            StatusCode::OK,
            layout::page(&release::title(&c), Some(&signed.who), release::confirm(&c)),
            &[],
        ),
        Err(status) => failure(&status),
    }
}

/// Which release a form asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asked {
    Promote,
    Deploy,
    Rollback,
}

/// Makes the release a confirmation's form posts; on success to the board (a promotion) or
/// the app, else the confirmation again with the refusal.
async fn make(CheckedForm { signed, fields }: CheckedForm, asked: Asked) -> Response {
    let force = fields.get("force").is_some_and(|f| f == "1");
    let field = |name: &str| fields.get(name).cloned().unwrap_or_default();
    let (tenant, app, stage) = (signed.who.tenant.clone(), field("app"), field("stage"));
    let deployments = signed.user.deployments();
    let made = match asked {
        Asked::Promote => {
            let request = api::PromoteRequest {
                tenant,
                app: app.clone(),
                stage,
                force,
                canary: fields.get("canary").is_some_and(|c| c == "1"),
            };
            deployments
                .clone()
                .promote(request)
                .await
                .map(|_| "/".to_owned())
        }
        Asked::Deploy => match number(&fields, "revision") {
            Ok(revision) => {
                let request = api::DeployRequest {
                    tenant,
                    app: app.clone(),
                    stage,
                    revision,
                    force,
                };
                let to = format!("/apps/{}", encode(&app));
                deployments.clone().deploy(request).await.map(|_| to)
            }
            Err(status) => Err(status),
        },
        Asked::Rollback => match number(&fields, "release") {
            Ok(to_release) => {
                let request = api::RollbackRequest {
                    tenant,
                    app: app.clone(),
                    stage,
                    to_release,
                    force,
                };
                let to = format!("/apps/{}", encode(&app));
                deployments.clone().rollback(request).await.map(|_| to)
            }
            Err(status) => Err(status),
        },
    };
    let refused = match made {
        Ok(to) => return redirect(&to, &[]),
        Err(status) => status,
    };
    let message = Some(refused.message().to_owned());
    match confirmation(&signed, &fields, asked == Asked::Promote, message).await {
        Ok(c) => html(
            http_status(&refused),
            layout::page(&release::title(&c), Some(&signed.who), release::confirm(&c)),
            &[],
        ),
        Err(_) => failure(&refused),
    }
}

/// `GET /promote?app=&stage=`.
pub async fn promote_page(signed: SignedIn, RawQuery(raw): RawQuery) -> Response {
    confirm_page(signed, raw, true).await
}

/// `GET /deploy?app=&stage=&revision=`.
pub async fn deploy_page(signed: SignedIn, RawQuery(raw): RawQuery) -> Response {
    confirm_page(signed, raw, false).await
}

/// `GET /rollback?app=&stage=&release=`.
pub async fn rollback_page(signed: SignedIn, RawQuery(raw): RawQuery) -> Response {
    confirm_page(signed, raw, false).await
}

/// `POST /promote`.
pub async fn promote(form: CheckedForm) -> Response {
    make(form, Asked::Promote).await
}

/// `POST /deploy`.
pub async fn deploy(form: CheckedForm) -> Response {
    make(form, Asked::Deploy).await
}

/// `POST /rollback`.
pub async fn rollback(form: CheckedForm) -> Response {
    make(form, Asked::Rollback).await
}
