//! Human-readable output of the client commands (`status`, `runs`, `run`,
//! `identity`, `poison`, `accept-deletions`). Formatting only: pure functions
//! from API answers to text.

use govledger_projector::verdict;
use govledger_projector::verdict::{plural, thousands};
use govledger_proto::v1::{
    ActionKind, ActionOutcome, CheckReadinessResponse, Freshness, GetActionResponse,
    GetIdentityResponse, GetRunResponse, PoisonEvent, PresenceStatus, ReasonCode, RunSummary,
    SourceStatus, Verdict,
};

pub fn verdict_name(v: i32) -> &'static str {
    match Verdict::try_from(v).unwrap_or_default() {
        Verdict::Unspecified => "-",
        Verdict::Running => "RUNNING",
        Verdict::Complete => "COMPLETE",
        Verdict::Incomplete => "INCOMPLETE",
        Verdict::Suspect => "SUSPECT",
        Verdict::Failed => "FAILED",
        Verdict::Abandoned => "ABANDONED",
        Verdict::UnverifiedProducer => "UNVERIFIED_PRODUCER",
    }
}

pub fn time_us(us: i64) -> String {
    if us == 0 {
        return "-".into();
    }
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.format("%Y-%m-%d %H:%M:%SZ").to_string())
        .unwrap_or_else(|| us.to_string())
}

fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = line(headers.iter().map(|h| h.to_string()).collect());
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.clone()));
        out.push('\n');
    }
    out
}

pub fn freshness_name(f: i32) -> &'static str {
    match Freshness::try_from(f).unwrap_or_default() {
        Freshness::Fresh => "FRESH",
        Freshness::Stale => "STALE",
        Freshness::NeverComplete => "NEVER_COMPLETE",
        Freshness::Unspecified => "-",
    }
}

pub fn sources_table(sources: &[SourceStatus]) -> String {
    if sources.is_empty() {
        return "no sources: none configured and nothing recorded in the ledger\n".into();
    }
    let rows: Vec<Vec<String>> = sources
        .iter()
        .map(|st| {
            let s = st.state.clone().unwrap_or_default();
            vec![
                st.source_id.clone(),
                freshness_name(st.freshness).into(),
                if s.last_complete_run_id.is_empty() {
                    "-".into()
                } else {
                    format!("{} ago", verdict::human_ms(st.last_complete_age_ms))
                },
                verdict::human_ms(st.freshness_objective_ms as i64),
                if last_finished_accepted(&s) {
                    format!(
                        "{} (deletions accepted)",
                        verdict_name(s.last_finished_verdict)
                    )
                } else {
                    verdict_name(s.last_finished_verdict).into()
                },
                s.runs_total.to_string(),
                s.consecutive_failures.to_string(),
                if st.running_run_id.is_empty() {
                    "-".into()
                } else {
                    st.running_run_id.clone()
                },
            ]
        })
        .collect();
    table(
        &[
            "SOURCE",
            "FRESHNESS",
            "LAST COMPLETE",
            "OBJECTIVE",
            "LAST VERDICT",
            "RUNS",
            "FAILS IN A ROW",
            "RUNNING",
        ],
        &rows,
    )
}

/// The source's last finished run is COMPLETE by an acceptance of its drops.
fn last_finished_accepted(s: &govledger_proto::v1::SourceState) -> bool {
    s.last_finished_verdict == Verdict::Complete as i32
        && s.last_acceptance
            .as_ref()
            .is_some_and(|a| a.run_id == s.last_finished_run_id)
}

/// `accepted by alice at 2026-01-01 00:00:00Z under ticket CHG-1: "why" (stream sequence 42)`.
fn acceptance_line(a: &govledger_proto::v1::Acceptance) -> String {
    let d = a.accepted.clone().unwrap_or_default();
    format!(
        "accepted by {} at {} under ticket {}: {:?} (stream sequence {})",
        d.accepted_by,
        time_us(a.accepted_at_us),
        d.ticket,
        d.reason,
        a.seq
    )
}

