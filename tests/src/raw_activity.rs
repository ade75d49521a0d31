//! An activity service written against the wire contract alone, with a plain AMQP client, as
//! a service in another language would be: it lets a test decide every answer.

use std::time::Duration;

use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::FieldTable;
use sagaflow_amqp::{declare_activity_queue, Delivery, OutgoingMessage, Publisher, QueueType};
use sagaflow_contracts::{headers, ActivityCommand, ActivityOutcome, Topology};
use serde_json::Value;

/// The consumer of one activity queue.
pub struct RawActivity {
    consumer: lapin::Consumer,
    publisher: Publisher,
    topology: Topology,
    _channel: lapin::Channel,
}

/// A command taken from the queue, not yet settled.
pub struct RawCommand {
    pub command: ActivityCommand,
    pub delivery: Delivery,
}

impl RawActivity {
    pub(crate) async fn start(
        amqp: &lapin::Connection,
        topology: &Topology,
        activity: &str,
    ) -> RawActivity {
        let channel = amqp.create_channel().await.expect("a channel opens");
        declare_activity_queue(&channel, topology, QueueType::Quorum, activity)
            .await
            .expect("the activity queue can be declared");
        channel
            .basic_qos(10, BasicQosOptions::default())
            .await
            .expect("qos");
        let consumer = channel
            .basic_consume(
                &topology.activity_queue(activity),
                "",
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("the activity queue can be consumed");
        let publisher = Publisher::open(amqp)
            .await
            .expect("a confirm channel opens");
        RawActivity {
            consumer,
            publisher,
            topology: topology.clone(),
            _channel: channel,
        }
    }

    /// The next command, within `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> RawCommand {
        let next = tokio::time::timeout(timeout, self.consumer.next()).await;
        let Ok(Some(Ok(delivery))) = next else {
            panic!("no activity command arrived within {timeout:?}");
        };
        let command =
            serde_json::from_slice(&delivery.data).expect("the command is an ActivityCommand");
        RawCommand { command, delivery }
    }

    /// Publishes the result of `command` with a confirm, then acks the command.
    pub async fn reply(&self, command: &RawCommand, outcome: ActivityOutcome) {
        let body = serde_json::to_vec(&command.command.reply(outcome)).unwrap();
        self.reply_raw(command, body).await;
    }

    /// Publishes `body` as the result of `command` (with the usual headers), then acks.
    pub async fn reply_raw(&self, command: &RawCommand, body: Vec<u8>) {
        let message = self.message(command, self.topology.results_queue(), body);
        self.publisher
            .publish_confirmed(&message)
            .await
            .expect("the result is confirmed");
        command
            .delivery
            .ack(BasicAckOptions::default())
            .await
            .expect("the command is acked");
    }

    /// Publishes a heartbeat of `command`'s attempt.
    pub async fn heartbeat(&self, command: &RawCommand, details: Option<Value>) {
        let body = serde_json::to_vec(&command.command.heartbeat(details)).unwrap();
        let message = self.message(command, self.topology.heartbeats_queue(), body);
        self.publisher
            .publish_confirmed(&message)
            .await
            .expect("the heartbeat is confirmed");
    }

    /// Rejects `command` without requeue: the broker dead-letters it.
    pub async fn reject(&self, command: &RawCommand) {
        command
            .delivery
            .nack(BasicNackOptions {
                requeue: false,
                ..Default::default()
            })
            .await
            .expect("the command is rejected");
    }

    fn message(&self, command: &RawCommand, queue: String, body: Vec<u8>) -> OutgoingMessage {
        let c = &command.command;
        OutgoingMessage {
            exchange: String::new(),
            routing_key: queue,
            message_id: uuid::Uuid::new_v4().to_string(),
            message_type: String::new(),
            headers: vec![
                (headers::SAGA_ID.to_owned(), c.saga_id.to_string()),
                (headers::STEP.to_owned(), c.step.to_string()),
                (headers::ATTEMPT.to_owned(), c.attempt.to_string()),
            ],
            body,
            ..Default::default()
        }
    }
}
