//! The entity host: one live actor per entity, activated on demand, passivated when idle.
//!
//! [`EntityHost::execute`] routes a command to the entity's actor (activating it; its state is
//! rebuilt from the latest snapshot plus the events after it by the first command that needs
//! it), and returns what the actor decided. One actor per entity per process makes it the entity's only writer here; writers in
//! other processes are reconciled by the log's optimistic concurrency.
//!
//! - [`entity`]: the actor (load, decide through the aggregate, append, reply).
//! - [`live`]: the map of live actors, their passivation and the bound on their number.
//! - [`supervisor`]: forgets crashed actors so the next command rebuilds them from the log.

mod entity;
mod live;
mod supervisor;

use std::sync::Arc;
use std::time::Duration;

use neo_protocol::EntityRef;
use ractor::{Actor, ActorRef};

use crate::aggregate::{Aggregate, Rejection};
use crate::store::{EventStore, StoreError};

use entity::{EntityActor, EntityMsg};
pub use entity::{fold_event, restore};
use live::LiveMap;
use supervisor::Supervisor;

/// How a host behaves.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// An actor with no command for this long is stopped.
    pub idle_timeout: Duration,
    /// The most actors kept live; past it the least recently used are stopped.
    pub max_live: usize,
    /// How many times a command is decided again after losing a race to another writer.
    pub max_conflict_retries: u32,
    /// A snapshot is written after this many events since the last one.
    pub snapshot_every: u64,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(300),
            max_live: 200_000,
            max_conflict_retries: 16,
            snapshot_every: 256,
        }
    }
}

/// Who asked, and why: carried into every event a command produces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandMeta {
    /// Idempotency key.
    pub command_id: String,
    /// Shared by everything one user action caused.
    pub correlation_id: String,
    /// The event or command that caused this one.
    pub causation_id: String,
    /// The authenticated principal.
    pub principal: String,
    /// W3C trace context.
    pub traceparent: Option<String>,
    /// Return the entity's encoded state in [`Accepted::state`].
    pub want_state: bool,
}

impl CommandMeta {
    /// A user command with a fresh id, correlated to itself.
    pub fn new(principal: impl Into<String>) -> Self {
        let id = uuid::Uuid::new_v4().to_string();
        Self {
            correlation_id: id.clone(),
            command_id: id,
            causation_id: String::new(),
            principal: principal.into(),
            traceparent: None,
            want_state: false,
        }
    }
}

/// One event written (or found written) by a command.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded<E> {
    /// Its stream sequence.
    pub sequence: u64,
    /// Its type name.
    pub event_type: String,
    /// The event.
    pub event: E,
}

/// A command's successful outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted<E> {
    /// The events the command wrote (the first time, for a retried command id).
    pub events: Vec<Recorded<E>>,
    /// The entity's last sequence after the command.
    pub last_sequence: u64,
    /// The command id had already been applied; nothing new was written.
    pub duplicate: bool,
    /// The entity's state after the command, encoded (`{Kind}State`), when asked for
    /// ([`CommandMeta::want_state`]); empty otherwise.
    pub state: bytes::Bytes,
}

/// Why a command did not succeed: refusal, lost races, or infrastructure, kept apart.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HostError {
    /// The domain refused the command.
    #[error("refused: {0}")]
    Rejected(Rejection),
    /// Other writers kept appending first; the command was decided again and gave up.
    #[error("{entity}: gave up after {attempts} attempts lost to concurrent writers")]
    Aborted {
        /// The entity.
        entity: String,
        /// Attempts made.
        attempts: u32,
    },
    /// The event store failed (unavailable, malformed data, too large…).
    #[error(transparent)]
    Store(StoreError),
    /// The entity's actor went away before answering (host shutting down).
    #[error("{0}: the entity's actor stopped before answering")]
    Stopped(String),
}

/// Hosts the entities of one kind.
pub struct EntityHost<A: Aggregate> {
    live: Arc<LiveMap<A>>,
    store: Arc<dyn EventStore>,
    config: Arc<HostConfig>,
    supervisor: ActorRef<supervisor::SupervisorMsg>,
    reaper: tokio::task::JoinHandle<()>,
}

