//! Publishes one message whose headers nest tables and arrays `levels` deep, as a hostile
//! publisher could, for the poison-message tests:
//! `publish-nested-headers <queue> <levels> <message-id> < body`, with `AMQP_URL` set.
//!
//! lapin serializes frames recursively on its own I/O thread, so this process needs
//! `RUST_MIN_STACK` large enough for the nesting (about 4.3 KB per level in a debug build);
//! [`sagaflow_e2e::Deployment::publish_with_nested_headers`] sets it.

use std::io::Read;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldArray, FieldTable};
use lapin::BasicProperties;

const STACK_BYTES: usize = 512 << 20;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, queue, levels, message_id] = &args[..] else {
        panic!("usage: publish-nested-headers <queue> <levels> <message-id> < body");
    };
    let levels: usize = levels.parse().expect("levels is a number");
    let mut body = Vec::new();
    std::io::stdin()
        .read_to_end(&mut body)
        .expect("the body is read from stdin");
    let (queue, message_id) = (queue.clone(), message_id.clone());
    // Building, cloning and dropping the nested value recurses too.
    std::thread::Builder::new()
        .stack_size(STACK_BYTES)
        .spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime starts")
                .block_on(publish(&queue, levels, &message_id, body))
        })
        .expect("the publishing thread starts")
        .join()
        .expect("publishing does not panic");
}

async fn publish(queue: &str, levels: usize, message_id: &str, body: Vec<u8>) {
    let url = std::env::var("AMQP_URL").expect("AMQP_URL is set");
    let connection = sagaflow_amqp::connect(&url, "sagaflow-e2e-nested-headers")
        .await
        .expect("RabbitMQ is reachable");
    let channel = connection.create_channel().await.expect("a channel opens");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm mode");
    // The headers table is level 1; alternate tables and arrays below it.
    let mut value = AMQPValue::FieldArray(FieldArray::default());
    for level in (2..levels).rev() {
        value = if level % 2 == 0 {
            let mut table = FieldTable::default();
            table.insert("t".into(), value);
            AMQPValue::FieldTable(table)
        } else {
            AMQPValue::FieldArray(vec![value].into())
        };
    }
    let mut headers = FieldTable::default();
    headers.insert("nested".into(), value);
    headers.insert("x-poison".into(), AMQPValue::LongString("nested".into()));
    let properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_message_id(message_id.into())
        .with_headers(headers);
    let confirm = channel
        .basic_publish(
            "",
            queue,
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            &body,
            properties,
        )
        .await
        .expect("the message is sent")
        .await
        .expect("the broker answers");
    assert_eq!(
        confirm,
        Confirmation::Ack(None),
        "the broker took the message"
    );
    let _ = connection.close(200, "published").await;
}
