//! The CLI's visibility commands: `watch` follows a saga until it ends, `dead-letters` lists
//! with reasons and re-publishes, `--json` on list, watch and dead-letters.

use std::time::Duration;

use sagaflow_contracts::{payments, ActivityOutcome};
use sagaflow_e2e::{payment, Bin, Deployment};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_follows_a_saga_to_its_end_and_dead_letters_are_listed_and_republished() {
    let mut deployment = Deployment::new().await;
    let _orchestrator = deployment.spawn(Bin::Orchestrator, &[]);
    let mut validator = deployment
        .raw_activity(payments::VALIDATE_PAYMENT_INFO)
        .await;
    let _charger = deployment.spawn(Bin::Charger, &[]);
    let _receipts = deployment.spawn(Bin::ReceiptSender, &[]);
    deployment.publish_start(&payment::start("cli-watch")).await;
    let command = validator.next(WAIT).await;
    let saga = command.command.saga_id.0.to_string();

    // watch starts while the saga waits on step 1, and ends when it completes.
    let watch_args = ["watch", &saga, "--json", "--timeout-secs", "50"];
    let (watched, ()) = tokio::join!(deployment.run_cli(&watch_args), async {
        validator
            .reply(
                &command,
                ActivityOutcome::Completed {
                    output: serde_json::json!({"masked_card": "************4242"}),
                },
            )
            .await
    });
    let stdout = String::from_utf8_lossy(&watched.stdout);
    assert!(
        watched.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&watched.stderr)
    );
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    let kinds: Vec<&str> = lines[..lines.len() - 1]
        .iter()
        .map(|e| e["event"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"SagaStarted"));
    assert_eq!(kinds.last(), Some(&"SagaCompleted"));
    assert_eq!(kinds.len(), 8, "{kinds:?}");
    assert_eq!(lines.last().unwrap()["status"], "completed");

    let listed = deployment.run_cli(&["list", "--json"]).await;
    let listed: Value = serde_json::from_slice(&listed.stdout).expect("list --json is JSON");
    assert_eq!(listed[0]["id"], saga.as_str());

    // A message that is not JSON is dead-lettered and recorded with its reason.
    deployment
        .publish_to_start_queue(b"nope".to_vec(), "cli-dead-1")
        .await;
    sagaflow_e2e::wait_until("the dead letter is recorded", WAIT, || async {
        (deployment.count("SELECT count(*) FROM dead_letters").await == 1).then_some(())
    })
    .await;
    let text = deployment.run_cli(&["dead-letters"]).await;
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("not a StartSaga message"), "{text}");
    let out = deployment.run_cli(&["dead-letters", "--json"]).await;
    let letters: Value = serde_json::from_slice(&out.stdout).expect("dead-letters --json");
    assert_eq!(letters[0]["message_id"], "cli-dead-1");
    assert_eq!(letters[0]["body"], "nope");
    let id = letters[0]["id"].as_i64().unwrap().to_string();
    let out = deployment
        .run_cli(&["dead-letters", "--republish", &id])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Back on the start queue, it is dead-lettered (and recorded) once more.
    sagaflow_e2e::wait_until("the re-published message comes back", WAIT, || async {
        (deployment.count("SELECT count(*) FROM dead_letters").await == 2).then_some(())
    })
    .await;
    let again = deployment
        .run_cli(&["dead-letters", "--republish", &id])
        .await;
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("was re-published at"));
}
