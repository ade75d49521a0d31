use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use lapin::Connection;
use sagaflow_amqp::OutgoingMessage;
use sagaflow_amqp::{declare_queue, PublishError, Publisher, QueueType};
use sagaflow_contracts::{headers, Topology};
use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};
use tokio::sync::{mpsc, Mutex};
use tokio_util::sync::CancellationToken;

use crate::store::{self, OutboxRow};

/// The rows each commit of this process wrote, on their way to its relay.
///
/// The inbound side sends; the relay of the current broker connection receives. The receiving
/// end outlives a relay (a reconnect starts a new one), so rows sent meanwhile are not lost; rows
/// of a process that dies are published by any relay once their lease ends.
#[derive(Clone)]
pub struct CommittedOutbox {
    sender: mpsc::UnboundedSender<Vec<OutboxRow>>,
    receiver: Arc<Mutex<mpsc::UnboundedReceiver<Vec<OutboxRow>>>>,
}

impl Default for CommittedOutbox {
    fn default() -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        CommittedOutbox {
            sender,
            receiver: Arc::new(Mutex::new(receiver)),
        }
    }
}

impl CommittedOutbox {
    /// Hands the committed rows `ids` (of `messages`, in order) to the relay.
    pub fn publish(&self, ids: Vec<i64>, messages: Vec<OutgoingMessage>) {
        if ids.is_empty() {
            return;
        }
        let rows = ids
            .into_iter()
            .zip(messages)
            .map(|(id, message)| OutboxRow {
                id,
                attempts: 0,
                message,
            })
            .collect();
        // Only fails when no receiver is left (the process is stopping): the lease then ends
        // and any relay publishes the rows.
        let _ = self.sender.send(rows);
    }
}

/// Publishes committed outbox rows with publisher confirms, then deletes them.
///
/// **The commit's own rows go at once.** A commit writes its rows reserved for this process and
/// hands them to this process's relay ([`CommittedOutbox`]): no transaction and no database round
/// trip stand between the commit and the publish. The delete afterwards runs with
/// `synchronous_commit = off` (see `store::connect_relay_pool`): losing it in a crash only means
/// publishing again. A poll claims everything else: rows of a process that died, rows whose
/// publish failed and whose pause is over.
///
/// **No lock is held while waiting on the broker.** A batch is claimed by setting a lease
/// (`claimed_until`) in one short statement; then it is published and each confirmed row is
/// deleted. Crash analysis:
/// - dies after the claim, before publishing: the rows wait for their lease to end
///   ([`OutboxRelay::lease`]), then any relay claims them;
/// - dies after publishing, before the delete: the rows are published again after the lease;
///   consumers de-duplicate (message id, idempotency key);
/// - a publish slower than the lease: another relay may publish the row too; same as above.
///
/// **No poison row.** A row the broker refuses (nack, a closed channel, an exchange that does not
/// exist) is counted (`attempts`, `last_error`) and tried again after a growing pause; after
/// [`OutboxRelay::max_attempts`] it is parked (`parked_at`) for an operator (`sagaflow outbox
/// --parked`, `--republish`). The relay goes on with every other row: after a failed batch, rows
/// that have failed before are published one at a time, so a row that closes the channel cannot
/// take the rows around it down with it.
pub struct OutboxRelay {
    /// A pool of its own, so inbound work cannot starve the relay.
    pub pool: PgPool,
    pub connection: Arc<Connection>,
    pub publisher: Publisher,
    pub topology: Topology,
    pub queue_type: QueueType,
    /// The rows this process commits.
    pub committed: CommittedOutbox,
    pub poll_interval: Duration,
    pub batch_size: i64,
    /// How long a batch's confirms may take; then its rows are tried again.
    pub confirm_timeout: Duration,
    /// How long a claim lasts, a commit's own rows included: longer than confirms may take.
    pub lease: Duration,
    /// Failed publishes after which a row is parked.
    pub max_attempts: i32,
    /// How long a batch may wait on PostgreSQL, its confirms apart (see
    /// [`DatabaseTimeouts::work`](crate::store::DatabaseTimeouts::work)).
    pub work_timeout: Duration,
    /// Confirmed rows waiting to be deleted.
    pub(crate) deletes: PendingDeletes,
}

/// Confirmed rows are deleted together, at most [`DELETE_DELAY`] after their confirm (at once
/// when a batch's worth waits): one statement for the rows of several commits. A crash before
/// the delete only publishes them again, as a lost commit of the delete would (its pool does not
/// wait for the disk); the delay is far shorter than a row's reservation, so no other relay
/// takes them meanwhile.
#[derive(Default)]
pub(crate) struct PendingDeletes {
    ids: Vec<i64>,
    due: Option<tokio::time::Instant>,
    /// The connection the deletes go through, kept: a pooled connection is pinged when taken
    /// and when given back, two round trips for one statement. Taken out while in use, so a
    /// delete abandoned at its deadline drops it (back to the pool, which checks it) instead of
    /// keeping a connection in an unknown state.
    connection: Option<PoolConnection<Postgres>>,
}

