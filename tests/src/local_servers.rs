//! Servers of a test's own, for what the shared ones cannot show: TLS-only PostgreSQL and
//! RabbitMQ with a certificate made at test time ([`TestCertificates`]), and RabbitMQ nodes the
//! test may stop or cluster ([`LocalRabbitMq`]). Each runs from a temporary directory on free
//! ports of 127.0.0.1, and is stopped and its directory removed when dropped (also when the
//! test panics).
//!
//! Binaries: PostgreSQL's as for [`LocalPostgres`](crate::LocalPostgres) (`SAGAFLOW_TEST_PG_BIN`);
//! RabbitMQ's from `SAGAFLOW_TEST_RABBITMQ_BIN` or `/usr/lib/rabbitmq/bin` (Debian's; its
//! `/usr/sbin` wrappers would switch to the `rabbitmq` user and lose the environment). Run as
//! root, PostgreSQL runs as the `postgres` user, which must exist.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// How long a server may take to start: RabbitMQ boots in seconds on an idle machine, much
/// longer on a CI runner busy compiling.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// A temporary directory, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new empty directory named after `prefix`, readable by other users (PostgreSQL may run
    /// as another user inside it).
    pub fn new(prefix: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "{prefix}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        ));
        std::fs::create_dir_all(&path).expect("a temporary directory can be created");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("the temporary directory's mode can be set");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A CA, a server certificate for `localhost` and `127.0.0.1` and a client certificate, all
/// signed by it, written as PEM files. Made fresh by each test: no key is ever committed.
pub struct TestCertificates {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A CA that signed nothing here: a client trusting only it must refuse the servers.
    pub other_ca: PathBuf,
}

impl TestCertificates {
    /// Generates the certificates into `dir`.
    pub fn generate(dir: &Path) -> TestCertificates {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
            IsCa, KeyPair, KeyUsagePurpose,
        };
        let ca_params = |name: &str| {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.distinguished_name.push(DnType::CommonName, name);
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            params
        };
        let ca = CertifiedIssuer::self_signed(
            ca_params("Sagaflow test CA"),
            KeyPair::generate().unwrap(),
        )
        .unwrap();
        let other_ca = CertifiedIssuer::self_signed(
            ca_params("Sagaflow other test CA"),
            KeyPair::generate().unwrap(),
        )
        .unwrap();
        let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(names).unwrap();
            params
                .distinguished_name
                .push(DnType::CommonName, "sagaflow-test");
            params.extended_key_usages = vec![usage];
            let cert = params.signed_by(&key, &ca).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = leaf(
            vec!["localhost".into(), "127.0.0.1".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert, client_key) =
            leaf(vec!["client".into()], ExtendedKeyUsagePurpose::ClientAuth);
        let write = |name: &str, pem: &str| {
            let path = dir.join(name);
            std::fs::write(&path, pem).expect("a certificate file can be written");
            path
        };
        TestCertificates {
            ca: write("ca.pem", &ca.pem()),
            server_cert: write("server.pem", &server_cert),
            server_key: write("server.key", &server_key),
            client_cert: write("client.pem", &client_cert),
            client_key: write("client.key", &client_key),
            other_ca: write("other-ca.pem", &other_ca.pem()),
        }
    }
}

/// A PostgreSQL server of the test's own that accepts only TLS connections (`hostssl` in
/// `pg_hba.conf`, trust authentication for `postgres`).
pub struct LocalTlsPostgres {
    pub port: u16,
    ca: PathBuf,
    child: Child,
    log: PathBuf,
    // Last: removed after the server stopped.
    _dir: TempDir,
}

impl LocalTlsPostgres {
    /// Initialises a cluster and starts it with `certs`' server certificate; returns once it
    /// accepts a TLS connection.
    pub async fn start_tls_only(certs: &TestCertificates) -> LocalTlsPostgres {
        let dir = TempDir::new("sagaflow-pg");
        let bin = crate::local_postgres::postgres_bin();
        // PostgreSQL refuses to run as root, and wants its key file private to its user.
        let user = if unsafe { libc::geteuid() } == 0 {
            Some(system_user("postgres"))
        } else {
            None
        };
        let cert = dir.path().join("server.pem");
        let key = dir.path().join("server.key");
        std::fs::copy(&certs.server_cert, &cert).unwrap();
        std::fs::copy(&certs.server_key, &key).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let data = dir.path().join("data");
        if let Some((uid, gid)) = user {
            for path in [dir.path(), &cert, &key] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
            }
        }
        let as_user = |command: &mut Command| {
            if let Some((uid, gid)) = user {
                command.uid(uid).gid(gid);
            }
        };

        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"])
            .args(["--locale=C"])
            .stdout(Stdio::null());
        as_user(&mut initdb);
        let output = initdb.output().expect("initdb runs");
        assert!(
            output.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        // TLS only: a connection without it finds no line and is refused.
        std::fs::write(
            data.join("pg_hba.conf"),
            "hostssl all all 127.0.0.1/32 trust\n",
        )
        .unwrap();

        let port = free_port();
        let log = dir.path().join("postgres.log");
        let out = std::fs::File::create(&log).unwrap();
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&log, Some(uid), Some(gid)).unwrap();
        }
        let mut postgres = Command::new(bin.join("postgres"));
        postgres.arg("-D").arg(&data);
        for setting in [
            format!("port={port}"),
            "listen_addresses=127.0.0.1".to_owned(),
            format!("unix_socket_directories={}", dir.path().display()),
            "ssl=on".to_owned(),
            format!("ssl_cert_file={}", cert.display()),
            format!("ssl_key_file={}", key.display()),
            // A test server: durability is not what is tested here.
            "fsync=off".to_owned(),
            "full_page_writes=off".to_owned(),
        ] {
            postgres.arg("-c").arg(setting);
        }
        postgres
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        as_user(&mut postgres);
        let child = postgres.spawn().expect("postgres starts");
        let mut server = LocalTlsPostgres {
            port,
            ca: certs.ca.clone(),
            child,
            log,
            _dir: dir,
        };
        server.wait_until_ready().await;
        server
    }

    async fn wait_until_ready(&mut self) {
        use sqlx::Connection;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "postgres exited with {status}: {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            let error = match sqlx::PgConnection::connect(&self.url("postgres")).await {
                Ok(connection) => {
                    let _ = connection.close().await;
                    return;
                }
                Err(error) => error,
            };
            assert!(
                Instant::now() < deadline,
                "postgres did not accept a TLS connection within {START_TIMEOUT:?}: {error}; log: {}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The URL of `database` over TLS, checked against the test CA and host name
    /// (`sslmode=verify-full`).
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{database}?sslmode=verify-full&sslrootcert={}",
            self.port,
            self.ca.display()
        )
    }

    /// The URL of `database` without TLS (`sslmode=disable`): refused by this server.
    pub fn plain_url(&self, database: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{database}?sslmode=disable",
            self.port
        )
    }
}

