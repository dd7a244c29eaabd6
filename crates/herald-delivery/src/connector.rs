//! The TCP layer under TLS: [`EgressConnector`] connects to a delivery target only at an
//! address the egress policy allows, either directly or through an HTTP CONNECT tunnel
//! of the operator's egress proxy.
//!
//! Owns where connections go. Direct: IP-literal hosts are judged here (hyper's
//! `HttpConnector` does not resolve them), names go through the
//! [`GuardedResolver`](crate::guard::GuardedResolver), and the connected peer address is
//! checked once more as a backstop. Proxied: the target is resolved and judged here, and
//! the CONNECT request names the allowed *address*, not the host, so the proxy cannot
//! resolve it to something else (DNS rebinding); TLS still verifies the host name, which
//! the HTTPS layer above takes from the URL. The proxy's own address is trusted.

use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use http::uri::Scheme;
use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tower_service::Service;

use crate::config::DeliveryConfig;
use crate::egress::EgressPolicy;
use crate::error::DeliveryError;
use crate::guard::{allowed_addrs, host_ip, BoxError, GuardedResolver, TargetRefused};

/// The longest CONNECT answer accepted from the proxy.
const MAX_PROXY_ANSWER: usize = 8 * 1024;

/// Connects to allowed addresses only, directly or through the egress proxy.
#[derive(Clone)]
pub(crate) struct EgressConnector {
    policy: Arc<EgressPolicy>,
    direct: HttpConnector<GuardedResolver>,
    proxy: Option<Arc<Proxy>>,
}

impl EgressConnector {
    /// The connector for `cfg`; fails on an unusable proxy URL.
    pub(crate) fn new(cfg: &DeliveryConfig) -> Result<Self, DeliveryError> {
        let policy = Arc::new(cfg.egress.clone());
        let mut direct = HttpConnector::new_with_resolver(GuardedResolver {
            policy: Arc::clone(&policy),
        });
        configure(&mut direct, cfg.connect_timeout);
        let proxy = match &cfg.proxy {
            Some(uri) => Some(Arc::new(Proxy::new(uri, cfg.connect_timeout)?)),
            None => None,
        };
        Ok(EgressConnector {
            policy,
            direct,
            proxy,
        })
    }

    async fn connect(self, dst: Uri) -> Result<TokioIo<TcpStream>, BoxError> {
        let host = dst.host().ok_or("the URL has no host")?;
        match &self.proxy {
            Some(proxy) => {
                let port = dst.port_u16().unwrap_or(default_port(&dst));
                let targets = allowed_addrs(&self.policy, host, port).await?;
                proxy.tunnel(&targets).await
            }
            None => {
                let refused = |refusal| TargetRefused {
                    host: crate::guard::strip_brackets(host).to_owned(),
                    refusal,
                };
                if let Some(ip) = host_ip(host) {
                    self.policy.check(ip).map_err(refused)?;
                }
                let mut direct = self.direct.clone();
                poll_fn(|cx| direct.poll_ready(cx)).await?;
                let io = direct.call(dst.clone()).await?;
                // Backstop: whatever path led here, the peer must be allowed.
                let peer = io.inner().peer_addr()?;
                self.policy.check(peer.ip()).map_err(refused)?;
                Ok(io)
            }
        }
    }
}

impl Service<Uri> for EgressConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<TokioIo<TcpStream>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        Box::pin(self.clone().connect(dst))
    }
}

impl fmt::Debug for EgressConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EgressConnector")
            .field("policy", &self.policy)
            .field("proxy", &self.proxy.as_ref().map(|p| &p.shown))
            .finish()
    }
}

/// The TCP settings both connectors share.
fn configure<R>(connector: &mut HttpConnector<R>, connect_timeout: Duration) {
    // The HTTPS connector above decides per scheme; the TCP layer must accept `https://`.
    connector.enforce_http(false);
    connector.set_connect_timeout(Some(connect_timeout));
    connector.set_nodelay(true);
}

fn default_port(dst: &Uri) -> u16 {
    if dst.scheme() == Some(&Scheme::HTTPS) {
        443
    } else {
        80
    }
}

