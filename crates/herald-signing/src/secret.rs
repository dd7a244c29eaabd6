//! Signing secrets: parsing `whsec_<base64>`, generating fresh keys, printing them safely.
//!
//! Owns key validation (length bounds, base64) and the precomputed HMAC key state. It does
//! not sign or verify anything itself; see [`mod@crate::sign`] and [`crate::verify`].

use std::fmt;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use hmac::Mac as _;
use rand::RngCore as _;

use crate::HmacSha256;

/// Prefix of the textual secret form used by Standard Webhooks and Svix.
pub const WHSEC_PREFIX: &str = "whsec_";

/// Fewest key bytes [`Secret::parse`] accepts.
///
/// Standard Webhooks recommends 24 to 64 bytes (and [`Secret::generate`] makes 24). We also
/// accept 16 (128 bits, still far beyond brute force for HMAC-SHA256) so that keys created
/// by other senders keep working, while truncated or mistyped secrets such as `whsec_abc`
/// are still refused.
pub const MIN_KEY_LEN: usize = 16;

/// Most key bytes [`Secret::parse`] accepts: the SHA-256 block size. HMAC hashes longer
/// keys down to 32 bytes anyway, so more would only hide a copy-paste accident.
pub const MAX_KEY_LEN: usize = 64;

/// Key length, in bytes, of [`Secret::generate`].
pub const GENERATED_KEY_LEN: usize = 24;

/// Base64 decoder for secrets: standard alphabet, padding optional (some tools strip it).
const SECRET_B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a secret string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningError {
    /// Nothing (or only `whsec_`) was given.
    #[error("webhook secret is empty: expected `whsec_` followed by base64, e.g. `whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw`")]
    Empty,
    /// The part after `whsec_` is not standard base64.
    #[error("webhook secret is not valid base64 after the `whsec_` prefix ({0}); copy the whole secret, standard alphabet `A-Z a-z 0-9 + /`")]
    InvalidBase64(#[source] base64::DecodeError),
    /// The key is shorter than [`MIN_KEY_LEN`].
    #[error("webhook secret decodes to {len} bytes but at least {MIN_KEY_LEN} are required; generate a new one (24 random bytes)")]
    TooShort {
        /// Decoded length in bytes.
        len: usize,
    },
    /// The key is longer than [`MAX_KEY_LEN`].
    #[error("webhook secret decodes to {len} bytes but at most {MAX_KEY_LEN} are allowed; check that only one secret was pasted")]
    TooLong {
        /// Decoded length in bytes.
        len: usize,
    },
}

/// A webhook signing key (decoded bytes).
///
/// `Debug` prints `Secret(***)`; only [`Secret::to_whsec`] reveals the key.
#[derive(Clone)]
pub struct Secret {
    /// The decoded key, kept to print it back with [`Secret::to_whsec`].
    key: Box<[u8]>,
    /// HMAC state with the key already absorbed (inner and outer pads): cloning it per
    /// message saves two SHA-256 compressions on the hot path.
    mac: HmacSha256,
}

impl Secret {
    /// Parses `whsec_<base64>`, or bare base64 for compatibility with older configs.
    ///
    /// Surrounding whitespace (e.g. a trailing newline from a file) is ignored. Padding is
    /// optional. The key must decode to [`MIN_KEY_LEN`]`..=`[`MAX_KEY_LEN`] bytes.
    pub fn parse(s: &str) -> Result<Secret, SigningError> {
        let s = s.trim();
        let b64 = s.strip_prefix(WHSEC_PREFIX).unwrap_or(s);
        if b64.is_empty() {
            return Err(SigningError::Empty);
        }
        let key = SECRET_B64
            .decode(b64)
            .map_err(SigningError::InvalidBase64)?;
        Self::from_bytes(&key)
    }

    /// Builds a secret from raw key bytes, with the same length bounds as [`Secret::parse`].
    pub fn from_bytes(key: &[u8]) -> Result<Secret, SigningError> {
        if key.len() < MIN_KEY_LEN {
            return Err(SigningError::TooShort { len: key.len() });
        }
        if key.len() > MAX_KEY_LEN {
            return Err(SigningError::TooLong { len: key.len() });
        }
        // HMAC accepts keys of any length, so this cannot fail.
        let mac = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
        Ok(Secret {
            key: key.into(),
            mac,
        })
    }

    /// A fresh random key of [`GENERATED_KEY_LEN`] bytes from the thread-local CSPRNG.
    pub fn generate() -> Secret {
        let mut key = [0u8; GENERATED_KEY_LEN];
        rand::rng().fill_bytes(&mut key);
        Self::from_bytes(&key).expect("generated key length is within bounds")
    }

    /// The textual form: `"whsec_"` followed by standard (padded) base64.
    pub fn to_whsec(&self) -> String {
        let mut out = String::with_capacity(WHSEC_PREFIX.len() + self.key.len().div_ceil(3) * 4);
        out.push_str(WHSEC_PREFIX);
        STANDARD.encode_string(&self.key, &mut out);
        out
    }

    /// A copy of the keyed HMAC state, ready for the message.
    pub(crate) fn mac(&self) -> HmacSha256 {
        self.mac.clone()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTOR: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn parses_whsec_and_round_trips() {
        let s = Secret::parse(VECTOR).unwrap();
        assert_eq!(s.to_whsec(), VECTOR);
    }

    #[test]
    fn accepts_bare_base64_unpadded_and_whitespace() {
        let bare = Secret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(bare.to_whsec(), VECTOR);
        let padded = Secret::from_bytes(&[7u8; 17]).unwrap().to_whsec();
        assert!(padded.ends_with('='));
        let unpadded = padded.trim_end_matches('=');
        assert_eq!(Secret::parse(unpadded).unwrap().to_whsec(), padded);
        assert_eq!(
            Secret::parse(&format!("  {VECTOR}\n")).unwrap().to_whsec(),
            VECTOR
        );
    }

    #[test]
    fn rejects_bad_secrets_with_clear_errors() {
        assert_eq!(Secret::parse("").unwrap_err(), SigningError::Empty);
        assert_eq!(Secret::parse("whsec_").unwrap_err(), SigningError::Empty);
        let err = Secret::parse("whsec_not*base64!").unwrap_err();
        assert!(matches!(err, SigningError::InvalidBase64(_)));
        assert!(err.to_string().contains("not valid base64"), "{err}");
        let err = Secret::parse("whsec_abcd").unwrap_err();
        assert_eq!(err, SigningError::TooShort { len: 3 });
        assert!(err.to_string().contains("at least 16"), "{err}");
        let long = STANDARD.encode([1u8; 65]);
        assert_eq!(
            Secret::parse(&long).unwrap_err(),
            SigningError::TooLong { len: 65 }
        );
        assert!(Secret::from_bytes(&[1u8; 64]).is_ok());
        assert!(Secret::from_bytes(&[1u8; 16]).is_ok());
    }

    #[test]
    fn debug_hides_the_key() {
        let s = Secret::parse(VECTOR).unwrap();
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(format!("{s:#?}"), "Secret(***)");
    }

    #[test]
    fn generate_makes_distinct_24_byte_keys() {
        let a = Secret::generate();
        let b = Secret::generate();
        assert_eq!(a.key.len(), GENERATED_KEY_LEN);
        assert_ne!(a.to_whsec(), b.to_whsec());
        assert_eq!(
            Secret::parse(&a.to_whsec()).unwrap().to_whsec(),
            a.to_whsec()
        );
    }
}
