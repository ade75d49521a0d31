//! An OTLP/HTTP receiver for tests: a small axum server on 127.0.0.1 that decodes the
//! protobuf `ExportTraceServiceRequest`s and `ExportMetricsServiceRequest`s the processes send
//! and keeps their spans and metric data points.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point, NumberDataPoint};
use prost::Message;

/// One received span, flattened.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub service: String,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub attributes: Vec<(String, String)>,
}

impl ReceivedSpan {
    /// The attribute `key` as text.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// One data point of a received metric, flattened: a counter's or gauge's value, a
/// histogram's count.
#[derive(Debug, Clone)]
pub struct ReceivedPoint {
    pub service: String,
    /// The attributes of the exporting process (`OTEL_RESOURCE_ATTRIBUTES`, …).
    pub resource: Vec<(String, String)>,
    pub metric: String,
    pub attributes: Vec<(String, String)>,
    pub value: f64,
}

impl ReceivedPoint {
    /// The attribute `key` as text.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Received {
    spans: Vec<ReceivedSpan>,
    points: Vec<ReceivedPoint>,
}

/// The receiver; spans and metrics arrive while it lives.
pub struct OtlpReceiver {
    pub endpoint: String,
    received: Arc<Mutex<Received>>,
    _server: tokio::task::JoinHandle<()>,
}

impl OtlpReceiver {
    pub async fn start() -> OtlpReceiver {
        let received = Arc::new(Mutex::new(Received::default()));
        let app = Router::new()
            .route("/v1/traces", post(receive_spans))
            .route("/v1/metrics", post(receive_metrics))
            .with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port on 127.0.0.1");
        let addr = listener.local_addr().expect("a bound address");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        OtlpReceiver {
            endpoint: format!("http://{addr}"),
            received,
            _server: server,
        }
    }

    /// The spans received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.received.lock().expect("not poisoned").spans.clone()
    }

    /// The metric data points received so far, oldest first (each export repeats the
    /// cumulative values: the last point of a series is its latest value).
    pub fn metric_points(&self) -> Vec<ReceivedPoint> {
        self.received.lock().expect("not poisoned").points.clone()
    }
}

fn service_name(attributes: &[KeyValue]) -> String {
    attributes
        .iter()
        .find(|kv| kv.key == "service.name")
        .and_then(|kv| kv.value.as_ref().and_then(|v| v.value.as_ref()).map(text))
        .unwrap_or_default()
}

fn attribute_texts(attributes: Vec<KeyValue>) -> Vec<(String, String)> {
    attributes
        .into_iter()
        .map(|kv| {
            let value = kv
                .value
                .and_then(|v| v.value)
                .map(|v| text(&v))
                .unwrap_or_default();
            (kv.key, value)
        })
        .collect()
}

async fn receive_metrics(
    State(received): State<Arc<Mutex<Received>>>,
    body: Bytes,
) -> &'static str {
    let Ok(request) = ExportMetricsServiceRequest::decode(body) else {
        return "";
    };
    let mut points = Vec::new();
    for resource_metrics in request.resource_metrics {
        let service = service_name(
            resource_metrics
                .resource
                .as_ref()
                .map_or(&[][..], |r| &r.attributes[..]),
        );
        let resource = attribute_texts(
            resource_metrics
                .resource
                .clone()
                .map(|r| r.attributes)
                .unwrap_or_default(),
        );
        for metric in resource_metrics
            .scope_metrics
            .into_iter()
            .flat_map(|s| s.metrics)
        {
            let point = |attributes, value| ReceivedPoint {
                service: service.clone(),
                resource: resource.clone(),
                metric: metric.name.clone(),
                attributes: attribute_texts(attributes),
                value,
            };
            match metric.data.clone() {
                Some(Data::Sum(sum)) => points.extend(
                    sum.data_points
                        .into_iter()
                        .map(|p| point(p.attributes.clone(), number(&p))),
                ),
                Some(Data::Gauge(gauge)) => points.extend(
                    gauge
                        .data_points
                        .into_iter()
                        .map(|p| point(p.attributes.clone(), number(&p))),
                ),
                Some(Data::Histogram(histogram)) => points.extend(
                    histogram
                        .data_points
                        .into_iter()
                        .map(|p| point(p.attributes, p.count as f64)),
                ),
                _ => {}
            }
        }
    }
    received.lock().expect("not poisoned").points.extend(points);
    ""
}

fn number(point: &NumberDataPoint) -> f64 {
    match point.value {
        Some(number_data_point::Value::AsDouble(d)) => d,
        Some(number_data_point::Value::AsInt(i)) => i as f64,
        None => f64::NAN,
    }
}

async fn receive_spans(State(received): State<Arc<Mutex<Received>>>, body: Bytes) -> &'static str {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return "";
    };
    let mut spans = Vec::new();
    for resource_spans in request.resource_spans {
        let service = service_name(
            resource_spans
                .resource
                .as_ref()
                .map_or(&[][..], |r| &r.attributes[..]),
        );
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                spans.push(ReceivedSpan {
                    service: service.clone(),
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    attributes: attribute_texts(span.attributes),
                });
            }
        }
    }
    received.lock().expect("not poisoned").spans.extend(spans);
    ""
}

fn text(value: &AnyValue) -> String {
    match value {
        AnyValue::StringValue(s) => s.clone(),
        AnyValue::IntValue(i) => i.to_string(),
        AnyValue::BoolValue(b) => b.to_string(),
        AnyValue::DoubleValue(d) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
