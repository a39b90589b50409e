//! The result: one markdown table (what, govledger, baseline, ratio, target,
//! result), the machine it ran on, and `BENCHMARKS.md`.

use std::{fmt::Write as _, path::Path, time::Duration};

use anyhow::{Context as _, Result};

/// Everything from this line on in an existing BENCHMARKS.md is kept as is
/// when the file is rewritten (hand-written analysis).
pub const NOTES_MARK: &str =
    "<!-- notes: everything below this line is kept when govledger-bench rewrites the file -->";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail,
    /// A figure with no target.
    Info,
}

#[derive(Debug, Clone)]
pub struct Row {
    pub id: String,
    pub what: String,
    pub govledger: String,
    pub baseline: String,
    pub ratio: Option<f64>,
    /// The target's bound, where the row has one.
    pub limit: Option<f64>,
    pub target: String,
    pub outcome: Outcome,
}

impl Row {
    pub fn new(id: &str, what: impl Into<String>) -> Self {
        Self {
            id: id.to_owned(),
            what: what.into(),
            govledger: String::new(),
            baseline: "-".into(),
            ratio: None,
            limit: None,
            target: "-".into(),
            outcome: Outcome::Info,
        }
    }
    pub fn figures(mut self, govledger: impl Into<String>, baseline: impl Into<String>) -> Self {
        self.govledger = govledger.into();
        self.baseline = baseline.into();
        self
    }
    /// Ratio govledger/baseline that must be at least `min`.
    pub fn at_least(mut self, ratio: f64, min: f64) -> Self {
        self.ratio = Some(ratio);
        self.limit = Some(min);
        self.target = format!("≥ {min:.2}");
        self.outcome = pass(ratio >= min);
        self
    }
    /// Ratio that must be at most `max`.
    pub fn at_most(mut self, ratio: f64, max: f64, what: &str) -> Self {
        self.ratio = Some(ratio);
        self.limit = Some(max);
        self.target = format!("≤ {max:.2}{what}");
        self.outcome = pass(ratio <= max);
        self
    }
    pub fn ratio(mut self, ratio: f64) -> Self {
        self.ratio = Some(ratio);
        self
    }
    /// An informational ratio: shown with target "—", never pass or fail.
    pub fn informational(mut self, ratio: f64) -> Self {
        self.ratio = Some(ratio);
        self.target = "—".into();
        self.outcome = Outcome::Info;
        self
    }
    pub fn target(mut self, target: impl Into<String>, ok: bool) -> Self {
        self.target = target.into();
        self.outcome = pass(ok);
        self
    }
}

/// A ratio to two decimals, or to as many more (up to six) as it takes not to
/// read as the target's bound itself (0.499 against ≥ 0.50 must not print as
/// 0.50 and fail).
fn ratio_text(ratio: f64, limit: Option<f64>) -> String {
    let at = |decimals: usize, x: f64| format!("{x:.decimals$}");
    match limit {
        Some(l) if ratio != l => (2..=6)
            .map(|d| at(d, ratio))
            .zip((2..=6).map(|d| at(d, l)))
            .find(|(r, l)| r != l)
            .map_or_else(|| at(6, ratio), |(r, _)| r),
        _ => at(2, ratio),
    }
}

fn pass(ok: bool) -> Outcome {
    if ok { Outcome::Pass } else { Outcome::Fail }
}

pub fn table(rows: &[Row]) -> String {
    let mut s = String::from(
        "| # | what | govledger | baseline | ratio | target | result |\n|---|---|---|---|---:|---|---|\n",
    );
    for r in rows {
        let ratio = r.ratio.map_or("-".to_owned(), |x| ratio_text(x, r.limit));
        let outcome = match r.outcome {
            Outcome::Pass => "pass",
            Outcome::Fail => "**FAIL**",
            Outcome::Info => "-",
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.id, r.what, r.govledger, r.baseline, ratio, r.target, outcome
        );
    }
    s
}

