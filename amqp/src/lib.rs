//! RabbitMQ plumbing shared by the orchestrator and the activity SDK: connecting, declaring the
//! durable topology, publishing with publisher confirms, consuming with manual acks and a
//! graceful stop, and dead-lettering with a reason.
//!
//! Both sides of the system declare what they use, idempotently and with identical arguments,
//! so either may start first.

mod consume;
mod dead_letter;
mod headers;
mod publish;
mod queue_depth;
mod tls;
mod topology;

pub use consume::{consume, consume_batches, reply_queue, Batching, ConsumeError};
pub use dead_letter::{
    dead_letter, dead_letter_message, HEADERS_TRUNCATED, MAX_COPIED_HEADER_BYTES,
};
pub use headers::{check_properties, header, header_text, MAX_HEADER_NESTING};
pub use publish::{OutgoingMessage, PendingConfirm, PublishError, Publisher};
pub use queue_depth::watch_queue_depths;
pub use tls::{AmqpTls, AmqpTlsArgs, AmqpTlsError};
pub use topology::{
    declare_activity_queue, declare_core, declare_dead_letter_watch, declare_queue, QueueType,
};

pub use lapin::message::Delivery;
pub use lapin::{Channel, Connection};

/// Opening a connection failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to RabbitMQ at {url}: {source}. {hint}")]
pub struct ConnectError {
    /// The URL without its password (the last one tried, when several were given).
    pub url: String,
    #[source]
    pub source: lapin::Error,
    /// What to check.
    hint: &'static str,
}

/// Connects to `url`, naming the connection `name` in the broker's management views. An
/// `amqps://` URL is checked against the system's CAs; see [`connect_with_tls`] for a CA file or a
/// client certificate, and for several URLs.
pub async fn connect(url: &str, name: &str) -> Result<Connection, ConnectError> {
    connect_with_tls(url, name, &AmqpTls::default()).await
}

/// Connects to the first node of `urls` that accepts, trying them in turn: one URL, or several
/// separated by commas (the nodes of a cluster). `tls` applies to every `amqps://` URL.
pub async fn connect_with_tls(
    urls: &str,
    name: &str,
    tls: &AmqpTls,
) -> Result<Connection, ConnectError> {
    let mut last = None;
    for url in self::urls(urls) {
        match connect_one(url, name, tls).await {
            Ok(connection) => return Ok(connection),
            Err(error) => {
                tracing::debug!(%error, "trying the next RabbitMQ URL");
                last = Some(error);
            }
        }
    }
    Err(last.unwrap_or_else(|| ConnectError {
        url: String::new(),
        source: lapin::Error::IOError(std::sync::Arc::new(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "no URL given",
        ))),
        hint: "Set AMQP_URL",
    }))
}

/// The URLs of a comma-separated list, without blanks around them.
pub fn urls(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|url| !url.is_empty())
}

async fn connect_one(url: &str, name: &str, tls: &AmqpTls) -> Result<Connection, ConnectError> {
    let mut properties = lapin::ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio);
    properties.client_properties.insert(
        "connection_name".into(),
        lapin::types::AMQPValue::LongString(name.into()),
    );
    let error = |source: lapin::Error| ConnectError {
        url: redact(url),
        hint: hint(url, &source),
        source,
    };
    match tls.handshake() {
        None => Connection::connect(url, properties).await.map_err(error),
        Some(handshake) => {
            let uri: lapin::uri::AMQPUri = url.parse().map_err(|reason: String| {
                error(lapin::Error::IOError(std::sync::Arc::new(
                    std::io::Error::new(std::io::ErrorKind::InvalidInput, reason),
                )))
            })?;
            Connection::connector(uri, handshake, properties)
                .await
                .map_err(error)
        }
    }
}

/// Waits (at most `timeout`) until the I/O thread of a closed `connection` has ended. Its last
/// socket work needs the tokio reactor: a process that let its runtime go first would have the
/// thread log `A Tokio 1.x context was found, but it is being shutdown` as an ERROR on a clean
/// stop. Joined on a thread of its own, so a thread that never ends cannot hold up the exit.
pub async fn wait_for_io_thread(connection: Connection, timeout: std::time::Duration) {
    let (done, ended) = tokio::sync::oneshot::channel();
    let joining = std::thread::Builder::new()
        .name("amqp-close".into())
        .spawn(move || {
            // `run` drops the connection and joins its I/O thread.
            let _ = connection.run();
            let _ = done.send(());
        });
    if joining.is_ok() {
        let _ = tokio::time::timeout(timeout, ended).await;
    }
}

/// `url` with any password replaced by `***`.
/// What to check after `source`: the certificates for a TLS failure, TLS itself when a plain
/// connection was dropped before the AMQP handshake (as a TLS-only port does).
fn hint(url: &str, source: &lapin::Error) -> &'static str {
    let tls = url
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("amqps://");
    let text = source.to_string().to_ascii_lowercase();
    match source {
        _ if tls
            && (text.contains("certificate")
                || text.contains("tls")
                || text.contains("handshake")) =>
        {
            "Check SAGAFLOW_AMQP_CA_FILE (the CA that signed the broker's certificate), the host name in the URL (it must be in the certificate) and the client certificate"
        }
        // A TLS listener answers a plain client with a TLS alert (not AMQP) or a reset.
        lapin::Error::ParsingError(_) | lapin::Error::InvalidProtocolVersion(_) if !tls => {
            "The server did not answer in AMQP: if it accepts only TLS, use an amqps:// URL (and its port)"
        }
        lapin::Error::IOError(_) | lapin::Error::ProtocolError(_) if !tls => {
            "Check AMQP_URL and that the broker is running; if it accepts only TLS, use an amqps:// URL (and its port)"
        }
        _ => "Check AMQP_URL and that the broker is running",
    }
}

/// `url` with any password replaced by `***`; each URL of a comma-separated list.
pub fn redact(url: &str) -> String {
    url.split(',').map(redact_one).collect::<Vec<_>>().join(",")
}

fn redact_one(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.find(':') {
                Some(colon) => format!("{}***{}", &url[..scheme + 3 + colon + 1], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            super::redact("amqp://guest:secret@host:5672/%2f"),
            "amqp://guest:***@host:5672/%2f"
        );
        assert_eq!(super::redact("amqp://host"), "amqp://host");
        assert_eq!(
            super::redact("amqps://u:a@h1/%2f, amqps://u:b@h2/%2f"),
            "amqps://u:***@h1/%2f, amqps://u:***@h2/%2f"
        );
    }

    #[test]
    fn a_list_of_urls_is_split_on_commas() {
        let urls: Vec<_> = super::urls(" amqp://a/%2f ,amqp://b/%2f,,").collect();
        assert_eq!(urls, ["amqp://a/%2f", "amqp://b/%2f"]);
    }
}
