//! Unit tests of the endpoint and publish views and the formatting helpers.

use super::*;

fn endpoint() -> v1::Endpoint {
    v1::Endpoint {
        id: "ep_1".into(),
        url: "https://example.com/hook".into(),
        description: "billing".into(),
        enabled: true,
        ordered: false,
        rate_limit: Some(v1::RateLimit {
            per_second: 100,
            burst: 20,
        }),
        max_in_flight: 4,
        headers: [
            ("X-B".to_owned(), "2".to_owned()),
            ("X-A".to_owned(), "1".to_owned()),
        ]
        .into(),
        created_at_ms: 1_700_000_000_123,
        updated_at_ms: 0,
        ..Default::default()
    }
}

#[test]
fn text_output_defuses_escape_sequences_json_escapes_them() {
    let mut e = endpoint();
    e.description = "\u{1b}]0;owned\u{7}\u{1b}[2J".into();
    let view = EndpointView::from(e);
    let text = render(OutputFormat::Text, &view).unwrap();
    assert!(
        !text.contains('\u{1b}') && !text.contains('\u{7}'),
        "{text:?}"
    );
    assert!(text.contains("\\u{1b}[2J"), "{text:?}");
    let json = render(OutputFormat::Json, &view).unwrap();
    assert!(
        !json.contains('\u{1b}') && json.contains("\\u001b"),
        "{json:?}"
    );
}

#[test]
fn endpoint_view_flattens_rate_limit_and_sorts_headers() {
    let view = EndpointView::from(endpoint());
    assert_eq!(view.rate_limit_per_second, 100);
    assert_eq!(view.rate_limit_burst, 20);
    let json: serde_json::Value = serde_json::to_value(&view).unwrap();
    assert_eq!(json["id"], "ep_1");
    assert_eq!(json["max_in_flight"], 4);
    assert_eq!(json["headers"]["X-A"], "1");
    let keys: Vec<_> = view.headers.keys().cloned().collect();
    assert_eq!(keys, ["X-A", "X-B"]);
}

#[test]
fn missing_rate_limit_means_node_default() {
    let view = EndpointView::from(v1::Endpoint {
        rate_limit: None,
        ..endpoint()
    });
    assert_eq!((view.rate_limit_per_second, view.rate_limit_burst), (0, 0));
    assert_eq!(rate_text(0, 0), "node default");
    assert_eq!(rate_text(5, 0), "5/s");
    assert_eq!(rate_text(5, 9), "5/s, burst 9");
}

#[test]
fn created_json_has_id_and_secret_at_top_level() {
    let view = CreatedEndpointView::from(v1::CreateEndpointResponse {
        endpoint: Some(endpoint()),
        secret: "whsec_abc".into(),
    });
    let line = render(OutputFormat::Json, &view).unwrap();
    assert!(line.ends_with('\n') && !line.trim_end().contains('\n'));
    let json: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(json["id"], "ep_1");
    assert_eq!(json["secret"], "whsec_abc");
    assert_eq!(json["url"], "https://example.com/hook");
}

#[test]
fn created_text_shows_secret_once_warning() {
    let view = CreatedEndpointView::from(v1::CreateEndpointResponse {
        endpoint: Some(endpoint()),
        secret: "whsec_abc".into(),
    });
    let text = render(OutputFormat::Text, &view).unwrap();
    assert!(
        text.contains("\nsecret: whsec_abc (shown once; store it now)\n"),
        "{text}"
    );
    assert!(text.contains("rate limit:    100/s, burst 20\n"), "{text}");
    assert!(
        text.contains("headers:       X-A: 1\n               X-B: 2\n"),
        "{text}"
    );
    assert!(
        text.contains("created:       2023-11-14T22:13:20.123Z\n"),
        "{text}"
    );
}

#[test]
fn publish_views() {
    let view = PublishedView::from(v1::PublishResponse {
        event_id: "evt_1".into(),
        partition: 3,
        offset: 42,
        duplicate: false,
        ..Default::default()
    });
    assert_eq!(
        render(OutputFormat::Text, &view).unwrap(),
        "published evt_1 to partition 3 at offset 42\n"
    );
    let json: serde_json::Value =
        serde_json::from_str(&render(OutputFormat::Json, &view).unwrap()).unwrap();
    assert_eq!(json["event_id"], "evt_1");
    assert_eq!(json["partition"], 3);
    assert_eq!(json["offset"], 42);
    assert_eq!(json["duplicate"], false);
    assert!(
        json.get("message_id").is_none() && json.get("fanned_out").is_none(),
        "{json}"
    );
}