/// The machine, as /proc tells it.
#[derive(Debug, Clone)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub mem_bytes: u64,
    /// Whether the CPU has SHA-256 instructions (`sha_ni` on x86, `sha2` on
    /// Arm), `None` when /proc/cpuinfo lists no flags. The ledger hashes every
    /// event (its Merkle leaf) and the raw baselines hash nothing, so a CPU
    /// without them moves the projection's ratios.
    pub sha_instructions: Option<bool>,
}

impl Machine {
    pub fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == "model name").then(|| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown CPU".into());
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let mem_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.split_whitespace().next())
                    .and_then(|kib| kib.parse::<u64>().ok())
            })
            .map_or(0, |kib| kib * 1024);
        Self {
            cpu,
            cores,
            mem_bytes,
            sha_instructions: sha_instructions(&cpuinfo),
        }
    }

    pub fn describe(&self) -> String {
        let sha = match self.sha_instructions {
            Some(true) => "SHA-256 instructions: yes",
            Some(false) => "SHA-256 instructions: no",
            None => "SHA-256 instructions: unknown",
        };
        format!(
            "{}, {} cores available, {:.1} GiB RAM, {sha}",
            self.cpu,
            self.cores,
            self.mem_bytes as f64 / (1024.0 * 1024.0 * 1024.0)
        )
    }
}

/// Whether the first CPU's flags in `cpuinfo` (x86 `flags`, Arm `Features`)
/// name SHA-256 instructions; `None` when neither line is there.
fn sha_instructions(cpuinfo: &str) -> Option<bool> {
    cpuinfo.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        let k = k.trim();
        (k == "flags" || k == "Features")
            .then(|| v.split_whitespace().any(|f| f == "sha_ni" || f == "sha2"))
    })
}

/// `git rev-parse --short HEAD`, with `-dirty` when the tree has changes.
pub fn git_commit(root: &Path) -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(c) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty { format!("{c}-dirty") } else { c }
        }
        None => "unknown".into(),
    }
}

/// The header lines of the report (machine, date, commit, command).
#[derive(Debug, Clone)]
pub struct Meta {
    pub scale: String,
    pub scale_detail: String,
    pub machine: Machine,
    pub date: String,
    pub commit: String,
    pub profile: &'static str,
    pub command: String,
    pub wall: Duration,
}

pub fn markdown(meta: &Meta, rows: &[Row], details: &[String]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Benchmarks\n");
    let _ = writeln!(
        s,
        "Written by `govledger-bench` (crate `bench/`). Every target is a ratio against a \
         physical baseline measured in the same run on the same machine, or an absolute \
         bound where the issue sets one.\n"
    );
    let _ = writeln!(s, "- scale: **{}** ({})", meta.scale, meta.scale_detail);
    let _ = writeln!(s, "- machine: {}", meta.machine.describe());
    let _ = writeln!(s, "- date: {}", meta.date);
    let _ = writeln!(s, "- commit: `{}`", meta.commit);
    let _ = writeln!(
        s,
        "- build: {} (the benchmark and the `govledger` children)",
        meta.profile
    );
    let _ = writeln!(s, "- wall time: {:.0} s", meta.wall.as_secs_f64());
    let _ = writeln!(s, "- reproduce: `{}`\n", meta.command);
    s.push_str(&table(rows));
    if !details.is_empty() {
        let _ = writeln!(s, "\nPer size (rows 4 and 6):\n");
        for d in details {
            let _ = writeln!(s, "- {d}");
        }
    }
    s
}

