//! Drives a saga run the way the orchestrator does, without a database or a broker: facts in,
//! activations out, the history kept in memory.
#![allow(dead_code)]

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use sagaflow_contracts::payments::{
    Charge, PaymentRequest, PaymentValidated, Receipt, ReceiptRequest,
};
use sagaflow_contracts::{
    ActivityError, ActivityOptions, ActivityOutcome, HistoryEvent, RetryPolicy, SagaEvent, SagaId,
    StepSeq,
};
use sagaflow_engine::{
    Activation, Effect, Either, Fact, SagaContext, SagaError, SagaRegistry, SagaRun, TimerKey,
};
use serde_json::{json, Value};

pub const SAGA: SagaId = SagaId(uuid::uuid!("6f1a1c33-5b7e-4c1e-9d8e-2a4b2f9a0c11"));

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 9, 0, 0).unwrap()
}

/// A run and its history, as the orchestrator would keep them.
pub struct Harness {
    pub registry: SagaRegistry,
    pub run: SagaRun,
    pub history: Vec<HistoryEvent>,
    pub now: DateTime<Utc>,
    /// Every activation so far, in order.
    pub activations: Vec<Activation>,
}

impl Harness {
    pub fn start(registry: SagaRegistry, saga_type: &str, input: Value) -> Harness {
        let definition = registry.get(saga_type).expect("registered");
        let (run, activation) = SagaRun::start(
            definition,
            SAGA,
            input,
            Some("key-1".into()),
            t0(),
            defaults(),
        )
        .expect("the input fits");
        let mut harness = Harness {
            registry,
            run,
            history: Vec::new(),
            now: t0(),
            activations: Vec::new(),
        };
        harness.record(activation);
        harness
    }

    fn record(&mut self, activation: Activation) {
        for event in &activation.events {
            self.history.push(HistoryEvent {
                seq: self.history.len() as i64,
                at: self.now,
                event: event.clone(),
            });
        }
        self.activations.push(activation);
    }

    pub fn advance_clock(&mut self, by: Duration) {
        self.now += chrono::Duration::from_std(by).unwrap();
    }

    /// Hands `fact` to the run; returns the activation it recorded, if any.
    pub fn handle(&mut self, fact: Fact) -> Option<Activation> {
        let activation = self
            .run
            .handle(fact, self.now)
            .expect("the fact belongs to the saga")?;
        self.record(activation.clone());
        Some(activation)
    }

    pub fn complete(&mut self, step: u32, attempt: u32, output: Value) -> Option<Activation> {
        let activity = self
            .run
            .activity_of(StepSeq(step))
            .expect("the step exists");
        self.handle(Fact::ActivityResult {
            step: StepSeq(step),
            activity: Some(activity),
            attempt,
            outcome: ActivityOutcome::Completed { output },
        })
    }

    pub fn fail(&mut self, step: u32, attempt: u32, error: ActivityError) -> Option<Activation> {
        let activity = self
            .run
            .activity_of(StepSeq(step))
            .expect("the step exists");
        self.handle(Fact::ActivityResult {
            step: StepSeq(step),
            activity: Some(activity),
            attempt,
            outcome: ActivityOutcome::Failed { error },
        })
    }

    pub fn fire(&mut self, key: TimerKey, attempt: u32) -> Option<Activation> {
        self.handle(Fact::TimerFired { key, attempt })
    }

    /// The (step, activity) of every step the saga scheduled, in order.
    pub fn scheduled(&self) -> Vec<(u32, String)> {
        self.history
            .iter()
            .filter_map(|e| match &e.event {
                SagaEvent::ActivityScheduled { step, activity, .. } => {
                    Some((step.0, activity.clone()))
                }
                _ => None,
            })
            .collect()
    }

    /// The kinds of the recorded events, in order.
    pub fn kinds(&self) -> Vec<&'static str> {
        self.history.iter().map(|e| e.event.kind()).collect()
    }

    pub fn last(&self) -> &SagaEvent {
        &self.history.last().expect("a history").event
    }

    /// Replays the recorded history from scratch with the same registry.
    pub fn replay(&self) -> sagaflow_engine::Replayed {
        SagaRun::replay(&self.registry, SAGA, &self.history, defaults(), self.now)
            .unwrap_or_else(|e| panic!("replay failed: {e}"))
    }
}

/// The defaults the tests' orchestrator is configured with.
pub fn defaults() -> ActivityOptions {
    ActivityOptions {
        retry: RetryPolicy {
            initial_interval_ms: 1_000,
            backoff_coefficient: 2.0,
            maximum_interval_ms: 10_000,
            maximum_attempts: 3,
            non_retryable_kinds: vec!["CardDeclined".into()],
        },
        start_to_close_timeout_ms: Some(30_000),
        ..ActivityOptions::default()
    }
}

/// The commands sent to activity services by an activation: (step, activity, attempt).
pub fn sent(activation: &Activation) -> Vec<(u32, String, u32)> {
    activation
        .effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::SendActivityCommand {
                step,
                activity,
                attempt,
                ..
            } => Some((step.0, activity.clone(), *attempt)),
            _ => None,
        })
        .collect()
}

