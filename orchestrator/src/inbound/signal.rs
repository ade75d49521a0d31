use sagaflow_amqp::Delivery;
use sagaflow_contracts::reason::quote;
use sagaflow_contracts::{SagaId, SignalSaga};
use sagaflow_engine::Fact;

use super::work::Work;
use super::{Disposition, ProcessError, Processor};
use crate::store;

impl Processor {
    /// A signal: a fact for the saga it names. A signal for a saga that does not exist or has
    /// ended is dead-lettered with the reason, never silently dropped.
    pub(crate) async fn deliver_signal(
        &self,
        work: &mut Work<'_>,
        delivery: &Delivery,
    ) -> Result<Disposition, ProcessError> {
        let signal: SignalSaga =
            match self.decode(delivery, sagaflow_contracts::decode::signal_saga) {
                Ok(signal) => signal,
                Err(rejected) => return Ok(rejected),
            };
        if signal.name.trim().is_empty() || signal.name.len() > SignalSaga::MAX_NAME_BYTES {
            return Ok(Disposition::DeadLetter(format!(
                "a signal name has 1 to {} bytes, not {}",
                SignalSaga::MAX_NAME_BYTES,
                quote(&signal.name, 100)
            )));
        }
        let Some(signal_id) = signal
            .signal_id
            .clone()
            .or_else(|| {
                delivery
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|id| id.to_string())
            })
            .filter(|id| !id.is_empty() && id.len() <= 255)
        else {
            return Ok(Disposition::DeadLetter(
                "the signal has neither a signal_id nor an AMQP message_id (at most 255 bytes), \
                 so a redelivery could deliver it twice; set one of them"
                    .into(),
            ));
        };
        let Some(saga_id) = self.signalled_saga(&signal).await? else {
            return Ok(Disposition::DeadLetter(format!(
                "no saga {} exists; the signal {} was not delivered",
                describe(&signal),
                quote(&signal.name, 100)
            )));
        };
        if let Some(saga) = store::get_saga(&self.pool, saga_id).await? {
            if saga.status.is_final() {
                return Ok(Disposition::DeadLetter(format!(
                    "saga {saga_id} has ended ({}); the signal {} was not delivered",
                    saga.status,
                    quote(&signal.name, 100)
                )));
            }
        }
        let payload = match self.codec.decode(signal.payload) {
            Ok(payload) => payload,
            Err(e) => return Ok(Disposition::DeadLetter(format!("the payload: {e}"))),
        };
        let fact = Fact::Signal {
            name: signal.name,
            payload,
            signal_id,
        };
        self.advance(work, saga_id, fact, None).await
    }

    async fn signalled_saga(&self, signal: &SignalSaga) -> Result<Option<SagaId>, ProcessError> {
        if let Some(id) = signal.saga_id {
            return Ok(Some(id));
        }
        let (Some(saga_type), Some(start_key)) = (&signal.saga_type, &signal.start_key) else {
            return Ok(None);
        };
        Ok(
            store::find_saga_by_start_key(&self.pool, saga_type, start_key)
                .await?
                .map(|saga| saga.id),
        )
    }
}

fn describe(signal: &SignalSaga) -> String {
    match (&signal.saga_id, &signal.saga_type, &signal.start_key) {
        (Some(id), _, _) => id.to_string(),
        (None, Some(saga_type), Some(key)) => {
            format!(
                "of type {} with start key {}",
                quote(saga_type, 100),
                quote(key, 100)
            )
        }
        _ => "named (give saga_id, or saga_type and start_key)".to_owned(),
    }
}
