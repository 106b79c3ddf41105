//! Neo's gRPC gateway: the API that Service Studio, the CLI and any gRPC client use.
//!
//! Every call is authenticated by a signed, expiring bearer token and authorised by tenant
//! and role, then turned into commands and state queries to the platform over NATS.
//!
//! # Layout
//!
//! - [`api`]: the generated `neo.gateway.v1` services, clients and messages.
//! - [`server`]: binding, TLS, health, reflection, message-size limits.
//! - [`health`]: `grpc.health.v1` follows whether the event store can be reached.
//! - [`services`]: one module per gRPC service.
//! - [`auth`]: tokens (HS256 JWT) and the role rules.
//! - [`identity`]: users and argon2 password hashes in KV `neo_users`.
//! - [`bus`]: the way to the platform (a `neo_client::PlatformClient`), its errors as gRPC statuses.
//! - [`request_id`]: client-supplied request ids, which make a retried call take effect once.
//! - [`listing`]: listing entities from stream subjects, and paging.
//! - [`upload`]: client-streamed uploads, stored content-addressed in S3.
//! - [`error`]: the one mapping to gRPC statuses.

pub mod auth;
pub mod bus;
pub mod error;
pub mod health;
pub mod identity;
pub mod listing;
pub mod request_id;
pub mod revocation;
pub mod server;
pub mod services;
pub mod upload;

pub mod api {
    //! The generated `neo.gateway.v1` API (clients for the CLI, servers for the gateway).
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("neo.gateway.v1");

    /// The encoded descriptor set of the API and its imports, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("gateway_descriptor");
}

pub use error::GatewayError;
pub use server::{Backends, Gateway, GatewayConfig, TlsFiles};
