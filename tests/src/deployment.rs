use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, ExchangeDeleteOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use sagaflow_amqp::{declare_core, AmqpTls, AmqpTlsArgs, OutgoingMessage, Publisher, QueueType};
use sagaflow_contracts::{headers, payments, travel, StartSaga, Topology};
use sqlx::{Connection, PgConnection, PgPool};

use crate::{wait_until, Bin, Proxy, RawActivity, Service};

const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// One isolated Sagaflow deployment: a fresh database and a fresh queue namespace on the shared
/// servers. Dropping it deletes both.
pub struct Deployment {
    pub namespace: String,
    pub topology: Topology,
    pub database_url: String,
    pub amqp_url: String,
    /// A pool on the deployment's database, for assertions.
    pub db: PgPool,
    amqp: lapin::Connection,
    publisher: Publisher,
    admin_database_url: String,
    database: String,
    log_dir: PathBuf,
    spawned: usize,
    /// For the test's own connections.
    amqp_tls: AmqpTls,
    /// See [`Servers::own_broker`].
    own_broker: bool,
    /// Environment every process of this deployment gets on top of the usual (see `set_env`).
    extra_env: Vec<(String, String)>,
    /// Activity queues declared by raw activity services, deleted with the deployment.
    raw_queues: Vec<String>,
    /// The servers as the processes reach them, when not directly (see
    /// [`Deployment::route_through_proxies`]).
    process_urls: Option<(String, String)>,
}

/// The proxies between a deployment's processes and its servers, from
/// [`Deployment::route_through_proxies`]. Keep them until the processes are gone.
pub struct ServerProxies {
    pub postgres: Proxy,
    pub rabbitmq: Proxy,
}

/// One event of a saga's history as stored.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub seq: i64,
    pub kind: String,
    pub event: serde_json::Value,
    pub at: chrono::DateTime<chrono::Utc>,
}

/// A message taken from the dead-letter queue.
#[derive(Debug)]
pub struct DeadLetter {
    pub reason: Option<String>,
    pub queue: Option<String>,
    /// `x-sagaflow-headers-truncated`: set when headers of the original were not copied.
    pub headers_truncated: Option<String>,
    pub body: Vec<u8>,
}

/// The servers a [`Deployment`] runs on, and how to reach them.
pub struct Servers {
    /// A database where the deployment's own can be created.
    pub admin_database_url: String,
    pub amqp_url: String,
    /// TLS files for RabbitMQ, given to every process as `SAGAFLOW_AMQP_*` and used by the
    /// test's own connections.
    pub amqp_tls: AmqpTlsArgs,
    /// The broker is the test's own and goes away with it: the deployment deletes nothing on
    /// it (a cluster that lost a node would keep the deletion waiting).
    pub own_broker: bool,
}

impl Servers {
    /// The shared servers: `DATABASE_URL` and `AMQP_URL`, or the local defaults.
    pub fn shared() -> Servers {
        Servers {
            admin_database_url: std::env::var("DATABASE_URL")
                .unwrap_or_else(|_| DEFAULT_DATABASE_URL.into()),
            amqp_url: std::env::var("AMQP_URL").unwrap_or_else(|_| DEFAULT_AMQP_URL.into()),
            amqp_tls: AmqpTlsArgs::default(),
            own_broker: false,
        }
    }
}

impl Deployment {
    /// A deployment on the shared servers.
    pub async fn new() -> Deployment {
        Deployment::on(Servers::shared()).await
    }

    /// A deployment on the PostgreSQL server of `admin_database_url` (a database on it that
    /// may create databases) and the RabbitMQ broker at `amqp_url`, e.g. a
    /// [`LocalPostgres`](crate::LocalPostgres) of the test's own.
    pub async fn on_servers(admin_database_url: &str, amqp_url: &str) -> Deployment {
        Deployment::on(Servers {
            admin_database_url: admin_database_url.to_owned(),
            amqp_url: amqp_url.to_owned(),
            ..Servers::shared()
        })
        .await
    }

