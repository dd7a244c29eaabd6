//! Builds the connector stack every delivery connection goes through: the
//! [`EgressConnector`] (egress policy, optional CONNECT proxy) under rustls (Mozilla roots,
//! explicit ring provider), offering HTTP/2 by ALPN when enabled.
//!
//! Owns connector settings only; it does not send anything (see [`crate::pool`]).

use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};

use crate::config::DeliveryConfig;
use crate::connector::EgressConnector;
use crate::error::DeliveryError;

/// The connector every delivery connection is made with.
pub(crate) type Connector = HttpsConnector<EgressConnector>;

/// Builds the connector for `cfg`. Needs no runtime. Fails on TLS setup or an unusable
/// proxy URL.
pub(crate) fn connector(cfg: &DeliveryConfig) -> Result<Connector, DeliveryError> {
    let http = EgressConnector::new(cfg)?;

    // An explicit provider: no dependence on a process-wide rustls default, which another
    // crate in the binary could install differently (or twice, which panics).
    let tls = HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
        .map_err(DeliveryError::Tls)?
        .https_or_http();
    Ok(if cfg.http2 {
        tls.enable_all_versions().wrap_connector(http)
    } else {
        tls.enable_http1().wrap_connector(http)
    })
}
