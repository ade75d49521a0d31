//! Sagas the end-to-end tests run besides the demo's, registered by the `test-orchestrator`
//! binary.

use std::time::Duration;

use sagaflow_contracts::payments::{
    Charge, PaymentRequest, PaymentValidated, Receipt, ReceiptRequest, CHARGE_CUSTOMER,
    SEND_RECEIPT, VALIDATE_PAYMENT_INFO,
};
use sagaflow_orchestrator::{ActivityOptions, SagaContext, SagaError, SagaRegistry};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `PaymentAfterPause`: validates, sleeps on a durable timer, then charges and sends the
/// receipt.
pub const PAYMENT_AFTER_PAUSE: &str = "PaymentAfterPause";
/// `OneStep`: one activity with the retry policy and timeouts its input gives.
pub const ONE_STEP: &str = "OneStep";
/// `Evolving`: the demo payment, with a bug after validation when built with `buggy`.
pub const EVOLVING: &str = "Evolving";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PaymentAfterPause {
    pub pause_ms: u64,
    pub payment: PaymentRequest,
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

/// Registers the test sagas; `buggy` builds `Evolving` with its bug.
pub fn register(registry: &mut SagaRegistry, buggy: bool) {
    registry
        .register(PAYMENT_AFTER_PAUSE, payment_after_pause)
        .and_then(|r| r.register(ONE_STEP, one_step))
        .and_then(|r| r.register(EVOLVING, move |ctx, order| evolving(ctx, order, buggy)))
        .expect("the test saga names are valid");
}