/// The timers armed by an activation: (key, attempt, fire_at).
pub fn armed(activation: &Activation) -> Vec<(TimerKey, u32, DateTime<Utc>)> {
    activation
        .effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::ArmTimer {
                key,
                attempt,
                fire_at,
                ..
            } => Some((*key, *attempt, *fire_at)),
            _ => None,
        })
        .collect()
}

pub fn order() -> PaymentRequest {
    PaymentRequest {
        order_id: "order-1".into(),
        customer_id: "cust-1".into(),
        email: "ada@example.com".into(),
        amount_cents: 4200,
        currency: "EUR".into(),
        card_token: "tok_4f9a2c7e1b3d5a60".into(),
        card_last4: "4242".into(),
    }
}

pub fn order_json() -> Value {
    serde_json::to_value(order()).unwrap()
}

pub fn charge_json() -> Value {
    json!({ "charge_id": "0b5c8a5e-0a4f-4d43-8d7e-3f6d0e6c9a01", "order_id": "order-1", "amount_cents": 4200, "currency": "EUR" })
}

pub fn receipt_json() -> Value {
    json!({ "receipt_id": "9d1e4b7a-6c2f-4e3a-8b5d-1a2c3d4e5f60", "charge_id": "0b5c8a5e-0a4f-4d43-8d7e-3f6d0e6c9a01", "email": "ada@example.com" })
}

/// The demo saga: validate, charge, send the receipt.
pub async fn process_payment(
    ctx: SagaContext,
    order: PaymentRequest,
) -> Result<Receipt, SagaError> {
    let _: PaymentValidated = ctx.activity("ValidatePaymentInfo", &order).await?;
    let charge: Charge = ctx.activity("ChargeCustomer", &order).await?;
    let receipt = ReceiptRequest {
        email: order.email,
        charge,
    };
    Ok(ctx.activity("SendReceipt", &receipt).await?)
}

/// Like `process_payment`, but waits a day between the charge and the receipt.
pub async fn payment_with_a_pause(
    ctx: SagaContext,
    order: PaymentRequest,
) -> Result<Receipt, SagaError> {
    let _: PaymentValidated = ctx.activity("ValidatePaymentInfo", &order).await?;
    let charge: Charge = ctx.activity("ChargeCustomer", &order).await?;
    ctx.sleep(Duration::from_secs(86_400)).await?;
    let receipt = ReceiptRequest {
        email: order.email,
        charge,
    };
    Ok(ctx.activity("SendReceipt", &receipt).await?)
}

/// Waits for an approval for at most an hour.
pub async fn approval_with_deadline(
    ctx: SagaContext,
    order: PaymentRequest,
) -> Result<String, SagaError> {
    let approval = ctx.activity::<String, _>("Approve", &order);
    match ctx
        .select(approval, ctx.sleep(Duration::from_secs(3_600)))
        .await
    {
        Either::Left(approved) => Ok(approved?),
        Either::Right(slept) => {
            slept?;
            Ok(format!("timed out at {}", ctx.now()))
        }
    }
}

/// The demo saga with its compensation: a charge is refunded if the receipt fails.
pub async fn payment_with_refund(
    ctx: SagaContext,
    order: PaymentRequest,
) -> Result<Receipt, SagaError> {
    let _: PaymentValidated = ctx.activity("ValidatePaymentInfo", &order).await?;
    let charge: Charge = ctx
        .activity("ChargeCustomer", &order)
        .compensate_with_output(
            "RefundCharge",
            |charge: Charge| json!({ "charge_id": charge.charge_id }),
        )
        .await?;
    let receipt = ReceiptRequest {
        email: order.email,
        charge,
    };
    Ok(ctx.activity("SendReceipt", &receipt).await?)
}

/// Reserves three things at once; the first failure fails the trip (the others may still be
/// in flight).
pub async fn book_trip(ctx: SagaContext, trip: String) -> Result<Vec<String>, SagaError> {
    let reserve = |what: &'static str| {
        ctx.activity::<String, _>(&format!("Reserve{what}"), &trip)
            .compensate_with_output(&format!("Cancel{what}"), |id: String| id)
    };
    let (flight, hotel, car) =
        futures::try_join!(reserve("Flight"), reserve("Hotel"), reserve("Car"))?;
    Ok(vec![flight, hotel, car])
}

/// Waits for an "approved" signal for at most a day.
pub async fn awaits_approval(ctx: SagaContext, _: ()) -> Result<String, SagaError> {
    match ctx
        .select(
            ctx.signal::<String>("approved"),
            ctx.sleep(Duration::from_secs(86_400)),
        )
        .await
    {
        Either::Left(approver) => Ok(format!("approved by {}", approver?)),
        Either::Right(slept) => {
            slept?;
            Ok("no approval in time".into())
        }
    }
}

pub fn registry() -> SagaRegistry {
    let mut registry = SagaRegistry::new();
    registry
        .register("ProcessPayment", process_payment)
        .unwrap()
        .register("PaymentWithAPause", payment_with_a_pause)
        .unwrap()
        .register("ApprovalWithDeadline", approval_with_deadline)
        .unwrap()
        .register("PaymentWithRefund", payment_with_refund)
        .unwrap()
        .register("BookTrip", book_trip)
        .unwrap()
        .register("AwaitsApproval", awaits_approval)
        .unwrap();
    registry
}
