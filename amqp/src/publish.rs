use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::publisher_confirm::{Confirmation, PublisherConfirm};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection};

/// A message ready to publish: persistent JSON of the wire contract's version
/// ([`sagaflow_contracts::CONTENT_TYPE`]) with an id, a type and string headers.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OutgoingMessage {
    /// `""` for the default exchange, which routes to the queue named by `routing_key`.
    pub exchange: String,
    pub routing_key: String,
    pub message_id: String,
    /// The AMQP `type` property.
    pub message_type: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The AMQP `correlation_id` property: set on a reply, copied from the request.
    pub correlation_id: Option<String>,
    /// The AMQP `reply_to` property: where the answer to this message goes.
    pub reply_to: Option<String>,
}

impl OutgoingMessage {
    fn properties(&self) -> BasicProperties {
        let mut headers = FieldTable::default();
        for (name, value) in &self.headers {
            headers.insert(
                name.as_str().into(),
                AMQPValue::LongString(value.as_str().into()),
            );
        }
        let mut properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type(sagaflow_contracts::CONTENT_TYPE.into())
            .with_message_id(self.message_id.as_str().into())
            .with_type(self.message_type.as_str().into())
            .with_headers(headers);
        if let Some(id) = &self.correlation_id {
            properties = properties.with_correlation_id(id.as_str().into());
        }
        if let Some(queue) = &self.reply_to {
            properties = properties.with_reply_to(queue.as_str().into());
        }
        properties
    }
}

/// Publishing one message failed; the broker did not take responsibility for it.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The channel or connection failed. Reconnect, then publish again.
    #[error("publishing to {routing_key:?} failed: {source}")]
    Channel {
        routing_key: String,
        #[source]
        source: lapin::Error,
    },
    /// The broker refused the message (negative confirm). Publish again later.
    #[error("the broker refused the message to {routing_key:?} (nack)")]
    Nacked { routing_key: String },
    /// No queue is bound to receive it; it was returned. Declare the queue, then publish again.
    #[error("no queue receives messages routed to {routing_key:?}; the message was returned")]
    Unroutable { routing_key: String },
}

/// Publishes on a channel in confirm mode. Cheap to clone; clones share the channel.
#[derive(Clone)]
pub struct Publisher {
    channel: Channel,
}

impl Publisher {
    /// Opens a channel on `connection` and puts it in confirm mode.
    pub async fn open(connection: &Connection) -> Result<Self, lapin::Error> {
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Publisher { channel })
    }

    /// The channel, for declaring what is about to be published to.
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Sends `message` (mandatory: an unroutable message comes back as an error) and returns the
    /// confirm to await. Sending many, then awaiting all confirms, pipelines the round trips.
    pub async fn send(&self, message: &OutgoingMessage) -> Result<PendingConfirm, PublishError> {
        let confirm = self
            .channel
            .basic_publish(
                &message.exchange,
                &message.routing_key,
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &message.body,
                message.properties(),
            )
            .await
            .map_err(|source| PublishError::Channel {
                routing_key: message.routing_key.clone(),
                source,
            })?;
        Ok(PendingConfirm {
            confirm,
            routing_key: message.routing_key.clone(),
        })
    }

    /// Publishes `message` and waits until the broker has taken responsibility for it.
    pub async fn publish_confirmed(&self, message: &OutgoingMessage) -> Result<(), PublishError> {
        self.send(message).await?.wait().await
    }
}

/// A sent message whose confirm has not arrived yet.
pub struct PendingConfirm {
    confirm: PublisherConfirm,
    routing_key: String,
}

impl PendingConfirm {
    /// Waits for the broker's confirm.
    pub async fn wait(self) -> Result<(), PublishError> {
        let routing_key = self.routing_key;
        match self.confirm.await {
            Ok(Confirmation::Ack(None)) | Ok(Confirmation::NotRequested) => Ok(()),
            Ok(Confirmation::Ack(Some(_returned))) => Err(PublishError::Unroutable { routing_key }),
            Ok(Confirmation::Nack(_)) => Err(PublishError::Nacked { routing_key }),
            Err(source) => Err(PublishError::Channel {
                routing_key,
                source,
            }),
        }
    }
}
