//! Cancelling running attempts: the orchestrator publishes an [`ActivityCancel`] on the fanout
//! exchange `<namespace>.activity-cancels` when a saga is cancelled or terminated while one of
//! its attempts runs. Every worker reads them from a queue of its own; [`InFlightAttempts`]
//! decides which attempt a cancel is for and trips its [`CancellationToken`], which the handler
//! sees through [`ActivityContext::cancelled`](crate::ActivityContext::cancelled).
//!
//! Delivery is best effort (auto-ack, a queue that lives as long as the connection): a lost
//! cancel only means the attempt runs to its end, and the orchestrator ignores or records its
//! result as it sees fit.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use sagaflow_contracts::decode::MAX_DETAIL_BYTES;
use sagaflow_contracts::reason::truncate;
use sagaflow_contracts::{headers, ActivityCancel, ActivityCommand, SagaId, StepSeq};
use tokio_util::sync::CancellationToken;

/// How many cancels of attempts that were not running yet are remembered, so that a command
/// still waiting in its queue when its cancel arrived starts cancelled.
const REMEMBERED_EARLY_CANCELS: usize = 1024;

/// The longest cancellation reason kept, in bytes: it comes from a message.
const MAX_CANCEL_REASON_BYTES: usize = 512;

/// One attempt of one saga step: what a cancel names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct AttemptKey {
    saga_id: SagaId,
    step: StepSeq,
    attempt: u32,
}

impl AttemptKey {
    pub(crate) fn of_command(command: &ActivityCommand) -> Self {
        AttemptKey {
            saga_id: command.saga_id,
            step: command.step,
            attempt: command.attempt,
        }
    }

    fn of_cancel(cancel: &ActivityCancel) -> Self {
        AttemptKey {
            saga_id: cancel.saga_id,
            step: cancel.step,
            attempt: cancel.attempt,
        }
    }
}

/// The cancellation of one running attempt: the token its handler watches, and why it was
/// tripped. Shared by the clones of the attempt's [`ActivityContext`](crate::ActivityContext).
#[derive(Debug, Clone, Default)]
pub(crate) struct Cancellation {
    token: CancellationToken,
    reason: Arc<Mutex<Option<String>>>,
}

impl Cancellation {
    /// Trips the cancellation with `reason`; the first reason is kept.
    pub(crate) fn cancel(&self, reason: &str) {
        lock(&self.reason)
            .get_or_insert_with(|| truncate(reason, MAX_CANCEL_REASON_BYTES).into_owned());
        self.token.cancel();
    }

    pub(crate) fn token(&self) -> &CancellationToken {
        &self.token
    }

    pub(crate) fn reason(&self) -> Option<String> {
        lock(&self.reason).clone()
    }
}

/// What [`InFlightAttempts::cancel`] did with a cancel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CancelMatch {
    /// The attempt runs here: its cancellation was tripped.
    Running,
    /// The attempt does not run here but is of an activity of this worker: remembered, so that
    /// its command starts cancelled if it arrives later.
    Remembered,
    /// Not an activity of this worker (cancels go to every worker): ignored.
    NotOurs,
}

/// The attempts this worker is running, by [`AttemptKey`], and the recent cancels of attempts
/// it was not running. Pure bookkeeping: no I/O.
#[derive(Debug)]
pub(crate) struct InFlightAttempts {
    /// The activities this worker runs: cancels of other activities are not remembered.
    activities: HashSet<String>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The running attempts; a count because a redelivered command can run while an earlier
    /// delivery of the same attempt still does. Both share one cancellation.
    running: HashMap<AttemptKey, (Cancellation, usize)>,
    /// Cancels that arrived before their attempt ran, oldest first, with their reasons.
    early: VecDeque<(AttemptKey, String)>,
}

impl InFlightAttempts {
    /// The bookkeeping of a worker running `activities`.
    pub(crate) fn new(activities: impl IntoIterator<Item = String>) -> Arc<Self> {
        Arc::new(InFlightAttempts {
            activities: activities.into_iter().collect(),
            state: Mutex::default(),
        })
    }

    /// `command`'s attempt starts running: its cancellation, tripped at once if its cancel
    /// arrived earlier. Keep the [`Running`] guard while the handler runs.
    pub(crate) fn start(self: &Arc<Self>, command: &ActivityCommand) -> Running {
        let key = AttemptKey::of_command(command);
        let mut state = lock(&self.state);
        let early = state
            .early
            .iter()
            .position(|(early, _)| *early == key)
            .and_then(|index| state.early.remove(index));
        let (cancellation, count) = state.running.entry(key).or_default();
        *count += 1;
        let cancellation = cancellation.clone();
        if let Some((_, reason)) = early {
            cancellation.cancel(&reason);
        }
        Running {
            attempts: Arc::clone(self),
            key,
            cancellation,
        }
    }

