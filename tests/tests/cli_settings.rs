//! `neo settings …`, `neo secrets …` and `neo tenant delete` end to end, run in process against
//! a real gateway stack with a secrets store: settings set, listed, unset and compared across
//! stages; secrets set from a file, listed by name and version and never printed; a bad name
//! naming its field; deleting a tenant only with --yes, and its secrets unreadable after.

#![allow(clippy::unwrap_used)] // a test fails loudly on the first unexpected error

use neo_cli::serde_json::json;
use neo_protocol::{AppName, StageName, TenantName};
use neo_tests::cli::Neo;
use neo_tests::gateway::{ROOT, ROOT_PASSWORD, Stack};

/// The secret's value: it must never appear in anything `neo` prints.
const VALUE: &str = "s3cret-VALUE-9f2c";

/// Runs commands and keeps everything they printed or failed with, to check for the value.
struct Seen<'a> {
    neo: &'a Neo,
    printed: Vec<String>,
}

impl Seen<'_> {
    async fn ok(&mut self, args: &[&str]) -> String {
        let (result, out) = self.neo.run(args).await;
        self.printed.push(out.clone());
        if let Err(e) = result {
            panic!("neo {args:?} failed: {e}");
        }
        out
    }

    async fn json(&mut self, args: &[&str]) -> neo_cli::serde_json::Value {
        let mut line = vec!["--output", "json"];
        line.extend_from_slice(args);
        let out = self.ok(&line).await;
        neo_cli::serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("neo {args:?} printed {out}: {e}"))
    }

    async fn fails(&mut self, args: &[&str], exit: u8) -> String {
        let (result, out) = self.neo.run(args).await;
        self.printed.push(out.clone());
        let error = result
            .err()
            .unwrap_or_else(|| panic!("neo {args:?} succeeded: {out}"));
        self.printed.push(error.to_string());
        assert_eq!(error.exit_code(), exit, "neo {args:?}: {error}");
        error.to_string()
    }
}

