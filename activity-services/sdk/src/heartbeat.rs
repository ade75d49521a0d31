//! Heartbeats of a running attempt: [`Heartbeats`] publishes them, [`Throttle`] decides when.
//!
//! A handler may call [`ActivityContext::heartbeat`](crate::ActivityContext::heartbeat) as often
//! as it likes; at most one heartbeat per interval reaches the broker. A call inside the interval
//! keeps its details and a flush publishes the latest ones when the interval is over, so the
//! orchestrator always ends up with the most recent progress.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sagaflow_amqp::Publisher;
use sagaflow_contracts::{ActivityCommand, ActivityHeartbeat, Topology};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::outgoing::heartbeat_message;

/// Heartbeat details larger than this (as JSON) are dropped with a warning; the heartbeat is
/// still sent, without them.
pub const MAX_HEARTBEAT_DETAILS_BYTES: usize = 8 * 1024;

/// The interval between two heartbeats of an attempt whose command has no heartbeat timeout.
const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// How long a heartbeat's publisher confirm is awaited before it is logged as lost.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// The shortest interval between two heartbeats of `command`: a third of its heartbeat timeout,
/// so that one lost or late heartbeat does not time the attempt out, or 1 s without a timeout.
pub(crate) fn heartbeat_interval(command: &ActivityCommand) -> Duration {
    command
        .heartbeat_timeout_ms
        .map_or(DEFAULT_HEARTBEAT_INTERVAL, |ms| {
            Duration::from_millis(ms / 3)
        })
}

/// `details` if they fit in [`MAX_HEARTBEAT_DETAILS_BYTES`]; `None` (with a warning) if not.
pub(crate) fn bounded_details(details: Value) -> Option<Value> {
    if details.is_null() {
        return None;
    }
    let size = serde_json::to_vec(&details).map_or(usize::MAX, |json| json.len());
    if size > MAX_HEARTBEAT_DETAILS_BYTES {
        tracing::warn!(
            size,
            max = MAX_HEARTBEAT_DETAILS_BYTES,
            "heartbeat details are too large; the heartbeat is sent without them"
        );
        return None;
    }
    Some(details)
}

/// What to do with one heartbeat call.
#[derive(Debug, PartialEq)]
pub(crate) enum Beat {
    /// Publish now, with these details.
    Send(Option<Value>),
    /// The interval is not over: publish what is pending at this instant (see
    /// [`Throttle::flush`]). Returned once per interval.
    FlushAt(Instant),
    /// The interval is not over and a flush is already due: it will carry these details.
    Wait,
}

/// When the heartbeats of one attempt are published: at most one per `interval`, the latest
/// details always published eventually. Pure: the caller passes the time.
#[derive(Debug)]
pub(crate) struct Throttle {
    interval: Duration,
    last_sent: Option<Instant>,
    /// A heartbeat waiting for the interval to pass, with its details if any.
    pending: Option<Option<Value>>,
    flush_due: bool,
}

impl Throttle {
    pub(crate) fn new(interval: Duration) -> Self {
        Throttle {
            interval,
            last_sent: None,
            pending: None,
            flush_due: false,
        }
    }

    /// A heartbeat at `now` with `details`. A heartbeat without details keeps the details of a
    /// pending one: "no news" does not erase progress.
    pub(crate) fn beat(&mut self, now: Instant, details: Option<Value>) -> Beat {
        let details = details.or_else(|| self.pending.take().flatten());
        match self.last_sent {
            Some(last) if now < last + self.interval => {
                self.pending = Some(details);
                if self.flush_due {
                    Beat::Wait
                } else {
                    self.flush_due = true;
                    Beat::FlushAt(last + self.interval)
                }
            }
            _ => {
                self.last_sent = Some(now);
                self.pending = None;
                Beat::Send(details)
            }
        }
    }

    /// The flush returned by [`Throttle::beat`] is due at `now`.
    pub(crate) fn flush(&mut self, now: Instant) -> Flush {
        let Some(pending) = self.pending.take() else {
            self.flush_due = false;
            return Flush::Nothing;
        };
        match self.last_sent {
            // A beat was sent after this flush was planned: wait for its interval to pass.
            Some(last) if now < last + self.interval => {
                self.pending = Some(pending);
                Flush::Again(last + self.interval)
            }
            _ => {
                self.flush_due = false;
                self.last_sent = Some(now);
                Flush::Send(pending)
            }
        }
    }
}

/// What a due flush does.
#[derive(Debug, PartialEq)]
pub(crate) enum Flush {
    /// Publish the pending heartbeat now, with these details.
    Send(Option<Value>),
    /// A beat sent everything already.
    Nothing,
    /// A beat was sent in the meantime: flush again at this instant.
    Again(Instant),
}

