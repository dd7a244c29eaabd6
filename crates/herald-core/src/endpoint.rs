//! The endpoint model: where and how one receiver gets its webhooks.
//!
//! [`Endpoint`] is the validated form of the registry's `EndpointRecord`; the
//! registry stores records, the dispatcher and the API work with this type.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use herald_proto::v1::EndpointRecord;

use crate::validate::{self, FieldError};

/// The origin of an endpoint URL, `scheme://host:port`, lower-cased, with
/// the scheme's default port filled in: two URLs with the same origin reach
/// the same receiver.
pub fn origin(url: &http::Uri) -> String {
    let scheme = url.scheme_str().unwrap_or("").to_ascii_lowercase();
    let port = url
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    format!(
        "{scheme}://{}:{port}",
        url.host().unwrap_or("").to_ascii_lowercase()
    )
}

/// A request-rate limit: `per_second` requests per second with `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained requests per second (> 0).
    pub per_second: u32,
    /// Requests allowed at once above the rate (>= 1).
    pub burst: u32,
}

/// Batched delivery: several events in one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    /// Most events per request (>= 2).
    pub max_events: u32,
    /// How long a batch waits to fill, from its first event's publish.
    pub linger: Duration,
}

/// A validated endpoint. Its `Debug` output never shows the secrets.
#[derive(Clone, PartialEq)]
pub struct Endpoint {
    /// Registry key.
    pub id: String,
    /// Target URL, already parsed.
    pub url: http::Uri,
    /// Signing secrets (`whsec_...`), newest first.
    pub secrets: Vec<String>,
    /// Free text for operators.
    pub description: String,
    /// Disabled endpoints accept no publishes and get no deliveries.
    pub enabled: bool,
    /// Ordered endpoints get one delivery at a time, in publish order.
    pub ordered: bool,
    /// None = the node default applies.
    pub rate_limit: Option<RateLimit>,
    /// Concurrent deliveries for an unordered endpoint; 0 = node default.
    pub max_in_flight: u32,
    /// Custom headers sent with every delivery.
    pub headers: BTreeMap<String, String>,
    /// Names of the custom headers whose values are secret (sealed in the
    /// registry topic, never shown by the API).
    pub sensitive_headers: BTreeSet<String>,
    /// When the previous secret (`secrets[1]`) stops signing, unix ms; 0 =
    /// it signs until the next rotation.
    pub previous_secret_expires_at_ms: i64,
    /// The master key the stored record is sealed under, as read from the
    /// registry topic: empty for plaintext, `*` for a mix of keys. Not
    /// written back (sealing sets it afresh).
    pub sealed_key_id: String,
    /// Unix milliseconds.
    pub created_at_ms: i64,
    /// Unix milliseconds.
    pub updated_at_ms: i64,
    /// Retry schedule replacing the node's; empty = node default.
    pub retry_schedule: Vec<std::time::Duration>,
    /// Maximum event age replacing the node's.
    pub max_age: Option<std::time::Duration>,
    /// Total attempt timeout (capped by the node's `delivery.timeout_ms`).
    pub timeout: Option<std::time::Duration>,
    /// The application (tenant) it belongs to ([`crate::DEFAULT_APP`] unless named).
    pub app_id: String,
    /// What it receives when a publisher fans out to its application.
    pub subscription: crate::Subscription,
    /// Batched delivery; None = one event per request.
    pub batch: Option<Batching>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("id", &self.id)
            .field("url", &self.url)
            .field(
                "secrets",
                &format_args!("[{} redacted]", self.secrets.len()),
            )
            .field("enabled", &self.enabled)
            .field("ordered", &self.ordered)
            .field("rate_limit", &self.rate_limit)
            .field("max_in_flight", &self.max_in_flight)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("sensitive_headers", &self.sensitive_headers)
            .field("app_id", &self.app_id)
            .field("subscription", &self.subscription)
            .field("batch", &self.batch)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// Validates a registry record.
    pub fn from_record(rec: EndpointRecord) -> Result<Self, FieldError> {
        validate::id("id", &rec.id)?;
        let url = validate::url(&rec.url)?;
        if rec.secrets.is_empty() {
            return Err(FieldError::new(
                "secret",
                "an endpoint needs a signing secret",
            ));
        }
        validate::headers(rec.headers.iter())?;
        let app_id = if rec.app_id.is_empty() {
            crate::DEFAULT_APP.to_string()
        } else {
            validate::id("app_id", &rec.app_id)?;
            rec.app_id
        };
        let subscription = crate::Subscription::new(rec.event_types, rec.channels, rec.filter)?;
        // Numbers are capped at the API's upper bounds rather than refused: a
        // record written by another tool (or an older node) still yields a
        // usable endpoint, and nothing downstream sees an extreme value.
        let rate_limit = (rec.rate_limit_per_second > 0).then(|| RateLimit {
            per_second: rec.rate_limit_per_second.min(validate::MAX_RATE_PER_SECOND),
            burst: rec.rate_limit_burst.clamp(1, validate::MAX_RATE_PER_SECOND),
        });
        let delay = |ms: u64| Duration::from_millis(ms.clamp(1, validate::MAX_RETRY_DELAY_MS));
        Ok(Self {
            id: rec.id,
            url,
            secrets: rec.secrets,
            description: rec.description,
            enabled: !rec.disabled,
            ordered: !rec.unordered,
            rate_limit,
            max_in_flight: rec.max_in_flight.min(validate::MAX_IN_FLIGHT),
            headers: rec.headers.into_iter().collect(),
            sensitive_headers: BTreeSet::new(),
            previous_secret_expires_at_ms: rec.previous_secret_expires_at_ms,
            sealed_key_id: String::new(),
            created_at_ms: rec.created_at_ms,
            updated_at_ms: rec.updated_at_ms,
            retry_schedule: rec
                .retry_schedule_ms
                .iter()
                .take(validate::MAX_RETRY_SCHEDULE_LEN)
                .map(|&ms| delay(ms))
                .collect(),
            max_age: (rec.max_age_ms > 0)
                .then(|| Duration::from_millis(rec.max_age_ms.min(validate::MAX_MAX_AGE_MS))),
            timeout: (rec.timeout_ms > 0).then(|| {
                Duration::from_millis(u64::from(rec.timeout_ms.min(validate::MAX_TIMEOUT_MS)))
            }),
            app_id,
            subscription,
            batch: (rec.batch_max_events > 1).then(|| Batching {
                max_events: rec.batch_max_events.min(validate::MAX_BATCH_EVENTS),
                linger: Duration::from_millis(u64::from(
                    rec.batch_linger_ms.min(validate::MAX_BATCH_LINGER_MS),
                )),
            }),
        })
    }

