//! The one path every fact takes, whatever brought it (a result, a timer, a resume): lock the
//! saga, take its live run from the cache or replay it, hand it the fact, commit what that
//! recorded and caused. The message or timer that carried the fact is settled after the commit.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use sagaflow_amqp::OutgoingMessage;
use sagaflow_contracts::{
    error_kinds, headers, ActivityCancel, ActivityCommand, ActivityError, ActivityOutcome,
    IdempotencyKey, SagaEvent, SagaFinished, SagaId, SagaStatus, StepSeq,
};
use sagaflow_engine::{
    Activation, Effect, Fact, FactRejected, ReplayError, Replayed, SagaEnd, SagaRun, TimerKey,
};
use serde_json::json;
use tracing::Instrument;

use super::saga_metrics::{record_saga_started, record_saga_status, ActivationMetrics};
use super::work::{Tx, Work};
use super::{Disposition, ProcessError, Processor};
use crate::cache::CachedSaga;
use crate::store::{self, ParkedFact, SagaUpdate};
use crate::telemetry;
use sagaflow_process::crash_point;

/// How many times one activation may refuse commands that are too large before the rest are
/// sent anyway: saga code that answers every refusal with another such command must not hold
/// the transaction forever.
const MAX_REFUSAL_ROUNDS: usize = 100;

/// Where a saga's history stands when an activation is committed, and who waits for its end.
pub(crate) struct Position {
    pub saga: SagaId,
    pub next_event_seq: i64,
    /// The saga's status before the activation.
    pub status: SagaStatus,
    pub saga_type: String,
    pub start_key: Option<String>,
    /// The start message's `reply_to` and `correlation_id`.
    pub reply_to: Option<String>,
    pub correlation_id: Option<String>,
}

impl Position {
    fn of(saga: &store::SagaRow) -> Self {
        Position {
            saga: saga.id,
            next_event_seq: saga.next_event_seq,
            status: saga.status,
            saga_type: saga.saga_type.clone(),
            start_key: saga.start_key.clone(),
            reply_to: saga.reply_to.clone(),
            correlation_id: saga.correlation_id.clone(),
        }
    }
}

/// What happens once a unit of work's writes are committed, and not before: the relay must not
/// publish, nor the cache hold, nor a metric count, what a rollback could still undo.
#[derive(Default)]
pub(crate) struct AfterCommit {
    pub activation: Option<CommittedActivation>,
    /// The type of a saga this commit started.
    pub started: Option<String>,
    /// A saga's new status, when it changed.
    pub status: Option<(String, SagaStatus)>,
    /// A saga's live run, for the cache.
    pub cache: Option<(SagaId, CachedSaga)>,
}

/// What an activation leaves for after its commit.
pub(crate) struct CommittedActivation {
    saga: SagaId,
    metrics: ActivationMetrics,
    /// The activation's span: its `activity.retry` spans are children of it.
    span: tracing::Span,
    /// The activities it sent commands to (for the crash points of tests).
    #[cfg(feature = "failpoints")]
    activities: Vec<String>,
    /// The outbox rows it wrote (ids, messages), for this process's relay.
    outbox: (Vec<i64>, Vec<OutgoingMessage>),
    /// When the earliest timer it armed is due.
    earliest_timer: Option<DateTime<Utc>>,
}

