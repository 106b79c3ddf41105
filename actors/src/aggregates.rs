//! The five entity kinds' aggregates: every domain rule of Neo, one file per kind.

pub mod app;
pub mod build;
pub mod deployment;
pub mod podgroup;
pub mod tenant;

use neo_protocol::names::validate_name;

use crate::aggregate::Rejection;

/// The algorithm prefix of every content digest Neo accepts.
pub const DIGEST_PREFIX: &str = "sha256:";

/// Whether `value` is a content digest: `sha256:` followed by 64 lowercase hex digits.
pub fn is_digest(value: &str) -> bool {
    value.strip_prefix(DIGEST_PREFIX).is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Refuses, under `rule`, a `value` of `field` that is not a content digest.
pub(crate) fn check_digest(rule: &'static str, field: &str, value: &str) -> Result<(), Rejection> {
    if is_digest(value) {
        Ok(())
    } else {
        Err(Rejection::invalid(
            rule,
            field,
            format_args!(
                "{field} `{}` is not a content digest (`sha256:` and 64 lowercase hex digits)",
                shown(value)
            ),
        ))
    }
}

/// Refuses, under `rule`, a `value` of `field` that is not a valid name of `what`.
pub(crate) fn check_name(
    rule: &'static str,
    field: &str,
    what: &'static str,
    value: &str,
) -> Result<(), Rejection> {
    validate_name(what, value).map_err(|e| Rejection::invalid(rule, field, e))
}

/// Refuses, under `rule`, an empty `value` of `field`.
pub(crate) fn check_present(rule: &'static str, field: &str, value: &str) -> Result<(), Rejection> {
    if value.trim().is_empty() {
        Err(Rejection::invalid(
            rule,
            field,
            format_args!("{field} must not be empty"),
        ))
    } else {
        Ok(())
    }
}

/// Refuses, under `rule`, a `value` of `field` longer than `max` characters.
pub(crate) fn check_max_chars(
    rule: &'static str,
    field: &str,
    value: &str,
    max: usize,
) -> Result<(), Rejection> {
    let len = value.chars().count();
    if len > max {
        Err(Rejection::invalid(
            rule,
            field,
            format_args!("{field} is {len} characters long; the limit is {max}"),
        ))
    } else {
        Ok(())
    }
}

/// The refusal of a command whose `oneof` is empty (or unknown to this build).
pub(crate) fn missing_command(kind: &str) -> Rejection {
    Rejection::invalid(
        "command.missing",
        "command",
        format_args!("the {kind} command names no operation (unset or unknown to this build)"),
    )
}

/// A value as shown in a message: at most 80 characters.
pub(crate) fn shown(value: &str) -> String {
    value.chars().take(80).collect()
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Fixtures shared by the aggregates' tests.

    use crate::aggregate::Aggregate;

    /// A valid digest made of one repeated hex digit.
    pub fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    /// Handles each command in turn against the state so far, applying its events; panics on
    /// a refusal. Returns the final state and every event, in order.
    #[track_caller]
    pub fn accept_all<A: Aggregate>(
        commands: impl IntoIterator<Item = A::Command>,
    ) -> (A, Vec<A::Event>) {
        let mut state = A::default();
        let mut all = Vec::new();
        for command in commands {
            let events = match state.handle(command.clone()) {
                Ok(events) => events,
                Err(r) => panic!("{command:?} was refused: {r}"),
            };
            for e in &events {
                state.apply(e);
            }
            all.extend(events);
        }
        (state, all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_sha256_and_64_lowercase_hex() {
        assert!(is_digest(&fixtures::digest('a')));
        assert!(is_digest(&format!(
            "sha256:{}",
            "0123456789abcdef".repeat(4)
        )));
        for bad in [
            String::new(),
            "sha256:".to_owned(),
            "a".repeat(64),
            format!("sha512:{}", "a".repeat(64)),
            format!("sha256:{}", "A".repeat(64)),
            format!("sha256:{}", "a".repeat(63)),
            format!("sha256:{}", "a".repeat(65)),
            format!("sha256:{}g", "a".repeat(63)),
        ] {
            assert!(!is_digest(&bad), "{bad:?} was accepted");
        }
    }

    #[test]
    fn checks_name_the_field_and_rule() {
        let r = check_digest("x.digest", "deploy.image_digest", "nope").expect_err("refused");
        assert_eq!(r.rule, "x.digest");
        assert_eq!(r.field.as_deref(), Some("deploy.image_digest"));
        assert!(r.message.contains("`nope`"), "{r}");
        let r = check_name("x.name", "create.app", "app", "A b").expect_err("refused");
        assert_eq!(r.field.as_deref(), Some("create.app"));
        assert!(check_present("x.p", "f", "  ").is_err());
        assert!(check_max_chars("x.m", "f", "ééé", 3).is_ok());
        assert!(check_max_chars("x.m", "f", "éééé", 3).is_err());
    }
}
