//! The status page's history chart: one inline SVG with a lane per source over
//! the last days, its background plain green while the source was fresh and
//! hatched red while it was stale, one mark per run (shape and colour by
//! verdict, a tooltip with its id and times), then a legend and the same story
//! in words. Pure, like the page: it draws what [`PageData`] holds as of
//! `now_us`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::DateTime;

use super::{PageData, RunMark, escape, fmt_time, truncate, verdict_colour, verdict_meaning};

/// At most this many runs are drawn per source (the newest), to bound the page's size.
pub(super) const MAX_MARKS_PER_LANE: usize = 500;
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

/// The intervals `[start, end]` within `[from_us, to_us]` during which a
/// source with these runs and this objective was FRESH: from each COMPLETE
/// run's finish until its finish plus the objective, clipped to the window,
/// merged where they overlap, in time order. Runs finished before `from_us`
/// count (they may keep the window's start fresh); runs still running
/// (`finished_at_us == 0`) and runs not COMPLETE do not.
pub(super) fn fresh_intervals(
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
pub(super) fn marks_in_window(
    runs: &[RunMark],
    from_us: i64,
    to_us: i64,
) -> (Vec<&RunMark>, usize) {
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

/// The chart's time window and geometry, shared by its parts.
struct Frame {
    /// How many days the chart covers (at least 1).
    days: u32,
    /// The window's start, Unix microseconds.
    from_us: i64,
    /// The window's end (now), Unix microseconds.
    to_us: i64,
    /// The window's length in microseconds (at least 1).
    window_us: i64,
    /// The plot's width, right of the lane labels.
    plot_w: f64,
    /// Where the lanes end and the time axis runs.
    bottom: i64,
}

impl Frame {
    fn new(d: &PageData) -> Frame {
        let days = d.history_days.max(1);
        let to_us = d.now_us;
        let from_us = to_us.saturating_sub(i64::from(days).saturating_mul(DAY_US));
        let lanes_h = LANE_H * i64::try_from(d.history.len().max(1)).unwrap_or(1);
        Frame {
            days,
            from_us,
            to_us,
            window_us: to_us.saturating_sub(from_us).max(1),
            plot_w: (SVG_W - LABEL_W - RIGHT_PAD) as f64,
            bottom: TOP + lanes_h,
        }
    }

    /// The x coordinate of a time.
    fn x(&self, t: i64) -> f64 {
        LABEL_W as f64
            + (t.saturating_sub(self.from_us)) as f64 / self.window_us as f64 * self.plot_w
    }

    fn day_word(&self) -> &'static str {
        if self.days == 1 { "day" } else { "days" }
    }
}

/// The top of lane `i`.
fn lane_top(i: usize) -> i64 {
    TOP + LANE_H * i64::try_from(i).unwrap_or(0)
}

/// One source's lane, computed before drawing: its summary goes into the
/// SVG's description as well as under the chart.
struct Lane<'a> {
    id: &'a str,
    fresh: Vec<(i64, i64)>,
    marks: Vec<&'a RunMark>,
    summary: String,
}

fn lanes<'a>(d: &'a PageData, f: &Frame) -> Vec<Lane<'a>> {
    d.history
        .iter()
        .map(|sh| {
            let fresh = fresh_intervals(&sh.runs, sh.freshness_objective_ms, f.from_us, f.to_us);
            let fresh_us: i64 = fresh.iter().map(|(a, b)| b - a).sum();
            let (marks, in_window) = marks_in_window(&sh.runs, f.from_us, f.to_us);
            let summary = lane_summary(&sh.source_id, &marks, in_window, fresh_us, f.window_us);
            Lane {
                id: &sh.source_id,
                fresh,
                marks,
                summary,
            }
        })
        .collect()
}

