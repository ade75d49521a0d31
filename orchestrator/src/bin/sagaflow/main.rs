//! The Sagaflow command line: start, list, show, watch and operate sagas (resume, cancel,
//! terminate, retry compensation, signal), dead letters, export and replay-check histories.

use std::time::Duration;
use tracing::Instrument;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use sagaflow_amqp::{OutgoingMessage, Publisher};
use sagaflow_contracts::{
    headers, ControlAction, HistoryEvent, SagaFinished, SagaId, SagaStatus, SignalSaga, StartSaga,
    Topology,
};
use sagaflow_orchestrator::store::{self, SagaRow};
use sqlx::PgPool;

#[derive(Parser)]
#[command(
    name = "sagaflow",
    version,
    about = "Start, list, inspect and watch Sagaflow sagas; list and re-publish dead letters"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Publish a start message on the start queue.
    Start {
        /// The registered saga type.
        #[arg(long, default_value = "ProcessPayment")]
        saga_type: String,
        /// The saga's input, as JSON.
        #[arg(long)]
        input: String,
        /// Makes the start idempotent: the same key twice starts one saga.
        #[arg(long)]
        start_key: Option<String>,
        /// Wait until the saga has finished, then show it.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits, in seconds (at least 1).
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
        timeout_secs: u64,
        #[command(flatten)]
        connection: Connection,
    },
    /// List the most recently started sagas.
    List {
        /// Only sagas with this status: running, completed, failed, stuck, compensated,
        /// compensation_failed, cancelled or terminated.
        #[arg(long)]
        status: Option<SagaStatus>,
        /// How many sagas to list, most recently started first.
        #[arg(long, default_value_t = 20)]
        limit: i64,
        /// Print JSON (one array) instead of text.
        #[arg(long)]
        json: bool,
        /// PostgreSQL holding the orchestrator's tables.
        #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, hide_env_values = true)]
        database_url: String,
    },
    /// Follow a saga live: print its history as it grows, until it completes or fails.
    /// Exits non-zero if it failed.
    Watch {
        saga_id: SagaId,
        /// Print one JSON object per event (and the saga at the end) instead of text.
        #[arg(long)]
        json: bool,
        /// Give up after this many seconds (0: never).
        #[arg(long, default_value_t = 0)]
        timeout_secs: u64,
        #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, hide_env_values = true)]
        database_url: String,
    },
    /// List recorded dead letters with their reasons, newest first, or re-publish one to the
    /// queue it came from.
    DeadLetters {
        /// Re-publish the dead letter with this id (see the list) instead of listing.
        #[arg(long)]
        republish: Option<i64>,
        #[arg(long, default_value_t = 20)]
        limit: i64,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        connection: Connection,
    },
    /// Cancel a saga: its code sees the cancellation at its next await, running activities are
    /// told, and the compensations of its completed steps run (status `cancelled`).
    Cancel {
        saga_id: SagaId,
        /// Why, for the history.
        #[arg(long, default_value = "cancelled by an operator")]
        reason: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Terminate a saga: it stops at once; nothing more runs and nothing is compensated.
    Terminate {
        saga_id: SagaId,
        /// Why, for the history.
        #[arg(long, default_value = "terminated by an operator")]
        reason: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Run the failed compensation of a `compensation_failed` saga again, and go on.
    RetryCompensation {
        saga_id: SagaId,
        #[command(flatten)]
        connection: Connection,
    },
    /// Send a signal to a saga, by id or by saga type and start key.
    Signal {
        /// The saga's id.
        #[arg(required_unless_present = "start_key", conflicts_with = "start_key")]
        saga_id: Option<SagaId>,
        /// Instead of an id: the start key the saga was started with (with --saga-type).
        #[arg(long)]
        start_key: Option<String>,
        /// With --start-key: the saga type.
        #[arg(long, default_value = "ProcessPayment")]
        saga_type: String,
        /// The signal's name, as the saga code awaits it (`ctx.signal("name")`).
        #[arg(long)]
        name: String,
        /// The signal's payload, as JSON.
        #[arg(long, default_value = "null")]
        payload: String,
        /// Makes the signal idempotent: the same id twice reaches the saga once.
        #[arg(long)]
        signal_id: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
    /// List the outbox rows the relay set aside after the broker refused them repeatedly, or
    /// put them back in line (after fixing the cause).
    Outbox {
        /// Put these parked rows back in line (ids from the list).
        #[arg(long, num_args = 1.., conflicts_with = "unpark_all")]
        unpark: Vec<i64>,
        /// Put every parked row back in line.
        #[arg(long)]
        unpark_all: bool,
        /// PostgreSQL holding the orchestrator's tables.
        #[arg(long, env = "DATABASE_URL", hide_env_values = true, default_value = DEFAULT_DATABASE_URL)]
        database_url: String,
    },
    /// Write a saga's history to a file (for `replay-check`, or a test of your own).
    Export {
        saga_id: SagaId,
        /// The file to write; standard output if absent.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        /// PostgreSQL holding the orchestrator's tables.
        #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, hide_env_values = true)]
        database_url: String,
    },
    /// Replay every exported history in a directory against the demo sagas of this build and
    /// list those that would diverge (exit non-zero if any).
    ReplayCheck {
        /// A directory of files written by `sagaflow export`.
        dir: std::path::PathBuf,
    },
    /// Resume a stuck saga after its code was fixed: an orchestrator replays it with the code
    /// it runs now and, if the history still fits, it goes on from where it stopped.
    Resume {
        /// The saga to resume.
        #[arg(required_unless_present = "all_stuck", conflicts_with = "all_stuck")]
        saga_id: Option<SagaId>,
        /// Resume every stuck saga of --saga-type.
        #[arg(long, requires = "saga_type")]
        all_stuck: bool,
        /// With --all-stuck: the saga type.
        #[arg(long)]
        saga_type: Option<String>,
        /// PostgreSQL holding the orchestrator's tables.
        #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, hide_env_values = true)]
        database_url: String,
    },
    /// Show a saga's state and full history, by id or by start key.
    Show {
        /// The saga's id (as printed by `list`).
        #[arg(required_unless_present = "start_key", conflicts_with = "start_key")]
        saga_id: Option<SagaId>,
        /// Instead of an id: the start key the saga was started with (with --saga-type).
        #[arg(long)]
        start_key: Option<String>,
        /// With --start-key: the saga type.
        #[arg(long, default_value = "ProcessPayment")]
        saga_type: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// PostgreSQL holding the orchestrator's tables.
        #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, hide_env_values = true)]
        database_url: String,
    },
}

const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

mod operate;

#[derive(clap::Args)]
struct Connection {
    /// The RabbitMQ broker the orchestrator consumes from.
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_env_values = true,
        hide_default_value = true
    )]
    amqp_url: String,
    /// Prefix of the queue names; the orchestrator's namespace.
    #[arg(long, env = "SAGAFLOW_NAMESPACE", default_value = "sagaflow")]
    namespace: String,
    /// PostgreSQL holding the orchestrator's tables; needed by --wait.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, hide_env_values = true)]
    database_url: String,
    #[command(flatten)]
    amqp_tls: sagaflow_amqp::AmqpTlsArgs,
}

