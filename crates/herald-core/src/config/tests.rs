//! Loading and validating configuration: layers, env parsing, errors that
//! name the key and the layer.

use super::*;
use toml::Value;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn defaults_are_valid() {
    let cfg = ConfigLoader::new().build().unwrap();
    assert_eq!(cfg, Config::default());
    assert_eq!(cfg.grpc.max_payload_bytes, 262_144);
}

#[test]
fn layers_apply_in_order() {
    let mut l = ConfigLoader::new();
    l.file(
        "herald.toml",
        "[kafka]\nbrokers = \"file:9092\"\nevents_partitions = 6\n[dispatch]\ncommit_interval_ms = 50\n",
    )
    .unwrap();
    l.env(env(&[
        ("HERALD_KAFKA_BROKERS", "env:9092"),
        ("HERALD_LOG_FORMAT", "json"),
        ("HERALD_SERVER", "ignored-client-var"),
        ("PATH", "/bin"),
    ]));
    l.set(
        "kafka.events_partitions",
        Value::Integer(3),
        Source::Flag("--partitions".into()),
    );
    let cfg = l.build().unwrap();
    assert_eq!(cfg.kafka.brokers, "env:9092");
    assert_eq!(cfg.kafka.events_partitions, 3);
    assert_eq!(cfg.dispatch.commit_interval_ms, 50);
    assert_eq!(cfg.log.format, LogFormat::Json);
    assert_eq!(cfg.grpc, GrpcConfig::default());
}

#[test]
fn env_text_keys_stay_text() {
    let cfg = ConfigLoader::new()
        .env(env(&[
            ("HERALD_NODE_ID", "7"),
            ("HERALD_RETRY_SCHEDULE", "1s, 2m"),
        ]))
        .build()
        .unwrap();
    assert_eq!(cfg.node.id, "7");
    assert_eq!(
        cfg.retry.schedule,
        vec![Duration::from_secs(1), Duration::from_secs(120)]
    );
    let cfg = ConfigLoader::new()
        .env(env(&[("HERALD_ENDPOINT_HEALTH_FAILURES_TO_OPEN", "3")]))
        .build()
        .unwrap();
    assert_eq!(cfg.endpoint_health.failures_to_open, 3);
}

#[test]
fn env_numbers_are_typed() {
    let cfg = ConfigLoader::new()
        .env(env(&[("HERALD_DISPATCH_DEFAULT_MAX_IN_FLIGHT", "4")]))
        .build()
        .unwrap();
    assert_eq!(cfg.dispatch.default_max_in_flight, 4);
}

#[test]
fn wrong_type_names_key_and_layer() {
    let err = ConfigLoader::new()
        .env(env(&[("HERALD_DISPATCH_COMMIT_INTERVAL_MS", "soon")]))
        .build()
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("dispatch.commit_interval_ms"), "{msg}");
    assert!(msg.contains("HERALD_DISPATCH_COMMIT_INTERVAL_MS"), "{msg}");
}

#[test]
fn unknown_key_in_file_is_named() {
    let mut l = ConfigLoader::new();
    l.file("h.toml", "[kafka]\nbrokerz = \"x\"\n").unwrap();
    let msg = l.build().unwrap_err().to_string();
    assert!(msg.contains("brokerz"), "{msg}");
    assert!(msg.contains("h.toml"), "{msg}");
}

#[test]
fn bad_toml_names_file() {
    let msg = ConfigLoader::new()
        .file("h.toml", "[kafka\n")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("h.toml"), "{msg}");
}

#[test]
fn out_of_range_values_are_named() {
    let msg = ConfigLoader::new()
        .set(
            "kafka.events_partitions",
            Value::Integer(0),
            Source::Default,
        )
        .build()
        .unwrap_err()
        .to_string();
    assert!(msg.contains("kafka.events_partitions"), "{msg}");
    let msg = ConfigLoader::new()
        .set(
            "kafka.events_topic",
            Value::String("bad topic".into()),
            Source::Default,
        )
        .build()
        .unwrap_err()
        .to_string();
    assert!(msg.contains("kafka.events_topic"), "{msg}");
}

