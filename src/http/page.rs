//! The status page: one server-rendered HTML document that says, in plain
//! English, whether a review may close now, whether the service is healthy,
//! how fresh each source is, what its last run concluded and why, which
//! actions are not confirmed, and a chart of the last days' runs.
//!
//! Pure: [`render`] turns a [`PageData`] the caller read at one moment into a
//! string; it reads no clock, no file and no network. The document carries
//! no JavaScript and no external assets (inline CSS, one inline SVG), and
//! reloads itself every 30 s. Every piece of text that comes from data
//! (source ids, run ids, codes, messages, reasons) is HTML-escaped; every
//! verdict is shown as text as well as colour.
//!
//! Layout:
//! - this file: what the page shows ([`PageData`] and its parts), [`render`],
//!   [`escape`], the banner, sources, blockers and actions sections, and the
//!   words, colours and times the whole page shares;
//! - `chart`: the history section: the SVG chart of each source's runs and
//!   freshness, its legend and its summary in words;
//! - `tests`: unit tests.

use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat};

mod chart;

/// Everything the page shows, read by the caller at one moment.
#[derive(Debug, Clone, Default)]
pub struct PageData {
    /// When the data was read, Unix microseconds.
    pub now_us: i64,
    /// The ledger stream's name.
    pub stream: String,
    /// The stream's last sequence (None: NATS did not answer).
    pub stream_last_seq: Option<u64>,
    /// The projection's last applied sequence (every answer on the page is as of it).
    pub applied_seq: u64,
    /// Whether govledger is ready (NATS answers, projector within its lag bound, disks have room).
    pub ready: bool,
    /// Why not ready, one plain sentence each (empty when ready).
    pub health_problems: Vec<String>,
    /// Review readiness over every source: may a review close now?
    pub review_ready: bool,
    /// What blocks a review: (source id, machine code e.g. "STALE", message).
    pub blockers: Vec<Blocker>,
    /// One row per source, in the order the table shows them.
    pub sources: Vec<SourceRow>,
    /// Actions that are not confirmed, counted by source and outcome (e.g. "FAILED", "UNCONFIRMED", "DRIFTED").
    pub open_actions: Vec<ActionCount>,
    /// The newest actions of each source (a bounded number per source), by
    /// their outcome now; added up over sources.
    pub concluded_actions: Vec<ActionCount>,
    /// Run history per source for the chart (newest runs first or any order).
    pub history: Vec<SourceHistory>,
    /// How many days the chart covers (e.g. 7).
    pub history_days: u32,
}

/// One thing that blocks a review.
#[derive(Debug, Clone, Default)]
pub struct Blocker {
    /// The source it is about (empty: not about one source).
    pub source_id: String,
    /// The machine code, e.g. "STALE".
    pub code: String,
    /// One plain sentence.
    pub message: String,
}

/// One source's row in the "Sources" table.
#[derive(Debug, Clone, Default)]
pub struct SourceRow {
    /// The source's configured id.
    pub source_id: String,
    /// "FRESH", "STALE" or "NEVER_COMPLETE" (or "UNKNOWN").
    pub freshness: String,
    /// Age of the last COMPLETE run in ms (None: never complete).
    pub last_complete_age_ms: Option<i64>,
    /// How old the last COMPLETE run may be for the source to be FRESH, in ms.
    pub freshness_objective_ms: u64,
    /// Verdict of the last finished run: "COMPLETE", "INCOMPLETE", "SUSPECT", "FAILED", "ABANDONED", "UNVERIFIED_PRODUCER", or "" when none.
    pub last_verdict: String,
    /// The last finished run's id ("" when none).
    pub last_run_id: String,
    /// The last finished run's reasons, one plain sentence each (code and message joined by the caller).
    pub reasons: Vec<String>,
    /// A run in progress, if any.
    pub running_run_id: String,
}

/// How many actions have one outcome (for one source, or all).
#[derive(Debug, Clone, Default)]
pub struct ActionCount {
    /// The source (ignored in the "recent actions by outcome" table).
    pub source_id: String,
    /// The outcome, e.g. "CONFIRMED", "FAILED", "UNCONFIRMED", "DRIFTED".
    pub outcome: String,
    /// How many.
    pub count: u64,
}

