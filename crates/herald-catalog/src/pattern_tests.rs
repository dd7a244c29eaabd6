use super::*;
use crate::filter::EvalError;
use proptest::prelude::*;
use serde_json::json;

fn p(text: &str) -> Pattern {
    Pattern::new(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn wildcard_semantics() {
    let table: &[(&str, &str, bool)] = &[
        ("order.shipped", "order.shipped", true),
        ("order.shipped", "order.shippe", false),
        ("order.shipped", "order.shipped.late", false),
        ("order.shipped", "Order.shipped", false),
        ("order.*", "order.shipped", true),
        ("order.*", "order.created", true),
        ("order.*", "order.shipped.late", false),
        ("order.*", "order", false),
        ("order.*", "orders.shipped", false),
        ("*.created", "user.created", true),
        ("*.created", "created", false),
        ("*.created", "a.user.created", false),
        ("a.*.c", "a.b.c", true),
        ("a.*.c", "a.c", false),
        ("a.*.*", "a.b.c", true),
        ("a.*.*", "a.b", false),
        ("*", "order", true),
        ("*", "order.shipped", true),
        ("*", "a.b.c.d.e.f.g.h", true),
        ("*.*", "order.shipped", true),
        ("*.*", "order", false),
    ];
    for (pattern, name, want) in table {
        assert_eq!(p(pattern).matches(name), *want, "{pattern} vs {name}");
    }
    assert!(p("*").matches_everything());
    assert!(!p("*.*").matches_everything());
    assert!(p("order.shipped").is_exact());
    assert!(!p("order.*").is_exact());
}

#[test]
fn invalid_patterns_say_what_is_wrong() {
    let table: &[(&str, PatternError)] = &[
        ("", PatternError::Empty),
        ("order.", PatternError::EmptySegment { position: 2 }),
        (".", PatternError::EmptySegment { position: 1 }),
        ("**", PatternError::MultiSegmentWildcard { position: 1 }),
        (
            "order.**",
            PatternError::MultiSegmentWildcard { position: 2 },
        ),
        (
            "order.ship*",
            PatternError::PartialWildcard {
                position: 2,
                segment: "ship*".into(),
            },
        ),
        (
            "*order",
            PatternError::PartialWildcard {
                position: 1,
                segment: "*order".into(),
            },
        ),
        (
            "order.sh ipped",
            PatternError::InvalidChar {
                found: ' ',
                offset: 8,
            },
        ),
        (
            "order.?",
            PatternError::InvalidChar {
                found: '?',
                offset: 6,
            },
        ),
        (
            "*.*.*.*.*.*.*.*.*",
            PatternError::TooManySegments { count: 9 },
        ),
    ];
    for (text, want) in table {
        assert_eq!(Pattern::new(*text).as_ref(), Err(want), "{text:?}");
    }
    assert!(matches!(
        Pattern::new("a.".repeat(70) + "a"),
        Err(PatternError::TooLong { .. })
    ));
    assert!(matches!(
        Pattern::new(format!("a.{}", "b".repeat(65))),
        Err(PatternError::SegmentTooLong {
            position: 2,
            len: 65
        })
    ));
    let message = Pattern::new("order.**").unwrap_err().to_string();
    assert!(
        message.contains("order.*.*"),
        "suggests an alternative: {message}"
    );
}

#[test]
fn channel_rules() {
    assert_eq!(validate_channels(&["eu", "tenant:42", "a.b-c_d"]), Ok(()));
    assert_eq!(validate_channels::<&str>(&[]), Ok(()));
    assert_eq!(
        validate_channels(&["ok", ""]),
        Err(ChannelError::Empty { index: 1 })
    );
    assert_eq!(
        validate_channels(&["a b"]),
        Err(ChannelError::InvalidChar {
            index: 0,
            found: ' ',
            offset: 1
        })
    );
    assert_eq!(
        validate_channels(&["x".repeat(MAX_CHANNEL_LEN + 1)]),
        Err(ChannelError::TooLong {
            index: 0,
            len: MAX_CHANNEL_LEN + 1
        })
    );
    let many: Vec<String> = (0..=MAX_CHANNELS).map(|i| format!("c{i}")).collect();
    assert_eq!(
        validate_channels(&many),
        Err(ChannelError::TooMany {
            count: MAX_CHANNELS + 1
        })
    );
}

#[test]
fn subscription_validation() {
    let none: &[&str] = &[];
    assert_eq!(
        Subscription::new(none, none, None).unwrap_err(),
        SubscriptionError::NoPatterns
    );
    let err = Subscription::new(&["order.*", "bad pattern"], none, None).unwrap_err();
    assert!(
        matches!(err, SubscriptionError::Pattern { index: 1, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("\"bad pattern\""), "{err}");
    let many: Vec<String> = (0..=MAX_PATTERNS).map(|i| format!("t{i}")).collect();
    assert!(matches!(
        Subscription::new(&many, none, None),
        Err(SubscriptionError::TooManyPatterns { .. })
    ));
    assert!(matches!(
        Subscription::new(&["*"], &["bad channel"], None),
        Err(SubscriptionError::Channel(ChannelError::InvalidChar { .. }))
    ));
    let err = Subscription::new(&["*"], none, Some("amount >")).unwrap_err();
    assert!(matches!(err, SubscriptionError::Filter(_)), "{err:?}");
    assert!(err.to_string().contains("line 1, column"), "{err}");

    let sub = Subscription::new(&["b.*", "a", "b.*"], &["x", "x"], Some("  ")).unwrap();
    assert_eq!(
        sub.patterns()
            .iter()
            .map(Pattern::as_str)
            .collect::<Vec<_>>(),
        vec!["b.*", "a"],
        "duplicates dropped, first-seen order kept"
    );
    assert_eq!(sub.channels().len(), 1);
    assert!(sub.filter().is_none(), "a blank filter is no filter");
}

fn chans(list: &[&str]) -> Vec<String> {
    list.iter().map(|c| c.to_string()).collect()
}

/// Table-driven: wildcards, channels and filters together, as the fan-out
/// will use them.
#[test]
fn subscription_matching_table() {
    let payload = json!({"amount": 1500, "customer": {"tier": "gold"}, "region": "eu"});
    let none: &[&str] = &[];
    let all = Subscription::new(&["*"], none, None).unwrap();
    let orders = Subscription::new(&["order.*"], none, None).unwrap();
    let orders_eu = Subscription::new(&["order.*"], &["eu", "global"], None).unwrap();
    let gold = Subscription::new(
        &["order.shipped"],
        none,
        Some(r#"amount > 1000 && customer.tier == "gold""#),
    )
    .unwrap();
    let big = Subscription::new(&["order.*"], none, Some("amount > 5000")).unwrap();
    let by_channel_var = Subscription::new(
        &["*"],
        none,
        Some(r#""vip" in channels && event_type.startsWith("order.")"#),
    )
    .unwrap();
    let missing = Subscription::new(&["*"], none, Some("discount > 0")).unwrap();

    use Match::*;
    let cases: Vec<(&str, &Subscription, &str, Vec<String>, Match)> = vec![
        ("star takes all", &all, "user.created", chans(&[]), Matched),
        ("wildcard", &orders, "order.shipped", chans(&[]), Matched),
        (
            "wrong type",
            &orders,
            "user.created",
            chans(&[]),
            NoMatch(super::NoMatch::EventType),
        ),
        (
            "too deep",
            &orders,
            "order.shipped.late",
            chans(&[]),
            NoMatch(super::NoMatch::EventType),
        ),
        (
            "channel hit",
            &orders_eu,
            "order.shipped",
            chans(&["us", "eu"]),
            Matched,
        ),
        (
            "channel miss",
            &orders_eu,
            "order.shipped",
            chans(&["us"]),
            NoMatch(super::NoMatch::Channel),
        ),
        (
            "no channels on event",
            &orders_eu,
            "order.shipped",
            chans(&[]),
            NoMatch(super::NoMatch::Channel),
        ),
        (
            "unlisted channels accept any",
            &orders,
            "order.shipped",
            chans(&["zz"]),
            Matched,
        ),
        ("filter true", &gold, "order.shipped", chans(&[]), Matched),
        (
            "filter false",
            &big,
            "order.shipped",
            chans(&[]),
            NoMatch(super::NoMatch::FilteredOut),
        ),
        (
            "type checked before filter",
            &gold,
            "order.created",
            chans(&[]),
            NoMatch(super::NoMatch::EventType),
        ),
        (
            "channel variable",
            &by_channel_var,
            "order.paid",
            chans(&["vip"]),
            Matched,
        ),
        (
            "channel variable false",
            &by_channel_var,
            "order.paid",
            chans(&["std"]),
            NoMatch(super::NoMatch::FilteredOut),
        ),
        (
            "filter error is no match with a reason",
            &missing,
            "order.paid",
            chans(&[]),
            NoMatch(super::NoMatch::FilterError(EvalError::Undefined {
                name: "discount".into(),
            })),
        ),
    ];
    for (what, sub, event_type, channels, want) in cases {
        let got = sub.matches(event_type, &channels, &payload);
        assert_eq!(got, want, "{what}");
        assert_eq!(got.is_match(), want.is_match(), "{what}");
        let event = EventInput::new(event_type, &channels, &payload);
        assert_eq!(sub.matches_event(&event), want, "{what} (prepared)");
    }
}

#[test]
fn one_prepared_event_serves_many_subscriptions() {
    let payload = json!({"n": 3});
    let channels = chans(&["eu"]);
    let event = EventInput::new("metric.sample", &channels, &payload);
    let none: &[&str] = &[];
    let subs: Vec<Subscription> = (0..10)
        .map(|i| Subscription::new(&["metric.*"], none, Some(&format!("n > {i}"))).unwrap())
        .collect();
    let matched = subs
        .iter()
        .filter(|s| s.matches_event(&event).is_match())
        .count();
    assert_eq!(matched, 3);
}

/// The reference model: the documented semantics as a regular expression.
fn model_regex(pattern: &str) -> regex::Regex {
    if pattern == "*" {
        return regex::Regex::new("^.*$").unwrap();
    }
    let body: Vec<String> = pattern
        .split('.')
        .map(|seg| {
            if seg == "*" {
                "[^.]+".to_string()
            } else {
                regex::escape(seg)
            }
        })
        .collect();
    regex::Regex::new(&format!("^{}$", body.join(r"\."))).unwrap()
}

fn arb_name() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec!["a", "b", "order", "ship-ped", "X_1"]),
        1..=5,
    )
    .prop_map(|segs| segs.join("."))
}

fn arb_pattern() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => Just("*".to_string()),
        8 => prop::collection::vec(prop::sample::select(vec!["a", "b", "order", "*"]), 1..=5)
            .prop_map(|segs| segs.join(".")),
    ]
}

proptest! {
    #[test]
    fn matching_agrees_with_the_reference_model(pattern in arb_pattern(), name in arb_name()) {
        let compiled = Pattern::new(pattern.as_str()).unwrap();
        prop_assert_eq!(compiled.matches(&name), model_regex(&pattern).is_match(&name));
    }

    #[test]
    fn exact_patterns_match_only_themselves(a in arb_name(), b in arb_name()) {
        let pattern = Pattern::new(a.as_str()).unwrap();
        prop_assert!(pattern.matches(&a));
        prop_assert_eq!(pattern.matches(&b), a == b);
    }

    #[test]
    fn star_matches_every_valid_name(name in arb_name()) {
        prop_assert!(Pattern::new("*").unwrap().matches(&name));
    }

    /// A pattern matches a name only if they have as many segments (or the
    /// pattern is the lone `*`), and replacing any segment by `*` keeps a
    /// match.
    #[test]
    fn wildcards_generalise(name in arb_name(), index in 0usize..5) {
        let mut segments: Vec<&str> = name.split('.').collect();
        let index = index % segments.len();
        segments[index] = "*";
        let widened = Pattern::new(segments.join(".")).unwrap();
        prop_assert!(widened.matches(&name));
        let longer = format!("{name}.x");
        prop_assert!(!widened.matches(&longer) || widened.matches_everything());
    }

    #[test]
    fn subscriptions_match_if_any_pattern_does(
        patterns in prop::collection::vec(arb_pattern(), 1..5),
        name in arb_name(),
    ) {
        let none: &[&str] = &[];
        let sub = Subscription::new(&patterns, none, None).unwrap();
        let any = patterns.iter().any(|p| model_regex(p).is_match(&name));
        prop_assert_eq!(sub.matches_type(&name), any);
        prop_assert_eq!(sub.matches(&name, &[], &json!(null)).is_match(), any);
    }

    /// Any text is either refused or a pattern whose literal segments are
    /// valid name segments; matching never panics on any name.
    #[test]
    fn pattern_parsing_is_total(text in "[a-z.*_ ?é-]{0,24}|\\PC{0,150}", name in "\\PC{0,40}") {
        if let Ok(pattern) = Pattern::new(text.as_str()) {
            prop_assert!(pattern.as_str() == "*" || pattern.as_str().split('.').all(|s| s == "*"
                || (!s.is_empty() && s.bytes().all(crate::event_type::is_segment_byte))));
            let _ = pattern.matches(&name);
        }
    }

    #[test]
    fn channel_rule_matches_the_model(
        listed in prop::collection::btree_set(prop::sample::select(vec!["eu", "us", "vip"]), 0..3),
        carried in prop::collection::vec(prop::sample::select(vec!["eu", "us", "vip", "x"]), 0..4),
    ) {
        let listed: Vec<&str> = listed.into_iter().collect();
        let carried: Vec<String> = carried.into_iter().map(String::from).collect();
        let sub = Subscription::new(&["*"], &listed, None).unwrap();
        let want = listed.is_empty() || carried.iter().any(|c| listed.contains(&c.as_str()));
        prop_assert_eq!(sub.matches_channels(&carried), want);
    }
}
