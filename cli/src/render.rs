//! The JSON documents and tables of each API message, built field by field so enums are words.

use neo_gateway::api;
use neo_protocol::pb;
use serde_json::{Value, json};

pub mod canary;
pub mod runtime;
pub mod settings;

use super::error::diagnostic_line;
use super::output::{
    build_status_word, fields, or_dash, origin_word, publish_step_word, role_word, rollout_word,
    short_digest, table, unix_millis, unix_secs, yes_no,
};

/// A list of names (tenants, apps) as JSON.
pub fn names_json(names: &[String]) -> Value {
    json!(names)
}

/// A list of names as a one-column table.
pub fn names_table(header: &str, names: &[String]) -> String {
    let mut t = table([header]);
    for name in names {
        t.add_row([name]);
    }
    t.to_string()
}

/// A tenant as JSON.
pub fn tenant_json(tenant: &api::Tenant) -> Value {
    let state = tenant.state.clone().unwrap_or_default();
    let members: serde_json::Map<String, Value> = state
        .members
        .iter()
        .map(|(user, role)| (user.clone(), Value::from(role_word(*role))))
        .collect();
    json!({
        "name": tenant.name,
        "sequence": tenant.sequence,
        "display_name": state.display_name,
        "stages": state.stages,
        "members": members,
        "quota": state.quota.map(|q| json!({
            "max_apps": q.max_apps,
            "max_replicas_per_app": q.max_replicas_per_app,
        })),
        "suspended": state.suspended,
        "suspension_reason": state.suspension_reason,
    })
}

/// A tenant as its fields, then its members.
pub fn tenant_table(tenant: &api::Tenant) -> String {
    let state = tenant.state.clone().unwrap_or_default();
    let suspended = if state.suspended {
        format!("yes: {}", state.suspension_reason)
    } else {
        "no".to_owned()
    };
    let quota = match state.quota {
        Some(q) => format!(
            "{} apps, {} replicas per app",
            q.max_apps, q.max_replicas_per_app
        ),
        None => "none".to_owned(),
    };
    let summary = fields([
        ("name", tenant.name.clone()),
        ("display name", or_dash(&state.display_name)),
        ("stages", state.stages.join(" → ")),
        ("suspended", suspended),
        ("quota", quota),
    ]);
    if state.members.is_empty() {
        return format!("{summary}\n\n(no members)");
    }
    let mut members = table(["MEMBER", "ROLE"]);
    for (user, role) in &state.members {
        members.add_row([user.clone(), role_word(*role)]);
    }
    format!("{summary}\n\n{members}")
}

/// A revision as JSON.
pub fn revision_json(revision: &pb::Revision) -> Value {
    json!({
        "number": revision.number,
        "digest": revision.digest,
        "size": revision.size,
        "author": revision.author,
        "message": revision.message,
        "dependencies": revision.dependencies.iter().map(|d| json!({
            "producer_app": d.producer_app,
            "entity": d.entity,
            "producer_revision": d.producer_revision,
        })).collect::<Vec<_>>(),
    })
}

/// Revisions as a table.
pub fn revisions_table(revisions: &[pb::Revision]) -> String {
    let mut t = table(["REVISION", "DIGEST", "SIZE", "AUTHOR", "MESSAGE"]);
    for r in revisions {
        t.add_row([
            r.number.to_string(),
            short_digest(&r.digest),
            r.size.to_string(),
            or_dash(&r.author),
            r.message.clone(),
        ]);
    }
    t.to_string()
}

/// An app as JSON, with its revisions.
pub fn app_json(app: &api::App) -> Value {
    let state = app.state.clone().unwrap_or_default();
    json!({
        "tenant": app.tenant,
        "name": app.name,
        "sequence": app.sequence,
        "description": state.description,
        "archived": state.archived,
        "revisions": state.revisions.iter().map(revision_json).collect::<Vec<_>>(),
    })
}

