//! What one live saga run knows, shared between the run and the futures of its code.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::panic::Location;
use std::sync::{Mutex, MutexGuard};
use std::task::Waker;

use chrono::{DateTime, Utc};
use sagaflow_contracts::{ActivityOptions, SagaFailure, SagaId, StepSeq, TimerSeq};
use serde_json::Value;

use crate::activity::{ActivityMachine, CompensationInput, CompensationSpec};
use crate::command::{Command, Issued};
use crate::input_hash::input_hash;
use crate::timer::TimerMachine;

/// Which awaitable a waker belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Waiter {
    Activity(StepSeq),
    Timer(TimerSeq),
    /// The `n`th wait for signals of a name.
    Signal(String, usize),
}

/// Where the saga stands beyond its code.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Phase {
    /// The code runs (or has returned `Ok` and the end is recorded).
    Running,
    /// The code failed (or was cancelled): the compensations of completed steps run, newest
    /// first, one at a time.
    Compensating {
        error: SagaFailure,
        /// `Some(reason)` when the saga was cancelled.
        cancelled: Option<String>,
    },
    /// A compensation failed for good; an operator may retry it.
    CompensationFailed {
        error: SagaFailure,
        cancelled: Option<String>,
    },
    /// The end is recorded: nothing more runs.
    Ended,
}

pub(crate) struct RunState {
    pub saga_id: SagaId,
    /// The time of the fact being handled: `ctx.now()`.
    pub now: DateTime<Utc>,
    /// Options of activity calls that set none of their own.
    pub defaults: ActivityOptions,
    pub next_step: u32,
    pub next_timer: u32,
    pub uuids_issued: u64,
    pub activities: BTreeMap<StepSeq, ActivityMachine>,
    pub timers: BTreeMap<TimerSeq, TimerMachine>,
    /// Commands issued since the code was last polled.
    pub issued: Vec<Issued>,
    pub wakers: HashMap<Waiter, Waker>,
    pub phase: Phase,
    /// Set when the saga was cancelled, with the reason.
    pub cancelled: Option<String>,
    /// Steps with a compensation, in the order they completed.
    pub completed_order: Vec<StepSeq>,
    /// How many times an operator retried compensation; a failed compensation scheduled in an
    /// earlier round is scheduled again.
    pub compensation_round: u32,
    /// Signals received, by name, in order; and the ids seen, to drop duplicates.
    pub signals: HashMap<String, Vec<Value>>,
    pub signal_ids: HashSet<String>,
    /// How many waits the code has started, by signal name.
    pub signal_waits: HashMap<String, usize>,
    /// What `ctx.patched` answered, by patch.
    pub patches: HashMap<String, bool>,
    /// While replaying: the patches the history records (`ctx.patched` answers from them).
    pub recorded_patches: Option<HashSet<String>>,
}

impl RunState {
    pub fn new(saga_id: SagaId, now: DateTime<Utc>, defaults: ActivityOptions) -> Self {
        RunState {
            saga_id,
            now,
            defaults,
            next_step: 1,
            next_timer: 1,
            uuids_issued: 0,
            activities: BTreeMap::new(),
            timers: BTreeMap::new(),
            issued: Vec::new(),
            wakers: HashMap::new(),
            phase: Phase::Running,
            cancelled: None,
            completed_order: Vec::new(),
            compensation_round: 0,
            signals: HashMap::new(),
            signal_ids: HashSet::new(),
            signal_waits: HashMap::new(),
            patches: HashMap::new(),
            recorded_patches: None,
        }
    }

    /// Numbers an activity the code awaits for the first time and issues its command.
    pub fn schedule_activity(
        &mut self,
        activity: &str,
        input: &Value,
        options: Option<&ActivityOptions>,
        compensation: Option<CompensationSpec>,
        location: Option<&'static Location<'static>>,
    ) -> StepSeq {
        self.schedule(activity, input, options, compensation, None, location)
    }

