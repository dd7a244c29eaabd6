//! The sending side: one `v1,<base64>` signature, and the `webhook-signature` header
//! carrying one signature per active secret (rotation).
//!
//! Owns the signed-content layout `"{id}.{timestamp}.{body}"`. The message pieces are fed
//! to the HMAC one after another, so the body is never copied; the only allocation per
//! header is its output `String`, sized exactly up front.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::digest::CtOutput;
use hmac::Mac as _;

use crate::secret::Secret;
use crate::HmacSha256;

/// Version tag of the only signature scheme Herald emits and verifies.
pub(crate) const V1_PREFIX: &str = "v1,";

/// Length of one `v1,<base64 of 32 bytes>` signature: 3 + 44.
pub const SIGNATURE_LEN: usize = V1_PREFIX.len() + 44;

/// Signs one message with one secret: `"v1," + base64(HMAC-SHA256(key, "{id}.{ts}.{body}"))`.
pub fn sign(secret: &Secret, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut out = String::with_capacity(SIGNATURE_LEN);
    push_signature(secret, msg_id, timestamp, body, &mut out);
    out
}

/// Signs with every secret, for the `webhook-signature` header.
///
/// During rotation it holds several secrets; the header then carries one signature per
/// secret so receivers configured with either the old or the new secret accept it.
#[derive(Debug, Clone)]
pub struct Signer {
    /// Active secrets, in header order (the first secret signs first).
    secrets: Vec<Secret>,
}

impl Signer {
    /// A signer for `secrets`, first secret first in the header.
    ///
    /// With no secrets the header is empty and no receiver will accept it; callers should
    /// refuse such an endpoint configuration before getting here.
    pub fn new(secrets: Vec<Secret>) -> Self {
        Signer { secrets }
    }

    /// The active secrets, in header order.
    pub fn secrets(&self) -> &[Secret] {
        &self.secrets
    }

    /// Length in bytes of [`Signer::signature_header`]'s output.
    pub fn header_len(&self) -> usize {
        let n = self.secrets.len();
        n * SIGNATURE_LEN + n.saturating_sub(1)
    }

    /// The `webhook-signature` value: `"v1,<sig> v1,<sig>"`, one per secret, space separated.
    pub fn signature_header(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut out = String::with_capacity(self.header_len());
        self.write_signature_header(msg_id, timestamp, body, &mut out);
        out
    }

    /// Appends the [`Signer::signature_header`] value to `out`, for callers reusing a buffer.
    pub fn write_signature_header(
        &self,
        msg_id: &str,
        timestamp: i64,
        body: &[u8],
        out: &mut String,
    ) {
        out.reserve(self.header_len());
        for (i, secret) in self.secrets.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            push_signature(secret, msg_id, timestamp, body, out);
        }
    }
}

/// Appends `v1,<base64 mac>` to `out`.
fn push_signature(secret: &Secret, msg_id: &str, timestamp: i64, body: &[u8], out: &mut String) {
    let mac = compute_mac(secret, msg_id, timestamp, body).into_bytes();
    out.push_str(V1_PREFIX);
    STANDARD.encode_string(mac, out);
}

/// HMAC-SHA256 over `"{msg_id}.{timestamp}.{body}"`, fed piece by piece (no buffer).
pub(crate) fn compute_mac(
    secret: &Secret,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> CtOutput<HmacSha256> {
    let mut digits = [0u8; I64_MAX_DIGITS];
    let mut mac = secret.mac();
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(format_i64(timestamp, &mut digits));
    mac.update(b".");
    mac.update(body);
    mac.finalize()
}

/// Longest decimal `i64`: `-9223372036854775808`.
const I64_MAX_DIGITS: usize = 20;

/// Writes `v` in decimal into the end of `buf` and returns those bytes (no allocation).
fn format_i64(v: i64, buf: &mut [u8; I64_MAX_DIGITS]) -> &[u8] {
    let mut n = v.unsigned_abs();
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        start -= 1;
        buf[start] = b'-';
    }
    &buf[start..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_answer_vector() {
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = sign(
            &secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert_eq!(sig.len(), SIGNATURE_LEN);
    }

    #[test]
    fn header_has_one_signature_per_secret_in_order() {
        let a = Secret::generate();
        let b = Secret::generate();
        let signer = Signer::new(vec![a.clone(), b.clone()]);
        let header = signer.signature_header("msg_1", 42, b"{}");
        assert_eq!(header.len(), signer.header_len());
        let expected = format!(
            "{} {}",
            sign(&a, "msg_1", 42, b"{}"),
            sign(&b, "msg_1", 42, b"{}")
        );
        assert_eq!(header, expected);
        assert_eq!(Signer::new(vec![]).signature_header("m", 1, b""), "");
    }

    #[test]
    fn format_i64_extremes() {
        let mut buf = [0u8; I64_MAX_DIGITS];
        for v in [0, 1, -1, 9, 10, i64::MAX, i64::MIN, 1614265330] {
            assert_eq!(format_i64(v, &mut buf), v.to_string().as_bytes());
        }
    }

    proptest! {
        #[test]
        fn format_i64_matches_to_string(v in any::<i64>()) {
            let mut buf = [0u8; I64_MAX_DIGITS];
            let expected = v.to_string();
            prop_assert_eq!(format_i64(v, &mut buf), expected.as_bytes());
        }
    }
}
