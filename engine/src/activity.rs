//! An activity call: the future saga code awaits, and the state machine of its step.
//!
//! ```text
//! Scheduled(attempt 1 running) ──result ok──────────────▶ Completed
//!        │   ▲                 ──permanent / last error─▶ Failed
//!        │   │ retry timer fired (ActivityRetried)
//!        ▼   │
//!   BackingOff ◀── retryable error or attempt timeout (ActivityAttemptFailed)
//! ```

use std::future::Future;
use std::marker::PhantomData;
use std::panic::Location;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sagaflow_contracts::{
    error_kinds, millis, ActivityError, ActivityOptions, ActivityOutcome, RetryPolicy, SagaEvent,
    StepSeq,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::state::{lock, RunState, Waiter};

/// The future of one activity step; `.await` it inside a saga. Set its retry policy and
/// timeouts with the builder methods before awaiting it; unset ones come from the
/// orchestrator's configuration.
#[must_use = "an activity runs only when its future is awaited"]
pub struct ActivityCall<O> {
    pub(crate) state: Arc<Mutex<RunState>>,
    pub(crate) activity: String,
    /// The input, or why the call cannot become a step.
    pub(crate) input: Result<Value, ActivityError>,
    pub(crate) options: Option<ActivityOptions>,
    pub(crate) compensation: Option<CompensationSpec>,
    pub(crate) location: &'static Location<'static>,
    pub(crate) step: Option<StepSeq>,
    pub(crate) output: PhantomData<fn() -> O>,
}

impl<O> ActivityCall<O> {
    fn options_mut(&mut self) -> &mut ActivityOptions {
        let defaults = &lock(&self.state).defaults;
        self.options.get_or_insert_with(|| defaults.clone())
    }

    /// Retries failed attempts by `policy` instead of the configured default.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.options_mut().retry = policy;
        self
    }

    /// Fails an attempt (and retries it by the policy) when it takes longer than `timeout`
    /// from when its command is sent.
    pub fn start_to_close_timeout(mut self, timeout: Duration) -> Self {
        self.options_mut().start_to_close_timeout_ms = Some(millis(timeout));
        self
    }

    /// Fails the whole step, without another attempt, when it takes longer than `timeout`.
    pub fn schedule_to_close_timeout(mut self, timeout: Duration) -> Self {
        self.options_mut().schedule_to_close_timeout_ms = Some(millis(timeout));
        self
    }

    /// Fails an attempt (and retries it) when no heartbeat arrives for `timeout`.
    pub fn heartbeat_timeout(mut self, timeout: Duration) -> Self {
        self.options_mut().heartbeat_timeout_ms = Some(millis(timeout));
        self
    }

    /// All retry and timeout options at once.
    pub fn options(mut self, options: ActivityOptions) -> Self {
        self.options = Some(options);
        self
    }

    /// Registers `activity` with `input` as this step's compensation: if the saga fails or is
    /// cancelled after the step completed, it runs (newest completed step first). An input
    /// that does not serialize fails the compensation step.
    pub fn compensate_with<I: Serialize + ?Sized>(mut self, activity: &str, input: &I) -> Self {
        let input = serde_json::to_value(input).map_err(|e| e.to_string());
        self.compensation = Some(CompensationSpec {
            activity: activity.to_owned(),
            input: CompensationInput::Built(input),
            options: None,
        });
        self
    }

    /// Like [`ActivityCall::compensate_with`], with the compensation's input built from the
    /// step's output (the charge to refund, the reservation to cancel). `build` must be
    /// deterministic: it runs again on replay.
    pub fn compensate_with_output<I, F>(mut self, activity: &str, build: F) -> Self
    where
        O: DeserializeOwned,
        I: Serialize,
        F: FnOnce(O) -> I + Send + 'static,
    {
        let build = move |output: &Value| {
            let output: O = serde_json::from_value(output.clone()).map_err(|e| e.to_string())?;
            serde_json::to_value(build(output)).map_err(|e| e.to_string())
        };
        self.compensation = Some(CompensationSpec {
            activity: activity.to_owned(),
            input: CompensationInput::FromOutput(Box::new(build)),
            options: None,
        });
        self
    }

    /// Retries and timeouts of the compensation (by default the orchestrator's defaults with
    /// no attempt limit: a compensation should not give up lightly).
    pub fn compensation_options(mut self, options: ActivityOptions) -> Self {
        if let Some(compensation) = self.compensation.as_mut() {
            compensation.options = Some(options);
        }
        self
    }
}

