//! The counters on `/metrics`, of the orchestrator and of SDK services: they move by exactly
//! what a known set of sagas did.

use std::time::Duration;

use lapin::types::AMQPValue;
use sagaflow_contracts::headers;
use sagaflow_e2e::{payment, ApiClient, Bin, Deployment};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_services_count_what_their_handlers_did_on_their_own_metrics_endpoint() {
    let mut deployment = Deployment::new().await;
    let (_orchestrator, api) = deployment
        .spawn_with_api(
            Bin::Orchestrator,
            None,
            &[("SAGAFLOW_RETRY_INITIAL_MS", "50")],
        )
        .await;
    let (_validator, validator) = deployment
        .spawn_with_metrics(Bin::PaymentValidator, &[])
        .await;
    // The first two charge attempts fail transiently; the orchestrator retries them.
    let (_charger, charger) = deployment
        .spawn_with_metrics(
            Bin::Charger,
            &[("FAILPOINTS", "charger.transient-failure=2*return")],
        )
        .await;
    let _receipts = deployment.spawn(Bin::ReceiptSender, &[]);
    for key in ["sdk-metrics-ok-1", "sdk-metrics-ok-2"] {
        deployment.publish_start(&payment::start(key)).await;
    }
    let mut bad_card = payment::request("sdk-metrics-bad-card");
    bad_card.card_token = "1234 5678 9012 3456".into();
    deployment
        .publish_start(&payment::start_with(bad_card))
        .await;
    for key in ["sdk-metrics-ok-1", "sdk-metrics-ok-2"] {
        assert_eq!(deployment.wait_for_end(key, END).await, "completed");
    }
    assert_eq!(
        deployment.wait_for_end("sdk-metrics-bad-card", END).await,
        "failed"
    );
    // Two commands the charger cannot run: one that names its step (the saga is told it was
    // rejected), one that does not (only dead-lettered).
    let charges = deployment.topology.activity_queue("ChargeCustomer");
    deployment
        .publish_raw(&charges, b"not json".to_vec(), "sdk-metrics-garbage")
        .await;
    let mut step_headers = lapin::types::FieldTable::default();
    for (name, value) in [
        (headers::SAGA_ID, uuid::Uuid::new_v4().to_string()),
        (headers::STEP, "1".to_owned()),
        (headers::ATTEMPT, "1".to_owned()),
    ] {
        step_headers.insert(name.into(), AMQPValue::LongString(value.into()));
    }
    deployment
        .publish_with_properties(
            &charges,
            b"{\"not\": \"a command\"}",
            lapin::BasicProperties::default().with_headers(step_headers),
        )
        .await;

    let charge = "activity=\"ChargeCustomer\"";
    let metrics = scrape_until(&charger, "both unrunnable commands are counted", |m| {
        sample(
            m,
            &format!("sagaflow_worker_dead_letters_total{{{charge},reason_class=\"malformed\"}}"),
        ) == Some(2.0)
    })
    .await;
    for (outcome, n) in [
        ("completed", 2.0),
        ("failed_retryable", 2.0),
        ("rejected", 1.0),
        ("dead_lettered", 1.0),
    ] {
        assert_sample(
            &metrics,
            &format!("sagaflow_worker_attempts_total{{{charge},outcome=\"{outcome}\"}}"),
            n,
        );
    }
    assert_eq!(
        sample(
            &metrics,
            &format!("sagaflow_worker_attempts_total{{{charge},outcome=\"failed_permanent\"}}")
        ),
        None,
        "{metrics}"
    );
    assert_sample(
        &metrics,
        &format!(
            "sagaflow_worker_attempt_duration_seconds_count{{{charge},outcome=\"completed\"}}"
        ),
        2.0,
    );
    assert_sample(
        &metrics,
        &format!("sagaflow_worker_attempts_in_flight{{{charge}}}"),
        0.0,
    );

    let validate = "activity=\"ValidatePaymentInfo\"";
    let metrics = validator.get("/metrics").await.text;
    assert_sample(
        &metrics,
        &format!("sagaflow_worker_attempts_total{{{validate},outcome=\"completed\"}}"),
        2.0,
    );
    assert_sample(
        &metrics,
        &format!("sagaflow_worker_attempts_total{{{validate},outcome=\"failed_permanent\"}}"),
        1.0,
    );

    // Consumer lag, polled from the broker: nothing waits once every saga has ended.
    let lag = format!("sagaflow_consumer_lag_messages{{queue=\"{charges}\"}}");
    scrape_until(&charger, "the charger reports its queue's lag", |m| {
        sample(m, &lag) == Some(0.0)
    })
    .await;
    let results = format!(
        "sagaflow_consumer_lag_messages{{queue=\"{}\"}}",
        deployment.topology.results_queue()
    );
    scrape_until(&api, "the orchestrator reports its queues' lag", |m| {
        sample(m, &results) == Some(0.0)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sdk_service_counts_its_running_attempt_and_the_cancel_that_stops_it() {
    let mut deployment = Deployment::new().await;
    let _orchestrator = deployment.spawn(Bin::Orchestrator, &[]);
    let _validator = deployment.spawn(Bin::PaymentValidator, &[]);
    // The charge never answers on its own: it runs until it is told to stop.
    let (_charger, charger) = deployment
        .spawn_with_metrics(Bin::Charger, &[("CHARGER_HANG_RATE", "1")])
        .await;
    deployment
        .publish_start(&payment::start("sdk-metrics-cancel"))
        .await;
    let saga = deployment.wait_for_start("sdk-metrics-cancel", END).await;
    let charge = "activity=\"ChargeCustomer\"";
    let in_flight = format!("sagaflow_worker_attempts_in_flight{{{charge}}}");
    scrape_until(&charger, "the charge runs", |m| {
        sample(m, &in_flight) == Some(1.0)
    })
    .await;

    let out = deployment.run_cli(&["cancel", &saga.to_string()]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        deployment.wait_for_end("sdk-metrics-cancel", END).await,
        "cancelled"
    );
    let cancels = format!("sagaflow_worker_cancels_total{{{charge},running=\"true\"}}");
    let metrics = scrape_until(&charger, "the cancel is counted", |m| {
        sample(m, &cancels) == Some(1.0) && sample(m, &in_flight) == Some(0.0)
    })
    .await;
    // The handler stopped early, reporting the cancellation as a permanent failure.
    assert_sample(
        &metrics,
        &format!("sagaflow_worker_attempts_total{{{charge},outcome=\"failed_permanent\"}}"),
        1.0,
    );
}

/// Scrapes `/metrics` until `done` holds, and returns that scrape.
async fn scrape_until(endpoint: &ApiClient, what: &str, done: impl Fn(&str) -> bool) -> String {
    sagaflow_e2e::wait_until(what, END, || async {
        let metrics = endpoint.get("/metrics").await.text;
        done(&metrics).then_some(metrics)
    })
    .await
}
