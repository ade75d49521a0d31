use sagaflow_amqp::Delivery;
use sagaflow_contracts::{ControlAction, SagaControl};
use sagaflow_engine::Fact;

use super::{Disposition, ProcessError, Processor};

/// Reasons are kept in the history: bounded like every text a peer sends.
const MAX_REASON_BYTES: usize = 1_000;

impl Processor {
    /// An operator's request (cancel, terminate, retry compensation, resume): a fact for the
    /// saga. Repeating one is harmless: the saga's state machines decide it changes nothing.
    pub(crate) async fn control_saga(
        &self,
        delivery: &Delivery,
    ) -> Result<Disposition, ProcessError> {
        if let Some(too_large) = self.too_large(delivery) {
            return Ok(too_large);
        }
        if let Some(reason) = super::unsupported_wire_version(delivery) {
            return Ok(Disposition::DeadLetter(reason));
        }
        let control: SagaControl = match sagaflow_contracts::decode::saga_control(&delivery.data) {
            Ok(control) => control,
            Err(e) => return Ok(Disposition::DeadLetter(e.to_string())),
        };
        let reason =
            sagaflow_contracts::reason::truncate(&control.reason, MAX_REASON_BYTES).into_owned();
        tracing::info!(saga_id = %control.saga_id, action = ?control.action, reason, "control request");
        let fact = match control.action {
            ControlAction::Cancel => Fact::Cancel { reason },
            ControlAction::Terminate => Fact::Terminate { reason },
            ControlAction::RetryCompensation => Fact::RetryCompensation,
            ControlAction::Resume => Fact::Resumed,
        };
        self.advance(control.saga_id, fact, None).await
    }
}
