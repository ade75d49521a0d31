//! OpenTelemetry traces: exported over OTLP/HTTP (protobuf) when `OTEL_EXPORTER_OTLP_ENDPOINT`
//! (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, nothing otherwise. `OTEL_SERVICE_NAME` and
//! `OTEL_RESOURCE_ATTRIBUTES` name the process. Every `tracing` span becomes an OpenTelemetry
//! span; W3C `traceparent`/`tracestate` carry the context between processes in AMQP headers.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Whether the environment asks for OTLP export.
pub(crate) fn otlp_configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|name| std::env::var(name).is_ok_and(|v| !v.trim().is_empty()))
}

/// The tracer provider exporting to the configured endpoint, installed as the global one.
pub(crate) fn otlp_provider() -> Result<SdkTracerProvider, String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|e| e.to_string())?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().build())
        .build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    Ok(provider)
}

/// The `tracing` layer that turns spans into OpenTelemetry spans of `provider`.
pub(crate) fn otlp_layer<S>(
    provider: &SdkTracerProvider,
) -> tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    tracing_opentelemetry::layer().with_tracer(provider.tracer("sagaflow"))
}

/// The `traceparent` and `tracestate` headers of `span` (none when traces are off).
pub fn trace_headers(span: &tracing::Span) -> Vec<(String, String)> {
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    let mut headers: Vec<(String, String)> = carrier.into_iter().collect();
    headers.sort();
    headers
}

/// Makes the context in `traceparent`/`tracestate` (as read by `header`) the parent of
/// `span`; nothing when there is none or it is malformed.
pub fn set_remote_parent(span: &tracing::Span, header: impl Fn(&str) -> Option<String>) {
    let mut carrier = HashMap::new();
    for name in ["traceparent", "tracestate"] {
        if let Some(value) = header(name).filter(|v| v.len() <= 512) {
            carrier.insert(name.to_owned(), value);
        }
    }
    if carrier.contains_key("traceparent") {
        let parent = TraceContextPropagator::new().extract(&carrier);
        let _ = span.set_parent(parent);
    }
}

/// Ends trace export: flushes the spans not yet sent (on drop).
pub struct TracesGuard(pub(crate) Option<SdkTracerProvider>);

impl Drop for TracesGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.0.take() {
            if let Err(error) = provider.shutdown() {
                eprintln!("some spans were not exported: {error}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn no_headers_and_no_parent_when_traces_are_off() {
        let span = tracing::info_span!("x");
        assert!(super::trace_headers(&span).is_empty());
        super::set_remote_parent(&span, |_| Some("garbage".into()));
    }
}
