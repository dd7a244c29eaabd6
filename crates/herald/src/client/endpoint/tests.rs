//! Unit tests of the `herald endpoint` commands.

use super::*;
use clap::Parser;
use herald_proto::v1::StringList;

#[derive(Parser, Debug)]
struct Cli {
    #[command(subcommand)]
    cmd: EndpointCmd,
}

fn parse(args: &[&str]) -> Result<EndpointCmd, clap::Error> {
    Cli::try_parse_from(std::iter::once("endpoint").chain(args.iter().copied())).map(|c| c.cmd)
}

fn create(args: &[&str]) -> CreateArgs {
    match parse(&[&["create"], args].concat()).unwrap() {
        EndpointCmd::Create(a) => a,
        other => panic!("{other:?}"),
    }
}

fn update(args: &[&str]) -> UpdateArgs {
    match parse(&[&["update", "ep_1"], args].concat()).unwrap() {
        EndpointCmd::Update(a) => a,
        other => panic!("{other:?}"),
    }
}

#[test]
fn header_flag_parsing() {
    assert_eq!(
        parse_header("X-Tenant:  acme corp ").unwrap(),
        Header {
            name: "X-Tenant".into(),
            value: "acme corp".into()
        }
    );
    assert_eq!(parse_header("X-Empty:").unwrap().value, "");
    assert_eq!(
        parse_header("Authorization: Bearer a:b").unwrap().value,
        "Bearer a:b"
    );
    assert!(parse_header("no colon")
        .unwrap_err()
        .contains("expected 'Name: value'"));
    assert!(parse_header(": v")
        .unwrap_err()
        .contains("missing header name"));
    assert!(parse_header("bad name: v")
        .unwrap_err()
        .contains("not a valid HTTP header name"));
    assert!(parse_header("X-A: line\nbreak").is_err());
}

#[test]
fn duplicate_headers_are_refused_case_insensitively() {
    let err = header_map(vec![
        parse_header("X-A: 1").unwrap(),
        parse_header("x-a: 2").unwrap(),
    ])
    .unwrap_err();
    assert!(err.to_string().contains("more than once"), "{err}");
}

#[test]
fn create_defaults_leave_everything_to_the_server() {
    let req = create_request(create(&["--url", "https://e.x/h"])).unwrap();
    assert_eq!(
        req,
        CreateEndpointRequest {
            url: "https://e.x/h".into(),
            ..Default::default()
        }
    );
}

#[test]
fn create_with_every_flag() {
    let req = create_request(create(&[
        "--url",
        "https://e.x/h",
        "--id",
        "ep_1",
        "--secret",
        "whsec_abc",
        "--description",
        "billing",
        "--disabled",
        "--unordered",
        "--rate-limit",
        "10",
        "--max-in-flight",
        "4",
        "--header",
        "X-A: 1",
        "--header",
        "X-B: 2",
    ]))
    .unwrap();
    assert_eq!(req.id, "ep_1");
    assert_eq!(req.secret, "whsec_abc");
    assert_eq!(req.description, "billing");
    assert_eq!(req.enabled, Some(false));
    assert_eq!(req.ordered, Some(false));
    assert_eq!(
        req.rate_limit,
        Some(RateLimit {
            per_second: 10,
            burst: 0
        })
    );
    assert_eq!(req.max_in_flight, 4);
    assert_eq!(req.headers.len(), 2);
    assert_eq!(req.headers["X-B"], "2");
}

#[test]
fn create_requires_url_and_rejects_bad_header() {
    assert!(parse(&["create"]).is_err());
    let err = parse(&["create", "--url", "u", "--header", "nope"]).unwrap_err();
    assert!(err.to_string().contains("expected 'Name: value'"), "{err}");
}