impl Drop for LocalTlsPostgres {
    fn drop(&mut self) {
        // SIGQUIT: immediate shutdown; the data directory is deleted next.
        stop_child(&mut self.child, libc::SIGQUIT);
    }
}

/// How a [`LocalRabbitMq`] node listens.
pub struct RabbitMqOptions<'a> {
    /// Node names are `<prefix>-<random>@localhost`.
    pub name_prefix: &'a str,
    /// A TLS listener with these certificates; the client must show a certificate signed by the
    /// test CA. Without it, a plain AMQP listener.
    pub tls: Option<&'a TestCertificates>,
    /// Where the Erlang cookie is (`$HOME/.erlang.cookie`): the nodes of one cluster share it.
    /// `None`: a directory of the node's own.
    pub cookie_home: Option<&'a Path>,
}

/// A RabbitMQ node of the test's own, with its own name, ports, data and log directories. Its
/// user is `guest`/`guest` (allowed from loopback); no plugins.
pub struct LocalRabbitMq {
    /// E.g. `sagaflow-tls-1a2b3c4d5e6f@localhost`.
    pub node: String,
    /// The AMQP port (TLS or plain, as started).
    pub port: u16,
    tls: bool,
    home: PathBuf,
    bin: PathBuf,
    child: Child,
    log: PathBuf,
    _dir: TempDir,
}

