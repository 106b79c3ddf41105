//! Neo's event-sourced core: aggregates, the JetStream event store, the entity host on
//! ractor, command intake over NATS, and reactors.
//!
//! # Layout
//!
//! - [`aggregate`]: the `Aggregate` trait (`handle` decides, `apply` folds) and `Rejection`.
//! - [`audit`]: the hash chain checked: modified, missing, reordered events; exports.
//! - [`aggregates`]: the five kinds (tenant, app, build, deployment, podgroup) and their rules.
//! - [`autoscale`]: the podgroup autoscaler's pure decision (horizontal and vertical).
//! - [`store`]: the `EventStore` trait, the JetStream store and an in-memory one for tests.
//! - [`host`]: one ractor actor per live entity: rehydrate, decide, append, retry on conflict,
//!   passivate, supervise.
//! - [`platform`]: one host per kind; dispatch of encoded commands and the error mapping.
//! - [`intake`]: request/reply on `neo.cmd.…` and `neo.qry.…` in a queue group.
//! - [`reactor`]: durable consumers turning events into commands.
//! - [`replay`]: folds a range of the event log, read by an ordered consumer, into entity
//!   states (one entity as at a sequence, or every entity).
//! - [`whatif`]: a podgroup's recorded observations replayed under another scale policy.

pub mod aggregate;
pub mod aggregates;
pub mod audit;
pub mod autoscale;
pub mod canary;
pub mod host;
pub mod intake;
pub mod platform;
pub mod projections;
pub mod reactor;
pub mod read_models;
pub mod replay;
pub mod store;
pub mod stored;
pub mod whatif;

pub use aggregate::{Aggregate, Rejection, RejectionCode};
pub use host::{Accepted, CommandMeta, EntityHost, HostConfig, HostError};
pub use platform::Platform;
