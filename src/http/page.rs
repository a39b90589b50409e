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

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat};

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

/// At most this many runs are drawn per source (the newest), to bound the page's size.
const MAX_MARKS_PER_LANE: usize = 500;
const DAY_US: i64 = 86_400_000_000;

// Chart geometry (SVG user units).
const SVG_W: i64 = 900;
const LABEL_W: i64 = 170;
const RIGHT_PAD: i64 = 40;
const TOP: i64 = 12;
const LANE_H: i64 = 30;
const AXIS_H: i64 = 34;

const FRESH_BAND: &str = "#dafbe1";
const STALE_BAND: &str = "#ffebe9";

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
    history_section(&mut h, d);
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

// ---------------------------------------------------------------- history

/// The intervals `[start, end]` within `[from_us, to_us]` during which a
/// source with these runs and this objective was FRESH: from each COMPLETE
/// run's finish until its finish plus the objective, clipped to the window,
/// merged where they overlap, in time order. Runs finished before `from_us`
/// count (they may keep the window's start fresh); runs still running
/// (`finished_at_us == 0`) and runs not COMPLETE do not.
fn fresh_intervals(
    runs: &[RunMark],
    objective_ms: u64,
    from_us: i64,
    to_us: i64,
) -> Vec<(i64, i64)> {
    let objective_us = i64::try_from(objective_ms)
        .unwrap_or(i64::MAX)
        .saturating_mul(1_000);
    let mut spans: Vec<(i64, i64)> = runs
        .iter()
        .filter(|r| r.verdict == "COMPLETE" && r.finished_at_us > 0)
        .filter_map(|r| {
            let start = r.finished_at_us.max(from_us);
            let end = r.finished_at_us.saturating_add(objective_us).min(to_us);
            (start < end).then_some((start, end))
        })
        .collect();
    spans.sort_unstable();
    let mut merged: Vec<(i64, i64)> = Vec::with_capacity(spans.len());
    for (start, end) in spans {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged
}

/// When a run is drawn: its finish, or its start while it runs.
fn mark_time(r: &RunMark) -> i64 {
    if r.finished_at_us > 0 {
        r.finished_at_us
    } else {
        r.started_at_us
    }
}

/// The verdict a mark shows: "RUNNING" while it runs.
fn mark_verdict(r: &RunMark) -> &str {
    if r.finished_at_us > 0 {
        r.verdict.as_str()
    } else {
        "RUNNING"
    }
}

/// The runs drawn in a lane: those in `[from_us, to_us]`, at most
/// [`MAX_MARKS_PER_LANE`] (the newest), oldest first; and how many were in
/// the window before the limit.
fn marks_in_window(runs: &[RunMark], from_us: i64, to_us: i64) -> (Vec<&RunMark>, usize) {
    let mut v: Vec<&RunMark> = runs
        .iter()
        .filter(|r| {
            let t = mark_time(r);
            t >= from_us && t <= to_us
        })
        .collect();
    let in_window = v.len();
    v.sort_by_key(|r| std::cmp::Reverse(mark_time(r)));
    v.truncate(MAX_MARKS_PER_LANE);
    v.reverse();
    (v, in_window)
}

/// One lane's summary in words (for the SVG's description and the text under it).
fn lane_summary(
    source_id: &str,
    shown: &[&RunMark],
    in_window: usize,
    fresh_us: i64,
    window_us: i64,
) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in shown {
        let v = mark_verdict(r);
        *counts
            .entry(if v.is_empty() { "UNKNOWN" } else { v })
            .or_default() += 1;
    }
    let runs = match in_window {
        0 => "no runs".to_string(),
        1 => "1 run".to_string(),
        n => format!("{n} runs"),
    };
    let mut s = format!("{source_id}: {runs}");
    if in_window > shown.len() {
        let _ = write!(s, " (the newest {} drawn)", shown.len());
    }
    if !counts.is_empty() {
        let parts: Vec<String> = counts.iter().map(|(v, n)| format!("{n} {v}")).collect();
        let _ = write!(s, " ({})", parts.join(", "));
    }
    let pct = if window_us > 0 {
        (fresh_us as f64 * 100.0 / window_us as f64).round()
    } else {
        0.0
    };
    let _ = write!(s, "; fresh {pct:.0}% of the time");
    s
}