#[test]
fn update_sets_only_given_fields() {
    let req = update_request(update(&["--disable", "--url", "https://n"]), None).unwrap();
    assert_eq!(
        req,
        UpdateEndpointRequest {
            id: "ep_1".into(),
            url: Some("https://n".into()),
            enabled: Some(false),
            ..Default::default()
        }
    );
    let req = update_request(update(&["--enable", "--ordered"]), None).unwrap();
    assert_eq!((req.enabled, req.ordered), (Some(true), Some(true)));
    let req = update_request(update(&["--unordered", "--max-in-flight", "0"]), None).unwrap();
    assert_eq!((req.ordered, req.max_in_flight), (Some(false), Some(0)));
}

#[test]
fn update_refuses_contradictions_and_no_op() {
    assert!(parse(&["update", "ep_1", "--enable", "--disable"]).is_err());
    assert!(parse(&["update", "ep_1", "--ordered", "--unordered"]).is_err());
    assert!(parse(&["update", "ep_1", "--header", "A: b", "--clear-headers"]).is_err());
    let err = update_request(update(&[]), None).unwrap_err();
    assert!(err.to_string().starts_with("nothing to update"), "{err}");
}

#[test]
fn update_headers_replace_or_clear() {
    let req = update_request(update(&["--header", "X-A: 1"]), None).unwrap();
    assert_eq!(req.headers.unwrap().headers["X-A"], "1");
    let req = update_request(update(&["--clear-headers"]), None).unwrap();
    assert_eq!(req.headers, Some(HeaderMap::default()));
    let req = update_request(update(&["--url", "u"]), None).unwrap();
    assert_eq!(req.headers, None);
}

#[test]
fn update_of_one_rate_field_keeps_the_other() {
    let current = RateLimit {
        per_second: 10,
        burst: 30,
    };
    let args = update(&["--rate-limit", "20"]);
    assert!(args.needs_current_rate());
    let req = update_request(args, Some(current)).unwrap();
    assert_eq!(
        req.rate_limit,
        Some(RateLimit {
            per_second: 20,
            burst: 30
        })
    );
    let args = update(&["--burst", "5"]);
    assert!(args.needs_current_rate());
    let req = update_request(args, Some(current)).unwrap();
    assert_eq!(
        req.rate_limit,
        Some(RateLimit {
            per_second: 10,
            burst: 5
        })
    );
    let args = update(&["--rate-limit", "1", "--burst", "2"]);
    assert!(!args.needs_current_rate());
    assert_eq!(
        update_request(args, None).unwrap().rate_limit,
        Some(RateLimit {
            per_second: 1,
            burst: 2
        })
    );
}

#[test]
fn update_rotates_secret() {
    let req = update_request(update(&["--rotate-secret", "whsec_new"]), None).unwrap();
    assert_eq!(req.rotate_secret.as_deref(), Some("whsec_new"));
}

