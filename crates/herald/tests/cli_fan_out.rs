//! The event type catalogue and fan-out publishing through the built `herald`
//! binary, against `herald dev` on free ports: `herald event-type
//! create|list|get|archive`, endpoints of an application subscribed with
//! `--event-type 'order.*'`, and `herald publish --app`, whose JSON answer
//! says how many endpoints got the event; `herald listen` shows each of them
//! receiving it; `herald attempts --event MSG` lists the whole fan-out's
//! attempts by message id; `herald endpoint test` reports the first attempt of a test
//! event that `herald listen` verifies. The harness is in `support/mod.rs`.
#![cfg(unix)]

mod support;

use std::collections::BTreeSet;

use serde_json::Value;
use support::{run, run_failing, run_json, Dev, Proc, SECRET};

/// The JSON Schema of `order.created` payloads.
const ORDER_SCHEMA: &str =
    r#"{"type":"object","required":["amount"],"properties":{"amount":{"type":"integer"}}}"#;

/// `args` against `server`, with JSON output: must succeed; its answer.
fn json<'a>(server: &'a str, args: &[&'a str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--server", server, "--output", "json"]);
    run_json(&all)
}

/// `args` against `server`: must fail; its stderr.
fn failing<'a>(server: &'a str, args: &[&'a str]) -> String {
    let mut all = args.to_vec();
    all.extend(["--server", server]);
    run_failing(&all)
}

/// `herald publish` of an `order.created` fan-out to the application `shop`.
fn publish_to_shop(data: &str) -> [&str; 7] {
    [
        "publish",
        "--app",
        "shop",
        "--type",
        "order.created",
        "--data",
        data,
    ]
}

/// The names in an `event-type list --output json` answer.
fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .expect("list is an array")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect()
}

