//! Tidy checks that keep the codebase honest (after rust-analyzer's xtask tidy):
//! every source file opens with a `//!` doc saying what it is for, every crate
//! forbids unsafe code, and no test carries the ignore attribute to get green.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

fn sources() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in [
        "src",
        "stream/src",
        "ingest/src",
        "projector/src",
        "proto/src",
        "testkit/src",
        "tests",
    ] {
        rust_files(&root.join(dir), &mut files);
    }
    files.push(root.join("proto/build.rs"));
    files
}

#[test]
fn every_source_file_has_a_module_doc() {
    let missing: Vec<String> = sources()
        .into_iter()
        .filter(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            !text.trim_start().starts_with("//!")
        })
        .map(|p| p.display().to_string())
        .collect();
    assert!(missing.is_empty(), "files without a //! doc: {missing:?}");
}

#[test]
fn every_crate_forbids_unsafe_code() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for lib in [
        "src/lib.rs",
        "src/main.rs",
        "stream/src/lib.rs",
        "ingest/src/lib.rs",
        "projector/src/lib.rs",
        "proto/src/lib.rs",
    ] {
        let text = std::fs::read_to_string(root.join(lib)).unwrap();
        assert!(text.contains("#![forbid(unsafe_code)]"), "{lib}");
    }
}

#[test]
fn no_test_is_ignored() {
    let needle = ["#[", "ignore"].concat();
    let offenders: Vec<String> = sources()
        .into_iter()
        .filter(|p| std::fs::read_to_string(p).unwrap().contains(&needle))
        .map(|p| p.display().to_string())
        .collect();
    assert!(offenders.is_empty(), "ignored tests in {offenders:?}");
}