fn history_section(h: &mut String, d: &PageData) {
    let days = d.history_days.max(1);
    let to_us = d.now_us;
    let from_us = to_us.saturating_sub(i64::from(days).saturating_mul(DAY_US));
    let window_us = to_us.saturating_sub(from_us).max(1);
    let plot_w = (SVG_W - LABEL_W - RIGHT_PAD) as f64;
    let x = |t: i64| -> f64 {
        LABEL_W as f64 + (t.saturating_sub(from_us)) as f64 / window_us as f64 * plot_w
    };

    let day_word = if days == 1 { "day" } else { "days" };
    let _ = writeln!(
        h,
        "<section id=\"history\">\n<h2>History (last {days} {day_word})</h2>"
    );
    h.push_str(
        "<p class=\"hint\">One line per source, from the left (oldest) to now (right). \
         The background is plain green while the source was fresh and hatched red while it was stale; \
         each mark is one run, placed where it finished (or started, if still running). \
         Hover a mark to see its run id, verdict and times.</p>\n",
    );

    let lanes = d.history.len();
    let lanes_h = LANE_H * i64::try_from(lanes.max(1)).unwrap_or(1);
    let svg_h = TOP + lanes_h + AXIS_H;
    let bottom = TOP + lanes_h;

    // Compute each lane first: its summary goes into the SVG's description.
    struct Lane<'a> {
        id: &'a str,
        fresh: Vec<(i64, i64)>,
        marks: Vec<&'a RunMark>,
        summary: String,
    }
    let lane_data: Vec<Lane<'_>> = d
        .history
        .iter()
        .map(|sh| {
            let fresh = fresh_intervals(&sh.runs, sh.freshness_objective_ms, from_us, to_us);
            let fresh_us: i64 = fresh.iter().map(|(a, b)| b - a).sum();
            let (marks, in_window) = marks_in_window(&sh.runs, from_us, to_us);
            let summary = lane_summary(&sh.source_id, &marks, in_window, fresh_us, window_us);
            Lane {
                id: &sh.source_id,
                fresh,
                marks,
                summary,
            }
        })
        .collect();

    let desc = if lane_data.is_empty() {
        "No sources are configured, so there are no runs to show.".to_string()
    } else {
        let parts: Vec<&str> = lane_data.iter().map(|l| l.summary.as_str()).collect();
        format!(
            "Runs of {} source{} from {} to {}. {}.",
            lane_data.len(),
            if lane_data.len() == 1 { "" } else { "s" },
            fmt_time(from_us),
            fmt_time(to_us),
            parts.join(". ")
        )
    };

    let _ = writeln!(
        h,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" width=\"{SVG_W}\" height=\"{svg_h}\" \
         viewBox=\"0 0 {SVG_W} {svg_h}\" aria-labelledby=\"history-title history-desc\" \
         font-family=\"system-ui, sans-serif\">"
    );
    let _ = writeln!(
        h,
        "<title id=\"history-title\">Run history and freshness, last {days} {day_word}</title>"
    );
    let _ = writeln!(h, "<desc id=\"history-desc\">{}</desc>", escape(&desc));
    h.push_str(
        "<defs><pattern id=\"stale-hatch\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" \
         patternTransform=\"rotate(45)\"><line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"6\" \
         stroke=\"#d1242f\" stroke-opacity=\"0.35\" stroke-width=\"1.5\"/></pattern></defs>\n",
    );

    // Lanes: label, stale background, fresh bands.
    for (i, lane) in lane_data.iter().enumerate() {
        let y0 = TOP + LANE_H * i64::try_from(i).unwrap_or(0);
        let cy = y0 + LANE_H / 2;
        let _ = writeln!(
            h,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" font-size=\"12\" fill=\"#1f2328\"><title>{}</title>{}</text>",
            LABEL_W - 8,
            cy + 4,
            escape(lane.id),
            escape(&truncate(lane.id, 22))
        );
        let _ = writeln!(
            h,
            "<rect class=\"band stale\" x=\"{LABEL_W}\" y=\"{}\" width=\"{plot_w:.1}\" height=\"{}\" fill=\"{STALE_BAND}\"><title>stale</title></rect>",
            y0 + 4,
            LANE_H - 8
        );
        // Hatched as well as coloured, so stale does not rest on colour alone.
        let _ = writeln!(
            h,
            "<rect x=\"{LABEL_W}\" y=\"{}\" width=\"{plot_w:.1}\" height=\"{}\" fill=\"url(#stale-hatch)\"><title>stale</title></rect>",
            y0 + 4,
            LANE_H - 8
        );
        for &(a, b) in &lane.fresh {
            let (xa, xb) = (x(a), x(b));
            let _ = writeln!(
                h,
                "<rect class=\"band fresh\" x=\"{xa:.1}\" y=\"{}\" width=\"{:.1}\" height=\"{}\" fill=\"{FRESH_BAND}\"><title>fresh from {} to {}</title></rect>",
                y0 + 4,
                (xb - xa).max(0.5),
                LANE_H - 8,
                fmt_time(a),
                fmt_time(b)
            );
        }
    }
    if lane_data.is_empty() {
        let _ = writeln!(
            h,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"13\" fill=\"#57606a\">No sources are configured, so there are no runs to show.</text>",
            LABEL_W as f64 + plot_w / 2.0,
            TOP + LANE_H / 2 + 4
        );
    }

    // Day ticks (UTC midnights), labelled MM-DD; thinned for long windows.
    let step = i64::from(days.div_ceil(14)).max(1);
    let mut tick = from_us
        .div_euclid(DAY_US)
        .saturating_add(1)
        .saturating_mul(DAY_US);
    let mut n = 0_i64;
    while tick < to_us {
        let tx = x(tick);
        let _ = writeln!(
            h,
            "<line x1=\"{tx:.1}\" y1=\"{TOP}\" x2=\"{tx:.1}\" y2=\"{}\" stroke=\"#8c959f\" stroke-width=\"1\" stroke-dasharray=\"2 3\"/>",
            bottom + 4
        );
        if n % step == 0 {
            let label = DateTime::from_timestamp_micros(tick)
                .map(|t| t.format("%m-%d").to_string())
                .unwrap_or_default();
            let _ = writeln!(
                h,
                "<text x=\"{tx:.1}\" y=\"{}\" text-anchor=\"middle\" font-size=\"11\" fill=\"#424a53\">{label}</text>",
                bottom + 17
            );
        }
        n += 1;
        tick = tick.saturating_add(DAY_US);
    }
    let _ = writeln!(
        h,
        "<line x1=\"{LABEL_W}\" y1=\"{bottom}\" x2=\"{}\" y2=\"{bottom}\" stroke=\"#424a53\" stroke-width=\"1\"/>",
        SVG_W - RIGHT_PAD
    );
    let _ = writeln!(
        h,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"11\" font-weight=\"700\" fill=\"#424a53\">now</text>",
        SVG_W - RIGHT_PAD,
        bottom + 30
    );
    let _ = writeln!(
        h,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" font-size=\"11\" fill=\"#424a53\">date (UTC)</text>",
        LABEL_W - 8,
        bottom + 17
    );

    // Marks, drawn over the bands (oldest first, so the newest is on top).
    for (i, lane) in lane_data.iter().enumerate() {
        let cy = TOP + LANE_H * i64::try_from(i).unwrap_or(0) + LANE_H / 2;
        for r in &lane.marks {
            mark(h, r, x(mark_time(r)), cy);
        }
    }
    h.push_str("</svg>\n");

    legend(h);
    if !lane_data.is_empty() {
        h.push_str("<p class=\"hint\">In words:</p>\n<ul id=\"history-summary\">\n");
        for lane in &lane_data {
            let _ = writeln!(h, "<li>{}</li>", escape(&lane.summary));
        }
        h.push_str("</ul>\n");
    }
    h.push_str("</section>\n");
}

