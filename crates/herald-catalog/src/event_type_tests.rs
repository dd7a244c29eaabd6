use super::*;
use proptest::prelude::*;
use serde_json::json;

#[test]
fn valid_names() {
    for name in [
        "order",
        "order.shipped",
        "invoice.payment.failed",
        "Order_2.ship-ped",
        "a.b.c.d.e.f.g.h",
    ] {
        assert_eq!(validate_name(name), Ok(()), "{name}");
        assert_eq!(EventTypeName::new(name).unwrap().as_str(), name);
    }
    let longest_segment = "s".repeat(MAX_SEGMENT_LEN);
    assert_eq!(validate_name(&longest_segment), Ok(()));
    let longest = format!("{0}.{0}", "x".repeat(63));
    assert_eq!(longest.len(), MAX_NAME_LEN - 1);
    assert_eq!(validate_name(&longest), Ok(()));
}

#[test]
fn invalid_names_say_what_is_wrong() {
    let cases: &[(&str, NameError)] = &[
        ("", NameError::Empty),
        (".order", NameError::EmptySegment { position: 1 }),
        ("order.", NameError::EmptySegment { position: 2 }),
        ("order..shipped", NameError::EmptySegment { position: 2 }),
        (
            "order.shi pped",
            NameError::InvalidChar {
                found: ' ',
                offset: 9,
            },
        ),
        (
            "order.*",
            NameError::InvalidChar {
                found: '*',
                offset: 6,
            },
        ),
        (
            "ordér",
            NameError::InvalidChar {
                found: 'é',
                offset: 3,
            },
        ),
        (
            "a/b",
            NameError::InvalidChar {
                found: '/',
                offset: 1,
            },
        ),
        ("a.b.c.d.e.f.g.h.i", NameError::TooManySegments { count: 9 }),
    ];
    for (name, want) in cases {
        assert_eq!(validate_name(name).as_ref(), Err(want), "{name:?}");
    }
    let long_segment = format!("a.{}", "s".repeat(MAX_SEGMENT_LEN + 1));
    assert_eq!(
        validate_name(&long_segment),
        Err(NameError::SegmentTooLong {
            position: 2,
            len: MAX_SEGMENT_LEN + 1
        })
    );
    let too_long = "ab.".repeat(43);
    assert!(matches!(
        validate_name(&too_long),
        Err(NameError::TooLong { len: 129 })
    ));
    let message = validate_name("order.*").unwrap_err().to_string();
    assert!(
        message.contains("'*'") && message.contains("byte 6"),
        "{message}"
    );
}

#[test]
fn names_round_trip_through_serde_and_refuse_invalid_text() {
    let name = EventTypeName::new("order.shipped").unwrap();
    let text = serde_json::to_string(&name).unwrap();
    assert_eq!(text, "\"order.shipped\"");
    assert_eq!(serde_json::from_str::<EventTypeName>(&text).unwrap(), name);
    assert!(serde_json::from_str::<EventTypeName>("\"order..x\"").is_err());
    assert_eq!(
        name.segments().collect::<Vec<_>>(),
        vec!["order", "shipped"]
    );
}

fn order_schema() -> Value {
    json!({
        "type": "object",
        "required": ["amount", "customer"],
        "properties": {
            "amount": {"type": "integer", "minimum": 0},
            "customer": {
                "type": "object",
                "properties": {"tier": {"enum": ["gold", "silver"]}}
            },
            "items": {"type": "array", "items": {"$ref": "#/$defs/item"}}
        },
        "$defs": {"item": {"type": "object", "required": ["sku"]}}
    })
}

#[test]
fn payload_errors_name_the_failing_path_and_reason() {
    let et = EventType::new(
        "order.shipped",
        "An order left the warehouse",
        Some(order_schema()),
    )
    .unwrap();
    assert_eq!(
        et.validate_payload(&json!({"amount": 5, "customer": {"tier": "gold"}})),
        Ok(())
    );

    let err = et
        .validate_payload(&json!({"amount": "5", "customer": {}}))
        .unwrap_err();
    assert_eq!(err.event_type, "order.shipped");
    assert_eq!(err.error.instance_path, "/amount");
    assert_eq!(err.error.schema_path, "/properties/amount/type");
    assert!(err.error.reason.contains("integer"), "{err}");
    let message = err.to_string();
    assert!(message.contains("\"/amount\""), "{message}");
    assert!(message.contains("order.shipped"), "{message}");

    let err = et
        .validate_payload(&json!({"amount": 1, "customer": {"tier": "bronze"}}))
        .unwrap_err();
    assert_eq!(err.error.instance_path, "/customer/tier");

    let err = et
        .validate_payload(&json!({"amount": 1, "customer": {}, "items": [{"sku": 1}, {}]}))
        .unwrap_err();
    assert_eq!(err.error.instance_path, "/items/1");
    assert!(err.error.reason.contains("sku"), "{err}");

    let err = et.validate_payload(&json!({"customer": {}})).unwrap_err();
    assert_eq!(err.error.instance_path, "");
    assert!(err.error.reason.contains("amount"), "{err}");
    assert!(err.to_string().contains("the root"), "{err}");

    let err = et.validate_payload(&json!({"amount": -1})).unwrap_err();
    assert_eq!(err.error.more, 1, "minimum and the missing customer");
}

