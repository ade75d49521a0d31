use std::time::Duration;

use clap::Args;
use sagaflow_amqp::QueueType;
use sagaflow_contracts::{ActivityOptions, RetryPolicy};

/// How an orchestrator process connects and how hard it works. Every flag has an environment
/// variable of the same meaning.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// PostgreSQL holding sagas, events and the outbox.
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub database_url: String,

    /// The RabbitMQ broker: one URL, or the nodes of a cluster separated by commas (tried in
    /// turn). `amqps://` for TLS.
    #[arg(
        long,
        env = "AMQP_URL",
        hide_env_values = true,
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_default_value = true
    )]
    pub amqp_url: String,

    /// TLS to RabbitMQ: a CA file, a client certificate. (TLS to PostgreSQL is set in the URL:
    /// `sslmode=verify-full&sslrootcert=<CA file>`.)
    #[command(flatten)]
    pub amqp_tls: sagaflow_amqp::AmqpTlsArgs,

    /// Prefix of every queue and exchange name, so deployments can share a broker.
    #[arg(long, env = "SAGAFLOW_NAMESPACE", default_value = "sagaflow")]
    pub namespace: String,

    /// Messages taken from each inbound queue at once (the AMQP prefetch). They are processed
    /// in transactions of up to `--max-batch` messages, as many at once as that takes.
    #[arg(long, env = "SAGAFLOW_PREFETCH", default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..))]
    pub prefetch: u16,

    /// Group commit: at most this many messages of a queue processed in one transaction, when
    /// that many are waiting (a message alone never waits for others). 1 gives every message a
    /// transaction of its own.
    #[arg(long, env = "SAGAFLOW_MAX_BATCH", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub max_batch: u16,

    /// `quorum` (replicated; production) or `classic` queues.
    #[arg(long, env = "SAGAFLOW_QUEUE_TYPE", default_value = "quorum")]
    pub queue_type: QueueType,

    /// PostgreSQL connections this process may open. Each transaction in flight (one message, or
    /// a batch of them) holds one; more transactions than connections wait for one.
    #[arg(long, env = "SAGAFLOW_DB_MAX_CONNECTIONS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(2..))]
    pub db_max_connections: u32,

    /// Live sagas kept in memory between messages; 0 replays every saga on every message.
    #[arg(long, env = "SAGAFLOW_CACHE_SIZE", default_value_t = 10_000)]
    pub cache_size: usize,

    /// Inbound messages larger than this are dead-lettered unread.
    #[arg(long, env = "SAGAFLOW_MAX_MESSAGE_BYTES", default_value_t = sagaflow_contracts::DEFAULT_MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,

    /// Activity commands (the serialized `ActivityCommand`, after the payload codec) larger
    /// than this are never written to the outbox: the step fails at once with kind
    /// `CommandTooLarge`. The default is what an activity service accepts by default
    /// (`SAGAFLOW_MAX_MESSAGE_BYTES` of the SDK, 1 MiB), well under RabbitMQ's
    /// `max_message_size` (128 MiB in 3.x, 16 MiB in 4.x).
    #[arg(long, env = "SAGAFLOW_MAX_COMMAND_BYTES", default_value_t = sagaflow_contracts::DEFAULT_MAX_MESSAGE_BYTES as u64, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_command_bytes: u64,

    /// How often the outbox relay looks for rows it was not handed (those of a replica that died
    /// before publishing them, rows due for another try), in milliseconds.
    #[arg(long, env = "SAGAFLOW_OUTBOX_POLL_MS", default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
    pub outbox_poll_ms: u64,

    /// How long the outbox rows of a commit stay reserved for the committing process, which
    /// publishes them right after the commit, in milliseconds. Then any replica's relay may
    /// publish them: the delay after a crash between a commit and its publish, and how slow a
    /// publish may be before another replica publishes the row too (consumers de-duplicate).
    #[arg(long, env = "SAGAFLOW_OUTBOX_HANDOVER_MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub outbox_handover_ms: u64,

    /// Messages the outbox relay publishes per batch.
    #[arg(long, env = "SAGAFLOW_OUTBOX_BATCH", default_value_t = 256, value_parser = clap::value_parser!(i64).range(1..))]
    pub outbox_batch: i64,

    /// How often the timer claimer looks for due timers armed by other replicas, in
    /// milliseconds (timers armed by this process wake it at their time).
    #[arg(long, env = "SAGAFLOW_TIMER_POLL_MS", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub timer_poll_ms: u64,

    /// Default retry policy of a step whose saga code sets none: the wait before the second
    /// attempt, in milliseconds.
    #[arg(long, env = "SAGAFLOW_RETRY_INITIAL_MS", default_value_t = 1_000)]
    pub retry_initial_ms: u64,

    /// Default retry policy: each wait is this many times the one before (at least 1).
    #[arg(long, env = "SAGAFLOW_RETRY_BACKOFF", default_value_t = 2.0)]
    pub retry_backoff: f64,

    /// Default retry policy: the longest wait between two attempts, in milliseconds.
    #[arg(long, env = "SAGAFLOW_RETRY_MAX_INTERVAL_MS", default_value_t = 60_000)]
    pub retry_max_interval_ms: u64,

    /// Default retry policy: attempts in all, the first included; 0 for no limit.
    #[arg(long, env = "SAGAFLOW_RETRY_MAX_ATTEMPTS", default_value_t = 5)]
    pub retry_max_attempts: u32,

    /// Default start-to-close timeout of an attempt whose saga code sets none, in seconds: an
    /// activity service that never answers fails the attempt (and it is retried). 0 for none.
    #[arg(
        long,
        env = "SAGAFLOW_START_TO_CLOSE_TIMEOUT_SECS",
        default_value_t = 300
    )]
    pub start_to_close_timeout_secs: u64,

    /// How long a start message of a saga type this replica does not know is put back (for a
    /// replica that knows it, during a rolling deploy) before it is dead-lettered, in seconds.
    #[arg(
        long,
        env = "SAGAFLOW_UNKNOWN_SAGA_TYPE_GRACE_SECS",
        default_value_t = 600
    )]
    pub unknown_saga_type_grace_secs: u64,

    /// How long connecting to RabbitMQ may take, in seconds.
    #[arg(long, env = "SAGAFLOW_CONNECT_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub connect_timeout_secs: u64,

    /// How long the outbox relay waits for the broker to confirm a batch, in seconds; then the
    /// rows are tried again (and the connection made again).
    #[arg(long, env = "SAGAFLOW_CONFIRM_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub confirm_timeout_secs: u64,

    /// Failed publishes after which an outbox row is parked (`sagaflow outbox --parked`).
    #[arg(long, env = "SAGAFLOW_OUTBOX_MAX_ATTEMPTS", default_value_t = 10, value_parser = clap::value_parser!(i32).range(1..))]
    pub outbox_max_attempts: i32,

    /// PostgreSQL `statement_timeout` of this process's connections, in seconds (0: none).
    #[arg(long, env = "SAGAFLOW_DB_STATEMENT_TIMEOUT_SECS", default_value_t = 30)]
    pub db_statement_timeout_secs: u64,

    /// PostgreSQL `idle_in_transaction_session_timeout`, in seconds (0: none): a transaction
    /// left open by a stalled process is rolled back and its locks released.
    #[arg(
        long,
        env = "SAGAFLOW_DB_IDLE_IN_TRANSACTION_TIMEOUT_SECS",
        default_value_t = 60
    )]
    pub db_idle_in_transaction_timeout_secs: u64,

    /// How long a message waits for a PostgreSQL connection (and a connection attempt may take),
    /// in seconds.
    #[arg(long, env = "SAGAFLOW_DB_ACQUIRE_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub db_acquire_timeout_secs: u64,

    /// How long this process waits on PostgreSQL for one unit of work (a message's transaction,
    /// an outbox or timer batch), in seconds; then the work is abandoned, its connection closed,
    /// and the message goes back to the queue. Notices a server that went silent, which the
    /// server's own timeouts cannot.
    #[arg(long, env = "SAGAFLOW_DB_WORK_TIMEOUT_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub db_work_timeout_secs: u64,

    /// Where the HTTP API, the web UI, `/healthz`, `/readyz` and `/metrics` listen, e.g.
    /// `127.0.0.1:8080`. Unset: no HTTP server.
    #[arg(long, env = "SAGAFLOW_API_ADDR")]
    pub api_addr: Option<std::net::SocketAddr>,

    /// When set, `/api/*` and `/metrics` require `Authorization: Bearer <token>`.
    #[arg(long, env = "SAGAFLOW_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,

    /// A link to a saga's trace in the web UI, with `{trace_id}` replaced, e.g.
    /// `http://localhost:16686/trace/{trace_id}`.
    #[arg(long, env = "SAGAFLOW_TRACE_URL_TEMPLATE")]
    pub trace_url_template: Option<String>,
}

