//! The end-to-end test harness: one isolated Sagaflow deployment per test — its own database,
//! its own queue namespace, the real binaries as child processes — torn down when dropped.
//!
//! The binaries must be built first, with crash points compiled in:
//! `cargo build --workspace --all-features --bins` (`scripts/test` does it).

mod assertions;
mod browser;
mod deployment;
mod http;
mod local_postgres;
mod local_servers;
mod otlp;
mod process;
mod proxy;
mod python;
mod raw_activity;
pub mod test_sagas;
mod wait;

pub use assertions::assert_none_exited;
pub use browser::Browser;
pub use deployment::{payment, DeadLetter, Deployment, Recorded, ServerProxies, Servers};
pub use http::{free_port, ApiClient, ApiResponse};
pub use local_postgres::{LocalPostgres, StopMode};
pub use local_servers::{
    LocalRabbitMq, LocalRabbitMqCluster, LocalTlsPostgres, RabbitMqOptions, TempDir,
    TestCertificates,
};
pub use otlp::{OtlpReceiver, ReceivedPoint, ReceivedSpan};
pub use process::{Bin, Service};
pub use proxy::{Fault, Proxy};
pub use python::{python_example_dir, run_python, venv_python, PythonService};
pub use raw_activity::{RawActivity, RawCommand};
pub use wait::wait_until;