/// How long confirmed rows may wait for their delete.
const DELETE_DELAY: Duration = Duration::from_millis(20);

/// The relay stopped: its broker connection failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("outbox relay: database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("outbox relay: broker: {0}")]
    Broker(#[from] lapin::Error),
    /// A batch did not finish within the work and confirm deadlines: PostgreSQL went silent.
    /// Its rows are claimed again when their lease ends.
    #[error("outbox relay: a batch did not finish within {0:?}")]
    TimedOut(Duration),
}

/// The longest pause before a failed row is tried again.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

impl OutboxRelay {
    /// Relays until `shutdown`, then relays what this process committed and what is left once
    /// more. A database failure is logged and tried again at the next poll; a lost broker
    /// connection ends it with an error (the orchestrator connects again).
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), RelayError> {
        let relayed = self.relay_until(shutdown).await;
        if relayed.is_err() {
            // The broker went away: what it confirmed is still deleted (else published again).
            let _ = self.delete_confirmed().await;
        }
        // Closed here, with nothing in flight on it: a channel still open when its connection
        // closes makes the AMQP client log an error at a clean stop.
        let closing = self.publisher.channel().close(200, "relay stopped");
        let _ = tokio::time::timeout(self.confirm_timeout, closing).await;
        relayed
    }

    async fn relay_until(&mut self, shutdown: CancellationToken) -> Result<(), RelayError> {
        let mut declared = HashSet::new();
        let receiver = self.committed.receiver.clone();
        let mut committed = receiver.lock().await;
        let mut poll = tokio::time::interval(self.poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deletes_due = self.deletes.due;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(rows) = committed.recv() => {
                    self.relay_committed(rows, &mut committed, &mut declared).await?
                }
                _ = tokio::time::sleep_until(deletes_due.unwrap_or_else(tokio::time::Instant::now)),
                    if deletes_due.is_some() => {
                    self.delete_confirmed().await.or_else(database_later)?
                }
                _ = poll.tick() => {
                    // First what this process committed: a row waiting here longer than its
                    // reservation would be claimed, and published twice.
                    self.relay_committed(Vec::new(), &mut committed, &mut declared).await?;
                    self.relay_claimed(&mut declared).await?
                }
            }
        }
        // Everything this process committed has been handed over by now (the consumers stopped).
        self.relay_committed(Vec::new(), &mut committed, &mut declared)
            .await?;
        self.relay_claimed(&mut declared).await?;
        self.delete_confirmed().await.or_else(database_later)
    }

    /// Publishes `rows` and every other row this process committed, a batch at a time.
    async fn relay_committed(
        &mut self,
        mut rows: Vec<OutboxRow>,
        committed: &mut mpsc::UnboundedReceiver<Vec<OutboxRow>>,
        declared: &mut HashSet<String>,
    ) -> Result<(), RelayError> {
        loop {
            while rows.len() < self.batch_size as usize {
                match committed.try_recv() {
                    Ok(more) => rows.extend(more),
                    Err(_) => break,
                }
            }
            if rows.is_empty() {
                return Ok(());
            }
            self.relay_rows(std::mem::take(&mut rows), declared)
                .await
                .or_else(database_later)?;
        }
    }

    /// Claims and publishes batches until none is full. A database failure is logged: the rows
    /// wait for the next poll.
    async fn relay_claimed(&mut self, declared: &mut HashSet<String>) -> Result<(), RelayError> {
        loop {
            let claiming = store::claim_outbox_batch(&self.pool, self.batch_size, self.lease);
            let claimed = match tokio::time::timeout(self.work_timeout, claiming).await {
                Ok(Ok(rows)) => rows,
                Ok(Err(error)) => return database_later(error.into()),
                Err(_) => return database_later(RelayError::TimedOut(self.work_timeout)),
            };
            let full = claimed.len() == self.batch_size as usize;
            self.relay_rows(claimed, declared)
                .await
                .or_else(database_later)?;
            if !full {
                return Ok(());
            }
        }
    }

    /// [`OutboxRelay::publish_rows`] within the work and confirm deadlines: a database that went
    /// silent must not stop the relay for good (the rows keep their lease and come back).
    async fn relay_rows(
        &mut self,
        rows: Vec<OutboxRow>,
        declared: &mut HashSet<String>,
    ) -> Result<(), RelayError> {
        let deadline = self.work_timeout + self.confirm_timeout;
        tokio::time::timeout(deadline, self.publish_rows(rows, declared))
            .await
            .unwrap_or(Err(RelayError::TimedOut(deadline)))
    }

    /// Publishes `rows` (claimed by this relay) and deletes those the broker took.
    async fn publish_rows(
        &mut self,
        rows: Vec<OutboxRow>,
        declared: &mut HashSet<String>,
    ) -> Result<(), RelayError> {
        if rows.is_empty() {
            return Ok(());
        }
        // Commands go through the default exchange to the activity's queue: make sure it
        // exists even if no activity service has started yet, or the message would be lost.
        for row in &rows {
            let queue = &row.message.routing_key;
            let command = row.message.message_type == headers::message_type::ACTIVITY_COMMAND;
            if command && row.message.exchange.is_empty() && !declared.contains(queue) {
                match declare_queue(
                    self.publisher.channel(),
                    &self.topology,
                    self.queue_type,
                    queue,
                )
                .await
                {
                    Ok(()) => {
                        declared.insert(queue.clone());
                    }
                    Err(error) => {
                        // Published anyway: it comes back unroutable and is counted.
                        tracing::warn!(%error, queue, "cannot declare a command queue");
                        self.reopen_channel().await?;
                    }
                }
            }
        }
        // Rows that failed before go one at a time, after the others.
        let (suspects, fresh): (Vec<&OutboxRow>, Vec<&OutboxRow>) =
            rows.iter().partition(|row| row.attempts > 0);
        let mut outcomes = self.publish(&fresh).await;
        for row in suspects {
            if !self.publisher.channel().status().connected() {
                self.reopen_channel().await?;
            }
            outcomes.extend(self.publish(&[row]).await);
        }
        let mut published = Vec::with_capacity(rows.len());
        let mut broken = false;
        for (row, outcome) in outcomes {
            let error = match outcome {
                Ok(()) => {
                    published.push(row.id);
                    continue;
                }
                // Only an activity command must reach its queue (declared above, so it was
                // deleted meanwhile: declare it again, retry). A reply whose caller is gone, or
                // a cancel no service listens to, has no one to tell: it is done.
                Err(PublishError::Unroutable { routing_key })
                    if row.message.message_type != headers::message_type::ACTIVITY_COMMAND =>
                {
                    tracing::info!(
                        routing_key,
                        message_type = row.message.message_type,
                        "no one listens for this message any more; dropped"
                    );
                    published.push(row.id);
                    continue;
                }
                Err(error) => error,
            };
            if let PublishError::Unroutable { routing_key } = &error {
                declared.remove(routing_key);
            }
            // A nack too: RabbitMQ (seen with 3.10) can keep nacking on a channel that published
            // to a quorum queue while its leader moved to another node, when a new channel
            // publishes to it fine.
            if matches!(
                error,
                PublishError::Channel { .. } | PublishError::Nacked { .. }
            ) {
                broken = true;
            }
            let pause = retry_delay(row.attempts);
            let parked = store::record_outbox_failure(
                &self.pool,
                row.id,
                &error.to_string(),
                pause,
                self.max_attempts,
            )
            .await?;
            match parked {
                true => tracing::error!(
                    outbox_id = row.id,
                    %error,
                    attempts = row.attempts + 1,
                    "outbox row parked after too many failed publishes (see `sagaflow outbox --parked`)"
                ),
                false => {
                    tracing::warn!(outbox_id = row.id, %error, ?pause, "not published; trying again later")
                }
            }
        }
        self.deletes.ids.extend(published);
        if self.deletes.ids.len() >= self.batch_size as usize {
            self.delete_confirmed().await?;
        } else if self.deletes.due.is_none() && !self.deletes.ids.is_empty() {
            self.deletes.due = Some(tokio::time::Instant::now() + DELETE_DELAY);
        }
        if broken {
            self.reopen_channel().await?;
        }
        Ok(())
    }

    /// Deletes the confirmed rows waiting for it, within the work deadline, through the kept
    /// connection; once more on a fresh one if that fails (it may have died while idle: a
    /// database restart). Rows whose delete failed are published again later.
    async fn delete_confirmed(&mut self) -> Result<(), RelayError> {
        self.deletes.due = None;
        let ids = std::mem::take(&mut self.deletes.ids);
        if ids.is_empty() {
            return Ok(());
        }
        let deleting = async {
            if let Some(mut kept) = self.deletes.connection.take() {
                match store::delete_outbox_rows(&mut *kept, &ids).await {
                    Ok(()) => {
                        self.deletes.connection = Some(kept);
                        return Ok(());
                    }
                    Err(error) => {
                        tracing::debug!(%error, "the relay's connection failed; taking another")
                    }
                }
            }
            let mut fresh = self.pool.acquire().await?;
            store::delete_outbox_rows(&mut *fresh, &ids).await?;
            self.deletes.connection = Some(fresh);
            Ok(())
        };
        tokio::time::timeout(self.work_timeout, deleting)
            .await
            .unwrap_or(Err(RelayError::TimedOut(self.work_timeout)))
    }

    /// Sends `rows`, then waits for their confirms (pipelined), at most `confirm_timeout`.
    async fn publish<'r>(
        &self,
        rows: &[&'r OutboxRow],
    ) -> Vec<(&'r OutboxRow, Result<(), PublishError>)> {
        let mut pending = Vec::with_capacity(rows.len());
        for row in rows {
            pending.push(self.publisher.send(&traced(&row.message)).await);
        }
        let confirms = join_all(pending.into_iter().map(|sent| async move {
            match sent {
                Ok(confirm) => confirm.wait().await,
                Err(error) => Err(error),
            }
        }));
        let outcomes = match tokio::time::timeout(self.confirm_timeout, confirms).await {
            Ok(outcomes) => outcomes,
            Err(_) => rows
                .iter()
                .map(|row| {
                    Err(PublishError::Nacked {
                        routing_key: format!(
                            "{} (no confirm within {:?})",
                            row.message.routing_key, self.confirm_timeout
                        ),
                    })
                })
                .collect(),
        };
        rows.iter().copied().zip(outcomes).collect()
    }

    /// Opens a new channel after the broker closed this one (a refused publish closes the
    /// channel) or nacked on it, closing it if it is still open; fails when the connection
    /// itself is gone.
    async fn reopen_channel(&mut self) -> Result<(), RelayError> {
        if !self.connection.status().connected() {
            return Err(RelayError::Broker(lapin::Error::InvalidConnectionState(
                self.connection.status().state(),
            )));
        }
        let old = std::mem::replace(
            &mut self.publisher,
            Publisher::open(&self.connection).await?,
        );
        if old.channel().status().connected() {
            let _ = old.channel().close(200, "replaced").await;
        }
        Ok(())
    }
}

