//! The gateway's services as the signed-in user: every call carries the session's token as
//! its bearer, so the gateway authorizes it exactly as it would the CLI's.

use neo_gateway::api::{
    apps_client::AppsClient, builds_client::BuildsClient, deployments_client::DeploymentsClient,
    events_client::EventsClient, identity_client::IdentityClient, runtime_client::RuntimeClient,
    settings_client::SettingsClient, tenants_client::TenantsClient,
};
use tonic::Status;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// Adds the user's bearer token to each request.
#[derive(Clone)]
pub struct Bearer(MetadataValue<Ascii>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// A channel with the user's token.
pub type Authed = InterceptedService<Channel, Bearer>;

/// The gateway, reached over one channel.
#[derive(Clone, Debug)]
pub struct Gateway {
    channel: Channel,
}

/// The clients of one user's calls.
pub struct AsUser {
    channel: Authed,
}

impl Gateway {
    /// The gateway behind `channel`.
    pub fn new(channel: Channel) -> Self {
        Self { channel }
    }

    /// Identity without credentials (to sign in).
    pub fn anonymous(&self) -> IdentityClient<Channel> {
        IdentityClient::new(self.channel.clone())
    }

    /// The services as the holder of `token`.
    ///
    /// # Errors
    /// `UNAUTHENTICATED` when the token cannot be a header value (it is not one of ours).
    pub fn as_user(&self, token: &str) -> Result<AsUser, Status> {
        let bearer = format!("Bearer {token}")
            .parse()
            .map_err(|_| Status::unauthenticated("the session is not valid: sign in again"))?;
        Ok(AsUser {
            channel: InterceptedService::new(self.channel.clone(), Bearer(bearer)),
        })
    }
}

impl AsUser {
    /// Identity (who am I, sign out, switch tenant).
    pub fn identity(&self) -> IdentityClient<Authed> {
        IdentityClient::new(self.channel.clone())
    }

    /// Tenants (stages, members).
    pub fn tenants(&self) -> TenantsClient<Authed> {
        TenantsClient::new(self.channel.clone())
    }

    /// Apps (revisions).
    pub fn apps(&self) -> AppsClient<Authed> {
        AppsClient::new(self.channel.clone())
    }

    /// Builds (their logs).
    pub fn builds(&self) -> BuildsClient<Authed> {
        BuildsClient::new(self.channel.clone())
    }

    /// Settings and secrets.
    pub fn settings(&self) -> SettingsClient<Authed> {
        SettingsClient::new(self.channel.clone())
    }

    /// Deployments (deploy, promote, roll back, releases, impact).
    pub fn deployments(&self) -> DeploymentsClient<Authed> {
        DeploymentsClient::new(self.channel.clone())
    }

    /// The Runtime (status, logs, scale policies).
    pub fn runtime(&self) -> RuntimeClient<Authed> {
        RuntimeClient::new(self.channel.clone())
    }

    /// The stages of `tenant`, in promotion order.
    ///
    /// # Errors
    /// The gateway's refusal.
    pub async fn stages(&self, tenant: &str) -> Result<Vec<String>, Status> {
        let t = self
            .tenants()
            .get_tenant(neo_gateway::api::GetTenantRequest {
                tenant: tenant.to_owned(),
            })
            .await?
            .into_inner();
        Ok(t.state.map(|s| s.stages).unwrap_or_default())
    }

    /// Events (the live stream, history, why, state at).
    pub fn events(&self) -> EventsClient<Authed> {
        EventsClient::new(self.channel.clone())
    }
}