    /// A deployment on `servers` (e.g. [`LocalTlsPostgres`](crate::LocalTlsPostgres) and
    /// [`LocalRabbitMq`](crate::LocalRabbitMq) of the test's own).
    pub async fn on(servers: Servers) -> Deployment {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let Servers {
            admin_database_url,
            amqp_url,
            amqp_tls: amqp_tls_args,
            own_broker,
        } = servers;
        let amqp_tls = amqp_tls_args
            .load(&amqp_url)
            .expect("the test's RabbitMQ TLS files can be used");
        let mut extra_env = Vec::new();
        for (key, path) in [
            ("SAGAFLOW_AMQP_CA_FILE", &amqp_tls_args.ca_file),
            ("SAGAFLOW_AMQP_CLIENT_CERT", &amqp_tls_args.client_cert),
            ("SAGAFLOW_AMQP_CLIENT_KEY", &amqp_tls_args.client_key),
        ] {
            if let Some(path) = path {
                extra_env.push((key.to_owned(), path.display().to_string()));
            }
        }
        let database = format!("sagaflow_e2e_{id}");
        let mut admin = PgConnection::connect(&admin_database_url)
            .await
            .expect("PostgreSQL is reachable at DATABASE_URL");
        sqlx::query(&format!("CREATE DATABASE {database}"))
            .execute(&mut admin)
            .await
            .expect("the test database can be created");
        let _ = admin.close().await;
        let database_url = with_database(&admin_database_url, &database);
        let db = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&database_url)
            .await
            .expect("the test database is reachable");
        // The orchestrators migrate at start-up too; doing it here lets assertions query the
        // tables before the first orchestrator is up.
        sagaflow_orchestrator::store::MIGRATOR
            .run(&db)
            .await
            .expect("the schema migrates");

