//! Driving sagas: starts through the start queue, outcomes through the reply path, and the
//! checks and counters read from PostgreSQL afterwards.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use sagaflow_amqp::{OutgoingMessage, Publisher};
use sagaflow_contracts::{headers, SagaFinished, StartSaga};
use sagaflow_e2e::{payment, test_sagas, Deployment};
use serde::Serialize;
use sqlx::PgPool;
use tokio::sync::oneshot;

type Waiting = Arc<Mutex<HashMap<String, oneshot::Sender<SagaFinished>>>>;

/// Publishes starts with a reply queue of its own and hands each `SagaFinished` to the start
/// that waits for it (by correlation id).
pub struct Driver {
    connection: lapin::Connection,
    publisher: Publisher,
    start_queue: String,
    reply_queue: String,
    waiting: Waiting,
    timeout: Duration,
    dispatcher: tokio::task::JoinHandle<()>,
}

/// What one run measured from the client's side.
pub struct Outcome {
    pub elapsed: Duration,
    /// Start published → `SagaFinished` received, per saga.
    pub latencies: Vec<Duration>,
    /// Outcomes other than `completed`.
    pub not_completed: usize,
}

impl Driver {
    pub async fn connect(deployment: &Deployment, timeout: Duration) -> anyhow::Result<Driver> {
        let connection = sagaflow_amqp::connect(&deployment.amqp_url, "sagaflow-bench").await?;
        let channel = connection.create_channel().await?;
        let (reply_queue, mut replies) = sagaflow_amqp::reply_queue(&channel)
            .await
            .context("cannot declare the reply queue")?;
        let waiting: Waiting = Arc::default();
        let dispatcher = tokio::spawn({
            let waiting = waiting.clone();
            async move {
                while let Some(Ok(delivery)) = replies.next().await {
                    let Some(id) = delivery.properties.correlation_id().as_ref() else {
                        continue;
                    };
                    let Ok(finished) = serde_json::from_slice::<SagaFinished>(&delivery.data)
                    else {
                        eprintln!("a reply that is not a SagaFinished message; ignored");
                        continue;
                    };
                    let waiter = waiting.lock().unwrap().remove(id.as_str());
                    if let Some(waiter) = waiter {
                        let _ = waiter.send(finished);
                    }
                }
            }
        });
        Ok(Driver {
            publisher: Publisher::open(&connection).await?,
            connection,
            start_queue: deployment.topology.start_queue(),
            reply_queue,
            waiting,
            timeout,
            dispatcher,
        })
    }

    /// Starts every saga of `starts`, at most `in_flight` at a time, and waits for each outcome.
    pub async fn run(&self, starts: &[StartSaga], in_flight: usize) -> anyhow::Result<Outcome> {
        let started = Instant::now();
        let results: Vec<anyhow::Result<(Duration, bool)>> = futures::stream::iter(starts)
            .map(|start| self.start_and_wait(start))
            .buffer_unordered(in_flight.max(1))
            .collect()
            .await;
        let elapsed = started.elapsed();
        let mut latencies = Vec::with_capacity(results.len());
        let mut not_completed = 0;
        for result in results {
            let (latency, completed) = result?;
            latencies.push(latency);
            not_completed += usize::from(!completed);
        }
        Ok(Outcome {
            elapsed,
            latencies,
            not_completed,
        })
    }

    /// Publishes `start` (confirmed), asking for its outcome on the reply queue under `reply_id`.
    async fn publish_start(&self, start: &StartSaga, reply_id: Option<&str>) -> anyhow::Result<()> {
        let message = OutgoingMessage {
            routing_key: self.start_queue.clone(),
            message_id: uuid::Uuid::new_v4().to_string(),
            message_type: headers::message_type::START_SAGA.to_owned(),
            body: serde_json::to_vec(start)?,
            reply_to: reply_id.map(|_| self.reply_queue.clone()),
            correlation_id: reply_id.map(str::to_owned),
            ..Default::default()
        };
        self.publisher.publish_confirmed(&message).await?;
        Ok(())
    }

    async fn start_and_wait(&self, start: &StartSaga) -> anyhow::Result<(Duration, bool)> {
        let id = uuid::Uuid::new_v4().to_string();
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().unwrap().insert(id.clone(), tx);
        let started = Instant::now();
        self.publish_start(start, Some(&id)).await?;
        let finished = tokio::time::timeout(self.timeout, rx)
            .await
            .with_context(|| {
                format!(
                    "saga {:?} sent no outcome within {:?}",
                    start.start_key, self.timeout
                )
            })?
            .context("the reply consumer stopped")?;
        Ok((started.elapsed(), finished.status == "completed"))
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.dispatcher.abort();
        let _ = &self.connection;
    }
}

/// The pids of the PostgreSQL backends of this deployment's database, and of the server's own
/// background processes (WAL writer, checkpointer…, shared with anything else on the server).
pub async fn postgres_pids(db: &PgPool) -> anyhow::Result<Vec<u32>> {
    let pids: Vec<i32> = sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity
         WHERE datname = current_database() OR backend_type <> 'client backend'",
    )
    .fetch_all(db)
    .await?;
    let mut pids: Vec<u32> = pids.into_iter().map(|p| p as u32).collect();
    // The postmaster is not in pg_stat_activity.
    pids.extend(crate::cpu::pgrep("postgres").into_iter().filter(|pid| {
        std::fs::read_to_string(format!("/proc/{pid}/cmdline")).is_ok_and(|cmd| cmd.contains("-D"))
    }));
    Ok(pids)
}

