//! The demo sagas the `orchestrator` binary runs: `ProcessPayment` and `BookTrip`.

mod book_trip;
mod process_payment;

pub use book_trip::book_trip;
pub use process_payment::process_payment;

use sagaflow_contracts::payments::PROCESS_PAYMENT;
use sagaflow_contracts::travel::BOOK_TRIP;

use crate::engine::SagaRegistry;

/// A registry with the demo sagas.
pub fn registry() -> SagaRegistry {
    let mut registry = SagaRegistry::new();
    registry
        .register(PROCESS_PAYMENT, process_payment)
        .and_then(|r| r.register(BOOK_TRIP, book_trip))
        .expect("the demo saga names are valid");
    registry
}
