//! OpenTelemetry: one saga is one trace across the starting CLI, the orchestrator and the three
//! demo services, with spans for its retries and timers; and every process's metrics go over
//! OTLP too. Collected by an OTLP/HTTP receiver inside the test.

use std::collections::HashSet;
use std::time::Duration;

use sagaflow_e2e::{payment, Bin, Deployment, OtlpReceiver, ReceivedPoint, ReceivedSpan};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_has_spans_of_its_own_in_the_sagas_one_trace() {
    let receiver = OtlpReceiver::start().await;
    let mut deployment = Deployment::new().await;
    deployment.set_env("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint);
    deployment.set_env("OTEL_BSP_SCHEDULE_DELAY", "100");
    let _orchestrator = deployment.spawn(
        Bin::Orchestrator,
        &[
            ("OTEL_SERVICE_NAME", "orchestrator"),
            ("SAGAFLOW_RETRY_INITIAL_MS", "50"),
        ],
    );
    // The first charge attempt fails transiently: the orchestrator retries it.
    let _services: Vec<_> = [
        (Bin::PaymentValidator, "payment-validator", ""),
        (
            Bin::Charger,
            "charger",
            "charger.transient-failure=1*return",
        ),
        (Bin::ReceiptSender, "receipt-sender", ""),
    ]
    .into_iter()
    .map(|(bin, name, failpoints)| {
        deployment.spawn(
            bin,
            &[("OTEL_SERVICE_NAME", name), ("FAILPOINTS", failpoints)],
        )
    })
    .collect();
    deployment
        .publish_start(&payment::start("traced-retry"))
        .await;
    assert_eq!(
        deployment.wait_for_end("traced-retry", END).await,
        "completed"
    );
    let (saga, _) = deployment.saga("traced-retry").await.unwrap();
    let saga_id = saga.to_string();
    let stored: serde_json::Value =
        sqlx::query_scalar("SELECT trace_context FROM sagas WHERE id = $1")
            .bind(saga)
            .fetch_one(&deployment.db)
            .await
            .unwrap();
    let parts: Vec<String> = stored["traceparent"]
        .as_str()
        .unwrap()
        .split('-')
        .map(str::to_owned)
        .collect();
    let (trace_id, start_span) = (&parts[1], &parts[2]);

    let spans = sagaflow_e2e::wait_until("the retry's spans arrive", END, || {
        let spans = receiver.spans();
        let done = !named(&spans, "activity.retry").is_empty()
            && !named(&spans, "timer.fired").is_empty()
            && spans.iter().any(|s| {
                s.name == "activity attempt" && s.attribute("activity") == Some("SendReceipt")
            });
        async move { done.then_some(spans) }
    })
    .await;
    let ours: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.attribute("saga_id") == Some(saga_id.as_str()))
        .collect();
    let traces: HashSet<&str> = ours.iter().map(|s| s.trace_id.as_str()).collect();
    assert_eq!(traces, HashSet::from([trace_id.as_str()]), "{ours:#?}");
    let by_id = |id: &str| ours.iter().find(|s| s.span_id == id).copied();

    // The failed attempt's result: its activation decides the retry.
    let retries = named(&spans, "activity.retry");
    assert_eq!(retries.len(), 1, "one retry, one span: {retries:#?}");
    let retry = retries[0];
    assert_eq!(retry.service, "orchestrator");
    assert_eq!(retry.attribute("activity"), Some("ChargeCustomer"));
    assert_eq!(retry.attribute("step"), Some("2"));
    assert_eq!(retry.attribute("attempt"), Some("1"));
    assert_eq!(retry.attribute("next_attempt"), Some("2"));
    assert!(retry.attribute("backoff_ms").is_some(), "{retry:?}");
    let decided = by_id(&retry.parent_span_id).expect("the retry's activation is exported");
    assert_eq!(decided.name, "advance");
    assert_eq!(decided.attribute("fact"), Some("activity_result"));

    // Its timer fires in the saga's trace, and its activation sends attempt 2.
    let fired = named(&spans, "timer.fired");
    assert_eq!(fired.len(), 1, "one timer fired: {fired:#?}");
    let fired = fired[0];
    assert_eq!(&fired.parent_span_id, start_span, "{fired:?}");
    assert_eq!(fired.attribute("timer.kind"), Some("retry"));
    assert_eq!(fired.attribute("step"), Some("2"));
    assert_eq!(fired.attribute("attempt"), Some("1"));
    assert_eq!(fired.attribute("next_attempt"), Some("2"));
    let woken: Vec<_> = named(&spans, "advance")
        .into_iter()
        .filter(|s| s.parent_span_id == fired.span_id)
        .collect();
    assert_eq!(woken.len(), 1, "{woken:#?}");
    assert_eq!(woken[0].attribute("fact"), Some("timer_fired"));
    let second = named(&spans, "activity attempt")
        .into_iter()
        .find(|s| s.attribute("attempt") == Some("2"))
        .expect("attempt 2 is traced");
    let publish = by_id(&second.parent_span_id).expect("attempt 2's publish is exported");
    assert_eq!(publish.name, "outbox publish");
    assert_eq!(publish.parent_span_id, woken[0].span_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_go_over_otlp_from_the_orchestrator_and_every_service() {
    let receiver = OtlpReceiver::start().await;
    let mut deployment = Deployment::new().await;
    deployment.set_env("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint);
    deployment.set_env("OTEL_METRIC_EXPORT_INTERVAL", "200");
    let _orchestrator = deployment.spawn(
        Bin::Orchestrator,
        &[
            ("OTEL_SERVICE_NAME", "orchestrator"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test"),
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
    deployment
        .publish_start(&payment::start("otlp-metrics"))
        .await;
    assert_eq!(
        deployment.wait_for_end("otlp-metrics", END).await,
        "completed"
    );

    // The latest value of each series, as a user's backend would show it.
    let latest =
        |points: &[ReceivedPoint], service: &str, metric: &str, labels: &[(&str, &str)]| {
            points
                .iter()
                .rev()
                .find(|p| {
                    p.service == service
                        && p.metric == metric
                        && labels.iter().all(|(k, v)| p.attribute(k) == Some(*v))
                })
                .map(|p| p.value)
        };
    // Service, metric, labels, latest value.
    type Expected<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, f64);
    let expected: Vec<Expected> = vec![
        (
            "orchestrator",
            "sagaflow_sagas_started_total",
            vec![("saga_type", "ProcessPayment")],
            1.0,
        ),
        (
            "orchestrator",
            "sagaflow_sagas_ended_total",
            vec![("saga_type", "ProcessPayment"), ("status", "completed")],
            1.0,
        ),
        (
            "orchestrator",
            "sagaflow_activity_attempts_total",
            vec![("activity", "ChargeCustomer")],
            1.0,
        ),
        (
            "orchestrator",
            "sagaflow_step_duration_seconds",
            vec![("activity", "SendReceipt"), ("outcome", "completed")],
            1.0,
        ),
        (
            "orchestrator",
            "sagaflow_sagas",
            vec![("saga_type", "ProcessPayment"), ("status", "completed")],
            1.0,
        ),
        ("orchestrator", "sagaflow_outbox_backlog", vec![], 0.0),
        (
            "charger",
            "sagaflow_worker_attempts_total",
            vec![("activity", "ChargeCustomer"), ("outcome", "completed")],
            1.0,
        ),
        (
            "charger",
            "sagaflow_worker_attempt_duration_seconds",
            vec![("activity", "ChargeCustomer"), ("outcome", "completed")],
            1.0,
        ),
        (
            "payment-validator",
            "sagaflow_worker_attempts_total",
            vec![
                ("activity", "ValidatePaymentInfo"),
                ("outcome", "completed"),
            ],
            1.0,
        ),
        (
            "receipt-sender",
            "sagaflow_consumer_lag_messages",
            vec![(
                "queue",
                deployment.topology.activity_queue("SendReceipt").leak(),
            )],
            0.0,
        ),
    ];
    let points = sagaflow_e2e::wait_until("every expected metric arrives over OTLP", END, || {
        let points = receiver.metric_points();
        let done = expected.iter().all(|(service, metric, labels, value)| {
            latest(&points, service, metric, labels) == Some(*value)
        });
        async move { done.then_some(points) }
    })
    .await;
    let services: HashSet<&str> = points.iter().map(|p| p.service.as_str()).collect();
    assert_eq!(
        services,
        HashSet::from([
            "orchestrator",
            "payment-validator",
            "charger",
            "receipt-sender"
        ])
    );
}