#[test]
fn idle_pause_is_off_or_in_range() {
    let build = |key: &str, v: i64| {
        ConfigLoader::new()
            .set(key, Value::Integer(v), Source::Default)
            .build()
    };
    let cfg = build("kafka.idle_pause_after_ms", 0).expect("0 turns the pause off");
    assert_eq!(cfg.kafka.idle_pause_after_ms, 0);
    assert!(build("kafka.idle_pause_after_ms", 100).is_ok());
    for (key, v) in [
        ("kafka.idle_pause_after_ms", 99),
        ("kafka.idle_pause_after_ms", 3_600_001),
        ("kafka.idle_probe_interval_ms", 9),
        ("kafka.idle_probe_interval_ms", 60_001),
    ] {
        let msg = build(key, v).unwrap_err().to_string();
        assert!(msg.contains(key), "{key} = {v}: {msg}");
    }
}

#[test]
fn bad_listen_address_is_named() {
    let msg = ConfigLoader::new()
        .env(env(&[("HERALD_GRPC_LISTEN", "not-an-address")]))
        .build()
        .unwrap_err()
        .to_string();
    assert!(msg.contains("grpc.listen"), "{msg}");
}

#[test]
fn retry_durations_parse() {
    let mut l = ConfigLoader::new();
    l.file(
        "h.toml",
        "[retry]\nschedule = [\"1s\", \"2m\", 500]\nmax_age = \"2d\"\n",
    )
    .unwrap();
    l.env(env(&[("HERALD_RETRY_IN_MEMORY_MAX", "10s")]));
    let cfg = l.build().unwrap();
    assert_eq!(
        cfg.retry.schedule,
        vec![
            Duration::from_secs(1),
            Duration::from_secs(120),
            Duration::from_millis(500)
        ]
    );
    assert_eq!(cfg.retry.max_age, Duration::from_secs(2 * 86_400));
    assert_eq!(cfg.retry.in_memory_max, Duration::from_secs(10));
    let msg = ConfigLoader::new()
        .env(env(&[("HERALD_RETRY_MAX_AGE", "forever")]))
        .build()
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("retry.max_age") && msg.contains("forever"),
        "{msg}"
    );
}

#[test]
fn retry_retention_must_outlive_the_retry_life() {
    let mut l = ConfigLoader::new();
    l.file(
        "herald.toml",
        "[retry]\nmax_age = \"20d\"\n[kafka]\nretry_retention = \"14d\"\n",
    )
    .unwrap();
    let msg = l.build().unwrap_err().to_string();
    assert!(
        msg.contains("kafka.retry_retention") && msg.contains("retry.max_age"),
        "{msg}"
    );
}

#[test]
fn client_map_is_kept_whole() {
    let mut l = ConfigLoader::new();
    l.file(
        "h.toml",
        "[kafka.client]\n\"security.protocol\" = \"ssl\"\n",
    )
    .unwrap();
    let cfg = l.build().unwrap();
    assert_eq!(
        cfg.kafka
            .client
            .get("security.protocol")
            .map(String::as_str),
        Some("ssl")
    );
}

#[test]
fn payload_limit_must_fit_the_producer() {
    let msg = ConfigLoader::new()
        .env(env(&[("HERALD_GRPC_MAX_PAYLOAD_BYTES", "2000000")]))
        .build()
        .unwrap_err()
        .to_string();
    assert!(msg.contains("grpc.max_payload_bytes"), "{msg}");
    assert!(msg.contains("message.max.bytes (1000000)"), "{msg}");
    let cfg = ConfigLoader::new()
        .file(
            "h.toml",
            "[grpc]\nmax_payload_bytes = 2000000\n[kafka.client]\n\"message.max.bytes\" = \"4000000\"\n",
        )
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(cfg.grpc.max_payload_bytes, 2_000_000);
}

#[test]
fn bad_allow_list_entry_names_key_and_value() {
    for (entry, why) in [
        ("10.0.0.1/8", "did you mean 10.0.0.0/8?"),
        ("10.0.0.0/33", "prefix length over 32"),
        ("intranet", "is not a CIDR block"),
    ] {
        let mut l = ConfigLoader::new();
        l.file(
            "h.toml",
            &format!("[delivery]\nallow_cidrs = [\"{entry}\"]\n"),
        )
        .unwrap();
        let msg = l.build().unwrap_err().to_string();
        assert!(msg.contains("delivery.allow_cidrs"), "{msg}");
        assert!(msg.contains(&format!("{entry:?}")), "{msg}");
        assert!(msg.contains(why), "{msg}");
    }
}