#[test]
fn event_types_and_fan_out_with_real_processes() {
    let dev = Dev::start();
    let server = dev.server.as_str();
    let json = |args: &[&str]| json(server, args);

    // 1. The catalogue: a type with a schema, listed, archived, restored.
    let created = json(&[
        "event-type",
        "create",
        "order.created",
        "--description",
        "a customer placed an order",
        "--schema",
        ORDER_SCHEMA,
    ]);
    assert_eq!(created["name"], "order.created", "{created}");
    assert_eq!(created["schema"]["required"][0], "amount", "{created}");
    assert_eq!(created["archived"], false, "{created}");
    let got = json(&["event-type", "get", "order.created"]);
    assert_eq!(got["description"], "a customer placed an order", "{got}");

    let listed = json(&["event-type", "list"]);
    assert_eq!(names(&listed), ["order.created"], "{listed}");
    let text = run(&["event-type", "list", "--server", server]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.starts_with("NAME ") && text.contains("order.created"),
        "{text}"
    );

    let archived = json(&["event-type", "archive", "order.created"]);
    assert_eq!(archived["archived"], true, "{archived}");
    assert!(names(&json(&["event-type", "list"])).is_empty());
    let all = json(&["event-type", "list", "--include-archived", "--all"]);
    assert_eq!(names(&all), ["order.created"], "{all}");

    // 2. An application's endpoints: two subscribed to order.*, one to
    //    invoices only, and one in another application.
    let listen = Proc::spawn(
        "herald listen",
        &["listen", "--port", "0", "--secret", SECRET],
    );
    let first = listen.next_line();
    let hooks = support::address_in(&first);
    let endpoint = |path: &str, app: &str, pattern: &str| {
        let url = format!("http://{hooks}{path}");
        let created = json(&[
            "endpoint",
            "create",
            "--url",
            &url,
            "--secret",
            SECRET,
            "--app",
            app,
            "--event-type",
            pattern,
        ]);
        assert_eq!(created["app_id"], app, "{created}");
        assert_eq!(created["event_types"][0], pattern, "{created}");
        created["id"].as_str().expect("id").to_owned()
    };
    let crm = endpoint("/crm", "shop", "order.*");
    endpoint("/sms", "shop", "order.*");
    endpoint("/billing", "shop", "invoice.*");
    endpoint("/elsewhere", "other", "order.*");
    let shop = json(&["endpoint", "list", "--app", "shop"]);
    let shop = shop.as_array().expect("list is an array");
    assert_eq!(shop.len(), 3, "{shop:?}");
    assert!(shop.iter().all(|e| e["app_id"] == "shop"), "{shop:?}");

    // 3. Publishing: an archived type is refused, then fans out once restored;
    //    a payload against the schema is refused with the failing place.
    let err = failing(server, &publish_to_shop(r#"{"amount":1500}"#));
    assert!(
        err.contains("FAILED_PRECONDITION") && err.contains("archived"),
        "{err}"
    );
    let restored = json(&["event-type", "archive", "order.created", "--undo"]);
    assert_eq!(restored["archived"], false, "{restored}");
    let err = failing(server, &publish_to_shop(r#"{"amount":"lots"}"#));
    assert!(
        err.contains("INVALID_ARGUMENT") && err.contains("/amount"),
        "{err}"
    );

    let published = json(&publish_to_shop(r#"{"amount":1500}"#));
    assert_eq!(published["fanned_out"], 2, "{published}");
    let message_id = published["message_id"].as_str().expect("message_id");
    assert!(!message_id.is_empty(), "{published}");
    assert_eq!(published["duplicate"], false, "{published}");
    assert!(published.get("event_id").is_none(), "{published}");

    // Exactly one target: clap refuses both and neither before any call.
    let err = failing(
        server,
        &[
            "publish",
            "--endpoint",
            "e",
            "--app",
            "shop",
            "--type",
            "t",
            "--data",
            "{}",
        ],
    );
    assert!(err.contains("cannot be used with"), "{err}");

    // 4. Both subscribed endpoints receive it, signed.
    let mut paths = BTreeSet::new();
    for _ in 0..2 {
        let line = listen.line_where("a delivery", |l| l.starts_with("--> POST "));
        // Fan-out records carry ids derived from the message id.
        assert!(
            line.contains("webhook-id=evf_") && line.ends_with("verified ✔"),
            "{line}"
        );
        let path = line
            .strip_prefix("--> POST ")
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("not a delivery line: {line}"));
        paths.insert(path.to_owned());
    }
    assert_eq!(
        paths,
        BTreeSet::from(["/crm".to_owned(), "/sms".to_owned()])
    );

    // `herald attempts --event MSG`: the whole fan-out at once, by message
    // id, without naming an endpoint. The attempt log is written after the
    // delivery, so it is polled (a real condition, bounded).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let attempts = loop {
        let listed = json(&["attempts", "--event", message_id]);
        let n = listed.as_array().map_or(0, Vec::len);
        if n >= 2 {
            break listed;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the fan-out's attempts never showed: {listed}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let attempts = attempts.as_array().expect("a list");
    let endpoints: BTreeSet<&str> = attempts
        .iter()
        .map(|a| a["endpoint_id"].as_str().expect("endpoint_id"))
        .collect();
    assert_eq!(endpoints.len(), 2, "both targets' attempts: {attempts:?}");
    assert!(endpoints.contains(crm.as_str()), "{attempts:?}");
    assert!(
        attempts
            .iter()
            .all(|a| a["message_id"] == message_id && a["outcome"] == "success"),
        "{attempts:?}"
    );

    // 5. `herald endpoint test`: a marked event through the normal path;
    //    the CLI prints the first attempt, `herald listen` verifies it.
    let tested = json(&["endpoint", "test", &crm]);
    assert_eq!(
        (&tested["attempted"], &tested["outcome"]),
        (&Value::Bool(true), &Value::from("success")),
        "{tested}"
    );
    let test_id = tested["event_id"].as_str().expect("event_id");
    assert!(test_id.starts_with("test_"), "{tested}");
    let line = listen.line_where("the test delivery", |l| l.starts_with("--> POST "));
    assert!(
        line.contains("/crm")
            && line.contains(&format!("webhook-id={test_id}"))
            && line.ends_with("verified ✔"),
        "{line}"
    );
    drop(listen);
    drop(dev);
}
