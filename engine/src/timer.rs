//! A durable timer: the future `ctx.sleep` returns, and its state machine
//! (started → fired). The timer itself is a row in the orchestrator's `timers` table, so a
//! sleeping saga costs no memory and survives any restart.

use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sagaflow_contracts::{SagaEvent, TimerSeq};

use crate::state::{lock, RunState, Waiter};

/// The future of `ctx.sleep(duration)`: resolves when the durable timer fires, or with
/// [`Cancelled`] when the saga is cancelled first.
#[must_use = "a timer starts only when its future is awaited"]
pub struct Sleep {
    pub(crate) state: Arc<Mutex<RunState>>,
    pub(crate) duration: Duration,
    pub(crate) location: &'static Location<'static>,
    pub(crate) timer: Option<TimerSeq>,
}

impl Future for Sleep {
    type Output = Result<(), Cancelled>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let mut state = lock(&this.state);
        if this.timer.is_none() {
            if let Some(reason) = &state.cancelled {
                return Poll::Ready(Err(Cancelled::new(reason)));
            }
        }
        let timer = *this
            .timer
            .get_or_insert_with(|| state.start_timer(this.duration, this.location));
        if state.timers[&timer].fired {
            return Poll::Ready(Ok(()));
        }
        if let Some(reason) = &state.cancelled {
            return Poll::Ready(Err(Cancelled::new(reason)));
        }
        state
            .wakers
            .insert(Waiter::Timer(timer), cx.waker().clone());
        Poll::Pending
    }
}

/// The saga was cancelled while the code waited (a sleep, a signal). Return it (`?`) to let
/// the compensations run, or handle it and go on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("the saga was cancelled: {reason}")]
pub struct Cancelled {
    pub reason: String,
}

impl Cancelled {
    pub(crate) fn new(reason: &str) -> Self {
        Cancelled {
            reason: reason.to_owned(),
        }
    }
}

/// The state machine of one timer.
pub(crate) struct TimerMachine {
    pub fire_at: DateTime<Utc>,
    pub fired: bool,
}

impl TimerMachine {
    pub fn started(fire_at: DateTime<Utc>) -> Self {
        TimerMachine {
            fire_at,
            fired: false,
        }
    }

    pub fn is_pending(&self) -> bool {
        !self.fired
    }

    /// The event that records this timer firing, unless it fired already.
    pub fn decide_fired(&self, timer: TimerSeq) -> Vec<SagaEvent> {
        if self.fired {
            Vec::new()
        } else {
            vec![SagaEvent::TimerFired { timer }]
        }
    }

    pub fn apply_fired(&mut self) -> Result<(), String> {
        if self.fired {
            return Err("the timer fired twice".to_owned());
        }
        self.fired = true;
        Ok(())
    }
}