/// One run's mark: a circle for COMPLETE, a ring while running, a square
/// otherwise (so the shape, not only the colour, says "complete or not"),
/// with a tooltip naming the run, its verdict and its times.
fn mark(h: &mut String, r: &RunMark, cx: f64, cy: i64) {
    let verdict = mark_verdict(r);
    let shown = if verdict.is_empty() {
        "no verdict"
    } else {
        verdict
    };
    let colour = verdict_colour(verdict);
    let times = if r.finished_at_us > 0 {
        format!(
            "started {}, finished {}",
            fmt_time(r.started_at_us),
            fmt_time(r.finished_at_us)
        )
    } else {
        format!("started {}, still running", fmt_time(r.started_at_us))
    };
    let title = format!("run {}: {shown}; {times}", r.run_id);
    let attrs = format!(
        "class=\"run\" data-run=\"{}\" data-verdict=\"{}\"",
        escape(&r.run_id),
        escape(verdict)
    );
    let title = escape(&title);
    match verdict {
        "COMPLETE" => {
            let _ = writeln!(
                h,
                "<circle {attrs} cx=\"{cx:.1}\" cy=\"{cy}\" r=\"5\" fill=\"{colour}\" stroke=\"#ffffff\" stroke-width=\"1\"><title>{title}</title></circle>"
            );
        }
        "RUNNING" => {
            let _ = writeln!(
                h,
                "<circle {attrs} cx=\"{cx:.1}\" cy=\"{cy}\" r=\"4.5\" fill=\"#ffffff\" stroke=\"{colour}\" stroke-width=\"2\"><title>{title}</title></circle>"
            );
        }
        _ => {
            let _ = writeln!(
                h,
                "<rect {attrs} x=\"{:.1}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{colour}\" stroke=\"#ffffff\" stroke-width=\"1\"><title>{title}</title></rect>",
                cx - 5.0,
                cy - 5
            );
        }
    }
}

