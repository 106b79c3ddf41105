//! The app model: the examples load, and broken manifests give every error, positioned.
#![allow(clippy::unwrap_used)]

mod common;

use common::{errors, example, fixture_dir, manifest_project};
use neo_builder::project::Project;
use neo_model::{self as model, FieldType, MANIFEST};

#[test]
fn the_examples_load() {
    let (_, catalog) = example("catalog");
    assert_eq!(catalog.name, "catalog");
    let names: Vec<_> = catalog.entities.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["Category", "Product"]);
    let exposed: Vec<_> = catalog.exposes().into_iter().map(|e| e.name).collect();
    assert_eq!(exposed, ["Category", "Product"]);
    let product = &catalog.exposes()[1];
    assert_eq!(product.fields[0].name, "title");
    assert_eq!(product.fields[0].r#type, "text");
    assert!(product.fields[0].required);
    assert_eq!(product.fields[4].r#type, "ref:Category");

    let (_, orders) = example("orders");
    assert_eq!(orders.entities[0].name, "Order");
    assert_eq!(
        orders.entities[0].fields[1].ty,
        FieldType::Ref("Product".into())
    );
    assert_eq!(orders.settings[0].default.as_deref(), Some("EUR"));
    assert_eq!(orders.secrets[0].name, "payment_api_key");
    assert_eq!(orders.screens, ["screens/summary.html"]);
    let consume = &orders.consumes[0];
    assert_eq!(
        (consume.app.as_str(), consume.entity.as_str()),
        ("catalog", "Product")
    );
    assert_eq!(consume.fields, ["title", "price"]);
    assert_eq!(consume.at.to_string(), "neo.toml:25:1");

    let (_, reviews) = example("reviews");
    assert_eq!(reviews.consumes[0].entity, "Product");
    assert!(reviews.exposes().is_empty());
}

#[test]
fn the_model_round_trips_through_json() {
    let (_, orders) = example("orders");
    let json = serde_json::to_string(&orders).unwrap();
    assert!(json.contains(r#""type":"ref:Product""#));
    let back: model::Model = serde_json::from_str(&json).unwrap();
    assert_eq!(back, orders);
}

#[test]
fn the_broken_fixture_gives_every_error_positioned() {
    let project = Project::from_dir(&fixture_dir("broken")).unwrap();
    let diags = model::load(&project).unwrap_err();
    let got: Vec<String> = diags.iter().map(ToString::to_string).collect();
    let at: Vec<String> = diags
        .iter()
        .map(|d| format!("{}:{}", d.line, d.column))
        .collect();
    assert_eq!(
        at,
        [
            "1:8", "2:1", "5:8", "7:12", "7:28", "8:27", "9:12", "14:10", "17:12", "24:8", "27:8",
            "30:8", "35:20"
        ],
        "{got:#?}"
    );
    assert!(
        got[0].starts_with("neo.toml:1:8: app name `Broken_App` is invalid"),
        "{}",
        got[0]
    );
    assert!(
        got[1].contains("unknown key `colour` in the manifest"),
        "{}",
        got[1]
    );
    assert!(
        got[2].contains("entity name `order` is invalid"),
        "{}",
        got[2]
    );
    assert!(
        got[3].contains("field name `Total` is invalid"),
        "{}",
        got[3]
    );
    assert!(got[4].contains("unknown field type `money`"), "{}", got[4]);
    assert!(got[5].contains("unknown entity `Item`"), "{}", got[5]);
    assert!(got[6].contains("`id` is reserved"), "{}", got[6]);
    assert!(
        got[7].contains("`expose` must be true or false, found a string"),
        "{}",
        got[7]
    );
    assert!(
        got[8].contains("field `customer` is declared twice (first on line 16)"),
        "{}",
        got[8]
    );
    assert!(
        got[9].contains("`currency` is declared twice (first on line 21)"),
        "{}",
        got[9]
    );
    assert!(
        got[10].contains("`screens/missing.html` is not a file of the project"),
        "{}",
        got[10]
    );
    assert!(
        got[11].contains("must be a path under `screens/`"),
        "{}",
        got[11]
    );
    assert!(
        got[12].contains("field `title` is declared twice"),
        "{}",
        got[12]
    );
}

#[test]
fn a_missing_manifest_is_reported_at_its_start() {
    let project = Project::from_files([("screens/a.html".to_owned(), vec![])]).unwrap();
    let diags = model::load(&project).unwrap_err();
    assert_eq!(diags.len(), 1);
    assert_eq!(
        diags[0].to_string(),
        format!("{MANIFEST}:1:1: the project has no `neo.toml` manifest")
    );
}

#[test]
fn a_syntax_error_is_positioned() {
    assert_eq!(
        errors("name = \"a\"\n[[entities]\n"),
        ["2:11: invalid TOML: invalid table header; expected `.`, `]]`"]
    );
    let errs = errors("name = \"a\"\ndescription = \"é\" x\n");
    assert_eq!(errs.len(), 1);
    // Columns count characters: `é` is one.
    assert!(
        errs[0].starts_with("2:19: invalid TOML: expected newline"),
        "{errs:?}"
    );
}

#[test]
fn unknown_keys_are_all_reported_where_they_are() {
    let manifest = "name = \"a\"\n\
                    [[entities]]\n\
                    name = \"A\"\n\
                    fields = [{ name = \"x\", type = \"text\", requird = true }]\n\
                    exposed = true\n\
                    [[screens]]\n\
                    path = \"screens/index.html\"\n\
                    \u{20}\u{20}size = 3\n";
    assert_eq!(
        errors(manifest),
        [
            "4:40: unknown key `requird` in a field; expected one of: name, type, required, unique, min, max, max_length, pattern, values, default",
            "5:1: unknown key `exposed` in an entity; expected one of: name, expose, fields",
            "8:3: unknown key `size` in a screen; expected one of: path",
        ]
    );
}

#[test]
fn missing_keys_are_reported_at_their_table() {
    let manifest = "description = 3\n\n[[entities]]\nfields = [{ type = \"text\" }]\n";
    assert_eq!(
        errors(manifest),
        [
            "1:1: the manifest needs `name`",
            "1:15: `description` must be a string, found an integer",
            "3:1: an entity needs `name`",
            "4:11: a field needs `name`",
        ]
    );
}

#[test]
fn refs_resolve_to_own_or_consumed_entities() {
    let ok = "name = \"shop\"\n\
              [[entities]]\nname = \"Line\"\n\
              fields = [{ name = \"order\", type = \"ref:Order\" }, { name = \"product\", type = \"ref:Product\" }]\n\
              [[entities]]\nname = \"Order\"\n\
              [[consumes]]\napp = \"catalog\"\nentity = \"Product\"\nfields = [\"title\"]\n";
    let model = model::load(&manifest_project(ok)).unwrap();
    assert_eq!(
        model.entities[0].fields[1].ty,
        FieldType::Ref("Product".into())
    );
    assert_eq!(model.entities[0].table_name(), "line");
}

#[test]
fn consumes_rules() {
    let manifest = "name = \"shop\"\n\
                    [[screens]]\npath = \"screens/index.html\"\n\
                    [[consumes]]\napp = \"shop\"\nentity = \"Order\"\nfields = [\"x\"]\n\
                    [[consumes]]\napp = \"catalog\"\nentity = \"Product\"\nfields = [\"title\"]\n\
                    [[consumes]]\napp = \"catalog\"\nentity = \"Product\"\nfields = []\n\
                    [[consumes]]\napp = \"catalog\"\nentity = \"Category\"\n";
    assert_eq!(
        errors(manifest),
        [
            "5:7: an app cannot consume its own entities",
            "14:10: entity `Product` of app `catalog` is consumed twice",
            "15:10: `fields` must list at least one field",
            "16:1: a consumes entry needs `fields`, the fields it uses",
        ]
    );
}

#[test]
fn field_rules_load_where_they_apply() {
    let ok = r#"name = "shop"
[[entities]]
name = "Item"
fields = [
  { name = "sku", type = "text", unique = true, max_length = 12, pattern = "[A-Z]{3}-[0-9]+" },
  { name = "price", type = "decimal", min = 0, max = 9999.99 },
  { name = "stock", type = "integer", min = 0, default = 1 },
  { name = "state", type = "text", values = ["new", "sold"], default = "new" },
  { name = "shown", type = "boolean", default = true },
]
"#;
    let model = model::load(&manifest_project(ok)).unwrap();
    let rules: Vec<&model::Rules> = model.entities[0].fields.iter().map(|f| &f.rules).collect();
    assert!(rules[0].unique);
    assert_eq!(rules[0].max_length, Some(12));
    assert_eq!(rules[0].pattern.as_deref(), Some("[A-Z]{3}-[0-9]+"));
    assert_eq!(
        (rules[1].min.as_deref(), rules[1].max.as_deref()),
        (Some("0"), Some("9999.99"))
    );
    assert_eq!(rules[2].default.as_deref(), Some("1"));
    assert_eq!(rules[3].values, ["new", "sold"]);
    assert_eq!(rules[4].default.as_deref(), Some("true"));
    // In model.json, and back.
    let json = serde_json::to_value(&model).unwrap();
    assert_eq!(json["entities"][0]["fields"][0]["unique"], true);
    assert_eq!(json["entities"][0]["fields"][3]["values"][1], "sold");
    let back: model::Model = serde_json::from_value(json).unwrap();
    assert_eq!(back, model);
}

#[test]
fn field_rules_where_they_do_not_apply_or_contradict_are_positioned() {
    let manifest = r#"name = "shop"
[[entities]]
name = "Item"
fields = [
  { name = "a", type = "boolean", unique = true },
  { name = "b", type = "text", min = 1 },
  { name = "c", type = "integer", min = 1.5, max = "9" },
  { name = "d", type = "decimal", min = 5, max = 2 },
  { name = "e", type = "integer", max_length = 3 },
  { name = "f", type = "text", max_length = 0 },
  { name = "g", type = "text", pattern = "([a-z" },
  { name = "h", type = "text", values = [] },
  { name = "i", type = "text", values = ["x", "x"] },
  { name = "j", type = "integer", default = "one" },
  { name = "k", type = "integer", min = 2, default = 1 },
  { name = "l", type = "ref:Item", default = 1 },
]
"#;
    let got = errors(manifest);
    let expected = [
        "5:44: `unique` does not apply to a boolean field",
        "6:38: `min` applies to integer and decimal fields, not to text",
        "7:41: `min` of an integer field must be an integer",
        "7:52: `max` must be a number, found a string",
        "8:50: `max` (2) is below `min` (5)",
        "9:48: `max_length` applies to text fields, not to integer",
        "10:45: `max_length` must be a positive integer",
        "12:41: `values` must list at least one value",
        "13:47: value `x` is declared twice (first on line 13)",
        "14:45: the default of a field of type integer cannot be a string",
        "15:54: the default `1` must be at least 2",
        "16:46: a reference field has no default",
    ];
    for line in expected {
        assert!(got.iter().any(|g| g == line), "{line} not in {got:#?}");
    }
    assert!(
        got.iter()
            .any(|g| g.starts_with("11:42: `pattern` is not a regular expression")),
        "{got:#?}"
    );
    assert_eq!(got.len(), expected.len() + 1, "{got:#?}");
}

#[test]
fn an_empty_app_is_an_error() {
    assert_eq!(
        errors("name = \"empty\"\n"),
        ["1:1: the app declares no entities and no screens; declare at least one"]
    );
}

#[test]
fn entities_sharing_a_table_are_refused() {
    let manifest =
        "name = \"a\"\n[[entities]]\nname = \"OrderLine\"\n[[entities]]\nname = \"OrderLINE\"\n";
    assert_eq!(
        errors(manifest),
        ["5:8: entity `OrderLINE` and entity `OrderLine` would share the table `order_line`"]
    );
}
