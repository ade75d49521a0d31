//! Logging and stopping on signals, the same in every Sagaflow binary.

use std::io::IsTerminal;

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use crate::traces::{self, TracesGuard};

/// Logs to stdout through `tracing`, filtered by `RUST_LOG` (default `info,sqlx=warn`: sqlx
/// logs every server notice at info); one JSON object per
/// line when `SAGAFLOW_LOG_FORMAT=json`. Spans are exported over OTLP when
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is set (see `traces.rs`). Call it once, first thing in
/// `main`, and keep the guard: dropping it flushes the spans not yet exported.
pub fn init_tracing() -> TracesGuard {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    const DEFAULT_FILTER: &str = "info,sqlx=warn";
    let (filter, bad_filter) = match EnvFilter::try_from_default_env() {
        Ok(filter) => (filter, None),
        Err(error) => {
            let bad = std::env::var("RUST_LOG").ok().map(|value| (value, error));
            (EnvFilter::new(DEFAULT_FILTER), bad)
        }
    };
    let json = std::env::var("SAGAFLOW_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let ansi = std::io::stdout().is_terminal();
    let (provider, otlp_error) = if traces::otlp_configured() {
        match traces::otlp_provider() {
            Ok(provider) => (Some(provider), None),
            Err(error) => (None, Some(error)),
        }
    } else {
        (None, None)
    };
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(json.then(|| tracing_subscriber::fmt::layer().json()))
        .with((!json).then(|| tracing_subscriber::fmt::layer().with_ansi(ansi)))
        .with(provider.as_ref().map(traces::otlp_layer))
        .try_init();
    if let Err(error) = installed {
        eprintln!("logging is already set up; keeping the existing subscriber: {error}");
    }
    if let Some((value, error)) = bad_filter {
        tracing::warn!(RUST_LOG = value, %error, "ignoring an invalid RUST_LOG; logging at info");
    }
    if let Some(error) = otlp_error {
        tracing::warn!(%error, "cannot export traces over OTLP; going on without");
    }
    TracesGuard(provider)
}

/// Trace export only, no logs (for the CLI, whose stdout is its output): spans go over OTLP
/// when `OTEL_EXPORTER_OTLP_ENDPOINT` is set; nothing happens otherwise.
pub fn init_trace_export() -> TracesGuard {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    if !traces::otlp_configured() {
        return TracesGuard(None);
    }
    match traces::otlp_provider() {
        Ok(provider) => {
            let _ = tracing_subscriber::registry()
                .with(EnvFilter::new("info"))
                .with(traces::otlp_layer(&provider))
                .try_init();
            TracesGuard(Some(provider))
        }
        Err(error) => {
            eprintln!("cannot export traces over OTLP; going on without: {error}");
            TracesGuard(None)
        }
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
