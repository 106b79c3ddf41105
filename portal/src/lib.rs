//! The Neo Portal: a web console over the gateway's services.
//!
//! Server-rendered pages ([`maud`]) that call the gateway's gRPC services with the signed-in
//! user's own token, so the portal can never grant what the API refuses: the session cookie
//! holds the token (`HttpOnly`, `Secure`, `SameSite=Strict`), every state-changing form
//! carries a CSRF value, and pages refresh their parts over Server-Sent Events with htmx
//! (vendored under `assets/`, served from the binary; no inline script).
//!
//! - [`server`]: the HTTP(S) server: TLS and the security headers;
//! - [`routes`]: what each URL does, as the signed-in user;
//! - [`respond`]: pages, redirects and refusals as HTTP answers;
//! - [`session`]: cookies and the CSRF check;
//! - [`gateway`]: the gateway's clients as the user;
//! - [`live`]: the events stream pages listen to;
//! - [`pages`]: the HTML.

pub mod assets;
pub mod gateway;
pub mod live;
pub mod pages;
pub mod respond;
pub mod routes;
pub mod server;
pub mod session;

pub use server::{Portal, PortalConfig, PortalError};
