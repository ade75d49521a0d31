//! PostgreSQL: sagas, their append-only event histories, the transactional outbox, durable
//! timers, heartbeats, and the facts parked while a saga is stuck.
//!
//! Plain SQL with binds. Every function that changes state takes the caller's transaction, so
//! one inbound message becomes exactly one commit.

mod activation;
mod dead_letters;
mod events;
mod outbox;
mod parked;
mod sagas;
mod timers;
mod visibility;

pub use activation::{write_activation, TimerArm, TimerChanges};
pub use events::{append_events, load_history, load_history_decoded, HistoryError};
pub use outbox::{
    claim_outbox_batch, delete_outbox_rows, outbox_len, parked_outbox_rows, record_outbox_failure,
    unpark_outbox_rows, OutboxRow, ParkedOutboxRow,
};
pub use parked::{park_fact, take_parked_facts, ParkedFact};
pub use sagas::{
    find_saga_by_start_key, get_saga, insert_saga, list_sagas, lock_saga, lock_sagas, update_saga,
    NewSaga, SagaRow, SagaUpdate,
};
pub use timers::{
    cancel_step_timers, delete_timer, due_timers, last_heartbeat_details, lock_due_timer,
    next_fire_at, record_heartbeat, request_resume, request_resume_all_stuck, TimerRow,
};

pub use dead_letters::{
    get_dead_letter, list_dead_letters, mark_republished, record_dead_letter, DeadLetterRow,
    NewDeadLetter,
};
pub use visibility::{
    count_sagas_by_status, pending_timers, search_sagas, PendingTimer, SagaCursor, SagaFilter,
};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use std::time::Duration;

/// The embedded migrations, run at start-up.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Connecting to PostgreSQL or bringing its schema up to date failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL does not parse. Fix DATABASE_URL.
    #[error("invalid database URL: {0}")]
    InvalidUrl(#[source] sqlx::Error),
    /// The server cannot be reached or refused the login. Check DATABASE_URL and that
    /// PostgreSQL is running.
    #[error("cannot connect to PostgreSQL at {url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    /// The database was migrated by a newer Sagaflow, whose schema this binary does not know.
    /// Run the newer orchestrator.
    #[error("the database schema is newer than this orchestrator (migration {0} is unknown to it): run the newer orchestrator")]
    NewerSchema(i64),
    /// The schema could not be migrated.
    #[error("cannot migrate the database schema: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
}

/// The deadlines of PostgreSQL waits. A zero duration means none.
#[derive(Debug, Clone, Copy)]
pub struct DatabaseTimeouts {
    /// `statement_timeout` of every connection.
    pub statement: Duration,
    /// `idle_in_transaction_session_timeout` of every connection.
    pub idle_in_transaction: Duration,
    /// How long to wait for a pooled connection, and for a new one.
    pub acquire: Duration,
    /// How long one unit of work may wait on PostgreSQL from this side: a message's
    /// transaction, an outbox or timer batch.
    /// The server's timeouts cannot help with a connection whose server went silent (a failover
    /// behind the same address, a lost network path): without this, its query waits for the
    /// kernel to give the socket up, a quarter of an hour later.
    pub work: Duration,
}

impl Default for DatabaseTimeouts {
    fn default() -> Self {
        DatabaseTimeouts {
            statement: Duration::from_secs(30),
            idle_in_transaction: Duration::from_secs(60),
            acquire: Duration::from_secs(30),
            work: Duration::from_secs(60),
        }
    }
}

fn connect_options(
    url: &str,
    timeouts: DatabaseTimeouts,
) -> Result<PgConnectOptions, ConnectError> {
    let options: PgConnectOptions = url.parse().map_err(ConnectError::InvalidUrl)?;
    // Session settings sent at connection start-up, so every connection has them, also one a
    // pool opens again after a failover.
    Ok(options.options([
        (
            "statement_timeout",
            format!("{}", timeouts.statement.as_millis()),
        ),
        (
            "idle_in_transaction_session_timeout",
            format!("{}", timeouts.idle_in_transaction.as_millis()),
        ),
    ]))
}

/// A connection whose work was abandoned at [`DatabaseTimeouts::work`] because its server went
/// silent goes back to the pool, which gives it a few seconds to answer its ping (or to close)
/// and then drops it: the patched sqlx-core (`vendor/sqlx-core/SAGAFLOW-PATCH.md`). Unpatched,
/// both waited forever (over TLS) and the connection kept its place in the pool for good.
fn pool_options(max_connections: u32, timeouts: DatabaseTimeouts) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(timeouts.acquire)
        // A connection that failed while idle (the server restarted, a failover) is noticed
        // before use. Without this ping, one that went silent while idle is handed out and its
        // work waits for the work deadline; with several such connections the pool stayed
        // exhausted for longer than a test's minute (network_faults.rs). Its round trip per
        // transaction measured within the noise (BENCHMARKS.md).
        .test_before_acquire(true)
}

/// Connects a pool of up to `max_connections` to `url` and runs the migrations.
pub async fn connect(
    url: &str,
    max_connections: u32,
    timeouts: DatabaseTimeouts,
) -> Result<PgPool, ConnectError> {
    let options = connect_options(url, timeouts)?;
    let unreachable = |source| ConnectError::Unreachable {
        url: sagaflow_amqp::redact(url),
        source,
    };
    // One plain connection first: a pool would retry until its timeout and hide the cause.
    let probe = tokio::time::timeout(timeouts.acquire, PgConnection::connect_with(&options))
        .await
        .map_err(|_| unreachable(sqlx::Error::PoolTimedOut))?
        .map_err(unreachable)?;
    let _ = probe.close().await;
    let pool = pool_options(max_connections, timeouts)
        .connect_with(options)
        .await
        .map_err(unreachable)?;
    MIGRATOR.run(&pool).await.map_err(|e| match e {
        sqlx::migrate::MigrateError::VersionMissing(version) => ConnectError::NewerSchema(version),
        other => ConnectError::Migrate(other),
    })?;
    Ok(pool)
}

/// A pool of up to `max_connections` that connects when first used (no migrations), for the
/// outbox relay: apart from the inbound pool, so inbound work cannot starve the relay that makes
/// room for it. Its commits need not wait for the disk
/// (`synchronous_commit = off`): it only claims, deletes and counts failures of rows, and
/// losing any of that in a database crash means publishing a row again, which consumers
/// de-duplicate. What a saga committed is never written through this pool.
pub fn connect_relay_pool(
    url: &str,
    max_connections: u32,
    timeouts: DatabaseTimeouts,
) -> Result<PgPool, ConnectError> {
    let options = connect_options(url, timeouts)?.options([("synchronous_commit", "off")]);
    Ok(pool_options(max_connections, timeouts).connect_lazy_with(options))
}
