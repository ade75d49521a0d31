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

/// The future of `ctx.sleep(duration)`: resolves when the durable timer fires.
#[must_use = "a timer starts only when its future is awaited"]
pub struct Sleep {
    pub(crate) state: Arc<Mutex<RunState>>,
    pub(crate) duration: Duration,
    pub(crate) location: &'static Location<'static>,
    pub(crate) timer: Option<TimerSeq>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let mut state = lock(&this.state);
        let timer = *this
            .timer
            .get_or_insert_with(|| state.start_timer(this.duration, this.location));
        if state.timers[&timer].fired {
            Poll::Ready(())
        } else {
            state
                .wakers
                .insert(Waiter::Timer(timer), cx.waker().clone());
            Poll::Pending
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