/// One source's runs for the history chart.
#[derive(Debug, Clone, Default)]
pub struct SourceHistory {
    /// The source's configured id.
    pub source_id: String,
    /// How old the last COMPLETE run may be for the source to be FRESH, in ms.
    pub freshness_objective_ms: u64,
    /// Its runs, in any order; runs finished before the window count for
    /// freshness at the window's start but are not drawn.
    pub runs: Vec<RunMark>,
}

/// One run on the history chart.
#[derive(Debug, Clone, Default)]
pub struct RunMark {
    /// The run's id.
    pub run_id: String,
    /// When it started, Unix microseconds.
    pub started_at_us: i64,
    /// When it finished, Unix microseconds; 0 = still running.
    pub finished_at_us: i64,
    /// Its verdict ("COMPLETE", "INCOMPLETE", …); ignored while running.
    pub verdict: String,
}

/// Escapes text for HTML element content and attribute values
/// (`&`, `<`, `>`, `"`, `'`).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page, as one HTML document.
pub fn render(d: &PageData) -> String {
    let mut h = String::with_capacity(16 * 1024);
    h.push_str(HEAD);
    h.push_str("<body>\n<main>\n<h1>govledger status</h1>\n");
    banner(&mut h, d);
    sources_section(&mut h, d);
    blockers_section(&mut h, d);
    actions_section(&mut h, d);
    chart::history_section(&mut h, d);
    h.push_str(
        "<footer><p>This page is read-only and refreshes every 30 s. \
         Times are UTC.</p></footer>\n</main>\n</body>\n</html>\n",
    );
    h
}