/// Transactions committed in this database so far (all processes).
pub async fn commits(db: &PgPool) -> anyhow::Result<i64> {
    // Backends report their counters at most once a second when idle: wait that out.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    sqlx::query("SELECT pg_stat_clear_snapshot()")
        .execute(db)
        .await?;
    Ok(sqlx::query_scalar(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(db)
    .await?)
}

/// Transactions committed since `before` was read with [`commits`].
pub async fn commits_since(db: &PgPool, before: i64) -> anyhow::Result<i64> {
    Ok(commits(db).await? - before)
}

/// What the database says about the sagas whose start key begins with `prefix`.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub sagas: i64,
    pub completed: i64,
    /// Sagas with no charge or more than one.
    pub not_charged_once: i64,
}

impl Check {
    pub fn ok(&self) -> bool {
        self.sagas == self.completed && self.not_charged_once == 0
    }
}

/// The start of saga `key`: ProcessPayment, or the `Steps` saga when `steps` > 0.
pub fn start(key: &str, steps: u32) -> StartSaga {
    if steps == 0 {
        return payment::start(key);
    }
    let input = test_sagas::Steps {
        steps,
        payment: payment::request(key),
    };
    StartSaga {
        saga_type: test_sagas::STEPS.into(),
        start_key: Some(key.to_owned()),
        input: serde_json::to_value(input).expect("a Steps input serializes"),
    }
}

/// `count` sagas waiting on a timer, and what they cost the orchestrator.
#[derive(Debug, Clone, Serialize)]
pub struct Sleeping {
    pub sagas: usize,
    /// From the first start published to the last timer stored.
    pub seconds: f64,
    pub orchestrator_rss_mib: Option<f64>,
    pub orchestrator_peak_rss_mib: Option<f64>,
}

/// Starts `count` `Sleep` sagas of a day each and waits until all their timers are stored.
pub async fn start_sleeping(
    driver: &Driver,
    db: &PgPool,
    count: usize,
    orchestrator: u32,
) -> anyhow::Result<Sleeping> {
    const IN_FLIGHT: usize = 256;
    let day_ms = 24 * 3600 * 1000u64;
    let started = Instant::now();
    let published: Vec<anyhow::Result<()>> = futures::stream::iter(0..count)
        .map(|i| {
            let start = StartSaga {
                saga_type: test_sagas::SLEEP.into(),
                start_key: Some(format!("sleeping-{i}")),
                input: serde_json::json!(day_ms),
            };
            async move { driver.publish_start(&start, None).await }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    published.into_iter().collect::<anyhow::Result<()>>()?;
    let deadline = started + driver.timeout.max(Duration::from_secs(count as u64 / 50));
    loop {
        let timers: i64 = sqlx::query_scalar("SELECT count(*) FROM timers")
            .fetch_one(db)
            .await?;
        if timers as usize >= count {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {timers} of {count} sleeping sagas armed their timer in time"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rss = crate::cpu::rss_mib(orchestrator);
    Ok(Sleeping {
        sagas: count,
        seconds: started.elapsed().as_secs_f64(),
        orchestrator_rss_mib: rss.map(|r| r.0),
        orchestrator_peak_rss_mib: rss.map(|r| r.1),
    })
}

/// What the database says about the sagas whose start key begins with `prefix`; `charged`:
/// each must have exactly one charge (ProcessPayment).
pub async fn check(db: &PgPool, prefix: &str, charged: bool) -> anyhow::Result<Check> {
    let (sagas, completed, not_charged_once): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE status = 'completed'),
                count(*) FILTER (WHERE charges <> 1)
         FROM (SELECT s.status, coalesce(c.n, 0) AS charges
               FROM sagas s
               LEFT JOIN (SELECT saga_id, count(*) AS n FROM charges GROUP BY saga_id) c
                      ON c.saga_id = s.id
               WHERE s.start_key LIKE $1 || '%') AS per_saga",
    )
    .bind(prefix)
    .fetch_one(db)
    .await?;
    Ok(Check {
        sagas,
        completed,
        not_charged_once: if charged { not_charged_once } else { 0 },
    })
}

/// Inserts `count` completed ProcessPayment sagas of 8 events each, a day old, in batches, then
/// analyzes the tables: the history a long-running deployment keeps.
pub async fn preload_finished(db: &PgPool, count: u64) -> anyhow::Result<()> {
    const BATCH: u64 = 50_000;
    let mut done = 0;
    while done < count {
        let batch = BATCH.min(count - done);
        let mut tx = db.begin().await?;
        sqlx::query(
            "WITH new AS (
                INSERT INTO sagas (id, saga_type, status, input, output, next_event_seq, start_key,
                                   created_at, updated_at)
                SELECT gen_random_uuid(), 'ProcessPayment', 'completed', '{}', '{}', 8,
                       'preloaded-' || n, now() - interval '1 day', now() - interval '1 day'
                FROM generate_series($1::bigint, $2::bigint) AS n
                RETURNING id, created_at)
             INSERT INTO saga_events (saga_id, seq, kind, event, recorded_at)
             SELECT new.id, e.seq, 'Preloaded', '{}', new.created_at
             FROM new CROSS JOIN generate_series(0, 7) AS e(seq)",
        )
        .bind(done as i64)
        .bind((done + batch - 1) as i64)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        done += batch;
    }
    sqlx::query("VACUUM ANALYZE").execute(db).await?;
    Ok(())
}
