//! What goes into a live run (a [`Fact`]) and what comes out (an [`Activation`]).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use sagaflow_contracts::{ActivityOutcome, SagaEvent, SagaFailure, StepSeq, TimerSeq};
use serde_json::Value;

use crate::RunError;

/// Something that happened to a saga, handed to [`crate::SagaRun::handle`].
#[derive(Debug, Clone, PartialEq)]
pub enum Fact {
    /// An activity service answered `attempt` of `step`.
    ActivityResult {
        step: StepSeq,
        /// The activity the result says it is for; `None` when the result could not be read
        /// and is known only by its headers.
        activity: Option<String>,
        attempt: u32,
        outcome: ActivityOutcome,
    },
    /// A durable timer of the saga came due.
    TimerFired { key: TimerKey, attempt: u32 },
    /// An operator resumed the saga (`sagaflow resume`).
    Resumed,
    /// A signal arrived.
    Signal {
        name: String,
        payload: Value,
        signal_id: String,
    },
    /// An operator asked the saga to stop, undoing what it did.
    Cancel { reason: String },
    /// An operator stopped the saga at once.
    Terminate { reason: String },
    /// An operator asked to run a failed compensation again.
    RetryCompensation,
}

/// A fact that does not belong to this saga: the message carrying it is dead-lettered with
/// this reason.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct FactRejected(pub String);

/// The durable timers the engine arms, one per key and saga (arming a key again moves it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimerKey {
    /// `ctx.sleep`.
    Sleep(TimerSeq),
    /// The wait before the next attempt of a step.
    Retry(StepSeq),
    /// The start-to-close timeout of a step's current attempt.
    StartToClose(StepSeq),
    /// The heartbeat timeout of a step's current attempt; each heartbeat moves it.
    Heartbeat(StepSeq),
    /// The schedule-to-close timeout of a whole step.
    ScheduleToClose(StepSeq),
    /// An operator's request to resume a stuck saga, due at once.
    Resume,
}

impl TimerKey {
    /// The step the timer belongs to, if any.
    pub fn step(&self) -> Option<StepSeq> {
        match self {
            TimerKey::Retry(s)
            | TimerKey::StartToClose(s)
            | TimerKey::Heartbeat(s)
            | TimerKey::ScheduleToClose(s) => Some(*s),
            TimerKey::Sleep(_) | TimerKey::Resume => None,
        }
    }
}

impl fmt::Display for TimerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimerKey::Sleep(t) => write!(f, "sleep/{t}"),
            TimerKey::Retry(s) => write!(f, "activity/{s}/retry"),
            TimerKey::StartToClose(s) => write!(f, "activity/{s}/start-to-close"),
            TimerKey::Heartbeat(s) => write!(f, "activity/{s}/heartbeat"),
            TimerKey::ScheduleToClose(s) => write!(f, "activity/{s}/schedule-to-close"),
            TimerKey::Resume => f.write_str("resume"),
        }
    }
}

impl FromStr for TimerKey {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let number = |n: &str| {
            n.parse::<u32>()
                .map_err(|_| format!("invalid timer key {s:?}"))
        };
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            ["resume"] => Ok(TimerKey::Resume),
            ["sleep", n] => Ok(TimerKey::Sleep(TimerSeq(number(n)?))),
            ["activity", n, kind] => {
                let step = StepSeq(number(n)?);
                match *kind {
                    "retry" => Ok(TimerKey::Retry(step)),
                    "start-to-close" => Ok(TimerKey::StartToClose(step)),
                    "heartbeat" => Ok(TimerKey::Heartbeat(step)),
                    "schedule-to-close" => Ok(TimerKey::ScheduleToClose(step)),
                    _ => Err(format!("invalid timer key {s:?}")),
                }
            }
            _ => Err(format!("invalid timer key {s:?}")),
        }
    }
}

/// What the orchestrator must write besides the events, in the same transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Send `attempt` of `step` to the activity's queue (through the outbox).
    SendActivityCommand {
        step: StepSeq,
        activity: String,
        attempt: u32,
        input: Value,
        heartbeat_timeout_ms: Option<u64>,
    },
    /// Arm (or move) the timer `key` for `attempt` (0 when the key has no attempt).
    /// `period_ms` is set for heartbeat timers: each heartbeat moves `fire_at` that far ahead.
    ArmTimer {
        key: TimerKey,
        attempt: u32,
        fire_at: DateTime<Utc>,
        period_ms: Option<u64>,
    },
    /// Disarm the timers of `step` (it has resolved).
    CancelStepTimers { step: StepSeq },
    /// Tell the activity services that `attempt` of `step` should stop.
    CancelActivity {
        step: StepSeq,
        activity: String,
        attempt: u32,
        reason: String,
    },
}

/// What one fact did to a saga: the events to append (the fact first, then the commands its
/// code issued), the effects to write with them, and how the saga stands after it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Activation {
    pub events: Vec<SagaEvent>,
    pub effects: Vec<Effect>,
    /// How the saga ended in this activation, if it did.
    pub end: Option<SagaEnd>,
    /// Set when the code can no longer run (it panicked, or waits for nothing Sagaflow can
    /// wake): the saga is parked as `stuck` with this reason, keeping `events` (the fact).
    pub stuck: Option<RunError>,
}

/// How a saga ended (or stopped for an operator).
#[derive(Debug, Clone, PartialEq)]
pub enum SagaEnd {
    Completed(Value),
    /// Failed with nothing to compensate.
    Failed(SagaFailure),
    /// Failed, and every completed step was compensated.
    Compensated(SagaFailure),
    /// A compensation failed for good: the saga waits for an operator.
    CompensationFailed {
        error: SagaFailure,
        step: StepSeq,
        reason: String,
    },
    /// Cancelled, and every completed step was compensated.
    Cancelled {
        reason: String,
    },
    /// Terminated: nothing more runs.
    Terminated {
        reason: String,
    },
}

impl Activation {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.effects.is_empty() && self.stuck.is_none()
    }

    /// Appends `other` after this activation.
    pub fn extend(&mut self, other: Activation) {
        self.events.extend(other.events);
        self.effects.extend(other.effects);
        self.end = other.end.or(self.end.take());
        self.stuck = other.stuck.or(self.stuck.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_keys_round_trip_through_their_text() {
        for key in [
            TimerKey::Sleep(TimerSeq(3)),
            TimerKey::Retry(StepSeq(2)),
            TimerKey::StartToClose(StepSeq(2)),
            TimerKey::Heartbeat(StepSeq(7)),
            TimerKey::ScheduleToClose(StepSeq(1)),
            TimerKey::Resume,
        ] {
            assert_eq!(key.to_string().parse::<TimerKey>(), Ok(key));
        }
        assert!("activity/x/retry".parse::<TimerKey>().is_err());
        assert!("sleep".parse::<TimerKey>().is_err());
    }
}
