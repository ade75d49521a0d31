use sagaflow_amqp::Delivery;
use sagaflow_contracts::{SagaEvent, SagaId, StartSaga};
use tracing::Instrument;

use super::{Disposition, ProcessError, Processor};
use crate::engine::{SagaDefinition, SagaRun};
use crate::store::{self, NewSaga};

/// Longer keys do not fit PostgreSQL's unique index.
const MAX_START_KEY_BYTES: usize = 512;

impl Processor {
    /// A start message: a new saga, unless one with the same type and start key exists.
    pub(crate) async fn start_saga(
        &self,
        delivery: &Delivery,
    ) -> Result<Disposition, ProcessError> {
        let start: StartSaga = match sagaflow_contracts::decode::start_saga(&delivery.data) {
            Ok(start) => start,
            Err(e) => return Ok(Disposition::DeadLetter(e.to_string())),
        };
        let Some(definition) = self.registry.get(&start.saga_type) else {
            return Ok(Disposition::DeadLetter(format!(
                "unknown saga type {:?}; registered: {:?}",
                start.saga_type,
                self.registry.names()
            )));
        };
        if let Err(e) = definition.check_input(&start.input) {
            return Ok(Disposition::DeadLetter(e.to_string()));
        }
        // Without a start key the message id makes a redelivered start a duplicate.
        let message_id = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.to_string());
        let Some(start_key) = start
            .start_key
            .clone()
            .or(message_id)
            .filter(|k| !k.is_empty())
        else {
            return Ok(Disposition::DeadLetter(
                "the start has neither a start_key nor an AMQP message_id, so a redelivery could \
                 start it twice; set one of them"
                    .into(),
            ));
        };
        if start_key.len() > MAX_START_KEY_BYTES || start_key.contains('\0') {
            return Ok(Disposition::DeadLetter(format!(
                "the start key must be at most {MAX_START_KEY_BYTES} bytes without NUL characters"
            )));
        }
        let saga_id = SagaId::new_random();
        let span = tracing::info_span!("start_saga", %saga_id, saga_type = %start.saga_type);
        self.insert_and_start(saga_id, start, start_key, definition)
            .instrument(span)
            .await
    }

    async fn insert_and_start(
        &self,
        saga_id: SagaId,
        start: StartSaga,
        start_key: String,
        definition: &SagaDefinition,
    ) -> Result<Disposition, ProcessError> {
        let mut tx = self.pool.begin().await?;
        let new_saga = NewSaga {
            id: saga_id,
            saga_type: &start.saga_type,
            input: &start.input,
            start_key: Some(&start_key),
        };
        if !store::insert_saga(&mut tx, new_saga).await? {
            tracing::info!(
                start_key,
                "duplicate start; a saga with this start key exists"
            );
            return Ok(Disposition::Ack);
        }
        let mut run = match SagaRun::start(definition, saga_id, start.input.clone()) {
            Ok(run) => run,
            Err(e) => return Ok(Disposition::DeadLetter(e.to_string())),
        };
        let started = SagaEvent::SagaStarted {
            saga_type: start.saga_type,
            input: start.input,
            start_key: Some(start_key),
        };
        let advanced = run.advance();
        self.commit_advance(tx, saga_id, 0, started, run, advanced)
            .await?;
        Ok(Disposition::Ack)
    }
}
