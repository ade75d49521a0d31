use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use sagaflow_amqp::{declare_queue, PublishError, Publisher, QueueType};
use sagaflow_contracts::{headers, Topology};
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::store;

/// Publishes committed outbox rows with publisher confirms, then deletes them.
///
/// Woken after each commit that wrote rows, and by a poll in case the wake-up was missed or
/// another replica committed the rows. A crash after publishing and before the delete commits
/// publishes the row again later: consumers de-duplicate.
pub struct OutboxRelay {
    pub pool: PgPool,
    pub publisher: Publisher,
    pub topology: Topology,
    pub queue_type: QueueType,
    pub wake: Arc<Notify>,
    pub poll_interval: Duration,
    pub batch_size: i64,
}

/// The relay stopped: its database or broker connection failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("outbox relay: database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("outbox relay: broker: {0}")]
    Broker(#[from] lapin::Error),
}

impl OutboxRelay {
    /// Relays until `shutdown`, then relays what is left once more.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), RelayError> {
        let mut declared = HashSet::new();
        loop {
            while self.relay_batch(&mut declared).await? == self.batch_size as usize {}
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.poll_interval) => {}
            }
        }
        self.relay_batch(&mut declared).await?;
        Ok(())
    }

    /// Publishes one batch; returns how many rows it published.
    async fn relay_batch(&self, declared: &mut HashSet<String>) -> Result<usize, RelayError> {
        let mut tx = self.pool.begin().await?;
        let rows = store::claim_outbox_batch(&mut tx, self.batch_size).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        // Commands go through the default exchange to the activity's queue: make sure it
        // exists even if no activity service has started yet, or the message would be lost.
        for row in &rows {
            let queue = &row.message.routing_key;
            let command = row.message.message_type == headers::message_type::ACTIVITY_COMMAND;
            if command && row.message.exchange.is_empty() && !declared.contains(queue) {
                declare_queue(
                    self.publisher.channel(),
                    &self.topology,
                    self.queue_type,
                    queue,
                )
                .await?;
                declared.insert(queue.clone());
            }
        }
        let mut pending = Vec::with_capacity(rows.len());
        for row in &rows {
            pending.push(self.publisher.send(&traced(&row.message)).await);
        }
        let confirmed = join_all(pending.into_iter().map(|sent| async move {
            match sent {
                Ok(confirm) => confirm.wait().await,
                Err(error) => Err(error),
            }
        }))
        .await;
        let mut published = Vec::with_capacity(rows.len());
        let mut broken = None;
        for (row, outcome) in rows.iter().zip(confirmed) {
            match outcome {
                Ok(()) => published.push(row.id),
                Err(PublishError::Channel { source, .. }) => broken = Some(source),
                // Only an activity command must reach its queue (declared above, so it was
                // deleted meanwhile: declare it again, retry). A reply whose caller is gone, or a
                // cancel no service listens to, has no one to tell: it is done.
                Err(PublishError::Unroutable { routing_key })
                    if row.message.message_type == headers::message_type::ACTIVITY_COMMAND =>
                {
                    tracing::warn!(
                        queue = routing_key,
                        "unroutable (queue deleted?); redeclaring and retrying later"
                    );
                    declared.remove(&routing_key);
                }
                Err(PublishError::Unroutable { routing_key }) => {
                    tracing::info!(
                        routing_key,
                        message_type = row.message.message_type,
                        "no one listens for this message any more; dropped"
                    );
                    published.push(row.id);
                }
                Err(error) => tracing::warn!(%error, "not published; retrying later"),
            }
        }
        store::delete_outbox_rows(&mut tx, &published).await?;
        tx.commit().await?;
        match broken {
            Some(source) => Err(RelayError::Broker(source)),
            None => Ok(published.len()),
        }
    }
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