/// A database failure of the relay is logged and waited out: the rows stay in the table, claimed
/// until their lease ends, and the next poll takes them. A broker failure ends the relay.
fn database_later(error: RelayError) -> Result<(), RelayError> {
    match error {
        error @ (RelayError::Database(_) | RelayError::TimedOut(_)) => {
            tracing::warn!(%error, "outbox relay: waiting for PostgreSQL");
            Ok(())
        }
        broker => Err(broker),
    }
}

/// The pause before the next publish of a row that has failed `attempts` times before.
fn retry_delay(attempts: i32) -> Duration {
    let exponent = attempts.clamp(0, 6) as u32;
    (Duration::from_millis(500) * 2u32.pow(exponent)).min(MAX_RETRY_DELAY)
}

/// `message`, sent in an `outbox publish` span that continues the trace in its headers, with
/// that span as the trace context it carries on. Untouched when it carries no trace.
fn traced(
    message: &sagaflow_amqp::OutgoingMessage,
) -> std::borrow::Cow<'_, sagaflow_amqp::OutgoingMessage> {
    let header = |name: &str| {
        message
            .headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    if header(headers::TRACEPARENT).is_none() {
        return std::borrow::Cow::Borrowed(message);
    }
    let span = tracing::info_span!(
        "outbox publish",
        otel.kind = "producer",
        messaging.system = "rabbitmq",
        messaging.operation.type = "send",
        messaging.destination.name = %message.routing_key,
        messaging.message.id = %message.message_id,
        sagaflow.message_type = %message.message_type,
        saga_id = tracing::field::Empty,
        step = tracing::field::Empty,
        attempt = tracing::field::Empty,
    );
    for (field, name) in [
        ("saga_id", headers::SAGA_ID),
        ("step", headers::STEP),
        ("attempt", headers::ATTEMPT),
    ] {
        if let Some(value) = header(name) {
            span.record(field, value.as_str());
        }
    }
    sagaflow_process::set_remote_parent(&span, header);
    let mut message = message.clone();
    message
        .headers
        .retain(|(key, _)| key != headers::TRACEPARENT && key != headers::TRACESTATE);
    message
        .headers
        .extend(sagaflow_process::trace_headers(&span));
    std::borrow::Cow::Owned(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_to_a_cap() {
        assert_eq!(retry_delay(0), Duration::from_millis(500));
        assert_eq!(retry_delay(1), Duration::from_secs(1));
        assert_eq!(retry_delay(100), Duration::from_secs(32));
    }
}
