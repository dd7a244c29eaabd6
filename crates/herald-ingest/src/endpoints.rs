//! `EndpointService`: create, get, list, update and delete endpoints.
//!
//! Writes go to the registry topic and return once this node has read them
//! back, so a get right after a create on the same node sees the endpoint.
//! Concurrent updates of one endpoint on different nodes: the last write wins.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use herald_core::endpoint::RateLimit;
use herald_core::validate::{self, FieldError};
use herald_core::{ids, time::now_ms, Endpoint, Subscription, DEFAULT_APP};
use herald_delivery::{EgressPolicy, UrlCheckError};
use herald_proto::v1 as pb;
use herald_proto::v1::endpoint_service_server::EndpointService;
use herald_registry::ops::{kind, Ops};
use herald_registry::{Registry, RegistryWriter};
use herald_signing::Secret;
use tonic::{Request, Response, Status};

use crate::paging::{self, DEFAULT_PAGE};

/// The `EndpointService` implementation.
#[derive(Clone)]
pub struct EndpointApi {
    registry: Registry,
    writer: RegistryWriter,
    /// Which addresses endpoint URLs may point at.
    egress: Arc<EgressPolicy>,
    /// Reports endpoints enabled or disabled through the API.
    ops: Ops,
    /// Most endpoints the registry may hold (`grpc.max_endpoints`).
    max_endpoints: usize,
    /// How long a rotated-out secret keeps signing (`secrets.rotation_grace`).
    rotation_grace: Duration,
    /// The master key id this node seals with (for `ResealSecrets`).
    active_key_id: String,
    /// Sends test events (None: `SendTestEvent` is unavailable).
    tests: Option<crate::test_event::TestEvents>,
}

impl EndpointApi {
    /// Serves the registry through `writer`, reading from `registry`.
    pub fn new(registry: Registry, writer: RegistryWriter, egress: EgressPolicy, ops: Ops) -> Self {
        Self {
            registry,
            writer,
            egress: Arc::new(egress),
            ops,
            max_endpoints: usize::MAX,
            rotation_grace: Duration::from_secs(86_400),
            active_key_id: String::new(),
            tests: None,
        }
    }

    /// Serves `SendTestEvent` with `tests`.
    pub fn with_test_events(mut self, tests: crate::test_event::TestEvents) -> Self {
        self.tests = Some(tests);
        self
    }

    /// Tells `ResealSecrets` which master key this node's writer seals with.
    pub fn with_active_key(mut self, id: &str) -> Self {
        self.active_key_id = id.to_string();
        self
    }

    /// Keeps a rotated-out secret signing for `grace` after a rotation.
    pub fn with_rotation_grace(mut self, grace: Duration) -> Self {
        self.rotation_grace = grace;
        self
    }

    /// Refuses creates once the registry holds `max` endpoints.
    pub fn with_max_endpoints(mut self, max: usize) -> Self {
        self.max_endpoints = max;
        self
    }

    /// Refuses URLs whose host resolves to an address deliveries may not
    /// reach. A host that does not resolve (yet) is accepted: deliveries
    /// retry, and the guard runs again on every connection.
    async fn check_egress(&self, field: &str, url: &http::Uri) -> Result<(), Status> {
        let check = herald_delivery::check_url(&self.egress, url);
        match tokio::time::timeout(Duration::from_secs(5), check).await {
            Ok(Ok(())) | Err(_) => Ok(()),
            Ok(Err(UrlCheckError::Unresolvable { host, reason })) => {
                tracing::info!(%host, %reason, "endpoint host does not resolve yet; accepted");
                Ok(())
            }
            Ok(Err(e)) => Err(invalid(FieldError::new(field, e.to_string()))),
        }
    }

    fn ensure_loaded(&self) -> Result<(), Status> {
        paging::ensure_loaded(&self.registry)
    }

    fn existing(&self, id: &str) -> Result<std::sync::Arc<Endpoint>, Status> {
        validate::id("id", id).map_err(invalid)?;
        self.registry
            .get(id)
            .ok_or_else(|| Status::not_found(format!("id: endpoint {id:?} does not exist")))
    }

    async fn store(&self, ep: &Endpoint) -> Result<(), Status> {
        self.writer
            .put(ep)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))
    }
}

fn invalid(e: FieldError) -> Status {
    Status::invalid_argument(e.to_string())
}

