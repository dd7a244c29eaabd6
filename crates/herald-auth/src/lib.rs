//! Who may call Herald's gRPC API, and what they may do.
//!
//! - [`token`]: API tokens (`hrld_…`), generated once and configured only by
//!   their SHA-256 hash.
//! - [`scope`]: the scopes and which RPC needs which (pure tables).
//! - [`policy`]: the decision: credentials of one request → a [`Principal`]
//!   or `UNAUTHENTICATED` / `PERMISSION_DENIED`. No I/O.
//! - [`limit`]: per-credential publish rate limits.
//! - [`layer`]: the tower layer that applies the policy to every request
//!   before tonic routes it, and hands the principal to the services.
#![forbid(unsafe_code)]

pub mod layer;
pub mod limit;
pub mod policy;
pub mod scope;
pub mod token;

pub use layer::AuthLayer;
pub use policy::{Authenticator, Principal};
pub use scope::{Scope, Scopes};
