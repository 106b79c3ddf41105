//! What a consumer uses of a producer's entity, checked against what the producer exposes.
//!
//! - [`resolve`] ties one `[[consumes]]` entry to a producer revision at build time.
//! - [`check_use`] tells what breaks (a [`Severity::Blocker`]) or may break (a
//!   [`Severity::Warning`]) for a consumer built against an older producer revision.
//!
//! The rules are documented in `docs/app-model.md`, "Compatibility".

use std::fmt;

use neo_protocol::pb;

use crate::{Consume, Diagnostic};

/// How bad a [`Finding`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// The consumer breaks: the change must not go out (or the consumer must be rebuilt).
    Blocker,
    /// The consumer may break, depending on what it does (e.g. creating records).
    Warning,
}

/// One consequence of a producer's change for a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Blocker or warning.
    pub severity: Severity,
    /// The consumed entity.
    pub entity: String,
    /// The field concerned, if the finding is about one.
    pub field: Option<String>,
    /// What happens, in one sentence.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Blocker => "blocker",
            Severity::Warning => "warning",
        };
        write!(f, "{severity}: {}", self.message)
    }
}

/// What breaks (or may) for a consumer that uses `used` (an entity and its fields) if the
/// producer exposes `exposes`.
///
/// `previous` is what the producer exposed at `used.producer_revision`, the revision the
/// consumer was built against. Without it only what is plainly gone is found.
///
/// # Guarantees
///
/// - Blockers: the entity is not exposed any more; a used field is gone; a used field's type
///   changed (needs `previous`).
/// - Warnings (need `previous`): a used field became required; the entity has a new required
///   field (a consumer that creates records may fail).
/// - A used field that was optional and still is, or a new optional field, is fine.
/// - Empty `used.fields` means the whole entity: every field of `previous` counts as used.
pub fn check_use(
    used: &pb::Dependency,
    exposes: &[pb::ExposedEntity],
    previous: Option<&[pb::ExposedEntity]>,
) -> Vec<Finding> {
    let app = &used.producer_app;
    let entity = &used.entity;
    let finding = |severity, field: Option<&str>, message: String| Finding {
        severity,
        entity: entity.clone(),
        field: field.map(str::to_owned),
        message,
    };
    let Some(now) = exposes.iter().find(|e| e.name == *entity) else {
        return vec![finding(
            Severity::Blocker,
            None,
            format!("app `{app}` no longer exposes entity `{entity}`"),
        )];
    };
    let before = previous.and_then(|p| p.iter().find(|e| e.name == *entity));
    let used_fields: Vec<&str> = if used.fields.is_empty() {
        before
            .map(|b| b.fields.iter().map(|f| f.name.as_str()).collect())
            .unwrap_or_default()
    } else {
        used.fields.iter().map(String::as_str).collect()
    };
    let mut findings = Vec::new();
    for name in &used_fields {
        let old = before.and_then(|b| b.fields.iter().find(|f| f.name == *name));
        let Some(new) = now.fields.iter().find(|f| f.name == *name) else {
            findings.push(finding(
                Severity::Blocker,
                Some(name),
                format!("field `{name}` of entity `{entity}` of app `{app}` is gone"),
            ));
            continue;
        };
        let Some(old) = old else { continue };
        if old.r#type != new.r#type {
            findings.push(finding(
                Severity::Blocker,
                Some(name),
                format!(
                    "field `{name}` of entity `{entity}` of app `{app}` changed type from \
                     `{}` to `{}`",
                    old.r#type, new.r#type
                ),
            ));
        } else if new.required && !old.required {
            findings.push(finding(
                Severity::Warning,
                Some(name),
                format!(
                    "field `{name}` of entity `{entity}` of app `{app}` became required; \
                     records created without it will be refused"
                ),
            ));
        }
    }
    if let Some(before) = before {
        for new in now.fields.iter().filter(|f| f.required) {
            if !before.fields.iter().any(|f| f.name == new.name) {
                findings.push(finding(
                    Severity::Warning,
                    Some(&new.name),
                    format!(
                        "entity `{entity}` of app `{app}` has a new required field `{}`; \
                         records created without it will be refused",
                        new.name
                    ),
                ));
            }
        }
    }
    findings
}

/// Resolves one consumed entity against the producer's revision `producer_revision`, which
/// exposes `producer_exposes`.
///
/// # Errors
///
/// A [`Diagnostic`] at [`Consume::at`] when the entity is not exposed ("app `catalog`
/// (revision 3) exposes no entity `Foo`; it exposes: Product, Category") or a used field is
/// missing ("entity `Product` of app `catalog` has no field `colour`; its fields are:
/// title, price"). Only blockers fail.
pub fn resolve(
    consume: &Consume,
    producer_revision: u32,
    producer_exposes: &[pb::ExposedEntity],
) -> Result<pb::Dependency, Diagnostic> {
    let app = &consume.app;
    let Some(entity) = producer_exposes.iter().find(|e| e.name == consume.entity) else {
        let names: Vec<&str> = producer_exposes.iter().map(|e| e.name.as_str()).collect();
        let exposed = if names.is_empty() {
            "it exposes no entities".to_owned()
        } else {
            format!("it exposes: {}", names.join(", "))
        };
        return Err(consume.at.diagnostic(format!(
            "app `{app}` (revision {producer_revision}) exposes no entity `{}`; {exposed}",
            consume.entity
        )));
    };
    let missing: Vec<String> = consume
        .fields
        .iter()
        .filter(|name| !entity.fields.iter().any(|f| f.name == **name))
        .map(|name| format!("`{name}`"))
        .collect();
    if !missing.is_empty() {
        let noun = if missing.len() == 1 {
            "field"
        } else {
            "fields"
        };
        let fields: Vec<&str> = entity.fields.iter().map(|f| f.name.as_str()).collect();
        return Err(consume.at.diagnostic(format!(
            "entity `{}` of app `{app}` has no {noun} {}; its fields are: {}",
            consume.entity,
            missing.join(", "),
            fields.join(", ")
        )));
    }
    Ok(pb::Dependency {
        producer_app: app.clone(),
        entity: consume.entity.clone(),
        producer_revision,
        fields: consume.fields.clone(),
    })
}
