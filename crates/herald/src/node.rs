//! Assembles a Herald node from its roles: the endpoint registry (always),
//! the gRPC ingest API, the dispatcher, and the metrics/health HTTP server.
//!
//! [`start`] binds every listener before returning (so callers, tests among
//! them, can use port 0 and read the bound addresses), and
//! [`RunningNode::shutdown`] stops in order: ingest first (in-flight
//! publishes finish), then the dispatcher drains, then the rest.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use herald_core::Config;
use herald_dispatch::{run_dispatcher, DispatchSettings};
use herald_ingest::status::ClusterApi;
use herald_ingest::{DeadLetterApi, EndpointApi, EventApi, EventTypeApi, Publisher};
use herald_proto::v1::cluster_service_server::ClusterServiceServer;
use herald_proto::v1::dead_letter_service_server::DeadLetterServiceServer;
use herald_proto::v1::endpoint_service_server::EndpointServiceServer;
use herald_proto::v1::event_service_server::EventServiceServer;
use herald_proto::v1::event_type_service_server::EventTypeServiceServer;
use herald_registry::{run_materialiser, Registry, RegistryWriter};
use herald_telemetry::{install_recorder, names, serve_http, Health};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Which parts of Herald this node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// The gRPC API (publish, endpoints).
    pub ingest: bool,
    /// The dispatcher (consumer group member, HTTP deliveries).
    pub dispatch: bool,
}

impl Roles {
    /// Both roles.
    pub const ALL: Roles = Roles {
        ingest: true,
        dispatch: true,
    };
}

/// A started node.
pub struct RunningNode {
    /// Bound gRPC address, when ingest runs.
    pub grpc_addr: Option<SocketAddr>,
    /// Bound metrics/health address.
    pub http_addr: SocketAddr,
    /// The node's registry view.
    pub registry: Registry,
    /// Readiness state.
    pub health: Health,
    stop_ingest: CancellationToken,
    stop_dispatch: CancellationToken,
    stop_rest: CancellationToken,
    ingest: Option<JoinHandle<Result<(), tonic::transport::Error>>>,
    dispatch: Option<JoinHandle<Result<(), herald_dispatch::consumer::DispatchError>>>,
    /// The scheduler (with the dispatcher): a role too, so its failure stops the node.
    scheduler: Option<JoinHandle<anyhow::Result<()>>>,
    rest: Vec<JoinHandle<()>>,
}

