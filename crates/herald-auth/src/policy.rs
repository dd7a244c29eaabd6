//! The authentication decision, apart from any I/O: a request's path and
//! `authorization` header in, a [`Principal`] or a gRPC status out.
//!
//! Both refusals are decided before any service runs, so neither can say
//! whether the resource a request names exists.

use std::collections::HashMap;
use std::sync::Arc;

use herald_core::config::AuthConfig;
use tonic::Status;

use crate::scope::{required, Access, Scopes};
use crate::token::TokenHash;

/// Who is calling: a configured token's name and scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's name from the config (`billing`), or `anonymous` when
    /// authentication is disabled.
    pub name: String,
    /// What it may do.
    pub scopes: Scopes,
}

impl Principal {
    /// The caller when authentication is disabled: may do everything.
    pub fn anonymous() -> Self {
        Principal {
            name: ANONYMOUS.into(),
            scopes: Scopes::all(),
        }
    }

    /// Whether this is the caller of a node with authentication disabled.
    pub fn is_anonymous(&self) -> bool {
        self.name == ANONYMOUS
    }
}

/// The name of [`Principal::anonymous`]; no configured token may use it.
const ANONYMOUS: &str = "anonymous";

/// A configuration that cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config key `{key}`: {message}")]
pub struct AuthConfigError {
    /// The offending key (`auth.tokens[1].hash`).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// Checks every request against the configured tokens.
#[derive(Debug, Clone)]
pub struct Authenticator {
    /// `None` = authentication disabled.
    tokens: Option<HashMap<TokenHash, Arc<Principal>>>,
    anonymous: Arc<Principal>,
}

impl Authenticator {
    /// Builds the checker from `[auth]`. Refuses an API with no way in
    /// unless `auth.disabled` says so explicitly.
    pub fn from_config(cfg: &AuthConfig) -> Result<Self, AuthConfigError> {
        let anonymous = Arc::new(Principal::anonymous());
        if cfg.disabled {
            return Ok(Self {
                tokens: None,
                anonymous,
            });
        }
        if cfg.tokens.is_empty() {
            return Err(AuthConfigError {
                key: "auth.tokens".into(),
                message: "the gRPC API needs at least one API token: create one with `herald token create --name NAME --scopes publish,...` and add the [[auth.tokens]] entry it prints, or set auth.disabled = true on a network where every caller is trusted".into(),
            });
        }
        let mut tokens = HashMap::new();
        let mut names = std::collections::HashSet::new();
        for (i, t) in cfg.tokens.iter().enumerate() {
            let key = |field: &str| format!("auth.tokens[{i}].{field}");
            let bad = |field: &str, message: String| AuthConfigError {
                key: key(field),
                message,
            };
            if t.name.trim().is_empty() {
                return Err(bad("name", "is required (who holds the token)".into()));
            }
            if t.name.chars().any(char::is_control) || t.name == ANONYMOUS {
                return Err(bad(
                    "name",
                    format!("must have no control characters and not be {ANONYMOUS:?}"),
                ));
            }
            if !names.insert(t.name.as_str()) {
                return Err(bad("name", format!("{:?} is used by two tokens", t.name)));
            }
            let hash = TokenHash::parse(&t.hash).map_err(|e| bad("hash", e.to_string()))?;
            let scopes = Scopes::parse(&t.scopes).map_err(|e| bad("scopes", e.to_string()))?;
            if scopes.is_empty() {
                return Err(bad("scopes", "must name at least one scope".into()));
            }
            let principal = Arc::new(Principal {
                name: t.name.clone(),
                scopes,
            });
            if tokens.insert(hash, principal).is_some() {
                return Err(bad("hash", "the same token is configured twice".into()));
            }
        }
        Ok(Self {
            tokens: Some(tokens),
            anonymous,
        })
    }

    /// Whether every request is let through.
    pub fn is_disabled(&self) -> bool {
        self.tokens.is_none()
    }

