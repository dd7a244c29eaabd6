//! The event envelope decoder (every record of the events, retry and
//! dead-letter topics): arbitrary bytes never panic, and whatever decodes
//! survives a round trip unchanged.
#![no_main]
use herald_proto::v1::EventEnvelope;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(env) = EventEnvelope::decode(data) {
        let again = EventEnvelope::decode(env.encode_to_vec().as_slice()).expect("re-decodes");
        assert_eq!(again, env);
    }
});
