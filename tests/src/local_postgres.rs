//! A PostgreSQL server of the test's own, on a free port of 127.0.0.1 with trust authentication,
//! in a temporary directory: one the test may restart or stop without disturbing the shared
//! server that other tests use. Dropping it stops the server and deletes its directory.
//!
//! The binaries are taken from `SAGAFLOW_TEST_PG_BIN` if set, else from the newest
//! `/usr/lib/postgresql/<version>/bin` (Debian's layout). As root (PostgreSQL refuses to run as
//! root), the server runs as the `postgres` user through `runuser`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// How [`LocalPostgres::restart`] and [`LocalPostgres::stop`] stop the server (`pg_ctl -m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Every session is ended, then a clean shutdown: what an operator's restart does.
    Fast,
    /// The server quits at once and recovers from its WAL at the next start: what a crash or
    /// a failover does to the clients.
    Immediate,
}

impl StopMode {
    fn name(self) -> &'static str {
        match self {
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        }
    }
}

/// A running PostgreSQL of this test.
pub struct LocalPostgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    as_postgres_user: bool,
}

impl LocalPostgres {
    /// Creates a cluster in a new temporary directory and starts it; returns once it accepts
    /// connections.
    pub fn start() -> LocalPostgres {
        let bin = postgres_bin();
        let data =
            std::env::temp_dir().join(format!("sagaflow-e2e-pg-{}", uuid::Uuid::new_v4().simple()));
        // SAFETY: geteuid has no preconditions.
        let as_postgres_user = unsafe { libc::geteuid() } == 0;
        let server = LocalPostgres {
            bin,
            data,
            port: crate::free_port(),
            as_postgres_user,
        };
        server.run(
            "initdb",
            &[
                "--pgdata",
                path_str(&server.data),
                "--username",
                "postgres",
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                "--no-sync",
            ],
        );
        server.pg_ctl(&["start"]);
        server
    }

    /// The URL of its `postgres` database (user `postgres`, no password).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server as `mode` says and starts it again; returns once it accepts connections.
    /// Every client connection is ended.
    pub fn restart(&self, mode: StopMode) {
        self.pg_ctl(&["restart", "--mode", mode.name()]);
    }

    /// Stops the server as `mode` says; [`LocalPostgres::start_again`] starts it.
    pub fn stop(&self, mode: StopMode) {
        self.pg_ctl(&["stop", "--mode", mode.name()]);
    }

    /// Starts the server stopped by [`LocalPostgres::stop`]; returns once it accepts connections.
    pub fn start_again(&self) {
        self.pg_ctl(&["start"]);
    }

    fn pg_ctl(&self, args: &[&str]) {
        // The socket goes in the data directory, away from the shared server's.
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c full_page_writes=off",
            self.port,
            path_str(&self.data)
        );
        let log = self.data.join("server.log");
        let mut all = vec![
            "--pgdata",
            path_str(&self.data),
            "--wait",
            "--timeout",
            "60",
            "--log",
            path_str(&log),
            "-o",
            &options,
        ];
        all.extend_from_slice(args);
        self.run("pg_ctl", &all);
    }

    fn run(&self, program: &str, args: &[&str]) {
        let program_path = self.bin.join(program);
        let mut command = if self.as_postgres_user {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&program_path);
            command
        } else {
            Command::new(&program_path)
        };
        // pg_ctl's server inherits the working directory, which `postgres` may not be able to
        // enter.
        command.args(args).current_dir(std::env::temp_dir());
        let output = command
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program_path.display()));
        assert!(
            output.status.success(),
            "{program} {args:?} failed ({}): {}{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            std::fs::read_to_string(self.data.join("server.log")).unwrap_or_default()
        );
    }
}

impl Drop for LocalPostgres {
    fn drop(&mut self) {
        if self.data.join("postmaster.pid").exists() {
            let mut stop = if self.as_postgres_user {
                let mut command = Command::new("runuser");
                command
                    .args(["-u", "postgres", "--"])
                    .arg(self.bin.join("pg_ctl"));
                command
            } else {
                Command::new(self.bin.join("pg_ctl"))
            };
            let _ = stop
                .args([
                    "--pgdata",
                    path_str(&self.data),
                    "--mode",
                    "immediate",
                    "stop",
                ])
                .current_dir(std::env::temp_dir())
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

/// The directory of `initdb`, `pg_ctl` and `postgres`: `SAGAFLOW_TEST_PG_BIN`, else the newest
/// `/usr/lib/postgresql/<version>/bin`.
pub(crate) fn postgres_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("SAGAFLOW_TEST_PG_BIN") {
        return PathBuf::from(bin);
    }
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .max();
    newest.map(|(_, bin)| bin).expect(
        "no PostgreSQL server binaries in /usr/lib/postgresql/<version>/bin: install the \
         server package or set SAGAFLOW_TEST_PG_BIN to the directory of initdb and pg_ctl",
    )
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}
