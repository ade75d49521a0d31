//! The orchestrator's HTTP API: filters, pagination, history, the bearer token, malformed
//! requests answered with a 4xx JSON error, dead letters listed and re-published.

use std::collections::HashSet;
use std::time::Duration;

use sagaflow_e2e::{payment, ApiResponse, Bin, Deployment};
use serde_json::Value;

const END: Duration = Duration::from_secs(60);
const TOKEN: &str = "e2e-secret-token";

fn ids(page: &Value) -> Vec<String> {
    page["sagas"]
        .as_array()
        .expect("a page has sagas")
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect()
}

#[track_caller]
fn assert_json_error(response: &ApiResponse, status: u16, code: &str) {
    assert_eq!(response.status, status, "{}", response.text);
    assert_eq!(response.body["error"]["code"], code, "{}", response.text);
    assert!(
        response.body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{}",
        response.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_filters_pages_and_shows_sagas_behind_its_token() {
    let mut deployment = Deployment::new().await;
    let (_orchestrator, api) = deployment
        .spawn_with_api(Bin::Orchestrator, Some(TOKEN), &[])
        .await;
    let _services = deployment.spawn_activity_services();
    for key in ["api-ok-1", "api-ok-2", "api-ok-3"] {
        deployment.publish_start(&payment::start(key)).await;
    }
    let mut bad_card = payment::request("api-bad-card");
    bad_card.card_token = "1234 5678 9012 3456".into();
    deployment
        .publish_start(&payment::start_with(bad_card))
        .await;
    for key in ["api-ok-1", "api-ok-2", "api-ok-3"] {
        assert_eq!(deployment.wait_for_end(key, END).await, "completed");
    }
    assert_eq!(deployment.wait_for_end("api-bad-card", END).await, "failed");

    // The token: missing or wrong is refused with a JSON error; right is let through.
    assert_json_error(
        &api.with_token(None).get("/api/sagas").await,
        401,
        "unauthorized",
    );
    assert_json_error(
        &api.with_token(Some("e2e-secret-tokem"))
            .get("/api/sagas")
            .await,
        401,
        "unauthorized",
    );
    assert_json_error(
        &api.with_token(None).get("/metrics").await,
        401,
        "unauthorized",
    );
    assert_eq!(api.get("/api/sagas").await.status, 200);
    // Health and the API's description need no token.
    let open = api.with_token(None);
    assert_eq!(open.get("/healthz").await.status, 200);
    let ready = open.get("/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.text);
    assert_eq!(ready.body["checks"]["postgresql"], "ok");
    assert_eq!(ready.body["checks"]["rabbitmq"], "ok");
    let doc = open.get("/api/openapi.json").await;
    assert_eq!(doc.status, 200);
    assert!(
        doc.body["paths"]["/api/sagas/{id}"].is_object(),
        "{}",
        doc.text
    );

    // Metrics: sagas by type and status, outbox and timers as read from PostgreSQL.
    let metrics = api.get("/metrics").await.text;
    for line in [
        "sagaflow_sagas{saga_type=\"ProcessPayment\",status=\"completed\"} 3",
        "sagaflow_sagas{saga_type=\"ProcessPayment\",status=\"failed\"} 1",
        "sagaflow_outbox_backlog 0",
        "sagaflow_timers_due ",
    ] {
        assert!(
            metrics.lines().any(|l| l.starts_with(line)),
            "{line} in\n{metrics}"
        );
    }

    // Filters.
    let failed = api.get("/api/sagas?status=failed").await.body;
    assert_eq!(ids(&failed).len(), 1, "{failed}");
    assert_eq!(failed["sagas"][0]["start_key"], "api-bad-card");
    assert!(failed["sagas"][0]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("InvalidPayment"));
    assert_eq!(
        ids(&api.get("/api/sagas?status=completed").await.body).len(),
        3
    );
    assert_eq!(
        ids(&api.get("/api/sagas?status=completed,failed").await.body).len(),
        4
    );
    assert_eq!(
        ids(&api.get("/api/sagas?status=running").await.body).len(),
        0
    );
    assert_eq!(
        ids(&api.get("/api/sagas?saga_type=ProcessPayment").await.body).len(),
        4
    );
    assert_eq!(
        ids(&api.get("/api/sagas?saga_type=Nope").await.body).len(),
        0
    );
    let one = api.get("/api/sagas?start_key=api-ok-2").await.body;
    assert_eq!(ids(&one).len(), 1);
    assert_eq!(one["sagas"][0]["status"], "completed");
    assert_eq!(
        ids(&api
            .get("/api/sagas?created_after=2999-01-01T00:00:00Z")
            .await
            .body)
        .len(),
        0
    );
    assert_eq!(
        ids(&api
            .get(
                "/api/sagas?created_after=2000-01-01T00:00:00Z&updated_before=2999-01-01T00:00:00Z"
            )
            .await
            .body)
        .len(),
        4
    );
    let counts = api.get("/api/sagas/counts").await.body;
    assert_eq!(counts["counts"]["completed"], 3, "{counts}");
    assert_eq!(counts["counts"]["failed"], 1, "{counts}");
    assert_eq!(counts["total"], 4, "{counts}");

    // Pagination: pages of 3 cover the four sagas once, most recently started first.
    let first = api.get("/api/sagas?limit=3").await.body;
    assert_eq!(ids(&first).len(), 3);
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let second = api
        .get(&format!("/api/sagas?limit=3&cursor={cursor}"))
        .await
        .body;
    assert_eq!(ids(&second).len(), 1, "{second}");
    assert!(second["next_cursor"].is_null(), "{second}");
    let all: Vec<String> = ids(&first).into_iter().chain(ids(&second)).collect();
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), 4);
    let times: Vec<String> = first["sagas"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["sagas"].as_array().unwrap())
        .map(|s| s["created_at"].as_str().unwrap().to_owned())
        .collect();
    let parsed: Vec<chrono::DateTime<chrono::Utc>> =
        times.iter().map(|t| t.parse().unwrap()).collect();
    assert!(parsed.windows(2).all(|w| w[0] >= w[1]), "{times:?}");

    // One saga: state and full history.
    let failed_id = failed["sagas"][0]["id"].as_str().unwrap();
    let saga = api.get(&format!("/api/sagas/{failed_id}")).await;
    assert_eq!(saga.status, 200, "{}", saga.text);
    assert_eq!(saga.body["status"], "failed");
    let kinds: Vec<&str> = saga.body["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "SagaStarted",
            "ActivityScheduled",
            "ActivityFailed",
            "SagaFailed"
        ]
    );
    let uuid = uuid::Uuid::parse_str(failed_id).unwrap();
    assert_eq!(
        saga.body["history"].as_array().unwrap().len(),
        deployment.history(uuid).await.len()
    );
    assert_eq!(saga.body["trace_id"], uuid.simple().to_string());

    // Malformed requests: 4xx with a JSON error, never a 500.
    assert_json_error(&api.get("/api/sagas/not-a-uuid").await, 400, "bad_request");
    assert_json_error(
        &api.get("/api/sagas?status=bogus").await,
        400,
        "bad_request",
    );
    assert_json_error(
        &api.get("/api/sagas?cursor=garbage").await,
        400,
        "bad_request",
    );
    assert_json_error(
        &api.get("/api/sagas?cursor=1_nope").await,
        400,
        "bad_request",
    );
    assert_json_error(&api.get("/api/sagas?limit=0").await, 400, "bad_request");
    assert_json_error(&api.get("/api/sagas?limit=many").await, 400, "bad_request");
    assert_json_error(
        &api.get("/api/sagas?created_after=yesterday").await,
        400,
        "bad_request",
    );
    assert_json_error(&api.get("/api/sagas?colour=red").await, 400, "bad_request");
    assert_json_error(&api.get("/api/dead-letters/x").await, 400, "bad_request");
    assert_json_error(
        &api.get(&format!("/api/sagas/{}", uuid::Uuid::new_v4()))
            .await,
        404,
        "not_found",
    );
    assert_json_error(&api.get("/api/nothing-here").await, 404, "not_found");
    assert_json_error(
        &api.send(reqwest::Method::DELETE, "/api/sagas").await,
        405,
        "method_not_allowed",
    );
    // Resume is for stuck sagas.
    assert_json_error(
        &api.post(&format!("/api/sagas/{failed_id}/resume")).await,
        409,
        "conflict",
    );
    assert_json_error(
        &api.post(&format!("/api/sagas/{}/resume", uuid::Uuid::new_v4()))
            .await,
        404,
        "not_found",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_is_listed_with_its_reason_and_republished_to_its_queue() {
    let mut deployment = Deployment::new().await;
    let (_orchestrator, api) = deployment
        .spawn_with_api(Bin::Orchestrator, None, &[])
        .await;
    deployment
        .publish_to_start_queue(b"{not json".to_vec(), "dl-message-1")
        .await;
    let listed = sagaflow_e2e::wait_until("the dead letter is listed", END, || async {
        let page = api.get("/api/dead-letters").await.body;
        (page["dead_letters"].as_array()?.len() == 1).then_some(page)
    })
    .await;
    let letter = &listed["dead_letters"][0];
    assert_eq!(letter["message_id"], "dl-message-1");
    assert_eq!(letter["source_queue"], deployment.topology.start_queue());
    assert!(
        letter["reason"]
            .as_str()
            .unwrap()
            .contains("not a StartSaga message"),
        "{letter}"
    );
    let id = letter["id"].as_i64().unwrap();

    let inspected = api.get(&format!("/api/dead-letters/{id}")).await;
    assert_eq!(inspected.status, 200, "{}", inspected.text);
    assert_eq!(inspected.body["body"], "{not json");
    assert_eq!(inspected.body["body_is_json"], false);

    let republished = api.post(&format!("/api/dead-letters/{id}/republish")).await;
    assert_eq!(republished.status, 200, "{}", republished.text);
    assert!(republished.body["republished_at"].is_string());
    // It went back to the start queue, where the orchestrator dead-letters it once more.
    sagaflow_e2e::wait_until(
        "the re-published message is dead-lettered again",
        END,
        || async {
            let page = api.get("/api/dead-letters").await.body;
            (page["dead_letters"].as_array()?.len() == 2).then_some(())
        },
    )
    .await;
    let again = api.post(&format!("/api/dead-letters/{id}/republish")).await;
    assert_eq!(again.status, 409, "{}", again.text);
    assert_eq!(
        api.post("/api/dead-letters/999999/republish").await.status,
        404
    );
    let metrics = api.get("/metrics").await.text;
    assert!(
        metrics
            .lines()
            .any(|l| l == "sagaflow_dead_letters_total{reason_class=\"malformed\"} 2"),
        "{metrics}"
    );
    // The broker's dead-letter queue kept its own copies for people.
    assert_eq!(deployment.take_dead_letters(2, END).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_cancels_terminates_and_signals_sagas_and_refuses_ended_ones() {
    let mut deployment = Deployment::new().await;
    let (_orchestrator, api) = deployment
        .spawn_with_api(Bin::Orchestrator, None, &[])
        .await;
    let _validator = deployment.spawn(Bin::PaymentValidator, &[]);
    // The charge never answers on its own: every saga waits in it.
    let _charger = deployment.spawn(Bin::Charger, &[("CHARGER_HANG_RATE", "1")]);
    let mut sagas = Vec::new();
    for key in ["op-cancel", "op-terminate"] {
        deployment.publish_start(&payment::start(key)).await;
        let (saga, _) = sagaflow_e2e::wait_until("the saga starts", END, || async {
            deployment.saga(key).await
        })
        .await;
        sagaflow_e2e::wait_until("the charge is scheduled", END, || async {
            let history = deployment.history(saga).await;
            (history
                .iter()
                .filter(|e| e.kind == "ActivityScheduled")
                .count()
                == 2)
                .then_some(())
        })
        .await;
        sagas.push(saga);
    }
    let (cancelled, terminated) = (sagas[0], sagas[1]);

    // A signal is kept in the history until the code waits for it.
    let signalled = api
        .post_json(
            &format!("/api/sagas/{cancelled}/signals/approved"),
            &serde_json::json!({"payload": {"by": "ops"}, "signal_id": "sig-1"}),
        )
        .await;
    assert_eq!(signalled.status, 202, "{}", signalled.text);
    assert_eq!(signalled.body["operation"], "signal");
    assert_eq!(signalled.body["message_id"], "sig-1");
    let history = deployment
        .wait_for_event(cancelled, "SignalReceived", END)
        .await;
    let signal = history.iter().find(|e| e.kind == "SignalReceived").unwrap();
    assert_eq!(signal.event["name"], "approved", "{:?}", signal.event);
    assert_eq!(signal.event["payload"]["by"], "ops");

    // Retry compensation is for a saga whose compensation failed.
    assert_json_error(
        &api.post(&format!("/api/sagas/{cancelled}/retry-compensation"))
            .await,
        409,
        "conflict",
    );
    // Malformed bodies and unknown sagas.
    assert_json_error(
        &api.post_body(&format!("/api/sagas/{cancelled}/cancel"), "{reason".into())
            .await,
        400,
        "bad_request",
    );
    assert_json_error(
        &api.post_json(
            &format!("/api/sagas/{cancelled}/cancel"),
            &serde_json::json!({"why": "x"}),
        )
        .await,
        400,
        "bad_request",
    );
    for operation in ["cancel", "terminate", "retry-compensation", "signals/x"] {
        assert_json_error(
            &api.post(&format!("/api/sagas/{}/{operation}", uuid::Uuid::new_v4()))
                .await,
            404,
            "not_found",
        );
    }

    let cancel = api
        .post_json(
            &format!("/api/sagas/{cancelled}/cancel"),
            &serde_json::json!({"reason": "customer changed their mind"}),
        )
        .await;
    assert_eq!(cancel.status, 202, "{}", cancel.text);
    assert_eq!(cancel.body["operation"], "cancel");
    let terminate = api
        .post(&format!("/api/sagas/{terminated}/terminate"))
        .await;
    assert_eq!(terminate.status, 202, "{}", terminate.text);
    assert_eq!(deployment.wait_for_end("op-cancel", END).await, "cancelled");
    assert_eq!(
        deployment.wait_for_end("op-terminate", END).await,
        "terminated"
    );
    let history = deployment.history(cancelled).await;
    let requested = history
        .iter()
        .find(|e| e.kind == "CancelRequested")
        .expect("the cancel is in the history");
    assert_eq!(requested.event["reason"], "customer changed their mind");
    let history = deployment.history(terminated).await;
    assert_eq!(
        history.last().unwrap().event["reason"],
        "terminated by an operator"
    );

    // Ended sagas take no more operations.
    for saga in [cancelled, terminated] {
        for operation in [
            "cancel",
            "terminate",
            "retry-compensation",
            "signals/approved",
        ] {
            assert_json_error(
                &api.post(&format!("/api/sagas/{saga}/{operation}")).await,
                409,
                "conflict",
            );
        }
    }
    let doc = api.get("/api/openapi.json").await.body;
    for path in [
        "/api/sagas/{id}/cancel",
        "/api/sagas/{id}/terminate",
        "/api/sagas/{id}/retry-compensation",
        "/api/sagas/{id}/signals/{name}",
    ] {
        assert!(doc["paths"][path]["post"].is_object(), "{path} in {doc}");
    }
}
