//! The request of a batched delivery: several events of one endpoint in one
//! JSON array, under one `webhook-id` and one signature. Pure: no I/O.
//!
//! The body is `[{"id": …, "type": …, "created_at_ms": …, "data": <payload>}, …]`
//! in the endpoint's order; `data` is each payload exactly as published
//! (ingest accepts only JSON), so no payload is parsed or re-encoded here.

use bytes::Bytes;
use herald_proto::v1::EventEnvelope;

/// The batch's `webhook-id` (see [`herald_core::ids::batch_id`]).
pub fn id<'a>(events: impl IntoIterator<Item = &'a EventEnvelope>) -> String {
    herald_core::ids::batch_id(events.into_iter().map(|e| e.event_id.as_str()))
}

/// The JSON array carrying `events`, in order.
pub fn body<'a>(events: impl IntoIterator<Item = &'a EventEnvelope> + Clone) -> Bytes {
    let size: usize = events
        .clone()
        .into_iter()
        .map(|e| e.payload.len() + e.event_id.len() + e.event_type.len() + 64)
        .sum();
    let mut out = Vec::with_capacity(size + 2);
    out.push(b'[');
    for (i, e) in events.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"id\":");
        push_json_string(&mut out, &e.event_id);
        out.extend_from_slice(b",\"type\":");
        push_json_string(&mut out, &e.event_type);
        out.extend_from_slice(b",\"created_at_ms\":");
        out.extend_from_slice(e.created_at_ms.to_string().as_bytes());
        out.extend_from_slice(b",\"data\":");
        if e.payload.is_empty() {
            out.extend_from_slice(b"null");
        } else {
            out.extend_from_slice(&e.payload);
        }
        out.push(b'}');
    }
    out.push(b']');
    Bytes::from(out)
}

fn push_json_string(out: &mut Vec<u8>, s: &str) {
    // serde_json escapes exactly as JSON requires; writing to a Vec cannot fail.
    serde_json::to_writer(&mut *out, s).expect("writing JSON to memory");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(id: &str, ty: &str, payload: &str) -> EventEnvelope {
        EventEnvelope {
            event_id: id.into(),
            event_type: ty.into(),
            created_at_ms: 7,
            payload: payload.as_bytes().to_vec().into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_body_is_a_json_array_of_the_events_in_order() {
        let events = [
            env("e1", "order.shipped", r#"{"n":1}"#),
            env("e\"2", "", "[1, 2]"),
        ];
        let body = body(&events);
        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!([
                {"id": "e1", "type": "order.shipped", "created_at_ms": 7, "data": {"n": 1}},
                {"id": "e\"2", "type": "", "created_at_ms": 7, "data": [1, 2]},
            ])
        );
        assert!(
            body.windows(7).any(|w| w == b"[1, 2]}"),
            "payloads are carried byte for byte"
        );
        assert_eq!(id(&events), herald_core::ids::batch_id(["e1", "e\"2"]));
    }
}
