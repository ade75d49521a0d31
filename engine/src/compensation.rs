//! The compensation driver: once the saga code has failed (or was cancelled), the
//! compensations of its completed steps run, newest completed first, one at a time, each a
//! step of its own with its own retries. A step still in flight when the code failed is
//! compensated once it completes. Deterministic: it decides from the state machines alone, so
//! replay issues the same compensation steps at the same places.

use sagaflow_contracts::{ActivityError, StepSeq};

use crate::activity::{ActivityMachine, ActivityState};
use crate::state::RunState;

/// What the driver does next.
#[derive(Debug, PartialEq)]
pub(crate) enum Next {
    /// Schedule the compensation of this completed step.
    Schedule(StepSeq),
    /// A compensation, or a step that may still need one, is in flight.
    Wait,
    /// The compensation of this step failed for good: its compensation step and error.
    Failed(StepSeq, ActivityError),
    /// Everything that completed is compensated.
    Done,
}

pub(crate) fn next_compensation(state: &RunState) -> Next {
    for forward in state.completed_order.iter().rev() {
        let latest = state
            .activities
            .iter()
            .filter(|(_, m)| m.compensates.is_some_and(|(f, _)| f == *forward))
            .max_by_key(|(step, _)| **step);
        match latest {
            None => return Next::Schedule(*forward),
            Some((_, machine)) if machine.is_pending() => return Next::Wait,
            Some((
                _,
                ActivityMachine {
                    state: ActivityState::Completed { .. },
                    ..
                },
            )) => {}
            Some((step, machine)) => {
                let round = machine.compensates.map_or(0, |(_, round)| round);
                if round < state.compensation_round {
                    return Next::Schedule(*forward);
                }
                let error = match &machine.state {
                    ActivityState::Failed { error, .. } => error.clone(),
                    _ => ActivityError::permanent("CompensationFailed", "the compensation failed"),
                };
                return Next::Failed(*step, error);
            }
        }
    }
    let in_flight = state
        .activities
        .values()
        .any(|m| m.compensates.is_none() && m.compensation.is_some() && m.is_pending());
    if in_flight {
        Next::Wait
    } else {
        Next::Done
    }
}

/// Whether a failure must be compensated: a step with a compensation completed, or may still.
pub(crate) fn has_compensations(state: &RunState) -> bool {
    !state.completed_order.is_empty()
        || state
            .activities
            .values()
            .any(|m| m.compensates.is_none() && m.compensation.is_some() && m.is_pending())
}