#[test]
fn fan_out_publish_views_show_message_id_and_count() {
    let response = v1::PublishResponse {
        message_id: "msg_9".into(),
        fanned_out: 2,
        ..Default::default()
    };
    let view = PublishedView::from(response.clone());
    assert_eq!(
        render(OutputFormat::Text, &view).unwrap(),
        "published msg_9 to 2 endpoints\n"
    );
    let json: serde_json::Value =
        serde_json::from_str(&render(OutputFormat::Json, &view).unwrap()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"message_id": "msg_9", "fanned_out": 2, "duplicate": false})
    );

    let one = PublishedView::from(v1::PublishResponse {
        fanned_out: 1,
        duplicate: true,
        ..response.clone()
    });
    assert_eq!(
        one.to_text(),
        "published msg_9 to 1 endpoint (duplicate: this idempotency key was already answered)\n"
    );
    let none = PublishedView::from(v1::PublishResponse {
        fanned_out: 0,
        ..response
    });
    let text = none.to_text();
    assert!(
        text.starts_with("published msg_9 to 0 endpoints (no enabled endpoint"),
        "{text}"
    );
    let json = serde_json::to_value(&none).unwrap();
    assert_eq!(json["fanned_out"], 0, "{json}");
}

#[test]
fn endpoint_views_show_app_and_subscription() {
    let plain = EndpointView::from(v1::Endpoint {
        app_id: "default".into(),
        ..endpoint()
    });
    let text = plain.to_text();
    assert!(
        text.contains(
            "app:           default\n\
             url:           https://example.com/hook\n\
             description:   billing\n\
             event types:   all\n\
             channels:      any\n\
             filter:        none\n"
        ),
        "{text}"
    );
    let json = serde_json::to_value(&plain).unwrap();
    assert_eq!(json["app_id"], "default");
    assert_eq!(json["event_types"], serde_json::json!([]));
    assert_eq!(json["channels"], serde_json::json!([]));
    assert_eq!(json["filter"], "");

    let subscribed = EndpointView::from(v1::Endpoint {
        app_id: "shop".into(),
        event_types: vec!["order.*".into(), "invoice.paid".into()],
        channels: vec!["eu".into()],
        filter: "amount > 1000".into(),
        ..endpoint()
    });
    let text = subscribed.to_text();
    assert!(
        text.contains(
            "event types:   order.*, invoice.paid\n\
             channels:      eu\n\
             filter:        amount > 1000\n"
        ),
        "{text}"
    );
    let json = serde_json::to_value(&subscribed).unwrap();
    assert_eq!(json["app_id"], "shop");
    assert_eq!(
        json["event_types"],
        serde_json::json!(["order.*", "invoice.paid"])
    );
    assert_eq!(json["channels"], serde_json::json!(["eu"]));
    assert_eq!(json["filter"], "amount > 1000");
}

#[test]
fn list_is_an_array_in_json_and_an_aligned_table_in_text() {
    let a = EndpointView::from(v1::Endpoint {
        app_id: "default".into(),
        ..endpoint()
    });
    let b = EndpointView {
        id: "ep_long_name".into(),
        app_id: "shop".into(),
        url: "http://x".into(),
        enabled: false,
        ordered: true,
        rate_limit_per_second: 0,
        event_types: vec!["order.*".into(), "refund.*".into()],
        channels: vec!["eu".into()],
        filter: "amount > 1000 &&\n  vip".into(),
        ..a.clone()
    };
    let list = EndpointListView(vec![a, b]);
    let json: serde_json::Value =
        serde_json::from_str(&render(OutputFormat::Json, &list).unwrap()).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);
    assert_eq!(
        list.to_text(),
        "ID            APP      URL                       ENABLED  ORDERED  RATE             EVENT TYPES        CHANNELS  FILTER\n\
         ep_1          default  https://example.com/hook  yes      no       100/s, burst 20  all                any       none\n\
         ep_long_name  shop     http://x                  no       yes      node default     order.*, refund.*  eu        amount > 1000 &&   vip\n"
    );
    assert_eq!(EndpointListView(vec![]).to_text(), "no endpoints\n");
}

#[test]
fn tables_align_by_display_width() {
    let text = table(&["A", "B"], [["日本", "x"], ["ab", "y"]]);
    assert_eq!(text, "A     B\n日本  x\nab    y\n");
    assert_eq!(table(&["ONLY"], Vec::<[&str; 1]>::new()), "ONLY\n");
}

#[test]
fn timestamps() {
    assert_eq!(format_unix_ms(0), "-");
    assert_eq!(format_unix_ms(1), "1970-01-01T00:00:00.001Z");
    assert_eq!(format_unix_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
    assert_eq!(format_unix_ms(-1), "1969-12-31T23:59:59.999Z");
    assert_eq!(
        format_unix_ms(253_402_300_799_999),
        "9999-12-31T23:59:59.999Z"
    );
    assert_eq!(format_unix_ms(i64::MAX), format!("{} (unix ms)", i64::MAX));
}
