//! The supervisor of a host's entity actors: a crashed actor is forgotten, so the next command
//! to its entity rebuilds it from the log.

use std::marker::PhantomData;
use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};

use super::live::LiveMap;
use crate::aggregate::Aggregate;

/// The supervisor takes no messages of its own.
pub(super) enum SupervisorMsg {}

pub(super) struct Supervisor<A>(PhantomData<fn() -> A>);

impl<A> Supervisor<A> {
    pub(super) fn new() -> Self {
        Self(PhantomData)
    }
}

impl<A: Aggregate> Actor for Supervisor<A> {
    type Msg = SupervisorMsg;
    type State = Arc<LiveMap<A>>;
    type Arguments = Arc<LiveMap<A>>;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        live: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(live)
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        live: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // A stopped actor was already removed by whoever stopped it; a stale entry is dropped
        // when the next command finds its mailbox closed.
        if let SupervisionEvent::ActorFailed(cell, err) = event {
            tracing::error!(kind = %A::KIND, actor = %cell.get_id(), error = %err,
                "entity actor crashed; it will be rebuilt from the log on its next command");
            live.forget_actor(cell.get_id());
        }
        Ok(())
    }
}
