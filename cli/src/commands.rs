//! The client commands, one module per group, each with its clap arguments and its runner.
//!
//! - [`login`]: `neo login`, `logout`, `whoami`, `user create`.
//! - [`tenant`]: `neo tenant create|get|list|delete|stage …|member …`.
//! - [`app`]: `neo app create|get|list|revisions|upload`.
//! - [`build`]: `neo build request|get|list|cancel|log`.
//! - [`publish`]: `neo publish` (upload, build and deploy a project, step by step).
//! - [`deploy`]: `neo deploy`, `impact`, `promote`, `rollback`, `releases`, `deployment get`.
//! - [`canary`]: `neo canary policy|abort|promote|status`.
//! - [`audit`]: `neo history`, `neo why`.
//! - [`events`]: `neo events watch`.
//! - [`runtime`]: `neo logs`, `neo status`, `neo scale`.
//! - [`settings`]: `neo settings list|set|unset|diff`, `neo secrets list|set|unset`.
//!
//! Every command names an app and a stage the same way: the app first, as an argument, and the
//! stage with `--stage` (`-s`): `neo promote shop --stage test`, `neo scale shop -s dev --max 5`.
//! Commands that list or filter take the app as an optional argument (`neo status shop`).

pub mod app;
pub mod audit;
pub mod build;
pub mod canary;
pub mod deploy;
pub mod events;
pub mod login;
pub mod publish;
pub mod runtime;
pub mod settings;
pub mod tenant;

use std::future::Future;

use neo_gateway::api;

use super::error::CliError;

/// The app and stage a command acts on (`APP --stage STAGE`).
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// The app.
    pub app: String,
    /// The stage.
    #[arg(long, short = 's', value_name = "STAGE")]
    pub stage: String,
}

/// Items asked for per page of a list (the gateway's maximum).
pub const PAGE_SIZE: u32 = 500;

/// Fetches every page of a list: `fetch` gets each [`api::Page`] and returns its items and the
/// next page token (empty on the last page).
///
/// # Errors
///
/// The first failed page's status.
pub async fn all_pages<T, F, Fut>(mut fetch: F) -> Result<Vec<T>, CliError>
where
    F: FnMut(api::Page) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, String), tonic::Status>>,
{
    let mut items = Vec::new();
    let mut token = String::new();
    loop {
        let page = api::Page {
            page_size: PAGE_SIZE,
            page_token: token.clone(),
        };
        let (batch, next) = fetch(page).await?;
        items.extend(batch);
        // A token handed back unchanged would loop forever: stop there instead.
        if next.is_empty() || next == token {
            return Ok(items);
        }
        token = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_page_is_fetched_in_order() {
        let pages = [(vec![1, 2], "p2"), (vec![3, 4], "p3"), (vec![5], "")];
        let mut seen_tokens = Vec::new();
        let items = all_pages(|page| {
            seen_tokens.push(page.page_token.clone());
            assert_eq!(page.page_size, PAGE_SIZE);
            let index = seen_tokens.len() - 1;
            let (items, next) = pages[index].clone();
            async move { Ok((items, next.to_owned())) }
        })
        .await
        .unwrap();
        assert_eq!(items, [1, 2, 3, 4, 5]);
        assert_eq!(seen_tokens, ["", "p2", "p3"]);
    }

    #[tokio::test]
    async fn a_repeated_token_ends_the_listing_and_errors_stop_it() {
        let items = all_pages(|_| async { Ok((vec!["a"], "same".to_owned())) })
            .await
            .unwrap();
        assert_eq!(items, ["a", "a"]);
        let failed: Result<Vec<u8>, _> =
            all_pages(|_| async { Err(tonic::Status::permission_denied("no")) }).await;
        assert_eq!(failed.unwrap_err().exit_code(), 4);
    }
}
