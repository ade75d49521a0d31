//! For services that keep their effects in PostgreSQL, the usual way to do an effect once per
//! idempotency key (a `UNIQUE` key column, `INSERT … ON CONFLICT DO NOTHING`, read the row back).
//! Enabled by the `postgres` feature.
//!
//! [`ReservationTable`] is that pattern for the demo `BookTrip` services' reservations.

mod reservations;

use std::future::Future;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

pub use reservations::ReservationTable;

/// How long to wait for PostgreSQL: at start-up, for a pooled connection, and for one unit of an
/// activity's work ([`within_deadline`]).
const DATABASE_TIMEOUT: Duration = Duration::from_secs(10);

/// The `--database-url` flag, to `#[command(flatten)]` into a service's arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseArgs {
    /// PostgreSQL URL of the database holding this service's tables.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres",
        hide_env_values = true
    )]
    pub database_url: String,
}

/// PostgreSQL could not be used at start-up.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    /// The server cannot be reached or refused the login. Check `DATABASE_URL` and that the
    /// database is running.
    #[error("cannot connect to PostgreSQL at {url}: {source}. Check DATABASE_URL and that the database is running")]
    Unreachable {
        /// The URL without its password.
        url: String,
        /// Why.
        #[source]
        source: sqlx::Error,
    },
    /// The table could not be created.
    #[error("cannot create table {table}: {source}")]
    CreateTable {
        /// The table.
        table: String,
        /// Why.
        #[source]
        source: sqlx::Error,
    },
}

impl DatabaseArgs {
    /// A pool of up to `max_connections`, after one connection proved the database reachable
    /// (a pool alone would only report a timeout, not why).
    pub async fn connect(&self, max_connections: u32) -> Result<PgPool, DatabaseError> {
        let unreachable = |source| DatabaseError::Unreachable {
            url: sagaflow_amqp::redact(&self.database_url),
            source,
        };
        let options: PgConnectOptions = self.database_url.parse().map_err(unreachable)?;
        let probe = tokio::time::timeout(DATABASE_TIMEOUT, options.connect())
            .await
            .map_err(|_| unreachable(sqlx::Error::PoolTimedOut))?
            .map_err(unreachable)?;
        let _ = probe.close().await;
        Ok(PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(DATABASE_TIMEOUT)
            // A connection given back whose server went silent (a failover behind the same
            // address, a lost network path) is dropped after a few seconds by the patched
            // sqlx-core (vendor/sqlx-core/SAGAFLOW-PATCH.md) instead of keeping its place in the
            // pool for good.
            .connect_lazy_with(options))
    }
}

/// `work` (an activity's queries) within a deadline, else a `TimedOut` I/O error: a query on a
/// connection whose server went silent (a failover behind the same address, a lost network path)
/// would otherwise wait for good, holding the attempt and its connection. The work is dropped at
/// the deadline: what it had not committed is rolled back, and its connection is dropped by the
/// pool. Report the error as a retryable failure; the effect is done once by its idempotency key.
pub async fn within_deadline<T, E>(work: impl Future<Output = Result<T, E>>) -> Result<T, E>
where
    E: From<sqlx::Error>,
{
    within(DATABASE_TIMEOUT, work).await
}

async fn within<T, E>(deadline: Duration, work: impl Future<Output = Result<T, E>>) -> Result<T, E>
where
    E: From<sqlx::Error>,
{
    tokio::time::timeout(deadline, work)
        .await
        .unwrap_or_else(|_| {
            Err(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("PostgreSQL did not answer within {deadline:?}; the work is given up"),
            ))
            .into())
        })
}

/// Runs `create_table` (a `CREATE TABLE IF NOT EXISTS …`) for `table`. Replicas starting together
/// take turns on an advisory lock, because concurrent `CREATE TABLE IF NOT EXISTS` can still
/// collide.
pub async fn create_table_once(
    pool: &PgPool,
    table: &str,
    create_table: &str,
) -> Result<(), DatabaseError> {
    let create = async {
        let mut tx = pool.begin().await?;
        // Without this, every start logs PostgreSQL's "already exists, skipping" notice.
        sqlx::query("SET LOCAL client_min_messages = warning")
            .execute(&mut *tx)
            .await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('sagaflow.schema.' || $1))")
            .bind(table)
            .execute(&mut *tx)
            .await?;
        sqlx::query(create_table).execute(&mut *tx).await?;
        tx.commit().await
    };
    create.await.map_err(|source| DatabaseError::CreateTable {
        table: table.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_that_never_answers_is_given_up_at_the_deadline() {
        let silent = std::future::pending::<Result<(), sqlx::Error>>();
        let given_up = within(Duration::from_millis(10), silent).await;
        assert!(
            matches!(&given_up, Err(sqlx::Error::Io(e)) if e.kind() == std::io::ErrorKind::TimedOut),
            "{given_up:?}"
        );
    }
}
