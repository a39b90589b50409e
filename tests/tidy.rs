//! Tidy checks that keep the codebase honest (after rust-analyzer's xtask tidy):
//! every source file opens with a `//!` doc saying what it is for, every crate
//! forbids unsafe code, every module a crate or folder declares is named in its
//! Layout doc, no test carries the ignore attribute to get green, and a file or
//! function past the size limits is named in ARCHITECTURE.md with the reason.

use std::path::{Path, PathBuf};

/// The workspace's crates (folders holding a `Cargo.toml` with sources).
const CRATES: [&str; 7] = [
    ".",
    "proto",
    "stream",
    "ingest",
    "projector",
    "testkit",
    "bench",
];

/// A non-test file longer than this is named in ARCHITECTURE.md.
const FILE_LINES_MAX: usize = 700;
/// A function longer than this is named in ARCHITECTURE.md.
const FN_LINES_MAX: usize = 120;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// Every Rust file of every crate: sources, tests, examples, build scripts.
fn sources() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for krate in CRATES {
        for dir in ["src", "tests", "examples"] {
            rust_files(&root().join(krate).join(dir), &mut files);
        }
        let build = root().join(krate).join("build.rs");
        if build.is_file() {
            files.push(build);
        }
    }
    files.sort();
    files.dedup();
    assert!(files.len() > 50, "tidy found only {} files", files.len());
    files
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

fn relative(p: &Path) -> String {
    p.strip_prefix(root()).unwrap_or(p).display().to_string()
}

/// The file's leading `//!` doc.
fn module_doc(text: &str) -> String {
    text.lines()
        .map(str::trim_start)
        .take_while(|l| l.starts_with("//!") || l.starts_with("#!") || l.is_empty())
        .filter(|l| l.starts_with("//!"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_source_file_has_a_module_doc() {
    let missing: Vec<String> = sources()
        .into_iter()
        .filter(|p| !read(p).trim_start().starts_with("//!"))
        .map(|p| relative(&p))
        .collect();
    assert!(missing.is_empty(), "files without a //! doc: {missing:?}");
}

#[test]
fn every_crate_forbids_unsafe_code() {
    let mut roots = vec![root().join("src/main.rs")];
    for krate in CRATES {
        roots.push(root().join(krate).join("src/lib.rs"));
    }
    roots.push(root().join("bench/src/main.rs"));
    for lib in roots.into_iter().filter(|p| p.is_file()) {
        // The test harness denies it and allows one documented site (a child
        // process's `pre_exec`); everything that ships forbids it.
        let wanted = if relative(&lib).starts_with("testkit/") {
            "#![deny(unsafe_code)]"
        } else {
            "#![forbid(unsafe_code)]"
        };
        assert!(
            read(&lib).contains(wanted),
            "{} does not have {wanted}",
            relative(&lib)
        );
    }
}

/// The modules a file declares (`mod x;` / `pub mod x;`, not inline `mod x { .. }`).
fn declared_modules(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter_map(|l| {
            let l = l
                .strip_prefix("pub(crate) ")
                .or_else(|| l.strip_prefix("pub "))
                .unwrap_or(l);
            let name = l.strip_prefix("mod ")?.strip_suffix(';')?;
            Some(name.trim().to_owned())
        })
        .collect()
}

#[test]
fn every_declared_module_is_named_in_its_layout_doc() {
    let mut problems = Vec::new();
    for p in sources()
        .into_iter()
        .filter(|p| relative(p).contains("src/"))
    {
        let text = read(&p);
        let modules = declared_modules(&text);
        if modules.is_empty() {
            continue;
        }
        let doc = module_doc(&text);
        if !doc.contains("Layout") {
            problems.push(format!(
                "{}: declares {modules:?} but its //! doc has no Layout section",
                relative(&p)
            ));
            continue;
        }
        for m in modules {
            let named = [format!("`{m}`"), format!("[`{m}`]"), format!("`{m}/`")]
                .iter()
                .any(|form| doc.contains(form.as_str()));
            if !named {
                problems.push(format!(
                    "{}: module `{m}` is missing from its Layout doc",
                    relative(&p)
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn layout_check_sees_a_missing_module() {
    let text =
        "//! The crate.\n//!\n//! Layout:\n//! - [`a`]: one thing.\n\npub mod a;\npub mod b;\n";
    assert_eq!(declared_modules(text), ["a", "b"]);
    let doc = module_doc(text);
    assert!(doc.contains("[`a`]") && !doc.contains("`b`"));
}

#[test]
fn no_test_is_ignored() {
    let needle = ["#[", "ignore"].concat();
    let offenders: Vec<String> = sources()
        .into_iter()
        .filter(|p| read(p).contains(&needle))
        .map(|p| relative(&p))
        .collect();
    assert!(offenders.is_empty(), "ignored tests in {offenders:?}");
}

/// A file whose every line is test code (an integration test, a test harness).
fn is_test_file(p: &Path) -> bool {
    let rel = relative(p);
    rel.starts_with("tests/") || rel.contains("/tests/") || rel.starts_with("testkit/")
}

/// Lines before a file's `#[cfg(test)]` module: what ships.
fn non_test_lines(text: &str) -> usize {
    text.lines()
        .take_while(|l| !l.starts_with("#[cfg(test)]"))
        .count()
}

/// Functions (name, lines) longer than `max`: a `fn` line and the next line that
/// closes at the same indentation.
fn long_functions(text: &str, max: usize) -> Vec<(String, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let body = l.trim_start();
        let indent = &l[..l.len() - body.len()];
        let sig = body
            .trim_start_matches("pub(crate) ")
            .trim_start_matches("pub ")
            .trim_start_matches("async ")
            .trim_start_matches("const ")
            .trim_start_matches("unsafe ");
        let Some(rest) = sig.strip_prefix("fn ") else {
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let close = format!("{indent}}}");
        if let Some(len) = lines[i + 1..].iter().position(|x| *x == close)
            && len + 2 > max
        {
            out.push((name, len + 2));
        }
    }
    out
}

#[test]
fn long_function_finder_measures_bodies() {
    let text = "fn short() {\n    1\n}\n\nfn long() {\n    a();\n    b();\n    c();\n}\n";
    assert_eq!(long_functions(text, 4), [("long".to_owned(), 5)]);
}

#[test]
fn long_files_and_functions_are_explained_in_architecture_md() {
    let arch = read(&root().join("ARCHITECTURE.md"));
    let mut unexplained = Vec::new();
    for p in sources() {
        if is_test_file(&p) {
            continue;
        }
        let text = read(&p);
        let rel = relative(&p);
        let shipped = non_test_lines(&text);
        if shipped > FILE_LINES_MAX && !arch.contains(&format!("`{rel}`")) {
            unexplained.push(format!("{rel}: {shipped} lines (limit {FILE_LINES_MAX})"));
        }
        let shipped_text: String = text.lines().take(shipped).collect::<Vec<_>>().join("\n");
        for (name, len) in long_functions(&shipped_text, FN_LINES_MAX) {
            if !arch.contains(&format!("`{name}`")) {
                unexplained.push(format!(
                    "{rel}: fn {name} is {len} lines (limit {FN_LINES_MAX})"
                ));
            }
        }
    }
    assert!(
        unexplained.is_empty(),
        "name these in ARCHITECTURE.md (\"Long files and functions\") with the reason, or split them:\n{}",
        unexplained.join("\n")
    );
}
