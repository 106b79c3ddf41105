//! A running canary ended by hand from the board: aborted (its baseline takes all the traffic
//! again) or promoted now (it takes all of it), with `Deployments.EndCanary`.

use axum::response::Response;
use neo_gateway::api;
use tonic::Status;

use super::CheckedForm;
use crate::pages::board::Refused;
use crate::respond::{http_status, redirect};

/// The canary's release a form names (absent or empty: 0, whichever runs), else
/// `INVALID_ARGUMENT`.
fn release(fields: &std::collections::HashMap<String, String>) -> Result<u32, Status> {
    match fields.get("release").map(String::as_str) {
        None | Some("") => Ok(0),
        Some(number) => number
            .parse()
            .map_err(|_| Status::invalid_argument("release: not a number")),
    }
}

/// Ends the canary a board form names; on success to the board, else the board with the
/// refusal in the canary's cell.
async fn end(CheckedForm { signed, fields }: CheckedForm, promote: bool) -> Response {
    let field = |name: &str| fields.get(name).cloned().unwrap_or_default();
    let (app, stage) = (field("app"), field("stage"));
    let ended = match release(&fields) {
        Ok(release) => signed
            .user
            .deployments()
            .end_canary(api::EndCanaryRequest {
                tenant: signed.who.tenant.clone(),
                app: app.clone(),
                stage: stage.clone(),
                release,
                promote,
                reason: String::new(),
            })
            .await
            .map(|_| ()),
        Err(status) => Err(status),
    };
    match ended {
        Ok(()) => redirect("/", &[]),
        Err(status) => {
            let refused = Refused {
                app,
                stage,
                message: status.message().to_owned(),
            };
            super::board::board_page(&signed, Some(refused), http_status(&status)).await
        }
    }
}

/// `POST /canary/abort`: roll the running canary back.
pub async fn abort(form: CheckedForm) -> Response {
    end(form, false).await
}

/// `POST /canary/promote`: give the running canary all the traffic now.
pub async fn promote_now(form: CheckedForm) -> Response {
    end(form, true).await
}