/// The "History" section: a heading, the chart, its legend and the chart in words.
pub(super) fn history_section(h: &mut String, d: &PageData) {
    let f = Frame::new(d);
    let _ = writeln!(
        h,
        "<section id=\"history\">\n<h2>History (last {} {})</h2>",
        f.days,
        f.day_word()
    );
    h.push_str(
        "<p class=\"hint\">One line per source, from the left (oldest) to now (right). \
         The background is plain green while the source was fresh and hatched red while it was stale; \
         each mark is one run, placed where it finished (or started, if still running). \
         Hover a mark to see its run id, verdict and times.</p>\n",
    );

    let lanes = lanes(d, &f);
    svg_open(h, &f, &lanes);
    for (i, lane) in lanes.iter().enumerate() {
        lane_background(h, &f, lane_top(i), lane);
    }
    if lanes.is_empty() {
        let _ = writeln!(
            h,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"13\" fill=\"#57606a\">No sources are configured, so there are no runs to show.</text>",
            LABEL_W as f64 + f.plot_w / 2.0,
            TOP + LANE_H / 2 + 4
        );
    }
    day_ticks(h, &f);
    axis(h, &f);

    // Marks, drawn over the bands (oldest first, so the newest is on top).
    for (i, lane) in lanes.iter().enumerate() {
        let cy = lane_top(i) + LANE_H / 2;
        for r in &lane.marks {
            mark(h, r, f.x(mark_time(r)), cy);
        }
    }
    h.push_str("</svg>\n");

    legend(h);
    if !lanes.is_empty() {
        h.push_str("<p class=\"hint\">In words:</p>\n<ul id=\"history-summary\">\n");
        for lane in &lanes {
            let _ = writeln!(h, "<li>{}</li>", escape(&lane.summary));
        }
        h.push_str("</ul>\n");
    }
    h.push_str("</section>\n");
}

/// The `<svg>` start tag, its title, its description (every lane's summary)
/// and the stale hatch pattern.
fn svg_open(h: &mut String, f: &Frame, lanes: &[Lane<'_>]) {
    let desc = if lanes.is_empty() {
        "No sources are configured, so there are no runs to show.".to_string()
    } else {
        let parts: Vec<&str> = lanes.iter().map(|l| l.summary.as_str()).collect();
        format!(
            "Runs of {} source{} from {} to {}. {}.",
            lanes.len(),
            if lanes.len() == 1 { "" } else { "s" },
            fmt_time(f.from_us),
            fmt_time(f.to_us),
            parts.join(". ")
        )
    };
    let svg_h = f.bottom + AXIS_H;
    let _ = writeln!(
        h,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" width=\"{SVG_W}\" height=\"{svg_h}\" \
         viewBox=\"0 0 {SVG_W} {svg_h}\" aria-labelledby=\"history-title history-desc\" \
         font-family=\"system-ui, sans-serif\">"
    );
    let _ = writeln!(
        h,
        "<title id=\"history-title\">Run history and freshness, last {} {}</title>",
        f.days,
        f.day_word()
    );
    let _ = writeln!(h, "<desc id=\"history-desc\">{}</desc>", escape(&desc));
    h.push_str(
        "<defs><pattern id=\"stale-hatch\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" \
         patternTransform=\"rotate(45)\"><line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"6\" \
         stroke=\"#d1242f\" stroke-opacity=\"0.35\" stroke-width=\"1.5\"/></pattern></defs>\n",
    );
}

/// One lane's label, stale background and fresh bands; `y0` is its top.
fn lane_background(h: &mut String, f: &Frame, y0: i64, lane: &Lane<'_>) {
    let plot_w = f.plot_w;
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
        let (xa, xb) = (f.x(a), f.x(b));
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

/// Day ticks (UTC midnights), labelled MM-DD; thinned for long windows.
fn day_ticks(h: &mut String, f: &Frame) {
    let bottom = f.bottom;
    let step = i64::from(f.days.div_ceil(14)).max(1);
    let mut tick = f
        .from_us
        .div_euclid(DAY_US)
        .saturating_add(1)
        .saturating_mul(DAY_US);
    let mut n = 0_i64;
    while tick < f.to_us {
        let tx = f.x(tick);
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
}

/// The time axis under the lanes: its line, "now" at its right end and what
/// the tick labels are.
fn axis(h: &mut String, f: &Frame) {
    let bottom = f.bottom;
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

/// What the chart's colours and shapes mean, as a list under it.
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
