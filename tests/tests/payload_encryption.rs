//! With `SAGAFLOW_PAYLOAD_KEY`, the fields named in `SAGAFLOW_SENSITIVE_FIELDS` are encrypted
//! wherever Sagaflow keeps or sends them (saga rows, events, commands, results), and every
//! process with the key sees them in clear text: the saga completes as without a key.

use std::time::Duration;

use sagaflow_contracts::payments::VALIDATE_PAYMENT_INFO;
use sagaflow_e2e::{payment, Bin, Deployment};

const END: Duration = Duration::from_secs(60);
const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const EMAIL: &str = "ada@example.com";
const TOKEN: &str = "tok_4f9a2c7e1b3d5a60";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sensitive_fields_are_never_stored_or_sent_in_clear_text() {
    let mut deployment = Deployment::new().await;
    deployment.set_env("SAGAFLOW_PAYLOAD_KEY", KEY);
    deployment.set_env("SAGAFLOW_SENSITIVE_FIELDS", "card_token,email");
    let _orchestrator = deployment.spawn(Bin::Orchestrator, &[]);
    // The client sends clear text here (a client with the key may encrypt, as the CLI does).
    deployment
        .publish_start(&payment::start("order-secret"))
        .await;

    // The first command, as it waits on its queue before any service runs.
    let command = deployment
        .peek_activity_command(VALIDATE_PAYMENT_INFO, END)
        .await;
    let command = String::from_utf8(command).unwrap();
    for secret in [EMAIL, TOKEN] {
        assert!(
            !command.contains(secret),
            "{secret} in the command: {command}"
        );
    }
    assert!(command.contains("\"$enc\":\"v1:"), "{command}");
    assert!(
        command.contains("order-secret"),
        "other fields stay readable"
    );

    let _services = deployment.spawn_activity_services();
    assert_eq!(
        deployment.wait_for_end("order-secret", END).await,
        "completed"
    );
    let (saga, _) = deployment.saga("order-secret").await.unwrap();
    for secret in [EMAIL, TOKEN] {
        let like = format!("%{secret}%");
        let in_events: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM saga_events WHERE saga_id = $1 AND event::text LIKE $2",
        )
        .bind(saga)
        .bind(&like)
        .fetch_one(&deployment.db)
        .await
        .unwrap();
        assert_eq!(in_events, 0, "{secret} in saga_events");
        let in_saga: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sagas WHERE id = $1
               AND (input::text LIKE $2 OR coalesce(output::text, '') LIKE $2)",
        )
        .bind(saga)
        .bind(&like)
        .fetch_one(&deployment.db)
        .await
        .unwrap();
        assert_eq!(in_saga, 0, "{secret} in sagas");
    }
    // The receipt went to the right address: the receipt-sender decoded it.
    assert_eq!(
        deployment
            .count(&format!(
                "SELECT count(*) FROM receipts WHERE email = '{EMAIL}'"
            ))
            .await,
        1
    );
    // An operator with the key reads the saga in clear text.
    let shown = deployment.run_cli(&["show", &saga.to_string()]).await;
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains(EMAIL), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_without_the_key_fails_the_step_with_a_clear_reason() {
    let mut deployment = Deployment::new().await;
    let _orchestrator = deployment.spawn(
        Bin::Orchestrator,
        &[
            ("SAGAFLOW_PAYLOAD_KEY", KEY),
            ("SAGAFLOW_SENSITIVE_FIELDS", "card_token"),
        ],
    );
    let _validator = deployment.spawn(Bin::PaymentValidator, &[]);
    deployment
        .publish_start(&payment::start("order-no-key"))
        .await;
    assert_eq!(deployment.wait_for_end("order-no-key", END).await, "failed");
    let error = deployment.saga_error("order-no-key").await;
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("SAGAFLOW_PAYLOAD_KEY is not set"),
        "{error}"
    );
}
