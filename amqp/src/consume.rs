use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::Channel;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long cancelling the consumer, and closing its channel, may take at a stop: a broker that
/// went silent must not hold the process up.
const STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Consuming failed.
#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    /// The broker refused to start the consumer. Right after a quorum queue is first declared
    /// (by another process at the same moment), RabbitMQ can fail `basic.consume` and close the
    /// connection; connecting again a moment later succeeds.
    #[error("cannot start consuming from {queue:?}: {source}")]
    Start {
        queue: String,
        #[source]
        source: lapin::Error,
    },
    /// The connection failed while consuming. Connect again; unacked messages are redelivered.
    #[error("consuming from {queue:?} failed: {source}")]
    Stream {
        queue: String,
        #[source]
        source: lapin::Error,
    },
}

impl ConsumeError {
    /// Whether consuming never started (see [`ConsumeError::Start`]).
    pub fn is_start(&self) -> bool {
        matches!(self, ConsumeError::Start { .. })
    }
}

/// Consumes `queue` with manual acks, running `handle` for up to `concurrency` deliveries at a
/// time (the prefetch is set to the same number). `handle` owns the delivery and must ack,
/// reject or dead-letter it.
///
/// When `shutdown` is cancelled the consumer is cancelled first, so no new deliveries arrive,
/// then in-flight handlers run to the end; unacked prefetched messages go back to the queue.
pub async fn consume<H, Fut>(
    channel: &Channel,
    queue: &str,
    concurrency: u16,
    shutdown: CancellationToken,
    handle: H,
) -> Result<(), ConsumeError>
where
    H: Fn(Delivery) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let start_err = |source| ConsumeError::Start {
        queue: queue.to_owned(),
        source,
    };
    let err = |source| ConsumeError::Stream {
        queue: queue.to_owned(),
        source,
    };
    let concurrency = concurrency.max(1);
    channel
        .basic_qos(concurrency, BasicQosOptions::default())
        .await
        .map_err(start_err)?;
    let mut consumer = channel
        .basic_consume(
            queue,
            "",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(start_err)?;
    let tag = consumer.tag().to_string();
    let slots = Arc::new(Semaphore::new(concurrency.into()));
    let mut in_flight = JoinSet::new();
    let result = loop {
        tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                if let Err(panic) = done {
                    tracing::error!(queue, %panic, "a message handler panicked");
                }
            }
            next = consumer.next() => match next {
                Some(Ok(delivery)) => {
                    let Ok(slot) = slots.clone().acquire_owned().await else { break Ok(()) };
                    let work = handle(delivery);
                    in_flight.spawn(async move {
                        work.await;
                        drop(slot);
                    });
                }
                Some(Err(source)) => break Err(err(source)),
                None => break Ok(()),
            },
        }
    };
    if result.is_ok() {
        // Best effort: the channel may already be gone.
        let cancelling = channel.basic_cancel(&tag, BasicCancelOptions::default());
        let _ = tokio::time::timeout(STOP_TIMEOUT, cancelling).await;
    }
    while in_flight.join_next().await.is_some() {}
    if result.is_ok() {
        // Closed here, with its deliveries settled: a channel still open when its connection
        // closes makes the AMQP client log an error at every clean stop.
        let _ = tokio::time::timeout(STOP_TIMEOUT, channel.close(200, "consumer stopped")).await;
    }
    result
}

/// A reply queue of the caller's own (server-named, exclusive, deleted with the connection),
/// consumed without acks: where answers to messages published with `reply_to` arrive.
pub async fn reply_queue(channel: &Channel) -> Result<(String, lapin::Consumer), lapin::Error> {
    let queue = channel
        .queue_declare(
            "",
            lapin::options::QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?
        .name()
        .to_string();
    let consumer = channel
        .basic_consume(
            &queue,
            "",
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok((queue, consumer))
}
