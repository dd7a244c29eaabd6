//! The SSRF guard where names become addresses: resolving a delivery target and keeping
//! only the addresses the [`EgressPolicy`] allows, for the connector (at connect time)
//! and for [`check_url`] (when an endpoint is created or updated).
//!
//! Owns name resolution for deliveries. Host names go through the system resolver
//! (`getaddrinfo`, on tokio's blocking pool), which also turns the odd numeric forms
//! (`2130706433`, `0x7f.1`, `017700000001`) into real addresses, so they are judged like
//! any other name. IP-literal hosts are judged without resolving.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::dns::Name;

use crate::egress::{EgressPolicy, Refusal};

/// A boxed error, as connectors and resolvers report them.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A delivery target the egress policy refuses: the host as written in the URL and the
/// address that was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetRefused {
    /// The URL's host (without IPv6 brackets).
    pub host: String,
    /// The refused address and why.
    pub refusal: Refusal,
}

impl fmt::Display for TargetRefused {
    /// `127.0.0.1 is a loopback address; …`, or for a name, `localhost resolves to
    /// 127.0.0.1, a loopback address; …`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if host_ip(&self.host) == Some(self.refusal.addr) {
            write!(f, "{}", self.refusal)
        } else {
            write!(
                f,
                "{} resolves to {}, {}; {}",
                self.host,
                self.refusal.addr,
                self.refusal.reason(),
                self.refusal.hint()
            )
        }
    }
}

impl std::error::Error for TargetRefused {}

/// Why [`check_url`] rejected an endpoint URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlCheckError {
    /// The URL cannot be delivered to: no host, or a scheme other than `http`/`https`.
    #[error("{0}")]
    Invalid(String),
    /// The host is, or resolves to, an address the egress policy refuses.
    #[error("{0}")]
    Refused(TargetRefused),
    /// The host name does not resolve (now). Whether that rejects the endpoint is the
    /// caller's choice: DNS may be set up after the endpoint is registered.
    #[error("{host} does not resolve: {reason}")]
    Unresolvable {
        /// The URL's host.
        host: String,
        /// The resolver's answer.
        reason: String,
    },
}

/// Checks an endpoint URL against `policy` the way deliveries will: resolves the host
/// (unless it is an IP literal) and requires **every** address to be allowed. Stricter
/// than delivery time, where refused addresses are skipped if others remain, so a name
/// that mixes public and private addresses is rejected up front with a clear error.
///
/// Resolution uses the system resolver and has no time bound of its own; wrap the call
/// in a timeout if the caller needs one.
pub async fn check_url(policy: &EgressPolicy, url: &Uri) -> Result<(), UrlCheckError> {
    match url.scheme_str() {
        Some("http") | Some("https") => {}
        _ => {
            return Err(UrlCheckError::Invalid(format!(
                "endpoint URL {url} must start with http:// or https://"
            )))
        }
    }
    let Some(host) = url.host().map(strip_brackets).filter(|h| !h.is_empty()) else {
        return Err(UrlCheckError::Invalid(format!(
            "endpoint URL {url} has no host"
        )));
    };
    let refused = |refusal| {
        UrlCheckError::Refused(TargetRefused {
            host: host.to_owned(),
            refusal,
        })
    };
    if let Some(ip) = host_ip(host) {
        return policy.check(ip).map_err(refused);
    }
    let addrs = lookup(host)
        .await
        .map_err(|err| UrlCheckError::Unresolvable {
            host: host.to_owned(),
            reason: err.to_string(),
        })?;
    for addr in addrs {
        policy.check(addr.ip()).map_err(refused)?;
    }
    Ok(())
}