        let namespace = format!("e2e-{}", &id[..12]);
        let topology = Topology::new(&namespace).expect("the namespace is valid");
        let amqp = sagaflow_amqp::connect_with_tls(&amqp_url, "sagaflow-e2e", &amqp_tls)
            .await
            .expect("RabbitMQ is reachable at AMQP_URL");
        // Declared up front so that start messages can be published before the orchestrator runs.
        declare_core(
            &amqp.create_channel().await.unwrap(),
            &topology,
            QueueType::Quorum,
        )
        .await
        .expect("the topology can be declared");
        let publisher = Publisher::open(&amqp)
            .await
            .expect("a confirm channel opens");
        let log_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../target/e2e-logs")
            .join(&namespace);
        std::fs::create_dir_all(&log_dir).expect("the log directory can be created");
        Deployment {
            namespace,
            topology,
            database_url,
            amqp_url,
            db,
            amqp,
            publisher,
            admin_database_url,
            database,
            log_dir,
            spawned: 0,
            amqp_tls,
            own_broker,
            extra_env,
            raw_queues: Vec::new(),
            process_urls: None,
        }
    }

    /// Puts a TCP proxy between every process started from now on (the CLI too) and each
    /// server: their `DATABASE_URL` and `AMQP_URL` name the proxies, while the test's own
    /// connections ([`Deployment::db`], publishing, dead letters) stay direct, so that the
    /// test can check and drive the system through the faults it makes.
    pub async fn route_through_proxies(&mut self) -> ServerProxies {
        let postgres = Proxy::start(server_address(&self.database_url, 5432).await).await;
        let rabbitmq = Proxy::start(server_address(&self.amqp_url, 5672).await).await;
        self.process_urls = Some((
            with_address(&self.database_url, postgres.addr()),
            with_address(&self.amqp_url, rabbitmq.addr()),
        ));
        ServerProxies { postgres, rabbitmq }
    }

    /// An activity service for `activity` that the test drives by hand (see [`RawActivity`]).
    pub async fn raw_activity(&mut self, activity: &str) -> RawActivity {
        self.raw_queues.push(self.topology.activity_queue(activity));
        RawActivity::start(&self.amqp, &self.topology, activity).await
    }

    /// The number of messages waiting on the queue of `activity`, declaring it (empty, deleted
    /// with the deployment) if nobody has yet.
    pub async fn activity_queue_depth(&mut self, activity: &str) -> u32 {
        let queue = self.topology.activity_queue(activity);
        if !self.raw_queues.contains(&queue) {
            self.raw_queues.push(queue.clone());
        }
        let channel = self.amqp.create_channel().await.expect("a channel opens");
        sagaflow_amqp::declare_activity_queue(
            &channel,
            &self.topology,
            QueueType::Quorum,
            activity,
        )
        .await
        .expect("the activity queue can be declared");
        let passive = lapin::options::QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let declared = channel
            .queue_declare(&queue, passive, FieldTable::default())
            .await
            .expect("the activity queue exists");
        let _ = channel.close(200, "counted").await;
        declared.message_count()
    }

    /// The body of the first message waiting on the queue of `activity`, left on the queue;
    /// fails the test if none arrives within `timeout`.
    pub async fn peek_activity_command(&mut self, activity: &str, timeout: Duration) -> Vec<u8> {
        self.activity_queue_depth(activity).await;
        let queue = self.topology.activity_queue(activity);
        let channel = self.amqp.create_channel().await.expect("a channel opens");
        let body = wait_until(&format!("a command on {queue}"), timeout, || async {
            let got = channel
                .basic_get(&queue, lapin::options::BasicGetOptions::default())
                .await
                .expect("basic.get works");
            let message = got?;
            message
                .nack(lapin::options::BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                })
                .await
                .expect("the command goes back to its queue");
            Some(message.delivery.data.clone())
        })
        .await;
        let _ = channel.close(200, "peeked").await;
        body
    }

    /// Publishes a start of `saga_type` with `input` and `start_key`.
    pub async fn start_saga(&self, saga_type: &str, input: serde_json::Value, start_key: &str) {
        self.publish_start(&StartSaga {
            saga_type: saga_type.to_owned(),
            input,
            start_key: Some(start_key.to_owned()),
        })
        .await;
    }

    /// Runs the `sagaflow` CLI with `args` against this deployment and returns its output;
    /// fails the test if it does not exit within a minute.
    pub async fn run_cli(&self, args: &[&str]) -> std::process::Output {
        let mut command = tokio::process::Command::new(Bin::Cli.path());
        command.args(args).envs(self.env()).kill_on_drop(true);
        tokio::time::timeout(Duration::from_secs(60), command.output())
            .await
            .expect("the CLI exits within a minute")
            .expect("the CLI runs")
    }

    /// The id and status of the saga of any type started with `start_key`.
    pub async fn saga_by_key(&self, start_key: &str) -> Option<(uuid::Uuid, String)> {
        sqlx::query_as("SELECT id, status FROM sagas WHERE start_key = $1")
            .bind(start_key)
            .fetch_optional(&self.db)
            .await
            .expect("sagas can be queried")
    }

    /// Waits until a saga of any type started with `start_key` exists; returns its id.
    pub async fn wait_for_start(&self, start_key: &str, timeout: Duration) -> uuid::Uuid {
        wait_until(
            &format!("saga {start_key} starts (logs: {})", self.log_dir.display()),
            timeout,
            || async { self.saga_by_key(start_key).await.map(|(id, _)| id) },
        )
        .await
    }

    /// Waits until the saga has scheduled `steps` steps; returns its history.
    pub async fn wait_for_steps(
        &self,
        saga: uuid::Uuid,
        steps: usize,
        timeout: Duration,
    ) -> Vec<Recorded> {
        wait_until(
            &format!(
                "saga {saga} schedules {steps} steps (logs: {})",
                self.log_dir.display()
            ),
            timeout,
            || async {
                let history = self.history(saga).await;
                let scheduled = history
                    .iter()
                    .filter(|e| e.kind == "ActivityScheduled")
                    .count();
                (scheduled >= steps).then_some(history)
            },
        )
        .await
    }

    /// Waits until the saga of any type started with `start_key` has `status`.
    pub async fn wait_for_status(
        &self,
        start_key: &str,
        status: &str,
        timeout: Duration,
    ) -> uuid::Uuid {
        wait_until(
            &format!(
                "saga {start_key} is {status} (logs: {})",
                self.log_dir.display()
            ),
            timeout,
            || async {
                self.saga_by_key(start_key)
                    .await
                    .filter(|(_, s)| s == status)
                    .map(|(id, _)| id)
            },
        )
        .await
    }

    /// The saga's history, in order.
    pub async fn history(&self, saga: uuid::Uuid) -> Vec<Recorded> {
        let rows: Vec<(
            i64,
            String,
            serde_json::Value,
            chrono::DateTime<chrono::Utc>,
        )> = sqlx::query_as(
            "SELECT seq, kind, event, recorded_at FROM saga_events WHERE saga_id = $1 ORDER BY seq",
        )
        .bind(saga)
        .fetch_all(&self.db)
        .await
        .expect("events can be queried");
        rows.into_iter()
            .map(|(seq, kind, event, at)| Recorded {
                seq,
                kind,
                event,
                at,
            })
            .collect()
    }

    /// Waits until the saga's history has an event of `kind`; returns the history.
    pub async fn wait_for_event(
        &self,
        saga: uuid::Uuid,
        kind: &str,
        timeout: Duration,
    ) -> Vec<Recorded> {
        wait_until(
            &format!(
                "saga {saga} records {kind} (logs: {})",
                self.log_dir.display()
            ),
            timeout,
            || async {
                let history = self.history(saga).await;
                history.iter().any(|e| e.kind == kind).then_some(history)
            },
        )
        .await
    }

    /// The environment every process of this deployment runs with.
    pub fn env(&self) -> Vec<(String, String)> {
        let (database_url, amqp_url) = self
            .process_urls
            .clone()
            .unwrap_or_else(|| (self.database_url.clone(), self.amqp_url.clone()));
        vec![
            ("DATABASE_URL".into(), database_url),
            ("AMQP_URL".into(), amqp_url),
            ("SAGAFLOW_NAMESPACE".into(), self.namespace.clone()),
            ("RUST_LOG".into(), "info,sqlx=warn".into()),
            ("RUST_BACKTRACE".into(), "1".into()),
            // Tests run side by side on one PostgreSQL (100 connections by default).
            ("SAGAFLOW_DB_MAX_CONNECTIONS".into(), "4".into()),
            ("SAGAFLOW_CONCURRENCY".into(), "4".into()),
        ]
        .into_iter()
        .chain(self.extra_env.iter().cloned())
        .collect()
    }

    /// Gives every process started from now on (the CLI too) `key=value`.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.extra_env.push((key.to_owned(), value.to_owned()));
    }

    /// Starts `bin` with this deployment's environment plus `extra`.
    pub fn spawn(&mut self, bin: Bin, extra: &[(&str, &str)]) -> Service {
        let mut env = self.env();
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self.spawned += 1;
        let log = self
            .log_dir
            .join(format!("{:02}-{}.log", self.spawned, bin.name()));
        Service::spawn(bin, &env, log)
    }

    /// Starts `bin` (an orchestrator) with its HTTP API on a free port of 127.0.0.1, behind
    /// `token` if given, plus `extra` environment; returns once `/healthz` answers.
    pub async fn spawn_with_api(
        &mut self,
        bin: Bin,
        token: Option<&str>,
        extra: &[(&str, &str)],
    ) -> (Service, crate::ApiClient) {
        let port = crate::free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut env = vec![("SAGAFLOW_API_ADDR", addr.as_str())];
        if let Some(token) = token {
            env.push(("SAGAFLOW_API_TOKEN", token));
        }
        env.extend_from_slice(extra);
        let service = self.spawn(bin, &env);
        let api = crate::ApiClient::new(port, token);
        api.wait_until_up(Duration::from_secs(30)).await;
        (service, api)
    }

    /// Starts `bin` (an activity service) serving `/metrics` on a free port of 127.0.0.1, plus
    /// `extra` environment; returns once `/metrics` answers.
    pub async fn spawn_with_metrics(
        &mut self,
        bin: Bin,
        extra: &[(&str, &str)],
    ) -> (Service, crate::ApiClient) {
        let port = crate::free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut env = vec![("SAGAFLOW_METRICS_ADDR", addr.as_str())];
        env.extend_from_slice(extra);
        let service = self.spawn(bin, &env);
        let metrics = crate::ApiClient::new(port, None);
        metrics
            .wait_until_answers("/metrics", Duration::from_secs(30))
            .await;
        (service, metrics)
    }

    /// Starts the three demo activity services.
    pub fn spawn_activity_services(&mut self) -> Vec<Service> {
        [Bin::PaymentValidator, Bin::Charger, Bin::ReceiptSender]
            .into_iter()
            .map(|bin| self.spawn(bin, &[]))
            .collect()
    }

    /// Publishes a start message (with a fresh message id) and waits for the broker's confirm.
    pub async fn publish_start(&self, start: &StartSaga) {
        self.publish_to_start_queue(
            serde_json::to_vec(start).unwrap(),
            &uuid::Uuid::new_v4().to_string(),
        )
        .await;
    }

    /// Publishes `body` as is on the start queue.
    pub async fn publish_to_start_queue(&self, body: Vec<u8>, message_id: &str) {
        self.publish_raw(&self.topology.start_queue(), body, message_id)
            .await;
    }

    /// Publishes `body` as is on `queue` and waits for the broker's confirm.
    pub async fn publish_raw(&self, queue: &str, body: Vec<u8>, message_id: &str) {
        let message = OutgoingMessage {
            exchange: String::new(),
            routing_key: queue.to_owned(),
            message_id: message_id.to_owned(),
            message_type: String::new(),
            headers: Vec::new(),
            body,
            ..Default::default()
        };
        self.publisher
            .publish_confirmed(&message)
            .await
            .expect("the message is confirmed");
    }

    /// Publishes `body` with `properties` (anything a client can set) on `queue` and waits for the
    /// broker's confirm.
    pub async fn publish_with_properties(
        &self,
        queue: &str,
        body: &[u8],
        properties: lapin::BasicProperties,
    ) {
        let confirm = self
            .publisher
            .channel()
            .basic_publish(
                "",
                queue,
                lapin::options::BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                body,
                properties,
            )
            .await
            .expect("the message is sent")
            .await
            .expect("the broker answers");
        assert_eq!(
            confirm,
            lapin::publisher_confirm::Confirmation::Ack(None),
            "the broker took the message for {queue}"
        );
    }

    /// Publishes `body` on `queue` with headers that nest tables and arrays `levels` deep, from
    /// a process of its own with a stack large enough to serialize them
    /// (`src/bin/publish-nested-headers.rs`).
    pub async fn publish_with_nested_headers(
        &self,
        queue: &str,
        levels: usize,
        body: &[u8],
        message_id: &str,
    ) {
        use tokio::io::AsyncWriteExt;
        let mut child = tokio::process::Command::new(Bin::NestedHeaderPublisher.path())
            .args([queue, &levels.to_string(), message_id])
            .env("AMQP_URL", &self.amqp_url)
            // lapin's I/O thread serializes the headers recursively: about 4.3 KB per level in
            // a debug build.
            .env(
                "RUST_MIN_STACK",
                (levels * 16 * 1024).max(8 << 20).to_string(),
            )
            .stdin(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("publish-nested-headers starts");
        let mut stdin = child.stdin.take().expect("stdin is piped");
        stdin.write_all(body).await.expect("the body is written");
        drop(stdin);
        let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
            .await
            .expect("publish-nested-headers finishes within a minute")
            .expect("publish-nested-headers can be waited for");
        assert!(status.success(), "publish-nested-headers failed: {status}");
    }

    /// The id and status of the `ProcessPayment` saga started with `start_key`.
    pub async fn saga(&self, start_key: &str) -> Option<(uuid::Uuid, String)> {
        sqlx::query_as("SELECT id, status FROM sagas WHERE saga_type = $1 AND start_key = $2")
            .bind(payments::PROCESS_PAYMENT)
            .bind(start_key)
            .fetch_optional(&self.db)
            .await
            .expect("sagas can be queried")
    }

    /// Waits until the saga started with `start_key` is no longer running; returns its status.
    pub async fn wait_for_end(&self, start_key: &str, timeout: Duration) -> String {
        wait_until(
            &format!("saga {start_key} ends (logs: {})", self.log_dir.display()),
            timeout,
            || async {
                self.saga(start_key)
                    .await
                    .map(|(_, status)| status)
                    .filter(|status| status != "running")
            },
        )
        .await
    }

    /// Why the saga started with `start_key` failed or is stuck (`sagas.error`).
    pub async fn saga_error(&self, start_key: &str) -> serde_json::Value {
        sqlx::query_scalar("SELECT error FROM sagas WHERE start_key = $1")
            .bind(start_key)
            .fetch_one(&self.db)
            .await
            .expect("the saga exists")
    }

    /// The saga's history as event kinds, in order.
    pub async fn history_kinds(&self, saga: uuid::Uuid) -> Vec<String> {
        sqlx::query_scalar("SELECT kind FROM saga_events WHERE saga_id = $1 ORDER BY seq")
            .bind(saga)
            .fetch_all(&self.db)
            .await
            .expect("events can be queried")
    }

    /// Runs a `SELECT count(*) ...` on the deployment's database.
    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.db)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Waits for `n` messages on the dead-letter queue, takes and acks them.
    pub async fn take_dead_letters(&self, n: usize, timeout: Duration) -> Vec<DeadLetter> {
        let channel = self.amqp.create_channel().await.unwrap();
        let mut consumer = channel
            .basic_consume(
                &self.topology.dead_letter_queue(),
                "",
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("the dead-letter queue can be consumed");
        let mut letters = Vec::new();
        while letters.len() < n {
            let next = tokio::time::timeout(timeout, consumer.next()).await;
            let Ok(Some(Ok(delivery))) = next else {
                panic!(
                    "only {} of {n} dead letters arrived within {timeout:?}: {letters:?}",
                    letters.len()
                );
            };
            letters.push(DeadLetter {
                reason: sagaflow_amqp::header(&delivery, headers::DEAD_LETTER_REASON),
                queue: sagaflow_amqp::header(&delivery, headers::DEAD_LETTER_QUEUE),
                headers_truncated: sagaflow_amqp::header(
                    &delivery,
                    sagaflow_amqp::HEADERS_TRUNCATED,
                ),
                body: delivery.data.clone(),
            });
            delivery.ack(BasicAckOptions::default()).await.unwrap();
        }
        let _ = channel.close(200, "done").await;
        letters
    }

    /// Messages waiting on the dead-letter queue now.
    pub async fn dead_letter_count(&self) -> u32 {
        let channel = self.amqp.create_channel().await.unwrap();
        let queue = channel
            .queue_declare(
                &self.topology.dead_letter_queue(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("the dead-letter queue exists");
        let _ = channel.close(200, "counted").await;
        queue.message_count()
    }

    /// Where the processes of this deployment log.
    pub fn log_dir(&self) -> &std::path::Path {
        &self.log_dir
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        let mut queues = vec![
            self.topology.start_queue(),
            self.topology.results_queue(),
            self.topology.heartbeats_queue(),
            self.topology.dead_letter_queue(),
            self.topology.dead_letter_watch_queue(),
            self.topology
                .activity_queue(payments::VALIDATE_PAYMENT_INFO),
            self.topology.activity_queue(payments::CHARGE_CUSTOMER),
            self.topology.activity_queue(payments::SEND_RECEIPT),
            self.topology.activity_queue(payments::REFUND_CHARGE),
            self.topology.signals_queue(),
            self.topology.control_queue(),
        ];
        queues.extend(
            [
                travel::RESERVE_FLIGHT,
                travel::CANCEL_FLIGHT,
                travel::RESERVE_HOTEL,
                travel::CANCEL_HOTEL,
                travel::RESERVE_CAR,
                travel::CANCEL_CAR,
            ]
            .map(|activity| self.topology.activity_queue(activity)),
        );
        queues.append(&mut self.raw_queues);
        let exchanges = [
            self.topology.dead_letter_exchange(),
            self.topology.activity_cancels_exchange(),
        ];
        let amqp_url = self.amqp_url.clone();
        let amqp_tls = self.amqp_tls.clone();
        let own_broker = self.own_broker;
        let admin_url = self.admin_database_url.clone();
        let database = self.database.clone();
        let db = self.db.clone();
        // Drop runs inside the test's runtime, which cannot be blocked on: clean up on a thread
        // with a runtime of its own.
        // Logs are for failures; a passing test leaves none behind.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.log_dir);
        }
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                db.close().await;
                let amqp = match own_broker {
                    true => None,
                    false => sagaflow_amqp::connect_with_tls(
                        &amqp_url,
                        "sagaflow-e2e-cleanup",
                        &amqp_tls,
                    )
                    .await
                    .ok(),
                };
                if let Some(amqp) = amqp {
                    if let Ok(channel) = amqp.create_channel().await {
                        for queue in &queues {
                            let _ = channel
                                .queue_delete(queue, QueueDeleteOptions::default())
                                .await;
                        }
                        for exchange in &exchanges {
                            let _ = channel
                                .exchange_delete(exchange, ExchangeDeleteOptions::default())
                                .await;
                        }
                    }
                    let _ = amqp.close(200, "cleanup").await;
                }
                if let Ok(mut admin) = PgConnection::connect(&admin_url).await {
                    let _ =
                        sqlx::query(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
                            .execute(&mut admin)
                            .await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// `url` pointing at `database` instead of its own.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{database}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// The address of the server `url` names (`default_port` if it names none).
async fn server_address(url: &str, default_port: u16) -> SocketAddr {
    let parsed = url::Url::parse(url).unwrap_or_else(|e| panic!("{url} is not a URL: {e}"));
    let host = parsed.host_str().unwrap_or("127.0.0.1").to_owned();
    let port = parsed.port().unwrap_or(default_port);
    tokio::net::lookup_host((host.as_str(), port))
        .await
        .ok()
        .and_then(|mut addresses| addresses.next())
        .unwrap_or_else(|| panic!("{host}:{port} does not resolve"))
}

/// `url` with its host and port replaced by `address`.
fn with_address(url: &str, address: SocketAddr) -> String {
    let mut parsed = url::Url::parse(url).unwrap_or_else(|e| panic!("{url} is not a URL: {e}"));
    parsed
        .set_ip_host(address.ip())
        .expect("the URL can have a host");
    parsed
        .set_port(Some(address.port()))
        .expect("the URL can have a port");
    parsed.into()
}

/// Inputs for the demo `ProcessPayment` saga.
pub mod payment {
    use sagaflow_contracts::payments::{PaymentRequest, PROCESS_PAYMENT};
    use sagaflow_contracts::StartSaga;

    /// A valid payment for order `order_id`, started with `order_id` as its start key.
    pub fn start(order_id: &str) -> StartSaga {
        start_with(request(order_id))
    }

    pub fn request(order_id: &str) -> PaymentRequest {
        PaymentRequest {
            order_id: order_id.to_owned(),
            customer_id: format!("customer-of-{order_id}"),
            email: "ada@example.com".into(),
            amount_cents: 4200,
            currency: "EUR".into(),
            card_token: "tok_4f9a2c7e1b3d5a60".into(),
            card_last4: "4242".into(),
        }
    }

    pub fn start_with(request: PaymentRequest) -> StartSaga {
        StartSaga {
            saga_type: PROCESS_PAYMENT.into(),
            start_key: Some(request.order_id.clone()),
            input: serde_json::to_value(request).expect("a payment request serializes"),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_database_is_swapped_in_the_url() {
        assert_eq!(
            super::with_database("postgres://u@h:5432/postgres?sslmode=disable", "x"),
            "postgres://u@h:5432/x?sslmode=disable"
        );
        assert_eq!(
            super::with_database("postgres://u@h", "x"),
            "postgres://u@h/x"
        );
    }

    #[test]
    fn the_address_is_swapped_in_the_url() {
        let proxy = "127.0.0.1:40001".parse().unwrap();
        assert_eq!(
            super::with_address("amqp://guest:guest@localhost:5672/%2f", proxy),
            "amqp://guest:guest@127.0.0.1:40001/%2f"
        );
        assert_eq!(
            super::with_address("postgres://postgres@127.0.0.1/db?sslmode=disable", proxy),
            "postgres://postgres@127.0.0.1:40001/db?sslmode=disable"
        );
    }
}
