//! The gateway's in-process way to the platform, for a process that hosts both.

use std::sync::Arc;

use neo_actors::Platform;
use neo_gateway::Dispatch;
use neo_protocol::{EntityRef, pb};

/// Dispatches the gateway's commands and queries to this process's platform.
pub struct LocalDispatch(pub Arc<Platform>);

#[tonic::async_trait]
impl Dispatch for LocalDispatch {
    async fn command(
        &self,
        entity: &EntityRef,
        mut request: pb::CommandRequest,
    ) -> Result<pb::CommandReply, tonic::Status> {
        if request.traceparent.is_empty() {
            request.traceparent = neo_protocol::trace::current_traceparent();
        }
        Ok(self.0.dispatch(entity, request).await)
    }

    async fn query(&self, entity: &EntityRef) -> Result<pb::StateReply, tonic::Status> {
        Ok(self.0.query(entity).await)
    }
}
