use super::*;
use proptest::prelude::*;
use serde_json::{json, Value};

fn eval(source: &str, payload: &Value) -> Result<bool, EvalError> {
    eval_with(source, "order.shipped", &[], payload)
}

fn eval_with(
    source: &str,
    event_type: &str,
    channels: &[&str],
    payload: &Value,
) -> Result<bool, EvalError> {
    let filter = Filter::compile(source).unwrap_or_else(|e| panic!("{source}: {e}"));
    let channels: Vec<String> = channels.iter().map(|c| c.to_string()).collect();
    filter.evaluate(&EventInput::new(event_type, &channels, payload))
}

fn order() -> Value {
    json!({
        "amount": 1500,
        "customer": {"tier": "gold", "name": "Ada"},
        "items": [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 0}],
        "first-name": "Ada",
        "event_type": "from the payload"
    })
}

#[test]
fn the_issue_example() {
    let src = r#"amount > 1000 && customer.tier == "gold""#;
    assert_eq!(eval(src, &order()), Ok(true));
    assert_eq!(
        eval(src, &json!({"amount": 500, "customer": {"tier": "gold"}})),
        Ok(false)
    );
    assert_eq!(
        eval(
            src,
            &json!({"amount": 5000, "customer": {"tier": "silver"}})
        ),
        Ok(false)
    );
}