/// Publishes the heartbeats of one running attempt. Shared by the clones of its
/// [`ActivityContext`](crate::ActivityContext); [`Heartbeats::stop`] when the attempt ends.
pub(crate) struct Heartbeats {
    publisher: Publisher,
    topology: Topology,
    /// The heartbeat of the attempt, without details.
    heartbeat: ActivityHeartbeat,
    attempt_headers: Vec<(String, String)>,
    throttle: Mutex<Throttle>,
    /// Cancelled when the attempt has ended: no heartbeat is published after its result.
    stopped: CancellationToken,
    runtime: tokio::runtime::Handle,
    /// Encodes the details as the orchestrator stores them and sends them to the next attempt.
    codec: sagaflow_codec::SharedCodec,
}

impl std::fmt::Debug for Heartbeats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Heartbeats")
            .field("routing_key", &self.topology.heartbeats_queue())
            .field("throttle", &self.throttle)
            .field("stopped", &self.stopped.is_cancelled())
            .finish_non_exhaustive()
    }
}

impl Heartbeats {
    /// The heartbeats of `command`'s attempt, published with `publisher` in `topology`. Must be
    /// called on a tokio runtime: heartbeats are published on it.
    pub(crate) fn new(
        publisher: Publisher,
        topology: Topology,
        command: &ActivityCommand,
        attempt_headers: Vec<(String, String)>,
        codec: sagaflow_codec::SharedCodec,
    ) -> Arc<Self> {
        Arc::new(Heartbeats {
            codec,
            publisher,
            topology,
            heartbeat: command.heartbeat(None),
            attempt_headers,
            throttle: Mutex::new(Throttle::new(heartbeat_interval(command))),
            stopped: CancellationToken::new(),
            runtime: tokio::runtime::Handle::current(),
        })
    }

    /// Records a heartbeat with `details` and publishes it now or when the interval is over.
    /// Never blocks and never fails: a lost heartbeat is only a late one, and is logged.
    pub(crate) fn beat(self: &Arc<Self>, details: Option<Value>) {
        if self.stopped.is_cancelled() {
            tracing::debug!("heartbeat after the attempt ended; ignored");
            return;
        }
        let beat = self.lock_throttle().beat(Instant::now(), details);
        match beat {
            Beat::Send(details) => {
                let this = Arc::clone(self);
                self.runtime
                    .spawn(async move { this.publish(details).await });
            }
            Beat::FlushAt(at) => {
                let this = Arc::clone(self);
                self.runtime.spawn(async move {
                    let mut at = at;
                    loop {
                        tokio::select! {
                            _ = tokio::time::sleep_until(at.into()) => {}
                            _ = this.stopped.cancelled() => return,
                        }
                        let flush = this.lock_throttle().flush(Instant::now());
                        match flush {
                            Flush::Send(details) => return this.publish(details).await,
                            Flush::Nothing => return,
                            Flush::Again(later) => at = later,
                        }
                    }
                });
            }
            Beat::Wait => {}
        }
    }

    /// The attempt has ended: heartbeats still pending are dropped and later calls ignored.
    pub(crate) fn stop(&self) {
        self.stopped.cancel();
    }