/// What `accept-deletions` recorded (or found recorded before).
pub fn acceptance(r: &govledger_proto::v1::AcceptDeletionsResponse) -> String {
    let Some(a) = &r.acceptance else {
        return "empty answer\n".into();
    };
    let drops: Vec<String> = a
        .accepted
        .as_ref()
        .map(|d| d.drops.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|d| {
            let label = match govledger_projector::keys::entity_label(d.entity_type) {
                "entity" => "records".to_owned(),
                l => format!("{l}s"),
            };
            format!("{label} {} → {}", thousands(d.baseline), thousands(d.now))
        })
        .collect();
    format!(
        "{} of run {}: {}\n  {}\n",
        if r.created {
            "deletions accepted"
        } else {
            "already accepted before; this is that acceptance, unchanged"
        },
        a.run_id,
        drops.join(", "),
        acceptance_line(a)
    )
}

pub fn outcome_name(o: i32) -> &'static str {
    match ActionOutcome::try_from(o).unwrap_or_default() {
        ActionOutcome::Unspecified => "-",
        ActionOutcome::Confirmed => "CONFIRMED",
        ActionOutcome::Failed => "FAILED",
        ActionOutcome::Unconfirmed => "UNCONFIRMED",
        ActionOutcome::Overdue => "OVERDUE",
        ActionOutcome::Drifted => "DRIFTED",
        ActionOutcome::Pending => "PENDING",
        ActionOutcome::Unverifiable => "UNVERIFIABLE",
        ActionOutcome::Unverified => "UNVERIFIED",
        ActionOutcome::UnverifiedProducer => "UNVERIFIED_PRODUCER",
    }
}

fn kind_name(k: i32) -> String {
    ActionKind::try_from(k)
        .map(|k| {
            k.as_str_name()
                .trim_start_matches("ACTION_KIND_")
                .to_ascii_lowercase()
                .replace('_', "-")
        })
        .unwrap_or_default()
}

pub fn actions_table(actions: &[GetActionResponse]) -> String {
    if actions.is_empty() {
        return "no actions\n".into();
    }
    let rows: Vec<Vec<String>> = actions
        .iter()
        .map(|v| {
            let a = v.action.clone().unwrap_or_default();
            let r = a.request.clone().unwrap_or_default();
            vec![
                a.action_id.clone(),
                kind_name(r.kind),
                r.identity_external_id.clone(),
                outcome_name(v.outcome).into(),
                a.attempts.to_string(),
                time_us(a.requested_at_us),
                r.ticket.clone(),
            ]
        })
        .collect();
    table(
        &[
            "ACTION",
            "KIND",
            "IDENTITY",
            "OUTCOME",
            "ATTEMPTS",
            "REQUESTED",
            "TICKET",
        ],
        &rows,
    )
}

pub fn action_detail(v: &GetActionResponse) -> String {
    let a = v.action.clone().unwrap_or_default();
    let r = a.request.clone().unwrap_or_default();
    let mut out = as_of_header(v.as_of.as_ref());
    out += &format!(
        "action {}  source {}\n{} {}{}  requested by {} ({}{})\noutcome: {} — {}\n",
        a.action_id,
        a.source_id,
        kind_name(r.kind),
        r.identity_external_id,
        if r.group_external_id.is_empty() {
            String::new()
        } else {
            format!(" / group {}", r.group_external_id)
        },
        r.requested_by,
        if r.reason.is_empty() {
            "no reason given"
        } else {
            &r.reason
        },
        if r.ticket.is_empty() {
            String::new()
        } else {
            format!(", ticket {}", r.ticket)
        },
        outcome_name(v.outcome),
        v.outcome_detail,
    );
    // A drifted action was confirmed, then undone: its read-back and steps
    // say so rather than the CONFIRMED they concluded with.
    let drifted = v.outcome == ActionOutcome::Drifted as i32;
    out.push_str(&format!(
        "attempts: {} (last HTTP {}), read-back: {}{}\n",
        a.attempts,
        a.last_http_status,
        match (a.verified, a.in_effect) {
            (false, _) => "none",
            (true, true) if drifted => "in effect when confirmed, undone since",
            (true, true) => "in effect",
            (true, false) if a.read_back_unknown => "cannot show whether it is in effect",
            (true, false) => "NOT in effect",
        },
        if a.target_absent {
            " (target absent)"
        } else {
            ""
        },
    ));
    for s in &a.steps {
        out.push_str(&format!(
            "  step {} {}: {} — {}\n",
            s.step,
            kind_name(s.kind),
            if drifted && s.outcome == ActionOutcome::Confirmed as i32 {
                "DRIFTED"
            } else {
                outcome_name(s.outcome)
            },
            s.detail
        ));
    }
    out
}

