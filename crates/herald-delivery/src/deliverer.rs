//! [`Deliverer`]: runs one attempt end to end (build, send, read the capped answer) under
//! the request timeout, and reports it as an [`AttemptResult`].
//!
//! Owns the attempt's time bound and the capped body read. It never retries and never
//! follows redirects. Where it may connect is the connector's business (see
//! [`crate::egress`]); a refused target comes back as [`AttemptError::Refused`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{LOCATION, RETRY_AFTER};
use http::{HeaderValue, Request};
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Body as _, Incoming};
use tokio::time::Instant;

use crate::client;
use crate::config::DeliveryConfig;
use crate::error::DeliveryError;
use crate::outcome::{body_read_error, AttemptError, AttemptResult};
use crate::pool::Pool;
use crate::request::{self, DeliveryRequest};
use crate::retry_after::RetryAfter;

/// How long an idle keep-alive connection is kept before it is closed.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Sends delivery attempts over one shared connection pool. Cloning is cheap (one `Arc`)
/// and clones share the pool.
#[derive(Clone)]
pub struct Deliverer {
    inner: Arc<Inner>,
}

struct Inner {
    /// The keep-alive connections every endpoint and task shares.
    pool: Pool,
    /// `user-agent`, validated once instead of per attempt.
    user_agent: HeaderValue,
    /// Bound on the whole attempt.
    request_timeout: Duration,
    /// Response body bytes to keep; reading stops there.
    max_response_body: usize,
}

impl Deliverer {
    /// Builds the client. Fails on an invalid `user_agent`, a zero timeout, or a TLS setup
    /// error.
    pub fn new(cfg: DeliveryConfig) -> Result<Self, DeliveryError> {
        for (field, value) in [
            ("connect_timeout", cfg.connect_timeout),
            ("request_timeout", cfg.request_timeout),
        ] {
            if value.is_zero() {
                return Err(DeliveryError::ZeroTimeout { field });
            }
        }
        let user_agent = HeaderValue::from_str(&cfg.user_agent).map_err(|_| {
            DeliveryError::InvalidUserAgent {
                value: cfg.user_agent.clone(),
            }
        })?;
        let pool = Pool::new(
            client::connector(&cfg)?,
            cfg.pool_idle_per_host,
            POOL_IDLE_TIMEOUT,
        );
        Ok(Deliverer {
            inner: Arc::new(Inner {
                pool,
                user_agent,
                request_timeout: cfg.request_timeout,
                max_response_body: cfg.max_response_body,
            }),
        })
    }

    /// Makes one attempt. Never fails: every outcome, including errors, is in the result.
    pub async fn deliver(&self, req: &DeliveryRequest<'_>) -> AttemptResult {
        let started = Instant::now();
        let mut result = AttemptResult::default();
        match request::build(req, &self.inner.user_agent) {
            Err(err) => result.error = Some(err),
            Ok(http_request) => {
                // Owned here, not by `exchange`, so what arrived survives a timeout.
                let mut snippet = BytesMut::new();
                let exchange = self.exchange(http_request, &mut result, &mut snippet);
                match tokio::time::timeout(
                    req.timeout.map_or(self.inner.request_timeout, |t| {
                        t.min(self.inner.request_timeout)
                    }),
                    exchange,
                )
                .await
                {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => result.error = Some(err),
                    Err(_elapsed) => result.error = Some(AttemptError::Timeout),
                }
                result.body_snippet = snippet.freeze();
            }
        }
        result.latency = started.elapsed();
        tracing::trace!(
            status = result.status,
            error = result.error.as_ref().map(AttemptError::kind),
            latency_us = result.latency.as_micros() as u64,
            "delivery attempt"
        );
        result
    }

    /// Sends the request and fills `out` and `snippet` as the answer arrives.
    async fn exchange(
        &self,
        request: Request<Full<Bytes>>,
        out: &mut AttemptResult,
        snippet: &mut BytesMut,
    ) -> Result<(), AttemptError> {
        let cap = self.inner.max_response_body;
        self.inner
            .pool
            .send(request, |response| async move {
                let (parts, mut body) = response.into_parts();
                out.status = Some(parts.status.as_u16());
                out.retry_after = parts
                    .headers
                    .get(RETRY_AFTER)
                    .and_then(RetryAfter::from_header);
                if parts.status.is_redirection() {
                    out.location = parts
                        .headers
                        .get(LOCATION)
                        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
                }
                read_capped(&mut body, cap, snippet)
                    .await
                    .map_err(|err| body_read_error(&err))
            })
            .await
    }
}

impl fmt::Debug for Deliverer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deliverer")
            .field("user_agent", &self.inner.user_agent)
            .field("request_timeout", &self.inner.request_timeout)
            .field("max_response_body", &self.inner.max_response_body)
            .finish_non_exhaustive()
    }
}

/// Reads at most `cap` body bytes into `buf`, then stops (the rest is never read;
/// dropping the body closes an HTTP/1 connection that still has unread data, or resets the
/// HTTP/2 stream). An empty body allocates nothing; otherwise one buffer, sized by
/// `Content-Length` when known. Bytes stay in `buf` as they arrive, so a caller that gives
/// up early (timeout) keeps them.
async fn read_capped(
    body: &mut Incoming,
    cap: usize,
    buf: &mut BytesMut,
) -> Result<(), hyper::Error> {
    let hint = body.size_hint();
    let initial = hint
        .upper()
        .and_then(|upper| usize::try_from(upper).ok())
        .unwrap_or(cap)
        .min(cap);
    while buf.len() < cap {
        let Some(frame) = body.frame().await else {
            break;
        };
        let Ok(data) = frame?.into_data() else {
            continue; // trailers
        };
        let take = data.len().min(cap - buf.len());
        if take == 0 {
            continue;
        }
        if buf.capacity() == 0 {
            buf.reserve(initial.max(take));
        }
        buf.extend_from_slice(&data[..take]);
    }
    Ok(())
}
