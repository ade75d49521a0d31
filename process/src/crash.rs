//! Crashing on purpose: fail points that end the process with a real SIGKILL, so end-to-end
//! tests can check that nothing is lost or done twice when a service dies at a precise moment.
//!
//! Fail points are compiled in only with the `failpoints` feature and armed through the
//! `FAILPOINTS` environment variable, e.g. `FAILPOINTS=activity.before-ack=return`.

use fail::FailScenario;

/// `FAILPOINTS` could not be understood.
#[derive(Debug, thiserror::Error)]
#[error("invalid FAILPOINTS entry {entry:?}: {reason}. Use name=actions;name=actions, e.g. activity.before-ack=return")]
pub struct InvalidFailPoints {
    /// The `name=actions` entry that failed.
    pub entry: String,
    /// Why.
    pub reason: String,
}

/// Arms the fail points listed in `FAILPOINTS`. Keep the returned guard alive for the life of
/// the process (fail points are disarmed when it is dropped).
///
/// Unlike `fail::FailScenario::setup` this returns an error instead of panicking on a malformed
/// `FAILPOINTS`, and warns when `FAILPOINTS` is set in a binary built without the `failpoints`
/// feature (where it would do nothing). Call it after [`init_tracing`](crate::init_tracing).
pub fn fail_scenario() -> Result<FailScenario<'static>, InvalidFailPoints> {
    let configured = std::env::var("FAILPOINTS").unwrap_or_default();
    for entry in configured
        .split(';')
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        let invalid = |reason: String| InvalidFailPoints {
            entry: entry.to_owned(),
            reason,
        };
        let (name, actions) = entry
            .split_once('=')
            .ok_or_else(|| invalid("missing '='".to_owned()))?;
        // Configuring once here validates the actions; `setup` below configures them again.
        fail::cfg(name.trim(), actions.trim()).map_err(invalid)?;
    }
    if !configured.trim().is_empty() && !fail::has_failpoints() {
        tracing::warn!(
            failpoints = configured,
            "FAILPOINTS is set but this binary was built without the failpoints feature; it has no effect"
        );
    }
    Ok(FailScenario::setup())
}

/// Kills this process with SIGKILL if the crash point `name` is armed in `FAILPOINTS`
/// (e.g. `FAILPOINTS=orchestrator.after-commit.ChargeCustomer=return`).
#[cfg(feature = "failpoints")]
pub fn crash_point(name: &str) {
    fail::fail_point!(name, |_| sigkill_self());
}

/// Crash points are compiled out without the `failpoints` feature.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn crash_point(_name: &str) {}

/// Whether the fault-injection point `name` is armed in `FAILPOINTS` (e.g.
/// `FAILPOINTS=charger.transient-failure=1*return` fires once). Always `false` without the
/// `failpoints` feature.
#[cfg(feature = "failpoints")]
pub fn fault_injected(name: &str) -> bool {
    (|| {
        fail::fail_point!(name, |_| true);
        false
    })()
}

/// Fault injection is compiled out without the `failpoints` feature.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn fault_injected(_name: &str) -> bool {
    false
}

/// Ends this process at once with SIGKILL, as `kill -9` would: no destructors, no flushing, no
/// acks. The action of every [`crash_point`].
#[allow(unsafe_code)]
pub fn sigkill_self() -> ! {
    // SAFETY: `getpid` has no preconditions, and `kill` with our own pid only sends a signal; it
    // touches no memory of ours.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    // SIGKILL cannot be caught or blocked, so this is not reached; never carry on if it were.
    std::process::abort()
}