impl Config {
    pub fn outbox_poll_interval(&self) -> Duration {
        Duration::from_millis(self.outbox_poll_ms)
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs)
    }

    pub fn confirm_timeout(&self) -> Duration {
        Duration::from_secs(self.confirm_timeout_secs)
    }

    /// How long an outbox row claimed by a relay's poll stays claimed: longer than the confirms
    /// may take, so that two relays rarely publish one row.
    pub fn outbox_lease(&self) -> Duration {
        self.confirm_timeout() + Duration::from_secs(2)
    }

    /// How long a commit's own outbox rows stay reserved for the committing process.
    pub fn outbox_handover(&self) -> Duration {
        Duration::from_millis(self.outbox_handover_ms)
    }

    /// The deadlines of every PostgreSQL wait.
    pub fn database_timeouts(&self) -> crate::store::DatabaseTimeouts {
        crate::store::DatabaseTimeouts {
            statement: Duration::from_secs(self.db_statement_timeout_secs),
            idle_in_transaction: Duration::from_secs(self.db_idle_in_transaction_timeout_secs),
            acquire: Duration::from_secs(self.db_acquire_timeout_secs),
            work: Duration::from_secs(self.db_work_timeout_secs),
        }
    }

    pub fn timer_poll_interval(&self) -> Duration {
        Duration::from_millis(self.timer_poll_ms)
    }

    /// Retries and timeouts of steps whose saga code sets none.
    pub fn default_activity_options(&self) -> ActivityOptions {
        ActivityOptions {
            retry: RetryPolicy {
                initial_interval_ms: self.retry_initial_ms,
                backoff_coefficient: self.retry_backoff,
                maximum_interval_ms: self.retry_max_interval_ms,
                maximum_attempts: self.retry_max_attempts,
                non_retryable_kinds: Vec::new(),
            },
            start_to_close_timeout_ms: (self.start_to_close_timeout_secs > 0)
                .then(|| self.start_to_close_timeout_secs.saturating_mul(1_000)),
            ..ActivityOptions::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: super::Config,
    }

    #[test]
    fn help_shows_no_password_from_the_environment_or_the_defaults() {
        // The only test in this crate that sets these variables.
        std::env::set_var("DATABASE_URL", "postgres://app:db-secret@db:5432/app");
        std::env::set_var("AMQP_URL", "amqp://app:mq-secret@mq:5672/%2f");
        let help = Cli::command().render_long_help().to_string();
        for secret in ["db-secret", "mq-secret", "guest:guest"] {
            assert!(!help.contains(secret), "--help shows {secret}: {help}");
        }
    }
}
