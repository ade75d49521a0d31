//! The engine's counters on `/metrics`: they move by exactly what a known set of sagas did.

use std::time::Duration;

use sagaflow_e2e::{payment, Bin, Deployment};

const END: Duration = Duration::from_secs(60);

/// The value of the sample `series` (name and labels, as Prometheus writes them).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

#[track_caller]
fn assert_sample(metrics: &str, series: &str, expected: f64) {
    assert_eq!(
        sample(metrics, series),
        Some(expected),
        "{series} in\n{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_count_the_sagas_steps_and_attempts_that_were_committed() {
    let mut deployment = Deployment::new().await;
    let (_orchestrator, api) = deployment
        .spawn_with_api(Bin::Orchestrator, None, &[])
        .await;
    let _services = deployment.spawn_activity_services();
    for key in ["metrics-ok-1", "metrics-ok-2"] {
        deployment.publish_start(&payment::start(key)).await;
    }
    let mut bad_card = payment::request("metrics-bad-card");
    bad_card.card_token = "1234 5678 9012 3456".into();
    deployment
        .publish_start(&payment::start_with(bad_card))
        .await;
    for key in ["metrics-ok-1", "metrics-ok-2"] {
        assert_eq!(deployment.wait_for_end(key, END).await, "completed");
    }
    assert_eq!(
        deployment.wait_for_end("metrics-bad-card", END).await,
        "failed"
    );

    let metrics = api.get("/metrics").await.text;
    let saga = "saga_type=\"ProcessPayment\"";
    assert_sample(
        &metrics,
        &format!("sagaflow_sagas_started_total{{{saga}}}"),
        3.0,
    );
    assert_sample(
        &metrics,
        &format!("sagaflow_sagas_ended_total{{{saga},status=\"completed\"}}"),
        2.0,
    );
    assert_sample(
        &metrics,
        &format!("sagaflow_sagas_ended_total{{{saga},status=\"failed\"}}"),
        1.0,
    );
    for (activity, attempts) in [
        ("ValidatePaymentInfo", 3.0),
        ("ChargeCustomer", 2.0),
        ("SendReceipt", 2.0),
    ] {
        assert_sample(
            &metrics,
            &format!("sagaflow_activity_attempts_total{{activity=\"{activity}\"}}"),
            attempts,
        );
    }
    assert_eq!(
        sample(
            &metrics,
            "sagaflow_activity_retries_total{activity=\"ChargeCustomer\"}"
        ),
        None,
        "no retries happened:\n{metrics}"
    );
    assert_sample(
        &metrics,
        "sagaflow_activity_attempts_failed_total{activity=\"ValidatePaymentInfo\",kind=\"InvalidPayment\"}",
        1.0,
    );
    assert_sample(
        &metrics,
        "sagaflow_step_duration_seconds_count{activity=\"ValidatePaymentInfo\",outcome=\"completed\"}",
        2.0,
    );
    assert_sample(
        &metrics,
        "sagaflow_step_duration_seconds_count{activity=\"ValidatePaymentInfo\",outcome=\"failed\"}",
        1.0,
    );
    assert_sample(
        &metrics,
        "sagaflow_step_duration_seconds_count{activity=\"SendReceipt\",outcome=\"completed\"}",
        2.0,
    );
    // Seven results, each one activation: from the cache or replayed.
    let activations = sample(&metrics, "sagaflow_cache_hits_total").unwrap_or(0.0)
        + sample(&metrics, "sagaflow_replays_total").unwrap_or(0.0);
    assert_eq!(activations, 7.0, "{metrics}");
}
