//! The Build Service: turns an app revision (a packed project folder) into an OCI image.
//!
//! - [`project`]: a project folder, packed and unpacked deterministically.
//! - [`model`]: the app model: the manifest parsed and validated, errors positioned.
//! - [`compat`]: what a consumer uses of a producer, checked against what the producer exposes.
//! - [`bundle`]: the compiled bundle (normalised model, SQL migrations, screens) and its layer.

pub mod bundle;
pub mod compat;
pub mod model;
pub mod project;
