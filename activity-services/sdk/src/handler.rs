//! Typed handlers, erased to JSON in and [`ActivityOutcome`] out.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use sagaflow_contracts::{ActivityError, ActivityOutcome};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::ActivityContext;

/// A registered handler: runs one command's input to an outcome, never panics.
pub(crate) type ErasedHandler =
    Arc<dyn Fn(ActivityContext, Value) -> BoxFuture<'static, ActivityOutcome> + Send + Sync>;

/// `handler` behind JSON: an input that does not fit `I` fails permanently with
/// `InvalidInput`, a panic fails permanently with `ActivityPanicked`.
pub(crate) fn erase<I, O, F, Fut>(handler: F) -> ErasedHandler
where
    I: DeserializeOwned + Send + 'static,
    O: Serialize + Send + 'static,
    F: Fn(ActivityContext, I) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, ActivityError>> + Send + 'static,
{
    let handler = Arc::new(handler);
    Arc::new(move |ctx: ActivityContext, input: Value| {
        let handler = Arc::clone(&handler);
        async move {
            let input: I = match serde_json::from_value(input) {
                Ok(input) => input,
                Err(error) => {
                    return failed(ActivityError::permanent(
                        "InvalidInput",
                        format!(
                            "the input does not fit the handler of {}: {error}",
                            ctx.activity()
                        ),
                    ))
                }
            };
            // The handler is called inside the future so a panic before its first await is
            // caught too.
            let run = AssertUnwindSafe(async move { handler(ctx, input).await })
                .catch_unwind()
                .await;
            match run {
                Ok(Ok(output)) => match serde_json::to_value(output) {
                    Ok(output) => ActivityOutcome::Completed { output },
                    Err(error) => failed(ActivityError::permanent(
                        "InvalidOutput",
                        format!("the handler's output cannot be written as JSON: {error}"),
                    )),
                },
                Ok(Err(error)) => failed(error),
                Err(panic) => {
                    let message = panic_message(panic.as_ref());
                    tracing::error!(panic = message, "the activity handler panicked");
                    failed(ActivityError::permanent(
                        "ActivityPanicked",
                        format!("the activity handler panicked: {message}"),
                    ))
                }
            }
        }
        .boxed()
    })
}

fn failed(error: ActivityError) -> ActivityOutcome {
    ActivityOutcome::Failed { error }
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    if let Some(message) = panic.downcast_ref::<&str>() {
        message
    } else if let Some(message) = panic.downcast_ref::<String>() {
        message
    } else {
        "(no message)"
    }
}

#[cfg(test)]
mod tests {
    use sagaflow_contracts::{ActivityCommand, IdempotencyKey, SagaId, StepSeq};
    use serde_json::json;

    use super::*;

    fn context() -> ActivityContext {
        let saga_id = SagaId::new_random();
        ActivityContext::from_command(&ActivityCommand {
            saga_id,
            step: StepSeq(1),
            activity: "Double".to_owned(),
            attempt: 1,
            idempotency_key: IdempotencyKey::for_step(saga_id, StepSeq(1)),
            input: Value::Null,
            heartbeat_timeout_ms: None,
            heartbeat_details: None,
        })
    }

    async fn double(_ctx: ActivityContext, n: i64) -> Result<i64, ActivityError> {
        if n < 0 {
            return Err(ActivityError::transient("Negative", "try again"));
        }
        if n == 13 {
            panic!("unlucky {n}");
        }
        Ok(n * 2)
    }

    fn error_of(outcome: ActivityOutcome) -> ActivityError {
        match outcome {
            ActivityOutcome::Failed { error } => error,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn typed_output_becomes_json() {
        let outcome = erase(double)(context(), json!(21)).await;
        assert_eq!(outcome, ActivityOutcome::Completed { output: json!(42) });
    }

    #[tokio::test]
    async fn handler_errors_are_reported_as_they_are() {
        let error = error_of(erase(double)(context(), json!(-1)).await);
        assert_eq!(error, ActivityError::transient("Negative", "try again"));
    }

    #[tokio::test]
    async fn input_of_the_wrong_shape_fails_permanently() {
        let error = error_of(erase(double)(context(), json!("twenty")).await);
        assert_eq!(error.kind, "InvalidInput");
        assert!(!error.retryable);
        assert!(error.message.contains("Double"), "{}", error.message);
    }

    #[tokio::test]
    async fn a_panic_fails_permanently_with_its_message() {
        let error = error_of(erase(double)(context(), json!(13)).await);
        assert_eq!(error.kind, "ActivityPanicked");
        assert!(!error.retryable);
        assert!(error.message.contains("unlucky 13"), "{}", error.message);
    }
}
