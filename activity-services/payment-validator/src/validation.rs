//! The rules a payment must pass before anyone is charged.

use sagaflow_sdk::contracts::payments::{PaymentRequest, PaymentValidated};
use sagaflow_sdk::ActivityError;

/// Letters and digits after `tok_` in a vault token.
const TOKEN_CHARS: std::ops::RangeInclusive<usize> = 8..=64;
/// The demo vault's tokens of cards that are declined (blocked, reported stolen, ...).
const DECLINED_PREFIX: &str = "tok_declined";

/// `request` checked: a positive amount, an ISO 4217-shaped currency, a card given as a payment
/// vault token (`tok_` and 8 to 64 letters or digits) with its last four digits, and an email
/// address. Fails permanently with kind `InvalidPayment`, listing every problem, or with kind
/// `CardDeclined` for a card the (demo) vault declines: tokens starting `tok_declined`.
pub fn validate_payment(request: &PaymentRequest) -> Result<PaymentValidated, ActivityError> {
    let mut problems = Vec::new();
    if request.amount_cents <= 0 {
        problems.push(format!(
            "amount_cents must be positive, got {}",
            request.amount_cents
        ));
    }
    if !is_currency_code(&request.currency) {
        problems.push(format!(
            "currency must be 3 uppercase letters (ISO 4217), got {:?}",
            request.currency
        ));
    }
    if !is_vault_token(&request.card_token) {
        // The token is not quoted: logs and histories need not carry it.
        problems.push(
            "card_token must be a payment vault token: tok_ and 8 to 64 letters or digits"
                .to_owned(),
        );
    }
    if !(request.card_last4.len() == 4 && request.card_last4.bytes().all(|b| b.is_ascii_digit())) {
        problems.push(format!(
            "card_last4 must be 4 digits, got {:?}",
            request.card_last4
        ));
    }
    if !request.email.contains('@') {
        problems.push(format!("email must contain '@', got {:?}", request.email));
    }
    if !problems.is_empty() {
        return Err(ActivityError::permanent(
            "InvalidPayment",
            problems.join("; "),
        ));
    }
    if request.card_token.starts_with(DECLINED_PREFIX) {
        return Err(ActivityError::permanent(
            "CardDeclined",
            format!("the card ending {} is declined", request.card_last4),
        ));
    }
    Ok(PaymentValidated {
        masked_card: format!("**** {}", request.card_last4),
    })
}

fn is_currency_code(currency: &str) -> bool {
    currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase())
}

fn is_vault_token(token: &str) -> bool {
    token.strip_prefix("tok_").is_some_and(|rest| {
        TOKEN_CHARS.contains(&rest.len()) && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> PaymentRequest {
        PaymentRequest {
            order_id: "order-1".to_owned(),
            customer_id: "customer-1".to_owned(),
            email: "ada@example.com".to_owned(),
            amount_cents: 1999,
            currency: "EUR".to_owned(),
            card_token: "tok_4f9a2c7e1b3d5a60".to_owned(),
            card_last4: "4242".to_owned(),
        }
    }

    fn problems(request: &PaymentRequest) -> String {
        let error = validate_payment(request).unwrap_err();
        assert_eq!(error.kind, "InvalidPayment");
        assert!(!error.retryable, "an invalid payment never becomes valid");
        error.message
    }

    #[test]
    fn a_valid_payment_passes_with_only_the_last_four_digits_shown() {
        let validated = validate_payment(&request()).unwrap();
        assert_eq!(validated.masked_card, "**** 4242");
    }

    #[test]
    fn the_amount_must_be_positive() {
        for amount_cents in [0, -5] {
            let message = problems(&PaymentRequest {
                amount_cents,
                ..request()
            });
            assert!(message.contains("amount_cents"), "{message}");
        }
    }

    #[test]
    fn the_currency_must_be_three_uppercase_letters() {
        for currency in ["eur", "EU", "EURO", "E1R", "ÉUR", ""] {
            let message = problems(&PaymentRequest {
                currency: currency.to_owned(),
                ..request()
            });
            assert!(message.contains("currency"), "{currency}: {message}");
        }
    }

    #[test]
    fn the_card_is_a_vault_token_never_a_card_number() {
        let long = format!("tok_{}", "a".repeat(65));
        for card_token in [
            "4242 4242 4242 4242",
            "4242424242424242",
            "tok_",
            "tok_short",
            "tok_has-dash00",
            "TOK_4f9a2c7e1b3d",
            long.as_str(),
        ] {
            let message = problems(&PaymentRequest {
                card_token: card_token.to_owned(),
                ..request()
            });
            assert!(message.contains("card_token"), "{card_token}: {message}");
            if card_token.len() > 8 {
                assert!(!message.contains(card_token), "the token is not echoed");
            }
        }
        for card_last4 in ["424", "42424", "42a2", ""] {
            let message = problems(&PaymentRequest {
                card_last4: card_last4.to_owned(),
                ..request()
            });
            assert!(message.contains("card_last4"), "{card_last4}: {message}");
        }
    }

    #[test]
    fn a_card_the_vault_declines_fails_permanently() {
        let error = validate_payment(&PaymentRequest {
            card_token: "tok_declined0000".to_owned(),
            ..request()
        })
        .unwrap_err();
        assert_eq!(error.kind, "CardDeclined");
        assert!(!error.retryable);
        assert!(error.message.contains("4242"), "{}", error.message);
    }

    #[test]
    fn the_email_must_contain_an_at_sign() {
        let message = problems(&PaymentRequest {
            email: "ada.example.com".to_owned(),
            ..request()
        });
        assert!(message.contains("email"), "{message}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let message = problems(&PaymentRequest {
            amount_cents: 0,
            currency: "eur".to_owned(),
            ..request()
        });
        assert!(
            message.contains("amount_cents") && message.contains("currency"),
            "{message}"
        );
    }
}
