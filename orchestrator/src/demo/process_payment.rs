use sagaflow_contracts::payments::{
    Charge, PaymentRequest, PaymentValidated, Receipt, ReceiptRequest, RefundRequest,
    CHARGE_CUSTOMER, REFUND_CHARGE, SEND_RECEIPT, VALIDATE_PAYMENT_INFO,
};

use crate::engine::{SagaContext, SagaError};

/// Validates the payment details, charges the customer, then sends the receipt. If the
/// receipt cannot be sent, the charge is refunded (and the saga ends `compensated`); a
/// declined card fails the saga before anything is charged.
pub async fn process_payment(
    ctx: SagaContext,
    order: PaymentRequest,
) -> Result<Receipt, SagaError> {
    let _validated: PaymentValidated = ctx.activity(VALIDATE_PAYMENT_INFO, &order).await?;
    let charge: Charge = ctx
        .activity(CHARGE_CUSTOMER, &order)
        .compensate_with_output(REFUND_CHARGE, |charge: Charge| RefundRequest {
            charge_id: charge.charge_id,
            order_id: charge.order_id,
            amount_cents: charge.amount_cents,
            currency: charge.currency,
        })
        .await?;
    let receipt = ReceiptRequest {
        email: order.email,
        charge,
    };
    Ok(ctx.activity(SEND_RECEIPT, &receipt).await?)
}