    /// Trips the cancellation of the attempt `cancel` names if it runs here; otherwise
    /// remembers it if it is of an activity of this worker.
    pub(crate) fn cancel(&self, cancel: &ActivityCancel) -> CancelMatch {
        let key = AttemptKey::of_cancel(cancel);
        let mut state = lock(&self.state);
        if let Some((cancellation, _)) = state.running.get(&key) {
            cancellation.cancel(&cancel.reason);
            return CancelMatch::Running;
        }
        if !self.activities.contains(&cancel.activity) {
            return CancelMatch::NotOurs;
        }
        if !state.early.iter().any(|(early, _)| *early == key) {
            if state.early.len() == REMEMBERED_EARLY_CANCELS {
                state.early.pop_front();
            }
            let reason = truncate(&cancel.reason, MAX_CANCEL_REASON_BYTES).into_owned();
            state.early.push_back((key, reason));
        }
        CancelMatch::Remembered
    }

    fn finish(&self, key: &AttemptKey) {
        let mut state = lock(&self.state);
        if let Some((_, count)) = state.running.get_mut(key) {
            *count -= 1;
            if *count == 0 {
                state.running.remove(key);
            }
        }
    }

    #[cfg(test)]
    fn running(&self) -> usize {
        lock(&self.state).running.len()
    }
}

/// An attempt in [`InFlightAttempts`]; dropping it (when the handler has finished) takes the
/// attempt out, so a later cancel of it changes nothing.
#[derive(Debug)]
pub(crate) struct Running {
    attempts: Arc<InFlightAttempts>,
    key: AttemptKey,
    cancellation: Cancellation,
}

impl Running {
    pub(crate) fn cancellation(&self) -> &Cancellation {
        &self.cancellation
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.attempts.finish(&self.key);
    }
}

/// Why a message on the cancels queue was ignored. Its `Display` is bounded (a few hundred
/// bytes) whatever the message holds.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum IgnoredCancel {
    #[error("message of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge { size: usize, max: usize },
    /// `found` is cut to a few dozen bytes.
    #[error("message of type {found:?} is not an ActivityCancel")]
    WrongType { found: String },
    #[error("not an ActivityCancel message: {0}")]
    Malformed(String),
}

