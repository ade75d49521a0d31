//! Waiting for a signal: `ctx.signal("name")`. The `n`th wait for a name gets the `n`th signal
//! of that name the saga received, whenever it arrived: a signal sent before the code waits is
//! kept, in order.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use serde::de::DeserializeOwned;

use crate::state::{lock, RunState, Waiter};
use crate::timer::Cancelled;

/// The future of `ctx.signal::<T>(name)`.
#[must_use = "a signal is waited for only when its future is awaited"]
pub struct SignalWait<T> {
    pub(crate) state: Arc<Mutex<RunState>>,
    pub(crate) name: String,
    /// Which wait for this name this is, once polled.
    pub(crate) index: Option<usize>,
    pub(crate) payload: PhantomData<fn() -> T>,
}

/// Why a signal wait ended without a payload of the expected type.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SignalError {
    #[error(transparent)]
    Cancelled(#[from] Cancelled),
    /// The signal arrived but its payload does not fit the type the code asked for.
    #[error("the payload of signal {name:?} does not fit: {reason}")]
    InvalidPayload { name: String, reason: String },
}

impl<T: DeserializeOwned> Future for SignalWait<T> {
    type Output = Result<T, SignalError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let mut state = lock(&this.state);
        let index = match this.index {
            Some(index) => index,
            None => {
                if let Some(reason) = &state.cancelled {
                    return Poll::Ready(Err(Cancelled::new(reason).into()));
                }
                let waits = state.signal_waits.entry(this.name.clone()).or_default();
                let index = *waits;
                *waits += 1;
                this.index = Some(index);
                index
            }
        };
        if let Some(payload) = state.signals.get(&this.name).and_then(|s| s.get(index)) {
            return Poll::Ready(serde_json::from_value(payload.clone()).map_err(|e| {
                SignalError::InvalidPayload {
                    name: this.name.clone(),
                    reason: e.to_string(),
                }
            }));
        }
        if let Some(reason) = &state.cancelled {
            return Poll::Ready(Err(Cancelled::new(reason).into()));
        }
        state
            .wakers
            .insert(Waiter::Signal(this.name.clone(), index), cx.waker().clone());
        Poll::Pending
    }
}