fn legend(h: &mut String) {
    h.push_str("<ul class=\"legend\" id=\"legend\">\n");
    let _ = writeln!(
        h,
        "<li><span class=\"sw band\" style=\"background:{FRESH_BAND}\"></span>fresh (pale green, plain background)</li>"
    );
    let _ = writeln!(
        h,
        "<li><span class=\"sw band\" style=\"background:repeating-linear-gradient(45deg,{STALE_BAND} 0 3px,#f0a8a8 3px 4px)\"></span>stale (pale red, hatched background)</li>"
    );
    for v in [
        "COMPLETE",
        "INCOMPLETE",
        "SUSPECT",
        "FAILED",
        "ABANDONED",
        "UNVERIFIED_PRODUCER",
        "RUNNING",
    ] {
        let (shape, style, shape_word) = match v {
            "COMPLETE" => (
                "circle",
                format!("background:{}", verdict_colour(v)),
                "circle",
            ),
            "RUNNING" => (
                "ring",
                format!("border-color:{}", verdict_colour(v)),
                "ring",
            ),
            _ => (
                "square",
                format!("background:{}", verdict_colour(v)),
                "square",
            ),
        };
        let _ = writeln!(
            h,
            "<li><span class=\"sw {shape}\" style=\"{style}\"></span>{v} ({shape_word}): {}</li>",
            verdict_meaning(v)
        );
    }
    h.push_str("</ul>\n");
}

// ---------------------------------------------------------------- words, colours, times

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
mod tests {
    use super::*;

    const HOUR_US: i64 = 3_600_000_000;
    /// 2024-05-10T12:00:00Z.
    const NOW: i64 = 1_715_342_400_000_000;

