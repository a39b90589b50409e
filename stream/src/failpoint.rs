//! Crash-test hooks: when env `GOVLEDGER_FAILPOINT` equals a failpoint's name,
//! the process aborts there (no unwinding, no cleanup), like a kill -9.

/// Aborts the process if `GOVLEDGER_FAILPOINT` names this point.
pub fn hit(name: &str) {
    static FP: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    if FP
        .get_or_init(|| std::env::var("GOVLEDGER_FAILPOINT").ok())
        .as_deref()
        == Some(name)
    {
        tracing::error!(failpoint = name, "failpoint hit: aborting");
        std::process::abort();
    }
}
