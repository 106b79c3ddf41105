//! The Build Service: turns an app revision (a packed project folder) into an OCI image.
//! The model it validates is `neo_model`'s; the image it assembles and pushes, `neo_image`'s.
//!
//! - [`project`]: a project folder, packed and unpacked deterministically.
//! - [`bundle`]: the compiled bundle (normalised model, SQL migrations, screens) and its layer.
//! - [`queue`]: the JetStream work queue of build jobs and its enqueuer.
//! - [`worker`]: a build worker: job in, image (or positioned diagnostics) out.
//! - [`outage`]: the backoff of a step retried through an outage of S3, the registry or NATS.
//! - [`buildlog`]: build output lines, followable by the CLI.
//! - [`meta`]: build configuration and metadata in JetStream KV.

pub mod buildlog;
pub mod bundle;
pub mod meta;
pub mod outage;
pub mod project;
pub mod queue;
pub mod worker;
