use std::time::Duration;

use chrono::Utc;
use sagaflow_amqp::Delivery;
use sagaflow_contracts::{headers, SagaId, SagaStatus, StartSaga};
use sagaflow_engine::{SagaDefinition, SagaRun};
use tracing::Instrument;

use super::advance::Position;
use super::{truncated, Disposition, ProcessError, Processor};
use crate::store::{self, NewSaga};

/// Longer keys do not fit PostgreSQL's unique index.
const MAX_START_KEY_BYTES: usize = 512;

impl Processor {
    /// A start message: a new saga, unless one with the same type and start key exists.
    pub(crate) async fn start_saga(
        &self,
        delivery: &Delivery,
    ) -> Result<Disposition, ProcessError> {
        if delivery.data.len() > self.max_message_bytes {
            return Ok(Disposition::DeadLetter(format!(
                "message of {} bytes exceeds the limit of {} bytes",
                delivery.data.len(),
                self.max_message_bytes
            )));
        }
        if let Some(reason) = super::unsupported_wire_version(delivery) {
            return Ok(Disposition::DeadLetter(reason));
        }
        let start: StartSaga = match serde_json::from_slice(&delivery.data) {
            Ok(start) => start,
            Err(e) => {
                return Ok(Disposition::DeadLetter(format!(
                    "not a StartSaga message: {e}"
                )))
            }
        };
        let Some(definition) = self.registry.get(&start.saga_type) else {
            return Ok(self.unknown_saga_type(delivery, &start.saga_type));
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

    /// A start of a saga type this replica does not know: during a rolling deploy another
    /// replica may know it, so it is put back (with the time it was first seen) until the
    /// grace period is over, then dead-lettered.
    fn unknown_saga_type(&self, delivery: &Delivery, saga_type: &str) -> Disposition {
        let now = Utc::now().timestamp_millis();
        let first_seen = sagaflow_amqp::header(delivery, headers::FIRST_SEEN_MS)
            .and_then(|ms| ms.parse::<i64>().ok())
            .filter(|ms| *ms <= now)
            .unwrap_or(now);
        let waited = Duration::from_millis(u64::try_from(now - first_seen).unwrap_or(0));
        let put_backs = sagaflow_amqp::header(delivery, headers::PUT_BACKS)
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        let mut registered = self.registry.names().join(", ");
        registered.truncate(200);
        if waited >= self.unknown_saga_type_grace {
            return Disposition::DeadLetter(format!(
                "unknown saga type {:?} (registered: {registered}); no replica took it within {} s",
                truncated(saga_type, 100),
                self.unknown_saga_type_grace.as_secs()
            ));
        }
        tracing::warn!(
            saga_type = truncated(saga_type, 100),
            put_backs,
            "start of a saga type this replica does not know; putting it back for another replica"
        );
        let mut copied = vec![
            (headers::FIRST_SEEN_MS.to_owned(), first_seen.to_string()),
            (headers::PUT_BACKS.to_owned(), (put_backs + 1).to_string()),
        ];
        for name in [headers::TRACEPARENT, headers::TRACESTATE] {
            if let Some(value) = sagaflow_amqp::header(delivery, name).filter(|v| v.len() <= 512) {
                copied.push((name.to_owned(), value));
            }
        }
        Disposition::PutBack(copied)
    }

    async fn insert_and_start(
        &self,
        saga_id: SagaId,
        start: StartSaga,
        start_key: String,
        definition: &SagaDefinition,
    ) -> Result<Disposition, ProcessError> {
        let now = Utc::now();
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
        let (run, activation) = match SagaRun::start(
            definition,
            saga_id,
            start.input,
            Some(start_key),
            now,
            self.defaults.clone(),
        ) {
            Ok(started) => started,
            Err(e) => return Ok(Disposition::DeadLetter(e.to_string())),
        };
        let position = Position {
            saga: saga_id,
            next_event_seq: 0,
            status: SagaStatus::Running,
        };
        self.commit(tx, &position, activation, run, None, now)
            .await?;
        Ok(Disposition::Ack)
    }
}