/// An app as its fields, then its revisions.
pub fn app_table(app: &api::App) -> String {
    let state = app.state.clone().unwrap_or_default();
    let summary = fields([
        ("tenant", app.tenant.clone()),
        ("app", app.name.clone()),
        ("description", or_dash(&state.description)),
        ("archived", yes_no(state.archived)),
        ("revisions", state.revisions.len().to_string()),
    ]);
    if state.revisions.is_empty() {
        summary.to_string()
    } else {
        format!("{summary}\n\n{}", revisions_table(&state.revisions))
    }
}

/// A build as JSON.
pub fn build_json(build: &api::Build) -> Value {
    let state = build.state.clone().unwrap_or_default();
    json!({
        "tenant": build.tenant,
        "id": build.id,
        "sequence": build.sequence,
        "app": state.app,
        "revision": state.revision,
        "revision_digest": state.revision_digest,
        "status": build_status_word(state.status),
        "attempt": state.attempt,
        "worker": state.worker,
        "image_digest": state.image_digest,
        "image_ref": state.image_ref,
        "reason": state.reason,
        "diagnostics": diagnostics_json(&state.diagnostics),
    })
}

/// Diagnostics as JSON objects.
fn diagnostics_json(diagnostics: &[pb::Diagnostic]) -> Value {
    json!(
        diagnostics
            .iter()
            .map(|d| json!({
                "file": d.file,
                "line": d.line,
                "column": d.column,
                "message": d.message,
            }))
            .collect::<Vec<_>>()
    )
}

/// A build as its fields, then its diagnostics.
pub fn build_table(build: &api::Build) -> String {
    let state = build.state.clone().unwrap_or_default();
    let summary = fields([
        ("build", build.id.clone()),
        ("app", state.app.clone()),
        ("revision", state.revision.to_string()),
        ("revision digest", or_dash(&state.revision_digest)),
        ("status", build_status_word(state.status)),
        ("attempt", state.attempt.to_string()),
        ("worker", or_dash(&state.worker)),
        ("image digest", or_dash(&state.image_digest)),
        ("image", or_dash(&state.image_ref)),
        ("reason", or_dash(&state.reason)),
    ]);
    if state.diagnostics.is_empty() {
        return summary.to_string();
    }
    let diagnostics: Vec<String> = state.diagnostics.iter().map(diagnostic_line).collect();
    format!("{summary}\n\n{}", diagnostics.join("\n"))
}

/// A build log line as JSON.
pub fn build_log_json(line: &pb::BuildLogLine) -> Value {
    json!({
        "attempt": line.attempt,
        "time": line.time,
        "level": line.level,
        "text": line.text,
        "end": line.end,
    })
}

/// A build log line as `time level text`.
pub fn build_log_line(line: &pb::BuildLogLine) -> String {
    format!(
        "{} {:<5} {}",
        or_dash(&line.time),
        or_dash(&line.level),
        line.text
    )
}

/// Builds as a table.
pub fn builds_table(builds: &[api::Build]) -> String {
    let mut t = table(["BUILD", "STATUS", "ATTEMPT", "IMAGE DIGEST", "REASON"]);
    for b in builds {
        let state = b.state.clone().unwrap_or_default();
        t.add_row([
            b.id.clone(),
            build_status_word(state.status),
            state.attempt.to_string(),
            or_dash(&short_digest(&state.image_digest)),
            state.reason,
        ]);
    }
    t.to_string()
}

/// A release as JSON.
pub fn release_json(release: &pb::Release) -> Value {
    json!({
        "number": release.number,
        "origin": origin_word(release.origin),
        "image_digest": release.image_digest,
        "revision": release.revision,
        "build_id": release.build_id,
        "promoted_from": release.promoted_from.as_ref().map(|p| json!({
            "stage": p.stage,
            "number": p.number,
            "image_digest": p.image_digest,
            "revision": p.revision,
            "build_id": p.build_id,
        })),
        "rolled_back_to": (release.rolled_back_to > 0).then_some(release.rolled_back_to),
        "rollout": rollout_word(release.rollout),
        "rollout_reason": release.rollout_reason,
        "forced": release.forced,
        "forced_blockers": release.forced_blockers,
        "data_changes": release.data_changes,
        "canary": canary::canary_json(release),
    })
}