/// Starts a node with `roles`; returns once every listener is bound.
pub async fn start(cfg: Config, roles: Roles) -> anyhow::Result<RunningNode> {
    // Configuration that cannot be served fails before anything connects.
    let auth = roles
        .ingest
        .then(|| {
            let mtls = cfg
                .grpc
                .tls
                .as_ref()
                .is_some_and(|t| t.client_ca_file.is_some());
            herald_auth::Authenticator::from_config(&cfg.auth, mtls)
        })
        .transpose()?;
    let tls = match (&cfg.grpc.tls, roles.ingest) {
        (Some(tls), true) => Some(server_tls(tls)?),
        _ => None,
    };
    let ring =
        std::sync::Arc::new(master_keys(&cfg)?.accept_plaintext(cfg.secrets.accept_plaintext));
    let metrics = install_recorder();
    let health = Health::new();
    let stop_ingest = CancellationToken::new();
    let stop_dispatch = CancellationToken::new();
    let stop_rest = CancellationToken::new();
    let mut rest = Vec::new();

    if cfg.kafka.create_topics {
        health.pending("kafka", "creating topics");
        herald_kafka::ensure_topics(&cfg.kafka, &herald_kafka::admin::topic_specs(&cfg.kafka))
            .await?;
    }
    health.ready("kafka");
    // What the broker lacks of what Herald uses, found in the background
    // (it never delays start): logged, exported, and listed by `herald
    // status`. Each gap costs re-sends, never events.
    let broker_features = std::sync::Arc::new(std::sync::OnceLock::new());
    {
        let (kafka, features) = (cfg.kafka.clone(), broker_features.clone());
        rest.push(tokio::task::spawn_blocking(move || {
            let found = herald_kafka::capabilities::probe_blocking(
                &kafka,
                &kafka.events_topic,
                Duration::from_secs(10),
            );
            found.report();
            let _ = features.set(found);
        }));
    }

    let http = TcpListener::bind(cfg.http.listen)
        .await
        .with_context(|| format!("cannot listen on {} (http.listen)", cfg.http.listen))?;
    let http_addr = http.local_addr()?;
    let worst = herald_telemetry::Worst::new(cfg.dispatch.worst_endpoints);
    rest.push(tokio::spawn(herald_telemetry::upkeep(
        metrics.clone(),
        stop_rest.clone().cancelled_owned(),
    )));
    rest.push(tokio::spawn(serve_http(
        http,
        metrics,
        health.clone(),
        worst.clone(),
        stop_rest.clone().cancelled_owned(),
    )));

    let registry = Registry::new();
    health.pending("registry", "loading the endpoint registry");
    {
        let (kafka, node, reg, stop, h, ring) = (
            cfg.kafka.clone(),
            cfg.node.id.clone(),
            registry.clone(),
            stop_rest.clone(),
            health.clone(),
            ring.clone(),
        );
        rest.push(tokio::spawn(async move {
            if let Err(e) = run_materialiser(kafka, node, reg, ring, stop.cancelled_owned()).await {
                tracing::error!(error = %e, "endpoint registry consumer stopped");
                h.pending("registry", format!("registry consumer failed: {e}"));
            }
        }));
    }
    {
        let (reg, stop, h) = (registry.clone(), stop_rest.clone(), health.clone());
        rest.push(tokio::spawn(watch_registry(reg, h, stop)));
    }

    let (grpc_addr, ingest) = if let Some(auth) = auth {
        let listener = TcpListener::bind(cfg.grpc.listen)
            .await
            .with_context(|| format!("cannot listen on {} (grpc.listen)", cfg.grpc.listen))?;
        let addr = listener.local_addr()?;
        let publisher = Publisher::new(&cfg.kafka, &cfg.grpc, &cfg.node.id, registry.clone())?;
        // Not ready (for load balancers) until this node knows every
        // idempotency key claimed before it started; keyed publishes that
        // arrive earlier are answered UNAVAILABLE at once.
        health.pending("idempotency", "reading the idempotency topic");
        {
            let (publisher, health, stop) = (publisher.clone(), health.clone(), stop_rest.clone());
            rest.push(tokio::spawn(async move {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = publisher.wait_idempotency_loaded() => health.ready("idempotency"),
                }
            }));
        }
        let writer = RegistryWriter::new(&cfg.kafka, &cfg.node.id, registry.clone(), ring.clone())?;
        // Bounds on topic scans (docs/security.md), one gate per service so
        // a caller of one (say attempts:read) cannot lock out the others.
        let gate = herald_ingest::scan_gate::ScanGate::default;
        let dead_letters = DeadLetterApi::new(
            &cfg.kafka,
            &cfg.node.id,
            registry.clone(),
            publisher.clone(),
        )
        .with_scan_gate(gate());
        let events = EventApi::new(
            publisher.clone(),
            cfg.grpc.max_batch_size,
            &cfg.kafka,
            &cfg.node.id,
        )
        .with_scan_gate(gate());
        let ops = herald_registry::Ops::new(
            publisher.producer().clone(),
            &cfg.kafka.ops_topic,
            &cfg.kafka.events_topic,
            &cfg.endpoint_health.operator_endpoint,
            registry.clone(),
            &cfg.node.id,
        );
        let event_types = EventTypeApi::new(registry.clone(), writer.clone());
        let endpoints =
            EndpointApi::new(registry.clone(), writer, cfg.delivery.egress_policy(), ops)
                .with_max_endpoints(cfg.grpc.max_endpoints)
                .with_rotation_grace(cfg.secrets.rotation_grace)
                .with_active_key(ring.active_id())
                .with_test_events(herald_ingest::test_event::TestEvents::new(
                    publisher.clone(),
                    &cfg.kafka,
                    &cfg.node.id,
                    cfg.grpc.max_payload_bytes,
                ));
        let (reporter, health_service) = tonic_health::server::health_reporter();
        {
            let reg = registry.clone();
            let (h, stop) = (health.clone(), stop_rest.clone());
            tokio::spawn(async move {
                reg.wait_loaded().await;
                reporter.set_serving::<EventServiceServer<EventApi>>().await;
                reporter
                    .set_serving::<EndpointServiceServer<EndpointApi>>()
                    .await;
                reporter
                    .set_serving::<EventTypeServiceServer<EventTypeApi>>()
                    .await;
                reporter
                    .set_serving::<DeadLetterServiceServer<DeadLetterApi>>()
                    .await;
                reporter
                    .set_serving::<ClusterServiceServer<ClusterApi>>()
                    .await;
                // The node as a whole (service "") follows /readyz.
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                let mut last = None;
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tick.tick() => {}
                    }
                    let ready = h.report().0;
                    if last != Some(ready) {
                        let status = if ready {
                            tonic_health::ServingStatus::Serving
                        } else {
                            tonic_health::ServingStatus::NotServing
                        };
                        reporter.set_service_status("", status).await;
                        last = Some(ready);
                    }
                }
            });
        }
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(herald_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        // v1 and the older v1alpha, which many clients still ask for.
        let reflection_v1alpha = reflection().build_v1alpha()?;
        let reflection = reflection().build_v1()?;
        // Room for a batch of maximum-size payloads plus framing.
        let max_msg = cfg.grpc.max_payload_bytes.saturating_mul(4).max(4 << 20) + (64 << 10);
        if !auth.is_disabled() && cfg.grpc.tls.is_none() && !cfg.grpc.listen.ip().is_loopback() {
            tracing::warn!(listen = %cfg.grpc.listen, "API tokens will cross the network in plaintext: configure [grpc.tls], or terminate TLS in front of this port");
        }
        if auth.is_disabled() {
            tracing::warn!("auth.disabled = true: every gRPC caller may publish, manage endpoints and read dead letters; use this only where every caller is trusted");
        }
        // Explicit limits (docs/security.md): streams per connection, HTTP/2
        // keepalive to drop dead peers, and caps on reset floods and header
        // lists.
        let mut builder = tonic::transport::Server::builder()
            .max_concurrent_streams(256)
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .http2_max_pending_accept_reset_streams(Some(64))
            .http2_max_local_error_reset_streams(Some(256))
            .http2_max_header_list_size(64 * 1024);
        if let Some(tls) = tls {
            builder = builder
                .tls_config(tls)
                .context("config key `grpc.tls`: the certificate or key is not usable")?;
        }
        let server = builder
            .layer(herald_auth::AuthLayer::new(auth))
            .add_service(health_service)
            .add_service(reflection)
            .add_service(reflection_v1alpha)
            .add_service(EventServiceServer::new(events).max_decoding_message_size(max_msg))
            .add_service(EndpointServiceServer::new(endpoints).max_decoding_message_size(1 << 20))
            // Schemas are at most 64 KiB (herald-catalog); room for framing.
            .add_service(
                EventTypeServiceServer::new(event_types).max_decoding_message_size(256 << 10),
            )
            .add_service(
                DeadLetterServiceServer::new(dead_letters).max_decoding_message_size(64 << 10),
            )
            .add_service(ClusterServiceServer::new(
                ClusterApi::new(&cfg.kafka, &cfg.node.id, registry.clone())
                    .with_scan_gate(gate())
                    .with_broker_features(broker_features.clone()),
            ))
            .serve_with_incoming_shutdown(
                grpc_incoming(listener),
                stop_ingest.clone().cancelled_owned(),
            );
        (Some(addr), Some(tokio::spawn(server)))
    } else {
        (None, None)
    };

    let mut scheduler = None;
    let dispatch = if roles.dispatch {
        health.pending("dispatcher", "waiting for the registry");
        let settings = DispatchSettings {
            kafka: cfg.kafka.clone(),
            dispatch: cfg.dispatch.clone(),
            retry: cfg.retry.clone(),
            endpoint_health: cfg.endpoint_health.clone(),
            worst: worst.clone(),
            delivery: delivery_config(&cfg),
            node_id: cfg.node.id.clone(),
            ring: ring.clone(),
            max_requests_per_host: cfg.delivery.max_requests_per_host_per_second,
        };
        // Scheduled events wait in the scheduled topic; every dispatcher
        // node takes a share of its tiers and moves them when they are due.
        let (kafka, node_id, stop) = (cfg.kafka.clone(), cfg.node.id.clone(), stop_rest.clone());
        scheduler = Some(tokio::spawn(scheduler_role(
            health.clone(),
            herald_dispatch::scheduler::run_scheduler(kafka, node_id, stop),
        )));
        Some(tokio::spawn(run_dispatcher(
            settings,
            registry.clone(),
            health.clone(),
            stop_dispatch.clone().cancelled_owned(),
        )))
    } else {
        None
    };

    Ok(RunningNode {
        grpc_addr,
        http_addr,
        registry,
        health,
        stop_ingest,
        stop_dispatch,
        stop_rest,
        ingest,
        dispatch,
        scheduler,
        rest,
    })
}