pub fn readiness(r: &CheckReadinessResponse) -> String {
    let mut out = if r.ready {
        "READY: every source in scope is FRESH with a COMPLETE last run\n".to_owned()
    } else {
        format!("NOT READY: {} blocking reason(s)\n", r.blockers.len())
    };
    for b in &r.blockers {
        out.push_str(&format!("  - {} [{}] {}\n", b.source_id, b.code, b.message));
    }
    for st in &r.sources {
        let Some(s) = &st.state else { continue };
        if let Some(a) = s
            .last_acceptance
            .as_ref()
            .filter(|_| last_finished_accepted(s))
        {
            out.push_str(&format!(
                "  note: {}'s last run {} is COMPLETE because its deletions were {}\n",
                st.source_id,
                a.run_id,
                acceptance_line(a)
            ));
        }
    }
    if r.as_of_seq > 0 {
        out.push_str(&format!(
            "  (as of stream sequence {} of {})\n",
            r.as_of_seq, r.stream_last_seq
        ));
    }
    out
}

pub fn runs_table(runs: &[RunSummary]) -> String {
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                r.run_id.clone(),
                if r.deletions_accepted {
                    format!("{} (deletions accepted)", verdict_name(r.verdict))
                } else {
                    verdict_name(r.verdict).into()
                },
                time_us(r.started_at_us),
                thousands(r.records_unique),
                r.declared_total
                    .map(thousands)
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    table(&["RUN", "VERDICT", "STARTED", "UNIQUE", "DECLARED"], &rows)
}

pub fn run_detail(r: &GetRunResponse) -> String {
    let Some(run) = &r.run else {
        return "empty answer\n".into();
    };
    let mut out = format!(
        "run {}  source {}\nverdict: {}\n",
        run.run_id,
        run.source_id,
        verdict_name(r.verdict)
    );
    if r.verdict == Verdict::Complete as i32 {
        out.push_str(&format!(
            "  every page fetched, no page left failed, {} unique records = {} declared, no duplicates, none rejected\n",
            thousands(run.records_unique),
            run.declared_total_last
                .or(run.declared_total_at_start)
                .map(thousands)
                .unwrap_or_else(|| "nothing".into()),
        ));
    }
    for reason in &r.reasons {
        let code = ReasonCode::try_from(reason.code)
            .map(|c| {
                c.as_str_name()
                    .trim_start_matches("REASON_CODE_")
                    .to_owned()
            })
            .unwrap_or_else(|_| reason.code.to_string());
        out.push_str(&format!("  - [{code}] {}\n", reason.message));
    }
    out.push_str(&acceptance_detail(r));
    out.push_str(&format!(
        "started {}, finished {}\npages fetched {}, pages failed {} ({})\n\
         records: {} observed, {} unique, {} duplicates, {} rejected; declared {}\n",
        time_us(run.started_at_us),
        time_us(run.finished_at_us),
        thousands(run.pages_fetched),
        thousands(run.pages_failed_final),
        plural(run.page_failures, "failed attempt", "failed attempts"),
        thousands(run.records_observed),
        thousands(run.records_unique),
        thousands(run.duplicates),
        thousands(run.rejected),
        run.declared_total_last
            .or(run.declared_total_at_start)
            .map(thousands)
            .unwrap_or_else(|| "nothing".into()),
    ));
    out.push_str(&page_size_line(run));
    if run.member_reads > 0 || run.memberships_incomplete_groups > 0 {
        out.push_str(&format!(
            "member lists: {} read one by one, {} incomplete\n",
            plural(run.member_reads, "group", "groups"),
            thousands(run.memberships_incomplete_groups),
        ));
    }
    out
}

/// What a run's detail says about accepting its deletions: the acceptance
/// that made it COMPLETE, one recorded that does not apply, or how to accept.
fn acceptance_detail(r: &GetRunResponse) -> String {
    let Some(run) = &r.run else {
        return String::new();
    };
    let accepted = r
        .reasons
        .iter()
        .any(|x| x.code == ReasonCode::DeletionsAccepted as i32);
    match &run.acceptance {
        Some(a) if accepted && r.verdict == Verdict::Complete as i32 => {
            format!("deletions accepted: {}\n", acceptance_line(a))
        }
        Some(a) => format!(
            "an acceptance is recorded but does not apply (it does not name this run's drops, or the run is not SUSPECT for them alone): {}\n",
            acceptance_line(a)
        ),
        None if r.verdict == Verdict::Suspect as i32
            && !r.reasons.is_empty()
            && r.reasons
                .iter()
                .all(|x| x.code == ReasonCode::CountDrop as i32) =>
        {
            format!(
                "if the deletions are real: govledger accept-deletions {} --reason \"…\" --ticket \"…\"\n",
                run.run_id
            )
        }
        None => String::new(),
    }
}