impl Processor {
    /// Hands `fact` to saga `saga_id` through the one path; `fired_timer` is the timer row
    /// that carried it, deleted in the same transaction (nothing happens if it is gone or no
    /// longer due: another replica fired it, or a heartbeat moved it).
    pub(crate) async fn advance(
        &self,
        work: &mut Work<'_>,
        saga_id: SagaId,
        fact: Fact,
        fired_timer: Option<i64>,
    ) -> Result<Disposition, ProcessError> {
        let now = Utc::now();
        let mut tx = work.begin().await?;
        let Some(saga) = tx.lock_saga(saga_id).await? else {
            tx.end_unwritten();
            return Ok(Disposition::DeadLetter(format!("no saga {saga_id} exists")));
        };
        if let Some(timer) = fired_timer {
            // Another replica may have fired it meanwhile, or a heartbeat moved it: then this
            // is no activation, and it gets no span.
            if store::lock_due_timer(&mut tx, timer, now).await?.is_none() {
                tx.end_unwritten();
                return Ok(Disposition::Ack);
            }
        }
        // One span per activation, in the saga's trace (its parent is the saga's start span,
        // set before the span is entered); a replay emits no spans for old steps. A timer's
        // activation is the child of a `timer.fired` span saying which timer it was.
        let stored_context = |name: &str| {
            saga.trace_context
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        };
        let timer_span = fired_timer
            .and_then(|_| timer_span(saga_id, &saga.saga_type, &fact))
            .unwrap_or_else(tracing::Span::none);
        // Parents are set before children are made: a child takes its trace from its parent.
        sagaflow_process::set_remote_parent(&timer_span, stored_context);
        let span = tracing::info_span!(
            parent: timer_span.id().or_else(|| tracing::Span::current().id()),
            "advance",
            %saga_id,
            saga_type = %saga.saga_type,
            fact = fact_kind(&fact),
            step = tracing::field::Empty,
            attempt = tracing::field::Empty,
            activity = tracing::field::Empty,
        );
        if let Fact::ActivityResult {
            step,
            activity,
            attempt,
            ..
        } = &fact
        {
            span.record("step", step.0);
            span.record("attempt", *attempt);
            if let Some(activity) = activity {
                span.record("activity", activity.as_str());
            }
        }
        if timer_span.is_none() {
            sagaflow_process::set_remote_parent(&span, stored_context);
        }
        self.advance_locked(tx, saga, fact, fired_timer, now)
            .instrument(span)
            .instrument(timer_span)
            .await
    }

