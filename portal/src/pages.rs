//! The portal's pages, as HTML: the shell every page shares, sign-in, the pipeline board, a
//! release's confirmation, a release's canary, an app, a build, settings and secrets, logs,
//! metrics, audit, tenants and members.

pub mod app;
pub mod audit;
pub mod board;
pub mod build;
pub mod canary;
pub mod layout;
pub mod login;
pub mod logs;
pub mod metrics;
pub mod release;
pub mod settings;
pub mod tenants;