/// The API view of an endpoint (never its secret).
pub fn view(ep: &Endpoint) -> pb::Endpoint {
    pb::Endpoint {
        id: ep.id.clone(),
        url: ep.url.to_string(),
        description: ep.description.clone(),
        enabled: ep.enabled,
        ordered: ep.ordered,
        rate_limit: ep.rate_limit.map(|r| pb::RateLimit {
            per_second: r.per_second,
            burst: r.burst,
        }),
        max_in_flight: ep.max_in_flight,
        // Sensitive values are write-only: only their names are shown.
        headers: ep
            .headers
            .iter()
            .filter(|(k, _)| !ep.sensitive_headers.contains(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        sensitive_header_names: ep.sensitive_headers.iter().cloned().collect(),
        created_at_ms: ep.created_at_ms,
        updated_at_ms: ep.updated_at_ms,
        retry_schedule_ms: ep
            .retry_schedule
            .iter()
            .map(|d| d.as_millis() as u64)
            .collect(),
        max_age_ms: ep.max_age.map_or(0, |d| d.as_millis() as u64),
        timeout_ms: ep.timeout.map_or(0, |d| d.as_millis() as u32),
        app_id: ep.app_id.clone(),
        event_types: ep.subscription.event_types().to_vec(),
        channels: ep.subscription.channels().to_vec(),
        filter: ep.subscription.filter().to_string(),
        batch_max_events: ep.batch.map_or(0, |b| b.max_events),
        batch_linger_ms: ep.batch.map_or(0, |b| b.linger.as_millis() as u32),
    }
}

/// The application of a new endpoint: the default one unless named.
fn app_id(app: &str) -> Result<String, Status> {
    if app.is_empty() {
        return Ok(DEFAULT_APP.to_string());
    }
    validate::id("app_id", app).map_err(invalid)?;
    Ok(app.to_string())
}

fn batching(max_events: u32, linger_ms: u32) -> Result<Option<validate::Batching>, Status> {
    validate::batching(max_events, linger_ms).map_err(invalid)
}

fn timeout(field: &str, ms: u32) -> Result<Option<Duration>, Status> {
    validate::timeout_ms(field, ms).map_err(invalid)
}

fn schedule(field: &str, delays_ms: &[u64]) -> Result<Vec<Duration>, Status> {
    validate::retry_schedule(field, delays_ms).map_err(invalid)
}

fn max_age(field: &str, ms: u64) -> Result<Option<Duration>, Status> {
    validate::max_age_ms(field, ms).map_err(invalid)
}

fn rate_limit(r: Option<pb::RateLimit>) -> Result<Option<RateLimit>, Status> {
    let r = r.unwrap_or_default();
    Ok(validate::rate_limit(r.per_second, r.burst)
        .map_err(invalid)?
        .map(|(per_second, burst)| RateLimit { per_second, burst }))
}

fn parse_secret(field: &str, s: &str) -> Result<String, Status> {
    Secret::parse(s)
        .map(|s| s.to_whsec())
        .map_err(|e| invalid(FieldError::new(field, e.to_string())))
}

/// Sets an endpoint's custom headers: `plain` ones and `sensitive` ones
/// (sealed at rest, write-only). A name may not be in both.
fn set_headers(
    ep: &mut Endpoint,
    plain: std::collections::HashMap<String, String>,
    sensitive: std::collections::HashMap<String, String>,
) -> Result<(), Status> {
    if let Some(name) = sensitive
        .keys()
        .find(|k| plain.keys().any(|p| p.eq_ignore_ascii_case(k)))
    {
        return Err(invalid(FieldError::new(
            format!("sensitive_headers[{name}]"),
            "is also in headers; a header is either sensitive or not",
        )));
    }
    ep.sensitive_headers = sensitive.keys().cloned().collect();
    ep.headers = plain.into_iter().chain(sensitive).collect();
    Ok(())
}

fn check(ep: &Endpoint) -> Result<(), Status> {
    validate::headers(ep.headers.iter()).map_err(invalid)?;
    validate::description(&ep.description).map_err(invalid)?;
    validate::max_in_flight(ep.max_in_flight).map_err(invalid)?;
    Ok(())
}

#[tonic::async_trait]
impl EndpointService for EndpointApi {
    async fn create_endpoint(
        &self,
        request: Request<pb::CreateEndpointRequest>,
    ) -> Result<Response<pb::CreateEndpointResponse>, Status> {
        self.ensure_loaded()?;
        let req = request.into_inner();
        let id = if req.id.is_empty() {
            ids::new_endpoint_id()
        } else {
            req.id
        };
        validate::id("id", &id).map_err(invalid)?;
        let url = validate::url(&req.url).map_err(invalid)?;
        self.check_egress("url", &url).await?;
        let secret = if req.secret.is_empty() {
            Secret::generate().to_whsec()
        } else {
            parse_secret("secret", &req.secret)?
        };
        if self.registry.get(&id).is_some() {
            return Err(Status::already_exists(format!(
                "id: endpoint {id:?} already exists"
            )));
        }
        if self.registry.len() >= self.max_endpoints {
            return Err(Status::resource_exhausted(format!(
                "the registry holds {} endpoints, the most this cluster allows (grpc.max_endpoints); delete unused endpoints or raise the limit",
                self.registry.len()
            )));
        }
        let now = now_ms();
        let ep = Endpoint {
            id,
            url,
            secrets: vec![secret.clone()],
            description: req.description,
            enabled: req.enabled.unwrap_or(true),
            ordered: req.ordered.unwrap_or(true),
            rate_limit: rate_limit(req.rate_limit)?,
            max_in_flight: req.max_in_flight,
            headers: BTreeMap::new(),
            sensitive_headers: Default::default(),
            previous_secret_expires_at_ms: 0,
            sealed_key_id: String::new(),
            created_at_ms: now,
            updated_at_ms: now,
            retry_schedule: schedule("retry_schedule_ms", &req.retry_schedule_ms)?,
            max_age: max_age("max_age_ms", req.max_age_ms)?,
            timeout: timeout("timeout_ms", req.timeout_ms)?,
            app_id: app_id(&req.app_id)?,
            subscription: Subscription::new(req.event_types, req.channels, req.filter)
                .map_err(invalid)?,
            batch: batching(req.batch_max_events, req.batch_linger_ms)?,
        };
        let mut ep = ep;
        set_headers(&mut ep, req.headers, req.sensitive_headers)?;
        check(&ep)?;
        self.store(&ep).await?;
        Ok(Response::new(pb::CreateEndpointResponse {
            endpoint: Some(view(&ep)),
            secret,
        }))
    }

    async fn get_endpoint(
        &self,
        request: Request<pb::GetEndpointRequest>,
    ) -> Result<Response<pb::Endpoint>, Status> {
        self.ensure_loaded()?;
        let ep = self.existing(&request.into_inner().id)?;
        Ok(Response::new(view(&ep)))
    }

    async fn list_endpoints(
        &self,
        request: Request<pb::ListEndpointsRequest>,
    ) -> Result<Response<pb::ListEndpointsResponse>, Status> {
        self.ensure_loaded()?;
        let req = request.into_inner();
        let size = paging::page_size(req.page_size)?;
        let after = (!req.page_token.is_empty()).then_some(req.page_token.as_str());
        let app = (!req.app_id.is_empty()).then_some(req.app_id.as_str());
        // One extra tells whether another page exists.
        let (page, next_page_token) =
            paging::split(self.registry.list_in(app, after, size + 1), size, |e| {
                e.id.clone()
            });
        Ok(Response::new(pb::ListEndpointsResponse {
            endpoints: page.iter().map(|e| view(e)).collect(),
            next_page_token,
        }))
    }

    async fn update_endpoint(
        &self,
        request: Request<pb::UpdateEndpointRequest>,
    ) -> Result<Response<pb::Endpoint>, Status> {
        self.ensure_loaded()?;
        let req = request.into_inner();
        let mut ep = (*self.existing(&req.id)?).clone();
        if let Some(url) = req.url {
            let url = validate::url(&url).map_err(invalid)?;
            self.check_egress("url", &url).await?;
            // Sensitive header values are write-only: a caller who cannot
            // read them must not be able to send them to another host.
            if !ep.sensitive_headers.is_empty()
                && req.sensitive_headers.is_none()
                && herald_core::endpoint::origin(&ep.url) != herald_core::endpoint::origin(&url)
            {
                return Err(invalid(FieldError::new(
                    "sensitive_headers",
                    "the new url points at another host; send the sensitive headers again (or an empty map to drop them) in the same request",
                )));
            }
            ep.url = url;
        }
        if let Some(d) = req.description {
            ep.description = d;
        }
        if let Some(e) = req.enabled {
            ep.enabled = e;
        }
        if let Some(o) = req.ordered {
            ep.ordered = o;
        }
        if let Some(r) = req.rate_limit {
            ep.rate_limit = rate_limit(Some(r))?;
        }
        if let Some(m) = req.max_in_flight {
            ep.max_in_flight = m;
        }
        if req.headers.is_some() || req.sensitive_headers.is_some() {
            // Each map, when sent, replaces its kind; the other kind stays.
            let (plain, sensitive): (BTreeMap<_, _>, BTreeMap<_, _>) =
                std::mem::take(&mut ep.headers)
                    .into_iter()
                    .partition(|(k, _)| !ep.sensitive_headers.contains(k));
            let plain = req
                .headers
                .map_or(plain.into_iter().collect(), |h| h.headers);
            let sensitive = req
                .sensitive_headers
                .map_or(sensitive.into_iter().collect(), |h| h.headers);
            set_headers(&mut ep, plain, sensitive)?;
        }
        if let Some(s) = req.rotate_secret {
            let new = parse_secret("rotate_secret", &s)?;
            // The new secret signs; the previous one is still sent beside it
            // until the grace period ends (or the next rotation).
            let previous = ep.secrets.first().cloned();
            ep.secrets = std::iter::once(new).chain(previous).collect();
            ep.previous_secret_expires_at_ms = now_ms()
                .saturating_add(self.rotation_grace.as_millis().min(i64::MAX as u128) as i64);
        }
        if let Some(r) = req.retry_schedule {
            ep.retry_schedule = schedule("retry_schedule.delays_ms", &r.delays_ms)?;
        }
        if let Some(a) = req.max_age_ms {
            ep.max_age = max_age("max_age_ms", a)?;
        }
        if let Some(t) = req.timeout_ms {
            ep.timeout = timeout("timeout_ms", t)?;
        }
        if req.batch_max_events.is_some() || req.batch_linger_ms.is_some() {
            let max = req
                .batch_max_events
                .unwrap_or_else(|| ep.batch.map_or(0, |b| b.max_events));
            // Turning batching off drops its linger with it.
            let linger = match req.batch_linger_ms {
                Some(l) => l,
                None if max <= 1 => 0,
                None => ep.batch.map_or(0, |b| b.linger.as_millis() as u32),
            };
            ep.batch = batching(max, linger)?;
        }
        if req.event_types.is_some() || req.channels.is_some() || req.filter.is_some() {
            let sub = &ep.subscription;
            ep.subscription = Subscription::new(
                req.event_types
                    .map_or_else(|| sub.event_types().to_vec(), |l| l.values),
                req.channels
                    .map_or_else(|| sub.channels().to_vec(), |l| l.values),
                req.filter.unwrap_or_else(|| sub.filter().to_string()),
            )
            .map_err(invalid)?;
        }
        ep.updated_at_ms = now_ms();
        check(&ep)?;
        let was_enabled = self.existing(&ep.id)?.enabled;
        self.store(&ep).await?;
        if was_enabled != ep.enabled {
            let kind = if ep.enabled {
                kind::ENDPOINT_ENABLED
            } else {
                kind::ENDPOINT_DISABLED
            };
            self.ops
                .emit(kind, &ep.id, serde_json::json!({"reason": "api"}));
        }
        Ok(Response::new(view(&ep)))
    }

    async fn reseal_secrets(
        &self,
        _request: Request<pb::ResealSecretsRequest>,
    ) -> Result<Response<pb::ResealSecretsResponse>, Status> {
        self.ensure_loaded()?;
        let (mut resealed, mut already_current) = (0u64, 0u64);
        let mut after: Option<String> = None;
        loop {
            let page = self.registry.list(after.as_deref(), DEFAULT_PAGE);
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            for ep in page {
                if ep.sealed_key_id == self.active_key_id {
                    already_current += 1;
                    continue;
                }
                // The newest version this node has, so a write made since
                // the page was read is not undone.
                let Some(current) = self.registry.get(&ep.id) else {
                    continue;
                };
                self.store(&current).await?;
                resealed += 1;
            }
        }
        tracing::info!(resealed, already_current, key = %self.active_key_id, "endpoint secrets re-sealed");
        Ok(Response::new(pb::ResealSecretsResponse {
            active_key_id: self.active_key_id.clone(),
            resealed,
            already_current,
        }))
    }

    async fn send_test_event(
        &self,
        request: Request<pb::SendTestEventRequest>,
    ) -> Result<Response<pb::SendTestEventResponse>, Status> {
        self.ensure_loaded()?;
        let tests = self
            .tests
            .as_ref()
            .ok_or_else(|| Status::unimplemented("this node does not send test events"))?;
        Ok(Response::new(
            tests.send(&self.registry, request.into_inner()).await?,
        ))
    }

    async fn delete_endpoint(
        &self,
        request: Request<pb::DeleteEndpointRequest>,
    ) -> Result<Response<pb::DeleteEndpointResponse>, Status> {
        self.ensure_loaded()?;
        let id = request.into_inner().id;
        self.existing(&id)?;
        self.writer
            .delete(&id)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(pb::DeleteEndpointResponse {}))
    }
}
