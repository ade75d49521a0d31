use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use lapin::BasicProperties;
use sagaflow_contracts::{headers, reason, Topology};

use crate::headers::header_text;
use crate::{OutgoingMessage, Publisher};

/// The most header bytes (names, values and 6 bytes of framing each) copied from a delivery to
/// its dead letter. With the reason ([`reason::MAX_REASON_BYTES`]), the queue name, a message id
/// and a type (at most 255 bytes each) the dead letter's properties stay under 4 KiB: within the
/// smallest frame AMQP allows (4096 bytes), so the broker never closes the connection over one.
pub const MAX_COPIED_HEADER_BYTES: usize = 2048;

/// Set on a dead letter when some headers of the original were not copied; its value says how
/// many and why.
pub const HEADERS_TRUNCATED: &str = "x-sagaflow-headers-truncated";

/// Moves `delivery` (taken from `source_queue`) to the dead-letter queue with `reason` in the
/// `x-sagaflow-dead-letter-reason` header, then acks it. The reason is cut to
/// [`reason::MAX_REASON_BYTES`] and the copied headers to [`MAX_COPIED_HEADER_BYTES`] (see
/// [`dead_letter_message`]).
///
/// If the copy cannot be published, the delivery is rejected without requeue instead, so the
/// broker dead-letters it through the queue's dead-letter exchange (without the reason). Either
/// way it leaves the queue and never blocks the messages behind it. `publisher` must not be on
/// the channel the delivery came from, so that a failed publish cannot close the channel the
/// rejection needs.
pub async fn dead_letter(
    publisher: &Publisher,
    topology: &Topology,
    delivery: &Delivery,
    source_queue: &str,
    reason: &str,
) -> Result<(), lapin::Error> {
    let message = dead_letter_message(
        topology,
        &delivery.properties,
        &delivery.data,
        source_queue,
        reason,
    );
    let reason = message
        .headers
        .iter()
        .find(|(name, _)| name == headers::DEAD_LETTER_REASON)
        .map_or("", |(_, reason)| reason.as_str());
    tracing::warn!(queue = source_queue, reason, "dead-lettering a message");
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

/// The dead letter of a delivery with `properties` and `body` taken from `source_queue`: the
/// body as it was, the message id and type, the reason (bounded) and the source queue, and those
/// headers of the original that are strings or numbers, in name order, while they fit in
/// [`MAX_COPIED_HEADER_BYTES`]. Tables, arrays and byte arrays are not copied; if anything was
/// left out, [`HEADERS_TRUNCATED`] says so.
pub fn dead_letter_message(
    topology: &Topology,
    properties: &BasicProperties,
    body: &[u8],
    source_queue: &str,
    reason: &str,
) -> OutgoingMessage {
    let mut copied = Vec::new();
    let mut skipped = 0;
    let mut budget = MAX_COPIED_HEADER_BYTES;
    if let Some(table) = properties.headers() {
        for (name, value) in table.inner() {
            let name = name.as_str();
            if name == headers::DEAD_LETTER_REASON
                || name == headers::DEAD_LETTER_QUEUE
                || name == HEADERS_TRUNCATED
            {
                continue;
            }
            match header_text(value) {
                Some(text) if name.len() + text.len() + 6 <= budget => {
                    budget -= name.len() + text.len() + 6;
                    copied.push((name.to_owned(), text));
                }
                _ => skipped += 1,
            }
        }
    }
    if skipped > 0 {
        copied.push((
            HEADERS_TRUNCATED.to_owned(),
            format!(
                "{skipped} headers not copied: tables, arrays, binary, or over \
                 {MAX_COPIED_HEADER_BYTES} bytes in all"
            ),
        ));
    }
    copied.push((
        headers::DEAD_LETTER_REASON.to_owned(),
        reason::bounded(reason).into_owned(),
    ));
    copied.push((
        headers::DEAD_LETTER_QUEUE.to_owned(),
        source_queue.to_owned(),
    ));
    OutgoingMessage {
        exchange: topology.dead_letter_exchange(),
        routing_key: source_queue.to_owned(),
        // Short strings on the wire: at most 255 bytes each.
        message_id: properties
            .message_id()
            .as_ref()
            .map(|id| id.as_str().to_owned())
            .unwrap_or_default(),
        message_type: properties
            .kind()
            .as_ref()
            .map(|t| t.as_str().to_owned())
            .unwrap_or_default(),
        headers: copied,
        body: body.to_vec(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use lapin::types::{AMQPValue, FieldTable};

    use super::*;

    fn topology() -> Topology {
        Topology::new("t").unwrap()
    }

    fn header_bytes(message: &OutgoingMessage) -> usize {
        message
            .headers
            .iter()
            .map(|(name, value)| name.len() + value.len() + 6)
            .sum()
    }

    #[test]
    fn scalar_headers_are_copied_with_the_reason_and_queue() {
        let mut table = FieldTable::default();
        table.insert("traceparent".into(), AMQPValue::LongString("00-ab".into()));
        table.insert("x-delivery-count".into(), AMQPValue::LongLongInt(2));
        let properties = BasicProperties::default()
            .with_headers(table)
            .with_message_id("m-1".into());
        let message = dead_letter_message(&topology(), &properties, b"{}", "t.start", "bad");
        assert_eq!(
            message.headers,
            [
                ("traceparent".to_owned(), "00-ab".to_owned()),
                ("x-delivery-count".to_owned(), "2".to_owned()),
                (headers::DEAD_LETTER_REASON.to_owned(), "bad".to_owned()),
                (headers::DEAD_LETTER_QUEUE.to_owned(), "t.start".to_owned()),
            ]
        );
        assert_eq!(message.message_id, "m-1");
        assert_eq!(message.exchange, "t.dead-letter");
        assert_eq!(message.body, b"{}");
    }

    #[test]
    fn a_huge_reason_is_cut() {
        let reason = "unknown saga type ".to_owned() + &"S".repeat(1_000_000);
        let message =
            dead_letter_message(&topology(), &Default::default(), b"", "t.start", &reason);
        let (_, kept) = &message.headers[0];
        assert_eq!(kept.len(), reason::MAX_REASON_BYTES);
        assert!(kept.starts_with("unknown saga type SSS"));
        assert!(kept.ends_with(reason::TRUNCATED));
    }

    #[test]
    fn headers_beyond_the_budget_nested_or_binary_are_left_out_and_marked() {
        let mut table = FieldTable::default();
        for i in 0..1000 {
            table.insert(
                format!("h-{i:04}").into(),
                AMQPValue::LongString("v".repeat(100).into()),
            );
        }
        table.insert(
            "a-huge".into(),
            AMQPValue::LongString("x".repeat(100_000).into()),
        );
        table.insert(
            "a-table".into(),
            AMQPValue::FieldTable(FieldTable::default()),
        );
        table.insert("a-bytes".into(), AMQPValue::ByteArray(vec![0; 10].into()));
        // Spoofed: the dead letter's own headers are never taken from the original.
        table.insert(
            headers::DEAD_LETTER_REASON.into(),
            AMQPValue::LongString("spoofed".into()),
        );
        let properties = BasicProperties::default()
            .with_headers(table)
            .with_message_id("i".repeat(255).as_str().into())
            .with_type("k".repeat(255).as_str().into());
        let message = dead_letter_message(
            &topology(),
            &properties,
            b"",
            "t.start",
            &"r".repeat(100_000),
        );
        let truncated = message
            .headers
            .iter()
            .find(|(name, _)| name == HEADERS_TRUNCATED)
            .expect("the truncation is marked");
        assert!(
            truncated.1.starts_with("985 headers not copied"),
            "{truncated:?}"
        );
        assert!(!message
            .headers
            .iter()
            .any(|(n, _)| n == "a-huge" || n == "a-table"));
        assert!(!message.headers.iter().any(|(_, v)| v == "spoofed"));
        let total = header_bytes(&message) + message.message_id.len() + message.message_type.len();
        assert!(total < 4096 - 200, "{total} header bytes");
    }
}