impl LocalRabbitMq {
    /// Starts a node and returns once it has booted (`rabbitmqctl wait`).
    pub async fn start(options: RabbitMqOptions<'_>) -> LocalRabbitMq {
        let dir = TempDir::new(options.name_prefix);
        let id = dir
            .path()
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.rsplit('-').next())
            .unwrap_or("node")
            .to_owned();
        let node = format!("{}-{id}@localhost", options.name_prefix);
        let bin = rabbitmq_bin_dir();
        let home = match options.cookie_home {
            Some(home) => home.to_owned(),
            None => dir.path().join("home"),
        };
        std::fs::create_dir_all(&home).unwrap();
        let port = free_port();
        let dist_port = free_port();
        let mut config = String::new();
        match options.tls {
            Some(certs) => {
                config.push_str(&format!(
                    "listeners.tcp = none\n\
                     listeners.ssl.default = 127.0.0.1:{port}\n\
                     ssl_options.cacertfile = {}\n\
                     ssl_options.certfile = {}\n\
                     ssl_options.keyfile = {}\n\
                     ssl_options.verify = verify_peer\n\
                     ssl_options.fail_if_no_peer_cert = true\n",
                    certs.ca.display(),
                    certs.server_cert.display(),
                    certs.server_key.display()
                ));
            }
            None => config.push_str(&format!("listeners.tcp.default = 127.0.0.1:{port}\n")),
        }
        let config_file = dir.path().join("rabbitmq.conf");
        std::fs::write(&config_file, config).unwrap();
        let plugins = dir.path().join("enabled_plugins");
        std::fs::write(&plugins, "[].\n").unwrap();
        let pid_file = dir.path().join("pid");
        let log = dir.path().join("stdout.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(bin.join("rabbitmq-server"))
            .current_dir(dir.path())
            .env("HOME", &home)
            .env("RABBITMQ_NODENAME", &node)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", port.to_string())
            .env("RABBITMQ_DIST_PORT", dist_port.to_string())
            .env("RABBITMQ_CONFIG_FILE", &config_file)
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", &plugins)
            .env("RABBITMQ_MNESIA_BASE", dir.path().join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.path().join("log"))
            .env("RABBITMQ_PID_FILE", &pid_file)
            .env("ERL_CRASH_DUMP", dir.path().join("erl_crash.dump"))
            // The script then execs the Erlang VM: the child is the node itself, so a kill
            // reaches it (no shell in between).
            .env("RUNNING_UNDER_SYSTEMD", "true")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("rabbitmq-server starts");
        let mut server = LocalRabbitMq {
            node,
            port,
            tls: options.tls.is_some(),
            home,
            bin,
            child,
            log,
            _dir: dir,
        };
        server.wait_until_booted(&pid_file).await;
        server
    }

