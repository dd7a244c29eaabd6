//! An endpoint prepared for delivery: parsed secrets as a signer and custom
//! headers as typed header values, built once per registry change instead of
//! once per attempt.

use std::sync::Arc;

use herald_core::schedule::RetryPolicy;
use herald_core::Endpoint;
use herald_signing::{Secret, Signer};
use http::{HeaderName, HeaderValue};

/// Everything an attempt needs from the endpoint.
pub struct Prepared {
    /// The registry's endpoint.
    pub endpoint: Arc<Endpoint>,
    /// Signs with every current secret.
    pub signer: Signer,
    /// Signs with the newest secret only: used once the previous secret's
    /// grace period (`previous_secret_expires_at_ms`) has ended.
    pub newest_only: Option<Signer>,
    /// Custom headers, validated.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The node's retry policy with this endpoint's overrides.
    pub policy: RetryPolicy,
}

impl std::fmt::Debug for Prepared {
    /// The endpoint (whose `Debug` redacts secrets); never the signer.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("endpoint", &self.endpoint)
            .field("headers", &self.headers.len())
            .finish_non_exhaustive()
    }
}

impl Prepared {
    /// Prepares `endpoint`; secrets or headers that do not parse (the API
    /// validates them, so only a hand-written record could) are left out
    /// with an error log.
    pub fn new(endpoint: Arc<Endpoint>, base: &RetryPolicy) -> Self {
        let secrets = endpoint
            .secrets
            .iter()
            .filter_map(|s| match Secret::parse(s) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::error!(endpoint = %endpoint.id, error = %e, "unusable signing secret in registry");
                    None
                }
            })
            .collect::<Vec<Secret>>();
        let headers = endpoint
            .headers
            .iter()
            .filter_map(|(k, v)| {
                match (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
                    (Ok(k), Ok(v)) => Some((k, v)),
                    _ => {
                        tracing::error!(endpoint = %endpoint.id, header = %k, "unusable custom header in registry");
                        None
                    }
                }
            })
            .collect();
        let newest_only = (endpoint.previous_secret_expires_at_ms > 0)
            .then(|| Signer::new(secrets.iter().take(1).cloned().collect()));
        Self {
            signer: Signer::new(secrets),
            newest_only,
            headers,
            policy: endpoint.retry_policy(base),
            endpoint,
        }
    }
}

impl Prepared {
    /// The signer for an attempt at `now_ms`: the previous secret signs
    /// beside the newest until its grace period ends.
    pub fn signer_at(&self, now_ms: i64) -> &Signer {
        match &self.newest_only {
            Some(newest) if now_ms >= self.endpoint.previous_secret_expires_at_ms => newest,
            _ => &self.signer,
        }
    }
}