/// The [`ActivityCancel`] in a message of `message_type` (if the sender set one) and `body`.
pub(crate) fn parse_cancel(
    message_type: Option<&str>,
    body: &[u8],
    max_message_bytes: usize,
) -> Result<ActivityCancel, IgnoredCancel> {
    if body.len() > max_message_bytes {
        return Err(IgnoredCancel::TooLarge {
            size: body.len(),
            max: max_message_bytes,
        });
    }
    if let Some(found) = message_type.filter(|t| *t != headers::message_type::ACTIVITY_CANCEL) {
        return Err(IgnoredCancel::WrongType {
            found: truncate(found, 64).into_owned(),
        });
    }
    // serde_json stops at 128 levels of nesting; its errors quote the input, so they are cut.
    serde_json::from_slice(body)
        .map_err(|e| IgnoredCancel::Malformed(truncate(&e.to_string(), MAX_DETAIL_BYTES).into()))
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the data consistent: a panic elsewhere cannot break it.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use sagaflow_contracts::IdempotencyKey;
    use serde_json::{json, Value};

    use super::*;

    fn command(saga_id: SagaId, step: u32, attempt: u32) -> ActivityCommand {
        ActivityCommand {
            saga_id,
            step: StepSeq(step),
            activity: "ChargeCustomer".to_owned(),
            attempt,
            idempotency_key: IdempotencyKey::for_step(saga_id, StepSeq(step)),
            input: Value::Null,
            heartbeat_timeout_ms: None,
            heartbeat_details: None,
        }
    }

    fn cancel_of(command: &ActivityCommand) -> ActivityCancel {
        ActivityCancel {
            saga_id: command.saga_id,
            step: command.step,
            activity: command.activity.clone(),
            attempt: command.attempt,
            reason: "the customer cancelled the order".to_owned(),
        }
    }

    fn attempts() -> Arc<InFlightAttempts> {
        InFlightAttempts::new(["ChargeCustomer".to_owned(), "RefundCharge".to_owned()])
    }

    #[test]
    fn a_cancel_trips_the_attempt_it_names_and_no_other() {
        let attempts = attempts();
        let saga = SagaId::new_random();
        let charging = attempts.start(&command(saga, 2, 1));
        let other_step = attempts.start(&command(saga, 3, 1));
        let other_saga = attempts.start(&command(SagaId::new_random(), 2, 1));
        assert_eq!(
            attempts.cancel(&cancel_of(&command(saga, 2, 1))),
            CancelMatch::Running
        );
        assert!(charging.cancellation().token().is_cancelled());
        assert_eq!(
            charging.cancellation().reason().as_deref(),
            Some("the customer cancelled the order")
        );
        assert!(!other_step.cancellation().token().is_cancelled());
        assert!(!other_saga.cancellation().token().is_cancelled());
    }

    #[test]
    fn a_cancel_of_another_attempt_of_the_same_step_does_not_trip_this_one() {
        let attempts = attempts();
        let saga = SagaId::new_random();
        let second = attempts.start(&command(saga, 2, 2));
        // The first attempt timed out; its late cancel must not stop the second.
        assert_eq!(
            attempts.cancel(&cancel_of(&command(saga, 2, 1))),
            CancelMatch::Remembered
        );
        assert!(!second.cancellation().token().is_cancelled());
    }

    #[test]
    fn a_finished_attempt_is_forgotten_and_a_later_cancel_changes_nothing() {
        let attempts = attempts();
        let command = command(SagaId::new_random(), 1, 1);
        let running = attempts.start(&command);
        let token = running.cancellation().token().clone();
        drop(running);
        assert_eq!(attempts.running(), 0);
        assert_eq!(
            attempts.cancel(&cancel_of(&command)),
            CancelMatch::Remembered
        );
        assert!(!token.is_cancelled());
    }

    #[test]
    fn a_cancel_that_arrives_before_its_command_runs_starts_it_cancelled_once() {
        let attempts = attempts();
        let command = command(SagaId::new_random(), 1, 1);
        assert_eq!(
            attempts.cancel(&cancel_of(&command)),
            CancelMatch::Remembered
        );
        assert_eq!(
            attempts.cancel(&cancel_of(&command)),
            CancelMatch::Remembered
        );
        let first = attempts.start(&command);
        assert!(first.cancellation().token().is_cancelled());
        drop(first);
        // Used up: a redelivery of the same attempt runs normally.
        let again = attempts.start(&command);
        assert!(!again.cancellation().token().is_cancelled());
    }

    #[test]
    fn cancels_of_other_activities_are_not_remembered() {
        let attempts = attempts();
        let mut command = command(SagaId::new_random(), 1, 1);
        command.activity = "ReserveFlight".to_owned();
        assert_eq!(attempts.cancel(&cancel_of(&command)), CancelMatch::NotOurs);
        assert!(lock(&attempts.state).early.is_empty());
    }

    #[test]
    fn remembered_cancels_are_bounded_oldest_out() {
        let attempts = attempts();
        let oldest = command(SagaId::new_random(), 1, 1);
        attempts.cancel(&cancel_of(&oldest));
        for _ in 0..REMEMBERED_EARLY_CANCELS {
            attempts.cancel(&cancel_of(&command(SagaId::new_random(), 1, 1)));
        }
        assert_eq!(lock(&attempts.state).early.len(), REMEMBERED_EARLY_CANCELS);
        assert!(!attempts
            .start(&oldest)
            .cancellation()
            .token()
            .is_cancelled());
    }

    #[test]
    fn two_deliveries_of_one_attempt_share_its_cancellation_until_both_finish() {
        let attempts = attempts();
        let command = command(SagaId::new_random(), 1, 1);
        let first = attempts.start(&command);
        let redelivered = attempts.start(&command);
        drop(first);
        assert_eq!(attempts.cancel(&cancel_of(&command)), CancelMatch::Running);
        assert!(redelivered.cancellation().token().is_cancelled());
        drop(redelivered);
        assert_eq!(attempts.running(), 0);
    }

    #[test]
    fn a_long_reason_is_cut() {
        let attempts = attempts();
        let command = command(SagaId::new_random(), 1, 1);
        let running = attempts.start(&command);
        let mut cancel = cancel_of(&command);
        cancel.reason = "why ".repeat(10_000);
        attempts.cancel(&cancel);
        let reason = running.cancellation().reason().unwrap_or_default();
        assert!(reason.len() <= MAX_CANCEL_REASON_BYTES, "{}", reason.len());
    }

    #[test]
    fn cancel_messages_are_parsed_or_ignored_with_a_bounded_reason() {
        let command = command(SagaId::new_random(), 4, 2);
        let body = serde_json::to_vec(&cancel_of(&command)).unwrap();
        let cancel_type = Some(headers::message_type::ACTIVITY_CANCEL);
        assert_eq!(
            parse_cancel(cancel_type, &body, 1024),
            Ok(cancel_of(&command))
        );
        assert_eq!(parse_cancel(None, &body, 1024), Ok(cancel_of(&command)));
        assert!(matches!(
            parse_cancel(cancel_type, &body, 10),
            Err(IgnoredCancel::TooLarge { .. })
        ));
        let wrong_type = "sagaflow.ActivityCommand".repeat(1000);
        let ignored = parse_cancel(Some(&wrong_type), &body, 1024).unwrap_err();
        assert!(ignored.to_string().len() < 200, "{ignored}");
        let huge = json!({"saga_id": "x".repeat(100_000)}).to_string();
        let ignored = parse_cancel(cancel_type, huge.as_bytes(), usize::MAX).unwrap_err();
        assert!(matches!(ignored, IgnoredCancel::Malformed(_)));
        assert!(
            ignored.to_string().len() <= MAX_DETAIL_BYTES + 50,
            "{ignored}"
        );
        assert!(parse_cancel(cancel_type, b"\xff\xfe", 1024).is_err());
    }
}
