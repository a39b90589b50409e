//! The independent C2SP checker: `tests/go/c2sp_check.go`, a short program
//! over Go's `golang.org/x/mod/sumdb/note` and `sumdb/tlog` (Debian's
//! golang-golang-x-mod-dev, GOPATH mode: nothing downloaded), built per test.

use std::path::{Path, PathBuf};

/// Builds the Go checker into `dir`.
pub fn build_checker(dir: &Path) -> PathBuf {
    let go = which("go").unwrap_or_else(|| {
        panic!("no `go` on PATH: run scripts/install-tools.sh (Debian's golang-go and golang-golang-x-mod-dev)")
    });
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/go/c2sp_check.go");
    let out = dir.join("c2sp_check");
    let o = std::process::Command::new(go)
        .args(["build", "-o"])
        .arg(&out)
        .arg(&src)
        .env("GO111MODULE", "off")
        .env("GOPATH", "/usr/share/gocode")
        .env("GOCACHE", dir.join("gocache"))
        .env("GOFLAGS", "")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "building the Go checker (needs golang-golang-x-mod-dev): {}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(bin))
            .find(|f| f.is_file())
    })
}

/// Runs the checker; (held, stdout + stderr).
pub fn check(checker: &Path, args: &[&str]) -> (bool, String) {
    let o = std::process::Command::new(checker)
        .args(args)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
    )
}
