use std::time::Duration;

use clap::Args;
use sagaflow_amqp::QueueType;

/// How an orchestrator process connects and how hard it works. Every flag has an environment
/// variable of the same meaning.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// PostgreSQL holding sagas, events and the outbox.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub database_url: String,

    /// The RabbitMQ broker.
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: String,

    /// Prefix of every queue and exchange name, so deployments can share a broker.
    #[arg(long, env = "SAGAFLOW_NAMESPACE", default_value = "sagaflow")]
    pub namespace: String,

    /// Messages processed at once per inbound queue (also the AMQP prefetch).
    #[arg(long, env = "SAGAFLOW_PREFETCH", default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..))]
    pub prefetch: u16,

    /// `quorum` (replicated; production) or `classic` queues.
    #[arg(long, env = "SAGAFLOW_QUEUE_TYPE", default_value = "quorum")]
    pub queue_type: QueueType,

    /// PostgreSQL connections this process may open. Each message in flight holds one while it
    /// is processed; more messages than connections wait for one.
    #[arg(long, env = "SAGAFLOW_DB_MAX_CONNECTIONS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(2..))]
    pub db_max_connections: u32,

    /// Live sagas kept in memory between messages; 0 replays every saga on every message.
    #[arg(long, env = "SAGAFLOW_CACHE_SIZE", default_value_t = 10_000)]
    pub cache_size: usize,

    /// Inbound messages larger than this are dead-lettered unread.
    #[arg(long, env = "SAGAFLOW_MAX_MESSAGE_BYTES", default_value_t = sagaflow_contracts::DEFAULT_MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,

    /// How often the outbox relay looks for work when nothing woke it, in milliseconds.
    #[arg(long, env = "SAGAFLOW_OUTBOX_POLL_MS", default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
    pub outbox_poll_ms: u64,

    /// Messages the outbox relay publishes per transaction.
    #[arg(long, env = "SAGAFLOW_OUTBOX_BATCH", default_value_t = 256, value_parser = clap::value_parser!(i64).range(1..))]
    pub outbox_batch: i64,
}

impl Config {
    pub fn outbox_poll_interval(&self) -> Duration {
        Duration::from_millis(self.outbox_poll_ms)
    }
}
