//! The entity actor: rebuilds its state, then takes one command at a time: decide through the
//! aggregate, append with the expected last sequence, and on a conflict catch up and decide
//! again (bounded).

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::Arc;

use bytes::Bytes;
use neo_protocol::envelope::{EventMeta, chain_link, now_ms};
use neo_protocol::{EntityRef, pb};
use prost::Message as _;
use ractor::{Actor, ActorProcessingErr, ActorRef, SpawnErr};
use tokio::sync::oneshot;

use super::{Accepted, CommandMeta, HostConfig, HostError, Recorded};
use crate::aggregate::Aggregate;
use crate::store::{EventStore, NewEvent, StoreError, StoredEvent};

/// Command ids remembered per entity (also kept in its snapshot), so a retried command gets
/// its original result even after the store's de-duplication window.
pub(crate) const RECENT_COMMANDS: usize = 16;

pub(crate) enum EntityMsg<A: Aggregate> {
    Execute {
        meta: CommandMeta,
        command: A::Command,
        reply: oneshot::Sender<Result<Accepted<A::Event>, HostError>>,
    },
    Read {
        reply: oneshot::Sender<Result<(A, u64), HostError>>,
    },
}

pub(crate) struct Args {
    pub entity: EntityRef,
    pub store: Arc<dyn EventStore>,
    pub config: Arc<HostConfig>,
}

pub(crate) struct EntityActor<A>(PhantomData<fn() -> A>);

impl<A> EntityActor<A> {
    pub(crate) fn new() -> Self {
        Self(PhantomData)
    }
}

pub(crate) struct State<A> {
    args: Args,
    state: A,
    sequence: u64,
    recent: VecDeque<pb::AppliedCommand>,
    since_snapshot: u64,
    /// False until the state was read from the store or proven empty by an append.
    loaded: bool,
    /// The head of the entity's hash chain: its last event's version and hash.
    chain: Chain,
}

/// The head of an entity's hash chain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chain {
    /// The last event's number within the entity (0: none chained yet).
    pub version: u64,
    /// The last event's chain hash.
    pub hash: String,
}

impl Chain {
    /// Moves the head past a stored event (events written before the chain leave it alone).
    fn follow(&mut self, meta: &EventMeta) {
        if meta.version > 0 {
            self.version = meta.version;
            self.hash.clone_from(&meta.hash);
        }
    }
}

/// Decodes one stored event (through the upcasting hook) and folds it into `state`.
///
/// # Errors
/// [`StoreError::Malformed`] when the payload cannot be decoded for this kind.
pub fn fold_event<A: Aggregate>(
    entity: &EntityRef,
    state: &mut A,
    stored: &StoredEvent,
) -> Result<A::Event, StoreError> {
    let malformed = |reason: String| StoreError::Malformed {
        entity: entity.to_string(),
        sequence: stored.sequence,
        reason,
    };
    let event = crate::stored::decode::<A>(
        &stored.meta.event_type,
        stored.meta.schema_version,
        stored.payload.clone(),
    )
    .map_err(|e| malformed(e.to_string()))?;
    state.apply(&event);
    Ok(event)
}

/// Rebuilds an entity's state from the store: the latest snapshot (when `use_snapshot`) plus
/// the events after it. Returns the state, the sequence it covers and the recent command ids.
///
/// # Errors
/// [`StoreError`] when the store fails or an event is malformed.
pub async fn restore<A: Aggregate>(
    store: &dyn EventStore,
    entity: &EntityRef,
    use_snapshot: bool,
) -> Result<(A, u64, Vec<pb::AppliedCommand>), StoreError> {
    let (state, sequence, recent, _) = restore_chained(store, entity, use_snapshot).await?;
    Ok((state, sequence, recent))
}

