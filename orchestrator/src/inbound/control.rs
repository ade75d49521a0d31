use sagaflow_amqp::Delivery;
use sagaflow_contracts::{ControlAction, SagaControl};
use sagaflow_engine::Fact;

use super::work::Work;
use super::{Disposition, ProcessError, Processor};

/// Reasons are kept in the history: bounded like every text a peer sends.
const MAX_REASON_BYTES: usize = 1_000;

impl Processor {
    /// An operator's request (cancel, terminate, retry compensation, resume): a fact for the
    /// saga. Repeating one is harmless: the saga's state machines decide it changes nothing.
    pub(crate) async fn control_saga(
        &self,
        work: &mut Work<'_>,
        delivery: &Delivery,
    ) -> Result<Disposition, ProcessError> {
        let control: SagaControl =
            match self.decode(delivery, sagaflow_contracts::decode::saga_control) {
                Ok(control) => control,
                Err(rejected) => return Ok(rejected),
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
        self.advance(work, control.saga_id, fact, None).await
    }
}
