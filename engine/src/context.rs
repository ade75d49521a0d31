use std::future::Future;
use std::marker::PhantomData;
use std::panic::Location;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sagaflow_contracts::{validate_name, ActivityError, ActivityOptions, SagaFailure, SagaId};
use serde::de::DeserializeOwned;
use serde::Serialize;
use uuid::Uuid;

use crate::activity::{ActivityCall, ActivityFailure};
use crate::command::{Command, Issued};
use crate::select::Select;
use crate::signal::{SignalError, SignalWait};
use crate::state::{lock, RunState};
use crate::timer::{Cancelled, Sleep};

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
        Self::new(Arc::new(Mutex::new(RunState::new(
            SagaId(Uuid::nil()),
            DateTime::<Utc>::UNIX_EPOCH,
            ActivityOptions::default(),
        ))))
    }

    /// This saga's id.
    pub fn saga_id(&self) -> SagaId {
        self.lock().saga_id
    }

    /// The time of the event the saga is reacting to (when it started, when the last result
    /// arrived, when a timer fired), as recorded in its history: the same on every replay.
    /// Saga code must use this, never `Utc::now()`.
    pub fn now(&self) -> DateTime<Utc> {
        self.lock().now
    }

    /// An id derived from the saga id and a counter: the same on every replay, unlike
    /// `Uuid::new_v4()`, which saga code must not call.
    pub fn new_uuid(&self) -> Uuid {
        let mut state = self.lock();
        state.uuids_issued += 1;
        let name = format!("{}/{}", state.saga_id, state.uuids_issued);
        Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes())
    }

    /// Runs `activity` with `input` on an activity service and resolves to its output, after
    /// as many attempts as its retry policy allows (set it with [`ActivityCall::retry`] and
    /// the timeout methods, or take the orchestrator's defaults).
    ///
    /// The step number is assigned when the returned future is first polled, so futures
    /// joined in a fixed order get the same numbers on every replay.
    ///
    /// A name that cannot be a queue name fails the call with kind `InvalidActivityName`, an
    /// input that cannot be serialized with kind `InvalidInput`; neither becomes a step.
    #[track_caller]
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
            options: None,
            compensation: None,
            location: Location::caller(),
            step: None,
            output: PhantomData,
        }
    }

    /// Waits `duration` on a durable timer: it fires once, after any restart, whichever
    /// orchestrator replica is running, and a sleeping saga is not kept in memory.
    #[track_caller]
    pub fn sleep(&self, duration: Duration) -> Sleep {
        Sleep {
            state: self.state.clone(),
            duration,
            location: Location::caller(),
            timer: None,
        }
    }

    /// Waits for the next signal named `name` sent to this saga (`sagaflow signal`, or a
    /// `SignalSaga` message) and resolves with its payload. Signals that arrived before the
    /// code waits are kept, in order: the first wait gets the first signal of that name.
    /// With a deadline: `ctx.select(ctx.signal::<T>(name), ctx.sleep(d))`.
    pub fn signal<T: DeserializeOwned>(&self, name: &str) -> SignalWait<T> {
        SignalWait {
            state: self.state.clone(),
            name: name.to_owned(),
            index: None,
            payload: PhantomData,
        }
    }

    /// Whether the saga was cancelled (the code also sees it as an error at its next await).
    pub fn is_cancelled(&self) -> bool {
        self.lock().cancelled.is_some()
    }

    /// Versions a change of saga code while sagas of the old code run: `true` in a saga that
    /// runs (or reached this point with) the new code, `false` in one whose history was written
    /// before the change. The first `true` is recorded in the history (`PatchMarked`), so the
    /// answer is the same on every replay. Once no saga older than the change runs, remove the
    /// old branch (keep the call, or the marker makes replays diverge, until those sagas are
    /// gone too).
    ///
    /// ```ignore
    /// if ctx.patched("charge-in-two-steps") {
    ///     ctx.activity::<Hold, _>("HoldAmount", &order).await?;
    ///     ctx.activity::<Charge, _>("CaptureAmount", &order).await?
    /// } else {
    ///     ctx.activity::<Charge, _>("ChargeCustomer", &order).await?
    /// }
    /// ```
    #[track_caller]
    pub fn patched(&self, patch: &str) -> bool {
        let mut state = self.lock();
        if let Some(answer) = state.patches.get(patch) {
            return *answer;
        }
        let answer = state
            .recorded_patches
            .as_ref()
            .is_none_or(|recorded| recorded.contains(patch));
        if answer {
            state.issued.push(Issued {
                command: Command::MarkPatch {
                    patch: patch.to_owned(),
                },
                location: Some(Location::caller()),
            });
        }
        state.patches.insert(patch.to_owned(), answer);
        answer
    }

    /// Races `left` against `right` and resolves with the first that is ready, deterministically
    /// (see [`Select`]). A deadline for a step:
    ///
    /// ```ignore
    /// match ctx.select(ctx.activity::<Approval, _>("Approve", &order), ctx.sleep(HOUR)).await {
    ///     Either::Left(approval) => approval?,
    ///     Either::Right(()) => return Err(SagaError::new("not approved within an hour")),
    /// }
    /// ```
    pub fn select<A: Future, B: Future>(&self, left: A, right: B) -> Select<A, B> {
        Select {
            left: Box::pin(left),
            right: Box::pin(right),
        }
    }

    fn lock(&self) -> MutexGuard<'_, RunState> {
        lock(&self.state)
    }
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

impl From<Cancelled> for SagaError {
    fn from(cancelled: Cancelled) -> Self {
        SagaError::new(cancelled.to_string())
    }
}

impl From<SignalError> for SagaError {
    fn from(error: SignalError) -> Self {
        SagaError::new(error.to_string())
    }
}

impl std::fmt::Display for SagaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.message)
    }
}

impl std::error::Error for SagaError {}
