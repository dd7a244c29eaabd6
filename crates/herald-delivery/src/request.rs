//! What one attempt sends: [`DeliveryRequest`], and its translation into an HTTP POST with
//! the Standard Webhooks headers.
//!
//! Owns header precedence: `content-type` and the `webhook-*` headers are always Herald's;
//! endpoint headers are added after them and can never replace them.

use bytes::Bytes;
use http::header::{
    CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, TE, TRANSFER_ENCODING, UPGRADE, USER_AGENT,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::Full;

use crate::outcome::AttemptError;

/// `webhook-id`: the message id, stable across attempts so receivers can de-duplicate.
pub static WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
/// `webhook-timestamp`: unix seconds covered by the signature.
pub static WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
/// `webhook-signature`: `v1,<base64>` per active secret.
pub static WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");

/// The body's media type; webhook payloads are JSON.
static APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");

/// Headers Herald always sends.
const OWN_HEADERS: usize = 5;

/// Everything one attempt needs, borrowed from the caller (nothing is copied but the
/// `Bytes` handle of the body).
#[derive(Debug, Clone)]
pub struct DeliveryRequest<'a> {
    /// Endpoint URL, parsed once when the endpoint was registered. Must be absolute.
    pub url: &'a Uri,
    /// Message id, sent as `webhook-id` and signed.
    pub msg_id: &'a str,
    /// Unix seconds, sent as `webhook-timestamp` and signed.
    pub timestamp: i64,
    /// JSON payload, sent as is and signed.
    pub body: Bytes,
    /// The endpoint's secrets.
    pub signer: &'a herald_signing::Signer,
    /// Endpoint custom headers, validated at registration. Entries that would clash with
    /// Herald's own headers or with message framing (`content-type`, `webhook-*`, `host`,
    /// `content-length`, `transfer-encoding`, `connection`, `te`, `upgrade`) are ignored;
    /// a custom `user-agent` replaces Herald's; all others are added.
    pub headers: &'a [(HeaderName, HeaderValue)],
    /// The endpoint's own total timeout; never longer than the client's
    /// `request_timeout` (None = that).
    pub timeout: Option<std::time::Duration>,
}

/// Builds the POST for `req`. Fails only on inputs no retry can fix.
pub(crate) fn build(
    req: &DeliveryRequest<'_>,
    user_agent: &HeaderValue,
) -> Result<Request<Full<Bytes>>, AttemptError> {
    if req.url.scheme().is_none() || req.url.authority().is_none() {
        return Err(AttemptError::InvalidRequest(format!(
            "endpoint URL {} is not absolute; it needs a scheme and a host",
            req.url
        )));
    }
    let id = HeaderValue::from_str(req.msg_id).map_err(|_| {
        AttemptError::InvalidRequest(format!(
            "message id {:?} contains characters not allowed in a header",
            req.msg_id
        ))
    })?;
    let signature = req
        .signer
        .signature_header(req.msg_id, req.timestamp, &req.body);
    // Hands the String's buffer to the header without copying; base64 is always valid.
    let signature = HeaderValue::from_maybe_shared(Bytes::from(signature))
        .expect("a signature header is base64 and spaces");

    let mut headers = HeaderMap::with_capacity(OWN_HEADERS + req.headers.len());
    headers.insert(CONTENT_TYPE, APPLICATION_JSON.clone());
    headers.insert(USER_AGENT, user_agent.clone());
    headers.insert(WEBHOOK_ID.clone(), id);
    headers.insert(WEBHOOK_TIMESTAMP.clone(), HeaderValue::from(req.timestamp));
    headers.insert(WEBHOOK_SIGNATURE.clone(), signature);
    for (name, value) in req.headers {
        if is_reserved(name) {
            continue;
        }
        if name == USER_AGENT {
            headers.insert(USER_AGENT, value.clone());
        } else {
            headers.append(name.clone(), value.clone());
        }
    }

    let mut request = Request::new(Full::new(req.body.clone()));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = req.url.clone();
    *request.headers_mut() = headers;
    Ok(request)
}