    /// The decision for one request: `Ok(None)` for an open path.
    pub fn authorize(
        &self,
        path: &str,
        authorization: Option<&[u8]>,
    ) -> Result<Option<Arc<Principal>>, Status> {
        let Access::Needs(scope) = required(path) else {
            return Ok(None);
        };
        let Some(tokens) = &self.tokens else {
            return Ok(Some(self.anonymous.clone()));
        };
        let principal = bearer(authorization)
            .and_then(|t| tokens.get(&TokenHash::of(t)))
            .ok_or_else(|| {
                Status::unauthenticated(
                    "missing or invalid API token: send the header `authorization: Bearer <token>` (the CLI reads HERALD_TOKEN or --token-file)",
                )
            })?;
        if !principal.scopes.allows(scope) {
            let method = path
                .trim_start_matches('/')
                .trim_start_matches("herald.v1.");
            return Err(Status::permission_denied(format!(
                "token {:?} lacks the scope `{scope}` that {method} needs (it has: {})",
                principal.name, principal.scopes
            )));
        }
        Ok(Some(principal.clone()))
    }
}

/// The token of an `authorization: Bearer <token>` header value.
fn bearer(value: Option<&[u8]>) -> Option<&str> {
    let text = std::str::from_utf8(value?).ok()?.trim();
    let (scheme, token) = text.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token;
    use herald_core::config::TokenConfig;
    use tonic::Code;

    fn config(entries: &[(&str, &str, &[&str])]) -> AuthConfig {
        AuthConfig {
            disabled: false,
            tokens: entries
                .iter()
                .map(|(name, hash, scopes)| TokenConfig {
                    name: name.to_string(),
                    hash: hash.to_string(),
                    scopes: scopes.iter().map(|s| s.to_string()).collect(),
                })
                .collect(),
        }
    }

    const PUBLISH: &str = "/herald.v1.EventService/Publish";
    const CREATE: &str = "/herald.v1.EndpointService/CreateEndpoint";

    #[test]
    fn tokens_scopes_and_open_paths() {
        let (pub_token, pub_hash) = token::generate();
        let (admin_token, admin_hash) = token::generate();
        let auth = Authenticator::from_config(&config(&[
            ("billing", &pub_hash.to_string(), &["publish"]),
            ("ops", &admin_hash.to_string(), &["admin"]),
        ]))
        .unwrap();
        let header = |t: &str| format!("Bearer {t}");

        let p = auth
            .authorize(PUBLISH, Some(header(&pub_token).as_bytes()))
            .unwrap()
            .unwrap();
        assert_eq!(p.name, "billing");

        let denied = auth
            .authorize(CREATE, Some(header(&pub_token).as_bytes()))
            .unwrap_err();
        assert_eq!(denied.code(), Code::PermissionDenied);
        assert!(
            denied.message().contains("endpoints:write"),
            "{}",
            denied.message()
        );
        assert!(!denied.message().contains(&pub_token));

        assert!(auth
            .authorize(CREATE, Some(header(&admin_token).as_bytes()))
            .is_ok());

        for bad in [
            None,
            Some("".as_bytes()),
            Some(b"Bearer".as_slice()),
            Some(b"Bearer ".as_slice()),
            Some(b"Basic abc".as_slice()),
            Some(b"Bearer hrld_wrong".as_slice()),
            Some(&[0xff, 0xfe][..]),
        ] {
            let e = auth.authorize(PUBLISH, bad).unwrap_err();
            assert_eq!(e.code(), Code::Unauthenticated, "{bad:?}");
        }
        // Case-insensitive scheme, surrounding spaces.
        assert!(auth
            .authorize(PUBLISH, Some(format!("  bearer   {pub_token} ").as_bytes()))
            .is_ok());
        // Health and reflection need nothing.
        assert_eq!(
            auth.authorize("/grpc.health.v1.Health/Check", None)
                .unwrap(),
            None
        );
    }

    #[test]
    fn disabled_lets_everyone_in_as_anonymous() {
        let auth = Authenticator::from_config(&AuthConfig {
            disabled: true,
            tokens: vec![],
        })
        .unwrap();
        assert!(auth.is_disabled());
        let p = auth.authorize(CREATE, None).unwrap().unwrap();
        assert_eq!(p.name, "anonymous");
    }

    #[test]
    fn bad_configs_name_the_key() {
        let err = |c: AuthConfig| Authenticator::from_config(&c).unwrap_err();
        assert_eq!(err(config(&[])).key, "auth.tokens");
        let (_, h) = token::generate();
        let h = h.to_string();
        assert_eq!(
            err(config(&[("", &h, &["admin"])])).key,
            "auth.tokens[0].name"
        );
        assert_eq!(
            err(config(&[("a", "plain", &["admin"])])).key,
            "auth.tokens[0].hash"
        );
        let e = err(config(&[("a", &h, &["root"])]));
        assert_eq!(e.key, "auth.tokens[0].scopes");
        assert!(e.message.contains("\"root\""), "{}", e.message);
        assert_eq!(err(config(&[("a", &h, &[])])).key, "auth.tokens[0].scopes");
        assert_eq!(
            err(config(&[("a", &h, &["admin"]), ("a", &h, &["admin"])])).key,
            "auth.tokens[1].name"
        );
        assert_eq!(
            err(config(&[("a", &h, &["admin"]), ("b", &h, &["admin"])])).key,
            "auth.tokens[1].hash"
        );
    }
}
