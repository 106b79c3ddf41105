//! Builders for the commands tests send, wrapped in request envelopes.

use bytes::Bytes;
use neo_protocol::pb;
use prost::Message;

/// A request envelope with a fresh command id.
pub fn request(command: impl Message) -> pb::CommandRequest {
    request_with_id(&uuid::Uuid::new_v4().to_string(), command)
}

/// A request envelope with the given command id.
pub fn request_with_id(id: &str, command: impl Message) -> pb::CommandRequest {
    pb::CommandRequest {
        command_id: id.to_owned(),
        correlation_id: String::new(),
        causation_id: String::new(),
        principal: "tester".into(),
        command: Bytes::from(command.encode_to_vec()),
        traceparent: String::new(),
        want_state: false,
        lease: None,
    }
}

/// A content digest made from a number.
pub fn digest(n: u64) -> String {
    format!("sha256:{n:064x}")
}

/// Creates a tenant with the default stages and `admin` as its admin.
pub fn create_tenant(admin: &str) -> pb::TenantCommand {
    pb::TenantCommand {
        command: Some(pb::tenant_command::Command::Create(pb::CreateTenant {
            display_name: "Acme".into(),
            stages: vec![],
            admin: admin.into(),
        })),
    }
}

/// Creates an app.
pub fn create_app() -> pb::AppCommand {
    pb::AppCommand {
        command: Some(pb::app_command::Command::Create(pb::CreateApp {
            description: "an app".into(),
        })),
    }
}

/// Records revision content `n`.
pub fn revision(n: u64) -> pb::AppCommand {
    pb::AppCommand {
        command: Some(pb::app_command::Command::CreateRevision(
            pb::CreateRevision {
                digest: digest(n),
                size: 100,
                author: "alice".into(),
                message: format!("change {n}"),
                dependencies: vec![],
                deploy_to: String::new(),
            },
        )),
    }
}

/// Deploys build `{app}_r{revision}` with image `digest(image)`.
pub fn deploy(app: &str, stage: &str, revision: u32, image: u64) -> pb::DeploymentCommand {
    pb::DeploymentCommand {
        command: Some(pb::deployment_command::Command::Deploy(pb::Deploy {
            app: app.into(),
            stage: stage.into(),
            build_id: format!("{app}_r{revision}"),
            revision,
            image_digest: digest(image),
            ..Default::default()
        })),
    }
}

/// Promotes into `stage` from the previous stage.
pub fn promote(app: &str, stage: &str) -> pb::DeploymentCommand {
    pb::DeploymentCommand {
        command: Some(pb::deployment_command::Command::Promote(pb::Promote {
            app: app.into(),
            stage: stage.into(),
            ..Default::default()
        })),
    }
}
