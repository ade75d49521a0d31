use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use sagaflow_contracts::{validate_name, ActivityError, SagaFailure, SagaId, StepSeq};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::Command;

/// The only door from saga code to the world. Everything it gives is deterministic: the same
/// history yields the same answers on every replay.
#[derive(Clone)]
pub struct SagaContext {
    state: Arc<Mutex<RunState>>,
}

impl SagaContext {
    pub(crate) fn new(state: Arc<Mutex<RunState>>) -> Self {
        SagaContext { state }
    }

    /// A context attached to no run, for building a future that is never polled.
    pub(crate) fn detached() -> Self {
        Self::new(Arc::new(Mutex::new(RunState::new(SagaId(Uuid::nil())))))
    }

    /// This saga's id.
    pub fn saga_id(&self) -> SagaId {
        self.lock().saga_id
    }

    /// An id derived from the saga id and a counter: the same on every replay, unlike
    /// `Uuid::new_v4()`, which saga code must not call.
    pub fn new_uuid(&self) -> Uuid {
        let mut state = self.lock();
        state.uuids_issued += 1;
        let name = format!("{}/{}", state.saga_id, state.uuids_issued);
        Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes())
    }

    /// Runs `activity` with `input` on an activity service and resolves to its output. The step
    /// number is assigned when the returned future is first polled, so futures joined in a fixed
    /// order get the same numbers on every replay.
    ///
    /// A name that cannot be a queue name fails the call with kind `InvalidActivityName`, an
    /// input that cannot be serialized with kind `InvalidInput`; neither becomes a step.
    pub fn activity<O, I>(&self, activity: &str, input: &I) -> ActivityCall<O>
    where
        O: DeserializeOwned,
        I: Serialize + ?Sized,
    {
        let input = match validate_name(activity) {
            Err(invalid) => Err(ActivityError::permanent(
                "InvalidActivityName",
                invalid.to_string(),
            )),
            Ok(()) => serde_json::to_value(input)
                .map_err(|e| ActivityError::permanent("InvalidInput", e.to_string())),
        };
        ActivityCall {
            state: self.state.clone(),
            activity: activity.to_owned(),
            input,
            step: None,
            output: PhantomData,
        }
    }

    fn lock(&self) -> MutexGuard<'_, RunState> {
        lock(&self.state)
    }
}

pub(crate) fn lock(state: &Mutex<RunState>) -> MutexGuard<'_, RunState> {
    // The engine never panics while holding the lock; recover the data if saga code did.
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What one live saga run knows: the history it has seen and the commands its code issued.
pub(crate) struct RunState {
    pub saga_id: SagaId,
    /// The step number the next first-polled activity gets.
    pub next_step: u32,
    /// Steps recorded in the history being replayed, by step; empty for a new saga.
    pub recorded: BTreeMap<StepSeq, String>,
    /// Steps the code has scheduled (replayed or new), by step.
    pub scheduled: BTreeMap<StepSeq, String>,
    /// Results seen, by step.
    pub results: HashMap<StepSeq, Result<Value, ActivityError>>,
    /// Commands issued since the last advance returned.
    pub issued: Vec<Command>,
    /// The waker of each step still waiting for its result.
    pub wakers: HashMap<StepSeq, Waker>,
    /// Set when the code asked for something the history contradicts.
    pub divergence: Option<String>,
    pub uuids_issued: u64,
}

impl RunState {
    pub fn new(saga_id: SagaId) -> Self {
        RunState {
            saga_id,
            next_step: 1,
            recorded: BTreeMap::new(),
            scheduled: BTreeMap::new(),
            results: HashMap::new(),
            issued: Vec::new(),
            wakers: HashMap::new(),
            divergence: None,
            uuids_issued: 0,
        }
    }

    /// Gives the next step number to an activity the code awaits for the first time and issues
    /// its command; a replay checks the command against the recorded step.
    fn claim_step(&mut self, activity: &str, input: &Value) -> StepSeq {
        let step = StepSeq(self.next_step);
        self.next_step += 1;
        if let Some(recorded) = self.recorded.get(&step) {
            if recorded != activity {
                self.divergence.get_or_insert_with(|| {
                    format!(
                        "step {step}: the saga code now runs activity {activity:?}, \
                         but the history recorded {recorded:?}"
                    )
                });
            }
        }
        self.scheduled.insert(step, activity.to_owned());
        self.issued.push(Command::ScheduleActivity {
            step,
            activity: activity.to_owned(),
            input: input.clone(),
        });
        step
    }
}

/// The future of one activity step; `.await` it inside a saga.
#[must_use = "an activity runs only when its future is awaited"]
pub struct ActivityCall<O> {
    state: Arc<Mutex<RunState>>,
    activity: String,
    /// The input, or why the call cannot become a step.
    input: Result<Value, ActivityError>,
    step: Option<StepSeq>,
    output: PhantomData<fn() -> O>,
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
                    error: error.clone(),
                }))
            }
        };
        let step = *this
            .step
            .get_or_insert_with(|| state.claim_step(&this.activity, input));
        if state.divergence.is_some() {
            return Poll::Pending;
        }
        let failure = |error| ActivityFailure {
            activity: this.activity.clone(),
            step: Some(step),
            error,
        };
        match state.results.get(&step) {
            None => {
                state.wakers.insert(step, cx.waker().clone());
                Poll::Pending
            }
            Some(Ok(output)) => Poll::Ready(serde_json::from_value(output.clone()).map_err(|e| {
                failure(ActivityError::permanent(
                    "InvalidOutput",
                    format!("the activity's output does not fit the saga's type: {e}"),
                ))
            })),
            Some(Err(error)) => Poll::Ready(Err(failure(error.clone()))),
        }
    }
}

/// An activity step that failed, as seen by saga code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("activity {activity} (step {}) failed: {error}", step.map_or("-".to_owned(), |s| s.to_string()))]
pub struct ActivityFailure {
    pub activity: String,
    /// `None` when the call failed before it became a step (its input did not serialize).
    pub step: Option<StepSeq>,
    pub error: ActivityError,
}

/// The error a saga function returns; the saga then ends `Failed` with it.
#[derive(Debug, Clone, PartialEq)]
pub struct SagaError(pub SagaFailure);

impl SagaError {
    /// A failure with a message for people.
    pub fn new(message: impl Into<String>) -> Self {
        SagaError(SagaFailure {
            message: message.into(),
            details: None,
        })
    }
}

impl From<ActivityFailure> for SagaError {
    fn from(failure: ActivityFailure) -> Self {
        SagaError(SagaFailure {
            message: failure.to_string(),
            details: serde_json::to_value(&failure.error).ok(),
        })
    }
}

impl std::fmt::Display for SagaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.message)
    }
}

impl std::error::Error for SagaError {}
