//! Inputs shared by the micro-benchmarks: a seeded xorshift generator (the
//! same inputs on every run), a 1 KiB JSON webhook payload, and an
//! `EventEnvelope` filled in the way ingest fills one in before it writes
//! the event to Kafka. Nothing here is measured.
#![allow(dead_code)] // each bench target uses only part of this module

use bytes::Bytes;
use herald_proto::v1::{AttemptState, EventEnvelope};

/// Payload size the benchmarks use: 1 KiB.
pub const PAYLOAD_LEN: usize = 1024;

/// Unix ms the benchmarks use as "now" (the cores under test take the time
/// as an argument, so a fixed value keeps every run identical).
pub const NOW_MS: i64 = 1_750_000_000_000;

/// An event id in the shape `herald_core::ids::new_event_id` makes (`msg_`
/// and 32 hex digits), fixed so runs are comparable.
pub const EVENT_ID: &str = "msg_0197a3c2e4b87f10a5d6c3b2e1f09a87";

/// xorshift64*: small, fast, deterministic for a given seed.
pub struct XorShift(u64);

impl XorShift {
    /// A generator for `seed` (0 is replaced, xorshift needs a non-zero state).
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n > 0`); the tiny modulo bias does not matter here.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// A JSON document of exactly `len` bytes shaped like a typical webhook
/// (`invoice.paid` with line items and metadata). Deterministic for `seed`.
///
/// Panics if `len` is too small for the fixed part (about 300 bytes).
pub fn json_payload(len: usize, seed: u64) -> String {
    let mut rng = XorShift::new(seed);
    let mut s = String::with_capacity(len);
    s.push_str(r#"{"type":"invoice.paid","api_version":"2025-06-01","#);
    s.push_str(&format!(
        r#""created":{},"livemode":false,"data":{{"object":{{"#,
        NOW_MS / 1000
    ));
    s.push_str(&format!(
        r#""id":"in_{:016x}","customer":"cus_{:012x}","currency":"eur","#,
        rng.next_u64(),
        rng.next_u64() >> 16
    ));
    s.push_str(&format!(
        r#""amount_due":{},"paid":true,"tax_rate":0.19,"lines":["#,
        rng.below(1_000_000)
    ));
    // Closing part: metadata, then a filler string sized to hit `len` exactly.
    let tail_fixed = r#"],"metadata":{"order":"A-10293","channel":"web"},"note":""}}}"#;
    let mut first = true;
    loop {
        let line = format!(
            r#"{}{{"id":"li_{:08x}","quantity":{},"unit_amount":{},"description":"Plan seat {}"}}"#,
            if first { "" } else { "," },
            rng.next_u64() as u32,
            1 + rng.below(9),
            rng.below(100_000),
            rng.below(1000)
        );
        // Keep room for the tail and at least a few filler bytes.
        if s.len() + line.len() + tail_fixed.len() + 8 > len {
            break;
        }
        s.push_str(&line);
        first = false;
    }
    let filler = len
        .checked_sub(s.len() + tail_fixed.len())
        .expect("payload length too small for the fixed JSON part");
    let (before_note, after_note) = tail_fixed.split_at(tail_fixed.len() - 4);
    s.push_str(before_note);
    for i in 0..filler {
        s.push((b'a' + (i % 26) as u8) as char);
    }
    s.push_str(after_note);
    assert_eq!(s.len(), len, "payload length");
    serde_json::from_str::<serde::de::IgnoredAny>(&s).expect("generated payload is JSON");
    s
}

/// An envelope as ingest builds it for a new event (`Publisher::validate`
/// in herald-ingest): ids, type, payload, creation time, an empty attempt
/// state. Origin fields stay unset, as on the events topic.
pub fn envelope(event_id: &str, endpoint_id: &str, payload: Bytes) -> EventEnvelope {
    EventEnvelope {
        event_id: event_id.to_owned(),
        endpoint_id: endpoint_id.to_owned(),
        event_type: "invoice.paid".to_owned(),
        payload,
        created_at_ms: NOW_MS,
        idempotency_key: String::new(),
        attempt: Some(AttemptState::default()),
        ..Default::default()
    }
}