#[test]
fn variable_layout() {
    let p = order();
    assert_eq!(eval("payload.amount == amount", &p), Ok(true));
    assert_eq!(eval(r#"payload["first-name"] == "Ada""#, &p), Ok(true));
    // Reserved names win over payload fields of the same name.
    assert_eq!(eval(r#"event_type == "order.shipped""#, &p), Ok(true));
    assert_eq!(
        eval(r#"payload.event_type == "from the payload""#, &p),
        Ok(true)
    );
    assert_eq!(
        eval_with(
            r#""eu" in channels && size(channels) == 2"#,
            "x",
            &["us", "eu"],
            &p
        ),
        Ok(true)
    );
    assert_eq!(eval("size(channels) == 0", &p), Ok(true));
    assert_eq!(eval(r#"event_type.startsWith("order.")"#, &p), Ok(true));
    // Fields that are not identifiers are not variables: `a.b` is a select.
    let dotted = json!({"a.b": 1, "a": {"b": 2}});
    assert_eq!(eval("a.b == 2 && payload['a.b'] == 1", &dotted), Ok(true));
    // A comprehension variable shadows a payload field of the same name.
    assert_eq!(eval("items.exists(amount, amount.qty == 2)", &p), Ok(true));
    // Non-object payloads are reachable as `payload` only.
    assert_eq!(
        eval("size(payload) == 3 && payload[1] == 2", &json!([1, 2, 3])),
        Ok(true)
    );
    assert_eq!(eval(r#"payload == "hi""#, &json!("hi")), Ok(true));
    assert_eq!(eval("payload == null", &Value::Null), Ok(true));
}

#[test]
fn numbers_compare_across_json_representations() {
    for payload in [
        json!({"amount": 1500}),
        json!({"amount": 1500.5}),
        json!({"amount": u64::MAX}),
    ] {
        assert_eq!(eval("amount > 1000", &payload), Ok(true), "{payload}");
        assert_eq!(eval("amount > 1000.0", &payload), Ok(true), "{payload}");
    }
    assert_eq!(eval("amount == 1500", &json!({"amount": 1500.0})), Ok(true));
    assert_eq!(eval("amount < 0", &json!({"amount": i64::MIN})), Ok(true));
}

#[test]
fn standard_library_and_macros() {
    let p = order();
    let truths = [
        "items.exists(i, i.sku == 'b')",
        "items.all(i, i.qty >= 0)",
        "items.exists_one(i, i.qty > 0)",
        "items.map(i, i.qty).exists(q, q == 2)",
        "items.filter(i, i.qty > 0).size() == 1",
        "has(customer.tier) && !has(customer.vip)",
        "has(payload.amount)",
        "payload.?discount.orValue(0) == 0",
        "customer.name.contains('d') && customer.name.endsWith('a')",
        "amount in [1500, 2000] || false",
        "'gold' in ['gold', 'silver'] ? true : false",
        "type(amount) == int",
        "amount % 7 == 2 && amount / 2 == 750",
    ];
    for src in truths {
        assert_eq!(eval(src, &p), Ok(true), "{src}");
    }
}

#[test]
fn evaluation_errors_are_defined_outcomes() {
    let p = order();
    assert_eq!(
        eval("discount > 0", &p),
        Err(EvalError::Undefined {
            name: "discount".into()
        })
    );
    assert_eq!(
        eval("customer.vip == true", &p),
        Err(EvalError::MissingField {
            field: "vip".into()
        })
    );
    let err = eval(r#"amount > "1000""#, &p).unwrap_err();
    assert!(matches!(err, EvalError::TypeMismatch { .. }), "{err:?}");
    assert!(
        err.to_string().contains("int") && err.to_string().contains("string"),
        "{err}"
    );
    assert!(matches!(
        eval("customer > 3", &p),
        Err(EvalError::TypeMismatch { .. })
    ));
    assert_eq!(
        eval("amount", &p),
        Err(EvalError::NotBoolean {
            found: "int".into()
        })
    );
    assert_eq!(
        eval("customer.tier", &p),
        Err(EvalError::NotBoolean {
            found: "string".into()
        })
    );
    assert!(matches!(
        eval("amount / 0 == 1", &p),
        Err(EvalError::Failed { .. })
    ));
    assert!(matches!(
        eval("matches(customer.name, 'A.*')", &p),
        Err(EvalError::Undefined { .. })
    ));
    // Short-circuiting guards a missing field.
    assert_eq!(eval("has(payload.discount) && discount > 0", &p), Ok(false));
    // An error that a false operand absorbs is no error (CEL semantics).
    assert_eq!(eval("discount > 0 && false", &p), Ok(false));
    // Messages quoting big values are cut.
    let huge = json!({"blob": "x".repeat(10_000)});
    let message = eval("blob > 1", &huge).unwrap_err().to_string();
    assert!(
        message.chars().count() < MAX_MESSAGE_CHARS + 50,
        "{message}"
    );
}

#[test]
fn syntax_errors_carry_line_and_column() {
    let cases: &[(&str, u32, u32)] = &[
        ("amount >", 1, 9),
        ("amount > 1000 &&& x", 1, 17),
        ("amount > 1000 &&\n  customer.tier ==", 2, 19),
        ("x == 'unterminated", 1, 6),
        ("(a", 1, 3),
    ];
    for (src, line, column) in cases {
        match Filter::compile(src) {
            Err(FilterError::Syntax {
                position, message, ..
            }) => {
                assert_eq!(
                    position,
                    Position {
                        line: *line,
                        column: *column
                    },
                    "{src}: {message}"
                );
                assert!(!message.is_empty());
            }
            other => panic!("{src}: {other:?}"),
        }
    }
    let err = Filter::compile("amount >").unwrap_err().to_string();
    assert!(
        err.starts_with("filter has a syntax error at line 1, column 9: "),
        "{err}"
    );
    // Columns count characters, not bytes.
    let Err(FilterError::Syntax { position, .. }) = Filter::compile("'é' == 'é' &&") else {
        panic!()
    };
    assert_eq!(
        position,
        Position {
            line: 1,
            column: 14
        }
    );
}

#[test]
fn empty_and_overlong_filters() {
    assert_eq!(Filter::compile("").unwrap_err(), FilterError::Empty);
    assert_eq!(Filter::compile(" \n\t").unwrap_err(), FilterError::Empty);
    let long = format!("a == '{}'", "x".repeat(MAX_FILTER_LEN));
    assert_eq!(
        Filter::compile(&long).unwrap_err(),
        FilterError::TooLong { len: long.len() }
    );
    let just_fits = format!("a == '{}'", "x".repeat(MAX_FILTER_LEN - 7));
    assert_eq!(just_fits.len(), MAX_FILTER_LEN);
    assert!(Filter::compile(&just_fits).is_ok());
}

#[test]
fn deep_nesting_is_refused_with_a_position() {
    let ok = format!("{}true{}", "(".repeat(20), ")".repeat(20));
    assert!(Filter::compile(&ok).is_ok());
    let deep = format!("{}true{}", "(".repeat(200), ")".repeat(200));
    match Filter::compile(&deep) {
        Err(FilterError::TooDeep { position }) => assert_eq!(position.line, 1),
        other => panic!("{other:?}"),
    }
    let deep_lists = format!("{}1{} == x", "[".repeat(100), "]".repeat(100));
    assert!(matches!(
        Filter::compile(&deep_lists),
        Err(FilterError::TooDeep { .. })
    ));
    // Long but flat chains are not nesting.
    let flat = vec!["1 == 1"; 400].join(" || ");
    assert!(flat.len() < MAX_FILTER_LEN);
    assert!(Filter::compile(&flat).is_ok());
}

#[test]
fn nested_comprehensions_are_refused() {
    let err = Filter::compile("items.all(i, items.exists(j, i == j))").unwrap_err();
    let FilterError::NestedComprehension { position } = err else {
        panic!("{err:?}")
    };
    assert_eq!(position.line, 1);
    assert!(position.column > 1, "{position}");
    assert!(matches!(
        Filter::compile("[[1]].map(l, l.map(x, x)).size() == 1"),
        Err(FilterError::NestedComprehension { .. })
    ));
    // One after another, or one feeding another's range, stays linear.
    for ok in [
        "items.all(i, i.qty >= 0) && items.exists(i, i.qty > 1)",
        "items.map(i, i.qty).all(q, q >= 0)",
        "has(a.b) && items.exists(i, has(i.sku))",
    ] {
        assert!(Filter::compile(ok).is_ok(), "{ok}");
    }
}

#[test]
fn comprehension_bodies_use_only_their_own_variable() {
    let err = Filter::compile("items.exists(i, i.sku == customer.favorite)").unwrap_err();
    let FilterError::OuterReference { name, position } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(name, "customer");
    assert_eq!(
        *position,
        Position {
            line: 1,
            column: 26
        }
    );
    assert!(err.to_string().contains("`customer`"), "{err}");
    for quadratic in [
        "items.all(i, i in items)",
        "items.map(i, payload).size() > 0",
        "items.exists(i, i == event_type)",
        "items.filter(i, size(channels) > 0).size() > 0",
    ] {
        assert!(
            matches!(
                Filter::compile(quadratic),
                Err(FilterError::OuterReference { .. })
            ),
            "{quadratic}"
        );
    }
    let p = order();
    for ok in [
        "items.all(i, type(i) == map && type(i.qty) == int)",
        "items.exists(i, i.sku in ['a', 'z'])",
        "{'k': 1}.all(key, key == 'k')",
        "items.map(i, i.qty).filter(q, q > 0).size() == 1",
    ] {
        assert_eq!(eval(ok, &p), Ok(true), "{ok}");
    }
}

#[test]
fn references_are_capped() {
    let at_limit = vec!["a == 1"; MAX_REFERENCES].join(" || ");
    assert!(Filter::compile(&at_limit).is_ok());
    let over = vec!["a == 1"; MAX_REFERENCES + 1].join(" || ");
    let err = Filter::compile(&over).unwrap_err();
    assert!(
        matches!(err, FilterError::TooManyReferences { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("x in [1, 2, 3]"), "{err}");
    let sums = ["a"; MAX_ADDITIONS + 1].join(" + ");
    assert!(Filter::compile(&format!("{sums} > 0")).is_ok());
    let more = ["a"; MAX_ADDITIONS + 2].join(" + ");
    assert!(matches!(
        Filter::compile(&format!("size({more}) > 0")),
        Err(FilterError::TooManyAdditions { .. })
    ));
    // Type names and a comprehension's accumulator do not count.
    let types = vec!["type(a) == int"; MAX_REFERENCES].join(" || ");
    assert!(Filter::compile(&types).is_ok());
}

#[test]
fn type_names_are_not_shadowed_by_payload_fields() {
    let payload = json!({"int": "not a type", "n": 1});
    assert_eq!(eval("type(n) == int", &payload), Ok(true));
    assert_eq!(eval("payload.int == 'not a type'", &payload), Ok(true));
}

#[test]
fn obviously_non_boolean_filters_are_refused_at_compile() {
    for (src, found) in [
        ("1 + 2", "the result of arithmetic"),
        ("-amount", "the result of arithmetic"),
        ("'gold'", "a string"),
        ("42", "a number"),
        ("null", "null"),
        ("[true]", "a list"),
        ("{'a': true}", "a map"),
    ] {
        match Filter::compile(src) {
            Err(FilterError::NotBoolean { found: f, position }) => {
                assert_eq!(f, found, "{src}");
                assert_eq!(position.line, 1);
            }
            other => panic!("{src}: {other:?}"),
        }
    }
    assert!(Filter::compile("true").is_ok());
}

#[test]
fn overdeep_payloads_are_not_evaluated() {
    let mut deep = json!(1);
    for _ in 0..MAX_PAYLOAD_DEPTH + 5 {
        deep = json!({ "a": deep });
    }
    assert_eq!(eval("true", &deep), Err(EvalError::PayloadTooDeep));
    let mut fits = json!(1);
    for _ in 0..MAX_PAYLOAD_DEPTH - 2 {
        fits = json!([fits]);
    }
    assert_eq!(eval("size(payload) == 1", &fits), Ok(true));
}

#[test]
fn filters_are_shareable_and_compare_by_source() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Filter>();
    assert_send_sync::<EventInput<'static>>();
    let a = Filter::compile("x == 1").unwrap();
    assert_eq!(a, a.clone());
    assert_eq!(a.source(), "x == 1");
    assert_ne!(a, Filter::compile("x == 2").unwrap());
    let threads: Vec<_> = (0..2)
        .map(|i| {
            let f = a.clone();
            std::thread::spawn(move || {
                let p = json!({"x": i});
                f.evaluate(&EventInput::new("t", &[], &p))
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(results, vec![Ok(false), Ok(true)]);
}

/// Fragments of CEL, so that random sources often parse and reach the
/// interpreter.
fn arb_source() -> impl Strategy<Value = String> {
    let token = prop::sample::select(vec![
        "amount",
        "customer",
        ".",
        "tier",
        "items",
        "payload",
        "channels",
        "event_type",
        "(",
        ")",
        "[",
        "]",
        "{",
        "}",
        ",",
        ":",
        "==",
        "!=",
        "<",
        ">=",
        "&&",
        "||",
        "!",
        "-",
        "+",
        "*",
        "/",
        "%",
        "?",
        "1",
        "0",
        "1.5",
        "18446744073709551615u",
        "-9223372036854775808",
        "'gold'",
        "\"x\"",
        "b'\\xff'",
        "true",
        "false",
        "null",
        "in",
        "has(",
        "all(",
        "exists(",
        "map(",
        "filter(",
        "size(",
        "int(",
        "uint(",
        "double(",
        "string(",
        "bytes(",
        "type(",
        "dyn(",
        ".?",
        "orValue(",
        "optional.of(",
        "x,",
        "x",
        " ",
        "\n",
        "\\",
        "'",
        "`",
        "é",
        "0x7fffffffffffffff",
    ]);
    prop::collection::vec(token, 0..40).prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// No source, however malformed, panics the compiler or the evaluator,
    /// and neither needs the panic guard.
    #[test]
    fn compile_and_evaluate_never_panic(source in prop_oneof![arb_source(), "\\PC{0,60}"]) {
        let payload = order();
        let channels = vec!["eu".to_string()];
        match Filter::compile(&source) {
            Ok(filter) => {
                let result = filter.evaluate(&EventInput::new("order.shipped", &channels, &payload));
                prop_assert_ne!(result, Err(EvalError::Internal));
            }
            Err(error) => {
                prop_assert_ne!(&error, &FilterError::Internal);
                prop_assert!(!error.to_string().is_empty());
            }
        }
    }
}

proptest! {
    #[test]
    fn comparison_agrees_with_rust(amount in any::<i64>(), limit in any::<i64>()) {
        let source = format!("amount > {limit}");
        let payload = json!({ "amount": amount });
        prop_assert_eq!(eval(&source, &payload), Ok(amount > limit));
    }
}
