use std::sync::Arc;
use std::time::Duration;

use sagaflow_amqp::{
    consume_batches, declare_core, declare_dead_letter_watch, declare_queue, AmqpTls, Batching,
    Publisher,
};
use sagaflow_contracts::{InvalidName, Topology};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::bus::{CommittedOutbox, OutboxRelay, RelayError};
use crate::cache::SagaCache;
use crate::engine::SagaRegistry;
use crate::inbound::{fire_due_timers, Inbound, Processor, TimerWakeup};
use crate::{store, Config};

/// Runs the sagas of a [`SagaRegistry`]: consumes the start and results queues, advances sagas
/// in PostgreSQL transactions, and relays the outbox to RabbitMQ. Run as many replicas as you
/// like against the same database and broker.
pub struct Orchestrator {
    registry: SagaRegistry,
}

/// The orchestrator could not start, or stopped because a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum OrchestratorError {
    /// Fix `--namespace` / `SAGAFLOW_NAMESPACE`.
    #[error("invalid namespace: {0}")]
    Namespace(#[from] InvalidName),
    /// Fix `SAGAFLOW_PAYLOAD_KEY` (32 bytes in base64).
    #[error(transparent)]
    PayloadCodec(#[from] sagaflow_codec::CodecError),
    /// PostgreSQL is unreachable or its schema cannot be migrated.
    #[error(transparent)]
    Database(#[from] store::ConnectError),
    /// RabbitMQ is unreachable.
    #[error(transparent)]
    Broker(#[from] sagaflow_amqp::ConnectError),
    /// The TLS files for RabbitMQ cannot be used: fix the setting named.
    #[error("RabbitMQ TLS: {0}")]
    AmqpTls(#[from] sagaflow_amqp::AmqpTlsError),
    /// RabbitMQ did not accept a connection in time (`SAGAFLOW_CONNECT_TIMEOUT_SECS`). Check that
    /// the broker is reachable.
    #[error("RabbitMQ at {url} did not accept a connection within {timeout:?}. Check AMQP_URL and that the broker is reachable")]
    ConnectTimedOut { url: String, timeout: Duration },
    /// Declaring the topology or opening a channel failed.
    #[error("RabbitMQ: {0}")]
    Amqp(#[from] lapin::Error),
    /// A consumer stopped: the broker connection failed or the queue was deleted. Restart the
    /// process; unacked messages are redelivered.
    #[error(transparent)]
    Consume(#[from] sagaflow_amqp::ConsumeError),
    #[error(
        "consuming {0} stopped unexpectedly (queue deleted or consumer cancelled by the broker)"
    )]
    ConsumerStopped(String),
    /// The outbox relay failed; committed messages stay in the outbox until a relay runs.
    #[error(transparent)]
    Relay(#[from] RelayError),
    /// The HTTP API could not start (see `SAGAFLOW_API_ADDR`).
    #[error("HTTP API: {0}")]
    Api(#[from] crate::api::ServeError),
}

impl OrchestratorError {
    /// Whether the broker connection was lost while running: waited out by connecting again.
    fn is_connection_lost(&self) -> bool {
        matches!(
            self,
            OrchestratorError::Broker(_)
                | OrchestratorError::ConnectTimedOut { .. }
                | OrchestratorError::Amqp(_)
                | OrchestratorError::Consume(_)
                | OrchestratorError::ConsumerStopped(_)
                | OrchestratorError::Relay(RelayError::Broker(_))
        )
    }
}

fn api_settings(
    config: &Config,
    amqp_tls: &AmqpTls,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
) -> crate::api::ApiSettings {
    crate::api::ApiSettings {
        database_url: config.database_url.clone(),
        amqp_url: config.amqp_url.clone(),
        amqp_tls: amqp_tls.clone(),
        token: config.api_token.clone().filter(|t| !t.is_empty()),
        trace_url_template: config.trace_url_template.clone(),
        namespace: config.namespace.clone(),
        metrics,
    }
}

/// How often [`Orchestrator::run`] tries to start consuming (see
/// [`sagaflow_amqp::ConsumeError::Start`]), and the delay before the second try (growing).
const START_ATTEMPTS: u32 = 5;
const START_RETRY_DELAY: Duration = Duration::from_millis(250);
/// The longest pause between two attempts to connect to RabbitMQ again.
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(5);
/// How long closing the broker connection may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// PostgreSQL connections of the outbox relay, apart from the inbound pool.
const RELAY_CONNECTIONS: u32 = 2;

impl Orchestrator {
    pub fn new(registry: SagaRegistry) -> Self {
        Orchestrator { registry }
    }

    /// Runs until `shutdown` is cancelled, then stops consuming, finishes in-flight messages,
    /// relays what they committed, and returns.
    pub async fn run(
        self,
        config: Config,
        shutdown: CancellationToken,
    ) -> Result<(), OrchestratorError> {
        let metrics = crate::telemetry::install(config.api_addr.is_some());
        // Read once: a bad file stops the start, and every reconnection uses the same.
        let amqp_tls = config.amqp_tls.load(&config.amqp_url)?;
        let stop_api = CancellationToken::new();
        let api = match config.api_addr {
            Some(addr) => Some(
                crate::api::serve(
                    addr,
                    api_settings(&config, &amqp_tls, metrics),
                    stop_api.clone(),
                )
                .await?,
            ),
            None => None,
        };
        let result = self.run_connected(&config, &amqp_tls, shutdown).await;
        stop_api.cancel();
        if let Some(api) = api {
            let _ = api.await;
        }
        result
    }

    /// [`Orchestrator::run`] without the HTTP API. The first connections must succeed (an
    /// unreachable server at start-up is a configuration error, reported at once); after that a
    /// lost RabbitMQ connection is waited out in process: connect again with backoff, declare the
    /// topology again and resume consuming, keeping the pools and the saga cache. PostgreSQL
    /// outages are waited out by the pool (each failed message goes back to its queue).
    async fn run_connected(
        &self,
        config: &Config,
        amqp_tls: &AmqpTls,
        shutdown: CancellationToken,
    ) -> Result<(), OrchestratorError> {
        let topology = Topology::new(&config.namespace)?;
        // Checked before connecting: a bad key is a configuration error, reported at once.
        sagaflow_codec::from_env()?;
        let timeouts = config.database_timeouts();
        let pool =
            store::connect(&config.database_url, config.db_max_connections, timeouts).await?;
        // The relay has connections of its own: inbound work holding every connection of the
        // main pool must not starve the relay that makes room for it.
        let relay_pool =
            store::connect_relay_pool(&config.database_url, RELAY_CONNECTIONS, timeouts)?;
        // Stopped when this returns, however it returns.
        let stop_gauges = shutdown.child_token();
        let _stop_gauges = stop_gauges.clone().drop_guard();
        if let Some(every) = sagaflow_process::otlp_metrics_interval() {
            tokio::spawn(export_stored_gauges(pool.clone(), every, stop_gauges));
        }
        let mut connection = self
            .connect_broker(config, amqp_tls, &shutdown, false)
            .await?;
        let mut processor: Option<Arc<Processor>> = None;
        let mut consume_starts = 1;
        loop {
            let Some(live) = connection.take() else {
                return Ok(());
            };
            let result = self
                .run_connection(
                    config,
                    &topology,
                    &pool,
                    &relay_pool,
                    &live,
                    &mut processor,
                    shutdown.clone(),
                )
                .await;
            close_broker(&live, "orchestrator stopping").await;
            match result {
                Ok(()) => {
                    if let Ok(connection) = Arc::try_unwrap(live) {
                        sagaflow_amqp::wait_for_io_thread(connection, CLOSE_TIMEOUT).await;
                    }
                    tracing::info!("orchestrator stopped");
                    return Ok(());
                }
                Err(OrchestratorError::Consume(error))
                    if error.is_start()
                        && consume_starts < START_ATTEMPTS
                        && !shutdown.is_cancelled() =>
                {
                    tracing::warn!(%error, attempt = consume_starts, "consuming did not start; connecting again");
                    tokio::time::sleep(START_RETRY_DELAY * consume_starts).await;
                    consume_starts += 1;
                }
                Err(error) if error.is_connection_lost() && !shutdown.is_cancelled() => {
                    tracing::warn!(%error, "lost RabbitMQ; waiting for it to come back (the saga cache is kept)");
                }
                Err(error) => return Err(error),
            }
            if shutdown.is_cancelled() {
                return Ok(());
            }
            connection = self
                .connect_broker(config, amqp_tls, &shutdown, true)
                .await?;
        }
    }

    /// Connects to RabbitMQ within [`Config::connect_timeout`]. With `wait`, tries again with
    /// backoff (capped at [`RECONNECT_MAX_DELAY`]) until it succeeds or `shutdown`; `None` when
    /// shut down.
    async fn connect_broker(
        &self,
        config: &Config,
        amqp_tls: &AmqpTls,
        shutdown: &CancellationToken,
        wait: bool,
    ) -> Result<Option<Arc<lapin::Connection>>, OrchestratorError> {
        use backon::{ExponentialBuilder, Retryable};
        let timeout = config.connect_timeout();
        let attempt = || async {
            match tokio::time::timeout(
                timeout,
                sagaflow_amqp::connect_with_tls(
                    &config.amqp_url,
                    "sagaflow-orchestrator",
                    amqp_tls,
                ),
            )
            .await
            {
                Ok(connected) => connected.map_err(OrchestratorError::Broker),
                Err(_) => Err(OrchestratorError::ConnectTimedOut {
                    url: sagaflow_amqp::redact(&config.amqp_url),
                    timeout,
                }),
            }
        };
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(RECONNECT_MAX_DELAY)
            .with_jitter()
            .without_max_times();
        let connecting = attempt.retry(backoff).when(|_| wait).notify(
            |error, delay| tracing::warn!(%error, ?delay, "waiting for RabbitMQ: connecting again"),
        );
        tokio::select! {
            _ = shutdown.cancelled() => Ok(None),
            connected = connecting => {
                let connection = connected?;
                if wait {
                    tracing::info!("connected to RabbitMQ again");
                }
                Ok(Some(Arc::new(connection)))
            }
        }
    }

    /// One connection's life, from declaring the topology to a clean stop or a failure. The
    /// processor (and its saga cache) is created on the first connection and kept after.
    #[allow(clippy::too_many_arguments)]
    async fn run_connection(
        &self,
        config: &Config,
        topology: &Topology,
        pool: &sqlx::PgPool,
        relay_pool: &sqlx::PgPool,
        connection: &Arc<lapin::Connection>,
        processor_slot: &mut Option<Arc<Processor>>,
        shutdown: CancellationToken,
    ) -> Result<(), OrchestratorError> {
        let declaring = connection.create_channel().await?;
        declare_core(&declaring, topology, config.queue_type).await?;
        declare_dead_letter_watch(&declaring, topology, config.queue_type).await?;
        for queue in [topology.signals_queue(), topology.control_queue()] {
            declare_queue(&declaring, topology, config.queue_type, &queue).await?;
        }
        let _ = declaring.close(200, "declared").await;

        let publisher = Publisher::open(connection).await?;
        let processor = match processor_slot {
            Some(processor) => {
                processor.replace_publisher(publisher);
                processor.clone()
            }
            None => {
                let codec = sagaflow_codec::from_env()?;
                let processor = Arc::new(Processor {
                    pool: pool.clone(),
                    registry: self.registry.clone(),
                    cache: SagaCache::new(config.cache_size),
                    topology: topology.clone(),
                    publisher: std::sync::RwLock::new(publisher),
                    committed_outbox: CommittedOutbox::default(),
                    outbox_handover: config.outbox_handover(),
                    timer_wakeup: Arc::default(),
                    max_message_bytes: config.max_message_bytes,
                    max_command_bytes: usize::try_from(config.max_command_bytes)
                        .unwrap_or(usize::MAX),
                    codec: codec.clone(),
                    defaults: config.default_activity_options(),
                    unknown_saga_type_grace: std::time::Duration::from_secs(
                        config.unknown_saga_type_grace_secs,
                    ),
                    work_timeout: config.database_timeouts().work,
                });
                *processor_slot = Some(processor.clone());
                processor
            }
        };
        let relay = OutboxRelay {
            pool: relay_pool.clone(),
            publisher: Publisher::open(connection).await?,
            topology: topology.clone(),
            queue_type: config.queue_type,
            committed: processor.committed_outbox.clone(),
            poll_interval: config.outbox_poll_interval(),
            batch_size: config.outbox_batch,
            confirm_timeout: config.confirm_timeout(),
            lease: config.outbox_lease(),
            max_attempts: config.outbox_max_attempts,
            work_timeout: config.database_timeouts().work,
            connection: connection.clone(),
            deletes: Default::default(),
        };
        let stop_relay = CancellationToken::new();
        let mut relay = tokio::spawn(relay.run(stop_relay.clone()));
        let stop_timers = CancellationToken::new();
        let timer_claimer = tokio::spawn(claim_timers(
            processor.clone(),
            processor.timer_wakeup.clone(),
            config.timer_poll_interval(),
            stop_timers.clone(),
        ));

        let stop_consuming = CancellationToken::new();
        let mut consumers = JoinSet::new();
        let inbound_queues = [
            (Inbound::Start, topology.start_queue()),
            (Inbound::Results, topology.results_queue()),
            (Inbound::Heartbeats, topology.heartbeats_queue()),
            (Inbound::DeadLetters, topology.dead_letter_watch_queue()),
            (Inbound::Signals, topology.signals_queue()),
            (Inbound::Control, topology.control_queue()),
        ];
        let queue_depths = sagaflow_process::metrics_enabled().then(|| {
            let queues: Vec<String> = inbound_queues.iter().map(|(_, q)| q.clone()).collect();
            tokio::spawn(watch_consumer_lag(
                connection.clone(),
                queues,
                stop_consuming.clone(),
            ))
        });
        for (inbound, queue) in inbound_queues {
            let channel = connection.create_channel().await?;
            let processor = processor.clone();
            let stop = stop_consuming.clone();
            let batching = Batching {
                prefetch: config.prefetch,
                max_batch: config.max_batch,
            };
            consumers.spawn(async move {
                let handle = move |deliveries| {
                    let processor = processor.clone();
                    async move { processor.handle_batch(inbound, deliveries).await }
                };
                consume_batches(&channel, &queue, batching, stop.clone(), handle).await?;
                match stop.is_cancelled() {
                    true => Ok(()),
                    false => Err(OrchestratorError::ConsumerStopped(queue)),
                }
            });
        }
        tracing::info!(namespace = topology.namespace(), sagas = ?processor.registry.names(), "orchestrator running");

        let mut failure = tokio::select! {
            _ = shutdown.cancelled() => None,
            Some(stopped) = consumers.join_next() => Some(flatten(stopped)),
            stopped = &mut relay => Some(flatten(stopped.map(|r| r.map_err(OrchestratorError::from)))),
        };
        stop_consuming.cancel();
        stop_timers.cancel();
        let _ = timer_claimer.await;
        if let Some(queue_depths) = queue_depths {
            let _ = queue_depths.await;
        }
        while let Some(stopped) = consumers.join_next().await {
            if let Err(error) = flatten(stopped) {
                failure.get_or_insert(Err(error));
            }
        }
        stop_relay.cancel();
        if !relay.is_finished() {
            if let Err(error) = flatten(relay.await.map(|r| r.map_err(OrchestratorError::from))) {
                failure.get_or_insert(Err(error));
            }
        }
        // Nothing publishes on it any more: closed before the connection (see `consume`).
        let publisher = processor.publisher();
        let closing = publisher.channel().close(200, "orchestrator stopping");
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, closing).await;
        match failure {
            Some(Err(error)) => Err(error),
            _ => Ok(()),
        }
    }
}

/// Sets [`crate::telemetry::CONSUMER_LAG`] of each of `queues` until `stop`.
async fn watch_consumer_lag(
    connection: Arc<lapin::Connection>,
    queues: Vec<String>,
    stop: CancellationToken,
) {
    use crate::telemetry::{CONSUMER_LAG, QUEUE_DEPTH_INTERVAL};
    sagaflow_amqp::watch_queue_depths(
        &connection,
        &queues,
        QUEUE_DEPTH_INTERVAL,
        stop,
        |queue, ready| {
            metrics::gauge!(CONSUMER_LAG, "queue" => queue.to_owned()).set(f64::from(ready))
        },
    )
    .await
}

/// Refreshes the gauges of stored state every `every` until `stop`, for the OTLP exporter
/// (`/metrics` refreshes them at each scrape).
async fn export_stored_gauges(pool: sqlx::PgPool, every: Duration, stop: CancellationToken) {
    loop {
        if let Err(error) = crate::telemetry::record_stored_gauges(&pool).await {
            tracing::debug!(%error, "cannot read the stored-state gauges");
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// Closes `connection` within [`CLOSE_TIMEOUT`], so that the AMQP client's I/O loop ends before
/// the runtime does (a connection dropped with the runtime logs an error from lapin).
async fn close_broker(connection: &lapin::Connection, why: &str) {
    if connection.status().connected() {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, connection.close(200, why)).await;
    }
}

fn flatten(
    joined: Result<Result<(), OrchestratorError>, tokio::task::JoinError>,
) -> Result<(), OrchestratorError> {
    joined.unwrap_or_else(|panic| {
        Err(OrchestratorError::ConsumerStopped(format!(
            "a task panicked: {panic}"
        )))
    })
}

/// Timers fired per transaction batch before the claimer looks again.
const TIMER_BATCH: i64 = 64;

/// Fires due timers until `shutdown`: at the next timer's time (or earlier when this process
/// arms one due before then), and at least every `poll` for timers other replicas armed. A database failure
/// is logged and tried again at the next poll: timers are rows, nothing is lost.
async fn claim_timers(
    processor: Arc<Processor>,
    wakeup: Arc<TimerWakeup>,
    poll: std::time::Duration,
    shutdown: CancellationToken,
) {
    while !shutdown.is_cancelled() {
        let wait = match fire_due_timers(&processor, TIMER_BATCH).await {
            Ok(due) if due as i64 == TIMER_BATCH => continue,
            Ok(_) => match processor
                .within_deadline(store::next_fire_at(&processor.pool))
                .await
            {
                Ok(Ok(Some(next))) => (next - chrono::Utc::now())
                    .to_std()
                    .unwrap_or_default()
                    .min(poll),
                Ok(Ok(None)) => poll,
                Ok(Err(error)) => {
                    tracing::warn!(%error, "cannot read the next timer; polling");
                    poll
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot read the next timer; polling");
                    poll
                }
            },
            Err(error) => {
                tracing::warn!(%error, "cannot fire timers; trying again");
                poll
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = wakeup.wait(tokio::time::Instant::now() + wait) => {}
        }
    }
}
