use sagaflow_contracts::payments::{
    Charge, PaymentRequest, PaymentValidated, Receipt, ReceiptRequest, CHARGE_CUSTOMER,
    SEND_RECEIPT, VALIDATE_PAYMENT_INFO,
};

use crate::engine::{SagaContext, SagaError};

/// Validates the payment details, charges the customer, then sends the receipt.
pub async fn process_payment(
    ctx: SagaContext,
    order: PaymentRequest,
) -> Result<Receipt, SagaError> {
    let _validated: PaymentValidated = ctx.activity(VALIDATE_PAYMENT_INFO, &order).await?;
    let charge: Charge = ctx.activity(CHARGE_CUSTOMER, &order).await?;
    let receipt = ReceiptRequest {
        email: order.email,
        charge,
    };
    Ok(ctx.activity(SEND_RECEIPT, &receipt).await?)
}
