//! Standard Webhooks signing and verification for Herald.
//!
//! This crate owns the `webhook-signature` maths and nothing else: no HTTP, no clock, no
//! I/O. Every Standard Webhooks / Svix verification library accepts what it produces.
//!
//! # Layout
//!
//! - [`secret`]: [`Secret`], the `whsec_<base64>` key (parse, generate, print safely).
//! - [`mod@sign`]: [`sign()`] one signature, and [`Signer`] for the `webhook-signature` header
//!   (one `v1,<sig>` per secret, so receivers keep working during secret rotation).
//! - [`verify`]: [`Verifier`], the receiver side: timestamp tolerance plus a
//!   constant-time comparison against every configured secret.
//!
//! The signed content is `"{webhook-id}.{webhook-timestamp}.{body}"` and the signature is
//! `base64(HMAC-SHA256(key, content))`, prefixed with the version tag `v1,`.
//!
//! Callers pass the current time in as unix seconds, so tests never depend on the clock.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod secret;
pub mod sign;
pub mod verify;

pub use secret::{Secret, SigningError};
pub use sign::{sign, Signer, SIGNATURE_LEN};
pub use verify::{Verifier, VerifyError, DEFAULT_TOLERANCE};

/// HMAC-SHA256, the only MAC Standard Webhooks `v1` uses.
pub(crate) type HmacSha256 = hmac::Hmac<sha2::Sha256>;
