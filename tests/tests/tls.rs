//! TLS to PostgreSQL and RabbitMQ: the orchestrator, the activity services and the CLI run a
//! saga against servers of the test's own that accept nothing else, checking the servers'
//! certificate against a CA made at test time; without TLS, or with the wrong CA, they fail at
//! once with an error that says so.

use std::process::Output;
use std::time::Duration;

use sagaflow_amqp::AmqpTlsArgs;
use sagaflow_e2e::{
    payment, Bin, Deployment, LocalRabbitMq, LocalTlsPostgres, RabbitMqOptions, Servers, TempDir,
    TestCertificates,
};

const END: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_saga_runs_over_tls_and_nothing_connects_without_it() {
    let certs_dir = TempDir::new("sagaflow-tls-certs");
    let certs = TestCertificates::generate(certs_dir.path());
    let (postgres, rabbitmq) = tokio::join!(
        LocalTlsPostgres::start_tls_only(&certs),
        LocalRabbitMq::start(RabbitMqOptions {
            name_prefix: "sagaflow-tls",
            tls: Some(&certs),
            cookie_home: None,
        })
    );
    let mut deployment = Deployment::on(Servers {
        admin_database_url: postgres.url("postgres"),
        amqp_url: rabbitmq.url(),
        amqp_tls: AmqpTlsArgs {
            ca_file: Some(certs.ca.clone()),
            client_cert: Some(certs.client_cert.clone()),
            client_key: Some(certs.client_key.clone()),
        },
        own_broker: true,
    })
    .await;
    assert!(deployment.database_url.contains("sslmode=verify-full"));

    let _orchestrator = deployment.spawn(Bin::Orchestrator, &[]);
    let _services = deployment.spawn_activity_services();
    let input = serde_json::to_string(&payment::request("tls-1")).unwrap();
    let started = deployment
        .run_cli(&[
            "start",
            "--wait",
            "--start-key",
            "tls-1",
            "--input",
            &input,
            "--timeout-secs",
            &END.as_secs().to_string(),
        ])
        .await;
    assert!(
        started.status.success(),
        "sagaflow start --wait failed over TLS: {} (logs: {})",
        text(&started),
        deployment.log_dir().display()
    );
    assert!(
        text(&started).contains("status     completed"),
        "{}",
        text(&started)
    );
    assert_eq!(deployment.saga("tls-1").await.unwrap().1, "completed");
    assert_eq!(deployment.count("SELECT count(*) FROM charges").await, 1);
    assert_eq!(deployment.count("SELECT count(*) FROM receipts").await, 1);

    // Every connection of the saga's processes was encrypted: the server sees only TLS ones.
    let plain: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid)
         WHERE NOT ssl AND client_addr IS NOT NULL",
    )
    .fetch_one(&deployment.db)
    .await
    .unwrap();
    assert_eq!(plain, 0, "a PostgreSQL connection without TLS");

    // Without TLS: PostgreSQL says it wants encryption.
    let list = deployment
        .run_cli(&["list", "--database-url", &postgres.plain_url("postgres")])
        .await;
    assert!(!list.status.success(), "a plain connection was accepted");
    assert!(text(&list).contains("no encryption"), "{}", text(&list));

    // Without TLS: RabbitMQ's TLS port drops the connection; the error says to try amqps://.
    let plain_amqp = run_without_tls(
        &deployment,
        Bin::Cli,
        &["start", "--start-key", "tls-plain", "--input", &input],
        &[("AMQP_URL", &rabbitmq.plain_url())],
    )
    .await;
    assert!(!plain_amqp.status.success());
    assert!(
        text(&plain_amqp).contains("use an amqps:// URL"),
        "{}",
        text(&plain_amqp)
    );

    // A CA that did not sign the servers' certificates: refused by both clients.
    let other_ca = certs.other_ca.display().to_string();
    let wrong_ca = run(
        &deployment,
        Bin::Orchestrator,
        &[],
        &[("SAGAFLOW_AMQP_CA_FILE", &other_ca)],
    )
    .await;
    assert!(!wrong_ca.status.success());
    assert!(
        text(&wrong_ca).contains("SAGAFLOW_AMQP_CA_FILE"),
        "{}",
        text(&wrong_ca)
    );
    let wrong_pg_ca = deployment
        .run_cli(&[
            "list",
            "--database-url",
            &postgres
                .url("postgres")
                .replace(&certs.ca.display().to_string(), &other_ca),
        ])
        .await;
    assert!(!wrong_pg_ca.status.success());
    assert!(
        text(&wrong_pg_ca).contains("UnknownIssuer"),
        "{}",
        text(&wrong_pg_ca)
    );

    // Files that cannot be used stop a process at start-up, naming the setting and the file.
    let missing = run(
        &deployment,
        Bin::Charger,
        &[],
        &[("SAGAFLOW_AMQP_CLIENT_KEY", "/nonexistent/client.key")],
    )
    .await;
    assert!(!missing.status.success());
    assert!(
        text(&missing).contains("SAGAFLOW_AMQP_CLIENT_KEY file /nonexistent/client.key"),
        "{}",
        text(&missing)
    );
    assert!(
        !text(&missing).contains("guest:guest"),
        "a password in an error: {}",
        text(&missing)
    );
}

/// Runs `bin` with the deployment's environment plus `env`; it must exit within a minute.
async fn run(deployment: &Deployment, bin: Bin, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = tokio::process::Command::new(bin.path());
    command
        .args(args)
        .envs(deployment.env())
        .envs(env.iter().copied())
        .kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .unwrap_or_else(|_| panic!("{} did not exit within a minute", bin.name()))
        .expect("the binary runs")
}

/// [`run`] without the RabbitMQ TLS settings.
async fn run_without_tls(
    deployment: &Deployment,
    bin: Bin,
    args: &[&str],
    env: &[(&str, &str)],
) -> Output {
    let mut command = tokio::process::Command::new(bin.path());
    command
        .args(args)
        .envs(deployment.env())
        .env_remove("SAGAFLOW_AMQP_CA_FILE")
        .env_remove("SAGAFLOW_AMQP_CLIENT_CERT")
        .env_remove("SAGAFLOW_AMQP_CLIENT_KEY")
        .envs(env.iter().copied())
        .kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .unwrap_or_else(|_| panic!("{} did not exit within a minute", bin.name()))
        .expect("the binary runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
