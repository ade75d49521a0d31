//! How a worker connects and consumes: [`WorkerConfig`], and [`WorkerArgs`] to read it from the
//! command line and the environment.

use std::net::SocketAddr;
use std::time::Duration;

use sagaflow_amqp::{AmqpTlsArgs, QueueType};
use sagaflow_contracts::{InvalidName, Topology, DEFAULT_MAX_MESSAGE_BYTES};

/// How long [`ActivityWorker::run`](crate::ActivityWorker::run) waits for RabbitMQ to accept the
/// connection before giving up, unless configured otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything an [`ActivityWorker`](crate::ActivityWorker) needs to know about its broker.
///
/// Build it with [`WorkerConfig::new`] or from the command line with [`WorkerArgs::into_config`].
#[derive(Clone)]
pub struct WorkerConfig {
    /// Names this service in logs and in the broker's connection list, e.g. `"charger"`.
    pub service_name: String,
    /// The RabbitMQ URL, e.g. `amqp://guest:guest@127.0.0.1:5672/%2f`; `amqps://` for TLS;
    /// several separated by commas (the nodes of a cluster, tried in turn).
    pub amqp_url: String,
    /// A CA file and a client certificate for `amqps://`, read when the worker starts.
    pub amqp_tls: AmqpTlsArgs,
    /// The queue names of the deployment (its namespace).
    pub topology: Topology,
    /// How many commands of each activity run at the same time; also the prefetch per queue.
    pub concurrency: u16,
    /// The kind of queue declared; must match what the orchestrator declares.
    pub queue_type: QueueType,
    /// Commands with a larger body are dead-lettered unread.
    pub max_message_bytes: usize,
    /// How long to wait for the broker at start-up.
    pub connect_timeout: Duration,
    /// Where `GET /metrics` (Prometheus text) is served; none by default. Metrics also go over
    /// OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, with or without this.
    pub metrics_addr: Option<SocketAddr>,
    /// Decodes command inputs before a handler sees them and encodes what it returns (outputs,
    /// heartbeat details). `None`: from the environment when the worker runs
    /// (`SAGAFLOW_PAYLOAD_KEY`, `SAGAFLOW_SENSITIVE_FIELDS`; see [`sagaflow_codec::from_env`]).
    pub payload_codec: Option<sagaflow_codec::SharedCodec>,
}

impl WorkerConfig {
    /// A configuration with the defaults: concurrency 16, quorum queues, the default message size
    /// limit and connect timeout.
    pub fn new(
        service_name: impl Into<String>,
        amqp_url: impl Into<String>,
        topology: Topology,
    ) -> Self {
        WorkerConfig {
            service_name: service_name.into(),
            amqp_url: amqp_url.into(),
            amqp_tls: AmqpTlsArgs::default(),
            topology,
            concurrency: 16,
            queue_type: QueueType::Quorum,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            metrics_addr: None,
            payload_codec: None,
        }
    }
}

impl std::fmt::Debug for WorkerConfig {
    // By hand, so that the password in the URL never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerConfig")
            .field("service_name", &self.service_name)
            .field("amqp_url", &sagaflow_amqp::redact(&self.amqp_url))
            .field("amqp_tls", &self.amqp_tls)
            .field("namespace", &self.topology.namespace())
            .field("concurrency", &self.concurrency)
            .field("queue_type", &self.queue_type)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("connect_timeout", &self.connect_timeout)
            .field("metrics_addr", &self.metrics_addr)
            .finish()
    }
}

/// The worker's command-line flags (each also read from an environment variable). Put it in a
/// binary's arguments with `#[command(flatten)]`.
#[derive(Clone, clap::Args)]
pub struct WorkerArgs {
    /// RabbitMQ URL (`amqps://` for TLS), or the URLs of a cluster's nodes separated by commas.
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub amqp_url: String,

    /// TLS to RabbitMQ: a CA file, a client certificate.
    #[command(flatten)]
    pub amqp_tls: AmqpTlsArgs,

