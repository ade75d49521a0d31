//! Consumer lag: how many messages wait in the queues a process consumes, read with a passive
//! `queue.declare` (the broker answers with the count of ready messages; nothing is changed).

use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::Connection;
use tokio_util::sync::CancellationToken;

/// Every `every`, reports the ready messages of each of `queues` to `report` (queue name,
/// count), until `stop` or the connection is gone. A queue that cannot be read (deleted, say)
/// is skipped that round; its channel, closed by the broker's refusal, is opened again.
pub async fn watch_queue_depths(
    connection: &Connection,
    queues: &[String],
    every: Duration,
    stop: CancellationToken,
    report: impl Fn(&str, u32),
) {
    let mut channel = None;
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = ticks.tick() => {}
        }
        if !connection.status().connected() {
            break;
        }
        for queue in queues {
            let open = match channel
                .take()
                .filter(|c: &lapin::Channel| c.status().connected())
            {
                Some(open) => open,
                None => match connection.create_channel().await {
                    Ok(open) => open,
                    Err(error) => {
                        tracing::debug!(%error, "cannot open a channel to read queue depths");
                        break;
                    }
                },
            };
            let declared = open
                .queue_declare(
                    queue,
                    QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await;
            match declared {
                Ok(declared) => report(queue, declared.message_count()),
                Err(error) => tracing::debug!(queue, %error, "cannot read the queue's depth"),
            }
            channel = Some(open);
        }
    }
    if let Some(channel) = channel.filter(|c| c.status().connected()) {
        let _ = channel.close(200, "done reading queue depths").await;
    }
}
