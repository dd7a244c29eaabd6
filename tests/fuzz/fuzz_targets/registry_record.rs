//! A registry record as a node reads it from the topic: decode, open its
//! sealed secrets, validate. Arbitrary bytes never panic; an endpoint that
//! comes out has at least one secret that parses, and seals back into a
//! record that opens to the same endpoint.
#![no_main]
use herald_proto::v1::EndpointRecord;
use herald_registry::KeyRing;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    // Plaintext records accepted too, so the fuzzer reaches validation
    // without having to forge an AES-GCM tag.
    let ring = KeyRing::new("k1", [("k1".to_string(), [7u8; 32])])
        .expect("the active key is in the ring")
        .accept_plaintext(true);
    let Ok(rec) = EndpointRecord::decode(data) else { return };
    let Ok(ep) = ring.open_endpoint(rec) else { return };
    assert!(!ep.secrets.is_empty());
    assert!(herald_signing::Secret::parse(&ep.secrets[0]).is_ok());
    let mut back = ring.open_endpoint(ring.seal_endpoint(&ep)).expect("a sealed endpoint opens");
    back.sealed_key_id = ep.sealed_key_id.clone();
    assert_eq!(back, ep);
});