/// The master key ring of `[secrets]`: the configured keys, or a random
/// one when `secrets.ephemeral_key` allows it (`herald dev`).
fn master_keys(cfg: &Config) -> anyhow::Result<herald_registry::KeyRing> {
    match herald_registry::keys::load(&cfg.secrets)? {
        Some(ring) => Ok(ring),
        None if cfg.secrets.ephemeral_key => Ok(herald_registry::KeyRing::ephemeral()),
        None => anyhow::bail!(
            "config key `secrets.keys`: no master key is configured, and endpoint secrets are \
             never written to Kafka in plaintext; create one with \
             `herald secrets generate-key > /etc/herald/master.key` and add \
             [[secrets.keys]] id = \"k1\", file = \"/etc/herald/master.key\" (docs/security.md)"
        ),
    }
}

/// The gRPC server's TLS settings from `[grpc.tls]`.
fn server_tls(
    tls: &herald_core::config::GrpcTlsConfig,
) -> anyhow::Result<tonic::transport::ServerTlsConfig> {
    let read = |key: &str, path: &std::path::Path| {
        std::fs::read(path).with_context(|| {
            format!(
                "config key `grpc.tls.{key}`: cannot read {}",
                path.display()
            )
        })
    };
    let identity = tonic::transport::Identity::from_pem(
        read("cert_file", &tls.cert_file)?,
        read("key_file", &tls.key_file)?,
    );
    let mut config = tonic::transport::ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &tls.client_ca_file {
        config = config
            .client_ca_root(tonic::transport::Certificate::from_pem(read(
                "client_ca_file",
                ca,
            )?))
            .client_auth_optional(!tls.require_client_cert);
    } else if tls.require_client_cert {
        anyhow::bail!("config key `grpc.tls.require_client_cert`: needs grpc.tls.client_ca_file");
    }
    Ok(config)
}

