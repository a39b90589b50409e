//! Unit tests of the status page: escaping, the banner and the tables, the
//! history chart's marks and fresh intervals, and the plain-English times.

use super::chart::{MAX_MARKS_PER_LANE, fresh_intervals, marks_in_window};
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
