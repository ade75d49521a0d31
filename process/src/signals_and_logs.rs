//! Logging and stopping on signals, the same in every Sagaflow binary.

use std::io::IsTerminal;

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// Logs to stdout through `tracing`, filtered by `RUST_LOG` (default `info,sqlx=warn`: sqlx
/// logs every server notice at info); one JSON object per
/// line when `SAGAFLOW_LOG_FORMAT=json`. Call it once, first thing in `main`.
pub fn init_tracing() {
    const DEFAULT_FILTER: &str = "info,sqlx=warn";
    let (filter, bad_filter) = match EnvFilter::try_from_default_env() {
        Ok(filter) => (filter, None),
        Err(error) => {
            let bad = std::env::var("RUST_LOG").ok().map(|value| (value, error));
            (EnvFilter::new(DEFAULT_FILTER), bad)
        }
    };
    let json = std::env::var("SAGAFLOW_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal());
    let installed = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    if let Err(error) = installed {
        eprintln!("logging is already set up; keeping the existing subscriber: {error}");
    }
    if let Some((value, error)) = bad_filter {
        tracing::warn!(RUST_LOG = value, %error, "ignoring an invalid RUST_LOG; logging at info");
    }
}

/// A token cancelled on the first SIGTERM or SIGINT, to pass to the orchestrator's or an
/// activity worker's `run` for a graceful stop. A second signal exits at once (status 130), for
/// when in-flight work hangs.
///
/// Must be called inside a tokio runtime. Fails only if the signal handlers cannot be installed.
pub fn shutdown_on_signals() -> std::io::Result<CancellationToken> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let token = CancellationToken::new();
    let shutdown = token.clone();
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "stopping: finishing the work in flight");
        shutdown.cancel();
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        tracing::warn!("second signal: exiting without finishing the work in flight");
        std::process::exit(130);
    });
    Ok(token)
}