/// Headers an endpoint may not set: ours, and those that frame the message.
fn is_reserved(name: &HeaderName) -> bool {
    name == CONTENT_TYPE
        || name == WEBHOOK_ID
        || name == WEBHOOK_TIMESTAMP
        || name == WEBHOOK_SIGNATURE
        || name == HOST
        || name == CONTENT_LENGTH
        || name == TRANSFER_ENCODING
        || name == CONNECTION
        || name == TE
        || name == UPGRADE
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_signing::{Secret, Signer, Verifier};

    fn signer() -> Signer {
        Signer::new(vec![Secret::parse(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        )
        .unwrap()])
    }

    #[test]
    fn builds_signed_post_with_precedence() {
        let url: Uri = "http://example.com/hook?x=1".parse().unwrap();
        let signer = signer();
        let custom = [
            (
                WEBHOOK_SIGNATURE.clone(),
                HeaderValue::from_static("v1,forged"),
            ),
            (CONTENT_TYPE, HeaderValue::from_static("text/plain")),
            (CONTENT_LENGTH, HeaderValue::from_static("1")),
            (USER_AGENT, HeaderValue::from_static("Custom/1")),
            (
                HeaderName::from_static("x-tenant"),
                HeaderValue::from_static("a"),
            ),
            (
                HeaderName::from_static("x-tenant"),
                HeaderValue::from_static("b"),
            ),
        ];
        let req = DeliveryRequest {
            url: &url,
            msg_id: "msg_p5jXN8AQM9LWM0D4loKWxJek",
            timestamp: 1614265330,
            body: Bytes::from_static(br#"{"test": 2432232314}"#),
            signer: &signer,
            headers: &custom,
            timeout: None,
        };
        let http = build(&req, &HeaderValue::from_static("Herald/test")).unwrap();
        assert_eq!(http.method(), Method::POST);
        assert_eq!(http.uri(), &url);
        let h = http.headers();
        assert_eq!(h[CONTENT_TYPE], "application/json");
        assert_eq!(h[USER_AGENT], "Custom/1");
        assert!(h.get(CONTENT_LENGTH).is_none());
        assert_eq!(h[&WEBHOOK_ID], "msg_p5jXN8AQM9LWM0D4loKWxJek");
        assert_eq!(h[&WEBHOOK_TIMESTAMP], "1614265330");
        assert_eq!(
            h[&WEBHOOK_SIGNATURE],
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert_eq!(h.get_all(&WEBHOOK_SIGNATURE).iter().count(), 1);
        let tenants: Vec<_> = h.get_all("x-tenant").iter().collect();
        assert_eq!(tenants, ["a", "b"]);
        Verifier::new(signer.secrets().to_vec())
            .verify(
                h[&WEBHOOK_ID].to_str().unwrap(),
                h[&WEBHOOK_TIMESTAMP].to_str().unwrap(),
                h[&WEBHOOK_SIGNATURE].to_str().unwrap(),
                &req.body,
                1614265330,
            )
            .unwrap();
    }

    #[test]
    fn refuses_relative_urls_and_bad_ids() {
        let signer = signer();
        let relative: Uri = "/hook".parse().unwrap();
        let absolute: Uri = "http://example.com/".parse().unwrap();
        let mut req = DeliveryRequest {
            url: &relative,
            msg_id: "msg_1",
            timestamp: 1,
            body: Bytes::new(),
            signer: &signer,
            headers: &[],
            timeout: None,
        };
        let ua = HeaderValue::from_static("Herald/test");
        assert!(matches!(
            build(&req, &ua),
            Err(AttemptError::InvalidRequest(_))
        ));
        req.url = &absolute;
        req.msg_id = "msg\n1";
        assert!(matches!(
            build(&req, &ua),
            Err(AttemptError::InvalidRequest(_))
        ));
    }
}
