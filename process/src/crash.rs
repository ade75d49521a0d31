//! Named crash points for the end-to-end tests, compiled in with the `failpoints` feature and
//! armed through the `FAILPOINTS` environment variable, e.g.
//! `FAILPOINTS=orchestrator.after-commit.ChargeCustomer=return`. An armed point kills the
//! process with a real SIGKILL: no destructor, no flush, no goodbye to the broker.

/// Arms the crash points listed in `FAILPOINTS`; keep the guard for the life of the process.
pub fn arm_crash_points() -> fail::FailScenario<'static> {
    fail::FailScenario::setup()
}

/// Kills this process with SIGKILL if the crash point `name` is armed.
#[cfg(feature = "failpoints")]
pub fn crash_point(name: &str) {
    fail::fail_point!(name, |_| sigkill_self());
}

/// Crash points are compiled out without the `failpoints` feature.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn crash_point(_name: &str) {}

#[cfg(feature = "failpoints")]
fn sigkill_self() -> ! {
    // SAFETY: kill(2) on our own pid has no memory-safety preconditions.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    unreachable!("SIGKILL cannot be caught")
}