    fn schedule(
        &mut self,
        activity: &str,
        input: &Value,
        options: Option<&ActivityOptions>,
        compensation: Option<CompensationSpec>,
        compensates: Option<StepSeq>,
        location: Option<&'static Location<'static>>,
    ) -> StepSeq {
        let step = StepSeq(self.next_step);
        self.next_step += 1;
        let options = options.unwrap_or(&self.defaults).clone();
        let command = Command::ScheduleActivity {
            step,
            activity: activity.to_owned(),
            input: input.clone(),
            input_hash: input_hash(input),
            options: options.clone(),
            compensates,
        };
        let mut machine = ActivityMachine::scheduled(activity, input.clone(), options, self.now);
        machine.compensation = compensation;
        machine.compensates = compensates.map(|forward| (forward, self.compensation_round));
        self.activities.insert(step, machine);
        self.issued.push(Issued { command, location });
        step
    }

    /// Schedules the compensation of the completed step `forward`. Its input is computed now,
    /// from the step's output if the code asked for that; an input that cannot be built fails
    /// the compensation step at once.
    pub fn schedule_compensation(&mut self, forward: StepSeq) {
        let Some(machine) = self.activities.get_mut(&forward) else {
            return;
        };
        let Some(spec) = machine.compensation.take() else {
            return;
        };
        let output = match &machine.state {
            crate::activity::ActivityState::Completed { output, .. } => output.clone(),
            _ => Value::Null,
        };
        let input = spec.input.build(&output);
        let options = spec.options.unwrap_or_else(|| ActivityOptions {
            // A compensation should not give up lightly: by default it is retried without limit.
            retry: sagaflow_contracts::RetryPolicy {
                maximum_attempts: 0,
                ..self.defaults.retry.clone()
            },
            ..self.defaults.clone()
        });
        let activity = spec.activity.clone();
        // Kept for a retry of the compensation (its input is rebuilt from the same output).
        let again = CompensationSpec {
            activity: spec.activity,
            input: CompensationInput::Built(input.clone()),
            options: Some(options.clone()),
        };
        if let Some(machine) = self.activities.get_mut(&forward) {
            machine.compensation = Some(again);
        }
        let input = input.unwrap_or_else(Value::String);
        self.schedule(&activity, &input, Some(&options), None, Some(forward), None);
    }

    /// Numbers a timer the code awaits for the first time and issues its command.
    pub fn start_timer(
        &mut self,
        duration: std::time::Duration,
        location: &'static Location<'static>,
    ) -> TimerSeq {
        let timer = TimerSeq(self.next_timer);
        self.next_timer += 1;
        let duration = chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX);
        let fire_at = self
            .now
            .checked_add_signed(duration)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        self.timers.insert(timer, TimerMachine::started(fire_at));
        self.issued.push(Issued {
            command: Command::StartTimer { timer, fire_at },
            location: Some(location),
        });
        timer
    }

    pub fn wake(&mut self, waiter: Waiter) {
        // Combinators that poll only woken children (`FuturesUnordered`, `join_all` of many)
        // must learn that this awaitable can make progress.
        if let Some(waker) = self.wakers.remove(&waiter) {
            waker.wake();
        }
    }

    /// Whether anything the code may be waiting for can still happen.
    pub fn has_pending_awaitables(&self) -> bool {
        self.activities.values().any(ActivityMachine::is_pending)
            || self.timers.values().any(TimerMachine::is_pending)
            || self
                .signal_waits
                .iter()
                .any(|(name, waits)| *waits > self.signals.get(name).map_or(0, Vec::len))
    }

    /// Wakes every waiter (the saga was cancelled: each await must see it).
    pub fn wake_all(&mut self) {
        for (_, waker) in self.wakers.drain() {
            waker.wake();
        }
    }
}

pub(crate) fn lock(state: &Mutex<RunState>) -> MutexGuard<'_, RunState> {
    // The engine never panics while holding the lock; recover the data if saga code did.
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
