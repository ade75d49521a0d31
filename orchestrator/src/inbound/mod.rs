//! The wiring that turns inbound messages and due timers into committed transactions. Every
//! kind ends in the one path of `advance.rs`: a start message creates a saga (`start.rs`); an
//! activity result (`result.rs`), a command the broker dead-lettered (`dead_letters.rs`), a due
//! timer (`timer.rs`) and an operator's resume become facts of an existing saga. Heartbeats
//! (`heartbeat.rs`) only move a timer. A message is settled only after its commit.

mod advance;
mod control;
mod dead_letters;
mod heartbeat;
mod result;
mod saga_metrics;
mod signal;
mod start;
mod timer;
mod work;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use sagaflow_amqp::{Delivery, Publisher};
use sagaflow_contracts::{ActivityOptions, SagaId, Topology};
use sagaflow_engine::{panic_message, SagaRegistry};
use sqlx::PgPool;

use crate::bus::CommittedOutbox;
use crate::cache::SagaCache;
use crate::telemetry;
use work::{Batch, Work};

pub(crate) use timer::{fire_due_timers, TimerWakeup};

/// Handles the messages of the orchestrator's queues and its due timers.
pub struct Processor {
    pub(crate) pool: PgPool,
    pub(crate) registry: SagaRegistry,
    pub(crate) cache: SagaCache,
    pub(crate) topology: Topology,
    /// Publishes dead letters and put-back starts (the outbox relay has its own channel).
    /// Replaced when the broker connection is made again (see [`Processor::replace_publisher`]).
    pub(crate) publisher: std::sync::RwLock<Publisher>,
    /// Hands the outbox rows of each commit to this process's relay, which publishes them at
    /// once (they are written reserved for it: other relays take them only if this process
    /// dies or is slow).
    pub(crate) committed_outbox: CommittedOutbox,
    /// How long the rows of a commit stay reserved for this process.
    pub(crate) outbox_handover: Duration,
    /// Wakes the timer claimer for a timer a commit armed, when it is due before the claimer's
    /// next wake-up.
    pub(crate) timer_wakeup: Arc<TimerWakeup>,
    pub(crate) max_message_bytes: usize,
    /// Commands larger than this fail their step instead of being sent (`CommandTooLarge`).
    pub(crate) max_command_bytes: usize,
    /// Encodes payloads where they are written (events, saga rows, outbox bodies) and decodes
    /// those that arrive (starts, results, signals) and are replayed.
    pub(crate) codec: sagaflow_codec::SharedCodec,
    /// Retries and timeouts of steps whose code sets none.
    pub(crate) defaults: ActivityOptions,
    /// How long a start of an unknown saga type is put back before it is dead-lettered.
    pub(crate) unknown_saga_type_grace: Duration,
    /// How long the processing of one message or one timer may take (see
    /// [`DatabaseTimeouts::work`](crate::store::DatabaseTimeouts::work)).
    pub(crate) work_timeout: Duration,
}

/// What to do with a delivery once its transaction is over.
#[derive(Debug)]
pub(crate) enum Disposition {
    /// Done, or a duplicate of something done.
    Ack,
    /// It can never be processed; move it aside with the reason.
    DeadLetter(String),
    /// Not now (a start of a saga type this replica does not know): publish it again at the
    /// back of its queue after a pause, with these headers, then ack this copy.
    PutBack(Vec<(String, String)>),
}

/// Which inbound queue a delivery came from.
#[derive(Debug, Clone, Copy)]
pub enum Inbound {
    Start,
    Results,
    Heartbeats,
    /// Copies of dead-lettered messages, watched for activity commands.
    DeadLetters,
    Signals,
    Control,
}

/// How long a start of an unknown saga type waits before it is put back.
const PUT_BACK_PAUSE: Duration = Duration::from_secs(2);