    /// Prefix of every queue and exchange name; must match the orchestrator's.
    #[arg(
        long = "namespace",
        value_name = "NAMESPACE",
        env = "SAGAFLOW_NAMESPACE",
        default_value = "sagaflow",
        value_parser = parse_namespace
    )]
    pub topology: Topology,

    /// Commands of each activity run at the same time (also the prefetch per queue).
    #[arg(
        long,
        env = "SAGAFLOW_CONCURRENCY",
        default_value_t = 16,
        value_parser = clap::value_parser!(u16).range(1..)
    )]
    pub concurrency: u16,

    /// Queue type to declare: quorum or classic; must match the orchestrator's.
    #[arg(long, env = "SAGAFLOW_QUEUE_TYPE", default_value = "quorum")]
    pub queue_type: QueueType,

    /// Commands with a larger body (in bytes) are dead-lettered unread.
    #[arg(
        long,
        env = "SAGAFLOW_MAX_MESSAGE_BYTES",
        default_value_t = DEFAULT_MAX_MESSAGE_BYTES,
        value_parser = parse_max_message_bytes
    )]
    pub max_message_bytes: usize,

    /// Where to serve `GET /metrics` (Prometheus text), e.g. 0.0.0.0:9090; off when unset.
    #[arg(long, env = "SAGAFLOW_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
}

impl WorkerArgs {
    /// The configuration these flags describe, for the service called `service_name`.
    pub fn into_config(self, service_name: impl Into<String>) -> WorkerConfig {
        WorkerConfig {
            concurrency: self.concurrency,
            queue_type: self.queue_type,
            max_message_bytes: self.max_message_bytes,
            metrics_addr: self.metrics_addr,
            amqp_tls: self.amqp_tls,
            ..WorkerConfig::new(service_name, self.amqp_url, self.topology)
        }
    }
}

impl std::fmt::Debug for WorkerArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.clone().into_config("-"), f)
    }
}

fn parse_namespace(value: &str) -> Result<Topology, InvalidName> {
    Topology::new(value)
}

fn parse_max_message_bytes(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(bytes) => Ok(bytes),
        Err(e) => Err(format!("{e}: give a number of bytes, e.g. 1048576")),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        worker: WorkerArgs,
    }

    #[test]
    fn flags_override_the_defaults() {
        let cli = Cli::try_parse_from([
            "svc",
            "--namespace",
            "shop",
            "--concurrency",
            "4",
            "--queue-type",
            "classic",
            "--max-message-bytes",
            "100",
            "--metrics-addr",
            "127.0.0.1:9464",
        ])
        .unwrap();
        let config = cli.worker.into_config("svc");
        assert_eq!(config.topology.namespace(), "shop");
        assert_eq!(config.concurrency, 4);
        assert_eq!(config.queue_type, QueueType::Classic);
        assert_eq!(config.max_message_bytes, 100);
        assert_eq!(config.metrics_addr, Some("127.0.0.1:9464".parse().unwrap()));
    }

    #[test]
    fn bad_values_are_refused_with_the_reason() {
        for (flag, value, reason) in [
            ("--namespace", "a b", "invalid name"),
            ("--concurrency", "0", "0"),
            ("--queue-type", "fast", "use quorum or classic"),
            ("--max-message-bytes", "0", "at least 1"),
            ("--metrics-addr", "localhost", "invalid socket address"),
        ] {
            let error = match Cli::try_parse_from(["svc", flag, value]) {
                Ok(_) => panic!("{flag} {value} was accepted"),
                Err(error) => error.to_string(),
            };
            assert!(error.contains(reason), "{flag} {value}: {error}");
        }
    }

    #[test]
    fn the_password_stays_out_of_debug_output() {
        let config = WorkerConfig::new(
            "svc",
            "amqp://guest:secret@host/%2f",
            Topology::new("t").unwrap(),
        );
        assert!(!format!("{config:?}").contains("secret"));
    }
}