#[test]
fn list_flags() {
    assert!(parse(&["list", "--all", "--page-token", "t"]).is_err());
    match parse(&["list", "--page-size", "5", "--page-token", "t"]).unwrap() {
        EndpointCmd::List(a) => {
            assert_eq!(a.page_size, Some(5));
            assert_eq!(a.page_token.as_deref(), Some("t"));
            assert!(!a.all);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn get_and_delete_take_an_id() {
    assert!(matches!(parse(&["get", "ep_1"]).unwrap(), EndpointCmd::Get { id } if id == "ep_1"));
    assert!(
        matches!(parse(&["delete", "ep_1"]).unwrap(), EndpointCmd::Delete { id } if id == "ep_1")
    );
    assert!(parse(&["get"]).is_err());
}

#[test]
fn secrets_come_from_files() {
    let dir = std::env::temp_dir().join(format!("herald-secret-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("secret");
    std::fs::write(&file, "whsec_fromfile\n").unwrap();
    assert_eq!(
        secret_value(None, Some(&file)).unwrap().as_deref(),
        Some("whsec_fromfile")
    );
    assert_eq!(
        secret_value(Some("x".into()), None).unwrap().as_deref(),
        Some("x")
    );
    std::fs::write(&file, "  \n").unwrap();
    assert!(secret_value(None, Some(&file))
        .unwrap_err()
        .to_string()
        .contains("empty"));
    assert!(secret_value(None, Some(&dir.join("missing"))).is_err());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn create_with_an_app_and_a_subscription() {
    let req = create_request(create(&[
        "--url",
        "https://e.x/h",
        "--app",
        "shop",
        "--event-type",
        "order.*",
        "--event-type",
        "invoice.paid",
        "--channel",
        "eu",
        "--filter",
        "amount > 1000",
    ]))
    .unwrap();
    assert_eq!(req.app_id, "shop");
    assert_eq!(req.event_types, ["order.*", "invoice.paid"]);
    assert_eq!(req.channels, ["eu"]);
    assert_eq!(req.filter, "amount > 1000");
}

#[test]
fn update_replaces_or_clears_the_subscription() {
    let req = update_request(
        update(&[
            "--event-type",
            "order.*",
            "--channel",
            "eu",
            "--channel",
            "us",
        ]),
        None,
    )
    .unwrap();
    assert_eq!(
        req.event_types,
        Some(StringList {
            values: vec!["order.*".into()]
        })
    );
    assert_eq!(
        req.channels,
        Some(StringList {
            values: vec!["eu".into(), "us".into()]
        })
    );
    assert_eq!(req.filter, None);

    let req = update_request(update(&["--all-event-types", "--any-channel"]), None).unwrap();
    assert_eq!(req.event_types, Some(StringList::default()));
    assert_eq!(req.channels, Some(StringList::default()));

    let req = update_request(update(&["--filter", "tier == \"gold\""]), None).unwrap();
    assert_eq!(req.filter.as_deref(), Some("tier == \"gold\""));
    assert_eq!((req.event_types, req.channels), (None, None));
    let req = update_request(update(&["--no-filter"]), None).unwrap();
    assert_eq!(req.filter.as_deref(), Some(""));

    // Untouched unless asked.
    let req = update_request(update(&["--url", "u"]), None).unwrap();
    assert_eq!(
        (req.event_types, req.channels, req.filter),
        (None, None, None)
    );
}

#[test]
fn update_refuses_contradictory_subscription_flags() {
    use clap::error::ErrorKind;
    for args in [
        &["--event-type", "a.*", "--all-event-types"][..],
        &["--channel", "eu", "--any-channel"],
        &["--filter", "x > 1", "--no-filter"],
    ] {
        let err = parse(&[&["update", "ep_1"], args].concat()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ArgumentConflict, "{args:?}");
    }
}

#[test]
fn update_cannot_move_an_endpoint_to_another_app() {
    let err = parse(&["update", "ep_1", "--app", "shop"]).unwrap_err();
    assert!(
        err.to_string().contains("fixed when it is created"),
        "{err}"
    );
}

#[test]
fn list_by_app() {
    match parse(&["list", "--app", "shop"]).unwrap() {
        EndpointCmd::List(a) => assert_eq!(a.app.as_deref(), Some("shop")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn batching_flags() {
    let req = create_request(create(&[
        "--url",
        "https://e.x/h",
        "--batch-max",
        "50",
        "--batch-linger",
        "20ms",
    ]))
    .unwrap();
    assert_eq!((req.batch_max_events, req.batch_linger_ms), (50, 20));
    assert!(
        parse(&["create", "--url", "https://e.x/h", "--batch-linger", "20ms"]).is_err(),
        "a linger needs --batch-max"
    );
    let req = update_request(update(&["--batch-max", "0"]), None).unwrap();
    assert_eq!((req.batch_max_events, req.batch_linger_ms), (Some(0), None));
    let req = update_request(update(&["--batch-linger", "1s"]), None).unwrap();
    assert_eq!(
        (req.batch_max_events, req.batch_linger_ms),
        (None, Some(1000))
    );
}
