use std::time::Duration;

use chrono::Utc;
use sagaflow_amqp::Delivery;
use sagaflow_contracts::{headers, SagaId, SagaStatus, StartSaga};
use sagaflow_engine::{SagaDefinition, SagaRun};
use tracing::Instrument;

use super::advance::Position;
use super::work::Work;
use super::{Disposition, ProcessError, Processor};
use crate::store::{self, NewSaga};
use sagaflow_contracts::reason::{quote, truncate};

/// Longer keys do not fit PostgreSQL's unique index.
const MAX_START_KEY_BYTES: usize = 512;

impl Processor {
    /// A start message: a new saga, unless one with the same type and start key exists.
    pub(crate) async fn start_saga(
        &self,
        work: &mut Work<'_>,
        delivery: &Delivery,
    ) -> Result<Disposition, ProcessError> {
        let mut start: StartSaga =
            match self.decode(delivery, sagaflow_contracts::decode::start_saga) {
                Ok(start) => start,
                Err(rejected) => return Ok(rejected),
            };
        // A client with the key may have encrypted sensitive fields; the saga code sees them
        // in clear text.
        start.input = match self.codec.decode(std::mem::take(&mut start.input)) {
            Ok(input) => input,
            Err(e) => return Ok(Disposition::DeadLetter(format!("the input: {e}"))),
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
        let span = tracing::info_span!(
            "start saga",
            otel.kind = "consumer",
            %saga_id,
            saga_type = %start.saga_type,
            messaging.system = "rabbitmq",
            messaging.operation.type = "process",
        );
        sagaflow_process::set_remote_parent(&span, |name| sagaflow_amqp::header(delivery, name));
        let reply = reply_address(delivery);
        self.insert_and_start(work, saga_id, start, start_key, reply, definition)
            .instrument(span)
            .await
    }

    /// A start of a saga type this replica does not know: during a rolling deploy another
    /// replica may know it, so it is put back (with the time it was first seen) until the
    /// grace period is over, then dead-lettered.
    fn unknown_saga_type(&self, delivery: &Delivery, saga_type: &str) -> Disposition {
        if sagaflow_contracts::validate_name(saga_type).is_err() {
            return Disposition::DeadLetter(format!(
                "unknown saga type {}: no saga can be registered under this name (1 to 100 of A-Z a-z 0-9 _ - .)",
                quote(saga_type, 100)
            ));
        }
        let now = Utc::now().timestamp_millis();
        let first_seen = sagaflow_amqp::header(delivery, headers::FIRST_SEEN_MS)
            .and_then(|ms| ms.parse::<i64>().ok())
            .filter(|ms| *ms <= now)
            .unwrap_or(now);
        let waited = Duration::from_millis(u64::try_from(now - first_seen).unwrap_or(0));
        let put_backs = sagaflow_amqp::header(delivery, headers::PUT_BACKS)
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        let registered = self.registry.names().join(", ");
        let registered = truncate(&registered, 200);
        if waited >= self.unknown_saga_type_grace {
            return Disposition::DeadLetter(format!(
                "unknown saga type {} (registered: {registered}); no replica took it within {} s",
                quote(saga_type, 100),
                self.unknown_saga_type_grace.as_secs()
            ));
        }
        tracing::warn!(
            saga_type = %truncate(saga_type, 100),
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
        work: &mut Work<'_>,
        saga_id: SagaId,
        start: StartSaga,
        start_key: String,
        reply: (Option<String>, Option<String>),
        definition: &SagaDefinition,
    ) -> Result<Disposition, ProcessError> {
        let now = Utc::now();
        let (reply_to, correlation_id) = reply;
        // Every later span of the saga continues this one (see `advance`).
        let trace_context = sagaflow_process::trace_headers(&tracing::Span::current());
        let stored_input = match self.codec.encode(start.input.clone()) {
            Ok(input) => input,
            Err(e) => return Ok(Disposition::DeadLetter(format!("the input: {e}"))),
        };
        let new_saga = NewSaga {
            id: saga_id,
            saga_type: &start.saga_type,
            input: &stored_input,
            start_key: Some(&start_key),
            reply_to: reply_to.as_deref(),
            correlation_id: correlation_id.as_deref(),
            trace_context: &trace_context,
        };
        let mut tx = work.begin().await?;
        if !store::insert_saga(&mut tx, new_saga).await? {
            tracing::info!(
                start_key,
                "duplicate start; a saga with this start key exists"
            );
            tx.end_unwritten();
            return Ok(Disposition::Ack);
        }
        let (run, activation) = match SagaRun::start(
            definition,
            saga_id,
            start.input,
            Some(start_key.clone()),
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
            saga_type: start.saga_type,
            start_key: Some(start_key),
            reply_to,
            correlation_id,
        };
        self.commit(tx, &position, activation, Some(run), None, now)
            .await?;
        Ok(Disposition::Ack)
    }
}

/// The start's `reply_to` queue and `correlation_id`, if it asked for its outcome.
pub(crate) fn reply_address(delivery: &Delivery) -> (Option<String>, Option<String>) {
    let props = &delivery.properties;
    let reply_to = props
        .reply_to()
        .as_ref()
        .map(|q| q.to_string())
        .filter(|q| !q.is_empty());
    let correlation_id = props.correlation_id().as_ref().map(|id| id.to_string());
    (reply_to, correlation_id)
}
