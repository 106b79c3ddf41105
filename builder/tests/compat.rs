//! Compatibility: what a consumer uses against what a producer exposes.
#![allow(clippy::unwrap_used)]

mod common;

use common::example;
use neo_model::compat::{Finding, Severity, check_use, resolve};
use neo_protocol::pb;

fn field(name: &str, ty: &str, required: bool) -> pb::FieldSpec {
    pb::FieldSpec {
        name: name.into(),
        r#type: ty.into(),
        required,
    }
}

fn product(fields: Vec<pb::FieldSpec>) -> pb::ExposedEntity {
    pb::ExposedEntity {
        name: "Product".into(),
        fields,
    }
}

fn uses(fields: &[&str]) -> pb::Dependency {
    pb::Dependency {
        producer_app: "catalog".into(),
        entity: "Product".into(),
        producer_revision: 3,
        fields: fields.iter().map(|f| f.to_string()).collect(),
    }
}

fn summary(findings: &[Finding]) -> Vec<(Severity, Option<&str>)> {
    findings
        .iter()
        .map(|f| (f.severity, f.field.as_deref()))
        .collect()
}

#[test]
fn an_unchanged_producer_is_fine() {
    let before = vec![product(vec![
        field("title", "text", true),
        field("price", "decimal", false),
    ])];
    assert!(check_use(&uses(&["title", "price"]), &before, Some(&before)).is_empty());
    assert!(check_use(&uses(&["title", "price"]), &before, None).is_empty());
}

#[test]
fn a_gone_entity_is_a_blocker() {
    let findings = check_use(&uses(&["title"]), &[], None);
    assert_eq!(summary(&findings), [(Severity::Blocker, None)]);
    assert_eq!(
        findings[0].message,
        "app `catalog` no longer exposes entity `Product`"
    );
}

#[test]
fn gone_and_retyped_fields_are_blockers() {
    let before = vec![product(vec![
        field("title", "text", true),
        field("price", "decimal", false),
        field("stock", "integer", false),
    ])];
    let after = vec![product(vec![
        field("title", "text", true),
        field("price", "text", false),
    ])];
    let findings = check_use(&uses(&["title", "price", "stock"]), &after, Some(&before));
    assert_eq!(
        summary(&findings),
        [
            (Severity::Blocker, Some("price")),
            (Severity::Blocker, Some("stock"))
        ]
    );
    assert!(
        findings[0]
            .message
            .contains("changed type from `decimal` to `text`")
    );
    assert!(findings[1].message.contains("is gone"));
    // Without the previous revision only what is gone is found.
    let findings = check_use(&uses(&["title", "price", "stock"]), &after, None);
    assert_eq!(summary(&findings), [(Severity::Blocker, Some("stock"))]);
}

#[test]
fn newly_required_fields_are_warnings() {
    let before = vec![product(vec![
        field("title", "text", false),
        field("price", "decimal", false),
    ])];
    let after = vec![product(vec![
        field("title", "text", true),
        field("price", "decimal", false),
        field("sku", "text", true),
        field("colour", "text", false),
    ])];
    let findings = check_use(&uses(&["title", "price"]), &after, Some(&before));
    assert_eq!(
        summary(&findings),
        [
            (Severity::Warning, Some("title")),
            (Severity::Warning, Some("sku"))
        ]
    );
    assert!(findings[0].message.contains("became required"));
    assert!(findings[1].message.contains("new required field `sku`"));
}

#[test]
fn empty_fields_means_the_whole_entity() {
    let before = vec![product(vec![
        field("title", "text", true),
        field("price", "decimal", false),
    ])];
    let after = vec![product(vec![field("title", "text", true)])];
    let findings = check_use(&uses(&[]), &after, Some(&before));
    assert_eq!(summary(&findings), [(Severity::Blocker, Some("price"))]);
}

#[test]
fn resolve_against_the_catalog_example() {
    let (_, catalog) = example("catalog");
    let (_, orders) = example("orders");
    let dep = resolve(&orders.consumes[0], 3, &catalog.exposes()).unwrap();
    assert_eq!(dep, uses(&["title", "price"]));
}

#[test]
fn resolve_explains_what_is_missing() {
    let (_, catalog) = example("catalog");
    let (_, orders) = example("orders");
    let mut consume = orders.consumes[0].clone();

    consume.entity = "Foo".into();
    let err = resolve(&consume, 3, &catalog.exposes()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "neo.toml:25:1: app `catalog` (revision 3) exposes no entity `Foo`; \
         it exposes: Category, Product"
    );
    let err = resolve(&consume, 1, &[]).unwrap_err();
    assert!(err.message.ends_with("it exposes no entities"), "{err}");

    consume.entity = "Product".into();
    consume.fields = vec!["title".into(), "colour".into()];
    let err = resolve(&consume, 3, &catalog.exposes()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "neo.toml:25:1: entity `Product` of app `catalog` has no field `colour`; \
         its fields are: title, description, price, in_stock, category, released_on"
    );
}
