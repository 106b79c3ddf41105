//! Neo's wire protocol: everything that crosses a process boundary, with no I/O.
//!
//! # Layout
//!
//! - [`pb`]: the protobuf messages generated from `proto/neo/v1` (commands, events, states,
//!   the command envelope and snapshots).
//! - [`names`]: validated tenant, app and stage names, and entity ids per kind.
//! - [`kind`]: the five entity kinds and [`kind::EntityRef`], the address of one entity.
//! - [`subjects`]: every NATS subject, stream and bucket name, built and parsed in one place.
//! - [`headers`]: the header names carried by every event.
//! - [`envelope`]: event metadata (ids, principal, time, trace) and its header encoding.

pub mod canary;
pub mod envelope;
pub mod headers;
pub mod kind;
pub mod names;
pub mod subjects;

/// The generated protobuf types of package `neo.v1`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/neo.v1.rs"));
}

pub use kind::{EntityKind, EntityRef};
pub use names::{AppName, EntityId, NameError, StageName, TenantName};