    /// The registry record for this endpoint.
    pub fn to_record(&self) -> EndpointRecord {
        EndpointRecord {
            id: self.id.clone(),
            url: self.url.to_string(),
            secrets: self.secrets.clone(),
            description: self.description.clone(),
            disabled: !self.enabled,
            unordered: !self.ordered,
            rate_limit_per_second: self.rate_limit.map_or(0, |r| r.per_second),
            rate_limit_burst: self.rate_limit.map_or(0, |r| r.burst),
            max_in_flight: self.max_in_flight,
            headers: self.headers.clone().into_iter().collect(),
            created_at_ms: self.created_at_ms,
            updated_at_ms: self.updated_at_ms,
            retry_schedule_ms: self
                .retry_schedule
                .iter()
                .map(|d| d.as_millis() as u64)
                .collect(),
            max_age_ms: self.max_age.map_or(0, |d| d.as_millis() as u64),
            timeout_ms: self.timeout.map_or(0, |d| d.as_millis() as u32),
            previous_secret_expires_at_ms: self.previous_secret_expires_at_ms,
            app_id: self.app_id.clone(),
            event_types: self.subscription.event_types().to_vec(),
            channels: self.subscription.channels().to_vec(),
            filter: self.subscription.filter().to_string(),
            batch_max_events: self.batch.map_or(0, |b| b.max_events),
            batch_linger_ms: self.batch.map_or(0, |b| b.linger.as_millis() as u32),
            ..Default::default()
        }
    }

    /// The secrets that sign at `now_ms`: the newest always, the previous
    /// one until its grace period ends.
    pub fn signing_secrets(&self, now_ms: i64) -> &[String] {
        let expired =
            self.previous_secret_expires_at_ms > 0 && now_ms >= self.previous_secret_expires_at_ms;
        if expired {
            &self.secrets[..self.secrets.len().min(1)]
        } else {
            &self.secrets
        }
    }

    /// The retry policy for this endpoint: `base` with this endpoint's overrides.
    pub fn retry_policy(
        &self,
        base: &crate::schedule::RetryPolicy,
    ) -> crate::schedule::RetryPolicy {
        let mut p = base.clone();
        if !self.retry_schedule.is_empty() {
            p.schedule = self.retry_schedule.clone();
        }
        if let Some(age) = self.max_age {
            p.max_age = age;
        }
        p
    }

