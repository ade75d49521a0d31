//! What every Sagaflow process does the same way: structured logs, graceful shutdown on
//! SIGTERM/SIGINT, and the crash points the end-to-end tests arm.

mod crash;

pub use crash::{arm_crash_points, crash_point};

use tokio_util::sync::CancellationToken;

/// Logs to stderr, filtered by `RUST_LOG` (default `info`); one JSON object per line when
/// `SAGAFLOW_LOG_FORMAT=json`.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("SAGAFLOW_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// A token cancelled on the first SIGTERM or SIGINT: the process then stops taking work,
/// finishes what it has, and exits.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot listen for SIGTERM/SIGINT; stop with SIGKILL");
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: finishing in-flight work, then exiting"),
            _ = int.recv() => tracing::info!("SIGINT: finishing in-flight work, then exiting"),
        }
        cancel.cancel();
    });
    token
}
