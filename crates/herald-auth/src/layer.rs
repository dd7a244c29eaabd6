//! The tower layer in front of every gRPC service: applies the
//! [`Authenticator`] to each request before tonic routes it, answers a
//! refusal itself, and passes the caller's [`Principal`] on in the request's
//! extensions (`request.extensions().get::<Arc<Principal>>()`).

use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::{Either, Ready};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower_layer::Layer;
use tower_service::Service;

use crate::policy::{Authenticator, Principal};

/// Wraps services with authentication.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    auth: Arc<Authenticator>,
}

impl AuthLayer {
    /// A layer that checks requests with `auth`.
    pub fn new(auth: Authenticator) -> Self {
        Self {
            auth: Arc::new(auth),
        }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Authenticated<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticated {
            inner,
            auth: self.auth.clone(),
        }
    }
}

/// A service behind [`AuthLayer`].
#[derive(Debug, Clone)]
pub struct Authenticated<S> {
    inner: S,
    auth: Arc<Authenticator>,
}

impl<S, B> Service<http::Request<B>> for Authenticated<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<Ready<Result<S::Response, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let authorization = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        // The client certificate a TLS connection presented (tonic puts the
        // verified chain in the request's extensions, end entity first).
        let certs = req
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(|i| i.peer_certs());
        let cert = certs.as_ref().and_then(|c| c.first());
        match self.auth.authorize(req.uri().path(), authorization, cert) {
            Ok(principal) => {
                if let Some(p) = principal {
                    req.extensions_mut().insert::<Arc<Principal>>(p);
                }
                Either::Right(self.inner.call(req))
            }
            Err(status) => {
                count_refusal(&status);
                Either::Left(futures_util::future::ready(Ok(status.into_http())))
            }
        }
    }
}

/// Counts a refusal by its code (never the token) for `/metrics`.
fn count_refusal(status: &tonic::Status) {
    let code = match status.code() {
        tonic::Code::Unauthenticated => "unauthenticated",
        _ => "permission_denied",
    };
    metrics::counter!(herald_telemetry::names::AUTH_REFUSALS, "code" => code).increment(1);
}