/// The operator's HTTP CONNECT proxy.
struct Proxy {
    /// `http://host:port/`, credentials removed: what the TCP connector dials.
    dial: Uri,
    /// The proxy URL for messages, password hidden.
    shown: String,
    /// `Basic …` from the URL's user info, if any.
    authorization: Option<String>,
    /// Reaches the proxy (system resolver: the proxy is trusted).
    connector: HttpConnector,
    /// Bound on the CONNECT exchange once connected.
    handshake_timeout: Duration,
}

impl Proxy {
    fn new(uri: &Uri, connect_timeout: Duration) -> Result<Proxy, DeliveryError> {
        let shown = redact(uri);
        let invalid = |reason: &str| DeliveryError::InvalidProxy {
            value: shown.clone(),
            reason: reason.to_owned(),
        };
        if uri.scheme() != Some(&Scheme::HTTP) {
            return Err(invalid(
                "the proxy URL must start with http:// (deliveries tunnel TLS through CONNECT)",
            ));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| invalid("the proxy URL has no host"))?;
        if uri.host().is_none_or(str::is_empty) {
            return Err(invalid("the proxy URL has no host"));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(invalid("the proxy URL must not have a path or query"));
        }
        let (userinfo, host_port) = match authority.as_str().rsplit_once('@') {
            Some((userinfo, host_port)) => (Some(userinfo), host_port),
            None => (None, authority.as_str()),
        };
        let authorization = userinfo
            .map(|info| {
                let decoded = percent_decode(info).ok_or_else(|| {
                    invalid("the proxy credentials are not valid percent-encoded UTF-8")
                })?;
                let token = base64::engine::general_purpose::STANDARD.encode(decoded);
                Ok::<_, DeliveryError>(format!("Basic {token}"))
            })
            .transpose()?;
        let dial = Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(host_port)
            .path_and_query("/")
            .build()
            .map_err(|_| invalid("the proxy host is not valid"))?;
        let mut connector = HttpConnector::new();
        configure(&mut connector, connect_timeout);
        Ok(Proxy {
            dial,
            shown,
            authorization,
            connector,
            handshake_timeout: connect_timeout,
        })
    }

    /// A tunnel to the first of `targets` the proxy agrees to connect to. A refusal by the
    /// proxy moves on to the next address; failing to reach the proxy ends the attempt.
    async fn tunnel(&self, targets: &[SocketAddr]) -> Result<TokioIo<TcpStream>, BoxError> {
        let mut last = None;
        for &target in targets {
            let mut connector = self.connector.clone();
            let io =
                connector
                    .call(self.dial.clone())
                    .await
                    .map_err(|err| ProxyError::Unreachable {
                        proxy: self.shown.clone(),
                        source: err.into(),
                    })?;
            let mut stream = io.into_inner();
            let exchange = handshake(&mut stream, target, self.authorization.as_deref());
            match tokio::time::timeout(self.handshake_timeout, exchange).await {
                Ok(Ok(())) => return Ok(TokioIo::new(stream)),
                Ok(Err(err @ ProxyError::Answered { .. })) => last = Some(err),
                Ok(Err(err)) => return Err(err.into()),
                Err(_elapsed) => return Err(ProxyError::Timeout { target }.into()),
            }
        }
        Err(last
            .map(BoxError::from)
            .unwrap_or_else(|| "no address to connect to".into()))
    }
}