const HEAD: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="30">
<title>govledger status</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1f2328; background: #ffffff; margin: 0; line-height: 1.45; }
main { max-width: 1100px; margin: 0 auto; padding: 16px 24px 32px; }
h1 { font-size: 1.6em; margin: 0.2em 0 0.5em; }
h2 { font-size: 1.25em; margin: 1.6em 0 0.5em; border-bottom: 1px solid #d0d7de; padding-bottom: 0.2em; }
h3 { font-size: 1.05em; margin: 1.1em 0 0.4em; }
.banner { border: 2px solid; border-radius: 6px; padding: 10px 14px; margin-bottom: 8px; }
.banner p { margin: 0.2em 0; }
.banner .headline { font-size: 1.35em; font-weight: 700; }
.banner.ok { border-color: #1a7f37; background: #dafbe1; }
.banner.bad { border-color: #bc4c00; background: #fff1e5; }
.health.ok { color: #1a7f37; font-weight: 600; }
.health.bad { color: #d1242f; font-weight: 600; }
.meta { color: #424a53; margin: 0.2em 0; }
table { border-collapse: collapse; margin: 0.3em 0 0.8em; }
th, td { border: 1px solid #d0d7de; padding: 5px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.badge { display: inline-block; padding: 1px 7px; border-radius: 10px; font-weight: 700; font-size: 0.85em; color: #ffffff; white-space: nowrap; }
.hint { color: #57606a; font-size: 0.9em; }
.reasons { margin: 0; padding-left: 1.2em; }
code, .id { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 0.9em; overflow-wrap: anywhere; }
.legend { list-style: none; padding: 0; margin: 0.4em 0; display: flex; flex-wrap: wrap; gap: 6px 18px; }
.sw { display: inline-block; width: 11px; height: 11px; margin-right: 5px; vertical-align: -1px; border: 1px solid #8c959f; }
.sw.circle { border-radius: 50%; border-color: transparent; }
.sw.square { border-color: transparent; }
.sw.ring { border-radius: 50%; border: 2px solid; background: #ffffff; width: 8px; height: 8px; }
.sw.band { width: 22px; }
svg { max-width: 100%; height: auto; display: block; }
footer { margin-top: 2em; color: #57606a; font-size: 0.9em; }
</style>
</head>
"#;

// ---------------------------------------------------------------- banner

fn banner(h: &mut String, d: &PageData) {
    let (class, headline) = if d.review_ready {
        ("ok", "Ready for review")
    } else {
        ("bad", "Not ready for review")
    };
    let _ = writeln!(
        h,
        "<section class=\"banner {class}\" id=\"review\">\n<p class=\"headline\">{headline}</p>"
    );
    if d.ready {
        h.push_str("<p class=\"health ok\" id=\"health\">Service healthy</p>\n");
    } else {
        let problems = if d.health_problems.is_empty() {
            "no reason was given".to_string()
        } else {
            d.health_problems
                .iter()
                .map(|p| escape(p))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let _ = writeln!(
            h,
            "<p class=\"health bad\" id=\"health\">Service NOT healthy: {problems}</p>"
        );
    }
    h.push_str("</section>\n");

    let stream = if d.stream.is_empty() {
        String::new()
    } else {
        format!(" (stream <span class=\"id\">{}</span>)", escape(&d.stream))
    };
    match d.stream_last_seq {
        Some(last) => {
            let lag = last.saturating_sub(d.applied_seq);
            let lag_text = match lag {
                0 => "the projection is up to date (lag 0)".to_string(),
                1 => "the projection is 1 event behind (lag 1)".to_string(),
                n => format!("the projection is {n} events behind (lag {n})"),
            };
            let _ = writeln!(
                h,
                "<p class=\"meta\" id=\"asof\">Answers as of stream sequence {} of {last}{stream}; {lag_text}.</p>",
                d.applied_seq
            );
        }
        None => {
            let _ = writeln!(
                h,
                "<p class=\"meta\" id=\"asof\">Answers as of stream sequence {}{stream}; the stream's last sequence is unknown: NATS did not answer.</p>",
                d.applied_seq
            );
        }
    }
    let _ = writeln!(
        h,
        "<p class=\"meta\" id=\"read-at\">Read at {}.</p>",
        fmt_time(d.now_us)
    );
}

// ---------------------------------------------------------------- sources

fn sources_section(h: &mut String, d: &PageData) {
    h.push_str("<section id=\"sources\">\n<h2>Sources</h2>\n");
    if d.sources.is_empty() {
        h.push_str("<p>No sources are configured, and nothing is recorded in the ledger.</p>\n</section>\n");
        return;
    }
    h.push_str(
        "<p class=\"hint\">A source is FRESH while its last COMPLETE run is younger than its objective. \
         Only a COMPLETE run proves that every record was read.</p>\n",
    );
    h.push_str(
        "<table>\n<thead><tr><th>Source</th><th>Freshness</th><th>Last complete run</th>\
         <th>Last finished run</th><th>Why</th><th>Run in progress</th></tr></thead>\n<tbody>\n",
    );
    for s in &d.sources {
        let id = escape(&s.source_id);
        let _ = write!(
            h,
            "<tr id=\"source-{id}\" data-verdict=\"{}\" data-freshness=\"{}\">",
            escape(&s.last_verdict),
            escape(&s.freshness)
        );
        let _ = write!(h, "<td class=\"id\">{id}</td>");

        // Freshness.
        let _ = write!(
            h,
            "<td>{} <span class=\"hint\">{}</span></td>",
            badge(&s.freshness, freshness_colour(&s.freshness)),
            freshness_meaning(&s.freshness)
        );

        // Last complete.
        let objective = format!(
            "objective: every {}",
            human_objective(s.freshness_objective_ms)
        );
        match s.last_complete_age_ms {
            Some(age) => {
                let at = d.now_us.saturating_sub(age.saturating_mul(1_000));
                let _ = write!(
                    h,
                    "<td>{} ago<br><span class=\"hint\">at {}<br>{objective}</span></td>",
                    human_duration(age),
                    fmt_time(at)
                );
            }
            None => {
                let _ = write!(
                    h,
                    "<td>never<br><span class=\"hint\">{objective}</span></td>"
                );
            }
        }

        // Last verdict.
        if s.last_verdict.is_empty() {
            h.push_str("<td>no finished run yet</td>");
        } else {
            let _ = write!(
                h,
                "<td>{} <span class=\"hint\">{}</span>",
                badge(&s.last_verdict, verdict_colour(&s.last_verdict)),
                verdict_meaning(&s.last_verdict)
            );
            if !s.last_run_id.is_empty() {
                let _ = write!(
                    h,
                    "<br><span class=\"hint\">run <span class=\"id\">{}</span></span>",
                    escape(&s.last_run_id)
                );
            }
            h.push_str("</td>");
        }

        // Reasons.
        if s.reasons.is_empty() {
            let text = if s.last_verdict.is_empty() {
                "—"
            } else {
                "no reasons recorded"
            };
            let _ = write!(h, "<td><span class=\"hint\">{text}</span></td>");
        } else {
            h.push_str("<td><ul class=\"reasons\">");
            for r in &s.reasons {
                let _ = write!(h, "<li>{}</li>", escape(r));
            }
            h.push_str("</ul></td>");
        }

        // Running.
        if s.running_run_id.is_empty() {
            h.push_str("<td>no</td>");
        } else {
            let _ = write!(
                h,
                "<td>{} run <span class=\"id\">{}</span></td>",
                badge("RUNNING", verdict_colour("RUNNING")),
                escape(&s.running_run_id)
            );
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</tbody>\n</table>\n</section>\n");
}

// ---------------------------------------------------------------- blockers

fn blockers_section(h: &mut String, d: &PageData) {
    h.push_str("<section id=\"blockers\">\n<h2>What blocks a review</h2>\n");
    if d.blockers.is_empty() {
        h.push_str("<p>Nothing blocks a review.</p>\n</section>\n");
        return;
    }
    let n = d.blockers.len();
    let _ = writeln!(
        h,
        "<p>{n} {} a review from closing now:</p>",
        if n == 1 { "thing keeps" } else { "things keep" }
    );
    h.push_str(
        "<table>\n<thead><tr><th>Source</th><th>Code</th><th>What it means</th></tr></thead>\n<tbody>\n",
    );
    for b in &d.blockers {
        let source = if b.source_id.is_empty() {
            "<span class=\"hint\">(all sources)</span>".to_string()
        } else {
            format!("<span class=\"id\">{}</span>", escape(&b.source_id))
        };
        let _ = writeln!(
            h,
            "<tr><td>{source}</td><td><code>{}</code></td><td>{}</td></tr>",
            escape(&b.code),
            escape(&b.message)
        );
    }
    h.push_str("</tbody>\n</table>\n</section>\n");
}

// ---------------------------------------------------------------- actions

fn actions_section(h: &mut String, d: &PageData) {
    h.push_str("<section id=\"actions\">\n<h2>Actions</h2>\n");

    let open: Vec<&ActionCount> = d.open_actions.iter().filter(|a| a.count > 0).collect();
    let open_total: u64 = open.iter().map(|a| a.count).sum();
    let _ = writeln!(h, "<h3>Not confirmed ({open_total})</h3>");
    if open.is_empty() {
        h.push_str("<p id=\"open-actions\">No actions are waiting: none is unconfirmed, failed, overdue or drifted.</p>\n");
    } else {
        h.push_str(
            "<table id=\"open-actions\">\n<thead><tr><th>Source</th><th>Outcome</th><th>Count</th>\
             <th>What it means</th></tr></thead>\n<tbody>\n",
        );
        for a in open {
            let _ = writeln!(
                h,
                "<tr><td class=\"id\">{}</td><td><code>{}</code></td><td class=\"num\">{}</td><td>{}</td></tr>",
                escape(&a.source_id),
                escape(&a.outcome),
                a.count,
                outcome_meaning(&a.outcome)
            );
        }
        h.push_str("</tbody>\n</table>\n");
    }

    // By outcome over all sources: entries for the same outcome (say, one
    // per source) are added up, in the order each outcome first appears.
    let mut concluded: Vec<(&str, u64)> = Vec::new();
    for a in d.concluded_actions.iter().filter(|a| a.count > 0) {
        match concluded.iter_mut().find(|(o, _)| *o == a.outcome) {
            Some((_, n)) => *n = n.saturating_add(a.count),
            None => concluded.push((&a.outcome, a.count)),
        }
    }
    let concluded_total: u64 = concluded.iter().map(|(_, n)| n).sum();
    let _ = writeln!(h, "<h3>Recent actions by outcome ({concluded_total})</h3>");
    if concluded.is_empty() {
        h.push_str("<p id=\"concluded-actions\">No actions on record.</p>\n");
    } else {
        h.push_str(
            "<table id=\"concluded-actions\">\n<thead><tr><th>Outcome</th><th>Count</th>\
             <th>What it means</th></tr></thead>\n<tbody>\n",
        );
        for (outcome, count) in concluded {
            let _ = writeln!(
                h,
                "<tr><td><code>{}</code></td><td class=\"num\">{count}</td><td>{}</td></tr>",
                escape(outcome),
                outcome_meaning(outcome)
            );
        }
        h.push_str("</tbody>\n</table>\n");
    }
    h.push_str("</section>\n");
}

fn badge(text: &str, colour: &str) -> String {
    let (shown, fg) = match text {
        "" => ("UNKNOWN", "#ffffff"),
        // Dark text where white would not stand out enough.
        "SUSPECT" => (text, "#1f2328"),
        _ => (text, "#ffffff"),
    };
    format!(
        "<span class=\"badge\" style=\"background:{colour};color:{fg}\">{}</span>",
        escape(shown)
    )
}

fn verdict_colour(v: &str) -> &'static str {
    match v {
        "COMPLETE" => "#1a7f37",
        "INCOMPLETE" => "#d1242f",
        "SUSPECT" => "#bf8700",
        "FAILED" => "#8250df",
        "ABANDONED" => "#57606a",
        "UNVERIFIED_PRODUCER" => "#cf222e",
        "RUNNING" => "#0969da",
        _ => "#6e7781",
    }
}

fn verdict_meaning(v: &str) -> &'static str {
    match v {
        "COMPLETE" => "every record was read and nothing argues against it",
        "INCOMPLETE" => "some records are missing or wrong",
        "SUSPECT" => "looked complete, but the source's counts changed or dropped unexpectedly",
        "FAILED" => "could not run: nothing was read",
        "ABANDONED" => "the worker stopped before the run finished",
        "UNVERIFIED_PRODUCER" => "its result does not carry a valid seal of a trusted producer",
        "RUNNING" => "still running",
        _ => "",
    }
}

fn freshness_colour(f: &str) -> &'static str {
    match f {
        "FRESH" => "#1a7f37",
        "STALE" => "#d1242f",
        "NEVER_COMPLETE" => "#bc4c00",
        _ => "#57606a",
    }
}

fn freshness_meaning(f: &str) -> &'static str {
    match f {
        "FRESH" => "up to date",
        "STALE" => "out of date",
        "NEVER_COMPLETE" => "never read completely",
        _ => "not known",
    }
}

fn outcome_meaning(o: &str) -> &'static str {
    match o {
        "PENDING" => "not concluded yet",
        "CONFIRMED" => "a read-back shows the change in effect",
        "FAILED" => "refused: the change is shown not in effect",
        "UNCONFIRMED" => "accepted, but a read-back shows it not in effect",
        "UNVERIFIED" => "the target could not be read back: nothing is known yet",
        "UNVERIFIABLE" => "the target cannot show whether the change took effect",
        "OVERDUE" => "not concluded by its deadline",
        "DRIFTED" => "confirmed, then seen undone by a later sync",
        _ => "",
    }
}

/// A Unix-microseconds time as UTC RFC 3339 to the second (`2024-05-01T12:00:00Z`).
fn fmt_time(us: i64) -> String {
    DateTime::from_timestamp_micros(us)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| format!("(time out of range: {us} µs)"))
}

/// A duration for people: "3 h 12 min", "2 d 5 h", "45 s" (negative reads as 0).
fn human_duration(ms: i64) -> String {
    let s = ms.max(0) / 1_000;
    let (d, h, m, sec) = (s / 86_400, (s / 3_600) % 24, (s / 60) % 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{sec} s"),
        (0, 0, _) if sec == 0 => format!("{m} min"),
        (0, 0, _) => format!("{m} min {sec} s"),
        (0, _, 0) => format!("{h} h"),
        (0, _, _) => format!("{h} h {m} min"),
        (_, 0, _) => format!("{d} d"),
        _ => format!("{d} d {h} h"),
    }
}

/// An objective for people: whole hours up to three days as hours ("24 h"),
/// otherwise as [`human_duration`].
fn human_objective(ms: u64) -> String {
    let ms = i64::try_from(ms).unwrap_or(i64::MAX);
    if ms > 0 && ms % 3_600_000 == 0 && ms <= 72 * 3_600_000 {
        format!("{} h", ms / 3_600_000)
    } else {
        human_duration(ms)
    }
}

/// At most `max` characters, with "…" when cut.
fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests;
