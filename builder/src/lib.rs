//! The Build Service: turns an app revision (a packed project folder) into an OCI image.
//!
//! - [`project`]: a project folder, packed and unpacked deterministically.
//! - [`model`]: the app model: the manifest parsed and validated, errors positioned.
//! - [`compat`]: what a consumer uses of a producer, checked against what the producer exposes.
//! - [`bundle`]: the compiled bundle (normalised model, SQL migrations, screens) and its layer.
//! - [`image`]: OCI image assembly (base layers + bundle layer) and the registry push.
//! - [`impact`]: what a producer's deploy would break for the consumers on a stage.
//! - [`queue`]: the JetStream work queue of build jobs and its enqueuer.
//! - [`worker`]: a build worker: job in, image (or positioned diagnostics) out.
//! - [`outage`]: the backoff of a step retried through an outage of S3, the registry or NATS.
//! - [`buildlog`]: build output lines, followable by the CLI.
//! - [`meta`]: build configuration and metadata in JetStream KV.
//! - [`platform`]: commands and queries to the entity host over NATS.

pub mod buildlog;
pub mod bundle;
pub mod compat;
pub mod image;
pub mod impact;
pub mod meta;
pub mod model;
pub mod outage;
pub mod platform;
pub mod project;
pub mod queue;
pub mod worker;