impl Connection {
    /// A connection to the broker, with the TLS files (read and checked first).
    async fn amqp(&self) -> anyhow::Result<sagaflow_amqp::Connection> {
        let tls = self.amqp_tls.load(&self.amqp_url)?;
        Ok(sagaflow_amqp::connect_with_tls(&self.amqp_url, "sagaflow-cli", &tls).await?)
    }
}

/// Exits with the error printed once per cause (`Report`).
#[tokio::main]
async fn main() -> Result<(), sagaflow_process::Report> {
    // `sagaflow list | head -1`: a closed pipe ends the process quietly, as for any Unix tool,
    // instead of a panic in `println!`.
    // SAFETY: signal(2) with SIG_DFL installs no handler of ours; nothing else in this process
    // handles SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // Spans of `start` go over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set (flushed on drop).
    let _traces = sagaflow_process::init_trace_export();
    Ok(run().await?)
}

async fn run() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Start {
            saga_type,
            input,
            start_key,
            wait,
            timeout_secs,
            connection,
        } => {
            let input = serde_json::from_str(&input).context("--input is not JSON")?;
            // With the key, sensitive fields are encrypted before they reach the broker.
            let input = sagaflow_codec::from_env()?.encode(input)?;
            let message_id = uuid::Uuid::new_v4().to_string();
            let key = start_key.clone().unwrap_or_else(|| message_id.clone());
            let start = StartSaga {
                saga_type: saga_type.clone(),
                input,
                start_key,
            };
            // The root of the saga's trace: the orchestrator continues it.
            let span = tracing::info_span!(
                "publish start",
                otel.kind = "producer",
                saga_type = %saga_type,
                start_key = %key,
                messaging.system = "rabbitmq",
                messaging.operation.type = "send",
                messaging.message.id = %message_id,
            );
            let trace = sagaflow_process::trace_headers(&span);
            if !wait {
                publish_start(&connection, &start, &message_id, trace)
                    .instrument(span)
                    .await?;
                println!("start message {message_id} published (start key {key})");
                return Ok(());
            }
            let timeout = Duration::from_secs(timeout_secs);
            let outcome = operate::start_and_wait(&connection, &start, &message_id, timeout, trace)
                .instrument(span)
                .await?;
            print_outcome(&connection, &outcome).await;
            match outcome.status.as_str() {
                "completed" => Ok(()),
                status => bail!(
                    "saga {} ended {status}",
                    outcome.saga_id.map_or("-".to_owned(), |id| id.to_string())
                ),
            }
        }
        Command::List {
            status,
            limit,
            json,
            database_url,
        } => {
            let pool = connect_db(&database_url).await?;
            let sagas = store::list_sagas(&pool, status, limit).await?;
            if json {
                let sagas: Vec<_> = sagas.iter().map(saga_json).collect();
                println!("{}", serde_json::to_string_pretty(&sagas)?);
                return Ok(());
            }
            print!("{}", list_table(&sagas));
            Ok(())
        }
        Command::Resume {
            saga_id,
            all_stuck,
            saga_type,
            database_url,
        } => {
            let pool = connect_db(&database_url).await?;
            if all_stuck {
                let saga_type = saga_type.unwrap_or_default();
                let n = store::request_resume_all_stuck(&pool, &saga_type).await?;
                println!("resume requested for {n} stuck saga(s) of type {saga_type}");
            } else if let Some(saga_id) = saga_id {
                if !store::request_resume(&pool, saga_id).await? {
                    match store::get_saga(&pool, saga_id).await? {
                        None => bail!("no saga {saga_id}"),
                        Some(saga) => bail!("saga {saga_id} is {}, not stuck", saga.status),
                    }
                }
                println!("resume of saga {saga_id} requested; an orchestrator replays it now (see `sagaflow show {saga_id}`)");
            }
            Ok(())
        }
        Command::Watch {
            saga_id,
            json,
            timeout_secs,
            database_url,
        } => {
            let pool = connect_db(&database_url).await?;
            let timeout = (timeout_secs > 0).then(|| Duration::from_secs(timeout_secs));
            watch(&pool, saga_id, json, timeout).await
        }
        Command::DeadLetters {
            republish,
            limit,
            json,
            connection,
        } => dead_letters(&connection, republish, limit, json).await,
        Command::Cancel {
            saga_id,
            reason,
            connection,
        } => {
            operate::control(&connection, saga_id, ControlAction::Cancel, reason).await?;
            println!("cancel of saga {saga_id} sent");
            Ok(())
        }
        Command::Terminate {
            saga_id,
            reason,
            connection,
        } => {
            operate::control(&connection, saga_id, ControlAction::Terminate, reason).await?;
            println!("termination of saga {saga_id} sent");
            Ok(())
        }
        Command::RetryCompensation {
            saga_id,
            connection,
        } => {
            let action = ControlAction::RetryCompensation;
            operate::control(&connection, saga_id, action, String::new()).await?;
            println!("retry of saga {saga_id}'s compensation sent");
            Ok(())
        }
        Command::Signal {
            saga_id,
            start_key,
            saga_type,
            name,
            payload,
            signal_id,
            connection,
        } => {
            let payload = serde_json::from_str(&payload).context("--payload is not JSON")?;
            let by_key = saga_id.is_none();
            let signal = SignalSaga {
                saga_id,
                saga_type: by_key.then_some(saga_type),
                start_key,
                name: name.clone(),
                payload,
                signal_id,
            };
            operate::signal(&connection, signal).await?;
            println!("signal {name:?} sent");
            Ok(())
        }
        Command::Export {
            saga_id,
            out,
            database_url,
        } => {
            let pool = connect_db(&database_url).await?;
            operate::export(&pool, saga_id, out.as_deref()).await
        }
        Command::ReplayCheck { dir } => operate::replay_check(&dir),
        Command::Outbox {
            unpark,
            unpark_all,
            database_url,
        } => {
            let pool = connect_db(&database_url).await?;
            if unpark_all || !unpark.is_empty() {
                let n = store::unpark_outbox_rows(&pool, &unpark).await?;
                println!("{n} parked row(s) put back in line");
                return Ok(());
            }
            let rows = store::parked_outbox_rows(&pool).await?;
            println!("{} parked outbox row(s)", rows.len());
            for row in rows {
                println!(
                    "{:>8}  {}  saga {}  {} {}  {} bytes, {} attempts: {}",
                    row.id,
                    row.parked_at.format("%Y-%m-%d %H:%M:%S"),
                    row.saga_id,
                    row.message_type,
                    if row.exchange.is_empty() {
                        &row.routing_key
                    } else {
                        &row.exchange
                    },
                    row.body_bytes,
                    row.attempts,
                    row.last_error.as_deref().unwrap_or("-")
                );
            }
            Ok(())
        }
        Command::Show {
            saga_id,
            start_key,
            saga_type,
            json,
            database_url,
        } => {
            let pool = connect_db(&database_url).await?;
            let saga = match saga_id {
                Some(saga_id) => store::get_saga(&pool, saga_id)
                    .await?
                    .with_context(|| format!("no saga {saga_id}"))?,
                None => {
                    let key = start_key.unwrap_or_default();
                    store::find_saga_by_start_key(&pool, &saga_type, &key)
                        .await?
                        .with_context(|| {
                            format!("no {saga_type} saga with start key {key:?} (yet)")
                        })?
                }
            };
            let saga_id = saga.id;
            if json {
                let events = store::load_history(&pool, saga_id, &*payload_codec()).await?;
                let mut out = saga_json(&saga);
                out["history"] = serde_json::to_value(events)?;
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                print_saga(&pool, &saga).await?;
            }
            Ok(())
        }
    }
}

