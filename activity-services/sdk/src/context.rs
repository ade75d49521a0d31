//! What a handler knows about the command it runs, how it reports progress, and how it learns
//! that the attempt was cancelled: [`ActivityContext`].

use std::sync::Arc;
use std::time::Duration;

use sagaflow_contracts::{ActivityCommand, IdempotencyKey, SagaId, StepSeq};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::cancel::Cancellation;
use crate::heartbeat::{bounded_details, Heartbeats};

/// The saga step an activity handler is running, the attempt's heartbeats and its cancellation.
///
/// Cheap to clone; clones share the attempt's heartbeats and cancellation.
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
    /// Never tripped for a context built with [`ActivityContext::from_command`].
    cancellation: Cancellation,
}

impl ActivityContext {
    /// The context of `command`. The worker builds it for you; this is for calling a handler
    /// directly, e.g. in a test. Such a context has no broker: its
    /// [`heartbeat`](ActivityContext::heartbeat) does nothing and it is never
    /// [cancelled](ActivityContext::is_cancelled).
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
            cancellation: Cancellation::default(),
        }
    }

    /// The context of `command`, whose heartbeats `heartbeats` publishes and which the
    /// orchestrator cancels through `cancellation`.
    pub(crate) fn running(
        command: &ActivityCommand,
        heartbeats: Arc<Heartbeats>,
        cancellation: Cancellation,
    ) -> Self {
        ActivityContext {
            heartbeats: Some(heartbeats),
            cancellation,
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

    /// Whether the orchestrator cancelled this attempt: its saga was cancelled or terminated
    /// while the attempt ran (an [`ActivityCancel`](crate::contracts::ActivityCancel) named
    /// it). Check it between units of work; stop as soon as you can and return
    /// `Err(ActivityError::permanent(error_kinds::CANCELLED, …))`
    /// ([`error_kinds::CANCELLED`](crate::contracts::error_kinds::CANCELLED)). Leave the
    /// effects already done consistent: the saga's compensations undo completed steps only.
    ///
    /// Cancellation is best effort: a handler may also never learn it (the cancel was lost,
    /// or arrived after the handler finished), and the orchestrator copes with either result.
    /// Always `false` on a context built with [`from_command`](ActivityContext::from_command).
    pub fn is_cancelled(&self) -> bool {
        self.cancellation.token().is_cancelled()
    }

    /// Resolves when the orchestrator cancels this attempt (see
    /// [`is_cancelled`](ActivityContext::is_cancelled)); never on a context built with
    /// [`from_command`](ActivityContext::from_command). Race it against the work with
    /// `tokio::select!`:
    ///
    /// ```no_run
    /// # use sagaflow_sdk::{ActivityContext, ActivityError, contracts::error_kinds};
    /// # async fn long_work() -> Result<u64, ActivityError> { Ok(1) }
    /// async fn import(ctx: ActivityContext, _file: String) -> Result<u64, ActivityError> {
    ///     tokio::select! {
    ///         rows = long_work() => rows,
    ///         () = ctx.cancelled() => Err(ActivityError::permanent(
    ///             error_kinds::CANCELLED,
    ///             format!("stopped: {}", ctx.cancellation_reason().unwrap_or_default()),
    ///         )),
    ///     }
    /// }
    /// ```
    ///
    /// Cancel safe; dropping it stops nothing.
    pub async fn cancelled(&self) {
        self.cancellation.token().cancelled().await
    }

    /// Why the orchestrator cancelled this attempt (at most 512 bytes of the cancel's reason),
    /// once [`is_cancelled`](ActivityContext::is_cancelled); `None` before.
    pub fn cancellation_reason(&self) -> Option<String> {
        self.cancellation.reason()
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

    #[tokio::test]
    async fn a_context_built_from_a_command_is_never_cancelled() {
        let ctx = ActivityContext::from_command(&command(None));
        assert!(!ctx.is_cancelled());
        assert_eq!(ctx.cancellation_reason(), None);
        let waited = tokio::time::timeout(Duration::from_millis(10), ctx.cancelled()).await;
        assert!(waited.is_err(), "cancelled() resolved on a test context");
    }

    #[tokio::test]
    async fn a_cancelled_attempt_wakes_its_handler_with_the_reason() {
        let cancellation = Cancellation::default();
        let ctx = ActivityContext {
            cancellation: cancellation.clone(),
            ..ActivityContext::from_command(&command(None))
        };
        let handler = ctx.clone();
        let waiting = tokio::spawn(async move { handler.cancelled().await });
        cancellation.cancel("the saga was cancelled");
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("cancelled() did not resolve within 5 s")
            .unwrap();
        assert!(ctx.is_cancelled());
        assert_eq!(
            ctx.cancellation_reason().as_deref(),
            Some("the saga was cancelled")
        );
    }

    #[test]
    fn a_context_without_a_broker_ignores_heartbeats() {
        // No runtime, no publisher: this must neither panic nor block.
        let ctx = ActivityContext::from_command(&command(None));
        ctx.heartbeat(json!({"rows_done": 1}));
        ctx.heartbeat(());
    }
}
