//! OpenTelemetry traces: one saga is one trace across the starting CLI, the orchestrator and
//! the three demo services, collected by an OTLP/HTTP receiver inside the test.

use std::collections::HashSet;
use std::time::Duration;

use sagaflow_e2e::{payment, Bin, Deployment, OtlpReceiver, ReceivedSpan};

const END: Duration = Duration::from_secs(60);

fn named<'a>(spans: &'a [ReceivedSpan], name: &str) -> Vec<&'a ReceivedSpan> {
    spans.iter().filter(|s| s.name == name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_saga_is_one_trace_from_the_cli_through_every_service() {
    let receiver = OtlpReceiver::start().await;
    let mut deployment = Deployment::new().await;
    deployment.set_env("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint);
    // Export soon, so spans arrive before the processes are killed at the end.
    deployment.set_env("OTEL_BSP_SCHEDULE_DELAY", "100");
    // The CLI's name; each service below is named on top.
    deployment.set_env("OTEL_SERVICE_NAME", "sagaflow-cli");
    let _orchestrator =
        deployment.spawn(Bin::Orchestrator, &[("OTEL_SERVICE_NAME", "orchestrator")]);
    let _services: Vec<_> = [
        (Bin::PaymentValidator, "payment-validator"),
        (Bin::Charger, "charger"),
        (Bin::ReceiptSender, "receipt-sender"),
    ]
    .into_iter()
    .map(|(bin, name)| deployment.spawn(bin, &[("OTEL_SERVICE_NAME", name)]))
    .collect();

    let input = serde_json::to_string(&payment::request("traced-1")).unwrap();
    let out = deployment
        .run_cli(&[
            "start",
            "--saga-type",
            "ProcessPayment",
            "--input",
            &input,
            "--start-key",
            "traced-1",
        ])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(deployment.wait_for_end("traced-1", END).await, "completed");
    let (saga, _) = deployment.saga("traced-1").await.unwrap();
    let stored: serde_json::Value =
        sqlx::query_scalar("SELECT trace_context FROM sagas WHERE id = $1")
            .bind(saga)
            .fetch_one(&deployment.db)
            .await
            .unwrap();
    assert!(
        stored["traceparent"]
            .as_str()
            .is_some_and(|t| t.starts_with("00-")),
        "{stored}"
    );
    let saga_id = saga.to_string();

    let spans = sagaflow_e2e::wait_until("every span of the saga arrives", END, || {
        let spans = receiver.spans();
        let done = named(&spans, "activity attempt").len() >= 3
            && named(&spans, "advance").len() >= 3
            && named(&spans, "outbox publish").len() >= 3
            && !named(&spans, "publish start").is_empty()
            && !named(&spans, "start saga").is_empty();
        async move { done.then_some(spans) }
    })
    .await;
    let ours: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.attribute("saga_id") == Some(saga_id.as_str()) || s.name == "publish start")
        .collect();
    let traces: HashSet<&str> = ours.iter().map(|s| s.trace_id.as_str()).collect();
    assert_eq!(traces.len(), 1, "one trace for the saga: {ours:#?}");

    let root = named(&spans, "publish start")[0];
    assert_eq!(root.service, "sagaflow-cli", "{root:?}");
    assert_eq!(root.attribute("saga_type"), Some("ProcessPayment"));
    let start = named(&spans, "start saga")[0];
    assert_eq!(start.service, "orchestrator");
    assert_eq!(start.parent_span_id, root.span_id, "{start:?}");
    assert_eq!(start.attribute("saga_type"), Some("ProcessPayment"));
    for advance in named(&spans, "advance") {
        assert_eq!(advance.parent_span_id, start.span_id, "{advance:?}");
        assert_eq!(advance.attribute("saga_type"), Some("ProcessPayment"));
    }
    let activations: HashSet<&str> = named(&spans, "advance")
        .iter()
        .chain([&start])
        .map(|s| s.span_id.as_str())
        .collect();
    let publishes = named(&spans, "outbox publish");
    for publish in &publishes {
        assert!(
            activations.contains(publish.parent_span_id.as_str()),
            "{publish:?}"
        );
    }
    let publish_ids: HashSet<&str> = publishes.iter().map(|s| s.span_id.as_str()).collect();
    let mut activities = Vec::new();
    for attempt in named(&spans, "activity attempt") {
        assert!(
            publish_ids.contains(attempt.parent_span_id.as_str()),
            "{attempt:?}"
        );
        assert_eq!(attempt.attribute("attempt"), Some("1"));
        activities.push((
            attempt.service.clone(),
            attempt.attribute("activity").unwrap().to_owned(),
        ));
    }
    activities.sort();
    assert_eq!(
        activities,
        [
            ("charger".to_owned(), "ChargeCustomer".to_owned()),
            (
                "payment-validator".to_owned(),
                "ValidatePaymentInfo".to_owned()
            ),
            ("receipt-sender".to_owned(), "SendReceipt".to_owned()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trace_goes_on_after_the_orchestrator_is_killed_in_the_middle_of_the_saga() {
    let receiver = OtlpReceiver::start().await;
    let mut deployment = Deployment::new().await;
    deployment.set_env("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint);
    deployment.set_env("OTEL_BSP_SCHEDULE_DELAY", "100");
    deployment.set_env("OTEL_SERVICE_NAME", "sagaflow-cli");
    // Dies right after committing the charge: its later spans are lost with it.
    let mut first = deployment.spawn(
        Bin::Orchestrator,
        &[
            ("OTEL_SERVICE_NAME", "orchestrator-1"),
            (
                "FAILPOINTS",
                "orchestrator.after-commit.ChargeCustomer=return",
            ),
        ],
    );
    let _services: Vec<_> = [
        (Bin::PaymentValidator, "payment-validator"),
        (Bin::Charger, "charger"),
        (Bin::ReceiptSender, "receipt-sender"),
    ]
    .into_iter()
    .map(|(bin, name)| deployment.spawn(bin, &[("OTEL_SERVICE_NAME", name)]))
    .collect();
    let input = serde_json::to_string(&payment::request("traced-crash")).unwrap();
    let out = deployment
        .run_cli(&["start", "--input", &input, "--start-key", "traced-crash"])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    sagaflow_e2e::wait_until(
        "the first orchestrator dies at its crash point",
        END,
        || {
            let exited = first.exited();
            async move { exited }
        },
    )
    .await;
    let _second = deployment.spawn(
        Bin::Orchestrator,
        &[("OTEL_SERVICE_NAME", "orchestrator-2")],
    );
    assert_eq!(
        deployment.wait_for_end("traced-crash", END).await,
        "completed"
    );
    let (saga, _) = deployment.saga("traced-crash").await.unwrap();
    let saga_id = saga.to_string();

    // The saga's stored trace context: its start span, which every activation continues (the
    // killed process may not have exported that span itself).
    let stored: serde_json::Value =
        sqlx::query_scalar("SELECT trace_context FROM sagas WHERE id = $1")
            .bind(saga)
            .fetch_one(&deployment.db)
            .await
            .unwrap();
    let traceparent = stored["traceparent"].as_str().unwrap().to_owned();
    let (trace_id, start_span) = {
        let parts: Vec<&str> = traceparent.split('-').collect();
        (parts[1].to_owned(), parts[2].to_owned())
    };

    let spans = sagaflow_e2e::wait_until("the spans after the restart arrive", END, || {
        let spans = receiver.spans();
        let done = spans.iter().any(|s| {
            s.name == "activity attempt" && s.attribute("activity") == Some("SendReceipt")
        }) && spans
            .iter()
            .any(|s| s.name == "advance" && s.service == "orchestrator-2");
        async move { done.then_some(spans) }
    })
    .await;
    let ours: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.attribute("saga_id") == Some(saga_id.as_str()) || s.name == "publish start")
        .collect();
    let traces: HashSet<&str> = ours.iter().map(|s| s.trace_id.as_str()).collect();
    assert_eq!(
        traces,
        HashSet::from([trace_id.as_str()]),
        "one trace across the restart: {ours:#?}"
    );
    let after_restart: Vec<_> = named(&spans, "advance")
        .into_iter()
        .filter(|s| s.service == "orchestrator-2")
        .collect();
    assert!(!after_restart.is_empty());
    for advance in after_restart {
        assert_eq!(advance.parent_span_id, start_span, "{advance:?}");
    }
}