/// The addresses of `host` that `policy` allows, with `port`. An IP literal is judged as
/// is; a name is resolved and the refused addresses are dropped. Fails with
/// [`TargetRefused`] (naming the first refused address) when none is left.
pub(crate) async fn allowed_addrs(
    policy: &EgressPolicy,
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, BoxError> {
    let host = strip_brackets(host);
    if let Some(ip) = host_ip(host) {
        return match policy.check(ip) {
            Ok(()) => Ok(vec![SocketAddr::new(ip, port)]),
            Err(refusal) => Err(Box::new(TargetRefused {
                host: host.to_owned(),
                refusal,
            })),
        };
    }
    let resolved = lookup(host).await?;
    let mut allowed = keep_allowed(policy, host, resolved)?;
    for addr in &mut allowed {
        addr.set_port(port);
    }
    Ok(allowed)
}

/// Keeps the allowed addresses, in resolver order; refuses if none is left (an empty
/// answer stays empty: `lookup` never gives one).
pub(crate) fn keep_allowed(
    policy: &EgressPolicy,
    host: &str,
    resolved: impl IntoIterator<Item = SocketAddr>,
) -> Result<Vec<SocketAddr>, TargetRefused> {
    let mut first_refusal = None;
    let mut allowed = Vec::new();
    for addr in resolved {
        match policy.check(addr.ip()) {
            Ok(()) => allowed.push(addr),
            Err(refusal) => {
                tracing::debug!(host, %refusal, "skipping a refused address");
                first_refusal.get_or_insert(refusal);
            }
        }
    }
    match first_refusal {
        Some(refusal) if allowed.is_empty() => Err(TargetRefused {
            host: host.to_owned(),
            refusal,
        }),
        _ => Ok(allowed),
    }
}

/// Resolves `host` with the system resolver; an empty answer is an error.
async fn lookup(host: &str) -> io::Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, 0)).await?.collect();
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{host} has no addresses"),
        ));
    }
    Ok(addrs)
}

/// `host` without the brackets of an IPv6 literal.
pub(crate) fn strip_brackets(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// The address, if `host` (brackets stripped) is an IP literal in the strict forms hyper's
/// connector connects to without resolving (dotted-quad IPv4, RFC 4291 IPv6).
pub(crate) fn host_ip(host: &str) -> Option<IpAddr> {
    strip_brackets(host).parse().ok()
}

/// The resolver of the direct connector: the system resolver, filtered by the policy.
/// A [`tower_service::Service`] over hyper-util's [`Name`], as `HttpConnector` expects.
#[derive(Clone)]
pub(crate) struct GuardedResolver {
    pub(crate) policy: Arc<EgressPolicy>,
}

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = Arc::clone(&self.policy);
        Box::pin(async move {
            // The connector sets the port on every address it gets back.
            Ok(allowed_addrs(&policy, name.as_str(), 0).await?.into_iter())
        })
    }
}

impl fmt::Debug for GuardedResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedResolver")
            .field("policy", &self.policy)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::{AddressClass, Cidr};

    fn sock(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn mixed_answers_keep_only_allowed_addresses() {
        let policy = EgressPolicy::default();
        let got = keep_allowed(
            &policy,
            "mixed.example",
            [sock("10.0.0.1:0"), sock("93.184.216.34:0"), sock("[::1]:0")],
        )
        .unwrap();
        assert_eq!(got, [sock("93.184.216.34:0")]);

        let err = keep_allowed(
            &policy,
            "internal.example",
            [sock("10.0.0.1:0"), sock("[fd00::1]:0")],
        )
        .unwrap_err();
        assert_eq!(err.refusal.addr, sock("10.0.0.1:0").ip());
        assert_eq!(err.refusal.class, AddressClass::Private);
        assert_eq!(
            err.to_string(),
            "internal.example resolves to 10.0.0.1, a private address; allow it with \
             delivery.allow_cidrs"
        );

        let allow: Cidr = "10.0.0.0/8".parse().unwrap();
        let policy = EgressPolicy::new(vec![allow]);
        let got = keep_allowed(&policy, "x", [sock("10.0.0.1:0"), sock("[fd00::1]:0")]);
        assert_eq!(got.unwrap(), [sock("10.0.0.1:0")]);
    }

    #[test]
    fn literal_hosts_are_recognised_like_hyper_does() {
        assert_eq!(host_ip("127.0.0.1"), Some("127.0.0.1".parse().unwrap()));
        assert_eq!(host_ip("[::1]"), Some("::1".parse().unwrap()));
        assert_eq!(host_ip("::1"), Some("::1".parse().unwrap()));
        // Not literals to hyper: these go through the (guarded) resolver.
        for name in ["2130706433", "0x7f.1", "017700000001", "127.1", "localhost"] {
            assert_eq!(host_ip(name), None, "{name}");
        }
        let refused = TargetRefused {
            host: "127.0.0.1".into(),
            refusal: crate::egress::classify("127.0.0.1".parse().unwrap()).unwrap(),
        };
        assert_eq!(
            refused.to_string(),
            "127.0.0.1 is a loopback address; allow it with delivery.allow_cidrs"
        );
    }
}