    fn lock_throttle(&self) -> std::sync::MutexGuard<'_, Throttle> {
        // The throttle is consistent after every statement: a panic elsewhere cannot break it.
        self.throttle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn publish(&self, details: Option<Value>) {
        let details = match details.map(|d| self.codec.encode(d)).transpose() {
            Ok(details) => details,
            Err(error) => {
                tracing::warn!(%error, "heartbeat details cannot be encoded; sent without them");
                None
            }
        };
        let message = heartbeat_message(
            &self.topology,
            &self.heartbeat,
            details,
            self.attempt_headers.clone(),
        );
        let confirmed = async { self.publisher.send(&message).await?.wait().await };
        match tokio::time::timeout(CONFIRM_TIMEOUT, confirmed).await {
            Ok(Ok(())) => {
                metrics::counter!(crate::worker_metrics::HEARTBEATS, "activity" => self.heartbeat.activity.clone())
                    .increment(1);
                tracing::debug!("heartbeat published")
            }
            Ok(Err(error)) => tracing::warn!(%error, "a heartbeat was not published"),
            Err(_) => tracing::warn!(
                timeout = ?CONFIRM_TIMEOUT,
                "the broker did not confirm a heartbeat in time"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use sagaflow_contracts::{IdempotencyKey, SagaId, StepSeq};
    use serde_json::json;

    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn the_first_heartbeat_is_sent_at_once() {
        let mut throttle = Throttle::new(SECOND);
        let now = Instant::now();
        assert_eq!(
            throttle.beat(now, Some(json!(1))),
            Beat::Send(Some(json!(1)))
        );
    }

    #[test]
    fn heartbeats_inside_the_interval_wait_for_one_flush_with_the_latest_details() {
        let mut throttle = Throttle::new(SECOND);
        let t0 = Instant::now();
        assert_eq!(
            throttle.beat(t0, Some(json!(1))),
            Beat::Send(Some(json!(1)))
        );
        let ms = |n| t0 + Duration::from_millis(n);
        assert_eq!(
            throttle.beat(ms(100), Some(json!(2))),
            Beat::FlushAt(ms(1_000))
        );
        assert_eq!(throttle.beat(ms(200), Some(json!(3))), Beat::Wait);
        assert_eq!(throttle.beat(ms(300), None), Beat::Wait);
        assert_eq!(throttle.flush(ms(1_000)), Flush::Send(Some(json!(3))));
        // The flush started a new interval.
        assert_eq!(
            throttle.beat(ms(1_500), Some(json!(4))),
            Beat::FlushAt(ms(2_000))
        );
        assert_eq!(throttle.flush(ms(2_000)), Flush::Send(Some(json!(4))));
        assert_eq!(throttle.beat(ms(3_000), None), Beat::Send(None));
    }

    #[test]
    fn a_heartbeat_after_the_interval_is_sent_and_leaves_the_flush_nothing() {
        let mut throttle = Throttle::new(SECOND);
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        throttle.beat(t0, None);
        assert_eq!(
            throttle.beat(ms(500), Some(json!(1))),
            Beat::FlushAt(ms(1_000))
        );
        // The timer runs late; a beat in the meantime sends the latest details itself.
        assert_eq!(
            throttle.beat(ms(1_100), Some(json!(2))),
            Beat::Send(Some(json!(2)))
        );
        assert_eq!(throttle.flush(ms(1_200)), Flush::Nothing);
        // The next interval counts from the beat that was sent.
        assert_eq!(throttle.beat(ms(1_300), None), Beat::FlushAt(ms(2_100)));
    }

    #[test]
    fn a_late_flush_after_a_sent_beat_waits_for_the_new_interval() {
        let mut throttle = Throttle::new(SECOND);
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        throttle.beat(t0, None);
        assert_eq!(
            throttle.beat(ms(500), Some(json!(1))),
            Beat::FlushAt(ms(1_000))
        );
        assert_eq!(
            throttle.beat(ms(1_100), Some(json!(2))),
            Beat::Send(Some(json!(2)))
        );
        // The first flush is still planned, so this beat needs no second one.
        assert_eq!(throttle.beat(ms(1_150), Some(json!(3))), Beat::Wait);
        assert_eq!(throttle.flush(ms(1_200)), Flush::Again(ms(2_100)));
        assert_eq!(throttle.flush(ms(2_100)), Flush::Send(Some(json!(3))));
        assert_eq!(throttle.beat(ms(2_200), None), Beat::FlushAt(ms(3_100)));
    }

    #[test]
    fn a_heartbeat_without_details_keeps_the_pending_details() {
        let mut throttle = Throttle::new(SECOND);
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        throttle.beat(t0, None);
        throttle.beat(ms(100), Some(json!({"row": 7})));
        throttle.beat(ms(200), None);
        assert_eq!(
            throttle.flush(ms(1_000)),
            Flush::Send(Some(json!({"row": 7})))
        );
        throttle.beat(ms(1_100), Some(json!({"row": 8})));
        assert_eq!(
            throttle.beat(ms(2_000), None),
            Beat::Send(Some(json!({"row": 8})))
        );
    }

    fn command(heartbeat_timeout_ms: Option<u64>) -> ActivityCommand {
        let saga_id = SagaId::new_random();
        ActivityCommand {
            saga_id,
            step: StepSeq(1),
            activity: "Import".to_owned(),
            attempt: 1,
            idempotency_key: IdempotencyKey::for_step(saga_id, StepSeq(1)),
            input: Value::Null,
            heartbeat_timeout_ms,
            heartbeat_details: None,
        }
    }

    #[test]
    fn the_interval_is_a_third_of_the_heartbeat_timeout_or_a_second() {
        assert_eq!(
            heartbeat_interval(&command(Some(30_000))),
            Duration::from_secs(10)
        );
        assert_eq!(heartbeat_interval(&command(None)), SECOND);
    }

    #[test]
    fn details_over_the_limit_and_null_details_are_dropped() {
        assert_eq!(bounded_details(json!({"row": 7})), Some(json!({"row": 7})));
        assert_eq!(bounded_details(Value::Null), None);
        let fits = "x".repeat(MAX_HEARTBEAT_DETAILS_BYTES - 2);
        assert_eq!(bounded_details(json!(fits)), Some(json!(fits)));
        let too_large = "x".repeat(MAX_HEARTBEAT_DETAILS_BYTES - 1);
        assert_eq!(bounded_details(json!(too_large)), None);
    }
}