/// The page size a SCIM run asked for, as negotiated from the server's
/// `/ServiceProviderConfig` ("" when the run did not negotiate).
fn page_size_line(run: &govledger_proto::v1::RunState) -> String {
    if run.negotiated_page_size == 0 {
        return String::new();
    }
    let server = match run.server_max_page_size {
        Some(max) => format!("the server's maximum {}", thousands(u64::from(max))),
        None => "the server declared no maximum".to_owned(),
    };
    let note = if run.page_size_note.is_empty() {
        String::new()
    } else {
        format!(" ({})", run.page_size_note)
    };
    format!(
        "page size asked: {} ({server}){note}\n",
        thousands(u64::from(run.negotiated_page_size))
    )
}

/// Parses `--as-of`: a stream sequence (digits) or an RFC 3339 time.
pub fn parse_as_of(s: &str) -> Result<govledger_proto::v1::AsOf, String> {
    use govledger_proto::v1::{AsOf, as_of::Point};
    let s = s.trim();
    let point = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        let n: u64 = s
            .parse()
            .map_err(|_| format!("--as-of {s:?}: sequence out of range"))?;
        Point::Seq(n)
    } else {
        let t = chrono::DateTime::parse_from_rfc3339(s).map_err(|e| {
            format!(
                "--as-of {s:?} is neither a stream sequence nor an RFC 3339 time such as 2026-10-31T23:59:59Z ({e})"
            )
        })?;
        Point::TimeUs(t.timestamp_micros())
    };
    Ok(AsOf { point: Some(point) })
}

/// "as of sequence N (stored T)" header of point-in-time answers.
fn as_of_header(p: Option<&govledger_proto::v1::AsOfPoint>) -> String {
    p.map(|p| {
        format!(
            "as of sequence {} (stored {})\n",
            p.seq,
            time_us(p.stored_at_us)
        )
    })
    .unwrap_or_default()
}

/// One source (optionally as of a point): freshness, last run and its verdict.
pub fn source_detail(r: &govledger_proto::v1::GetSourceResponse) -> String {
    let mut out = as_of_header(r.as_of.as_ref());
    if let Some(st) = &r.status {
        out.push_str(&sources_table(std::slice::from_ref(st)));
    }
    if let Some(run) = &r.last_run {
        out.push_str(&format!(
            "last run {}: {} (started {}, {} unique records)\n",
            run.run_id,
            verdict_name(r.last_run_verdict),
            time_us(run.started_at_us),
            thousands(run.records_unique)
        ));
    }
    if let Some(a) = r.source.as_ref().and_then(|s| s.last_acceptance.as_ref()) {
        out.push_str(&format!(
            "last acceptance of deletions: run {}, {}\n",
            a.run_id,
            acceptance_line(a)
        ));
    }
    out
}