#[test]
fn a_type_without_schema_accepts_any_payload() {
    let et = EventType::new("ping", "", None).unwrap();
    assert!(et.schema().is_none());
    assert_eq!(et.validate_payload(&json!([1, "two", null])), Ok(()));
}

#[test]
fn description_bound() {
    let long = "d".repeat(MAX_DESCRIPTION_CHARS + 1);
    assert_eq!(
        EventType::new("a", long, None).unwrap_err(),
        EventTypeError::DescriptionTooLong {
            chars: MAX_DESCRIPTION_CHARS + 1
        }
    );
    assert!(EventType::new("a", "é".repeat(MAX_DESCRIPTION_CHARS), None).is_ok());
}

#[test]
fn invalid_name_error_names_the_name() {
    let err = EventType::new("bad name", "", None).unwrap_err();
    assert!(err.to_string().contains("\"bad name\""), "{err}");
}

#[test]
fn update_is_all_or_nothing() {
    let mut et = EventType::new("order.shipped", "v1", Some(order_schema())).unwrap();
    let before = et.clone();
    let err = et
        .update(EventTypeUpdate {
            description: Some("v2".into()),
            schema: Some(Some(json!({"type": 7}))),
            archived: Some(true),
        })
        .unwrap_err();
    assert!(matches!(err, EventTypeError::Schema { .. }));
    assert_eq!(et, before);

    et.update(EventTypeUpdate {
        description: Some("v2".into()),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(et.description(), "v2");
    assert!(et.schema().is_some(), "an untouched schema stays");

    et.update(EventTypeUpdate {
        schema: Some(None),
        archived: Some(true),
        ..Default::default()
    })
    .unwrap();
    assert!(et.schema().is_none());
    assert!(et.archived());
    assert_eq!(et.validate_payload(&json!("anything")), Ok(()));
}

#[test]
fn records_round_trip_and_are_checked() {
    let mut et = EventType::new("order.shipped", "desc", Some(order_schema())).unwrap();
    et.update(EventTypeUpdate {
        archived: Some(true),
        ..Default::default()
    })
    .unwrap();
    let record = EventTypeRecord::from(et.clone());
    assert_eq!(record.name, "order.shipped");
    assert!(record.archived);
    assert_eq!(EventType::try_from(record).unwrap(), et);

    let text = serde_json::to_string(&et).unwrap();
    let back: EventType = serde_json::from_str(&text).unwrap();
    assert_eq!(back, et);
    assert!(
        back.validate_payload(&json!({})).is_err(),
        "schema recompiled"
    );

    let bad = r#"{"name": "x", "schema": {"type": "nope"}}"#;
    assert!(serde_json::from_str::<EventType>(bad).is_err());
    let minimal: EventType = serde_json::from_str(r#"{"name": "x"}"#).unwrap();
    assert_eq!(minimal.description(), "");
    assert!(!minimal.archived());
}

#[test]
fn compiled_types_are_shareable() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<EventType>();
    assert_send_sync::<PayloadSchema>();
}

proptest! {
    /// Arbitrary text never panics validation, and whatever passes is made
    /// only of allowed bytes and dots, within the limits.
    #[test]
    fn name_validation_is_total(name in "[a-z.*_ é-]{0,20}|\\PC{0,200}") {
        if validate_name(&name).is_ok() {
            prop_assert!(name.len() <= MAX_NAME_LEN);
            prop_assert!(name.split('.').count() <= MAX_SEGMENTS);
            prop_assert!(name.split('.').all(|s| !s.is_empty()
                && s.len() <= MAX_SEGMENT_LEN
                && s.bytes().all(is_segment_byte)));
        }
    }
}
