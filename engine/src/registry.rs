use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use sagaflow_contracts::{validate_name, InvalidName, SagaFailure};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::{SagaContext, SagaError};

/// A saga's future with its input and output erased to JSON.
pub(crate) type SagaFuture = BoxFuture<'static, Result<Value, SagaFailure>>;

type StartFn = dyn Fn(SagaContext, Value) -> Result<SagaFuture, InvalidInput> + Send + Sync;

/// One registered saga type: how to start its code from a JSON input.
#[derive(Clone)]
pub struct SagaDefinition {
    name: String,
    start: Arc<StartFn>,
}

impl SagaDefinition {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Checks that `input` fits this saga's input type.
    pub fn check_input(&self, input: &Value) -> Result<(), InvalidInput> {
        // Building the future runs no saga code: async fn bodies start at the first poll.
        (self.start)(SagaContext::detached(), input.clone()).map(drop)
    }

    pub(crate) fn start(&self, ctx: SagaContext, input: Value) -> Result<SagaFuture, InvalidInput> {
        (self.start)(ctx, input)
    }
}

/// The input of a start message does not fit the saga's input type.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("the input does not fit saga type {saga_type}: {reason}")]
pub struct InvalidInput {
    pub saga_type: String,
    pub reason: String,
}

/// The saga types an orchestrator can run, by name.
#[derive(Clone, Default)]
pub struct SagaRegistry {
    sagas: HashMap<String, SagaDefinition>,
}

impl SagaRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `saga` under `name`, replacing any saga of that name.
    ///
    /// `saga` must be deterministic: it may only learn about the world through its
    /// [`SagaContext`] (no clocks, no random numbers, no I/O of its own).
    pub fn register<I, O, F, Fut>(&mut self, name: &str, saga: F) -> Result<&mut Self, InvalidName>
    where
        I: DeserializeOwned,
        O: Serialize,
        F: Fn(SagaContext, I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, SagaError>> + Send + 'static,
    {
        validate_name(name)?;
        let saga_type = name.to_owned();
        let start = move |ctx: SagaContext, input: Value| -> Result<SagaFuture, InvalidInput> {
            let input: I = serde_json::from_value(input).map_err(|e| InvalidInput {
                saga_type: saga_type.clone(),
                reason: e.to_string(),
            })?;
            let run = saga(ctx, input);
            Ok(async move {
                let output = run.await.map_err(|SagaError(failure)| failure)?;
                serde_json::to_value(output).map_err(|e| SagaFailure {
                    message: format!("the saga's output does not serialize: {e}"),
                    details: None,
                })
            }
            .boxed())
        };
        self.sagas.insert(
            name.to_owned(),
            SagaDefinition {
                name: name.to_owned(),
                start: Arc::new(start),
            },
        );
        Ok(self)
    }

    /// The saga registered under `name`.
    pub fn get(&self, name: &str) -> Option<&SagaDefinition> {
        self.sagas.get(name)
    }

    /// The registered names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.sagas.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}