/// Like [`restore`], with the head of the entity's hash chain.
///
/// # Errors
/// As for [`restore`].
pub async fn restore_chained<A: Aggregate>(
    store: &dyn EventStore,
    entity: &EntityRef,
    use_snapshot: bool,
) -> Result<(A, u64, Vec<pb::AppliedCommand>, Chain), StoreError> {
    let last = store.last_sequence(entity).await?;
    let mut state = A::default();
    let mut sequence = 0;
    let mut recent = VecDeque::new();
    let mut chain = Chain::default();
    if last == 0 {
        return Ok((state, 0, Vec::new(), chain));
    }
    if use_snapshot && let Some(snap) = store.read_snapshot(entity).await? {
        match A::decode(snap.state) {
            Ok(s) if snap.sequence <= last => {
                state = s;
                sequence = snap.sequence;
                recent.extend(snap.recent_commands);
                chain = Chain {
                    version: snap.version,
                    hash: snap.hash,
                };
            }
            Ok(_) => tracing::warn!(%entity, "snapshot is ahead of the log; ignoring it"),
            Err(e) => tracing::warn!(%entity, error = %e, "ignoring undecodable snapshot"),
        }
    }
    if sequence < last {
        for stored in store.load(entity, sequence, last).await? {
            fold_event(entity, &mut state, &stored)?;
            remember(&mut recent, &stored);
            chain.follow(&stored.meta);
            sequence = stored.sequence;
        }
    }
    Ok((state, sequence, recent.into(), chain))
}

fn remember(recent: &mut VecDeque<pb::AppliedCommand>, stored: &StoredEvent) {
    match recent.back_mut() {
        Some(last) if last.command_id == stored.meta.command_id => {
            last.last_sequence = stored.sequence;
        }
        _ => {
            if recent.len() == RECENT_COMMANDS {
                recent.pop_front();
            }
            recent.push_back(pb::AppliedCommand {
                command_id: stored.meta.command_id.clone(),
                first_sequence: stored.sequence,
                last_sequence: stored.sequence,
            });
        }
    }
}

/// Turns a failed spawn into the host error the caller should see.
pub(crate) fn activation_error(e: SpawnErr) -> HostError {
    if let SpawnErr::StartupFailed(inner) = &e
        && let Some(store) = inner.downcast_ref::<StoreError>()
    {
        return HostError::Store(store.clone());
    }
    HostError::Stopped(format!("activation failed: {e}"))
}

impl<A: Aggregate> Actor for EntityActor<A> {
    type Msg = EntityMsg<A>;
    type State = State<A>;
    type Arguments = Args;

    /// Activation is lazy: the state is loaded by the first command that needs it (see
    /// [`State::execute`]), so activating a brand-new entity costs no read.
    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: Args,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(State {
            args,
            state: A::default(),
            sequence: 0,
            recent: VecDeque::new(),
            since_snapshot: 0,
            loaded: false,
            chain: Chain::default(),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            EntityMsg::Execute {
                meta,
                command,
                reply,
            } => {
                // Boxed: the task of every live actor would otherwise reserve room for the
                // largest state of this future, while it only exists during a command.
                let result = Box::pin(st.execute(meta, command)).await;
                let _ = reply.send(result);
            }
            EntityMsg::Read { reply } => {
                let result = Box::pin(st.load_and_catch_up())
                    .await
                    .map(|()| (st.state.clone(), st.sequence))
                    .map_err(HostError::Store);
                let _ = reply.send(result);
            }
        }
        Ok(())
    }
}

impl<A: Aggregate> State<A> {
    /// Rebuilds the state from the latest snapshot and the events after it, once.
    async fn load(&mut self) -> Result<(), StoreError> {
        if self.loaded {
            return Ok(());
        }
        let (state, sequence, recent, chain) =
            restore_chained::<A>(self.args.store.as_ref(), &self.args.entity, true)
                .await
                .inspect_err(|e| {
                    tracing::error!(entity = %self.args.entity, error = %e, "cannot load entity");
                })?;
        self.state = state;
        self.sequence = sequence;
        self.recent = recent.into();
        self.chain = chain;
        self.loaded = true;
        Ok(())
    }

    async fn load_and_catch_up(&mut self) -> Result<(), StoreError> {
        if self.loaded {
            self.catch_up().await
        } else {
            self.load().await
        }
    }

