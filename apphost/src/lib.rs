//! The apphost: the program inside every Neo app image.
//!
//! It serves one app's bundle (written by the Build Service to `/app/bundle`): the entities'
//! REST API backed by the stage's Postgres database, the static screens, `/healthz` and
//! `/readyz`, with settings and secrets from its environment and JSON log lines on stdout.
//!
//! # Layout
//!
//! - [`config`]: flags and environment variables, settings and secrets.
//! - [`bundle`]: reading `model.json` and the migrations.
//! - [`model`]: the model's serde shape, checked and resolved to SQL names.
//! - [`values`]: checking client values against field types (pure).
//! - [`sql`]: the entity API's statements, with bind parameters only (pure).
//! - [`producers`]: the consumed apps, read live through their API on the same stage.
//! - [`migrate`]: applying the migrations under an advisory lock.
//! - [`db`]: bounded waits for the database; which failures mean it is unavailable (503).
//! - [`state`]: what handlers share; readiness.
//! - [`http`]: routes, handlers, the request log line.
//! - [`logging`]: the JSON-lines log format.
//! - [`server`]: binding, serving, graceful shutdown, background database preparation.

pub mod bundle;
pub mod config;
pub mod db;
pub mod http;
pub mod logging;
pub mod migrate;
pub mod model;
pub mod producers;
pub mod server;
pub mod sql;
pub mod state;
pub mod values;

pub use config::{Cli, Config, Identity};
pub use server::{ServeError, Server, bind, serve};
