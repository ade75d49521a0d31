use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};

/// The binaries under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bin {
    Orchestrator,
    /// The orchestrator with the tests' own sagas too (`test_sagas`).
    TestOrchestrator,
    /// The `sagaflow` command line.
    Cli,
    PaymentValidator,
    Charger,
    ReceiptSender,
    FlightService,
    HotelService,
    CarService,
    /// Not a service: publishes one message with deeply nested headers (`src/bin/`).
    NestedHeaderPublisher,
    /// Not a service: the load generator (`src/bin/bench/`).
    Bench,
}

impl Bin {
    pub fn name(self) -> &'static str {
        match self {
            Bin::Orchestrator => "orchestrator",
            Bin::TestOrchestrator => "test-orchestrator",
            Bin::Cli => "sagaflow",
            Bin::PaymentValidator => "payment-validator",
            Bin::Charger => "charger",
            Bin::ReceiptSender => "receipt-sender",
            Bin::FlightService => "flight-service",
            Bin::HotelService => "hotel-service",
            Bin::CarService => "car-service",
            Bin::NestedHeaderPublisher => "publish-nested-headers",
            Bin::Bench => "bench",
        }
    }

    /// The built binary of the same profile as the running executable: a test runs from
    /// `target/<profile>/deps/`, the benchmark from `target/<profile>/`.
    pub fn path(self) -> PathBuf {
        let exe = std::env::current_exe().expect("the running executable has a path");
        let mut dir = exe.parent().expect("the executable is in a directory");
        if dir.ends_with("deps") {
            dir = dir.parent().expect("deps/ is inside the profile directory");
        }
        let path = dir.join(self.name());
        assert!(
            path.exists(),
            "{} is not built: run `cargo build --workspace --all-features --bins` (scripts/test does)",
            path.display()
        );
        path
    }
}

/// A running binary. Dropping it kills it (SIGKILL) and reaps it.
pub struct Service {
    pub bin: Bin,
    pub log: PathBuf,
    child: Child,
}

impl Service {
    pub(crate) fn spawn(bin: Bin, env: &[(String, String)], log: PathBuf) -> Service {
        let out = File::create(&log).expect("the log file can be created");
        let err = out.try_clone().expect("the log file handle can be cloned");
        let child = Command::new(bin.path())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.name()));
        Service { bin, log, child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process with SIGKILL and waits until it is gone.
    pub fn kill(mut self) -> ExitStatus {
        let _ = self.child.kill();
        self.child.wait().expect("the killed process can be reaped")
    }

    /// Sends SIGTERM: the process should finish its in-flight work and exit.
    pub fn terminate(&self) {
        // SAFETY: kill(2) with a pid we own has no memory-safety preconditions.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
    }

    /// The exit status, if the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("the process can be polled")
    }

    /// Everything the process logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
