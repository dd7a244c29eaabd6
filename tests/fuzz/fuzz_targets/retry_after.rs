//! A receiver's `Retry-After` header: any text never panics, and any delay
//! it yields is computed without overflow.
#![no_main]
use herald_delivery::RetryAfter;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Some(ra) = RetryAfter::parse(text) {
        let _ = ra.delay(std::time::UNIX_EPOCH);
        let _ = ra.delay(std::time::SystemTime::now());
    }
});
