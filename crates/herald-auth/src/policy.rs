//! The authentication decision, apart from any I/O: a request's path and
//! `authorization` header in, a [`Principal`] or a gRPC status out.
//!
//! Both refusals are decided before any service runs, so neither can say
//! whether the resource a request names exists.

use std::collections::HashMap;
use std::sync::Arc;

use herald_core::config::AuthConfig;
use rustls_pki_types::CertificateDer;
use sha2::{Digest as _, Sha256};
use tonic::Status;

use crate::scope::{required, Access, Scopes};
use crate::token::TokenHash;

/// Who is calling: a configured token's name and scopes.
#[derive(Debug)]
pub struct Principal {
    /// The token's name from the config (`billing`), or `anonymous` when
    /// authentication is disabled.
    pub name: String,
    /// What it may do.
    pub scopes: Scopes,
    /// Its publish budget, shared by every request it makes.
    pub publish_limit: Option<crate::limit::PublishLimit>,
}

impl Principal {
    /// The caller when authentication is disabled: may do everything.
    pub fn anonymous() -> Self {
        Principal {
            name: ANONYMOUS.into(),
            scopes: Scopes::all(),
            publish_limit: None,
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

/// How a client certificate is recognised.
#[derive(Debug, Clone)]
enum CertMatch {
    /// One of its subject alternative names is exactly this DNS name
    /// (lower-cased; a wildcard SAN does not match).
    Dns(String),
    /// Its DER encoding hashes to this.
    Fingerprint([u8; 32]),
}

/// Checks every request against the configured tokens and client certificates.
#[derive(Debug, Clone)]
pub struct Authenticator {
    /// `None` = authentication disabled.
    tokens: Option<HashMap<TokenHash, Arc<Principal>>>,
    /// `[[auth.clients]]`, in config order (the first match wins).
    clients: Vec<(CertMatch, Arc<Principal>)>,
    anonymous: Arc<Principal>,
}

impl Authenticator {
    /// Builds the checker from `[auth]`; `mtls` says whether the server
    /// verifies client certificates (`grpc.tls.client_ca_file`). Refuses an
    /// API with no way in unless `auth.disabled` says so explicitly.
    pub fn from_config(cfg: &AuthConfig, mtls: bool) -> Result<Self, AuthConfigError> {
        let anonymous = Arc::new(Principal::anonymous());
        if cfg.disabled {
            return Ok(Self {
                tokens: None,
                clients: Vec::new(),
                anonymous,
            });
        }
        if !cfg.clients.is_empty() && !mtls {
            return Err(AuthConfigError {
                key: "auth.clients".into(),
                message: "client certificates need grpc.tls with client_ca_file (the CA they must chain to)".into(),
            });
        }
        if cfg.tokens.is_empty() && cfg.clients.is_empty() {
            return Err(AuthConfigError {
                key: "auth.tokens".into(),
                message: "the gRPC API needs at least one API token: create one with `herald token create --name NAME --scopes publish,...` and add the [[auth.tokens]] entry it prints, or set auth.disabled = true on a network where every caller is trusted".into(),
            });
        }
        let mut tokens = HashMap::new();
        let mut names = std::collections::HashSet::new();
        let mut clients = Vec::new();
        for (i, c) in cfg.clients.iter().enumerate() {
            let bad = |field: &str, message: String| AuthConfigError {
                key: format!("auth.clients[{i}].{field}"),
                message,
            };
            let principal = principal(&c.name, &c.scopes, &mut names)
                .map_err(|(field, message)| bad(field, message))?
                .with_limit(c.publish_per_second, c.publish_burst);
            let matcher = match (&c.dns_name, &c.cert_sha256) {
                (Some(dns), None) => {
                    let ok = !dns.is_empty()
                        && dns.len() <= 253
                        && dns
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
                    if !ok {
                        return Err(bad(
                            "dns_name",
                            format!("{dns:?} is not a DNS name (letters, digits, '-' and '.'; no wildcards)"),
                        ));
                    }
                    CertMatch::Dns(dns.to_ascii_lowercase())
                }
                (None, Some(fp)) => CertMatch::Fingerprint(
                    TokenHash::parse(fp)
                        .map_err(|_| bad("cert_sha256", "expected \"sha256:\" and 64 hex digits (the SHA-256 of the certificate's DER)".into()))?
                        .0,
                ),
                _ => {
                    return Err(AuthConfigError {
                        key: format!("auth.clients[{i}]"),
                        message: "set exactly one of dns_name and cert_sha256".into(),
                    })
                }
            };
            clients.push((matcher, Arc::new(principal)));
        }
        for (i, t) in cfg.tokens.iter().enumerate() {
            let bad = |field: &str, message: String| AuthConfigError {
                key: format!("auth.tokens[{i}].{field}"),
                message,
            };
            let principal = principal(&t.name, &t.scopes, &mut names)
                .map_err(|(field, message)| bad(field, message))?
                .with_limit(t.publish_per_second, t.publish_burst);
            let principal = Arc::new(principal);
            let hash = TokenHash::parse(&t.hash).map_err(|e| bad("hash", e.to_string()))?;
            if tokens.insert(hash, principal).is_some() {
                return Err(bad("hash", "the same token is configured twice".into()));
            }
        }
        Ok(Self {
            tokens: Some(tokens),
            clients,
            anonymous,
        })
    }

    /// Whether every request is let through.
    pub fn is_disabled(&self) -> bool {
        self.tokens.is_none()
    }

    /// The decision for one request: `Ok(None)` for an open path.
    /// `client_cert` is the end-entity certificate a TLS client presented
    /// (already verified against the client CA by the TLS layer). A token,
    /// when sent, takes precedence over the certificate.
    pub fn authorize(
        &self,
        path: &str,
        authorization: Option<&[u8]>,
        client_cert: Option<&CertificateDer<'_>>,
    ) -> Result<Option<Arc<Principal>>, Status> {
        let Access::Needs(scope) = required(path) else {
            return Ok(None);
        };
        let Some(tokens) = &self.tokens else {
            return Ok(Some(self.anonymous.clone()));
        };
        let principal = match (authorization, client_cert) {
            (Some(_), _) | (None, None) => bearer(authorization).and_then(|t| tokens.get(&TokenHash::of(t))),
            (None, Some(cert)) => self.client(cert),
        }
        .ok_or_else(|| {
            Status::unauthenticated(
                "missing or invalid API token: send the header `authorization: Bearer <token>` (the CLI reads HERALD_TOKEN or --token-file), or a client certificate listed in [[auth.clients]]",
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

impl Authenticator {
    /// The principal a verified client certificate maps to, if any.
    fn client(&self, cert: &CertificateDer<'_>) -> Option<&Arc<Principal>> {
        let names = san_dns_names(cert.as_ref());
        let fingerprint: [u8; 32] = Sha256::digest(cert.as_ref()).into();
        self.clients.iter().find_map(|(m, p)| {
            let hit = match m {
                CertMatch::Fingerprint(f) => *f == fingerprint,
                CertMatch::Dns(name) => names.iter().any(|n| n == name),
            };
            hit.then_some(p)
        })
    }
}

/// The DNS names among a certificate's subject alternative names,
/// lower-cased; wildcards are kept as written, so they never equal a
/// configured name. Empty when the certificate does not parse.
fn san_dns_names(der: &[u8]) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|g| match g {
            GeneralName::DNSName(n) => Some(n.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

/// A checked principal from a config entry's name and scopes; errors are
/// `(field, message)`.
fn principal<'a>(
    name: &'a str,
    scopes: &[String],
    names: &mut std::collections::HashSet<&'a str>,
) -> Result<Principal, (&'static str, String)> {
    if name.trim().is_empty() {
        return Err(("name", "is required (who holds the credential)".into()));
    }
    if name.chars().any(char::is_control) || name == ANONYMOUS {
        return Err((
            "name",
            format!("must have no control characters and not be {ANONYMOUS:?}"),
        ));
    }
    if !names.insert(name) {
        return Err(("name", format!("{name:?} is used by two credentials")));
    }
    let scopes = Scopes::parse(scopes).map_err(|e| ("scopes", e.to_string()))?;
    if scopes.is_empty() {
        return Err(("scopes", "must name at least one scope".into()));
    }
    Ok(Principal {
        name: name.to_string(),
        scopes,
        publish_limit: None,
    })
}

impl Principal {
    fn with_limit(mut self, per_second: u32, burst: u32) -> Self {
        self.publish_limit = crate::limit::PublishLimit::new(per_second, burst);
        self
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
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    const PUBLISH: &str = "/herald.v1.EventService/Publish";
    const CREATE: &str = "/herald.v1.EndpointService/CreateEndpoint";

    #[test]
    fn tokens_scopes_and_open_paths() {
        let (pub_token, pub_hash) = token::generate();
        let (admin_token, admin_hash) = token::generate();
        let auth = Authenticator::from_config(
            &config(&[
                ("billing", &pub_hash.to_string(), &["publish"]),
                ("ops", &admin_hash.to_string(), &["admin"]),
            ]),
            false,
        )
        .unwrap();
        let header = |t: &str| format!("Bearer {t}");

        let p = auth
            .authorize(PUBLISH, Some(header(&pub_token).as_bytes()), None)
            .unwrap()
            .unwrap();
        assert_eq!(p.name, "billing");

        let denied = auth
            .authorize(CREATE, Some(header(&pub_token).as_bytes()), None)
            .unwrap_err();
        assert_eq!(denied.code(), Code::PermissionDenied);
        assert!(
            denied.message().contains("endpoints:write"),
            "{}",
            denied.message()
        );
        assert!(!denied.message().contains(&pub_token));

        assert!(auth
            .authorize(CREATE, Some(header(&admin_token).as_bytes()), None)
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
            let e = auth.authorize(PUBLISH, bad, None).unwrap_err();
            assert_eq!(e.code(), Code::Unauthenticated, "{bad:?}");
        }
        // Case-insensitive scheme, surrounding spaces.
        assert!(auth
            .authorize(
                PUBLISH,
                Some(format!("  bearer   {pub_token} ").as_bytes()),
                None
            )
            .is_ok());
        // Health and reflection need nothing.
        assert!(auth
            .authorize("/grpc.health.v1.Health/Check", None, None)
            .unwrap()
            .is_none());
    }

    #[test]
    fn disabled_lets_everyone_in_as_anonymous() {
        let auth = Authenticator::from_config(
            &AuthConfig {
                disabled: true,
                ..Default::default()
            },
            false,
        )
        .unwrap();
        assert!(auth.is_disabled());
        let p = auth.authorize(CREATE, None, None).unwrap().unwrap();
        assert_eq!(p.name, "anonymous");
    }

    fn cert(names: &[&str]) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn client_certificates_map_by_dns_name_or_fingerprint() {
        let ops = cert(&["ops.herald.internal"]);
        let pinned = cert(&["anything.example"]);
        let stranger = cert(&["stranger.example"]);
        let wildcard = cert(&["*.herald.internal"]);
        let upper = cert(&["OPS.Herald.Internal"]);
        let fp = format!(
            "sha256:{}",
            Sha256::digest(pinned.as_ref())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let cfg = AuthConfig {
            clients: vec![
                herald_core::config::ClientCertConfig {
                    name: "ops".into(),
                    dns_name: Some("ops.herald.internal".into()),
                    scopes: vec!["admin".into()],
                    ..Default::default()
                },
                herald_core::config::ClientCertConfig {
                    name: "pinned".into(),
                    cert_sha256: Some(fp),
                    scopes: vec!["publish".into()],
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        assert_eq!(
            Authenticator::from_config(&cfg, false).unwrap_err().key,
            "auth.clients",
            "client certificates need a client CA"
        );
        let auth = Authenticator::from_config(&cfg, true).unwrap();
        let p = auth.authorize(CREATE, None, Some(&ops)).unwrap().unwrap();
        assert_eq!(p.name, "ops");
        let p = auth
            .authorize(PUBLISH, None, Some(&pinned))
            .unwrap()
            .unwrap();
        assert_eq!(p.name, "pinned");
        let denied = auth.authorize(CREATE, None, Some(&pinned)).unwrap_err();
        assert_eq!(denied.code(), Code::PermissionDenied);
        let e = auth.authorize(PUBLISH, None, Some(&stranger)).unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated);
        // A wildcard certificate is not the configured name.
        let e = auth.authorize(PUBLISH, None, Some(&wildcard)).unwrap_err();
        assert_eq!(
            e.code(),
            Code::Unauthenticated,
            "a wildcard SAN must not match"
        );
        // DNS names compare without regard to case.
        assert_eq!(
            auth.authorize(CREATE, None, Some(&upper))
                .unwrap()
                .unwrap()
                .name,
            "ops"
        );
        // Garbage in place of a certificate is refused, never a panic.
        let junk = CertificateDer::from(vec![0x30, 0x03, 0x01, 0x02]);
        assert_eq!(
            auth.authorize(PUBLISH, None, Some(&junk))
                .unwrap_err()
                .code(),
            Code::Unauthenticated
        );
        // A wrong token is not rescued by a good certificate.
        let e = auth
            .authorize(PUBLISH, Some(b"Bearer hrld_nope"), Some(&pinned))
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated);
    }

    #[test]
    fn bad_configs_name_the_key() {
        let err = |c: AuthConfig| Authenticator::from_config(&c, false).unwrap_err();
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
