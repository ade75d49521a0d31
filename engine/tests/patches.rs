//! Versioning: `ctx.patched` keeps sagas started before a change on the old path and new
//! ones on the new path.

mod common;

use common::*;
use sagaflow_contracts::SagaEvent;
use sagaflow_engine::{SagaContext, SagaError, SagaRegistry, SagaRun};
use serde_json::json;

async fn v1(ctx: SagaContext, _: ()) -> Result<String, SagaError> {
    let _: serde_json::Value = ctx.activity("Charge", &()).await?;
    Ok("charged".into())
}

async fn v2(ctx: SagaContext, _: ()) -> Result<String, SagaError> {
    if ctx.patched("charge-in-two-steps") {
        let _: serde_json::Value = ctx.activity("Hold", &()).await?;
        let _: serde_json::Value = ctx.activity("Capture", &()).await?;
        Ok("held and captured".into())
    } else {
        let _: serde_json::Value = ctx.activity("Charge", &()).await?;
        Ok("charged".into())
    }
}

async fn v2_unpatched(ctx: SagaContext, _: ()) -> Result<String, SagaError> {
    let _: serde_json::Value = ctx.activity("Hold", &()).await?;
    let _: serde_json::Value = ctx.activity("Capture", &()).await?;
    Ok("held and captured".into())
}

fn registry_of(
    saga: impl Fn(SagaContext, ()) -> futures::future::BoxFuture<'static, Result<String, SagaError>>
        + Send
        + Sync
        + 'static,
) -> SagaRegistry {
    let mut registry = SagaRegistry::new();
    registry.register("Pay", saga).unwrap();
    registry
}

#[test]
fn an_old_saga_keeps_the_old_path_and_a_new_one_takes_the_new_path() {
    // Started on v1, waiting for its charge.
    let old = Harness::start(registry_of(|c, i| Box::pin(v1(c, i))), "Pay", json!(null));
    let v2_registry = registry_of(|c, i| Box::pin(v2(c, i)));
    let mut replayed = SagaRun::replay(&v2_registry, SAGA, &old.history, defaults(), t0())
        .expect("the patched code replays the old history")
        .run;
    let end = replayed
        .handle(
            sagaflow_engine::Fact::ActivityResult {
                step: sagaflow_contracts::StepSeq(1),
                activity: Some("Charge".into()),
                attempt: 1,
                outcome: sagaflow_contracts::ActivityOutcome::Completed { output: json!(1) },
            },
            t0(),
        )
        .unwrap()
        .unwrap();
    assert_eq!(
        end.end,
        Some(sagaflow_engine::SagaEnd::Completed(json!("charged")))
    );

    // A new saga takes the new path, and the marker keeps it there on replay.
    let mut new = Harness::start(v2_registry, "Pay", json!(null));
    assert!(matches!(
        new.history[1].event,
        SagaEvent::PatchMarked { .. }
    ));
    assert_eq!(new.scheduled(), [(1, "Hold".to_owned())]);
    new.complete(1, 1, json!(1));
    new.complete(2, 1, json!(1));
    assert!(new.replay().run.is_finished());
}

#[test]
fn an_unpatched_change_is_caught_by_replay() {
    let old = Harness::start(registry_of(|c, i| Box::pin(v1(c, i))), "Pay", json!(null));
    let unpatched = registry_of(|c, i| Box::pin(v2_unpatched(c, i)));
    let result = SagaRun::replay(&unpatched, SAGA, &old.history, defaults(), t0());
    assert!(matches!(
        result,
        Err(sagaflow_engine::ReplayError::Run(
            sagaflow_engine::RunError::NonDeterminism(_)
        ))
    ));
}
