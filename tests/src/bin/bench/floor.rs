//! The floor: what PostgreSQL and RabbitMQ alone carry for the work one saga step asks of them,
//! measured on the same servers in the same run.

use std::time::{Duration, Instant};

use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use sagaflow_amqp::{declare_queue, OutgoingMessage, Publisher, QueueType};
use sagaflow_contracts::Topology;
use sqlx::{Connection, PgConnection};

/// Commits per second of the orchestrator's transaction shape — lock the saga row, insert two
/// events (one statement), insert an outbox row, update the saga row — with `connections`
/// connections, each on sagas of its own, for `duration`. Runs in a fresh database with the
/// real schema (`database_url` names it), so the indexes are the orchestrator's.
pub async fn postgres_commits_per_second(
    database_url: &str,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    const SAGAS_PER_CONNECTION: usize = 64;
    let mut setup = PgConnection::connect(database_url).await?;
    sqlx::query(
        "INSERT INTO sagas (id, saga_type, status, input, next_event_seq, start_key)
         SELECT gen_random_uuid(), 'Floor', 'running', '{}', 0, 'floor-' || n
         FROM generate_series(1, $1) AS n",
    )
    .bind((connections * SAGAS_PER_CONNECTION) as i64)
    .execute(&mut setup)
    .await?;
    let ids: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM sagas WHERE saga_type = 'Floor' ORDER BY start_key")
            .fetch_all(&mut setup)
            .await?;
    let event = serde_json::json!({"type": "ActivityCompleted", "step": 1, "output": {"ok": true}});
    let deadline = Instant::now() + duration;
    let workers = ids.chunks(SAGAS_PER_CONNECTION).map(|sagas| {
        let sagas = sagas.to_vec();
        let event = event.clone();
        async move {
            let mut db = PgConnection::connect(database_url).await?;
            let mut commits = 0u64;
            let started = Instant::now();
            while Instant::now() < deadline {
                let saga = sagas[commits as usize % sagas.len()];
                let mut tx = db.begin().await?;
                let (seq,): (i64,) =
                    sqlx::query_as("SELECT next_event_seq FROM sagas WHERE id = $1 FOR UPDATE")
                        .bind(saga)
                        .fetch_one(&mut *tx)
                        .await?;
                sqlx::query(
                    "INSERT INTO saga_events (saga_id, seq, kind, event, recorded_at)
                     SELECT $1, seq, kind, event, now()
                     FROM UNNEST($2::bigint[], $3::text[], $4::jsonb[]) AS e(seq, kind, event)",
                )
                .bind(saga)
                .bind(vec![seq, seq + 1])
                .bind(vec!["ActivityCompleted", "ActivityScheduled"])
                .bind(vec![event.clone(), event.clone()])
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO outbox (saga_id, exchange, routing_key, message_id, message_type, headers, body)
                     VALUES ($1, '', 'floor', gen_random_uuid()::text, 'ActivityCommand', '[]', $2)",
                )
                .bind(saga)
                .bind(event.to_string().into_bytes())
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE sagas SET next_event_seq = $2, updated_at = now() WHERE id = $1",
                )
                .bind(saga)
                .bind(seq + 2)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                commits += 1;
            }
            anyhow::Ok((commits, started.elapsed()))
        }
    });
    let results = futures::future::try_join_all(workers).await;
    clean_up(&mut setup).await?;
    let results = results?;
    let commits: u64 = results.iter().map(|(c, _)| c).sum();
    let elapsed = results
        .iter()
        .map(|(_, e)| e.as_secs_f64())
        .fold(0.0, f64::max);
    Ok(commits as f64 / elapsed)
}

/// Messages per second through a quorum queue: each one published persistent with a confirm,
/// consumed and acknowledged, with `in_flight` unconfirmed publishes at most and a prefetch of
/// `in_flight`, for about `duration`.
pub async fn rabbitmq_messages_per_second(
    amqp_url: &str,
    topology: &Topology,
    in_flight: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    let connection = sagaflow_amqp::connect(amqp_url, "sagaflow-bench-floor").await?;
    let queue = format!("{}.bench-floor-{in_flight}", topology.namespace());
    let channel = connection.create_channel().await?;
    declare_queue(&channel, topology, QueueType::Quorum, &queue).await?;
    channel
        .basic_qos(
            in_flight.min(u16::MAX as usize) as u16,
            BasicQosOptions::default(),
        )
        .await?;
    let mut deliveries = channel
        .basic_consume(
            &queue,
            "floor",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let publisher = Publisher::open(&connection).await?;
    let body = vec![b'x'; 600];
    let started = Instant::now();
    let deadline = started + duration;
    let consumer = tokio::spawn(async move {
        let mut consumed = 0u64;
        let mut last_ack = Instant::now();
        // Past the deadline, the consumer stops at the first pause in deliveries.
        loop {
            let wait = if Instant::now() < deadline {
                duration + Duration::from_secs(5)
            } else {
                Duration::from_millis(200)
            };
            match tokio::time::timeout(wait, deliveries.next()).await {
                Ok(Some(delivery)) => {
                    delivery?.ack(BasicAckOptions::default()).await?;
                    consumed += 1;
                    last_ack = Instant::now();
                }
                Ok(None) | Err(_) => break,
            }
        }
        anyhow::Ok((consumed, last_ack))
    });
    let publishers = (0..in_flight).map(|worker| {
        let publisher = publisher.clone();
        let queue = queue.clone();
        let body = body.clone();
        async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                let message = OutgoingMessage {
                    routing_key: queue.clone(),
                    message_id: format!("floor-{worker}-{n}"),
                    message_type: "Floor".into(),
                    body: body.clone(),
                    ..Default::default()
                };
                publisher.publish_confirmed(&message).await?;
                n += 1;
            }
            anyhow::Ok(n)
        }
    });
    futures::future::try_join_all(publishers).await?;
    let (consumed, last_ack) = consumer.await??;
    let rate = consumed as f64 / (last_ack - started).as_secs_f64();
    let _ = channel
        .queue_delete(&queue, QueueDeleteOptions::default())
        .await;
    let _ = connection.close(200, "floor measured").await;
    Ok(rate)
}

/// Removes what the PostgreSQL floor left in the deployment's tables, so that the sagas measured
/// next find the tables as a fresh deployment has them.
async fn clean_up(db: &mut PgConnection) -> anyhow::Result<()> {
    sqlx::query("DELETE FROM outbox").execute(&mut *db).await?;
    sqlx::query(
        "DELETE FROM saga_events WHERE saga_id IN (SELECT id FROM sagas WHERE saga_type = 'Floor')",
    )
    .execute(&mut *db)
    .await?;
    sqlx::query("DELETE FROM sagas WHERE saga_type = 'Floor'")
        .execute(&mut *db)
        .await?;
    sqlx::query("VACUUM ANALYZE").execute(&mut *db).await?;
    Ok(())
}
