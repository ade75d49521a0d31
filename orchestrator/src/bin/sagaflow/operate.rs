//! Telling sagas things from the command line: start and wait for the outcome through the
//! broker, cancel, terminate, retry compensation, signal; and exporting and replay-checking
//! histories.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use futures::StreamExt;
use sagaflow_amqp::{OutgoingMessage, Publisher};
use sagaflow_contracts::{
    headers, ControlAction, ExportedHistory, SagaControl, SagaFinished, SagaId, SignalSaga,
    StartSaga, Topology,
};
use sagaflow_orchestrator::store;
use sqlx::PgPool;

use super::{payload_codec, Connection};

/// Publishes `start` with a reply queue of its own and waits for its `SagaFinished`. Everything
/// the wait needs is checked before the start is published, so a failed check never leaves a
/// saga started behind the caller's back: the connection and confirm channel are open, the
/// reply queue is declared and consumed (the outcome cannot be missed), and an orchestrator
/// consumes the start queue (or the wait could only time out). Nothing but the broker is
/// needed.
pub async fn start_and_wait(
    connection: &Connection,
    start: &StartSaga,
    message_id: &str,
    timeout: Duration,
    trace: Vec<(String, String)>,
) -> anyhow::Result<SagaFinished> {
    let topology = Topology::new(&connection.namespace)?;
    let amqp = connection.amqp().await?;
    let channel = amqp.create_channel().await?;
    let (reply_queue, mut replies) = sagaflow_amqp::reply_queue(&channel)
        .await
        .context("cannot declare a reply queue; nothing was published")?;
    let publisher = Publisher::open(&amqp)
        .await
        .context("cannot open a publishing channel; nothing was published")?;
    check_start_queue_consumed(&amqp, &topology, timeout).await?;
    let message = OutgoingMessage {
        routing_key: topology.start_queue(),
        message_id: message_id.to_owned(),
        message_type: headers::message_type::START_SAGA.to_owned(),
        body: serde_json::to_vec(start)?,
        headers: trace,
        reply_to: Some(reply_queue),
        correlation_id: Some(message_id.to_owned()),
        ..Default::default()
    };
    publisher
        .publish_confirmed(&message)
        .await
        .context("is the orchestrator's start queue declared? start the orchestrator once first")?;
    println!("start message {message_id} published; waiting for the outcome");
    let outcome = tokio::time::timeout(timeout, async {
        while let Some(delivery) = replies.next().await {
            let delivery = delivery?;
            let ours = delivery.properties.correlation_id().as_ref().map(|id| id.as_str())
                == Some(message_id);
            if !ours {
                continue;
            }
            return serde_json::from_slice::<SagaFinished>(&delivery.data)
                .context("the orchestrator's reply is not a SagaFinished message");
        }
        bail!("the broker closed the reply queue")
    })
    .await
    .with_context(|| {
        format!("no outcome within {timeout:?}; is an orchestrator running? (`sagaflow show --start-key` tells later)")
    })??;
    let _ = amqp.close(200, "done").await;
    Ok(outcome)
}

/// Fails unless an orchestrator consumes the start queue within `timeout` (one that is starting
/// up gets that long). Checked on a channel of its own: a passive declare of a missing queue
/// closes its channel.
async fn check_start_queue_consumed(
    amqp: &lapin::Connection,
    topology: &Topology,
    timeout: Duration,
) -> anyhow::Result<()> {
    let queue = topology.start_queue();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let channel = amqp.create_channel().await?;
        let passive = lapin::options::QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let declared = channel
            .queue_declare(&queue, passive, lapin::types::FieldTable::default())
            .await
            .with_context(|| {
                format!("the start queue {queue} does not exist: has an orchestrator of this namespace ever run? Nothing was published")
            })?;
        let _ = channel.close(200, "checked").await;
        if declared.consumer_count() > 0 {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "no orchestrator consumed {queue} within {timeout:?}, so --wait could only time \
                 out; nothing was published (start without --wait to leave the start in the \
                 queue until one runs)"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Asks the orchestrators to `action` saga `saga_id` (a message on the control queue).
pub async fn control(
    connection: &Connection,
    saga_id: SagaId,
    action: ControlAction,
    reason: String,
) -> anyhow::Result<()> {
    let topology = Topology::new(&connection.namespace)?;
    let control = SagaControl {
        saga_id,
        action,
        reason,
    };
    publish(
        connection,
        topology.control_queue(),
        headers::message_type::SAGA_CONTROL,
        serde_json::to_vec(&control)?,
        uuid::Uuid::new_v4().to_string(),
    )
    .await
}

/// Sends a signal (a message on the signals queue).
pub async fn signal(connection: &Connection, signal: SignalSaga) -> anyhow::Result<()> {
    let topology = Topology::new(&connection.namespace)?;
    let message_id = signal
        .signal_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    publish(
        connection,
        topology.signals_queue(),
        headers::message_type::SIGNAL_SAGA,
        serde_json::to_vec(&signal)?,
        message_id,
    )
    .await
}

async fn publish(
    connection: &Connection,
    queue: String,
    message_type: &str,
    body: Vec<u8>,
    message_id: String,
) -> anyhow::Result<()> {
    let amqp = connection.amqp().await?;
    let publisher = Publisher::open(&amqp).await?;
    let message = OutgoingMessage {
        routing_key: queue.clone(),
        message_id,
        message_type: message_type.to_owned(),
        body,
        ..Default::default()
    };
    publisher
        .publish_confirmed(&message)
        .await
        .with_context(|| {
            format!(
                "cannot publish to {queue}; is an orchestrator running (it declares the queue)?"
            )
        })?;
    let _ = amqp.close(200, "done").await;
    Ok(())
}

/// Writes the history of `saga_id` as an `ExportedHistory` JSON file to `out` (or stdout).
pub async fn export(pool: &PgPool, saga_id: SagaId, out: Option<&Path>) -> anyhow::Result<()> {
    let saga = store::get_saga(pool, saga_id)
        .await?
        .with_context(|| format!("no saga {saga_id}"))?;
    let exported = ExportedHistory {
        saga_id,
        saga_type: saga.saga_type,
        history: store::load_history(pool, saga_id, &*payload_codec()).await?,
    };
    let text = serde_json::to_string_pretty(&exported)? + "\n";
    match out {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(())
}

/// Replays every exported history in `dir` against the demo sagas of this build; fails if any
/// would diverge. (A binary of your own calls `sagaflow_orchestrator::replay_check` with its
/// registry, e.g. in a `#[test]`.)
pub fn replay_check(dir: &Path) -> anyhow::Result<()> {
    let registry = sagaflow_orchestrator::demo::registry();
    let checked = sagaflow_orchestrator::replay_check(&registry, dir)?;
    let mut diverging = 0;
    for replayed in &checked {
        let saga = replayed
            .saga
            .as_ref()
            .map_or("?".to_owned(), |(t, id)| format!("{t} {id}"));
        match &replayed.divergence {
            None => println!("ok        {}  {saga}", replayed.file.display()),
            Some(reason) => {
                diverging += 1;
                println!(
                    "DIVERGES  {}  {saga}\n          {reason}",
                    replayed.file.display()
                );
            }
        }
    }
    if diverging > 0 {
        bail!("{diverging} of {} histories would diverge", checked.len());
    }
    println!("{} histories replay with this build", checked.len());
    Ok(())
}
