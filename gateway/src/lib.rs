//! Neo's gRPC gateway.
//!
//! # Layout
//!
//! - [`api`]: the generated `neo.gateway.v1` services, clients and messages.
pub mod api {
    //! The generated `neo.gateway.v1` API (clients for the CLI, servers for the gateway).
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("neo.gateway.v1");

    /// The encoded descriptor set of the API and its imports, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("gateway_descriptor");
}