/// How this CLI shows payloads: decoded where `SAGAFLOW_PAYLOAD_KEY` is set and right,
/// encrypted values shown as stored otherwise.
fn payload_codec() -> sagaflow_codec::SharedCodec {
    sagaflow_codec::from_env().unwrap_or_else(|_| std::sync::Arc::new(sagaflow_codec::Plain))
}

/// A saga's row as JSON, as `show --json` prints it (without the history).
fn saga_json(saga: &SagaRow) -> serde_json::Value {
    serde_json::json!({
        "id": saga.id, "saga_type": saga.saga_type, "status": saga.status,
        "start_key": saga.start_key, "input": payload_codec().reveal(saga.input.clone()),
        "output": saga.output.clone().map(|output| payload_codec().reveal(output)),
        "error": saga.error, "created_at": saga.created_at, "updated_at": saga.updated_at,
    })
}

/// Prints the saga's events as they are recorded until it completes or fails.
async fn watch(
    pool: &PgPool,
    saga_id: SagaId,
    json: bool,
    timeout: Option<Duration>,
) -> anyhow::Result<()> {
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let mut printed = 0usize;
    let mut said_stuck = false;
    loop {
        let Some(saga) = store::get_saga(pool, saga_id).await? else {
            bail!("no saga {saga_id}");
        };
        let history = store::load_history(pool, saga_id, &*payload_codec()).await?;
        for event in history.iter().skip(printed) {
            if json {
                println!("{}", serde_json::to_string(event)?);
            } else {
                print_event(event)?;
            }
        }
        printed = history.len();
        if saga.status == SagaStatus::Stuck && !said_stuck && !json {
            println!(
                "saga {saga_id} is stuck: {}",
                saga.error.clone().unwrap_or_default()
            );
        }
        said_stuck = saga.status == SagaStatus::Stuck;
        if saga.status.is_final() {
            if json {
                println!("{}", serde_json::to_string(&saga_json(&saga))?);
            } else {
                println!("saga {saga_id} {}", saga.status);
            }
            if saga.status != SagaStatus::Completed {
                bail!("saga {saga_id} ended {}", saga.status);
            }
            return Ok(());
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() > d) {
            bail!("saga {saga_id} is still {} after {timeout:?}", saga.status);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn dead_letters(
    connection: &Connection,
    republish: Option<i64>,
    limit: i64,
    json: bool,
) -> anyhow::Result<()> {
    let pool = connect_db(&connection.database_url).await?;
    let Some(id) = republish else {
        let letters = store::list_dead_letters(&pool, None, limit).await?;
        if json {
            let out: Vec<_> = letters.iter().map(dead_letter_json).collect();
            println!("{}", serde_json::to_string_pretty(&out)?);
            return Ok(());
        }
        println!(
            "{:>6}  {:<23}  {:<30}  {:<11}  reason",
            "id", "dead-lettered", "queue", "republished"
        );
        for letter in letters {
            println!(
                "{:>6}  {:<23}  {:<30}  {:<11}  {}",
                letter.id,
                letter.dead_lettered_at.format("%Y-%m-%d %H:%M:%S%.3f"),
                letter.source_queue.as_deref().unwrap_or("-"),
                if letter.republished_at.is_some() {
                    "yes"
                } else {
                    "no"
                },
                letter.reason
            );
        }
        return Ok(());
    };
    let Some(letter) = store::get_dead_letter(&pool, id).await? else {
        bail!("no dead letter {id}");
    };
    if let Some(at) = letter.republished_at {
        bail!("dead letter {id} was re-published at {at}");
    }
    let Some(message) = letter.republish_message() else {
        bail!("dead letter {id} does not say which queue it came from");
    };
    let amqp = connection.amqp().await?;
    Publisher::open(&amqp)
        .await?
        .publish_confirmed(&message)
        .await
        .with_context(|| format!("cannot publish to {}", message.routing_key))?;
    let _ = amqp.close(200, "done").await;
    store::mark_republished(&pool, id).await?;
    if json {
        let letter = store::get_dead_letter(&pool, id).await?.unwrap_or(letter);
        println!(
            "{}",
            serde_json::to_string_pretty(&dead_letter_json(&letter))?
        );
    } else {
        println!("dead letter {id} re-published to {}", message.routing_key);
    }
    Ok(())
}

fn dead_letter_json(letter: &store::DeadLetterRow) -> serde_json::Value {
    serde_json::json!({
        "id": letter.id, "message_id": letter.message_id, "message_type": letter.message_type,
        "reason": letter.reason, "source_queue": letter.source_queue, "headers": letter.headers,
        "body": String::from_utf8_lossy(&letter.body),
        "dead_lettered_at": letter.dead_lettered_at, "republished_at": letter.republished_at,
    })
}

async fn publish_start(
    connection: &Connection,
    start: &StartSaga,
    message_id: &str,
    trace: Vec<(String, String)>,
) -> anyhow::Result<()> {
    let topology = Topology::new(&connection.namespace)?;
    let amqp = connection.amqp().await?;
    let publisher = Publisher::open(&amqp).await?;
    let message = OutgoingMessage {
        exchange: String::new(),
        routing_key: topology.start_queue(),
        message_id: message_id.to_owned(),
        message_type: headers::message_type::START_SAGA.to_owned(),
        headers: trace,
        body: serde_json::to_vec(start)?,
        ..Default::default()
    };
    publisher
        .publish_confirmed(&message)
        .await
        .context("is the orchestrator's start queue declared? start the orchestrator once first")?;
    let _ = amqp.close(200, "done").await;
    Ok(())
}

/// Prints how a saga ended, as its reply said; and its history if the database is at hand.
async fn print_outcome(connection: &Connection, outcome: &SagaFinished) {
    let saga = outcome.saga_id.map_or("-".to_owned(), |id| id.to_string());
    println!("saga       {saga}");
    println!("type       {}", outcome.saga_type);
    println!("status     {}", outcome.status);
    if let Some(key) = &outcome.start_key {
        println!("start key  {key}");
    }
    if let Some(output) = &outcome.output {
        println!("output     {}", payload_codec().reveal(output.clone()));
    }
    if let Some(error) = &outcome.error {
        println!("error      {error}");
    }
    let Some(saga_id) = outcome.saga_id else {
        return;
    };
    // The history is a bonus: the outcome above needed only the broker.
    let pool = tokio::time::timeout(
        Duration::from_secs(3),
        PgPool::connect(&connection.database_url),
    )
    .await;
    if let Ok(Ok(pool)) = pool {
        if let Ok(Some(row)) = store::get_saga(&pool, saga_id).await {
            println!("history");
            if let Ok(history) = store::load_history(&pool, row.id, &*payload_codec()).await {
                for event in &history {
                    let _ = print_event(event);
                }
            }
        }
    }
}

async fn connect_db(url: &str) -> anyhow::Result<PgPool> {
    PgPool::connect(url).await.with_context(|| {
        format!(
            "cannot connect to PostgreSQL at {}",
            sagaflow_amqp::redact(url)
        )
    })
}

/// The `list` table, each column as wide as its widest value.
fn list_table(sagas: &[SagaRow]) -> String {
    let header = ["saga", "status", "type", "updated", "start key"].map(str::to_owned);
    let rows: Vec<[String; 5]> = sagas
        .iter()
        .map(|saga| {
            [
                saga.id.to_string(),
                saga.status.to_string(),
                saga.saga_type.clone(),
                saga.updated_at.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
                saga.start_key.clone().unwrap_or_else(|| "-".to_owned()),
            ]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

async fn print_saga(pool: &PgPool, saga: &SagaRow) -> anyhow::Result<()> {
    println!("saga       {}", saga.id);
    println!("type       {}", saga.saga_type);
    println!("status     {}", saga.status);
    println!("start key  {}", saga.start_key.as_deref().unwrap_or("-"));
    println!("started    {}", saga.created_at);
    println!("updated    {}", saga.updated_at);
    println!("input      {}", payload_codec().reveal(saga.input.clone()));
    if let Some(output) = &saga.output {
        println!("output     {}", payload_codec().reveal(output.clone()));
    }
    if let Some(error) = &saga.error {
        println!("error      {error}");
    }
    println!("history");
    for event in store::load_history(pool, saga.id, &*payload_codec()).await? {
        print_event(&event)?;
    }
    Ok(())
}

fn print_event(HistoryEvent { seq, at, event }: &HistoryEvent) -> anyhow::Result<()> {
    {
        let mut body = serde_json::to_value(event)?;
        if let Some(map) = body.as_object_mut() {
            // The retry policy and input hash of each step are in `show --json`.
            for noise in ["type", "options", "input_hash"] {
                map.remove(noise);
            }
        }
        println!(
            "  {seq:>3}  {}  {:<21} {body}",
            at.format("%H:%M:%S%.3f"),
            event.kind()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(saga_type: &str, start_key: Option<&str>) -> SagaRow {
        SagaRow {
            id: SagaId::new_random(),
            saga_type: saga_type.to_owned(),
            status: SagaStatus::Completed,
            input: serde_json::Value::Null,
            output: None,
            error: None,
            next_event_seq: 0,
            start_key: start_key.map(str::to_owned),
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
            reply_to: None,
            correlation_id: None,
            trace_context: Vec::new(),
        }
    }

    #[test]
    fn list_columns_are_as_wide_as_their_longest_value() {
        let table = list_table(&[
            row("ProcessPayment", Some("order-1")),
            row("AVeryLongSagaTypeNameIndeed", None),
        ]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        let starts = |line: &str| line.find("order-1").or_else(|| line.rfind('-'));
        let key_column = lines[0].find("start key").unwrap();
        assert_eq!(starts(lines[1]), Some(key_column), "{table}");
        assert_eq!(starts(lines[2]), Some(key_column), "{table}");
    }
}
