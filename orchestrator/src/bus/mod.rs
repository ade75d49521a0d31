//! RabbitMQ on the orchestrator's side: the outbox relay. Consuming and topology are shared
//! with the activity SDK in the `sagaflow-amqp` crate.

mod outbox_relay;

pub use outbox_relay::{CommittedOutbox, OutboxRelay, RelayError};
