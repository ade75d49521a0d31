//! The histories under `tests/histories/` were exported (`sagaflow export`) from real runs of
//! the demo sagas. Every build must still replay them: a change to the demo sagas that would
//! make running sagas diverge fails here, before it ships (guard it with `ctx.patched`).

use std::path::Path;

#[test]
fn the_demo_sagas_replay_every_checked_in_history() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/histories");
    let replayed =
        sagaflow_orchestrator::replay_check(&sagaflow_orchestrator::demo::registry(), &dir)
            .expect("the histories can be read");
    assert!(replayed.len() >= 3, "{replayed:?}");
    let diverging: Vec<_> = replayed.iter().filter(|r| r.divergence.is_some()).collect();
    assert!(diverging.is_empty(), "{diverging:#?}");
}
