//! Headless Chromium, the browser the page and report tests drive:
//! `CHROMIUM`, else Debian's `chromium` (scripts/install-tools.sh installs it).

/// The browser's command.
pub fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into())
}

/// Runs headless Chromium on `url` with `args` (`--dump-dom`,
/// `--screenshot=…`, `--print-to-pdf=…`) in a fresh profile; its stdout.
/// Panics with Chromium's stderr when it fails.
pub fn headless(url: &str, args: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (scripts/install-tools.sh installs Debian's chromium)",
                chromium()
            )
        });
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The folder tests keep their artifacts in (`target/test-artifacts`), made.
pub fn artifacts() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
