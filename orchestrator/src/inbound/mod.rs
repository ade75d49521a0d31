//! The wiring that turns one inbound message into one committed transaction: a start message
//! into a new saga (`start.rs`), an activity result into the saga's next steps (`result.rs`);
//! both end in one commit (`advance.rs`). The message is acked only after the commit.

mod advance;
mod result;
mod start;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use sagaflow_amqp::{Delivery, Publisher};
use sagaflow_contracts::Topology;
use sqlx::PgPool;
use tokio::sync::Notify;

use crate::engine::{panic_message, SagaCache, SagaRegistry};

/// Handles the messages of the start and results queues.
pub struct Processor {
    pub(crate) pool: PgPool,
    pub(crate) registry: SagaRegistry,
    pub(crate) cache: SagaCache,
    pub(crate) topology: Topology,
    /// Publishes dead letters (the outbox relay has its own channel).
    pub(crate) publisher: Publisher,
    /// Wakes the outbox relay after a commit that wrote outbox rows.
    pub(crate) outbox_ready: Arc<Notify>,
    pub(crate) max_message_bytes: usize,
}

/// What to do with a delivery once its transaction is over.
#[derive(Debug)]
pub(crate) enum Disposition {
    /// Done, or a duplicate of something done.
    Ack,
    /// It can never be processed; move it aside with the reason.
    DeadLetter(String),
}

/// Which inbound queue a delivery came from.
#[derive(Debug, Clone, Copy)]
pub enum Inbound {
    Start,
    Results,
}

impl Processor {
    /// Processes `delivery` and settles it: ack after the commit, dead-letter if it can never be
    /// processed, or requeue after a pause if the database failed.
    pub async fn handle(&self, inbound: Inbound, delivery: Delivery) {
        let queue = match inbound {
            Inbound::Start => self.topology.start_queue(),
            Inbound::Results => self.topology.results_queue(),
        };
        let disposition = if delivery.data.len() > self.max_message_bytes {
            Ok(Disposition::DeadLetter(format!(
                "message of {} bytes exceeds the limit of {} bytes",
                delivery.data.len(),
                self.max_message_bytes
            )))
        } else if let Err(reason) = sagaflow_amqp::check_properties(&delivery.properties) {
            Ok(Disposition::DeadLetter(reason))
        } else {
            let processing = match inbound {
                Inbound::Start => self.start_saga(&delivery).boxed(),
                Inbound::Results => self.record_result(&delivery).boxed(),
            };
            // A bug of ours must not leave the message unacked forever, nor crash-loop every
            // replica it is redelivered to: set it aside with the panic as the reason.
            AssertUnwindSafe(processing)
                .catch_unwind()
                .await
                .unwrap_or_else(|panic| {
                    Ok(Disposition::DeadLetter(format!(
                        "the orchestrator panicked while processing it: {}",
                        panic_message(&*panic)
                    )))
                })
        };
        let disposition = disposition.or_else(|error| match error.permanent_reason() {
            Some(reason) => Ok(Disposition::DeadLetter(reason)),
            None => Err(error),
        });
        let settled = match disposition {
            Ok(Disposition::Ack) => delivery.ack(BasicAckOptions::default()).await,
            Ok(Disposition::DeadLetter(reason)) => {
                sagaflow_amqp::dead_letter(
                    &self.publisher,
                    &self.topology,
                    &delivery,
                    &queue,
                    &reason,
                )
                .await
            }
            Err(error) => {
                tracing::error!(%error, queue, "processing failed; the message goes back to the queue");
                // Give a failing database a moment before the message comes round again.
                tokio::time::sleep(Duration::from_secs(1)).await;
                delivery
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..Default::default()
                    })
                    .await
            }
        };
        if let Err(error) = settled {
            // The channel is gone; the broker redelivers the message, and it is a duplicate then.
            tracing::warn!(%error, queue, "could not settle a delivery");
        }
    }
}

/// Why processing a message failed; it is retried unless the failure is permanent.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProcessError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// During a rolling deploy a replica may not know a saga type yet; another one will.
    #[error("no saga type {0:?} is registered with this replica")]
    UnknownSagaType(String),
}

impl ProcessError {
    /// Why the message can never be processed, if that is so: PostgreSQL refused its data
    /// (SQLSTATE class 22, e.g. a NUL character in JSON) or it exceeds a limit (class 54).
    fn permanent_reason(&self) -> Option<String> {
        let ProcessError::Database(sqlx::Error::Database(db)) = self else {
            return None;
        };
        let code = db.code()?;
        (code.starts_with("22") || code.starts_with("54")).then(|| {
            format!(
                "PostgreSQL refuses its data (SQLSTATE {code}): {}",
                db.message()
            )
        })
    }
}
