//! A hidden switch for crash tests: with `HAYPACK_FAULT_AFTER=N` in the environment, the process
//! aborts (as if killed) right after the N-th step a writer reaches, so a test can stop a run at
//! every point between two durable writes and check that the archive survives. Only with the
//! `testing` feature (the CLI's test builds): elsewhere a step is nothing at all.

#[cfg(feature = "testing")]
static STEPS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Marks the end of a durable step: an object written, a commit made, an object deleted.
#[cfg(not(feature = "testing"))]
pub(crate) fn step(_what: &str) {}

/// Marks the end of a durable step: an object written, a commit made, an object deleted.
#[cfg(feature = "testing")]
pub(crate) fn step(what: &str) {
    use std::sync::OnceLock;
    use std::sync::atomic::Ordering;
    static AFTER: OnceLock<Option<u64>> = OnceLock::new();
    let after = AFTER.get_or_init(|| std::env::var("HAYPACK_FAULT_AFTER").ok().and_then(|v| v.parse().ok()));
    let Some(after) = *after else { return };
    let n = STEPS.fetch_add(1, Ordering::SeqCst) + 1;
    if n == after {
        eprintln!("haypack: fault injected after step {n} ({what})");
        std::process::abort();
    }
}