/// The HTTP client settings from the configuration.
pub fn delivery_config(cfg: &Config) -> herald_delivery::DeliveryConfig {
    herald_delivery::DeliveryConfig {
        connect_timeout: Duration::from_millis(cfg.delivery.connect_timeout_ms),
        request_timeout: Duration::from_millis(cfg.delivery.timeout_ms),
        max_response_body: cfg.delivery.max_response_body_bytes,
        pool_idle_per_host: cfg.delivery.pool_idle_per_host,
        egress: cfg.delivery.egress_policy(),
        proxy: cfg.delivery.proxy.as_ref().and_then(|p| p.parse().ok()),
        ..Default::default()
    }
}

/// Keeps readiness and the endpoint gauge in step with the registry.
async fn watch_registry(registry: Registry, health: Health, stop: CancellationToken) {
    let mut progress = registry.progress();
    loop {
        if registry.is_loaded() {
            health.ready("registry");
        }
        let (enabled, total) = registry.count_enabled();
        metrics::gauge!(names::ENDPOINTS, "state" => "enabled").set(enabled as f64);
        metrics::gauge!(names::ENDPOINTS, "state" => "disabled").set((total - enabled) as f64);
        tokio::select! {
            _ = stop.cancelled() => return,
            r = progress.changed() => if r.is_err() { return },
        }
    }
}

impl RunningNode {
    /// Stops the node: ingest, then the dispatcher (draining), then the rest.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.stop_ingest.cancel();
        if let Some(i) = self.ingest {
            i.await?.context("gRPC server")?;
        }
        self.stop_dispatch.cancel();
        if let Some(d) = self.dispatch {
            d.await?.context("dispatcher")?;
        }
        self.stop_rest.cancel();
        if let Some(s) = self.scheduler {
            s.await?.context("scheduler")?;
        }
        for r in self.rest {
            r.await?;
        }
        Ok(())
    }

    /// Runs until `signal` resolves or a role fails, then shuts down.
    pub async fn run_until(
        mut self,
        signal: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let failed = first_failure(&mut self.ingest, &mut self.dispatch, &mut self.scheduler);
        tokio::select! {
            _ = signal => {}
            r = failed => return r,
        }
        tracing::info!("shutting down");
        self.shutdown().await
    }
}

fn describe(what: &str, r: Result<anyhow::Result<()>, tokio::task::JoinError>) -> anyhow::Error {
    match r {
        Ok(Ok(())) => anyhow::anyhow!("{what} stopped unexpectedly"),
        Ok(Err(e)) => e.context(format!("{what} failed")),
        Err(e) => anyhow::anyhow!("{what} panicked: {e}"),
    }
}

