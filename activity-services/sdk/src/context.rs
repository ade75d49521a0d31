//! What a handler knows about the command it runs, and how it reports progress:
//! [`ActivityContext`].

use std::sync::Arc;
use std::time::Duration;

use sagaflow_contracts::{ActivityCommand, IdempotencyKey, SagaId, StepSeq};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::heartbeat::{bounded_details, Heartbeats};

/// The saga step an activity handler is running, and the attempt's heartbeats.
///
/// Cheap to clone; clones share the attempt's heartbeats.
#[derive(Debug, Clone)]
pub struct ActivityContext {
    saga_id: SagaId,
    step: StepSeq,
    attempt: u32,
    activity: String,
    idempotency_key: IdempotencyKey,
    heartbeat_timeout: Option<Duration>,
    heartbeat_details: Option<Value>,
    /// `None` for a context built with [`ActivityContext::from_command`].
    heartbeats: Option<Arc<Heartbeats>>,
}

impl ActivityContext {
    /// The context of `command`. The worker builds it for you; this is for calling a handler
    /// directly, e.g. in a test. Such a context has no broker: its
    /// [`heartbeat`](ActivityContext::heartbeat) does nothing.
    pub fn from_command(command: &ActivityCommand) -> Self {
        ActivityContext {
            saga_id: command.saga_id,
            step: command.step,
            attempt: command.attempt,
            activity: command.activity.clone(),
            idempotency_key: command.idempotency_key.clone(),
            heartbeat_timeout: command.heartbeat_timeout_ms.map(Duration::from_millis),
            heartbeat_details: command.heartbeat_details.clone(),
            heartbeats: None,
        }
    }

    /// The context of `command`, whose heartbeats `heartbeats` publishes.
    pub(crate) fn with_heartbeats(command: &ActivityCommand, heartbeats: Arc<Heartbeats>) -> Self {
        ActivityContext {
            heartbeats: Some(heartbeats),
            ..Self::from_command(command)
        }
    }

    /// The saga this step belongs to.
    pub fn saga_id(&self) -> SagaId {
        self.saga_id
    }

    /// The step's position in its saga.
    pub fn step(&self) -> StepSeq {
        self.step
    }

    /// Which attempt this is, from 1. The orchestrator sends attempt n+1 after attempt n failed
    /// with `retryable: true` or timed out. A redelivered command keeps its attempt number, so
    /// the same attempt can run more than once.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The activity name the handler was registered under.
    pub fn activity(&self) -> &str {
        &self.activity
    }

    /// The same for every attempt and every redelivery of this step: use it to do the step's
    /// effect once (e.g. a unique column, `INSERT … ON CONFLICT DO NOTHING`, or the idempotency
    /// key of a payment provider's API).
    pub fn idempotency_key(&self) -> &IdempotencyKey {
        &self.idempotency_key
    }

    /// How long the orchestrator waits for a heartbeat of this attempt before it times the
    /// attempt out, if the step has a heartbeat timeout. Call
    /// [`heartbeat`](ActivityContext::heartbeat) well within it.
    pub fn heartbeat_timeout(&self) -> Option<Duration> {
        self.heartbeat_timeout
    }

    /// The details of the last heartbeat of an earlier attempt of this step, to go on from the
    /// progress it reported; `None` on the first attempt, when no earlier attempt sent details,
    /// or when they do not fit `T` (logged as a warning: the attempt then starts over).
    ///
    /// The orchestrator may not have received the last details an attempt sent before it
    /// ended, so treat them as "at least this far", never as "exactly this far".
    pub fn heartbeat_details<T: DeserializeOwned>(&self) -> Option<T> {
        let details = self.heartbeat_details.as_ref()?;
        match T::deserialize(details) {
            Ok(details) => Some(details),
            Err(error) => {
                tracing::warn!(%error, "the heartbeat details of the previous attempt do not fit the expected type; ignoring them");
                None
            }
        }
    }

    /// The details of the last heartbeat of an earlier attempt as JSON (see
    /// [`heartbeat_details`](ActivityContext::heartbeat_details)).
    pub fn heartbeat_details_json(&self) -> Option<&Value> {
        self.heartbeat_details.as_ref()
    }

    /// Tells the orchestrator that this attempt is still working, with `details` of its progress
    /// (pass `()` for none) that a later attempt receives in
    /// [`heartbeat_details`](ActivityContext::heartbeat_details) if this one fails or times out.
    ///
    /// Call it as often as you like: at most one heartbeat per third of the
    /// [`heartbeat_timeout`](ActivityContext::heartbeat_timeout) (or per second without one) is
    /// published on the heartbeats queue, and a call inside that interval is published when it
    /// ends, with the latest details. A call without details keeps the details of an earlier,
    /// not yet published call. Details larger than
    /// [`MAX_HEARTBEAT_DETAILS_BYTES`](crate::MAX_HEARTBEAT_DETAILS_BYTES) as JSON are dropped
    /// with a warning (the heartbeat is still sent).
    ///
    /// It never blocks and never fails the handler: publishing happens in the background and a
    /// failure is logged. Calls after the handler returned are ignored. On a context built with
    /// [`from_command`](ActivityContext::from_command) it does nothing.
    pub fn heartbeat(&self, details: impl Serialize) {
        let Some(heartbeats) = &self.heartbeats else {
            return;
        };
        let details = match serde_json::to_value(details) {
            Ok(details) => bounded_details(details),
            Err(error) => {
                tracing::warn!(%error, "heartbeat details cannot be written as JSON; the heartbeat is sent without them");
                None
            }
        };
        heartbeats.beat(details);
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    fn command(heartbeat_details: Option<Value>) -> ActivityCommand {
        let saga_id = SagaId::new_random();
        ActivityCommand {
            saga_id,
            step: StepSeq(4),
            activity: "Import".to_owned(),
            attempt: 3,
            idempotency_key: IdempotencyKey::for_step(saga_id, StepSeq(4)),
            input: Value::Null,
            heartbeat_timeout_ms: Some(9_000),
            heartbeat_details,
        }
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct Progress {
        rows_done: u64,
    }

    #[test]
    fn a_retry_reads_the_progress_of_the_previous_attempt() {
        let ctx = ActivityContext::from_command(&command(Some(json!({"rows_done": 500}))));
        assert_eq!(ctx.attempt(), 3);
        assert_eq!(ctx.heartbeat_timeout(), Some(Duration::from_secs(9)));
        assert_eq!(
            ctx.heartbeat_details::<Progress>(),
            Some(Progress { rows_done: 500 })
        );
        assert_eq!(
            ctx.heartbeat_details_json(),
            Some(&json!({"rows_done": 500}))
        );
    }

    #[test]
    fn details_that_do_not_fit_or_are_absent_read_as_none() {
        let ctx = ActivityContext::from_command(&command(Some(json!("half way"))));
        assert_eq!(ctx.heartbeat_details::<Progress>(), None);
        let ctx = ActivityContext::from_command(&command(None));
        assert_eq!(ctx.heartbeat_details::<Progress>(), None);
    }

    #[test]
    fn a_context_without_a_broker_ignores_heartbeats() {
        // No runtime, no publisher: this must neither panic nor block.
        let ctx = ActivityContext::from_command(&command(None));
        ctx.heartbeat(json!({"rows_done": 1}));
        ctx.heartbeat(());
    }
}