#[tokio::test]
async fn settings_and_secrets_of_a_stage_and_deleting_a_tenant() {
    let stack = Stack::start().await.unwrap();
    let _people = stack.people().await.unwrap();
    let neo = Neo::new(&stack);
    neo.login("alice", Some("acme")).await.unwrap();
    let mut seen = Seen {
        neo: &neo,
        printed: Vec::new(),
    };
    seen.ok(&["app", "create", "shop"]).await;

    // Settings: set in one change, listed, unset.
    let set = seen
        .ok(&[
            "settings",
            "set",
            "shop",
            "--stage",
            "dev",
            "currency=CHF",
            "limit=10",
        ])
        .await;
    assert!(set.contains("currency") && set.contains("CHF"), "{set}");
    assert!(set.contains("applies to its next release"), "{set}");
    let listed = seen
        .json(&["settings", "list", "shop", "--stage", "dev"])
        .await;
    assert_eq!(
        listed["settings"],
        json!({"currency": "CHF", "limit": "10"})
    );
    assert_eq!(listed["secrets"], json!([]));
    let table = seen
        .ok(&["settings", "list", "shop", "--stage", "dev"])
        .await;
    assert!(table.contains("limit") && table.contains("10"), "{table}");
    assert!(table.contains("missing: nothing"), "{table}");
    seen.ok(&["settings", "unset", "shop", "--stage", "dev", "limit"])
        .await;
    let listed = seen
        .json(&["settings", "list", "shop", "--stage", "dev"])
        .await;
    assert_eq!(listed["settings"], json!({"currency": "CHF"}));

    // Secrets: set from a file (trailing newline dropped), listed by version, never shown.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("api_key");
    std::fs::write(&file, format!("{VALUE}\n")).unwrap();
    let file = file.to_str().unwrap();
    let secret = ["secrets", "set", "shop", "--stage", "dev", "api_key"];
    let first = seen
        .json(&[&secret[..], &["--value-file", file]].concat())
        .await;
    assert_eq!(first, json!({"name": "api_key", "version": 1}));
    let list = seen
        .json(&["secrets", "list", "shop", "--stage", "dev"])
        .await;
    assert_eq!(list[0]["name"], "api_key");
    assert_eq!(list[0]["version"], 1);
    assert_eq!(list[0]["changed_by"], "alice");
    let table = seen
        .ok(&["secrets", "list", "shop", "--stage", "dev"])
        .await;
    assert!(
        table.contains("api_key") && table.contains("alice"),
        "{table}"
    );
    let second = seen
        .ok(&[&secret[..], &["--value-file", file]].concat())
        .await;
    assert!(
        second.contains("api_key") && second.contains('2'),
        "{second}"
    );
    let list = seen
        .json(&["secrets", "list", "shop", "--stage", "dev"])
        .await;
    assert_eq!(list[0]["version"], 2);
    let (acme, shop, dev) = (
        TenantName::new("acme").unwrap(),
        AppName::new("shop").unwrap(),
        StageName::new("dev").unwrap(),
    );
    let revealed = stack.secrets.reveal(&acme, &shop, &dev).await.unwrap();
    assert_eq!(revealed["api_key"].value.to_string(), VALUE);
    assert_eq!(revealed["api_key"].version, 2);

    // The diff: currency only on dev, api_key a secret shown as set; nothing runs, nothing
    // blocks.
    let diff = seen
        .json(&["settings", "diff", "shop", "--from", "dev", "--to", "test"])
        .await;
    let entries = diff["entries"].as_array().unwrap();
    let names: Vec<_> = entries.iter().map(|e| e["name"].clone()).collect();
    assert_eq!(names, [json!("currency"), json!("api_key")]);
    assert_eq!(entries[0]["kind"], "setting");
    assert_eq!(entries[0]["from_value"], "CHF");
    assert_eq!(entries[0]["in_to"], false);
    assert_eq!(entries[1]["kind"], "secret");
    assert!(entries[1].get("from_value").is_none());
    let table = seen
        .ok(&["settings", "diff", "shop", "--from", "dev", "--to", "test"])
        .await;
    assert!(
        table.contains("ON dev") && table.contains("ON test"),
        "{table}"
    );
    assert!(table.contains("set"), "{table}");
    assert!(table.contains("nothing missing"), "{table}");

    seen.ok(&["secrets", "unset", "shop", "--stage", "dev", "api_key"])
        .await;
    let list = seen
        .json(&["secrets", "list", "shop", "--stage", "dev"])
        .await;
    assert_eq!(list, json!([]));

    // Bad names name their field.
    let bad = seen
        .fails(
            &["settings", "set", "shop", "--stage", "dev", "Bad-Name=1"],
            2,
        )
        .await;
    assert!(bad.contains("(field set.Bad-Name)"), "{bad}");
    let bad = seen
        .fails(
            &[
                "secrets",
                "set",
                "shop",
                "--stage",
                "dev",
                "Bad-Name",
                "--value-file",
                file,
            ],
            2,
        )
        .await;
    assert!(bad.starts_with("invalid name: "), "{bad}");

    // Deleting the tenant: refused without --yes, then its secrets are unreadable.
    seen.ok(&[&secret[..], &["--value-file", file]].concat())
        .await;
    let refused = seen.fails(&["tenant", "delete", "acme"], 2).await;
    assert!(refused.contains("data key"), "{refused}");
    assert!(refused.contains("never reused"), "{refused}");
    assert!(refused.contains("--yes"), "{refused}");
    stack.secrets.reveal(&acme, &shop, &dev).await.unwrap();
    // It cannot be undone: only a platform admin deletes a tenant, not its own admin.
    let denied = seen
        .fails(
            &["tenant", "delete", "acme", "--yes", "--reason", "a test"],
            4,
        )
        .await;
    assert!(denied.contains("platform admin"), "{denied}");
    stack.secrets.reveal(&acme, &shop, &dev).await.unwrap();
    let root = Neo::new(&stack);
    root.login_with(ROOT, ROOT_PASSWORD, None).await.unwrap();
    root.ok(&["tenant", "delete", "acme", "--yes", "--reason", "a test"])
        .await;
    assert!(stack.secrets.reveal(&acme, &shop, &dev).await.is_err());
    let gone = root.fails(&["tenant", "get", "acme"], 3).await;
    assert!(gone.contains("does not exist"), "{gone}");

    for text in &seen.printed {
        assert!(!text.contains(VALUE), "the value was printed: {text}");
    }
}
