//! Metrics: one `metrics` recorder per process, fanned out to a Prometheus registry (for a
//! `/metrics` endpoint) and, when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`) is set, to an OpenTelemetry meter exported over
//! OTLP/HTTP every `OTEL_METRIC_EXPORT_INTERVAL` ms (default 60 000), with the resource of
//! `OTEL_SERVICE_NAME` / `OTEL_RESOURCE_ATTRIBUTES`. Code records with the `metrics` macros
//! wherever things happen; they are no-ops until [`install_metrics`] runs.

use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use metrics_exporter_otel::OpenTelemetryRecorder;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_util::layers::FanoutBuilder;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::Resource;
use tokio_util::sync::CancellationToken;

/// How often the Prometheus registry folds recorded histogram samples into its buckets when
/// nobody scrapes (samples are kept until then).
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);
/// The OpenTelemetry SDK's default export interval.
const DEFAULT_EXPORT_INTERVAL: Duration = Duration::from_secs(60);

/// What [`install_metrics`] sets up.
pub struct MetricsSettings<'a> {
    /// Keep a Prometheus registry, rendered by the process's `/metrics`.
    pub prometheus: bool,
    /// Bucket bounds of histograms, by metric name (both exporters).
    pub histogram_buckets: &'a [(&'a str, &'a [f64])],
}

/// What was installed: set once per process.
struct Installed {
    prometheus: Option<PrometheusHandle>,
    otlp: bool,
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();
/// Shut down (flushing the last values) by [`MetricsGuard`].
static METER_PROVIDER: Mutex<Option<SdkMeterProvider>> = Mutex::new(None);

/// Installs the process-wide `metrics` recorder: Prometheus when `settings.prometheus`, OTLP
/// when configured in the environment, nothing when neither. The first call decides; later
/// calls return what it installed. Problems are logged, never fatal: a process without metrics
/// still does its work. Returns the handle that renders Prometheus text, if there is one.
pub fn install_metrics(settings: MetricsSettings<'_>) -> Option<PrometheusHandle> {
    INSTALLED
        .get_or_init(|| install(&settings))
        .prometheus
        .clone()
}

fn install(settings: &MetricsSettings<'_>) -> Installed {
    let mut fanout = FanoutBuilder::default();
    let mut installed = Installed {
        prometheus: None,
        otlp: false,
    };
    if settings.prometheus {
        match prometheus_recorder(settings.histogram_buckets) {
            Ok(recorder) => {
                let handle = recorder.handle();
                spawn_upkeep(handle.clone());
                installed.prometheus = Some(handle);
                fanout = fanout.add_recorder(recorder);
            }
            Err(error) => tracing::warn!(%error, "no Prometheus metrics; /metrics is off"),
        }
    }
    if otlp_metrics_configured() {
        match otlp_recorder(settings.histogram_buckets) {
            Ok(recorder) => {
                installed.otlp = true;
                fanout = fanout.add_recorder(recorder);
            }
            Err(error) => {
                tracing::warn!(%error, "cannot export metrics over OTLP; going on without")
            }
        }
    }
    if installed.prometheus.is_none() && !installed.otlp {
        return installed;
    }
    if let Err(error) = metrics::set_global_recorder(fanout.build()) {
        tracing::warn!(%error, "a metrics recorder is installed already; keeping it");
    }
    installed
}

/// Whether any metrics are recorded in this process (so that work done only to feed them, such
/// as polling queue depths, can be skipped otherwise).
pub fn metrics_enabled() -> bool {
    INSTALLED
        .get()
        .is_some_and(|i| i.prometheus.is_some() || i.otlp)
}

/// How often OTLP metrics are exported, when they are: values read from elsewhere (stored
/// state) are best refreshed at that pace.
pub fn otlp_metrics_interval() -> Option<Duration> {
    INSTALLED.get().filter(|i| i.otlp)?;
    let interval = std::env::var("OTEL_METRIC_EXPORT_INTERVAL")
        .ok()
        .and_then(|ms| ms.trim().parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map_or(DEFAULT_EXPORT_INTERVAL, Duration::from_millis);
    Some(interval)
}

fn otlp_metrics_configured() -> bool {
    // The standard switch: `none` keeps metrics off OTLP (e.g. a trace-only collector such as
    // Jaeger), while traces still go.
    if std::env::var("OTEL_METRICS_EXPORTER").is_ok_and(|v| v.trim() == "none") {
        return false;
    }
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    ]
    .iter()
    .any(|name| std::env::var(name).is_ok_and(|v| !v.trim().is_empty()))
}

fn prometheus_recorder(
    buckets: &[(&str, &[f64])],
) -> Result<metrics_exporter_prometheus::PrometheusRecorder, String> {
    let mut builder = PrometheusBuilder::new();
    for (name, bounds) in buckets {
        builder = builder
            .set_buckets_for_metric(Matcher::Full((*name).to_owned()), bounds)
            .map_err(|e| e.to_string())?;
    }
    Ok(builder.build_recorder())
}

/// Histogram samples wait in the registry until a render; without scrapes they would pile up.
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(UPKEEP_INTERVAL);
            handle.run_upkeep();
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "no metrics upkeep thread; histograms are folded at each scrape only");
    }
}

/// A recorder feeding an OpenTelemetry meter whose periodic reader (a thread of its own)
/// exports over OTLP/HTTP.
fn otlp_recorder(buckets: &[(&str, &[f64])]) -> Result<OpenTelemetryRecorder, String> {
    let exporter = opentelemetry_otlp::MetricExporter::builder()
        .with_http()
        .build()
        .map_err(|e| e.to_string())?;
    let provider = SdkMeterProvider::builder()
        .with_periodic_exporter(exporter)
        .with_resource(Resource::builder().build())
        .build();
    let recorder = OpenTelemetryRecorder::new(provider.meter("sagaflow"));
    for (name, bounds) in buckets {
        recorder.set_histogram_bounds(&metrics::KeyName::from(name.to_string()), bounds.to_vec());
    }
    *METER_PROVIDER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(provider);
    Ok(recorder)
}

/// Exports the last OTLP metrics (on drop); part of [`crate::ProcessGuard`].
pub struct MetricsGuard(());

impl MetricsGuard {
    pub(crate) fn new() -> Self {
        MetricsGuard(())
    }
}

impl Drop for MetricsGuard {
    fn drop(&mut self) {
        let provider = METER_PROVIDER
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(provider) = provider {
            if let Err(error) = provider.shutdown() {
                eprintln!("some metrics were not exported: {error}");
            }
        }
    }
}

/// Serves `GET /metrics` (Prometheus text of `handle`) on `addr` until `shutdown`, for a process
/// that has no HTTP server of its own. Returns once listening, with the address bound (port 0
/// picks a free one); the handle ends when the server has stopped.
pub async fn serve_metrics(
    addr: SocketAddr,
    handle: PrometheusHandle,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    use axum::http::header;
    use axum::routing::get;

    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let handle = handle.clone();
            async move {
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    handle.render(),
                )
            }
        }),
    );
    let server = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "the /metrics server stopped");
        }
    });
    Ok((local, server))
}
