use std::future::Future;

use futures::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::Channel;
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
    let batches = Batching {
        prefetch: concurrency,
        max_batch: 1,
    };
    consume_batches(
        channel,
        queue,
        batches,
        shutdown,
        |mut batch: Vec<Delivery>| handle(batch.pop().expect("a batch is never empty")),
    )
    .await
}

/// How [`consume_batches`] groups deliveries.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    /// Deliveries the broker may have sent and not seen settled (the AMQP prefetch).
    pub prefetch: u16,
    /// At most this many deliveries in one call of the handler.
    pub max_batch: u16,
}

impl Batching {
    /// How many batches are handled at once: enough for every prefetched delivery.
    fn concurrency(self) -> usize {
        usize::from(self.prefetch.max(1)).div_ceil(usize::from(self.max_batch.max(1)))
    }
}

/// Consumes `queue` with manual acks, handing `handle` the deliveries at hand in batches: a
/// delivery that arrives while a batch slot is free goes at once with those already received
/// (up to `max_batch`), so one message alone is never held back to wait for others, and under
/// load the batches grow by themselves. `handle` owns its deliveries and must settle each.
///
/// When `shutdown` is cancelled the consumer is cancelled first, so no new deliveries arrive,
/// then in-flight handlers run to the end; unacked prefetched messages go back to the queue.
pub async fn consume_batches<H, Fut>(
    channel: &Channel,
    queue: &str,
    batching: Batching,
    shutdown: CancellationToken,
    handle: H,
) -> Result<(), ConsumeError>
where
    H: Fn(Vec<Delivery>) -> Fut,
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
    let max_batch = usize::from(batching.max_batch.max(1));
    let slots = batching.concurrency();
    channel
        .basic_qos(batching.prefetch.max(1), BasicQosOptions::default())
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
    // Received, waiting for a free slot.
    let mut waiting: Vec<Delivery> = Vec::new();
    let mut in_flight = JoinSet::new();
    let result = loop {
        while !waiting.is_empty() && in_flight.len() < slots {
            let take = waiting.len().min(max_batch);
            let batch: Vec<Delivery> = waiting.drain(..take).collect();
            in_flight.spawn(handle(batch));
        }
        tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                if let Err(panic) = done {
                    tracing::error!(queue, %panic, "a message handler panicked");
                }
            }
            next = consumer.next() => match next {
                Some(Ok(delivery)) => {
                    waiting.push(delivery);
                    // Those that arrived with it join its batch.
                    let mut ended = None;
                    while waiting.len() < max_batch && ended.is_none() {
                        match consumer.next().now_or_never() {
                            Some(Some(Ok(delivery))) => waiting.push(delivery),
                            Some(Some(Err(source))) => ended = Some(Err(err(source))),
                            Some(None) => ended = Some(Ok(())),
                            None => break,
                        }
                    }
                    if let Some(ended) = ended {
                        break ended;
                    }
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
    // Received but not handled: back to the queue with the channel (their handlers never ran).
    drop(waiting);
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