/// Writes `text` to `path`, keeping the hand-written part of an existing file
/// (from [`NOTES_MARK`] on).
pub fn write_file(path: &Path, text: &str) -> Result<()> {
    let kept = std::fs::read_to_string(path)
        .ok()
        .and_then(|old| old.find(NOTES_MARK).map(|i| old[i..].to_owned()))
        .unwrap_or_else(|| format!("{NOTES_MARK}\n"));
    let out = format!("{text}\n{kept}");
    std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Events per second, rounded, with separators.
pub fn rate(events: u64, d: Duration) -> String {
    let per_s = events as f64 / d.as_secs_f64().max(1e-9);
    format!("{} ev/s", thousands(per_s.round() as u64))
}

pub fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// `2000` → `2k`, `1000000` → `1M`.
pub fn short(n: u64) -> String {
    if n >= 1_000_000 && n.is_multiple_of(100_000) {
        format!("{}M", fmt_trim(n as f64 / 1e6))
    } else if n >= 1_000 && n.is_multiple_of(100) {
        format!("{}k", fmt_trim(n as f64 / 1e3))
    } else {
        thousands(n)
    }
}

fn fmt_trim(x: f64) -> String {
    let s = format!("{x:.1}");
    s.strip_suffix(".0").map(str::to_owned).unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_formats() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(short(2_000), "2k");
        assert_eq!(short(1_500), "1.5k");
        assert_eq!(short(5_000_000), "5M");
        assert_eq!(short(123), "123");
    }

    #[test]
    fn a_ratio_next_to_its_bound_shows_which_side_it_is_on() {
        assert_eq!(ratio_text(0.4993, Some(0.5)), "0.499");
        assert_eq!(ratio_text(0.5004, Some(0.5)), "0.5004");
        assert_eq!(ratio_text(0.5, Some(0.5)), "0.50");
        assert_eq!(ratio_text(0.52, Some(0.5)), "0.52");
        assert_eq!(ratio_text(2.999, Some(3.0)), "2.999");
        assert_eq!(ratio_text(0.49996, Some(0.5)), "0.49996");
        assert_eq!(ratio_text(0.4993, None), "0.50");
        let failing = Row::new("2", "x").at_least(0.4993, 0.5);
        assert!(table(&[failing]).contains("| 0.499 | ≥ 0.50 | **FAIL** |"));
    }

    #[test]
    fn rewrite_keeps_notes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("B.md");
        write_file(&p, "one").unwrap();
        let first = std::fs::read_to_string(&p).unwrap();
        assert!(first.starts_with("one\n") && first.contains(NOTES_MARK));
        std::fs::write(&p, format!("{first}my notes\n")).unwrap();
        write_file(&p, "two").unwrap();
        let second = std::fs::read_to_string(&p).unwrap();
        assert!(second.starts_with("two\n"), "{second}");
        assert!(second.ends_with("my notes\n"), "{second}");
    }

    #[test]
    fn sha_instructions_are_read_from_the_cpu_flags() {
        let x86 = "model name\t: Xeon\nflags\t\t: fpu avx2 sha_ni bmi2\n";
        assert_eq!(sha_instructions(x86), Some(true));
        let x86_without = "flags\t\t: fpu avx2 bmi2 sha\n";
        assert_eq!(sha_instructions(x86_without), Some(false));
        let arm = "Features\t: fp asimd aes pmull sha1 sha2 crc32\n";
        assert_eq!(sha_instructions(arm), Some(true));
        assert_eq!(sha_instructions("model name\t: x\n"), None);
        // The first CPU's line answers.
        let two = "flags\t: sse\nflags\t: sha_ni\n";
        assert_eq!(sha_instructions(two), Some(false));
        let m = Machine {
            cpu: "c".into(),
            cores: 2,
            mem_bytes: 1 << 30,
            sha_instructions: Some(true),
        };
        assert_eq!(
            m.describe(),
            "c, 2 cores available, 1.0 GiB RAM, SHA-256 instructions: yes"
        );
    }

    #[test]
    fn table_marks_failures() {
        let rows = [
            Row::new("1", "a").figures("1", "2").at_least(0.5, 0.8),
            Row::new("2", "b").figures("x", "-"),
        ];
        let t = table(&rows);
        assert!(
            t.contains("| 1 | a | 1 | 2 | 0.50 | ≥ 0.80 | **FAIL** |"),
            "{t}"
        );
        assert!(t.contains("| 2 | b | x | - | - | - | - |"), "{t}");
    }
}