impl Processor {
    /// The publisher of the current broker connection (a cheap clone).
    pub(crate) fn publisher(&self) -> Publisher {
        match self.publisher.read() {
            Ok(publisher) => publisher.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Publishes on `publisher` from now on: after a reconnect, the processor (and its saga
    /// cache) stays, only the channel changes.
    pub(crate) fn replace_publisher(&self, publisher: Publisher) {
        match self.publisher.write() {
            Ok(mut current) => *current = publisher,
            Err(poisoned) => *poisoned.into_inner() = publisher,
        }
    }

    /// Processes `delivery` in a transaction of its own and settles it: ack after the commit,
    /// dead-letter if it can never be processed, or requeue after a pause if the database
    /// failed.
    pub async fn handle(&self, inbound: Inbound, delivery: Delivery) {
        let mut work = Work::Alone(&self.pool);
        let processing = self.process(&mut work, inbound, &delivery);
        let disposition = self.within_deadline(processing).await.and_then(|d| d);
        if disposition.is_err() {
            // Give a failing database a moment before the message comes round again.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        self.settle(inbound, delivery, disposition).await;
    }

    /// Processes `deliveries` in one transaction (group commit, see `work.rs`), then settles
    /// them. If one of them cannot be committed with the others, the batch is rolled
    /// back and each is processed alone.
    pub async fn handle_batch(&self, inbound: Inbound, mut deliveries: Vec<Delivery>) {
        if deliveries.len() == 1 {
            let delivery = deliveries.pop().expect("one delivery");
            return self.handle(inbound, delivery).await;
        }
        let batched = self.within_deadline(async {
            let mut batch = Batch::begin(&self.pool).await?;
            if let Inbound::Results = inbound {
                let sagas: Vec<SagaId> = deliveries
                    .iter()
                    .filter_map(|delivery| Some(result::attempt_from_headers(delivery)?.0))
                    .collect();
                batch.lock_sagas(&sagas).await?;
            }
            let mut dispositions = Vec::with_capacity(deliveries.len());
            for delivery in &deliveries {
                let disposition = self
                    .process(&mut Work::Batch(&mut batch), inbound, delivery)
                    .await;
                match disposition {
                    Ok(disposition) if !batch.abandoned() => dispositions.push(disposition),
                    // Rolled back when `batch` is dropped.
                    _ => return Ok(None),
                }
            }
            let after_commit = batch.commit().await?;
            Ok::<_, ProcessError>(Some((dispositions, after_commit)))
        });
        match batched.await.and_then(|batched| batched) {
            Ok(Some((dispositions, after_commit))) => {
                metrics::counter!(telemetry::BATCHES).increment(1);
                metrics::counter!(telemetry::BATCHED_MESSAGES).increment(dispositions.len() as u64);
                for after in after_commit {
                    self.after_commit(after);
                }
                // At once: one that is put back (after a pause) must not hold the others' acks.
                let settling = deliveries
                    .into_iter()
                    .zip(dispositions)
                    .map(|(delivery, disposition)| self.settle(inbound, delivery, Ok(disposition)));
                futures::future::join_all(settling).await;
            }
            // A delivery could not be committed with the others: each on its own.
            Ok(None) => {
                metrics::counter!(telemetry::BATCHES_SPLIT).increment(1);
                for delivery in deliveries {
                    self.handle(inbound, delivery).await;
                }
            }
            // The database failed the batch as a whole (its begin, its locks, its commit) or
            // went silent: all go back to the queue after one pause. (If the commit did happen,
            // processing them again finds duplicates.)
            Err(error) => {
                tracing::error!(%error, batch = deliveries.len(), "processing failed; the batch goes back to the queue");
                tokio::time::sleep(Duration::from_secs(1)).await;
                for delivery in deliveries {
                    if let Err(error) = requeue(&delivery).await {
                        tracing::warn!(%error, "could not settle a delivery");
                    }
                }
            }
        }
    }

    /// What to do with `delivery`, its writes done through `work` (not settled yet). A
    /// panic of ours becomes a dead letter with the panic as the reason: the message must not
    /// stay unacked for good, nor crash-loop every replica it is redelivered to.
    async fn process(
        &self,
        work: &mut Work<'_>,
        inbound: Inbound,
        delivery: &Delivery,
    ) -> Result<Disposition, ProcessError> {
        if let Err(reason) = sagaflow_amqp::check_properties(&delivery.properties) {
            return Ok(Disposition::DeadLetter(reason));
        }
        let processing = match inbound {
            Inbound::Start => self.start_saga(work, delivery).boxed(),
            Inbound::Results => self.record_result(work, delivery).boxed(),
            Inbound::Heartbeats => self.record_heartbeat(work, delivery).boxed(),
            Inbound::DeadLetters => self.notice_dead_letter(work, delivery).boxed(),
            Inbound::Signals => self.deliver_signal(work, delivery).boxed(),
            Inbound::Control => self.control_saga(work, delivery).boxed(),
        };
        let disposition = match AssertUnwindSafe(processing).catch_unwind().await {
            Ok(processed) => processed,
            Err(panic) => Ok(Disposition::DeadLetter(format!(
                "the orchestrator panicked while processing it: {}",
                panic_message(&*panic)
            ))),
        };
        let disposition = disposition.or_else(|error| match error.permanent_reason() {
            Some(reason) => Ok(Disposition::DeadLetter(reason)),
            None => Err(error),
        });
        match (inbound, disposition) {
            // Never dead-letter a dead letter: it would come round again.
            (Inbound::DeadLetters, Ok(Disposition::DeadLetter(reason))) => {
                tracing::debug!(reason, "dead letter not about a current attempt; ignored");
                Ok(Disposition::Ack)
            }
            (_, other) => other,
        }
    }

    /// Settles `delivery` as `disposition` says, once what it caused is committed.
    async fn settle(
        &self,
        inbound: Inbound,
        delivery: Delivery,
        disposition: Result<Disposition, ProcessError>,
    ) {
        let queue = match inbound {
            Inbound::Start => self.topology.start_queue(),
            Inbound::Results => self.topology.results_queue(),
            Inbound::Heartbeats => self.topology.heartbeats_queue(),
            Inbound::DeadLetters => self.topology.dead_letter_watch_queue(),
            Inbound::Signals => self.topology.signals_queue(),
            Inbound::Control => self.topology.control_queue(),
        };
        if let (Inbound::Start, Ok(Disposition::DeadLetter(reason))) = (inbound, &disposition) {
            self.reply_rejected(&delivery, reason).await;
        }
        let settled = match disposition {
            Ok(Disposition::Ack) => delivery.ack(BasicAckOptions::default()).await,
            Ok(Disposition::DeadLetter(reason)) => {
                sagaflow_amqp::dead_letter(
                    &self.publisher(),
                    &self.topology,
                    &delivery,
                    &queue,
                    &reason,
                )
                .await
            }
            Ok(Disposition::PutBack(headers)) => self.put_back(&delivery, &queue, headers).await,
            Err(error) => {
                tracing::error!(%error, queue, "processing failed; the message goes back to the queue");
                requeue(&delivery).await
            }
        };
        if let Err(error) = settled {
            // The channel is gone; the broker redelivers the message, and it is a duplicate then.
            tracing::warn!(%error, queue, "could not settle a delivery");
        }
    }

    /// The body of `delivery` as `decode` reads it, or why it is dead-lettered: it is too large,
    /// of a wire version this orchestrator does not speak, or not the message its queue carries.
    pub(crate) fn decode<T>(
        &self,
        delivery: &Delivery,
        decode: fn(&[u8]) -> Result<T, sagaflow_contracts::decode::DecodeError>,
    ) -> Result<T, Disposition> {
        if let Some(too_large) = self.too_large(delivery) {
            return Err(too_large);
        }
        if let Some(reason) = unsupported_wire_version(delivery) {
            return Err(Disposition::DeadLetter(reason));
        }
        decode(&delivery.data).map_err(|e| Disposition::DeadLetter(e.to_string()))
    }

    /// A dead-letter disposition for a body over the size limit.
    pub(crate) fn too_large(&self, delivery: &Delivery) -> Option<Disposition> {
        (delivery.data.len() > self.max_message_bytes).then(|| {
            Disposition::DeadLetter(format!(
                "message of {} bytes exceeds the limit of {} bytes (SAGAFLOW_MAX_MESSAGE_BYTES)",
                delivery.data.len(),
                self.max_message_bytes
            ))
        })
    }

    /// Tells the caller of a start that is dead-lettered why, if it asked for the outcome, so
    /// that it need not wait. Best effort: the dead letter keeps the reason too.
    async fn reply_rejected(&self, delivery: &Delivery, reason: &str) {
        let (Some(reply_to), correlation_id) = start::reply_address(delivery) else {
            return;
        };
        let start = sagaflow_contracts::decode::start_saga(&delivery.data).ok();
        let finished = sagaflow_contracts::SagaFinished {
            saga_id: None,
            saga_type: start
                .as_ref()
                .map(|s| sagaflow_contracts::reason::truncate(&s.saga_type, 100).into_owned())
                .unwrap_or_default(),
            start_key: start.and_then(|s| s.start_key),
            status: "rejected".to_owned(),
            output: None,
            error: Some(serde_json::json!({
                "reason": sagaflow_contracts::reason::bounded(reason)
            })),
        };
        let reply = advance::finished_message(&finished, reply_to, correlation_id);
        if let Err(error) = self.publisher().publish_confirmed(&reply).await {
            tracing::warn!(%error, "could not tell the caller its start was rejected");
        }
    }

    /// Publishes a copy of `delivery` at the back of `queue` after a pause, then acks it. A
    /// crash in between leaves two copies; starts are idempotent by their start key.
    async fn put_back(
        &self,
        delivery: &Delivery,
        queue: &str,
        headers: Vec<(String, String)>,
    ) -> Result<(), lapin::Error> {
        tokio::time::sleep(PUT_BACK_PAUSE).await;
        let props = &delivery.properties;
        let copy = sagaflow_amqp::OutgoingMessage {
            exchange: String::new(),
            routing_key: queue.to_owned(),
            message_id: props
                .message_id()
                .as_ref()
                .map(|id| id.to_string())
                .unwrap_or_default(),
            message_type: props
                .kind()
                .as_ref()
                .map(|t| t.to_string())
                .unwrap_or_default(),
            headers,
            body: delivery.data.clone(),
            ..Default::default()
        };
        match self.publisher().publish_confirmed(&copy).await {
            Ok(()) => delivery.ack(BasicAckOptions::default()).await,
            Err(error) => {
                tracing::warn!(%error, "could not put the start back; it is redelivered instead");
                requeue(delivery).await
            }
        }
    }
}

/// Why processing failed; it is retried unless the failure is permanent.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProcessError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// See [`Processor::within_deadline`].
    #[error("PostgreSQL did not finish the work within {0:?} (SAGAFLOW_DB_WORK_TIMEOUT_SECS); its connection is given up")]
    TimedOut(Duration),
    /// During a rolling deploy a replica may not know a saga type yet; another one will.
    #[error("no saga type {0:?} is registered with this replica")]
    UnknownSagaType(String),
    /// The payload codec could not encode a payload (it never fails for a JSON value that
    /// fits in memory).
    #[error("payload codec: {0}")]
    Codec(String),
}

impl Processor {
    /// `work` within [`Processor::work_timeout`], else [`ProcessError::TimedOut`]: the work is
    /// dropped, so its transaction is never committed, and the pool closes its connection if
    /// it does not answer (`store::pool_options`).
    pub(crate) async fn within_deadline<T, E>(
        &self,
        work: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<Result<T, E>, ProcessError> {
        tokio::time::timeout(self.work_timeout, work)
            .await
            .map_err(|_| ProcessError::TimedOut(self.work_timeout))
    }
}

impl ProcessError {
    /// Why the message can never be processed, if that is so: PostgreSQL refused its data
    /// (SQLSTATE class 22, e.g. a NUL character in JSON) or it exceeds a limit (class 54).
    pub(crate) fn permanent_reason(&self) -> Option<String> {
        if let ProcessError::Codec(reason) = self {
            return Some(format!("payload codec: {reason}"));
        }
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

/// Why `delivery` is of a wire contract version this orchestrator does not speak, if it is.
pub(crate) fn unsupported_wire_version(delivery: &Delivery) -> Option<String> {
    let content_type = delivery.properties.content_type().as_ref();
    sagaflow_contracts::check_content_type(content_type.map(|t| t.as_str()))
        .err()
        .map(|e| e.to_string())
}

/// Puts `delivery` back in its queue (the broker delivers it again, to any consumer).
async fn requeue(delivery: &Delivery) -> Result<(), lapin::Error> {
    delivery
        .nack(BasicNackOptions {
            requeue: true,
            ..Default::default()
        })
        .await
}