impl<A: Aggregate> EntityHost<A> {
    /// Starts a host over `store`.
    ///
    /// # Errors
    /// When the supervisor actor cannot be spawned.
    pub async fn start(store: Arc<dyn EventStore>, config: HostConfig) -> Result<Self, HostError> {
        let live = Arc::new(LiveMap::<A>::new());
        let (supervisor, _) = Actor::spawn(None, Supervisor::<A>::new(), live.clone())
            .await
            .map_err(|e| HostError::Stopped(format!("supervisor: {e}")))?;
        let reaper = tokio::spawn(live::reap(Arc::downgrade(&live), config.idle_timeout));
        Ok(Self {
            live,
            store,
            config: Arc::new(config),
            supervisor,
            reaper,
        })
    }

    /// How many entities of this kind are live in this process.
    pub fn live_count(&self) -> usize {
        self.live.len()
    }

    async fn actor(&self, entity: &EntityRef) -> Result<ActorRef<EntityMsg<A>>, HostError> {
        let slot = self.live.slot(entity, self.config.max_live);
        let supervisor = self.supervisor.get_cell();
        let args = entity::Args {
            entity: entity.clone(),
            store: self.store.clone(),
            config: self.config.clone(),
        };
        let result = slot
            .get_or_try_init(|| async move {
                Actor::spawn_linked(None, EntityActor::<A>::new(), args, supervisor)
                    .await
                    .map(|(actor, _)| actor)
                    .map_err(entity::activation_error)
            })
            .await;
        match result {
            Ok(actor) => Ok(actor.clone()),
            Err(e) => {
                self.live.forget_uninitialised(entity);
                Err(e)
            }
        }
    }

    /// Runs `command` against `entity`: decide, append, reply.
    ///
    /// # Guarantees
    /// A command id is applied at most once: sending it again returns the original events
    /// with `duplicate: true`.
    ///
    /// # Errors
    /// [`HostError::Rejected`] when the domain refuses; [`HostError::Aborted`] after
    /// [`HostConfig::max_conflict_retries`] lost races; [`HostError::Store`] when the log fails
    /// or the entity's events cannot be read.
    pub async fn execute(
        &self,
        entity: &EntityRef,
        meta: CommandMeta,
        command: A::Command,
    ) -> Result<Accepted<A::Event>, HostError> {
        self.ask(entity, |reply| EntityMsg::Execute {
            meta: meta.clone(),
            command: command.clone(),
            reply,
        })
        .await
    }

    /// The entity's current state and the sequence it covers, caught up with the log first.
    ///
    /// # Errors
    /// [`HostError::Store`] when the log fails or the entity's events cannot be read.
    pub async fn state(&self, entity: &EntityRef) -> Result<(A, u64), HostError> {
        self.ask(entity, |reply| EntityMsg::Read { reply }).await
    }

    /// Sends the message `make` builds to the entity's actor and waits for its answer.
    ///
    /// An actor may be stopped (passivated or evicted) between lookup and delivery; the
    /// message is then undelivered and safe to route again to a fresh activation.
    async fn ask<T>(
        &self,
        entity: &EntityRef,
        make: impl Fn(tokio::sync::oneshot::Sender<Result<T, HostError>>) -> EntityMsg<A>,
    ) -> Result<T, HostError> {
        for _ in 0..3 {
            let actor = self.actor(entity).await?;
            let (tx, rx) = tokio::sync::oneshot::channel();
            if actor.send_message(make(tx)).is_err() {
                self.live.forget(entity, &actor);
                continue;
            }
            match rx.await {
                Ok(result) => return result,
                Err(_) => self.live.forget(entity, &actor),
            }
        }
        Err(HostError::Stopped(entity.to_string()))
    }

    /// Stops every live actor of this host (they are rebuilt from the log when next used).
    pub fn passivate_all(&self) {
        self.live.stop_all();
    }
}

impl<A: Aggregate> Drop for EntityHost<A> {
    fn drop(&mut self) {
        self.reaper.abort();
        self.live.stop_all();
        self.supervisor.stop(None);
    }
}

/// A domain refusal is a host error as it stands.
impl From<Rejection> for HostError {
    fn from(r: Rejection) -> Self {
        HostError::Rejected(r)
    }
}

#[cfg(test)]
mod tests;