pub fn identity_detail(r: &GetIdentityResponse) -> String {
    let Some(i) = &r.identity else {
        return "empty answer\n".into();
    };
    let mut out = as_of_header(r.as_of.as_ref());
    if !r.history_seqs.is_empty() {
        out.push_str(&format!(
            "folded from {} event(s) of its history: sequences {}\n",
            r.history_seqs.len(),
            r.history_seqs
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let presence = PresenceStatus::try_from(r.presence)
        .map(|p| {
            p.as_str_name()
                .trim_start_matches("PRESENCE_STATUS_")
                .to_owned()
        })
        .unwrap_or_default();
    out + &format!(
        "{} {} at {} ({})\npresence: {presence} — {}\nactive: {}\nlast observed {} in run {} (seq {}), {} observations\n",
        govledger_projector::keys::entity_label(i.entity_type),
        i.external_id,
        i.source_id,
        i.display_name,
        r.presence_reason,
        i.active
            .map(|a| a.to_string())
            .unwrap_or_else(|| "unknown".into()),
        time_us(i.last_observed_at_us),
        i.last_observed_run_id,
        i.last_observed_seq,
        i.observations,
    ) + &memberships_line(i)
}

/// How many memberships an identity shows, and whether its last member
/// list was capped ("" when it has none and nothing is in doubt).
fn memberships_line(i: &govledger_proto::v1::IdentityState) -> String {
    if i.memberships_incomplete {
        format!(
            "memberships: {} known; the last member list was capped: members not listed are unknown\n",
            thousands(i.memberships.len() as u64)
        )
    } else if i.memberships.is_empty() {
        String::new()
    } else {
        format!("memberships: {}\n", thousands(i.memberships.len() as u64))
    }
}

pub fn poison_table(events: &[PoisonEvent]) -> String {
    if events.is_empty() {
        return "no poison events\n".into();
    }
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|p| {
            vec![
                p.seq.to_string(),
                p.subject.clone(),
                p.payload_len.to_string(),
                p.error.clone(),
            ]
        })
        .collect();
    table(&["SEQ", "SUBJECT", "BYTES", "ERROR"], &rows)
}

/// The outcome of `govledger verify`.
pub fn verify_report(r: &govledger_proto::v1::VerifyRangeResponse) -> String {
    if r.ok {
        format!(
            "OK: sequences {}..={} of stream {} are what the ledger folded ({} messages read) and give the roots of {} signed checkpoint(s){}\n",
            r.from_seq,
            r.to_seq,
            r.stream,
            thousands(r.messages_checked),
            r.checkpoints_checked,
            if r.checkpoints_checked == 0 {
                "\n  (no signed checkpoint covers this range yet: one is made on the [audit] cadence, or now with CreateCheckpoint / govledger export)"
            } else {
                ""
            }
        ) + &r
            .witnessed
            .iter()
            .map(|w| format!("  witnessed: checkpoint of {w}\n"))
            .collect::<String>()
    } else {
        format!(
            "TAMPERED: {}{}\n  ({} messages and {} checkpoints matched before that)\n",
            if r.first_bad_seq > 0 {
                format!("first bad sequence {} — ", r.first_bad_seq)
            } else {
                String::new()
            },
            r.problem,
            thousands(r.messages_checked),
            r.checkpoints_checked
        )
    }
}

/// What `govledger export` wrote.
pub fn export_summary(b: &crate::audit::evidence::Bundle, path: &std::path::Path) -> String {
    let in_range = b.events.iter().filter(|e| e.in_range).count();
    format!(
        "wrote {}: {} event(s) ({} in the range), state as of sequence {} (stored {}), {} signed checkpoint(s)\nsigned by ledger key id {}\ncheck it anywhere with: govledger verify-bundle {} --public-key <the ledger's checkpoint key>\n  the auditor gets that key from the ledger's operator (the \"checkpoint key:\" line of `govledger ledger`) through another channel than this file; the key inside the bundle proves nothing by itself\n",
        path.display(),
        b.events.len(),
        in_range,
        b.state.as_of_seq,
        time_us(b.state.as_of_stored_at_us),
        b.checkpoints.len(),
        b.key_id,
        path.display(),
    )
}

/// The outcome of `govledger verify-bundle`.
pub fn bundle_report(r: &crate::audit::evidence::BundleReport) -> String {
    use crate::audit::evidence::Verdict;
    let mut out = String::new();
    for c in &r.checked {
        out.push_str(&format!("  ok  {c}\n"));
    }
    if !r.report_sha256.is_empty() {
        out.push_str(&format!(
            "  ok  report page SHA-256 {} signed by the manifest key (`govledger report --bundle` renders it; sha256sum the page)\n",
            r.report_sha256
        ));
    }
    for n in &r.notes {
        out.push_str(&format!("  note  {n}\n"));
    }
    if !r.scope.is_empty() {
        out.push_str(&format!("  scope  {}\n", r.scope));
    }
    match r.verdict {
        Verdict::Verified => out.push_str(&format!(
            "VERIFIED: the bundle is intact and signed by the pinned ledger key {}: {}\n",
            r.key_id, r.scope
        )),
        Verdict::Unpinned => out.push_str(&format!(
            "UNPINNED: the bundle is internally consistent, but signed by key {} (id {}) that you did not pin, and anyone can make such a bundle with a key of their own; get the ledger's checkpoint key from its operator through another channel than this file (the \"checkpoint key:\" line of `govledger ledger`) and run again with --public-key\n",
            r.public_key, r.key_id
        )),
        Verdict::Tampered => out.push_str(&format!(
            "TAMPERED: {}{}\n",
            r.first_bad_seq
                .map(|s| format!("first bad sequence {s} — "))
                .unwrap_or_default(),
            r.problem
        )),
        Verdict::Rejected => out.push_str(&format!("REJECTED: {}\n", r.problem)),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let t = table(&["A", "BB"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "A    BB\nxxx  y\n");
    }

    #[test]
    fn run_summary_counts_read_in_the_right_plural() {
        use govledger_proto::v1::RunState;
        let one = |n: u64| GetRunResponse {
            run: Some(RunState {
                page_failures: n,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(
            run_detail(&one(1)).contains("(1 failed attempt)\n"),
            "{}",
            run_detail(&one(1))
        );
        assert!(run_detail(&one(2)).contains("(2 failed attempts)\n"));
        assert!(run_detail(&one(0)).contains("(0 failed attempts)\n"));
    }

    #[test]
    fn the_negotiated_page_size_is_shown() {
        use govledger_proto::v1::RunState;
        let shown = |run: RunState| {
            run_detail(&GetRunResponse {
                run: Some(run),
                ..Default::default()
            })
        };
        let out = shown(RunState {
            negotiated_page_size: 40,
            server_max_page_size: Some(40),
            member_reads: 1,
            ..Default::default()
        });
        assert!(
            out.contains("page size asked: 40 (the server's maximum 40)\n")
                && out.contains("member lists: 1 group read one by one, 0 incomplete\n"),
            "{out}"
        );
        let out = shown(RunState {
            negotiated_page_size: 100,
            page_size_note:
                "/ServiceProviderConfig declares no maximum page size: asked for the configured 100"
                    .into(),
            ..Default::default()
        });
        assert!(
            out.contains("page size asked: 100 (the server declared no maximum) (/ServiceProviderConfig declares no maximum page size: asked for the configured 100)\n"),
            "{out}"
        );
        assert!(!shown(RunState::default()).contains("page size"));
    }

    #[test]
    fn a_drifted_action_reads_drifted_throughout() {
        use govledger_proto::v1::{ActionState, StepOutcome};
        let v = GetActionResponse {
            action: Some(ActionState {
                action_id: "a1".into(),
                verified: true,
                in_effect: true,
                steps: vec![StepOutcome {
                    step: 1,
                    kind: ActionKind::Deactivate as i32,
                    outcome: ActionOutcome::Confirmed as i32,
                    detail: "read-back shows active=false".into(),
                }],
                ..Default::default()
            }),
            outcome: ActionOutcome::Drifted as i32,
            outcome_detail: "confirmed, then undone: active again".into(),
            as_of: None,
        };
        let out = action_detail(&v);
        assert!(!out.contains("CONFIRMED"), "{out}");
        assert!(!out.contains("read-back: in effect\n"), "{out}");
        assert!(
            out.contains("read-back: in effect when confirmed, undone since\n"),
            "{out}"
        );
        assert!(out.contains("  step 1 "), "{out}");
        assert!(
            out.contains(": DRIFTED — read-back shows active=false\n"),
            "{out}"
        );
    }

    #[test]
    fn an_unverifiable_action_does_not_read_not_in_effect() {
        use govledger_proto::v1::ActionState;
        let v = GetActionResponse {
            action: Some(ActionState {
                action_id: "a2".into(),
                verified: true,
                read_back_unknown: true,
                ..Default::default()
            }),
            outcome: ActionOutcome::Unverifiable as i32,
            outcome_detail: "no read-back can show whether it is in effect".into(),
            as_of: None,
        };
        let out = action_detail(&v);
        assert!(out.contains("outcome: UNVERIFIABLE — "), "{out}");
        assert!(!out.contains("NOT in effect"), "{out}");
        assert!(
            out.contains("read-back: cannot show whether it is in effect\n"),
            "{out}"
        );
        assert_eq!(outcome_name(ActionOutcome::Unverified as i32), "UNVERIFIED");
    }

    #[test]
    fn zero_time_is_a_dash() {
        assert_eq!(time_us(0), "-");
        assert_eq!(time_us(1_000_000), "1970-01-01 00:00:01Z");
    }
}