    async fn advance_locked(
        &self,
        mut tx: Tx<'_>,
        saga: store::SagaRow,
        fact: Fact,
        fired_timer: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<Disposition, ProcessError> {
        let saga_id = saga.id;
        let resume = matches!(fact, Fact::Resumed);
        match saga.status {
            status if status.is_final() => {
                tracing::info!(%saga_id, %status, "fact for a saga that has ended; ignored");
                return self
                    .settle_only(tx, fired_timer, AfterCommit::default())
                    .await;
            }
            SagaStatus::Stuck if matches!(fact, Fact::Terminate { .. }) => {
                // Its code cannot run, but it can be stopped.
                let Fact::Terminate { reason } = fact else {
                    unreachable!("matched above")
                };
                store::take_parked_facts(&mut tx, saga_id).await?;
                let activation = Activation {
                    events: vec![SagaEvent::SagaTerminated {
                        reason: reason.clone(),
                    }],
                    end: Some(SagaEnd::Terminated { reason }),
                    ..Activation::default()
                };
                self.commit(tx, &Position::of(&saga), activation, None, fired_timer, now)
                    .await?;
                return Ok(Disposition::Ack);
            }
            SagaStatus::Stuck if !resume => {
                // Kept in order for when the saga's code is fixed and it is resumed.
                if let Some(parked) = parked(&fact) {
                    store::park_fact(&mut tx, saga_id, &parked).await?;
                }
                tracing::warn!(%saga_id, "the saga is stuck; the fact is kept for its resume");
                return self
                    .settle_only(tx, fired_timer, AfterCommit::default())
                    .await;
            }
            SagaStatus::Running if resume => {
                tracing::info!(%saga_id, "resume of a saga that is not stuck; nothing to do");
                return self
                    .settle_only(tx, fired_timer, AfterCommit::default())
                    .await;
            }
            _ => {}
        }

        let position = Position::of(&saga);
        let cached = self
            .cache
            .take(saga_id)
            .filter(|cached| cached.next_event_seq == saga.next_event_seq);
        let mut activation = Activation::default();
        let mut run = match cached {
            Some(CachedSaga { run, .. }) => {
                metrics::counter!(telemetry::CACHE_HITS).increment(1);
                run
            }
            None => {
                metrics::counter!(telemetry::REPLAYS).increment(1);
                let history =
                    match store::load_history_decoded(&mut *tx, saga_id, &*self.codec).await {
                        Ok(history) => history,
                        Err(store::HistoryError::Database(e)) => return Err(e.into()),
                        Err(unreadable) => {
                            // Another replica may have the key; an operator resumes it once
                            // this one does too.
                            if let Some(parked) = parked(&fact) {
                                store::park_fact(&mut tx, saga_id, &parked).await?;
                            }
                            if let Some(timer) = fired_timer {
                                store::delete_timer(&mut tx, timer).await?;
                            }
                            self.park(tx, &position, &[], unreadable.to_string(), now)
                                .await?;
                            return Ok(Disposition::Ack);
                        }
                    };
                match SagaRun::replay(
                    &self.registry,
                    saga_id,
                    &history,
                    self.defaults.clone(),
                    now,
                ) {
                    Ok(Replayed { run, continuation }) => {
                        activation.extend(continuation);
                        run
                    }
                    Err(ReplayError::UnknownSagaType(saga_type)) => {
                        return Err(ProcessError::UnknownSagaType(saga_type))
                    }
                    Err(error) => {
                        if let Some(parked) = parked(&fact) {
                            store::park_fact(&mut tx, saga_id, &parked).await?;
                        }
                        if let Some(timer) = fired_timer {
                            store::delete_timer(&mut tx, timer).await?;
                        }
                        self.park(tx, &position, &[], error.to_string(), now)
                            .await?;
                        return Ok(Disposition::Ack);
                    }
                }
            }
        };

        let mut rejected = None;
        match run.handle(fact, now) {
            Ok(Some(handled)) => activation.extend(handled),
            Ok(None) => tracing::debug!(%saga_id, "duplicate or stale fact; nothing to record"),
            Err(FactRejected(reason)) => rejected = Some(reason),
        }
        if resume {
            let mut parked = store::take_parked_facts(&mut tx, saga_id)
                .await?
                .into_iter();
            while activation.stuck.is_none() {
                let Some(next) = parked.next() else { break };
                let Some(fact) = parked_fact(next) else {
                    continue;
                };
                match run.handle(fact, now) {
                    Ok(Some(handled)) => activation.extend(handled),
                    Ok(None) => {}
                    Err(FactRejected(reason)) => {
                        tracing::warn!(%saga_id, reason, "a parked fact does not belong to the saga; dropped")
                    }
                }
            }
            // Stuck again: what is left waits for the next resume, in the same order.
            for rest in parked {
                store::park_fact(&mut tx, saga_id, &rest).await?;
            }
        }
        if activation.is_empty() {
            let cached = CachedSaga {
                run,
                next_event_seq: saga.next_event_seq,
            };
            let after = AfterCommit {
                cache: Some((saga_id, cached)),
                ..AfterCommit::default()
            };
            self.settle_only(tx, fired_timer, after).await?;
        } else {
            self.commit(tx, &position, activation, Some(run), fired_timer, now)
                .await?;
        }
        Ok(rejected.map_or(Disposition::Ack, Disposition::DeadLetter))
    }

    /// Deletes the fired timer, if any, and commits nothing else.
    async fn settle_only(
        &self,
        mut tx: Tx<'_>,
        fired_timer: Option<i64>,
        after: AfterCommit,
    ) -> Result<Disposition, ProcessError> {
        match fired_timer {
            Some(timer) => {
                store::delete_timer(&mut tx, timer).await?;
                self.finish(tx, after).await?;
            }
            None => {
                if let Some(after) = tx.end_unwritten_then(after) {
                    self.after_commit(after);
                }
            }
        }
        Ok(Disposition::Ack)
    }

    /// Records `activation` after `position`, writes its effects (outbox messages, timers),
    /// updates the saga row and commits. Then the run goes (back) into the cache, the outbox
    /// rows go to this process's relay, and the timer claimer is woken.
    pub(crate) async fn commit(
        &self,
        mut tx: Tx<'_>,
        position: &Position,
        mut activation: Activation,
        mut run: Option<SagaRun>,
        fired_timer: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<(), ProcessError> {
        let saga = position.saga;
        if let Some(timer) = fired_timer {
            store::delete_timer(&mut tx, timer).await?;
        }
        let mut commands = self
            .command_messages(&mut tx, saga, &mut activation, run.as_mut(), now)
            .await?;
        if let Some(error) = activation.stuck {
            return self
                .park(tx, position, &activation.events, error.to_string(), now)
                .await;
        }
        let next_event_seq = position.next_event_seq + activation.events.len() as i64;
        let counted =
            ActivationMetrics::gather(run.as_ref(), &activation.events, &activation.effects, now);

        let mut messages = Vec::new();
        for effect in &activation.effects {
            match effect {
                Effect::SendActivityCommand { .. } => {
                    // Built (and size-checked) above, in the order of their effects.
                    messages.extend(commands.pop_front());
                }
                Effect::CancelActivity {
                    step,
                    activity,
                    attempt,
                    reason,
                } => messages.push(self.activity_cancel(&ActivityCancel {
                    saga_id: saga,
                    step: *step,
                    activity: activity.clone(),
                    attempt: *attempt,
                    reason: reason.clone(),
                })),
                Effect::ArmTimer { .. } | Effect::CancelStepTimers { .. } => {}
            }
        }
        let (status, output, error) = outcome(activation.end.as_ref());
        // As stored and sent to the caller: sensitive fields encrypted.
        let output = self.encode(output)?;
        let error = self.encode(error)?;
        let (disarm_first, timers) = timer_changes(&activation.effects, status.is_final());
        for step in disarm_first {
            store::cancel_step_timers(&mut tx, saga, step).await?;
        }
        let earliest_timer = timers.arm.iter().map(|timer| timer.fire_at).min();
        if status.is_final() {
            if let Some(reply) = self.reply(position, status, &output, &error) {
                messages.push(reply);
            }
        }
        let update = SagaUpdate {
            status,
            next_event_seq,
            output: output.as_ref(),
            error: error.as_ref(),
        };
        let outbox_ids = store::write_activation(
            &mut tx,
            saga,
            position.next_event_seq,
            &activation.events,
            &*self.codec,
            now,
            &messages,
            self.outbox_handover,
            update,
            &timers,
        )
        .await?;
        if position.status == SagaStatus::Stuck {
            tracing::info!(%saga, "saga resumed");
        }
        let cache = match run {
            // A saga that only sleeps costs a row, not memory: it is replayed when it wakes.
            Some(run) if status == SagaStatus::Running && !run.waits_only_on_timers() => {
                Some(CachedSaga {
                    run,
                    next_event_seq,
                })
            }
            _ if status.is_final() => {
                tracing::info!(%saga, %status, "saga finished");
                None
            }
            _ if status == SagaStatus::CompensationFailed => {
                tracing::error!(
                    %saga,
                    ?error,
                    "a compensation failed; the saga waits for `sagaflow retry-compensation`"
                );
                None
            }
            _ => None,
        };
        let after = AfterCommit {
            activation: Some(CommittedActivation {
                saga,
                metrics: counted,
                span: tracing::Span::current(),
                #[cfg(feature = "failpoints")]
                activities: activation
                    .effects
                    .iter()
                    .filter_map(|effect| match effect {
                        Effect::SendActivityCommand { activity, .. } => Some(activity.clone()),
                        _ => None,
                    })
                    .collect(),
                outbox: (outbox_ids, messages),
                earliest_timer,
            }),
            cache: cache.map(|cached| (saga, cached)),
            started: (position.next_event_seq == 0).then(|| position.saga_type.clone()),
            status: (status != position.status).then(|| (position.saga_type.clone(), status)),
        };
        self.finish(tx, after).await
    }

    /// Commits `tx` with `after`, which runs once its writes are committed: now, or after its
    /// batch's commit (see `work.rs`).
    pub(crate) async fn finish(&self, tx: Tx<'_>, after: AfterCommit) -> Result<(), ProcessError> {
        if let Some(after) = tx.commit(after).await? {
            self.after_commit(after);
        }
        Ok(())
    }

    /// What waited for the commit of an activation: metrics, crash points (in tests), the
    /// outbox rows to this process's relay, the timer claimer's wake-up, the run to the cache.
    pub(crate) fn after_commit(&self, after: AfterCommit) {
        if let Some(saga_type) = &after.started {
            record_saga_started(saga_type);
        }
        if let Some((saga_type, status)) = &after.status {
            record_saga_status(saga_type, *status);
        }
        if let Some((saga, cached)) = after.cache {
            self.cache.put(saga, cached);
        }
        let Some(committed) = after.activation else {
            return;
        };
        let saga = committed.saga;
        committed.span.in_scope(|| committed.metrics.record(saga));
        crash_point("orchestrator.after-commit");
        // Per-activity crash points cost a string per command: only in builds that have them.
        #[cfg(feature = "failpoints")]
        for activity in &committed.activities {
            crash_point(&format!("orchestrator.after-commit.{activity}"));
        }
        let (ids, messages) = committed.outbox;
        self.committed_outbox.publish(ids, messages);
        if let Some(fire_at) = committed.earliest_timer {
            self.timer_wakeup.armed(fire_at);
        }
    }

    /// The outbox messages of the activation's activity commands, in the order of their
    /// effects. A command larger than `max_command_bytes` is never sent: its attempt fails at
    /// once with kind `CommandTooLarge`, a fact recorded in the activation like any result (so
    /// a replay sees the same failure whatever the limit is then), and what the saga code does
    /// about it (compensate, fail, schedule something else) joins the activation too.
    async fn command_messages(
        &self,
        tx: &mut Tx<'_>,
        saga: SagaId,
        activation: &mut Activation,
        mut run: Option<&mut SagaRun>,
        now: DateTime<Utc>,
    ) -> Result<VecDeque<OutgoingMessage>, ProcessError> {
        for _ in 0..MAX_REFUSAL_ROUNDS {
            if activation.stuck.is_some() {
                return Ok(VecDeque::new());
            }
            let mut messages = VecDeque::new();
            let mut refused = Vec::new();
            for (index, effect) in activation.effects.iter().enumerate() {
                let Effect::SendActivityCommand {
                    step,
                    activity,
                    attempt,
                    ..
                } = effect
                else {
                    continue;
                };
                let message = self.command_message(tx, saga, effect).await?;
                if message.body.len() <= self.max_command_bytes || run.is_none() {
                    messages.push_back(message);
                    continue;
                }
                let reason = format!(
                    "the command of {} bytes exceeds the limit of {} bytes (SAGAFLOW_MAX_COMMAND_BYTES); it was not sent",
                    message.body.len(),
                    self.max_command_bytes
                );
                tracing::warn!(%saga, step = step.0, activity, reason, "activity command refused");
                refused.push((
                    index,
                    Fact::ActivityResult {
                        step: *step,
                        activity: Some(activity.clone()),
                        attempt: *attempt,
                        outcome: ActivityOutcome::Failed {
                            error: ActivityError::permanent(error_kinds::COMMAND_TOO_LARGE, reason),
                        },
                    },
                ));
            }
            let Some(run) = run.as_deref_mut().filter(|_| !refused.is_empty()) else {
                return Ok(messages);
            };
            for (index, _) in refused.iter().rev() {
                activation.effects.remove(*index);
            }
            for (_, fact) in refused {
                match run.handle(fact, now) {
                    Ok(Some(handled)) => activation.extend(handled),
                    Ok(None) => {}
                    Err(FactRejected(reason)) => {
                        tracing::warn!(%saga, reason, "a refused command's failure does not fit the saga")
                    }
                }
            }
        }
        // Saga code that keeps scheduling commands too large to send: send them after all and
        // let the relay's parking of what the broker refuses deal with them.
        tracing::warn!(%saga, "saga code keeps scheduling commands over the size limit");
        let mut messages = VecDeque::new();
        for effect in &activation.effects {
            if matches!(effect, Effect::SendActivityCommand { .. }) {
                messages.push_back(self.command_message(tx, saga, effect).await?);
            }
        }
        Ok(messages)
    }

    /// The outbox message of a `SendActivityCommand` effect (with the step's last heartbeat
    /// details from an attempt before).
    async fn command_message(
        &self,
        tx: &mut Tx<'_>,
        saga: SagaId,
        effect: &Effect,
    ) -> Result<OutgoingMessage, ProcessError> {
        let Effect::SendActivityCommand {
            step,
            activity,
            attempt,
            input,
            heartbeat_timeout_ms,
        } = effect
        else {
            unreachable!("only called for SendActivityCommand effects")
        };
        let heartbeat_details = if *attempt > 1 {
            store::last_heartbeat_details(tx, saga, *step).await?
        } else {
            None
        };
        let command = ActivityCommand {
            saga_id: saga,
            step: *step,
            activity: activity.clone(),
            attempt: *attempt,
            idempotency_key: IdempotencyKey::for_step(saga, *step),
            input: input.clone(),
            heartbeat_timeout_ms: *heartbeat_timeout_ms,
            heartbeat_details,
        };
        self.activity_command(&command)
    }

    /// `value` as the payload codec stores it.
    fn encode(
        &self,
        value: Option<serde_json::Value>,
    ) -> Result<Option<serde_json::Value>, ProcessError> {
        value
            .map(|value| self.codec.encode(value))
            .transpose()
            .map_err(|e| ProcessError::Codec(e.to_string()))
    }

    /// Parks a saga whose code cannot go on (it no longer replays its history, panicked, or
    /// blocks), keeping `events` (the fact that found it so) in its history.
    pub(crate) async fn park(
        &self,
        mut tx: Tx<'_>,
        position: &Position,
        events: &[sagaflow_contracts::SagaEvent],
        reason: String,
        now: DateTime<Utc>,
    ) -> Result<(), ProcessError> {
        store::append_events(
            &mut tx,
            position.saga,
            position.next_event_seq,
            events,
            now,
            &*self.codec,
        )
        .await?;
        let error = json!({ "reason": reason });
        let update = SagaUpdate {
            status: SagaStatus::Stuck,
            next_event_seq: position.next_event_seq + events.len() as i64,
            output: None,
            error: Some(&error),
        };
        store::update_saga(&mut tx, position.saga, update).await?;
        tracing::error!(saga = %position.saga, reason, "saga is stuck");
        let after = AfterCommit {
            status: Some((position.saga_type.clone(), SagaStatus::Stuck)),
            ..AfterCommit::default()
        };
        self.finish(tx, after).await
    }

    /// The `SagaFinished` message for the caller of a saga that ended, if it asked for one.
    fn reply(
        &self,
        position: &Position,
        status: SagaStatus,
        output: &Option<serde_json::Value>,
        error: &Option<serde_json::Value>,
    ) -> Option<OutgoingMessage> {
        let reply_to = position.reply_to.clone()?;
        let finished = SagaFinished {
            saga_id: Some(position.saga),
            saga_type: position.saga_type.clone(),
            start_key: position.start_key.clone(),
            status: status.as_str().to_owned(),
            output: output.clone(),
            error: error.clone(),
        };
        Some(finished_message(
            &finished,
            reply_to,
            position.correlation_id.clone(),
        ))
    }

    fn activity_cancel(&self, cancel: &ActivityCancel) -> OutgoingMessage {
        OutgoingMessage {
            exchange: self.topology.activity_cancels_exchange(),
            routing_key: String::new(),
            message_id: format!(
                "{}/{}/{}/cancel",
                cancel.saga_id, cancel.step, cancel.attempt
            ),
            message_type: headers::message_type::ACTIVITY_CANCEL.to_owned(),
            headers: vec![
                (headers::SAGA_ID.to_owned(), cancel.saga_id.to_string()),
                (headers::STEP.to_owned(), cancel.step.to_string()),
                (headers::ATTEMPT.to_owned(), cancel.attempt.to_string()),
            ],
            body: serde_json::to_vec(cancel).expect("an ActivityCancel serializes"),
            ..Default::default()
        }
    }

    /// The outbox message of `command`, its body encoded by the payload codec.
    fn activity_command(&self, command: &ActivityCommand) -> Result<OutgoingMessage, ProcessError> {
        let ActivityCommand {
            saga_id,
            step,
            attempt,
            ..
        } = command;
        let body = serde_json::to_value(command).expect("an ActivityCommand serializes");
        let body = self
            .codec
            .encode(body)
            .map_err(|e| ProcessError::Codec(e.to_string()))?;
        let body = serde_json::to_vec(&body).expect("a JSON value serializes");
        Ok(OutgoingMessage {
            exchange: String::new(),
            routing_key: self.topology.activity_queue(&command.activity),
            message_id: format!("{saga_id}/{step}/{attempt}"),
            message_type: headers::message_type::ACTIVITY_COMMAND.to_owned(),
            headers: [
                (headers::SAGA_ID.to_owned(), saga_id.to_string()),
                (headers::STEP.to_owned(), step.to_string()),
                (headers::ATTEMPT.to_owned(), attempt.to_string()),
                (
                    headers::IDEMPOTENCY_KEY.to_owned(),
                    command.idempotency_key.to_string(),
                ),
            ]
            .into_iter()
            // The activation's span: the outbox relay's publish span continues it.
            .chain(sagaflow_process::trace_headers(&tracing::Span::current()))
            .collect(),
            body,
            ..Default::default()
        })
    }
}

/// The `SagaFinished` message `finished`, for `reply_to`.
pub(crate) fn finished_message(
    finished: &SagaFinished,
    reply_to: String,
    correlation_id: Option<String>,
) -> OutgoingMessage {
    OutgoingMessage {
        exchange: String::new(),
        routing_key: reply_to,
        message_id: uuid::Uuid::new_v4().to_string(),
        message_type: headers::message_type::SAGA_FINISHED.to_owned(),
        body: serde_json::to_vec(finished).expect("a SagaFinished serializes"),
        correlation_id,
        ..Default::default()
    }
}

/// The saga's status after an activation that ended as `end`, with its output or error.
fn outcome(
    end: Option<&SagaEnd>,
) -> (
    SagaStatus,
    Option<serde_json::Value>,
    Option<serde_json::Value>,
) {
    match end {
        None => (SagaStatus::Running, None, None),
        Some(SagaEnd::Completed(output)) => (SagaStatus::Completed, Some(output.clone()), None),
        Some(SagaEnd::Failed(error)) => {
            (SagaStatus::Failed, None, serde_json::to_value(error).ok())
        }
        Some(SagaEnd::Compensated(error)) => (
            SagaStatus::Compensated,
            None,
            serde_json::to_value(error).ok(),
        ),
        Some(SagaEnd::CompensationFailed {
            error,
            step,
            reason,
        }) => (
            SagaStatus::CompensationFailed,
            None,
            Some(json!({
                "message": error.message,
                "details": error.details,
                "compensation": { "step": step, "reason": reason },
            })),
        ),
        Some(SagaEnd::Cancelled { reason }) => (
            SagaStatus::Cancelled,
            None,
            Some(json!({ "reason": reason })),
        ),
        Some(SagaEnd::Terminated { reason }) => (
            SagaStatus::Terminated,
            None,
            Some(json!({ "reason": reason })),
        ),
    }
}

/// How `fact` waits while its saga is stuck.
fn parked(fact: &Fact) -> Option<ParkedFact> {
    match fact {
        Fact::ActivityResult {
            step,
            activity,
            attempt,
            outcome,
        } => Some(ParkedFact::Result {
            step: *step,
            activity: activity.clone(),
            attempt: *attempt,
            outcome: outcome.clone(),
        }),
        Fact::TimerFired { key, attempt } => Some(ParkedFact::Timer {
            key: key.to_string(),
            attempt: *attempt,
        }),
        Fact::Resumed
        | Fact::Signal { .. }
        | Fact::Cancel { .. }
        | Fact::Terminate { .. }
        | Fact::RetryCompensation => None,
    }
}

/// The fact a parked one was; `None` for a timer key this version does not know.
fn parked_fact(parked: ParkedFact) -> Option<Fact> {
    Some(match parked {
        ParkedFact::Result {
            step,
            activity,
            attempt,
            outcome,
        } => Fact::ActivityResult {
            step,
            activity,
            attempt,
            outcome,
        },
        ParkedFact::Timer { key, attempt } => Fact::TimerFired {
            key: key.parse().ok()?,
            attempt,
        },
    })
}

/// The kind of `fact`, as a span attribute.
/// The `timer.fired` span of a timer's fact: which timer (`timer.kind`: `sleep`, `retry`,
/// `start_to_close`, `heartbeat`, `schedule_to_close`, `resume`), of which step and attempt
/// (the attempt it was armed for: the failed one for a retry, which sends `next_attempt`).
fn timer_span(saga_id: SagaId, saga_type: &str, fact: &Fact) -> Option<tracing::Span> {
    let (kind, key, attempt) = match fact {
        Fact::TimerFired { key, attempt } => {
            let kind = match key {
                TimerKey::Sleep(_) => "sleep",
                TimerKey::Retry(_) => "retry",
                TimerKey::StartToClose(_) => "start_to_close",
                TimerKey::Heartbeat(_) => "heartbeat",
                TimerKey::ScheduleToClose(_) => "schedule_to_close",
                TimerKey::Resume => "resume",
            };
            (kind, *key, Some(*attempt))
        }
        Fact::Resumed => ("resume", TimerKey::Resume, None),
        _ => return None,
    };
    let span = tracing::info_span!(
        parent: None,
        "timer.fired",
        %saga_id,
        saga_type,
        timer.kind = kind,
        timer.key = %key,
        step = tracing::field::Empty,
        attempt = tracing::field::Empty,
        next_attempt = tracing::field::Empty,
    );
    if let Some(step) = key.step() {
        span.record("step", step.0);
    }
    if let Some(attempt) = attempt.filter(|a| *a > 0) {
        span.record("attempt", attempt);
        if matches!(key, TimerKey::Retry(_)) {
            span.record("next_attempt", attempt + 1);
        }
    }
    Some(span)
}

fn fact_kind(fact: &Fact) -> &'static str {
    match fact {
        Fact::ActivityResult { .. } => "activity_result",
        Fact::TimerFired { .. } => "timer_fired",
        Fact::Resumed => "resumed",
        Fact::Signal { .. } => "signal",
        Fact::Cancel { .. } => "cancel",
        Fact::Terminate { .. } => "terminate",
        Fact::RetryCompensation => "retry_compensation",
    }
}

/// What the timer effects of an activation come to, applied in their order: the steps whose
/// timers are disarmed at once (a step disarmed and then armed again: the activation's write
/// would delete the new timer too), and the net changes that write makes (`store::TimerChanges`).
/// A saga that `ended` keeps no timer.
fn timer_changes(effects: &[Effect], ended: bool) -> (Vec<StepSeq>, store::TimerChanges) {
    let mut disarm_first = Vec::new();
    let mut changes = store::TimerChanges::default();
    for (index, effect) in effects.iter().enumerate() {
        match effect {
            Effect::ArmTimer {
                key,
                attempt,
                fire_at,
                period_ms,
            } => {
                let key = key.to_string();
                changes.arm.retain(|armed| armed.key != key);
                changes.arm.push(store::TimerArm {
                    key,
                    attempt: *attempt,
                    fire_at: *fire_at,
                    period_ms: *period_ms,
                });
            }
            Effect::CancelStepTimers { step } => {
                let of_step = |key: &str| {
                    key.parse::<TimerKey>()
                        .is_ok_and(|key| key.step() == Some(*step))
                };
                changes.arm.retain(|armed| !of_step(&armed.key));
                let armed_again = effects[index..].iter().any(|later| {
                    matches!(later, Effect::ArmTimer { key, .. } if key.step() == Some(*step))
                });
                match armed_again {
                    true => disarm_first.push(*step),
                    false => changes.disarm_steps.push(*step),
                }
            }
            Effect::SendActivityCommand { .. } | Effect::CancelActivity { .. } => {}
        }
    }
    if ended {
        changes.arm.clear();
        changes.disarm_all = true;
    }
    (disarm_first, changes)
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use sagaflow_contracts::{StepSeq, TimerSeq};
    use sagaflow_engine::{Effect, TimerKey};

    use super::timer_changes;

    fn arm(key: TimerKey, second: u32) -> Effect {
        Effect::ArmTimer {
            key,
            attempt: 1,
            fire_at: Utc.timestamp_opt(i64::from(second), 0).unwrap(),
            period_ms: None,
        }
    }

    fn disarm(step: u32) -> Effect {
        Effect::CancelStepTimers {
            step: StepSeq(step),
        }
    }

    fn keys(effects: &[Effect], ended: bool) -> (Vec<u32>, Vec<String>, Vec<u32>, bool) {
        let (first, changes) = timer_changes(effects, ended);
        (
            first.iter().map(|s| s.0).collect(),
            changes.arm.iter().map(|t| t.key.clone()).collect(),
            changes.disarm_steps.iter().map(|s| s.0).collect(),
            changes.disarm_all,
        )
    }

    #[test]
    fn a_step_resolved_and_the_next_one_timed_go_in_the_one_write() {
        let effects = [disarm(1), arm(TimerKey::StartToClose(StepSeq(2)), 30)];
        let expected = (
            vec![],
            vec!["activity/2/start-to-close".into()],
            vec![1],
            false,
        );
        assert_eq!(keys(&effects, false), expected);
    }

    #[test]
    fn a_step_disarmed_then_armed_again_is_disarmed_first() {
        let effects = [disarm(3), arm(TimerKey::Retry(StepSeq(3)), 5)];
        let expected = (vec![3], vec!["activity/3/retry".into()], vec![], false);
        assert_eq!(keys(&effects, false), expected);
    }

    #[test]
    fn a_timer_armed_then_disarmed_in_one_activation_is_never_written() {
        let effects = [
            arm(TimerKey::StartToClose(StepSeq(4)), 30),
            arm(TimerKey::Sleep(TimerSeq(1)), 60),
            disarm(4),
        ];
        let expected = (vec![], vec!["sleep/1".into()], vec![4], false);
        assert_eq!(keys(&effects, false), expected);
    }

    #[test]
    fn a_key_armed_twice_is_written_once_with_the_last_time() {
        let effects = [
            arm(TimerKey::Sleep(TimerSeq(1)), 60),
            arm(TimerKey::Sleep(TimerSeq(1)), 90),
        ];
        let (_, changes) = timer_changes(&effects, false);
        assert_eq!(changes.arm.len(), 1);
        assert_eq!(changes.arm[0].fire_at.timestamp(), 90);
    }

    #[test]
    fn a_saga_that_ended_keeps_no_timer() {
        let effects = [arm(TimerKey::Sleep(TimerSeq(1)), 60), disarm(2)];
        assert_eq!(keys(&effects, true), (vec![], vec![], vec![2], true));
    }
}
