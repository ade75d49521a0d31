//! The demo saga the `orchestrator` binary runs: `ProcessPayment`.

mod process_payment;

pub use process_payment::process_payment;

use sagaflow_contracts::payments::PROCESS_PAYMENT;

use crate::engine::SagaRegistry;

/// A registry with the demo sagas.
pub fn registry() -> SagaRegistry {
    let mut registry = SagaRegistry::new();
    registry
        .register(PROCESS_PAYMENT, process_payment)
        .expect("the demo saga name is valid");
    registry
}
