use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};
use sagaflow_contracts::Topology;

/// The kind of RabbitMQ queue to declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueType {
    /// Replicated, durable queues: the right choice in production and on a cluster.
    #[default]
    Quorum,
    /// Classic durable queues: fewer resources, for single-node development.
    Classic,
}

impl std::str::FromStr for QueueType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "quorum" => Ok(QueueType::Quorum),
            "classic" => Ok(QueueType::Classic),
            other => Err(format!(
                "unknown queue type {other:?}: use quorum or classic"
            )),
        }
    }
}

/// Declares the dead-letter exchange and queue, the activity-cancels exchange, the start
/// queue, the results queue and the heartbeats queue.
pub async fn declare_core(
    channel: &Channel,
    topology: &Topology,
    queue_type: QueueType,
) -> Result<(), lapin::Error> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .exchange_declare(
            &topology.dead_letter_exchange(),
            ExchangeKind::Fanout,
            durable,
            FieldTable::default(),
        )
        .await?;
    // Cancels of running attempts go to every service replica; nothing is kept for later.
    channel
        .exchange_declare(
            &topology.activity_cancels_exchange(),
            ExchangeKind::Fanout,
            durable,
            FieldTable::default(),
        )
        .await?;
    // The dead-letter queue itself has no dead-letter exchange: nothing leaves it but people.
    channel
        .queue_declare(
            &topology.dead_letter_queue(),
            durable_queue(),
            queue_arguments(queue_type, None),
        )
        .await?;
    channel
        .queue_bind(
            &topology.dead_letter_queue(),
            &topology.dead_letter_exchange(),
            "",
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    declare_queue(channel, topology, queue_type, &topology.start_queue()).await?;
    declare_queue(channel, topology, queue_type, &topology.results_queue()).await?;
    declare_queue(channel, topology, queue_type, &topology.heartbeats_queue()).await
}

/// Declares the command queue of `activity`.
pub async fn declare_activity_queue(
    channel: &Channel,
    topology: &Topology,
    queue_type: QueueType,
    activity: &str,
) -> Result<(), lapin::Error> {
    declare_queue(
        channel,
        topology,
        queue_type,
        &topology.activity_queue(activity),
    )
    .await
}

/// Declares the durable queue `name`, dead-lettering into the topology's dead-letter exchange.
pub async fn declare_queue(
    channel: &Channel,
    topology: &Topology,
    queue_type: QueueType,
    name: &str,
) -> Result<(), lapin::Error> {
    let dlx = topology.dead_letter_exchange();
    channel
        .queue_declare(
            name,
            durable_queue(),
            queue_arguments(queue_type, Some(&dlx)),
        )
        .await
        .map(drop)
}

fn durable_queue() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..Default::default()
    }
}

fn queue_arguments(queue_type: QueueType, dead_letter_exchange: Option<&str>) -> FieldTable {
    let mut args = FieldTable::default();
    let kind = match queue_type {
        QueueType::Quorum => "quorum",
        QueueType::Classic => "classic",
    };
    args.insert("x-queue-type".into(), AMQPValue::LongString(kind.into()));
    if let Some(dlx) = dead_letter_exchange {
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(dlx.into()),
        );
    }
    args
}

/// Declares the orchestrator's copy of the dead letters: a queue bound to the dead-letter
/// exchange, without a dead-letter exchange of its own (what it cannot take is dropped, never
/// sent round again).
pub async fn declare_dead_letter_watch(
    channel: &Channel,
    topology: &Topology,
    queue_type: QueueType,
) -> Result<(), lapin::Error> {
    let queue = topology.dead_letter_watch_queue();
    channel
        .queue_declare(&queue, durable_queue(), queue_arguments(queue_type, None))
        .await?;
    channel
        .queue_bind(
            &queue,
            &topology.dead_letter_exchange(),
            "",
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
}
