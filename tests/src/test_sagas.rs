//! Sagas the end-to-end tests run besides the demo's, registered by the `test-orchestrator`
//! binary.

use std::time::Duration;

use sagaflow_contracts::payments::{
    Charge, PaymentRequest, PaymentValidated, Receipt, ReceiptRequest, RefundRequest,
    CHARGE_CUSTOMER, REFUND_CHARGE, SEND_RECEIPT, VALIDATE_PAYMENT_INFO,
};
use sagaflow_orchestrator::{ActivityOptions, Either, SagaContext, SagaError, SagaRegistry};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `PaymentAfterPause`: validates, sleeps on a durable timer, then charges and sends the
/// receipt.
pub const PAYMENT_AFTER_PAUSE: &str = "PaymentAfterPause";
/// `OneStep`: one activity with the retry policy and timeouts its input gives.
pub const ONE_STEP: &str = "OneStep";
/// `Evolving`: the demo payment, with a bug after validation when built with `buggy`.
pub const EVOLVING: &str = "Evolving";
/// `CollectApprovals`: validates the payment, then waits for `count` "approved" signals, each
/// for at most `timeout_ms`.
pub const COLLECT_APPROVALS: &str = "CollectApprovals";
/// `Versioned`: the demo payment in three builds (see [`Version`]).
pub const VERSIONED: &str = "Versioned";
/// `Steps`: validates a payment `steps` times, one step after the other (the bench's long saga).
pub const STEPS: &str = "Steps";
/// `Sleep`: sleeps on a durable timer for its input's milliseconds (the bench's waiting saga).
pub const SLEEP: &str = "Sleep";

/// `ChargeThenOversized`: charges (refunded if the saga fails), then sends the receipt with
/// `padding_bytes` of padding in its input: a command too large to send when the orchestrator's
/// `SAGAFLOW_MAX_COMMAND_BYTES` is lower.
pub const CHARGE_THEN_OVERSIZED: &str = "ChargeThenOversized";

/// Which build of `Versioned` a test orchestrator runs (`TEST_SAGA_VERSION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Validate, charge, send the receipt.
    V1,
    /// Validates again after the charge, behind `ctx.patched("revalidate")`.
    V2Patched,
    /// Validates again after the charge, unguarded: sagas of v1 diverge.
    V2Unpatched,
}