    /// Folds the events other writers appended since this actor's sequence.
    async fn catch_up(&mut self) -> Result<(), StoreError> {
        let events = self
            .args
            .store
            .load(&self.args.entity, self.sequence, u64::MAX)
            .await?;
        for stored in &events {
            fold_event(&self.args.entity, &mut self.state, stored)?;
            remember(&mut self.recent, stored);
            self.chain.follow(&stored.meta);
            self.sequence = stored.sequence;
        }
        self.since_snapshot += events.len() as u64;
        Ok(())
    }

    /// The original outcome of an already applied command id.
    async fn replay_outcome(
        &self,
        applied: &pb::AppliedCommand,
        want_state: bool,
    ) -> Result<Accepted<A::Event>, HostError> {
        let stored = self
            .args
            .store
            .load(
                &self.args.entity,
                applied.first_sequence - 1,
                applied.last_sequence,
            )
            .await
            .map_err(HostError::Store)?;
        let mut scratch = A::default();
        let mut events = Vec::with_capacity(stored.len());
        for s in &stored {
            let event = fold_event(&self.args.entity, &mut scratch, s).map_err(HostError::Store)?;
            events.push(Recorded {
                sequence: s.sequence,
                event_type: s.meta.event_type.clone(),
                event,
            });
        }
        Ok(Accepted {
            events,
            last_sequence: self.sequence,
            duplicate: true,
            state: self.encoded_state(want_state),
        })
    }

    fn encoded_state(&self, wanted: bool) -> Bytes {
        if wanted {
            Bytes::from(self.state.encode_to_vec())
        } else {
            Bytes::new()
        }
    }

    fn applied(&self, command_id: &str) -> Option<pb::AppliedCommand> {
        self.recent
            .iter()
            .find(|c| c.command_id == command_id)
            .cloned()
    }

