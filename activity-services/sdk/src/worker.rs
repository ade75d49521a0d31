//! [`ActivityWorker`]: consume each activity's queue, run its handler, publish the result with a
//! confirm, then ack.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use lapin::options::{
    BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::ExchangeKind;

use sagaflow_amqp::{
    consume, dead_letter, declare_activity_queue, declare_core, header, Channel, ConnectError,
    Connection, ConsumeError, Delivery, OutgoingMessage, PublishError, Publisher,
};
use sagaflow_contracts::{
    error_kinds, headers, reason, validate_name, ActivityCommand, ActivityError, ActivityOutcome,
    IdempotencyKey, InvalidName, StepSeq, Topology,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::cancel::{parse_cancel, CancelMatch, InFlightAttempts};
use crate::delivery::check_delivery;
use crate::handler::{erase, ErasedHandler};
use crate::heartbeat::Heartbeats;
use crate::outgoing::{attempt_headers, result_message};
use crate::{ActivityContext, WorkerConfig};

/// How long to wait before returning a command whose result the broker refused, so that a
/// broker in trouble is not hammered with redeliveries.
const REFUSED_REPLY_BACKOFF: Duration = Duration::from_secs(1);
/// The longest `traceparent` / `tracestate` copied from a command to its result (W3C Trace
/// Context allows 512 bytes of `tracestate`).
const MAX_TRACE_HEADER_BYTES: usize = 512;
/// How long closing the connection may take at the end of [`ActivityWorker::run`].
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the handlers of one or more activities. Build it with [`ActivityWorker::new`], add
/// handlers with [`ActivityWorker::register`], then [`ActivityWorker::run`] it.
pub struct ActivityWorker {
    config: WorkerConfig,
    activities: Vec<(String, ErasedHandler)>,
}

/// Why [`ActivityWorker::run`] stopped with an error. Every variant is fatal for the worker: the
/// binary should exit non-zero so its supervisor restarts it. Commands that were not acked are
/// redelivered, so nothing is lost.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// No activity was registered. Call [`ActivityWorker::register`] before `run`.
    #[error("no activity registered: call ActivityWorker::register before run")]
    NoActivities,
    /// The payload codec cannot be set up: fix `SAGAFLOW_PAYLOAD_KEY` (32 bytes in base64).
    #[error(transparent)]
    PayloadCodec(sagaflow_codec::CodecError),
    /// An activity name cannot be used in a queue name. Register it under a valid name.
    #[error("cannot register the activity: {0}")]
    InvalidActivityName(#[source] InvalidName),
    /// The same activity was registered twice. Register each activity once.
    #[error("activity {activity:?} is registered twice; register each activity once")]
    DuplicateActivity {
        /// The name registered twice.
        activity: String,
    },
    /// RabbitMQ refused the connection or could not be reached. Check `AMQP_URL` and that the
    /// broker is running, then start again.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The TLS files for RabbitMQ ([`WorkerConfig::amqp_tls`]) cannot be used. Fix the file or
    /// setting named, then start again.
    #[error("RabbitMQ TLS: {0}")]
    Tls(#[from] sagaflow_amqp::AmqpTlsError),
    /// RabbitMQ did not accept the connection in time
    /// ([`WorkerConfig::connect_timeout`]). Check that the broker is reachable, then start again.
    #[error("RabbitMQ at {url} did not accept a connection within {timeout:?}. Check AMQP_URL and that the broker is reachable")]
    ConnectTimedOut {
        /// The URL without its password.
        url: String,
        /// How long it waited.
        timeout: Duration,
    },
    /// A channel could not be opened: the connection failed. Start again.
    #[error("cannot open a RabbitMQ channel: {0}. Start the service again")]
    Channel(#[source] lapin::Error),
    /// A queue or exchange could not be declared. Most often it already exists with other
    /// arguments: use the same `SAGAFLOW_QUEUE_TYPE` as the orchestrator.
    #[error("cannot declare {what}: {source}. If it exists with other arguments, use the same SAGAFLOW_QUEUE_TYPE as the orchestrator")]
    Declare {
        /// What was being declared.
        what: String,
        /// The broker's answer.
        #[source]
        source: lapin::Error,
    },
    /// The broker connection failed while consuming. Start the service again; unacked commands
    /// are redelivered.
    #[error(transparent)]
    Consume(#[from] ConsumeError),
    /// The broker stopped delivering from a queue without being asked (was it deleted?). Start
    /// the service again: it declares the queue again.
    #[error("the broker stopped delivering from {queue:?} (was the queue deleted?). Start the service again to declare it")]
    ConsumerCancelled {
        /// The queue.
        queue: String,
    },
    /// The broker connection failed while listening for
    /// [`ActivityCancel`](sagaflow_contracts::ActivityCancel)s on the worker's own queue. Start
    /// the service again; unacked commands are redelivered.
    #[error("listening for activity cancels on {queue:?} failed: {source}. Start the service again; unacked commands are redelivered")]
    CancelsConsumer {
        /// The worker's server-named cancels queue.
        queue: String,
        /// The broker's answer.
        #[source]
        source: lapin::Error,
    },
    /// `/metrics` could not be served on [`WorkerConfig::metrics_addr`]: another process listens
    /// there, or the address is not this machine's. Fix `SAGAFLOW_METRICS_ADDR`.
    #[error("cannot serve /metrics on {addr}: {source}. Fix SAGAFLOW_METRICS_ADDR")]
    Metrics {
        /// The address configured.
        addr: std::net::SocketAddr,
        /// Why it could not be bound.
        #[source]
        source: std::io::Error,
    },
    /// The SIGTERM/SIGINT handlers could not be installed
    /// ([`ActivityWorker::run_until_signalled`]).
    #[error("cannot listen for SIGTERM/SIGINT: {0}")]
    Signals(#[source] std::io::Error),
    /// Results can no longer be published (the channel failed, or the results queue is gone).
    /// Start the service again; the commands whose results were not confirmed are redelivered.
    #[error("cannot publish activity results any more: {0}. Start the service again; unconfirmed commands are redelivered")]
    Reply(#[source] PublishError),
}

impl ActivityWorker {
    /// A worker with no activities yet.
    pub fn new(config: WorkerConfig) -> Self {
        ActivityWorker {
            config,
            activities: Vec::new(),
        }
    }

    /// Runs `handler` for every command of `activity`.
    ///
    /// The command's input is deserialized into `I`; an input that does not fit fails the step
    /// permanently with kind `InvalidInput`. The handler's `Ok` output is serialized as the
    /// step's output. An error is reported as the attempt's failed result, like any other
    /// outcome: an [`ActivityError::permanent`] one with `retryable: false`, an
    /// [`ActivityError::transient`] one with `retryable: true`. Retries are the orchestrator's:
    /// it waits as the step's retry policy says and sends the next attempt as a new command
    /// (same idempotency key, [`ActivityContext::attempt`] one higher). A panic fails the attempt
    /// permanently with kind `ActivityPanicked`.
    ///
    /// A command can be delivered more than once (after a crash, or a lost connection): do the
    /// effect once per [`ActivityContext::idempotency_key`].
    ///
    /// The name is checked when the worker runs (see [`WorkerError::InvalidActivityName`]).
    pub fn register<I, O, F, Fut>(mut self, activity: impl Into<String>, handler: F) -> Self
    where
        I: DeserializeOwned + Send + 'static,
        O: Serialize + Send + 'static,
        F: Fn(ActivityContext, I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, ActivityError>> + Send + 'static,
    {
        self.activities.push((activity.into(), erase(handler)));
        self
    }

    /// The configuration the worker runs with.
    pub fn config(&self) -> &WorkerConfig {
        &self.config
    }

    /// Runs until the first SIGTERM or SIGINT, then stops gracefully: what a service's `main`
    /// does. See [`ActivityWorker::run`].
    pub async fn run_until_signalled(self) -> Result<(), WorkerError> {
        let shutdown = crate::shutdown_on_signals().map_err(WorkerError::Signals)?;
        self.run(shutdown).await
    }

    /// Connects, declares the topology and the queue of every registered activity, and consumes
    /// them until `shutdown` is cancelled. Then it stops taking commands, finishes those in
    /// flight, closes the connection and returns `Ok`.
    ///
    /// It also binds a queue of its own (server-named, exclusive, auto-delete) to the fanout
    /// exchange `<namespace>.activity-cancels` and trips the cancellation of the running attempt
    /// each [`ActivityCancel`](sagaflow_contracts::ActivityCancel) names (see
    /// [`ActivityContext::cancelled`]), also while in-flight attempts finish at shutdown.
    ///
    /// Returns an error when it cannot start or when the broker connection fails while running;
    /// see [`WorkerError`].
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), WorkerError> {
        let activities = checked_activities(self.activities)?;
        // Read once: a bad file stops the start, and every reconnection uses the same.
        let tls = self.config.amqp_tls.load(&self.config.amqp_url)?;
        if self.config.payload_codec.is_none() {
            self.config.payload_codec =
                Some(sagaflow_codec::from_env().map_err(WorkerError::PayloadCodec)?);
        }
        let metrics = crate::worker_metrics::install(self.config.metrics_addr.is_some());
        // The /metrics server stops when this returns, however it returns.
        let stop_metrics = CancellationToken::new();
        let _stop_metrics = stop_metrics.clone().drop_guard();
        if let (Some(addr), Some(handle)) = (self.config.metrics_addr, metrics) {
            let (local, _server) = sagaflow_process::serve_metrics(addr, handle, stop_metrics)
                .await
                .map_err(|source| WorkerError::Metrics { addr, source })?;
            tracing::info!(addr = %local, "serving /metrics");
        }
        let mut attempt = 1;
        // The first connection must succeed (an unreachable broker at start-up is reported at
        // once); after that, a lost connection is waited out with backoff.
        let mut connected = false;
        loop {
            let served = connect_and_serve(
                &self.config,
                &tls,
                activities.clone(),
                shutdown.clone(),
                &mut connected,
            )
            .await;
            match served {
                Err(WorkerError::Consume(error))
                    if error.is_start() && attempt < START_ATTEMPTS && !shutdown.is_cancelled() =>
                {
                    tracing::warn!(%error, attempt, "consuming did not start; connecting again");
                    tokio::time::sleep(START_RETRY_DELAY * attempt).await;
                    attempt += 1;
                }
                Err(error)
                    if connected && error.is_connection_lost() && !shutdown.is_cancelled() =>
                {
                    tracing::warn!(%error, "lost RabbitMQ; waiting for it to come back");
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(START_RETRY_DELAY) => {}
                    }
                }
                result => return result,
            }
        }
    }
}

impl WorkerError {
    /// Whether the broker connection was lost or broke while running (waited out by
    /// connecting again), rather than a mistake of configuration or code.
    fn is_connection_lost(&self) -> bool {
        match self {
            WorkerError::Connect(_)
            | WorkerError::ConnectTimedOut { .. }
            | WorkerError::Channel(_)
            | WorkerError::Consume(_)
            | WorkerError::ConsumerCancelled { .. }
            | WorkerError::CancelsConsumer { .. }
            | WorkerError::Reply(_) => true,
            // A queue declared with other arguments stays so; anything else is the connection.
            WorkerError::Declare { source, .. } => !matches!(
                source,
                lapin::Error::ProtocolError(error)
                    if error.kind() == &lapin::protocol::AMQPErrorKind::Soft(lapin::protocol::AMQPSoftError::PRECONDITIONFAILED)
            ),
            _ => false,
        }
    }
}

/// How often [`ActivityWorker::run`] tries to start consuming (see
/// [`sagaflow_amqp::ConsumeError::Start`]), and the delay before the second try (growing).
const START_ATTEMPTS: u32 = 5;
const START_RETRY_DELAY: Duration = Duration::from_millis(250);
/// The longest pause between two attempts to connect to RabbitMQ again.
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(5);

/// One connection's life: connect, declare, consume until `shutdown` or a failure, close.
async fn connect_and_serve(
    config: &WorkerConfig,
    tls: &sagaflow_amqp::AmqpTls,
    activities: Vec<(String, ErasedHandler)>,
    shutdown: CancellationToken,
    connected_before: &mut bool,
) -> Result<(), WorkerError> {
    use backon::{ExponentialBuilder, Retryable};
    let url = sagaflow_amqp::redact(&config.amqp_url);
    let wait = *connected_before;
    let attempt = || async {
        tokio::time::timeout(
            config.connect_timeout,
            sagaflow_amqp::connect_with_tls(&config.amqp_url, &config.service_name, tls),
        )
        .await
        .map_err(|_| WorkerError::ConnectTimedOut {
            url: url.clone(),
            timeout: config.connect_timeout,
        })?
        .map_err(WorkerError::from)
    };
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(RECONNECT_MAX_DELAY)
        .with_jitter()
        .without_max_times();
    let connect = attempt.retry(backoff).when(|_| wait).notify(
        |error, delay| tracing::warn!(%error, ?delay, "waiting for RabbitMQ: connecting again"),
    );
    let connection = tokio::select! {
        _ = shutdown.cancelled() => return Ok(()),
        connected = connect => connected?,
    };
    *connected_before = true;
    tracing::info!(
        service = config.service_name,
        url,
        namespace = config.topology.namespace(),
        activities = ?activities.iter().map(|(name, _)| name.as_str()).collect::<Vec<_>>(),
        "connected to RabbitMQ"
    );
    let result = serve(&connection, config, activities, shutdown).await;
    match tokio::time::timeout(CLOSE_TIMEOUT, connection.close(200, "worker stopped")).await {
        Ok(Ok(())) => sagaflow_amqp::wait_for_io_thread(connection, CLOSE_TIMEOUT).await,
        // After a failure the connection is usually gone already: nothing to report.
        Ok(Err(error)) if result.is_ok() => {
            tracing::warn!(%error, "closing the RabbitMQ connection failed")
        }
        Err(_) if result.is_ok() => tracing::warn!("closing the RabbitMQ connection timed out"),
        _ => {}
    }
    if result.is_ok() {
        tracing::info!(service = config.service_name, "stopped");
    }
    result
}

fn checked_activities(
    activities: Vec<(String, ErasedHandler)>,
) -> Result<Vec<(String, ErasedHandler)>, WorkerError> {
    if activities.is_empty() {
        return Err(WorkerError::NoActivities);
    }
    for (index, (name, _)) in activities.iter().enumerate() {
        validate_name(name).map_err(WorkerError::InvalidActivityName)?;
        if activities[..index].iter().any(|(other, _)| other == name) {
            return Err(WorkerError::DuplicateActivity {
                activity: name.clone(),
            });
        }
    }
    Ok(activities)
}

/// Declares, then consumes every activity queue until `shutdown` or a failure.
async fn serve(
    connection: &Connection,
    config: &WorkerConfig,
    activities: Vec<(String, ErasedHandler)>,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    let topology = &config.topology;
    let publisher = Publisher::open(connection)
        .await
        .map_err(WorkerError::Channel)?;
    declare_core(publisher.channel(), topology, config.queue_type)
        .await
        .map_err(|source| WorkerError::Declare {
            what: "the dead-letter, start, results and heartbeats queues".to_owned(),
            source,
        })?;
    let failure = Arc::new(Failure {
        stop: shutdown.child_token(),
        first: Mutex::new(None),
    });
    let in_flight = InFlightAttempts::new(activities.iter().map(|(name, _)| name.clone()));
    let cancels = declare_cancels_queue(connection, topology).await?;
    let mut consumers = Vec::with_capacity(activities.len());
    let mut queues = Vec::with_capacity(activities.len());
    for (activity, handler) in activities {
        let queue = topology.activity_queue(&activity);
        queues.push(queue.clone());
        declare_activity_queue(publisher.channel(), topology, config.queue_type, &activity)
            .await
            .map_err(|source| WorkerError::Declare {
                what: format!("queue {queue:?}"),
                source,
            })?;
        let channel = connection
            .create_channel()
            .await
            .map_err(WorkerError::Channel)?;
        let queue = Arc::new(ActivityQueue {
            activity,
            queue,
            handler,
            publisher: publisher.clone(),
            topology: topology.clone(),
            max_message_bytes: config.max_message_bytes,
            codec: config
                .payload_codec
                .clone()
                .unwrap_or_else(|| Arc::new(sagaflow_codec::Plain)),
            failure: Arc::clone(&failure),
            in_flight: Arc::clone(&in_flight),
        });
        consumers.push(consume_queue(channel, queue, config.concurrency));
    }
    tracing::info!(
        concurrency = config.concurrency,
        "consuming activity commands"
    );
    // Cancels are listened to until the last in-flight attempt has finished, shutdown included.
    let attempts_done = CancellationToken::new();
    let queue_depths = async {
        if sagaflow_process::metrics_enabled() {
            watch_consumer_lag(connection, &queues, attempts_done.clone()).await
        }
    };
    let commands = async {
        futures::future::join_all(consumers).await;
        attempts_done.cancel();
    };
    futures::join!(
        commands,
        queue_depths,
        listen_for_cancels(
            cancels,
            in_flight,
            config.max_message_bytes,
            &failure,
            attempts_done.clone()
        )
    );
    let _ = publisher.channel().close(200, "worker stopped").await;
    failure.take()
}

/// Sets [`crate::worker_metrics::CONSUMER_LAG`] of each of `queues` until `stop`.
async fn watch_consumer_lag(connection: &Connection, queues: &[String], stop: CancellationToken) {
    use crate::worker_metrics::{CONSUMER_LAG, QUEUE_DEPTH_INTERVAL};
    sagaflow_amqp::watch_queue_depths(
        connection,
        queues,
        QUEUE_DEPTH_INTERVAL,
        stop,
        |queue, ready| {
            metrics::gauge!(CONSUMER_LAG, "queue" => queue.to_owned()).set(f64::from(ready))
        },
    )
    .await
}

/// The worker's own queue of [`ActivityCancel`](sagaflow_contracts::ActivityCancel)s, on a
/// channel of its own.
struct CancelsQueue {
    channel: Channel,
    queue: String,
}

/// Declares the durable fanout exchange of activity cancels, and a server-named, exclusive,
/// auto-delete queue bound to it: every worker sees every cancel, and its queue goes away with
/// its connection.
async fn declare_cancels_queue(
    connection: &Connection,
    topology: &Topology,
) -> Result<CancelsQueue, WorkerError> {
    let exchange = topology.activity_cancels_exchange();
    let declare_error = |what: String| {
        move |source| WorkerError::Declare {
            what: what.clone(),
            source,
        }
    };
    let channel = connection
        .create_channel()
        .await
        .map_err(WorkerError::Channel)?;
    channel
        .exchange_declare(
            &exchange,
            ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(declare_error(format!("exchange {exchange:?}")))?;
    // Exclusive queues are classic queues; said explicitly in case the virtual host defaults to
    // quorum.
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("classic".into()),
    );
    let queue = channel
        .queue_declare(
            "",
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            arguments,
        )
        .await
        .map_err(declare_error(format!(
            "a queue of this worker for the exchange {exchange:?}"
        )))?
        .name()
        .to_string();
    channel
        .queue_bind(
            &queue,
            &exchange,
            "",
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(declare_error(format!(
            "the binding of {queue:?} to {exchange:?}"
        )))?;
    Ok(CancelsQueue { channel, queue })
}

/// Consumes the worker's cancels queue (auto-ack: a lost cancel only means an attempt runs to
/// its end) and cancels the attempts they name, until `attempts_done`. Messages that are not
/// cancels are ignored with a warning.
async fn listen_for_cancels(
    cancels: CancelsQueue,
    in_flight: Arc<InFlightAttempts>,
    max_message_bytes: usize,
    failure: &Failure,
    attempts_done: CancellationToken,
) {
    let CancelsQueue { channel, queue } = cancels;
    let consumer = channel
        .basic_consume(
            &queue,
            "",
            BasicConsumeOptions {
                no_ack: true,
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await;
    let mut consumer = match consumer {
        Ok(consumer) => consumer,
        Err(source) => return failure.fail(WorkerError::CancelsConsumer { queue, source }),
    };
    loop {
        let delivery = tokio::select! {
            _ = attempts_done.cancelled() => break,
            next = consumer.next() => next,
        };
        match delivery {
            Some(Ok(delivery)) => {
                let message_type = delivery.properties.kind().as_ref().map(|t| t.as_str());
                match parse_cancel(message_type, &delivery.data, max_message_bytes) {
                    Ok(cancel) => {
                        let matched = in_flight.cancel(&cancel);
                        if matched != CancelMatch::NotOurs {
                            // One of this worker's activities: a bounded label.
                            metrics::counter!(
                                crate::worker_metrics::CANCELS,
                                "activity" => cancel.activity.clone(),
                                "running" => if matched == CancelMatch::Running { "true" } else { "false" }
                            )
                            .increment(1);
                            tracing::info!(
                                saga_id = %cancel.saga_id,
                                step = cancel.step.0,
                                attempt = cancel.attempt,
                                activity = reason::truncate(&cancel.activity, 128).as_ref(),
                                reason = reason::truncate(&cancel.reason, 256).as_ref(),
                                running = matched == CancelMatch::Running,
                                "the orchestrator cancelled an attempt"
                            );
                        }
                    }
                    Err(ignored) => {
                        tracing::warn!(queue, reason = %ignored, "ignoring a message on the activity cancels queue")
                    }
                }
            }
            Some(Err(source)) => {
                return failure.fail(WorkerError::CancelsConsumer { queue, source });
            }
            None if attempts_done.is_cancelled() || failure.stop.is_cancelled() => break,
            None => return failure.fail(WorkerError::ConsumerCancelled { queue }),
        }
    }
    // Best effort: after a failure the channel is usually gone already.
    let _ = channel.close(200, "worker stopped").await;
}

/// Consumes one activity queue until the worker stops, recording why it stopped if it was not
/// asked to.
async fn consume_queue(channel: Channel, queue: Arc<ActivityQueue>, concurrency: u16) {
    let stop = queue.failure.stop.clone();
    let handling = Arc::clone(&queue);
    let result = consume(
        &channel,
        &queue.queue,
        concurrency,
        stop.clone(),
        move |delivery| {
            let queue = Arc::clone(&handling);
            async move { queue.handle(delivery).await }
        },
    )
    .await;
    match result {
        Err(error) => queue.failure.fail(error.into()),
        Ok(()) if !stop.is_cancelled() => queue.failure.fail(WorkerError::ConsumerCancelled {
            queue: queue.queue.clone(),
        }),
        Ok(()) => {}
    }
    // Best effort: after a failure the channel is usually gone already.
    let _ = channel.close(200, "worker stopped").await;
}

/// The first fatal error of a running worker, and the token that stops every consumer.
struct Failure {
    stop: CancellationToken,
    first: Mutex<Option<WorkerError>>,
}

impl Failure {
    fn fail(&self, error: WorkerError) {
        tracing::error!(%error, "stopping the worker");
        let mut first = self
            .first
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        first.get_or_insert(error);
        self.stop.cancel();
    }

    fn take(&self) -> Result<(), WorkerError> {
        let mut first = self
            .first
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        first.take().map_or(Ok(()), Err)
    }
}

/// One activity's queue and handler, shared by its in-flight deliveries.
struct ActivityQueue {
    activity: String,
    queue: String,
    handler: ErasedHandler,
    publisher: Publisher,
    topology: Topology,
    max_message_bytes: usize,
    codec: sagaflow_codec::SharedCodec,
    failure: Arc<Failure>,
    in_flight: Arc<InFlightAttempts>,
}

impl ActivityQueue {
    /// Runs, replies to and acks one delivery, or dead-letters it if it is not a command for
    /// this queue. Never panics on input.
    async fn handle(&self, delivery: Delivery) {
        let checked = check_delivery(
            &delivery.properties,
            &delivery.data,
            &self.activity,
            self.max_message_bytes,
        );
        let command = match checked {
            Ok(command) => command,
            Err(rejection) => {
                let reason = reason::bounded(&rejection.to_string()).into_owned();
                let told_the_saga = self.command_from_headers(&delivery);
                if let Some(command) = &told_the_saga {
                    // The saga must learn that this step cannot run, or it would wait forever.
                    let failed = ActivityOutcome::Failed {
                        error: ActivityError::permanent("CommandRejected", reason.clone()),
                    };
                    let reply = self.reply_message(command, failed, &delivery);
                    if let Err(error) = self.publisher.publish_confirmed(&reply).await {
                        return self.return_command(&delivery, error).await;
                    }
                }
                let moved = dead_letter(
                    &self.publisher,
                    &self.topology,
                    &delivery,
                    &self.queue,
                    &reason,
                )
                .await;
                match moved {
                    Ok(()) => crate::worker_metrics::record_not_run(
                        &self.activity,
                        told_the_saga.is_some(),
                        rejection.class(),
                    ),
                    Err(error) => {
                        tracing::error!(queue = self.queue, %error, reason, "could not dead-letter a message; it stays unacked until the channel closes")
                    }
                }
                return;
            }
        };
        let span = tracing::info_span!(
            "activity attempt",
            otel.kind = "consumer",
            saga_id = %command.saga_id,
            step = command.step.0,
            attempt = command.attempt,
            activity = command.activity,
            redelivered = delivery.redelivered,
            messaging.system = "rabbitmq",
            messaging.operation.type = "process",
            messaging.destination.name = self.queue,
        );
        // A child of the orchestrator's publish of this command: the saga's trace goes on.
        sagaflow_process::set_remote_parent(&span, |name| header(&delivery, name));
        self.run(delivery, command).instrument(span).await
    }

    async fn run(&self, delivery: Delivery, mut command: ActivityCommand) {
        let started = Instant::now();
        let decoded = self
            .codec
            .decode(std::mem::take(&mut command.input))
            .and_then(|input| {
                let details = command
                    .heartbeat_details
                    .take()
                    .map(|details| self.codec.decode(details))
                    .transpose()?;
                Ok((input, details))
            });
        let input = match decoded {
            Ok((input, details)) => {
                command.heartbeat_details = details;
                input
            }
            Err(error) => {
                // Another key, or none: no attempt can read it until the key is fixed.
                tracing::error!(%error, "the command's payload cannot be decoded");
                let failed = ActivityOutcome::Failed {
                    error: ActivityError::permanent(
                        error_kinds::COMMAND_REJECTED,
                        format!("the activity service cannot decode the command: {error}"),
                    ),
                };
                let reply = self.reply_message(&command, failed, &delivery);
                return match self.publisher.publish_confirmed(&reply).await {
                    Ok(()) => {
                        if let Err(error) = delivery.ack(Default::default()).await {
                            tracing::warn!(%error, "could not ack the command after its result was confirmed");
                        }
                    }
                    Err(error) => self.return_command(&delivery, error).await,
                };
            }
        };
        let heartbeats = Heartbeats::new(
            self.publisher.clone(),
            self.topology.clone(),
            &command,
            attempt_headers(&command, trace_headers(&delivery)),
            self.codec.clone(),
        );
        let running = self.in_flight.start(&command);
        let cancellation = running.cancellation().clone();
        let ctx = ActivityContext::running(&command, Arc::clone(&heartbeats), cancellation);
        let counted = crate::worker_metrics::InFlight::start(&self.activity);
        let outcome = match (self.handler)(ctx, input).await {
            ActivityOutcome::Completed { output } => match self.codec.encode(output) {
                Ok(output) => ActivityOutcome::Completed { output },
                Err(error) => ActivityOutcome::Failed {
                    error: ActivityError::permanent(
                        "OutputNotEncoded",
                        format!("the output cannot be encoded: {error}"),
                    ),
                },
            },
            failed => failed,
        };
        drop(counted);
        // No heartbeat of this attempt after its result, and no cancel of it either.
        heartbeats.stop();
        let cancelled = running.cancellation().token().is_cancelled();
        drop(running);
        let elapsed = started.elapsed();
        let elapsed_ms = elapsed.as_millis() as u64;
        let label = crate::worker_metrics::outcome(&outcome);
        metrics::counter!(crate::worker_metrics::ATTEMPTS, "activity" => self.activity.clone(), "outcome" => label)
            .increment(1);
        metrics::histogram!(crate::worker_metrics::ATTEMPT_SECONDS, "activity" => self.activity.clone(), "outcome" => label)
            .record(elapsed.as_secs_f64());
        match &outcome {
            ActivityOutcome::Completed { .. } if cancelled => tracing::info!(
                elapsed_ms,
                "activity completed although the orchestrator cancelled it"
            ),
            ActivityOutcome::Completed { .. } => tracing::info!(elapsed_ms, "activity completed"),
            ActivityOutcome::Failed { error } if error.retryable => tracing::warn!(
                elapsed_ms,
                kind = error.kind,
                message = error.message,
                "activity failed: transient failure, reported as retryable; the orchestrator decides on another attempt"
            ),
            ActivityOutcome::Failed { error } => tracing::warn!(
                elapsed_ms,
                kind = error.kind,
                message = error.message,
                "activity failed: permanent failure"
            ),
        }
        sagaflow_process::crash_point("activity.before-reply");
        if cfg!(feature = "failpoints") {
            // Per activity, for a service with several: `activity.before-reply.RefundCharge`.
            sagaflow_process::crash_point(&format!("activity.before-reply.{}", self.activity));
        }
        let reply = self.reply_message(&command, outcome, &delivery);
        match self.publisher.publish_confirmed(&reply).await {
            Ok(()) => {
                sagaflow_process::crash_point("activity.before-ack");
                if cfg!(feature = "failpoints") {
                    sagaflow_process::crash_point(&format!(
                        "activity.before-ack.{}",
                        self.activity
                    ));
                }
                if let Err(error) = delivery.ack(Default::default()).await {
                    tracing::warn!(%error, "could not ack the command after its result was confirmed; it will be redelivered and run again");
                }
            }
            Err(error) => self.return_command(&delivery, error).await,
        }
    }

    /// The command's identity from the headers the orchestrator sets, for replying to a command
    /// whose body cannot be used (too large, say); its input is left empty.
    fn command_from_headers(&self, delivery: &Delivery) -> Option<ActivityCommand> {
        let saga_id = header(delivery, headers::SAGA_ID)?.parse().ok()?;
        let step = StepSeq(header(delivery, headers::STEP)?.parse().ok()?);
        Some(ActivityCommand {
            saga_id,
            step,
            activity: self.activity.clone(),
            attempt: header(delivery, headers::ATTEMPT)?.parse().ok()?,
            idempotency_key: IdempotencyKey::for_step(saga_id, step),
            input: serde_json::Value::Null,
            heartbeat_timeout_ms: None,
            heartbeat_details: None,
        })
    }

    /// The [`sagaflow_contracts::ActivityResult`] message for `command`.
    fn reply_message(
        &self,
        command: &ActivityCommand,
        outcome: ActivityOutcome,
        delivery: &Delivery,
    ) -> OutgoingMessage {
        result_message(
            &self.topology,
            command,
            outcome,
            attempt_headers(command, trace_headers(delivery)),
        )
    }

    /// The result was not confirmed: put the command back so that it runs again (handlers are
    /// idempotent), and stop the worker if results cannot be published any more.
    async fn return_command(&self, delivery: &Delivery, error: PublishError) {
        tracing::error!(%error, "the result was not published; returning the command to the queue to run again");
        let broken = matches!(
            error,
            PublishError::Channel { .. } | PublishError::Unroutable { .. }
        );
        // A nack (after a pause): connect again as well. RabbitMQ (seen with 3.10) can keep
        // nacking on a channel that published to a quorum queue while its leader moved to another
        // node, when a new channel publishes to it fine.
        let nacked = matches!(error, PublishError::Nacked { .. });
        if !broken {
            tokio::time::sleep(REFUSED_REPLY_BACKOFF).await;
        }
        let requeue = lapin::options::BasicNackOptions {
            requeue: true,
            ..Default::default()
        };
        if let Err(nack_error) = delivery.nack(requeue).await {
            tracing::warn!(%nack_error, "could not return the command; the broker returns it when the channel closes");
        }
        if broken || nacked {
            self.failure.fail(WorkerError::Reply(error));
        }
    }
}

/// The trace headers of the messages about `delivery`'s command (result, heartbeats): this
/// attempt's span when traces are exported, else the command's own, to keep the trace going.
fn trace_headers(delivery: &Delivery) -> Vec<(String, String)> {
    let attempt = sagaflow_process::trace_headers(&tracing::Span::current());
    if !attempt.is_empty() {
        return attempt;
    }
    // Only values of the size W3C Trace Context allows: the reply's headers must not grow with
    // the command's.
    [headers::TRACEPARENT, headers::TRACESTATE]
        .into_iter()
        .filter_map(|name| {
            let value = header(delivery, name).filter(|v| v.len() <= MAX_TRACE_HEADER_BYTES)?;
            Some((name.to_owned(), value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn noop(_ctx: ActivityContext, _input: ()) -> Result<(), ActivityError> {
        Ok(())
    }

    fn activities(names: &[&str]) -> Vec<(String, ErasedHandler)> {
        names.iter().map(|n| (n.to_string(), erase(noop))).collect()
    }

    #[test]
    fn registrations_are_checked_before_connecting() {
        assert!(matches!(
            checked_activities(activities(&[])),
            Err(WorkerError::NoActivities)
        ));
        assert!(matches!(
            checked_activities(activities(&["Charge", "Refund customer"])),
            Err(WorkerError::InvalidActivityName(_))
        ));
        assert!(matches!(
            checked_activities(activities(&["Charge", "Refund", "Charge"])),
            Err(WorkerError::DuplicateActivity { activity }) if activity == "Charge"
        ));
        assert_eq!(
            checked_activities(activities(&["Charge", "Refund"]))
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn public_types_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<ActivityWorker>();
        assert_send_sync::<WorkerError>();
        assert_send_sync::<ActivityContext>();
        assert_send_sync::<WorkerConfig>();
    }
}
