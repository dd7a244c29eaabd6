use super::*;
use proptest::prelude::*;
use serde_json::json;

#[test]
fn long_reasons_are_cut() {
    let schema = PayloadSchema::compile(json!({"type": "integer"})).unwrap();
    let err = schema.validate(&json!("x".repeat(10_000))).unwrap_err();
    assert!(
        err.reason.chars().count() <= MAX_REASON_CHARS + 1,
        "{}",
        err.reason
    );
    assert!(err.reason.ends_with('…'));
}

#[test]
fn remote_and_file_references_are_refused_not_fetched() {
    for reference in [
        "https://example.invalid/schema.json",
        "http://127.0.0.1:9/schema.json",
        "file:///etc/passwd",
        "other.json#/x",
    ] {
        let schema = json!({"properties": {"a": {"$ref": reference}}});
        let err = PayloadSchema::compile(schema).unwrap_err();
        assert_eq!(
            err,
            SchemaError::ExternalReference {
                reference: reference.to_string()
            },
            "{reference}"
        );
        assert!(err.to_string().contains("$defs"));
    }
    // A reference resolved by an `$id` inside the document is not external.
    let by_id = json!({
        "$id": "https://schemas.invalid/root",
        "$defs": {"i": {"$id": "https://schemas.invalid/item.json", "type": "string"}},
        "$ref": "item.json"
    });
    let schema = PayloadSchema::compile(by_id).unwrap();
    assert!(schema.validate(&json!(1)).is_err());
    assert!(schema.is_valid(&json!("s")));
    // Neither is an unknown meta-schema fetched.
    let err = PayloadSchema::compile(json!({"$schema": "https://schemas.invalid/meta"}));
    assert!(err.unwrap_err().to_string().contains("meta-schema"));
    // A dangling local reference is invalid, not external.
    let err = PayloadSchema::compile(json!({"$ref": "#/$defs/missing"})).unwrap_err();
    assert!(matches!(err, SchemaError::Invalid { .. }), "{err:?}");
}

#[test]
fn oversized_and_overdeep_schemas_are_refused() {
    let big = json!({"description": "x".repeat(MAX_SCHEMA_BYTES)});
    assert!(matches!(
        PayloadSchema::compile(big),
        Err(SchemaError::TooLarge { .. })
    ));
    let mut deep = json!({});
    for _ in 0..200 {
        deep = json!({ "items": deep });
    }
    assert_eq!(PayloadSchema::compile(deep), Err(SchemaError::TooDeep));
    // Deeper than serde_json would parse (dropping a much deeper value
    // overflows the stack inside serde_json itself).
    let mut very_deep = json!(1);
    for _ in 0..2_000 {
        very_deep = Value::Array(vec![very_deep]);
    }
    assert_eq!(
        PayloadSchema::compile(json!({ "default": very_deep })),
        Err(SchemaError::TooDeep)
    );
}

#[test]
fn patterns_are_linear_time() {
    // A classic catastrophic-backtracking pattern runs at once.
    let schema = PayloadSchema::compile(json!({"pattern": "^(a+)+$"})).unwrap();
    let input = format!("{}!", "a".repeat(50_000));
    assert!(schema.validate(&json!(input)).is_err());
}

#[test]
fn drafts_follow_dollar_schema() {
    // Draft 4: exclusiveMaximum is a boolean.
    let schema = PayloadSchema::compile(json!({
        "$schema": "http://json-schema.org/draft-04/schema#",
        "maximum": 5,
        "exclusiveMaximum": true
    }))
    .unwrap();
    assert!(schema.validate(&json!(5)).is_err());
    assert!(schema.validate(&json!(4)).is_ok());
}

#[test]
fn invalid_schemas_are_refused_at_create() {
    let err = crate::EventType::new("a.b", "", Some(json!({"type": "integr"}))).unwrap_err();
    let crate::event_type::EventTypeError::Schema { name, error } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(name, "a.b");
    assert!(matches!(error, SchemaError::Invalid { .. }), "{error:?}");
    assert!(err.to_string().contains("a.b"), "{err}");

    let err =
        PayloadSchema::compile(json!({"properties": {"n": {"minimum": "five"}}})).unwrap_err();
    let SchemaError::Invalid { schema_path, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(schema_path, "/properties/n/minimum", "{err}");

    assert_eq!(
        PayloadSchema::compile(json!("string")).unwrap_err(),
        SchemaError::NotASchema { found: "a string" }
    );
    assert_eq!(
        PayloadSchema::compile(json!([])).unwrap_err(),
        SchemaError::NotASchema { found: "an array" }
    );
    assert!(PayloadSchema::compile(json!(true)).is_ok());
    assert!(PayloadSchema::compile(json!({"pattern": "("})).is_err());
}

proptest! {
    /// Arbitrary (small) schemas and payloads never panic.
    #[test]
    fn schema_compile_and_validate_are_total(
        schema in arb_json(3),
        payload in arb_json(3),
    ) {
        if let Ok(compiled) = PayloadSchema::compile(schema) {
            let _ = compiled.validate(&payload);
        }
    }
}

fn arb_json(depth: u32) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        prop_oneof![
            Just("type"),
            Just("string"),
            Just("minimum"),
            Just("$ref"),
            Just("#"),
            Just("items"),
            Just("properties"),
            Just("required"),
            Just("pattern"),
            Just("["),
            Just("enum"),
            Just("object")
        ]
        .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(depth, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("type".to_string()),
                    Just("minimum".to_string()),
                    Just("properties".to_string()),
                    Just("items".to_string()),
                    Just("required".to_string()),
                    Just("$ref".to_string()),
                    Just("pattern".to_string()),
                    Just("a".to_string())
                ],
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
