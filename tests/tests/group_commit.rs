//! Group commit: messages waiting on a queue are processed in shared transactions, and one that
//! cannot be committed (PostgreSQL refuses its data) costs the others nothing: its batch is
//! rolled back and processed one message at a time, and only that message is dead-lettered.

use std::time::Duration;

use sagaflow_e2e::{payment, Bin, Deployment};

const END: Duration = Duration::from_secs(120);
const SAGAS: usize = 40;

fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_starts_share_transactions_and_a_refused_one_only_splits_its_batch() {
    let mut deployment = Deployment::new().await;
    // Published before any orchestrator runs, so that they wait on the queue together.
    let keys: Vec<String> = (0..SAGAS).map(|i| format!("batched-{i:02}")).collect();
    for (i, key) in keys.iter().enumerate() {
        if i == SAGAS / 2 {
            // PostgreSQL refuses a NUL character in JSON (SQLSTATE 22P05).
            let mut refused = payment::request("batched-refused");
            refused.customer_id = "nul\u{0}byte".into();
            deployment
                .publish_start(&payment::start_with(refused))
                .await;
        }
        deployment.publish_start(&payment::start(key)).await;
    }
    // One batch at a time, of up to 16: the starts that arrive while one commits form the next.
    let batching = [("SAGAFLOW_PREFETCH", "16"), ("SAGAFLOW_MAX_BATCH", "16")];
    let (_orchestrator, api) = deployment
        .spawn_with_api(Bin::Orchestrator, None, &batching)
        .await;
    let _services = deployment.spawn_activity_services();

    let letters = deployment.take_dead_letters(1, END).await;
    let reason = letters[0].reason.as_deref().unwrap_or_default();
    assert!(
        reason.contains("PostgreSQL refuses its data (SQLSTATE 22P05)"),
        "{reason}"
    );
    let body: serde_json::Value = serde_json::from_slice(&letters[0].body).unwrap();
    assert_eq!(body["start_key"], "batched-refused");
    assert_eq!(
        deployment.saga("batched-refused").await,
        None,
        "nothing of the refused start was committed"
    );
    deployment.assert_payments_completed_once(&keys, END).await;

    let metrics = api.get("/metrics").await.text;
    let batches = sample(&metrics, "sagaflow_batches_total");
    let batched = sample(&metrics, "sagaflow_batched_messages_total");
    assert!(
        batches >= 1.0 && batched >= 2.0 * batches,
        "messages were committed together: {batched} messages in {batches} batches\n{metrics}"
    );
    assert!(
        sample(&metrics, "sagaflow_batches_split_total") >= 1.0,
        "the refused start's batch was split\n{metrics}"
    );
}
