use chrono::Utc;
use sagaflow_amqp::Delivery;
use sagaflow_contracts::ActivityHeartbeat;

use super::advance::AfterCommit;
use super::work::Work;
use super::{Disposition, ProcessError, Processor};
use crate::store;

/// Heartbeat details larger than this are not kept (the heartbeat still counts).
const MAX_DETAILS_BYTES: usize = 8 * 1024;

impl Processor {
    /// A heartbeat: moves the attempt's heartbeat timeout and keeps its details for a later
    /// attempt. It does not touch the saga's history or run.
    pub(crate) async fn record_heartbeat(
        &self,
        work: &mut Work<'_>,
        delivery: &Delivery,
    ) -> Result<Disposition, ProcessError> {
        let heartbeat: ActivityHeartbeat =
            match self.decode(delivery, sagaflow_contracts::decode::activity_heartbeat) {
                Ok(heartbeat) => heartbeat,
                Err(rejected) => return Ok(rejected),
            };
        let details = heartbeat.details.as_ref().filter(|details| {
            let small = serde_json::to_vec(details).map_or(0, |d| d.len()) <= MAX_DETAILS_BYTES;
            if !small {
                tracing::warn!(saga_id = %heartbeat.saga_id, step = %heartbeat.step, "heartbeat details over {MAX_DETAILS_BYTES} bytes are not kept");
            }
            small
        });
        let mut tx = work.begin().await?;
        let timed = store::record_heartbeat(
            &mut tx,
            heartbeat.saga_id,
            heartbeat.step,
            heartbeat.attempt,
            details,
            Utc::now(),
        )
        .await?;
        self.finish(tx, AfterCommit::default()).await?;
        tracing::debug!(saga_id = %heartbeat.saga_id, step = %heartbeat.step, attempt = heartbeat.attempt, timed, "heartbeat");
        Ok(Disposition::Ack)
    }
}
