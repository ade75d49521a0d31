use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use sagaflow_contracts::{headers, Topology};

use crate::{OutgoingMessage, Publisher};

/// Moves `delivery` (taken from `source_queue`) to the dead-letter queue with `reason` in the
/// `x-sagaflow-dead-letter-reason` header, then acks it.
///
/// If the copy cannot be published, the delivery is rejected without requeue instead, so the
/// broker dead-letters it through the queue's dead-letter exchange (without the reason). Either
/// way it leaves the queue and never blocks the messages behind it.
pub async fn dead_letter(
    publisher: &Publisher,
    topology: &Topology,
    delivery: &Delivery,
    source_queue: &str,
    reason: &str,
) -> Result<(), lapin::Error> {
    tracing::warn!(queue = source_queue, reason, "dead-lettering a message");
    let props = &delivery.properties;
    let mut copied: Vec<(String, String)> = props
        .headers()
        .as_ref()
        .map(|table| {
            table
                .inner()
                .keys()
                .filter_map(|k| {
                    crate::header(delivery, k.as_str()).map(|v| (k.as_str().to_owned(), v))
                })
                .collect()
        })
        .unwrap_or_default();
    copied.retain(|(k, _)| k != headers::DEAD_LETTER_REASON && k != headers::DEAD_LETTER_QUEUE);
    copied.push((headers::DEAD_LETTER_REASON.to_owned(), reason.to_owned()));
    copied.push((
        headers::DEAD_LETTER_QUEUE.to_owned(),
        source_queue.to_owned(),
    ));
    let message = OutgoingMessage {
        exchange: topology.dead_letter_exchange(),
        routing_key: source_queue.to_owned(),
        message_id: props
            .message_id()
            .as_ref()
            .map(|id| id.as_str().to_owned())
            .unwrap_or_default(),
        message_type: props
            .kind()
            .as_ref()
            .map(|t| t.as_str().to_owned())
            .unwrap_or_default(),
        headers: copied,
        body: delivery.data.clone(),
    };
    match publisher.publish_confirmed(&message).await {
        Ok(()) => delivery.ack(BasicAckOptions::default()).await,
        Err(error) => {
            tracing::error!(%error, "could not publish to the dead-letter exchange; rejecting instead");
            delivery
                .nack(BasicNackOptions {
                    requeue: false,
                    ..Default::default()
                })
                .await
        }
    }
}
