//! API tokens: `hrld_` followed by 32 random bytes in URL-safe base64.
//!
//! A node is configured with `sha256:<hex>` of each token, never the token.
//! A single SHA-256 is enough here (no password hash): a token carries 256
//! bits of randomness, so its hash cannot be reversed by guessing, and a
//! fast hash keeps the per-request check to about a microsecond.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

/// Prefix of every token Herald generates (lets secret scanners find them).
pub const TOKEN_PREFIX: &str = "hrld_";
/// Prefix of a configured token hash.
pub const HASH_PREFIX: &str = "sha256:";
/// Random bytes in a generated token.
const TOKEN_BYTES: usize = 32;

/// The SHA-256 of a token.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    /// The hash of `token` as presented by a caller.
    pub fn of(token: &str) -> Self {
        TokenHash(Sha256::digest(token.as_bytes()).into())
    }

    /// Parses `sha256:<64 hex digits>`.
    pub fn parse(text: &str) -> Result<Self, BadHash> {
        let hex = text.trim().strip_prefix(HASH_PREFIX).ok_or(BadHash)?;
        if hex.len() != 64 || !hex.is_ascii() {
            return Err(BadHash);
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| BadHash)?;
        }
        Ok(TokenHash(out))
    }
}

impl fmt::Display for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(HASH_PREFIX)?;
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({self})")
    }
}

/// A configured hash that is not `sha256:` and 64 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("expected \"sha256:\" followed by 64 hex digits, as `herald token create` prints it (never the token itself)")]
pub struct BadHash;

/// A new random token and its hash.
pub fn generate() -> (String, TokenHash) {
    let mut bytes = [0u8; TOKEN_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    let token = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let hash = TokenHash::of(&token);
    (token, hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generated_tokens_are_distinct_and_hash_as_printed() {
        let (a, ha) = generate();
        let (b, hb) = generate();
        assert_ne!(a, b);
        assert!(a.starts_with("hrld_") && a.len() == 5 + 43, "{a}");
        assert_eq!(TokenHash::of(&a), ha);
        assert_ne!(ha, hb);
        assert_eq!(TokenHash::parse(&ha.to_string()).unwrap(), ha);
    }

    #[test]
    fn known_vector() {
        // sha256("abc")
        assert_eq!(
            TokenHash::of("abc").to_string(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn bad_hashes_are_refused() {
        for bad in [
            "",
            "sha256:",
            "md5:00",
            "hrld_abc",
            "sha256:zz",
            &format!("sha256:{}", "é".repeat(32)),
        ] {
            assert_eq!(TokenHash::parse(bad), Err(BadHash), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,80}") {
            let _ = TokenHash::parse(&s);
        }
    }
}
