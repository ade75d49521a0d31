//! The web UI in headless Chromium: the list shows a saga that was just started, its page shows
//! the steps appear live as they happen, and a failed saga's page shows its error.

use std::path::PathBuf;
use std::time::Duration;

use sagaflow_contracts::{payments, ActivityError, ActivityOutcome};
use sagaflow_e2e::{payment, Bin, Browser, Deployment};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timeline_follows_a_saga_live_and_shows_why_one_failed() {
    let mut deployment = Deployment::new().await;
    let (_orchestrator, api) = deployment
        .spawn_with_api(
            Bin::Orchestrator,
            None,
            &[(
                "SAGAFLOW_TRACE_URL_TEMPLATE",
                "http://localhost:16686/trace/{trace_id}",
            )],
        )
        .await;
    // The test answers the validation step itself, so it decides when the saga moves on.
    let mut validator = deployment
        .raw_activity(payments::VALIDATE_PAYMENT_INFO)
        .await;
    let _charger = deployment.spawn(Bin::Charger, &[]);
    let _receipts = deployment.spawn(Bin::ReceiptSender, &[]);
    let browser = Browser::start().await;

    browser.goto(&format!("{}/ui", api.base)).await;
    browser
        .wait_for("#status-filters a[data-status='all']", WAIT)
        .await;

    // Started while the list is open: it appears there, running.
    deployment.publish_start(&payment::start("ui-live")).await;
    let command = validator.next(WAIT).await;
    let saga = command.command.saga_id.0;
    browser
        .wait_for_text(&format!("tr[data-saga-id='{saga}']"), "running", WAIT)
        .await;
    browser
        .wait_for_text("#status-filters a[data-status='running'] .count", "1", WAIT)
        .await;

    // Its page shows step 1 waiting; then, without a reload, the next steps and the end.
    browser
        .client
        .find(fantoccini::Locator::Css(&format!(
            "a[href='/ui/sagas/{saga}']"
        )))
        .await
        .expect("the saga links to its page")
        .click()
        .await
        .expect("the link opens");
    browser
        .wait_for_text(".step[data-step='1'] .step-status", "running", WAIT)
        .await;
    browser
        .wait_for_text(".step[data-step='1']", "waiting", WAIT)
        .await;
    let link = browser
        .client
        .find(fantoccini::Locator::Css("#trace-link"))
        .await
        .expect("a trace link")
        .attr("href")
        .await
        .unwrap();
    assert_eq!(
        link.as_deref(),
        Some(format!("http://localhost:16686/trace/{}", saga.simple()).as_str())
    );
    validator
        .reply(
            &command,
            ActivityOutcome::Completed {
                output: serde_json::json!({"masked_card": "************4242"}),
            },
        )
        .await;
    browser
        .wait_for_text(".step[data-step='1'] .step-status", "completed", WAIT)
        .await;
    browser
        .wait_for_text(".step[data-step='3']", "SendReceipt", WAIT)
        .await;
    browser
        .wait_for_text("#saga-status", "completed", WAIT)
        .await;
    browser
        .wait_for_text(".step[data-step='2']", "ChargeCustomer", WAIT)
        .await;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/e2e-screenshots");
    browser.screenshot(&dir.join("saga-completed.png")).await;

    // A saga whose validation fails for good: its page says why.
    deployment
        .publish_start(&payment::start("ui-failing"))
        .await;
    let command = validator.next(WAIT).await;
    let failing = command.command.saga_id.0;
    validator
        .reply(
            &command,
            ActivityOutcome::Failed {
                error: ActivityError::permanent(
                    "InvalidPayment",
                    "the card number fails the Luhn check",
                ),
            },
        )
        .await;
    deployment.wait_for_end("ui-failing", WAIT).await;
    browser
        .goto(&format!("{}/ui?status=failed", api.base))
        .await;
    browser
        .wait_for_text(&format!("tr[data-saga-id='{failing}']"), "Luhn", WAIT)
        .await;
    browser
        .goto(&format!("{}/ui/sagas/{failing}", api.base))
        .await;
    let error = browser
        .wait_for_text("#saga-error", "the card number fails the Luhn check", WAIT)
        .await;
    assert!(error.starts_with("Failed:"), "{error}");
    browser
        .wait_for_text(".step[data-step='1'] .step-status", "failed", WAIT)
        .await;
    browser.screenshot(&dir.join("saga-failed.png")).await;
    browser.goto(&format!("{}/ui", api.base)).await;
    browser
        .wait_for_text("#status-filters a[data-status='failed'] .count", "1", WAIT)
        .await;
    browser.screenshot(&dir.join("saga-list.png")).await;
    browser.close().await;
}
