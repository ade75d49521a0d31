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
mod topology;

pub use consume::{consume, reply_queue, ConsumeError};
pub use dead_letter::{
    dead_letter, dead_letter_message, HEADERS_TRUNCATED, MAX_COPIED_HEADER_BYTES,
};
pub use headers::{check_properties, header, header_text, MAX_HEADER_NESTING};
pub use publish::{OutgoingMessage, PendingConfirm, PublishError, Publisher};
pub use queue_depth::watch_queue_depths;
pub use topology::{
    declare_activity_queue, declare_core, declare_dead_letter_watch, declare_queue, QueueType,
};

pub use lapin::message::Delivery;
pub use lapin::{Channel, Connection};

/// Opening a connection failed.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot connect to RabbitMQ at {url}: {source}. Check AMQP_URL and that the broker is running"
)]
pub struct ConnectError {
    /// The URL without its password.
    pub url: String,
    #[source]
    pub source: lapin::Error,
}

/// Connects to `url`, naming the connection `name` in the broker's management views.
pub async fn connect(url: &str, name: &str) -> Result<Connection, ConnectError> {
    let mut properties = lapin::ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio);
    properties.client_properties.insert(
        "connection_name".into(),
        lapin::types::AMQPValue::LongString(name.into()),
    );
    Connection::connect(url, properties)
        .await
        .map_err(|source| ConnectError {
            url: redact(url),
            source,
        })
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
pub fn redact(url: &str) -> String {
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
    }
}