    async fn wait_until_booted(&mut self, pid_file: &Path) {
        let mut wait = self.rabbitmqctl_command();
        wait.arg("wait")
            .arg(pid_file)
            .args(["--timeout", &START_TIMEOUT.as_secs().to_string()]);
        let mut wait = tokio::process::Command::from(wait);
        wait.kill_on_drop(true);
        let waited = tokio::time::timeout(START_TIMEOUT, wait.output()).await;
        let booted = matches!(&waited, Ok(Ok(output)) if output.status.success());
        if !booted {
            let exited = self.child.try_wait().ok().flatten();
            panic!(
                "RabbitMQ node {} did not boot within {START_TIMEOUT:?} (exited: {exited:?}; wait: {waited:?}); output: {}",
                self.node,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }

    fn rabbitmqctl_command(&self) -> Command {
        self.tool_command("rabbitmqctl")
    }

    fn tool_command(&self, tool: &str) -> Command {
        let mut command = Command::new(self.bin.join(tool));
        command
            .env("HOME", &self.home)
            .args(["-n", &self.node])
            .stdin(Stdio::null());
        command
    }

    /// Runs `rabbitmqctl -n <node> <args>`; fails the test if it fails.
    pub async fn rabbitmqctl(&self, args: &[&str]) -> String {
        self.run_tool("rabbitmqctl", args).await
    }

    /// Runs `<tool> -n <node> <args>` (`rabbitmq-queues`, `rabbitmq-diagnostics`, …); fails the
    /// test if it fails.
    pub async fn run_tool(&self, tool: &str, args: &[&str]) -> String {
        let mut command = tokio::process::Command::from(self.tool_command(tool));
        command.args(args).kill_on_drop(true);
        let output = tokio::time::timeout(START_TIMEOUT, command.output())
            .await
            .unwrap_or_else(|_| panic!("{tool} {args:?} on {} timed out", self.node))
            .unwrap_or_else(|e| panic!("{tool} does not run: {e}"));
        assert!(
            output.status.success(),
            "{tool} {args:?} on {} failed: {}{}",
            self.node,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The node's URL for `guest`: `amqps://` on `localhost`-less `127.0.0.1` when it listens
    /// with TLS, else `amqp://`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "amqps" } else { "amqp" };
        format!("{scheme}://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// The same port with a plain `amqp://` URL: refused by a TLS listener.
    pub fn plain_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Kills the node at once (SIGKILL), as a crashed machine would go.
    pub fn kill(&mut self) {
        stop_child(&mut self.child, libc::SIGKILL);
    }
}

impl Drop for LocalRabbitMq {
    fn drop(&mut self) {
        // Its directory goes next: nothing of it needs to be kept.
        stop_child(&mut self.child, libc::SIGKILL);
    }
}

/// A RabbitMQ cluster of the test's own: nodes on loopback with distinct names and ports, one
/// Erlang cookie, joined with `rabbitmqctl join_cluster`. Quorum queues declared on it have a
/// member on every node.
pub struct LocalRabbitMqCluster {
    pub nodes: Vec<LocalRabbitMq>,
    // Last: the nodes stop first.
    _cookie_home: TempDir,
}

impl LocalRabbitMqCluster {
    /// Starts `size` nodes (plain AMQP) and joins the others to the first.
    pub async fn start(size: usize) -> LocalRabbitMqCluster {
        let cookie_home = TempDir::new("sagaflow-cluster-home");
        // Written before any node starts: nodes starting together would each make their own.
        let cookie = cookie_home.path().join(".erlang.cookie");
        std::fs::write(&cookie, uuid::Uuid::new_v4().simple().to_string()).unwrap();
        std::fs::set_permissions(&cookie, std::fs::Permissions::from_mode(0o400)).unwrap();
        let nodes = futures::future::join_all((0..size).map(|_| {
            LocalRabbitMq::start(RabbitMqOptions {
                name_prefix: "sagaflow-cluster",
                tls: None,
                cookie_home: Some(cookie_home.path()),
            })
        }))
        .await;
        let first = nodes[0].node.clone();
        for node in &nodes[1..] {
            node.rabbitmqctl(&["stop_app"]).await;
            node.rabbitmqctl(&["join_cluster", &first]).await;
            node.rabbitmqctl(&["start_app"]).await;
        }
        let status = nodes[0]
            .rabbitmqctl(&["cluster_status", "--formatter", "json"])
            .await;
        let status: serde_json::Value =
            serde_json::from_str(&status).expect("cluster_status prints JSON");
        let running = status["running_nodes"].as_array().map_or(0, Vec::len);
        assert_eq!(running, size, "not every node joined: {status}");
        LocalRabbitMqCluster {
            nodes,
            _cookie_home: cookie_home,
        }
    }

    /// Every node's URL, separated by commas: what a process is given to fail over.
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(LocalRabbitMq::url)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Sends `signal` to `child` and reaps it, SIGKILLing it if it is still there after 10 s.
fn stop_child(child: &mut Child, signal: libc::c_int) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    // SAFETY: kill(2) on the pid of our own unreaped child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, signal);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn rabbitmq_bin_dir() -> PathBuf {
    let dir = std::env::var("SAGAFLOW_TEST_RABBITMQ_BIN")
        .map_or_else(|_| PathBuf::from("/usr/lib/rabbitmq/bin"), PathBuf::from);
    assert!(
        dir.join("rabbitmq-server").exists(),
        "no rabbitmq-server in {}: install RabbitMQ or set SAGAFLOW_TEST_RABBITMQ_BIN",
        dir.display()
    );
    dir
}

/// The uid and gid of the system user `name`.
fn system_user(name: &str) -> (u32, u32) {
    let name = std::ffi::CString::new(name).unwrap();
    // SAFETY: getpwnam with a NUL-terminated name; the record is read at once, before any other
    // call could reuse its static storage (tests that need it run in processes of their own).
    let record = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(
        !record.is_null(),
        "running as root, PostgreSQL needs the user {name:?} to run as"
    );
    // SAFETY: non-null, just returned.
    unsafe { ((*record).pw_uid, (*record).pw_gid) }
}