    fn run(id: &str, finished_at_us: i64, verdict: &str) -> RunMark {
        RunMark {
            run_id: id.into(),
            started_at_us: if finished_at_us > 0 {
                finished_at_us - 60_000_000
            } else {
                NOW - HOUR_US
            },
            finished_at_us,
            verdict: verdict.into(),
        }
    }

    fn row<'a>(html: &'a str, source_id: &str) -> &'a str {
        let start = html
            .find(&format!("<tr id=\"source-{source_id}\""))
            .expect("row present");
        let end = html[start..].find("</tr>").expect("row ends") + start;
        &html[start..end]
    }

    #[test]
    fn escape_covers_the_five_characters() {
        assert_eq!(escape(r#"a&b<c>d"e'f"#), "a&amp;b&lt;c&gt;d&quot;e&#39;f");
        assert_eq!(escape("plain"), "plain");
    }

    #[test]
    fn hostile_source_id_is_escaped_everywhere() {
        let evil = "<script>alert(1)</script>";
        let d = PageData {
            now_us: NOW,
            stream: evil.into(),
            health_problems: vec![evil.into()],
            blockers: vec![Blocker {
                source_id: evil.into(),
                code: evil.into(),
                message: evil.into(),
            }],
            sources: vec![SourceRow {
                source_id: evil.into(),
                freshness: evil.into(),
                last_verdict: evil.into(),
                last_run_id: evil.into(),
                reasons: vec![evil.into()],
                running_run_id: evil.into(),
                ..Default::default()
            }],
            open_actions: vec![ActionCount {
                source_id: evil.into(),
                outcome: evil.into(),
                count: 1,
            }],
            concluded_actions: vec![ActionCount {
                source_id: evil.into(),
                outcome: evil.into(),
                count: 1,
            }],
            history: vec![SourceHistory {
                source_id: evil.into(),
                freshness_objective_ms: 86_400_000,
                runs: vec![RunMark {
                    run_id: evil.into(),
                    started_at_us: NOW - 2 * HOUR_US,
                    finished_at_us: NOW - HOUR_US,
                    verdict: evil.into(),
                }],
            }],
            history_days: 7,
            ..Default::default()
        };
        let html = render(&d);
        assert!(!html.contains("<script"), "raw <script> in output");
        assert!(!html.contains("</script"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("id=\"source-&lt;script&gt;alert(1)&lt;/script&gt;\""));
    }

    #[test]
    fn complete_and_incomplete_rows_carry_their_verdicts() {
        let d = PageData {
            now_us: NOW,
            stream: "GOVLEDGER".into(),
            stream_last_seq: Some(120),
            applied_seq: 117,
            ready: true,
            review_ready: false,
            sources: vec![
                SourceRow {
                    source_id: "hr-main".into(),
                    freshness: "FRESH".into(),
                    last_complete_age_ms: Some(3 * 3_600_000 + 12 * 60_000),
                    freshness_objective_ms: 86_400_000,
                    last_verdict: "COMPLETE".into(),
                    last_run_id: "run-a".into(),
                    ..Default::default()
                },
                SourceRow {
                    source_id: "hr-flaky".into(),
                    freshness: "STALE".into(),
                    last_complete_age_ms: Some(3 * 86_400_000),
                    freshness_objective_ms: 86_400_000,
                    last_verdict: "INCOMPLETE".into(),
                    last_run_id: "run-b".into(),
                    reasons: vec!["[PAGES_FAILED] 1 page failed after retries".into()],
                    running_run_id: "run-c".into(),
                },
            ],
            ..Default::default()
        };
        let html = render(&d);

        let a = row(&html, "hr-main");
        assert!(a.contains("data-verdict=\"COMPLETE\""));
        assert!(a.contains("data-freshness=\"FRESH\""));
        assert!(a.contains(">COMPLETE</span>"));
        assert!(a.contains("3 h 12 min ago"));
        assert!(a.contains("objective: every 24 h"));
        assert!(a.contains("run-a"));

        let b = row(&html, "hr-flaky");
        assert!(b.contains("data-verdict=\"INCOMPLETE\""));
        assert!(b.contains("data-freshness=\"STALE\""));
        assert!(b.contains(">INCOMPLETE</span>"));
        assert!(b.contains("<li>[PAGES_FAILED] 1 page failed after retries</li>"));
        assert!(b.contains("RUNNING"));
        assert!(b.contains("run-c"));

        assert!(html.contains("Not ready for review"));
        assert!(html.contains("Service healthy"));
        assert!(html.contains("Answers as of stream sequence 117 of 120"));
        assert!(html.contains("lag 3"));
        assert!(html.contains("Read at 2024-05-10T12:00:00Z"));
    }

    #[test]
    fn svg_draws_one_mark_per_run_in_the_window_only() {
        let d = PageData {
            now_us: NOW,
            history_days: 7,
            history: vec![SourceHistory {
                source_id: "hr-main".into(),
                freshness_objective_ms: 86_400_000,
                runs: vec![
                    run("r-old", NOW - 9 * 24 * HOUR_US, "COMPLETE"),
                    run("r1", NOW - 5 * 24 * HOUR_US, "COMPLETE"),
                    run("r2", NOW - 2 * 24 * HOUR_US, "INCOMPLETE"),
                    run("r3", 0, ""),
                ],
            }],
            ..Default::default()
        };
        let html = render(&d);
        let svg_start = html.find("<svg").expect("svg");
        let svg_end = html.find("</svg>").expect("svg end");
        let svg = &html[svg_start..svg_end];
        assert_eq!(html.matches("<svg").count(), 1);
        assert_eq!(svg.matches("class=\"run\"").count(), 3);
        for id in ["r1", "r2", "r3"] {
            assert!(svg.contains(&format!("data-run=\"{id}\"")), "{id} drawn");
        }
        assert!(!svg.contains("data-run=\"r-old\""));
        assert!(svg.contains("data-run=\"r3\" data-verdict=\"RUNNING\""));
        assert!(svg.contains("<title>run r2: INCOMPLETE; started "));
        assert!(svg.contains("role=\"img\""));
        assert!(svg.contains("<desc id=\"history-desc\">"));
        assert!(svg.contains(">05-09</text>"), "day ticks labelled MM-DD");
        assert!(html.contains("History (last 7 days)"));
    }

    #[test]
    fn marks_per_lane_are_bounded_to_the_newest() {
        let runs: Vec<RunMark> = (0..600)
            .map(|i| run(&format!("r{i}"), NOW - (i + 1) * 60_000_000, "COMPLETE"))
            .collect();
        let (shown, in_window) = marks_in_window(&runs, NOW - 7 * 24 * HOUR_US, NOW);
        assert_eq!(in_window, 600);
        assert_eq!(shown.len(), MAX_MARKS_PER_LANE);
        assert!(shown.iter().any(|r| r.run_id == "r0"), "newest kept");
        assert!(!shown.iter().any(|r| r.run_id == "r599"), "oldest dropped");
    }

    #[test]
    fn one_complete_run_two_days_ago_is_fresh_for_one_day() {
        let from = NOW - 7 * 24 * HOUR_US;
        let finished = NOW - 48 * HOUR_US;
        let runs = vec![
            run("c", finished, "COMPLETE"),
            run("i", NOW - 12 * HOUR_US, "INCOMPLETE"),
            run("live", 0, ""),
        ];
        let fresh = fresh_intervals(&runs, 86_400_000, from, NOW);
        assert_eq!(fresh, vec![(finished, finished + 24 * HOUR_US)]);
        let fresh_us: i64 = fresh.iter().map(|(a, b)| b - a).sum();
        assert_eq!(fresh_us, 24 * HOUR_US);
        // Stale after: nothing fresh in the last day.
        assert!(fresh.iter().all(|&(_, b)| b <= NOW - 24 * HOUR_US));
    }

    #[test]
    fn complete_run_before_the_window_keeps_its_start_fresh() {
        let from = NOW - 7 * 24 * HOUR_US;
        let runs = vec![run("before", from - 6 * HOUR_US, "COMPLETE")];
        assert_eq!(
            fresh_intervals(&runs, 86_400_000, from, NOW),
            vec![(from, from + 18 * HOUR_US)]
        );
    }

    #[test]
    fn overlapping_fresh_spans_merge_and_end_at_now() {
        let from = NOW - 7 * 24 * HOUR_US;
        let runs = vec![
            run("a", NOW - 30 * HOUR_US, "COMPLETE"),
            run("b", NOW - 10 * HOUR_US, "COMPLETE"),
            run("far", NOW - 100 * HOUR_US, "COMPLETE"),
        ];
        assert_eq!(
            fresh_intervals(&runs, 86_400_000, from, NOW),
            vec![
                (NOW - 100 * HOUR_US, NOW - 76 * HOUR_US),
                (NOW - 30 * HOUR_US, NOW)
            ]
        );
        assert!(fresh_intervals(&runs, 0, from, NOW).is_empty());
    }

    #[test]
    fn empty_data_renders_and_says_no_sources() {
        let html = render(&PageData::default());
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("No sources are configured"));
        assert!(html.contains("Nothing blocks a review."));
        assert!(html.contains("NATS did not answer"));
        assert!(html.contains("Service NOT healthy: no reason was given"));
        assert!(html.contains("Not ready for review"));
        assert!(html.contains("<meta http-equiv=\"refresh\" content=\"30\">"));
        assert!(html.contains("This page is read-only and refreshes every 30 s"));
        assert!(html.contains("History (last 1 day)"));
        assert!(html.ends_with("</html>\n"));
    }

    #[test]
    fn ready_banner_and_actions() {
        let d = PageData {
            now_us: NOW,
            ready: true,
            review_ready: true,
            stream_last_seq: Some(5),
            applied_seq: 5,
            open_actions: vec![ActionCount {
                source_id: "hr-main".into(),
                outcome: "DRIFTED".into(),
                count: 2,
            }],
            ..Default::default()
        };
        let html = render(&d);
        assert!(html.contains("Ready for review"));
        assert!(!html.contains("Not ready for review"));
        assert!(html.contains("lag 0"));
        assert!(html.contains("Not confirmed (2)"));
        assert!(html.contains("<code>DRIFTED</code>"));
        assert!(html.contains("No actions on record."));
    }

    #[test]
    fn concluded_actions_add_up_by_outcome_over_sources() {
        let count = |source: &str, outcome: &str, count| ActionCount {
            source_id: source.into(),
            outcome: outcome.into(),
            count,
        };
        let d = PageData {
            concluded_actions: vec![
                count("a", "CONFIRMED", 3),
                count("b", "CONFIRMED", 4),
                count("b", "FAILED", 1),
                count("c", "DRIFTED", 0),
            ],
            ..Default::default()
        };
        let html = render(&d);
        assert!(html.contains("Recent actions by outcome (8)"));
        assert!(html.contains("<tr><td><code>CONFIRMED</code></td><td class=\"num\">7</td>"));
        assert_eq!(html.matches("<code>CONFIRMED</code>").count(), 1);
        assert!(!html.contains("<code>DRIFTED</code>"));
    }

    #[test]
    fn times_and_durations_read_plainly() {
        assert_eq!(fmt_time(NOW + 123), "2024-05-10T12:00:00Z");
        assert_eq!(
            human_duration(3 * 3_600_000 + 12 * 60_000 + 5_000),
            "3 h 12 min"
        );
        assert_eq!(human_duration(2 * 86_400_000 + 5 * 3_600_000), "2 d 5 h");
        assert_eq!(human_duration(45_000), "45 s");
        assert_eq!(human_duration(-5), "0 s");
        assert_eq!(human_objective(86_400_000), "24 h");
        assert_eq!(human_objective(7 * 86_400_000), "7 d");
        assert_eq!(truncate("abcdef", 4), "abc…");
    }
}