/// Whether a release was forced over impact blockers, in a few words.
fn forced_text(release: &pb::Release) -> String {
    match (release.forced, release.forced_blockers.len()) {
        (false, _) => "-".to_owned(),
        (true, 0) => "yes".to_owned(),
        (true, 1) => "yes (1 blocker)".to_owned(),
        (true, n) => format!("yes ({n} blockers)"),
    }
}

/// What the releases among `releases` were forced over and what their migrations did to the
/// stored data, one line each (`v3 forced over: …`, `v3 migrated Product.price: …`).
fn release_notes(releases: &[pb::Release]) -> Vec<String> {
    releases
        .iter()
        .flat_map(|r| {
            let forced = r
                .forced_blockers
                .iter()
                .filter(|_| r.forced)
                .map(move |b| format!("v{} forced over: {b}", r.number));
            let migrated = r.data_changes.iter().map(move |c| {
                let change = c.strip_prefix("data: ").unwrap_or(c);
                format!("v{} migrated {change}", r.number)
            });
            forced.chain(migrated)
        })
        .collect()
}

/// Where a release's image came from: its build, the promoted release, or the restored one.
fn release_source(release: &pb::Release) -> String {
    match (&release.promoted_from, release.rolled_back_to) {
        (Some(from), _) => format!("{} v{}", from.stage, from.number),
        (None, to) if to > 0 => format!("v{to}"),
        _ => or_dash(&release.build_id),
    }
}

/// A rollout status word, with the reason when there is one.
fn rollout_text(release: &pb::Release) -> String {
    let word = rollout_word(release.rollout);
    if release.rollout_reason.is_empty() {
        word
    } else {
        format!("{word}: {}", release.rollout_reason)
    }
}

/// Releases as a table in the given order; `current` is marked.
pub fn releases_table(releases: &[pb::Release], current: Option<u32>) -> String {
    let mut t = table([
        "RELEASE",
        "ORIGIN",
        "IMAGE DIGEST",
        "REVISION",
        "SOURCE",
        "ROLLOUT",
        "FORCED",
    ]);
    for r in releases {
        let mark = if current == Some(r.number) { " *" } else { "" };
        t.add_row([
            format!("v{}{mark}", r.number),
            origin_word(r.origin),
            short_digest(&r.image_digest),
            r.revision.to_string(),
            release_source(r),
            rollout_text(r),
            forced_text(r),
        ]);
    }
    let notes = release_notes(releases);
    if notes.is_empty() {
        t.to_string()
    } else {
        format!("{t}\n\n{}", notes.join("\n"))
    }
}

/// A deployment as JSON, releases oldest first.
pub fn deployment_json(deployment: &api::Deployment) -> Value {
    let state = deployment.state.clone().unwrap_or_default();
    json!({
        "tenant": deployment.tenant,
        "app": deployment.app,
        "stage": deployment.stage,
        "sequence": deployment.sequence,
        "current": (state.current > 0).then_some(state.current),
        "releases": state.releases.iter().map(release_json).collect::<Vec<_>>(),
    })
}

