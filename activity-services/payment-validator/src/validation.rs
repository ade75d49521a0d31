//! The rules a payment must pass before anyone is charged.

use sagaflow_sdk::contracts::payments::{PaymentRequest, PaymentValidated};
use sagaflow_sdk::ActivityError;

/// Card numbers (PANs) have 8 to 19 digits (ISO/IEC 7812).
const CARD_DIGITS: std::ops::RangeInclusive<usize> = 8..=19;

/// `request` checked: a positive amount, an ISO 4217-shaped currency, a card number that passes
/// the Luhn check and an email address. Fails permanently with kind `InvalidPayment`, listing
/// every problem.
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
    let digits = card_digits(&request.card_number);
    match &digits {
        None => problems.push("card_number may contain only digits and spaces".to_owned()),
        Some(digits) if !CARD_DIGITS.contains(&digits.len()) => problems.push(format!(
            "card_number must have 8 to 19 digits, got {}",
            digits.len()
        )),
        Some(digits) if !passes_luhn(digits) => {
            problems.push("card_number fails the Luhn check".to_owned())
        }
        Some(_) => {}
    }
    if !request.email.contains('@') {
        problems.push(format!("email must contain '@', got {:?}", request.email));
    }
    match digits {
        Some(digits) if problems.is_empty() => Ok(PaymentValidated {
            masked_card: mask(&digits),
        }),
        _ => Err(ActivityError::permanent(
            "InvalidPayment",
            problems.join("; "),
        )),
    }
}

fn is_currency_code(currency: &str) -> bool {
    currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase())
}

/// The card number's digits, or `None` if it holds anything but digits and spaces.
fn card_digits(card_number: &str) -> Option<Vec<u8>> {
    card_number
        .chars()
        .filter(|c| *c != ' ')
        .map(|c| c.to_digit(10).map(|d| d as u8))
        .collect()
}

/// The Luhn checksum: double every second digit from the right, sum the digits, divisible by 10.
fn passes_luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            match (i % 2 == 1, d * 2) {
                (false, _) => d,
                (true, doubled) if doubled > 9 => doubled - 9,
                (true, doubled) => doubled,
            }
        })
        .sum();
    sum % 10 == 0
}

/// All but the last four digits replaced by `*`.
fn mask(digits: &[u8]) -> String {
    let visible = digits.len().saturating_sub(4);
    digits
        .iter()
        .enumerate()
        .map(|(i, d)| {
            if i < visible {
                '*'
            } else {
                char::from(b'0' + d)
            }
        })
        .collect()
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
            card_number: "4242 4242 4242 4242".to_owned(),
        }
    }

    fn problems(request: &PaymentRequest) -> String {
        let error = validate_payment(request).unwrap_err();
        assert_eq!(error.kind, "InvalidPayment");
        assert!(!error.retryable, "an invalid payment never becomes valid");
        error.message
    }

    #[test]
    fn a_valid_payment_passes_with_the_card_masked() {
        let validated = validate_payment(&request()).unwrap();
        assert_eq!(validated.masked_card, "************4242");
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
    fn the_card_number_must_pass_luhn() {
        for card_number in ["4242 4242 4242 4241", "1234567812345678"] {
            let message = problems(&PaymentRequest {
                card_number: card_number.to_owned(),
                ..request()
            });
            assert!(message.contains("Luhn"), "{card_number}: {message}");
        }
        for valid in ["79927398713", "4111111111111111", "5555 5555 5555 4444"] {
            assert!(
                validate_payment(&PaymentRequest {
                    card_number: valid.to_owned(),
                    ..request()
                })
                .is_ok(),
                "{valid}"
            );
        }
    }

    #[test]
    fn the_card_number_holds_only_digits_and_spaces_of_a_real_length() {
        for card_number in ["4242-4242-4242-4242", "4242 4242 4242 424x", "", "0", "  "] {
            let message = problems(&PaymentRequest {
                card_number: card_number.to_owned(),
                ..request()
            });
            assert!(
                message.contains("card_number"),
                "{card_number:?}: {message}"
            );
        }
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