/// The gRPC listener's connections, with Nagle's algorithm off. tonic sets `TCP_NODELAY`
/// only on listeners it binds itself; with it on, the last segment of a response waited
/// for the client's delayed ACK, about 40 ms, on every call that wrote more than one.
fn grpc_incoming(
    listener: TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt as _;
    tokio_stream::wrappers::TcpListenerStream::new(listener).map(|conn| {
        let conn = conn?;
        conn.set_nodelay(true)?;
        Ok(conn)
    })
}

/// Runs the scheduler; when it stops with an error (a fatal Kafka error repeats on every
/// read), the node reports not ready with the reason and the error ends the node, as a
/// failed dispatcher does: scheduled events would otherwise wait, unseen, until a restart.
async fn scheduler_role<E: std::error::Error + Send + Sync + 'static>(
    health: Health,
    run: impl std::future::Future<Output = Result<(), E>>,
) -> anyhow::Result<()> {
    run.await.map_err(|e| {
        tracing::error!(error = %e, "the scheduler stopped; scheduled events wait until the node restarts");
        health.pending("scheduler", format!("stopped: {e}"));
        anyhow::Error::new(e)
    })
}

/// The first role to end (each one ending is a failure while the node runs), described.
async fn first_failure(
    ingest: &mut Option<JoinHandle<Result<(), tonic::transport::Error>>>,
    dispatch: &mut Option<JoinHandle<Result<(), herald_dispatch::consumer::DispatchError>>>,
    scheduler: &mut Option<JoinHandle<anyhow::Result<()>>>,
) -> anyhow::Result<()> {
    async fn join<T>(h: &mut Option<JoinHandle<T>>) -> Result<T, tokio::task::JoinError> {
        match h {
            Some(h) => h.await,
            None => std::future::pending().await,
        }
    }
    Err(tokio::select! {
        r = join(ingest) => describe("gRPC server", r.map(|r| r.map_err(anyhow::Error::from))),
        r = join(dispatch) => describe("dispatcher", r.map(|r| r.map_err(anyhow::Error::from))),
        r = join(scheduler) => describe("scheduler", r),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fenced;

    impl std::fmt::Display for Fenced {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("fatal Kafka error: fenced")
        }
    }

    impl std::error::Error for Fenced {}

    #[tokio::test]
    async fn a_failed_scheduler_makes_the_node_not_ready_and_ends_it() {
        let health = Health::new();
        health.ready("dispatcher");
        let mut scheduler = Some(tokio::spawn(scheduler_role(health.clone(), async {
            Err::<(), _>(Fenced)
        })));
        let (mut ingest, mut dispatch) = (None, None);
        let err = first_failure(&mut ingest, &mut dispatch, &mut scheduler)
            .await
            .expect_err("the scheduler's end is a failure");
        assert_eq!(
            format!("{err:#}"),
            "scheduler failed: fatal Kafka error: fenced"
        );
        let (ready, body) = health.report();
        assert!(!ready);
        assert_eq!(
            body["components"]["scheduler"]["reason"],
            "stopped: fatal Kafka error: fenced"
        );
    }

    #[tokio::test]
    async fn a_scheduler_that_stops_cleanly_leaves_readiness_alone() {
        let health = Health::new();
        let r = scheduler_role(health.clone(), async { Ok::<(), Fenced>(()) }).await;
        assert!(r.is_ok());
        assert!(health.report().0);
    }

    #[tokio::test]
    async fn grpc_connections_have_nagle_off() {
        use tokio_stream::StreamExt as _;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut incoming = std::pin::pin!(grpc_incoming(listener));
        let accepted = incoming.next().await.expect("a connection").unwrap();
        assert!(accepted.nodelay().unwrap());
        assert_eq!(accepted.peer_addr().unwrap(), client.local_addr().unwrap());
    }

    #[tokio::test]
    async fn the_first_role_to_end_is_named() {
        let mut dispatch = Some(tokio::spawn(async { Ok(()) }));
        let (mut ingest, mut scheduler) = (None, Some(tokio::spawn(std::future::pending())));
        let err = first_failure(&mut ingest, &mut dispatch, &mut scheduler)
            .await
            .expect_err("a role ended");
        assert_eq!(err.to_string(), "dispatcher stopped unexpectedly");
    }
}
