//! Payloads of the demo `ProcessPayment` saga and its three activity services
//! (`ValidatePaymentInfo`, `ChargeCustomer`, `SendReceipt`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The saga type name of the demo saga.
pub const PROCESS_PAYMENT: &str = "ProcessPayment";
/// Activity: checks the payment details; fails with `InvalidPayment` when they are wrong.
pub const VALIDATE_PAYMENT_INFO: &str = "ValidatePaymentInfo";
/// Activity: charges the customer once per idempotency key.
pub const CHARGE_CUSTOMER: &str = "ChargeCustomer";
/// Activity: sends the receipt once per idempotency key.
pub const SEND_RECEIPT: &str = "SendReceipt";
/// Activity (the compensation of `ChargeCustomer`): refunds a charge, once per charge.
pub const REFUND_CHARGE: &str = "RefundCharge";

/// Input of `ProcessPayment`, `ValidatePaymentInfo` and `ChargeCustomer`.
///
/// No card number: as in a real payment flow, the client hands the card to a payment vault
/// (the processor's tokenization API) and sends only the vault's token and, for receipts and
/// support, the last four digits. Nothing Sagaflow stores or sends can be charged without the
/// vault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentRequest {
    pub order_id: String,
    pub customer_id: String,
    pub email: String,
    /// Amount in the currency's minor unit (cents).
    pub amount_cents: i64,
    /// ISO 4217 code, e.g. `"EUR"`.
    pub currency: String,
    /// The payment vault's token for the card, e.g. `"tok_4f9a2c7e1b3d5a60"`: `tok_` and 8 to
    /// 64 letters or digits. What the charger charges.
    pub card_token: String,
    /// The card's last four digits, e.g. `"4242"`.
    pub card_last4: String,
}

/// Output of `ValidatePaymentInfo`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentValidated {
    /// The card as receipts show it: its last four digits, e.g. `"**** 4242"`.
    pub masked_card: String,
}

/// Output of `ChargeCustomer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Charge {
    pub charge_id: Uuid,
    pub order_id: String,
    pub amount_cents: i64,
    pub currency: String,
}

/// Input of `SendReceipt`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReceiptRequest {
    pub email: String,
    pub charge: Charge,
}

/// Output of `SendReceipt` and of the whole `ProcessPayment` saga.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Receipt {
    pub receipt_id: Uuid,
    pub charge_id: Uuid,
    pub email: String,
}

/// Input of `RefundCharge`: the charge to give back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RefundRequest {
    pub charge_id: Uuid,
    pub order_id: String,
    pub amount_cents: i64,
    pub currency: String,
}

/// Output of `RefundCharge`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Refund {
    pub refund_id: Uuid,
    pub charge_id: Uuid,
}