/// A deployment's current release as fields (what a deploy, promote or rollback made).
pub fn current_release_table(deployment: &api::Deployment) -> String {
    let state = deployment.state.clone().unwrap_or_default();
    let current = state.releases.iter().find(|r| r.number == state.current);
    let mut rows = vec![
        ("app", deployment.app.clone()),
        ("stage", deployment.stage.clone()),
    ];
    match current {
        Some(r) => rows.extend([
            ("release", format!("v{}", r.number)),
            ("origin", origin_word(r.origin)),
            ("source", release_source(r)),
            ("revision", r.revision.to_string()),
            ("image digest", r.image_digest.clone()),
            ("rollout", rollout_text(r)),
            ("forced", forced_text(r)),
        ]),
        None => rows.push(("release", "none".to_owned())),
    }
    // A running canary is the newest release, not yet the current one's successor for good.
    let canary = state.releases.last().filter(|r| r.canary.is_some());
    if let Some(r) = canary {
        rows.push((
            "canary",
            format!("v{}: {}", r.number, canary::canary_text(r)),
        ));
    }
    let summary = fields(rows).to_string();
    let mut notes = current.map(std::slice::from_ref).map(release_notes);
    if let (Some(lines), Some(c)) = (notes.as_mut(), canary.and_then(|r| r.canary.as_ref())) {
        lines.extend(canary::step_lines(c));
    }
    match notes {
        Some(lines) if !lines.is_empty() => format!("{summary}\n\n{}", lines.join("\n")),
        _ => summary,
    }
}

/// A deployment as its fields, then its releases newest first (the current one marked `*`).
pub fn deployment_table(deployment: &api::Deployment) -> String {
    let state = deployment.state.clone().unwrap_or_default();
    let summary = fields([
        ("app", deployment.app.clone()),
        ("stage", deployment.stage.clone()),
        (
            "current",
            if state.current > 0 {
                format!("v{}", state.current)
            } else {
                "none".to_owned()
            },
        ),
    ]);
    if state.releases.is_empty() {
        return summary.to_string();
    }
    let newest_first: Vec<pb::Release> = state.releases.iter().rev().cloned().collect();
    let releases = releases_table(&newest_first, Some(state.current));
    format!("{summary}\n\n{releases}")
}

/// A publish step as one JSON object (printed on one line).
pub fn publish_progress_json(progress: &api::PublishProgress) -> Value {
    json!({
        "step": publish_step_word(progress.step),
        "message": progress.message,
        "digest": progress.digest,
        "size": progress.size,
        "revision": progress.revision,
        "build_id": progress.build_id,
        "image_digest": progress.image_digest,
        "image_ref": progress.image_ref,
        "stage": progress.stage,
        "release": progress.release,
        "diagnostics": diagnostics_json(&progress.diagnostics),
        "sequence": progress.sequence,
    })
}

/// A publish step as one line, and whether it is a build log line; `None` for the failures,
/// which the command's error reports.
pub fn publish_step_line(progress: &api::PublishProgress) -> Option<(String, bool)> {
    use api::PublishStep as S;
    let or_message = |fallback: String| {
        if progress.message.is_empty() {
            fallback
        } else {
            progress.message.clone()
        }
    };
    let text = match progress.step() {
        S::BuildFailed | S::DeployRefused => return None,
        S::BuildLog => return Some((format!("  │ {}", progress.message), true)),
        S::Uploaded => or_message(format!(
            "uploaded {} ({} bytes)",
            progress.digest, progress.size
        )),
        S::RevisionCreated => or_message(format!("revision {}", progress.revision)),
        S::BuildRequested => or_message("build requested".to_owned()),
        S::BuildStarted => or_message("build started".to_owned()),
        S::BuildSucceeded => or_message(format!("built {}", progress.image_ref)),
        S::Deployed => or_message(format!(
            "deployed to {} as v{}",
            progress.stage, progress.release
        )),
        S::Unspecified => or_message(publish_step_word(progress.step)),
    };
    Some((format!("✓ {text}"), false))
}

/// An impact finding as JSON.
fn finding_json(finding: &api::ImpactFinding) -> Value {
    json!({
        "consumer_app": finding.consumer_app,
        "consumer_revision": finding.consumer_revision,
        "entity": finding.entity,
        "field": finding.field,
        "message": finding.message,
    })
}