/// What to run if a completed step must be undone.
pub(crate) struct CompensationSpec {
    pub activity: String,
    pub input: CompensationInput,
    pub options: Option<ActivityOptions>,
}

type BuildInput = Box<dyn FnOnce(&Value) -> Result<Value, String> + Send>;

pub(crate) enum CompensationInput {
    Built(Result<Value, String>),
    FromOutput(BuildInput),
}

impl CompensationInput {
    /// The compensation's input, given the step's output.
    pub fn build(self, output: &Value) -> Result<Value, String> {
        match self {
            CompensationInput::Built(input) => input,
            CompensationInput::FromOutput(build) => build(output),
        }
    }
}

impl<O: DeserializeOwned> Future for ActivityCall<O> {
    type Output = Result<O, ActivityFailure>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let mut state = lock(&this.state);
        let input = match &this.input {
            Ok(input) => input,
            Err(error) => {
                return Poll::Ready(Err(ActivityFailure {
                    activity: this.activity.clone(),
                    step: None,
                    attempts: 0,
                    error: error.clone(),
                }))
            }
        };
        if this.step.is_none() {
            if let Some(reason) = &state.cancelled {
                return Poll::Ready(Err(cancelled(&this.activity, None, reason)));
            }
        }
        let step = match this.step {
            Some(step) => step,
            None => {
                let compensation = this.compensation.take();
                let step = state.schedule_activity(
                    &this.activity,
                    input,
                    this.options.as_ref(),
                    compensation,
                    Some(this.location),
                );
                this.step = Some(step);
                step
            }
        };
        let machine = &state.activities[&step];
        let failure = |error, attempts| ActivityFailure {
            activity: this.activity.clone(),
            step: Some(step),
            attempts,
            error,
        };
        match &machine.state {
            ActivityState::Completed { output, attempt } => {
                Poll::Ready(serde_json::from_value(output.clone()).map_err(|e| {
                    failure(
                        ActivityError::permanent(
                            "InvalidOutput",
                            format!(
                                "the output of {} does not fit the saga's type {}: {e}",
                                this.activity,
                                std::any::type_name::<O>()
                            ),
                        ),
                        *attempt,
                    )
                }))
            }
            ActivityState::Failed { error, attempt } => {
                Poll::Ready(Err(failure(error.clone(), *attempt)))
            }
            ActivityState::Running { .. } | ActivityState::BackingOff { .. } => {
                if let Some(reason) = state.cancelled.clone() {
                    return Poll::Ready(Err(cancelled(&this.activity, Some(step), &reason)));
                }
                state
                    .wakers
                    .insert(Waiter::Activity(step), cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// What the code sees of a step when the saga is cancelled.
fn cancelled(activity: &str, step: Option<StepSeq>, reason: &str) -> ActivityFailure {
    ActivityFailure {
        activity: activity.to_owned(),
        step,
        attempts: 0,
        error: ActivityError::permanent(
            error_kinds::CANCELLED,
            format!("the saga was cancelled: {reason}"),
        ),
    }
}

/// An activity step that failed for good, as seen by saga code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("activity {activity} (step {}) failed after {attempts} attempt(s): {error}", step.map_or("-".to_owned(), |s| s.to_string()))]
pub struct ActivityFailure {
    pub activity: String,
    /// `None` when the call failed before it became a step (its input did not serialize).
    pub step: Option<StepSeq>,
    /// How many attempts ran; every attempt's error is in the saga's history.
    pub attempts: u32,
    /// The last attempt's error (kind `TimedOut` when the step ran out of time).
    pub error: ActivityError,
}

impl ActivityFailure {
    /// Whether the step ran out of time (a start-to-close, heartbeat or schedule-to-close
    /// timeout).
    pub fn is_timed_out(&self) -> bool {
        self.error.kind == error_kinds::TIMED_OUT
    }

    /// Whether the saga was cancelled while the code waited for the step.
    pub fn is_cancelled(&self) -> bool {
        self.error.kind == error_kinds::CANCELLED
    }
}

/// Where one step is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ActivityState {
    /// `attempt` was sent and has not answered.
    Running {
        attempt: u32,
    },
    /// `failed_attempt` failed; the next attempt is sent at `retry_at`.
    BackingOff {
        failed_attempt: u32,
        retry_at: DateTime<Utc>,
    },
    Completed {
        output: Value,
        attempt: u32,
    },
    Failed {
        error: ActivityError,
        attempt: u32,
    },
}

/// The state machine of one step.
pub(crate) struct ActivityMachine {
    pub activity: String,
    pub input: Value,
    pub options: ActivityOptions,
    pub scheduled_at: DateTime<Utc>,
    pub state: ActivityState,
    /// Attempts whose result has been recorded, so a redelivered result is not recorded twice.
    pub answered: Vec<u32>,
    /// What undoes this step once it completed, if the code registered it.
    pub compensation: Option<CompensationSpec>,
    /// For a compensation step: the step it compensates, and the compensation round it was
    /// scheduled in.
    pub compensates: Option<(StepSeq, u32)>,
}

/// What to record about an attempt's end.
pub(crate) enum AttemptEnd {
    /// Its result, as the service sent it.
    Result(ActivityOutcome),
    /// It ran out of time (start-to-close or heartbeat timeout).
    TimedOut(String),
}

impl ActivityMachine {
    pub fn scheduled(
        activity: &str,
        input: Value,
        options: ActivityOptions,
        at: DateTime<Utc>,
    ) -> Self {
        ActivityMachine {
            activity: activity.to_owned(),
            input,
            options,
            scheduled_at: at,
            state: ActivityState::Running { attempt: 1 },
            answered: Vec::new(),
            compensation: None,
            compensates: None,
        }
    }

    pub fn is_pending(&self) -> bool {
        matches!(
            self.state,
            ActivityState::Running { .. } | ActivityState::BackingOff { .. }
        )
    }

    pub fn current_attempt(&self) -> u32 {
        match &self.state {
            ActivityState::Running { attempt } => *attempt,
            ActivityState::BackingOff { failed_attempt, .. } => *failed_attempt,
            ActivityState::Completed { attempt, .. } | ActivityState::Failed { attempt, .. } => {
                *attempt
            }
        }
    }

    /// When the whole step times out, if it has a schedule-to-close timeout.
    pub fn deadline(&self) -> Option<DateTime<Utc>> {
        let timeout = self.options.schedule_to_close_timeout_ms?;
        self.scheduled_at
            .checked_add_signed(chrono::Duration::milliseconds(
                i64::try_from(timeout).unwrap_or(i64::MAX),
            ))
    }

    /// The events that record how `attempt` of `step` ended, decided by the retry policy, or
    /// nothing if that was recorded already.
    pub fn decide_attempt_end(
        &self,
        step: StepSeq,
        attempt: u32,
        end: AttemptEnd,
        now: DateTime<Utc>,
    ) -> Vec<SagaEvent> {
        let from_result = matches!(end, AttemptEnd::Result(_));
        if from_result && self.answered.contains(&attempt) {
            return Vec::new();
        }
        if !matches!(self.state, ActivityState::Running { attempt: a } if a == attempt) {
            let AttemptEnd::Result(outcome) = end else {
                return Vec::new();
            };
            return vec![SagaEvent::ActivityResultIgnored {
                step,
                attempt,
                status: outcome_status(&outcome).to_owned(),
                reason: format!(
                    "attempt {attempt} is not current: the step is {}",
                    self.describe_state()
                ),
            }];
        }
        let error = match end {
            AttemptEnd::Result(ActivityOutcome::Completed { output }) => {
                return vec![SagaEvent::ActivityCompleted {
                    step,
                    output,
                    attempt,
                }]
            }
            AttemptEnd::Result(ActivityOutcome::Failed { error }) => error,
            AttemptEnd::TimedOut(message) => {
                ActivityError::transient(error_kinds::TIMED_OUT, message)
            }
        };
        let retry_at = error
            .retryable
            .then(|| self.options.retry.retry_delay(attempt, &error.kind))
            .flatten()
            .and_then(|delay| chrono::Duration::from_std(delay).ok())
            .and_then(|delay| now.checked_add_signed(delay))
            .filter(|retry_at| self.deadline().is_none_or(|deadline| *retry_at < deadline));
        match retry_at {
            Some(retry_at) => vec![SagaEvent::ActivityAttemptFailed {
                step,
                attempt,
                error,
                retry_at,
            }],
            None => vec![SagaEvent::ActivityFailed {
                step,
                error,
                attempt,
            }],
        }
    }

    /// The event that records the retry timer of `failed_attempt` firing, if it is current.
    pub fn decide_retry(&self, step: StepSeq, failed_attempt: u32) -> Vec<SagaEvent> {
        match self.state {
            ActivityState::BackingOff {
                failed_attempt: a, ..
            } if a == failed_attempt => vec![SagaEvent::ActivityRetried {
                step,
                attempt: failed_attempt + 1,
            }],
            _ => Vec::new(),
        }
    }

    /// The event that records the whole step timing out, if it is still pending.
    pub fn decide_schedule_to_close(&self, step: StepSeq) -> Vec<SagaEvent> {
        if !self.is_pending() {
            return Vec::new();
        }
        let timeout = self
            .options
            .schedule_to_close_timeout_ms
            .unwrap_or_default();
        vec![SagaEvent::ActivityFailed {
            step,
            error: ActivityError::permanent(
                error_kinds::TIMED_OUT,
                format!("the step did not complete within its schedule-to-close timeout of {timeout} ms"),
            ),
            attempt: self.current_attempt(),
        }]
    }

    /// Moves the machine by a recorded fact about its step. Returns whether the step resolved
    /// (the code waiting on it can go on).
    pub fn apply(&mut self, event: &SagaEvent) -> Result<bool, String> {
        let unexpected = || {
            format!(
                "{} while the step is {}",
                crate::command::describe_event(event),
                self.describe_state()
            )
        };
        match event {
            SagaEvent::ActivityCompleted {
                output, attempt, ..
            } => {
                self.check_running(*attempt).map_err(|_| unexpected())?;
                self.answered.push(*attempt);
                self.state = ActivityState::Completed {
                    output: output.clone(),
                    attempt: *attempt,
                };
                Ok(true)
            }
            SagaEvent::ActivityFailed { error, attempt, .. } => {
                if !self.is_pending() {
                    return Err(unexpected());
                }
                if error.kind != error_kinds::TIMED_OUT
                    && error.kind != error_kinds::COMMAND_DEAD_LETTERED
                {
                    self.answered.push(*attempt);
                }
                self.state = ActivityState::Failed {
                    error: error.clone(),
                    attempt: *attempt,
                };
                Ok(true)
            }
            SagaEvent::ActivityAttemptFailed {
                attempt,
                retry_at,
                error,
                ..
            } => {
                self.check_running(*attempt).map_err(|_| unexpected())?;
                if error.kind != error_kinds::TIMED_OUT
                    && error.kind != error_kinds::COMMAND_DEAD_LETTERED
                {
                    self.answered.push(*attempt);
                }
                self.state = ActivityState::BackingOff {
                    failed_attempt: *attempt,
                    retry_at: *retry_at,
                };
                Ok(false)
            }
            SagaEvent::ActivityRetried { attempt, .. } => match self.state {
                ActivityState::BackingOff { failed_attempt, .. }
                    if failed_attempt + 1 == *attempt =>
                {
                    self.state = ActivityState::Running { attempt: *attempt };
                    Ok(false)
                }
                _ => Err(unexpected()),
            },
            SagaEvent::ActivityResultIgnored { attempt, .. } => {
                self.answered.push(*attempt);
                Ok(false)
            }
            _ => Err(unexpected()),
        }
    }

    fn check_running(&self, attempt: u32) -> Result<(), ()> {
        match self.state {
            ActivityState::Running { attempt: a } if a == attempt => Ok(()),
            _ => Err(()),
        }
    }

    fn describe_state(&self) -> String {
        match &self.state {
            ActivityState::Running { attempt } => format!("running attempt {attempt}"),
            ActivityState::BackingOff {
                failed_attempt,
                retry_at,
            } => {
                format!(
                    "waiting to retry after attempt {failed_attempt} failed (retry at {retry_at})"
                )
            }
            ActivityState::Completed { attempt, .. } => {
                format!("completed (attempt {attempt})")
            }
            ActivityState::Failed { attempt, .. } => format!("failed (attempt {attempt})"),
        }
    }
}

fn outcome_status(outcome: &ActivityOutcome) -> &'static str {
    match outcome {
        ActivityOutcome::Completed { .. } => "completed",
        ActivityOutcome::Failed { .. } => "failed",
    }
}