    /// Deliveries allowed at once: 1 when ordered, else the endpoint's or the default.
    pub fn effective_in_flight(&self, default: u32) -> usize {
        if self.ordered {
            1
        } else if self.max_in_flight > 0 {
            self.max_in_flight as usize
        } else {
            default.max(1) as usize
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> EndpointRecord {
        EndpointRecord {
            id: "ep_1".into(),
            url: "https://example.com/h".into(),
            secrets: vec!["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()],
            rate_limit_per_second: 10,
            rate_limit_burst: 0,
            headers: [("X-A".to_string(), "1".to_string())].into_iter().collect(),
            retry_schedule_ms: vec![10, 20],
            max_age_ms: 1000,
            ..Default::default()
        }
    }

    #[test]
    fn record_round_trips() {
        let ep = Endpoint::from_record(record()).unwrap();
        assert!(ep.enabled && ep.ordered);
        assert_eq!(
            ep.rate_limit,
            Some(RateLimit {
                per_second: 10,
                burst: 1
            })
        );
        let back = Endpoint::from_record(ep.to_record()).unwrap();
        assert_eq!(back, ep);
    }

    #[test]
    fn invalid_records_name_the_field() {
        let mut r = record();
        r.url = "nope".into();
        assert_eq!(Endpoint::from_record(r).unwrap_err().field, "url");
        let mut r = record();
        r.secrets.clear();
        assert_eq!(Endpoint::from_record(r).unwrap_err().field, "secret");
    }

    #[test]
    fn retry_overrides_apply() {
        let ep = Endpoint::from_record(record()).unwrap();
        let p = ep.retry_policy(&crate::schedule::RetryPolicy::default());
        assert_eq!(
            p.schedule,
            vec![
                std::time::Duration::from_millis(10),
                std::time::Duration::from_millis(20)
            ]
        );
        assert_eq!(p.max_age, std::time::Duration::from_secs(1));
    }

    #[test]
    fn extreme_record_values_are_capped() {
        let mut r = record();
        r.rate_limit_per_second = u32::MAX;
        r.rate_limit_burst = u32::MAX;
        r.max_in_flight = u32::MAX;
        r.retry_schedule_ms = vec![u64::MAX; 1000];
        r.max_age_ms = u64::MAX;
        r.timeout_ms = u32::MAX;
        let ep = Endpoint::from_record(r).unwrap();
        let rl = ep.rate_limit.unwrap();
        assert_eq!(rl.per_second, validate::MAX_RATE_PER_SECOND);
        assert_eq!(rl.burst, validate::MAX_RATE_PER_SECOND);
        assert_eq!(ep.max_in_flight, validate::MAX_IN_FLIGHT);
        assert_eq!(ep.retry_schedule.len(), validate::MAX_RETRY_SCHEDULE_LEN);
        assert!(ep
            .retry_schedule
            .iter()
            .all(|d| d.as_millis() as u64 == validate::MAX_RETRY_DELAY_MS));
        assert_eq!(
            ep.max_age.unwrap().as_millis() as u64,
            validate::MAX_MAX_AGE_MS
        );
        assert_eq!(
            ep.timeout.unwrap().as_millis() as u32,
            validate::MAX_TIMEOUT_MS
        );
    }

    #[test]
    fn previous_secret_signs_until_its_grace_ends() {
        let mut ep = Endpoint::from_record(record()).unwrap();
        ep.secrets.push("whsec_old".into());
        assert_eq!(ep.signing_secrets(5).len(), 2, "no expiry: both sign");
        ep.previous_secret_expires_at_ms = 100;
        assert_eq!(ep.signing_secrets(99).len(), 2);
        assert_eq!(ep.signing_secrets(100), &ep.secrets[..1]);
    }

    #[test]
    fn origins() {
        let o = |u: &str| origin(&u.parse().unwrap());
        assert_eq!(
            o("https://API.example.com/a"),
            "https://api.example.com:443"
        );
        assert_eq!(o("http://example.com:8080/b"), "http://example.com:8080");
        assert_eq!(o("https://example.com/x"), o("https://example.com:443/y"));
        assert_ne!(o("http://example.com/"), o("https://example.com/"));
    }

    #[test]
    fn debug_never_shows_secrets() {
        let ep = Endpoint::from_record(record()).unwrap();
        let text = format!("{ep:?}");
        assert!(!text.contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), "{text}");
        assert!(text.contains("redacted"), "{text}");
    }

    #[test]
    fn in_flight() {
        let mut ep = Endpoint::from_record(record()).unwrap();
        assert_eq!(ep.effective_in_flight(8), 1);
        ep.ordered = false;
        assert_eq!(ep.effective_in_flight(8), 8);
        ep.max_in_flight = 3;
        assert_eq!(ep.effective_in_flight(8), 3);
    }
}