impl Version {
    /// From `TEST_SAGA_VERSION` (`1`, `2`, `2-unpatched`); v1 when unset.
    pub fn from_env() -> Version {
        match std::env::var("TEST_SAGA_VERSION").as_deref() {
            Ok("2") => Version::V2Patched,
            Ok("2-unpatched") => Version::V2Unpatched,
            _ => Version::V1,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CollectApprovals {
    pub payment: PaymentRequest,
    pub count: u32,
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PaymentAfterPause {
    pub pause_ms: u64,
    pub payment: PaymentRequest,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Steps {
    pub steps: u32,
    pub payment: PaymentRequest,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChargeThenOversized {
    pub payment: PaymentRequest,
    pub padding_bytes: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OneStep {
    pub activity: String,
    pub input: Value,
    pub options: ActivityOptions,
}

async fn payment_after_pause(
    ctx: SagaContext,
    input: PaymentAfterPause,
) -> Result<Receipt, SagaError> {
    let order = input.payment;
    let _: PaymentValidated = ctx.activity(VALIDATE_PAYMENT_INFO, &order).await?;
    ctx.sleep(Duration::from_millis(input.pause_ms)).await?;
    let charge: Charge = ctx.activity(CHARGE_CUSTOMER, &order).await?;
    let receipt = ReceiptRequest {
        email: order.email,
        charge,
    };
    Ok(ctx.activity(SEND_RECEIPT, &receipt).await?)
}

async fn steps(ctx: SagaContext, input: Steps) -> Result<u32, SagaError> {
    for _ in 0..input.steps {
        let _: PaymentValidated = ctx.activity(VALIDATE_PAYMENT_INFO, &input.payment).await?;
    }
    Ok(input.steps)
}

async fn sleep(ctx: SagaContext, pause_ms: u64) -> Result<(), SagaError> {
    Ok(ctx.sleep(Duration::from_millis(pause_ms)).await?)
}

async fn charge_then_oversized(
    ctx: SagaContext,
    input: ChargeThenOversized,
) -> Result<Receipt, SagaError> {
    let order = input.payment;
    let charge: Charge = ctx
        .activity(CHARGE_CUSTOMER, &order)
        .compensate_with_output(REFUND_CHARGE, |charge: Charge| RefundRequest {
            charge_id: charge.charge_id,
            order_id: charge.order_id,
            amount_cents: charge.amount_cents,
            currency: charge.currency,
        })
        .await?;
    let receipt = serde_json::json!({
        "email": order.email,
        "charge": charge,
        "padding": "x".repeat(input.padding_bytes),
    });
    Ok(ctx.activity(SEND_RECEIPT, &receipt).await?)
}

async fn one_step(ctx: SagaContext, input: OneStep) -> Result<Value, SagaError> {
    Ok(ctx
        .activity::<Value, _>(&input.activity, &input.input)
        .options(input.options)
        .await?)
}

async fn evolving(
    ctx: SagaContext,
    order: PaymentRequest,
    buggy: bool,
) -> Result<Receipt, SagaError> {
    let _: PaymentValidated = ctx.activity(VALIDATE_PAYMENT_INFO, &order).await?;
    if buggy {
        panic!("a bug after validation");
    }
    let charge: Charge = ctx.activity(CHARGE_CUSTOMER, &order).await?;
    let receipt = ReceiptRequest {
        email: order.email,
        charge,
    };
    Ok(ctx.activity(SEND_RECEIPT, &receipt).await?)
}

async fn collect_approvals(
    ctx: SagaContext,
    input: CollectApprovals,
) -> Result<Vec<String>, SagaError> {
    let _: PaymentValidated = ctx.activity(VALIDATE_PAYMENT_INFO, &input.payment).await?;
    let mut approvals = Vec::new();
    for _ in 0..input.count {
        let deadline = ctx.sleep(Duration::from_millis(input.timeout_ms));
        match ctx.select(ctx.signal::<String>("approved"), deadline).await {
            Either::Left(approver) => approvals.push(approver?),
            Either::Right(slept) => {
                slept?;
                approvals.push("no approval in time".to_owned());
            }
        }
    }
    Ok(approvals)
}

async fn versioned(
    ctx: SagaContext,
    order: PaymentRequest,
    version: Version,
) -> Result<Receipt, SagaError> {
    let _: PaymentValidated = ctx.activity(VALIDATE_PAYMENT_INFO, &order).await?;
    let charge: Charge = ctx.activity(CHARGE_CUSTOMER, &order).await?;
    let revalidate = match version {
        Version::V1 => false,
        Version::V2Patched => ctx.patched("revalidate"),
        Version::V2Unpatched => true,
    };
    if revalidate {
        let _: PaymentValidated = ctx.activity(VALIDATE_PAYMENT_INFO, &order).await?;
    }
    let receipt = ReceiptRequest {
        email: order.email,
        charge,
    };
    Ok(ctx.activity(SEND_RECEIPT, &receipt).await?)
}

/// Registers the test sagas; `buggy` builds `Evolving` with its bug, `version` picks the build
/// of `Versioned`.
pub fn register(registry: &mut SagaRegistry, buggy: bool, version: Version) {
    registry
        .register(PAYMENT_AFTER_PAUSE, payment_after_pause)
        .and_then(|r| r.register(ONE_STEP, one_step))
        .and_then(|r| r.register(CHARGE_THEN_OVERSIZED, charge_then_oversized))
        .and_then(|r| r.register(EVOLVING, move |ctx, order| evolving(ctx, order, buggy)))
        .and_then(|r| r.register(COLLECT_APPROVALS, collect_approvals))
        .and_then(|r| r.register(VERSIONED, move |ctx, order| versioned(ctx, order, version)))
        .and_then(|r| r.register(STEPS, steps))
        .and_then(|r| r.register(SLEEP, sleep))
        .expect("the test saga names are valid");
}