/// An impact report as JSON.
pub fn impact_json(report: &api::ImpactReport) -> Value {
    json!({
        "blockers": report.blockers.iter().map(finding_json).collect::<Vec<_>>(),
        "warnings": report.warnings.iter().map(finding_json).collect::<Vec<_>>(),
        "data_changes": report.data_changes.iter().map(|c| json!({
            "entity": c.entity,
            "field": c.field,
            "loses_data": c.loses_data,
            "message": c.message,
        })).collect::<Vec<_>>(),
    })
}

/// An impact report as one table, blockers first, then what the migration does to the data.
pub fn impact_table(report: &api::ImpactReport) -> String {
    let verdict = if report.blockers.is_empty() && report.warnings.is_empty() {
        "nothing would break: no blockers, no warnings".to_owned()
    } else {
        let mut t = table(["KIND", "CONSUMER", "REVISION", "ENTITY", "FIELD", "MESSAGE"]);
        let kinds = report
            .blockers
            .iter()
            .map(|f| ("blocker", f))
            .chain(report.warnings.iter().map(|f| ("warning", f)));
        for (kind, f) in kinds {
            t.add_row([
                kind.to_owned(),
                f.consumer_app.clone(),
                f.consumer_revision.to_string(),
                f.entity.clone(),
                or_dash(&f.field),
                f.message.clone(),
            ]);
        }
        t.to_string()
    };
    if report.data_changes.is_empty() {
        return verdict;
    }
    let mut t = table(["DATA CHANGE", "ENTITY", "FIELD", "WHAT THE MIGRATION DOES"]);
    for c in &report.data_changes {
        t.add_row([
            if c.loses_data {
                "loses data"
            } else {
                "keeps data"
            }
            .to_owned(),
            c.entity.clone(),
            or_dash(&c.field),
            c.message.clone(),
        ]);
    }
    format!("{verdict}\n\n{t}")
}

/// An event as one JSON object (printed on one line).
pub fn event_json(event: &api::Event) -> Value {
    json!({
        "sequence": event.sequence,
        "tenant": event.tenant,
        "kind": event.kind,
        "entity_id": event.entity_id,
        "event_type": event.event_type,
        "schema_version": event.schema_version,
        "time": unix_millis(event.time_ms),
        "time_ms": event.time_ms,
        "who": event.who,
        "command_id": event.command_id,
        "correlation_id": event.correlation_id,
        "causation_id": event.causation_id,
        "payload_type": event.payload.as_ref().map(|p| p.type_url.as_str()),
        "payload_hex": hex::encode(event.payload.as_ref().map(|p| p.value.as_slice()).unwrap_or_default()),
    })
}

/// An event as one line: sequence, time, kind/entity, type, who.
pub fn event_line(event: &api::Event) -> String {
    format!(
        "{:>8}  {}  {}/{}  {}  {}",
        event.sequence,
        unix_millis(event.time_ms),
        event.kind,
        event.entity_id,
        event.event_type,
        or_dash(&event.who),
    )
}

/// Who the caller is, as JSON.
pub fn whoami_json(who: &api::WhoAmIResponse) -> Value {
    json!({
        "user": who.user,
        "tenant": (!who.tenant.is_empty()).then_some(&who.tenant),
        "role": role_word(who.role),
        "platform_admin": who.platform_admin,
        "expires_at": unix_secs(who.expires_at),
    })
}

/// Who the caller is, as fields.
pub fn whoami_table(who: &api::WhoAmIResponse) -> String {
    fields([
        ("user", who.user.clone()),
        (
            "tenant",
            if who.tenant.is_empty() {
                "(platform)".to_owned()
            } else {
                who.tenant.clone()
            },
        ),
        ("role", role_word(who.role)),
        ("platform admin", yes_no(who.platform_admin)),
        ("expires", unix_secs(who.expires_at)),
    ])
    .to_string()
}

#[cfg(test)]
mod tests;
