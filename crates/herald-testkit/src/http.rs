//! A minimal HTTP client for tests: one GET or POST with hyper, answering the
//! status, headers and whole body. For reading `/metrics` and `/readyz`, and
//! for exercising [`crate::TestReceiver`] itself.

use std::collections::BTreeMap;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Headers, lower-case names (repeated ones joined with `", "`).
    pub headers: BTreeMap<String, String>,
    /// The whole body.
    pub body: Bytes,
}

impl Answer {
    /// The body as UTF-8 text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A request failed before an answer arrived.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// `GET url`.
pub async fn get(url: &str) -> Result<Answer, Error> {
    send(Request::get(url).body(Full::new(Bytes::new()))?).await
}

/// `POST url` with `headers` and `body`.
pub async fn post(
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Result<Answer, Error> {
    let mut req = Request::post(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(req.body(Full::new(body.into()))?).await
}

async fn send(req: Request<Full<Bytes>>) -> Result<Answer, Error> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let resp = client.request(req).await?;
    let status = resp.status().as_u16();
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in resp.headers() {
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        headers
            .entry(k.as_str().to_string())
            .and_modify(|old| {
                old.push_str(", ");
                old.push_str(&v);
            })
            .or_insert(v);
    }
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(Answer {
        status,
        headers,
        body,
    })
}
