//! The platform as a [`neo_client::Transport`]: a process that hosts the platform (`neo
//! serve`, the benchmarks) gives its gateway a [`neo_client::PlatformClient`] over it, and
//! commands skip the NATS hop.

use neo_client::{ClientError, Transport};
use neo_protocol::{EntityRef, pb};

use super::Platform;

#[async_trait::async_trait]
impl Transport for Platform {
    async fn command(
        &self,
        entity: &EntityRef,
        mut request: pb::CommandRequest,
    ) -> Result<pb::CommandReply, ClientError> {
        if request.traceparent.is_empty() {
            request.traceparent = neo_telemetry::trace::current_traceparent();
        }
        Ok(self.dispatch(entity, request).await)
    }

    async fn query(&self, entity: &EntityRef) -> Result<pb::StateReply, ClientError> {
        Ok(Platform::query(self, entity).await)
    }
}