    async fn execute(
        &mut self,
        meta: CommandMeta,
        command: A::Command,
    ) -> Result<Accepted<A::Event>, HostError> {
        if let Some(applied) = self.applied(&meta.command_id) {
            return self.replay_outcome(&applied, meta.want_state).await;
        }
        let attempts = self.args.config.max_conflict_retries + 1;
        // Whether a refusal (or a no-op) was decided on a state just caught up with the log.
        let mut confirmed = false;
        for attempt in 1..=attempts {
            // Not loaded yet: decide optimistically against the empty state. Only an append
            // with expected sequence 0 can prove that right; anything else loads and decides
            // again, so no answer ever rests on an unproven state.
            let events = match self.state.handle(command.clone()) {
                Ok(events) if !events.is_empty() => events,
                // Another platform process may have written since this actor last did (an
                // append would find out; a refusal or a no-op appends nothing): catch up once
                // and decide again before answering so.
                Ok(_) | Err(_) if self.loaded && !confirmed => {
                    confirmed = true;
                    let before = self.sequence;
                    self.catch_up().await.map_err(HostError::Store)?;
                    if self.sequence != before
                        && let Some(applied) = self.applied(&meta.command_id)
                    {
                        return self.replay_outcome(&applied, meta.want_state).await;
                    }
                    self.state.handle(command.clone())?
                }
                Ok(events) if self.loaded => events,
                Err(rejection) if self.loaded => return Err(rejection.into()),
                _ => {
                    self.load().await.map_err(HostError::Store)?;
                    if let Some(applied) = self.applied(&meta.command_id) {
                        return self.replay_outcome(&applied, meta.want_state).await;
                    }
                    self.state.handle(command.clone())?
                }
            };
            if events.is_empty() {
                return Ok(Accepted {
                    events: Vec::new(),
                    last_sequence: self.sequence,
                    duplicate: false,
                    state: self.encoded_state(meta.want_state),
                });
            }
            let time_ms = now_ms();
            let mut head = self.chain.clone();
            let new: Vec<NewEvent> = events
                .iter()
                .map(|e| {
                    let event_type = A::event_type(e);
                    let payload = Bytes::from(e.encode_to_vec());
                    let mut event_meta = EventMeta {
                        event_type: event_type.to_owned(),
                        schema_version: A::SCHEMA_VERSION,
                        command_id: meta.command_id.clone(),
                        correlation_id: meta.correlation_id.clone(),
                        causation_id: meta.causation_id.clone(),
                        who: meta.principal.clone(),
                        time_ms,
                        traceparent: meta.traceparent.clone(),
                        version: head.version + 1,
                        hash: String::new(),
                    };
                    let subject = neo_protocol::subjects::event(&self.args.entity, event_type);
                    event_meta.hash = chain_link(&head.hash, &subject, &event_meta, &payload);
                    head.follow(&event_meta);
                    NewEvent {
                        meta: event_meta,
                        payload,
                    }
                })
                .collect();
            let started = std::time::Instant::now();
            let appended = self
                .args
                .store
                .append(&self.args.entity, self.sequence, new)
                .await;
            let kind = neo_telemetry::metrics::KindLabel {
                kind: self.args.entity.kind.as_str(),
            };
            neo_telemetry::metrics::global()
                .append_seconds
                .get_or_create(&kind)
                .observe(started.elapsed().as_secs_f64());
            match appended {
                Ok(appended) if !appended.duplicate => {
                    // An append at sequence 0 proves the entity had no events.
                    self.loaded = true;
                    self.chain = head;
                    let mut recorded = Vec::with_capacity(events.len());
                    for (i, event) in events.into_iter().enumerate() {
                        self.state.apply(&event);
                        recorded.push(Recorded {
                            sequence: appended.first_sequence + i as u64,
                            event_type: A::event_type(&event).to_owned(),
                            event,
                        });
                    }
                    self.sequence = appended.last_sequence;
                    if self.recent.len() == RECENT_COMMANDS {
                        self.recent.pop_front();
                    }
                    self.recent.push_back(pb::AppliedCommand {
                        command_id: meta.command_id,
                        first_sequence: appended.first_sequence,
                        last_sequence: appended.last_sequence,
                    });
                    self.since_snapshot += recorded.len() as u64;
                    self.maybe_snapshot();
                    return Ok(Accepted {
                        events: recorded,
                        last_sequence: self.sequence,
                        duplicate: false,
                        state: self.encoded_state(meta.want_state),
                    });
                }
                Ok(_) | Err(StoreError::Conflict { .. }) => {
                    // Someone wrote first (maybe this very command, retried): catch up.
                    tracing::debug!(entity = %self.args.entity, attempt, "append conflict; catching up");
                    neo_telemetry::metrics::global()
                        .conflicts
                        .get_or_create(&kind)
                        .inc();
                    if self.loaded {
                        // A little jitter keeps two hot writers from colliding in lockstep.
                        let pause = fastrand::u64(0..=u64::from(attempt.min(8)) * 500);
                        tokio::time::sleep(std::time::Duration::from_micros(pause)).await;
                    }
                    self.load_and_catch_up().await.map_err(HostError::Store)?;
                    if let Some(applied) = self.applied(&meta.command_id) {
                        return self.replay_outcome(&applied, meta.want_state).await;
                    }
                }
                Err(e) => return Err(HostError::Store(e)),
            }
        }
        Err(HostError::Aborted {
            entity: self.args.entity.to_string(),
            attempts,
        })
    }

    /// Writes a snapshot in the background once enough events accumulated.
    fn maybe_snapshot(&mut self) {
        if self.since_snapshot < self.args.config.snapshot_every {
            return;
        }
        self.since_snapshot = 0;
        let snapshot = pb::Snapshot {
            state: Bytes::from(self.state.encode_to_vec()),
            sequence: self.sequence,
            recent_commands: self.recent.iter().cloned().collect(),
            version: self.chain.version,
            hash: self.chain.hash.clone(),
        };
        let store = self.args.store.clone();
        let entity = self.args.entity.clone();
        tokio::spawn(async move {
            if let Err(e) = store.write_snapshot(&entity, &snapshot).await {
                tracing::warn!(%entity, error = %e, "snapshot not written");
            }
        });
    }
}
