//! What one live saga run knows, shared between the run and the futures of its code.

use std::collections::{BTreeMap, HashMap};
use std::panic::Location;
use std::sync::{Mutex, MutexGuard};
use std::task::Waker;

use chrono::{DateTime, Utc};
use sagaflow_contracts::{ActivityOptions, SagaId, StepSeq, TimerSeq};
use serde_json::Value;

use crate::activity::ActivityMachine;
use crate::command::{Command, Issued};
use crate::input_hash::input_hash;
use crate::timer::TimerMachine;

/// Which awaitable a waker belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Waiter {
    Activity(StepSeq),
    Timer(TimerSeq),
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
        }
    }

    /// Numbers an activity the code awaits for the first time and issues its command.
    pub fn schedule_activity(
        &mut self,
        activity: &str,
        input: &Value,
        options: Option<&ActivityOptions>,
        location: &'static Location<'static>,
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
        };
        self.activities.insert(
            step,
            ActivityMachine::scheduled(activity, input.clone(), options, self.now),
        );
        self.issued.push(Issued {
            command,
            location: Some(location),
        });
        step
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
    }
}

pub(crate) fn lock(state: &Mutex<RunState>) -> MutexGuard<'_, RunState> {
    // The engine never panics while holding the lock; recover the data if saga code did.
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