/// Sends `CONNECT target` and reads the proxy's answer, leaving `stream` at the start of
/// the tunnel.
async fn handshake(
    stream: &mut TcpStream,
    target: SocketAddr,
    authorization: Option<&str>,
) -> Result<(), ProxyError> {
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(auth) = authorization {
        request.push_str("Proxy-Authorization: ");
        request.push_str(auth);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;

    let mut buf = vec![0u8; MAX_PROXY_ANSWER];
    let mut len = 0;
    let head_end = loop {
        let n = stream.read(&mut buf[len..]).await?;
        if n == 0 {
            return Err(ProxyError::Closed { target });
        }
        // Only the new bytes and the 3 before them can complete the blank line.
        let from = len.saturating_sub(3);
        len += n;
        if let Some(at) = buf[from..len].windows(4).position(|w| w == b"\r\n\r\n") {
            break from + at + 4;
        }
        if len == buf.len() {
            return Err(ProxyError::Malformed { target });
        }
    };
    let status = parse_status(&buf[..head_end]).ok_or(ProxyError::Malformed { target })?;
    if !(200..300).contains(&status) {
        return Err(ProxyError::Answered { status, target });
    }
    if head_end != len {
        // The endpoint has not been sent anything yet, so it cannot have answered.
        return Err(ProxyError::Malformed { target });
    }
    Ok(())
}

/// The status code of an `HTTP/1.x NNN reason` status line.
fn parse_status(head: &[u8]) -> Option<u16> {
    let line = head.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
    let mut parts = line.splitn(3, ' ');
    let version = parts.next()?;
    let code = parts.next()?;
    if !version.starts_with("HTTP/1.")
        || code.len() != 3
        || !code.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    code.parse().ok()
}

/// Why the tunnel through the egress proxy could not be set up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyError {
    /// No TCP connection to the proxy.
    #[error("could not connect to the egress proxy {proxy}")]
    Unreachable {
        proxy: String,
        #[source]
        source: BoxError,
    },
    /// The proxy answered the CONNECT with a non-2xx status.
    #[error("the egress proxy answered {status} to CONNECT {target}{}", if *status == 407 { " (it wants credentials: put them in the proxy URL, http://user:password@host:port)" } else { "" })]
    Answered { status: u16, target: SocketAddr },
    /// The proxy's answer was not an HTTP/1 response head (or was too long, or had bytes
    /// after it).
    #[error("the egress proxy's answer to CONNECT {target} is not a valid HTTP/1 response")]
    Malformed { target: SocketAddr },
    /// The proxy closed the connection before answering.
    #[error("the egress proxy closed the connection before answering CONNECT {target}")]
    Closed { target: SocketAddr },
    /// No answer within the connect timeout.
    #[error("the egress proxy did not answer CONNECT {target} within the connect timeout")]
    Timeout { target: SocketAddr },
    /// Reading or writing the proxy connection failed.
    #[error("talking to the egress proxy failed")]
    Io(#[from] io::Error),
}

/// The URL with its password (if any) replaced by `***`.
fn redact(uri: &Uri) -> String {
    let text = uri.to_string();
    let Some(authority) = uri.authority() else {
        return text;
    };
    match authority.as_str().rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            text.replacen(authority.as_str(), &format!("{user}:***@{host}"), 1)
        }
        None => text,
    }
}

/// `%XX` decoding of URL user info.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(
            parse_status(b"HTTP/1.1 200 Connection established\r\n\r\n"),
            Some(200)
        );
        assert_eq!(parse_status(b"HTTP/1.0 407 Proxy Auth\r\n\r\n"), Some(407));
        assert_eq!(parse_status(b"HTTP/1.1 200\r\n\r\n"), Some(200));
        assert_eq!(parse_status(b"HTTP/1.1 2000 OK\r\n\r\n"), None);
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH\r\n\r\n"), None);
        assert_eq!(parse_status(b"HTTP/2 200\r\n\r\n"), None);
    }

    #[test]
    fn credentials_are_decoded_and_hidden() {
        let uri: Uri = "http://us%40er:p%3Ass@proxy.internal:3128".parse().unwrap();
        let proxy = Proxy::new(&uri, Duration::from_secs(1)).unwrap();
        assert_eq!(proxy.dial, "http://proxy.internal:3128/");
        assert_eq!(
            proxy.authorization.as_deref(),
            Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("us@er:p:ss")
            ))
            .as_deref()
        );
        assert_eq!(proxy.shown, "http://us%40er:***@proxy.internal:3128/");
        assert!(!proxy.shown.contains("p%3Ass"));

        let plain: Uri = "http://[::1]:8080/".parse().unwrap();
        let proxy = Proxy::new(&plain, Duration::from_secs(1)).unwrap();
        assert_eq!(proxy.dial, "http://[::1]:8080/");
        assert_eq!(proxy.authorization, None);
    }

    #[test]
    fn unusable_proxy_urls_are_rejected() {
        for (url, reason) in [
            ("https://proxy:3128", "http://"),
            ("socks5://proxy:1080", "http://"),
            ("http://proxy:3128/path", "path"),
            ("http://proxy:3128/?q=1", "path"),
            ("http://u:%zz@proxy:3128", "percent"),
        ] {
            let uri: Uri = url.parse().unwrap();
            let err = Proxy::new(&uri, Duration::from_secs(1)).err().expect(url);
            assert!(err.to_string().contains(reason), "{url}: {err}");
        }
        let relative: Uri = "/just/a/path".parse().unwrap();
        assert!(Proxy::new(&relative, Duration::from_secs(1)).is_err());
    }
}
