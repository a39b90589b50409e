//! Verdicts: pure functions from a run's folded counters to exactly one verdict
//! with reasons. No I/O, no clock: "now" is an argument.
//!
//! Architecture Invariant: COMPLETE is only returned when nothing argues against
//! it. Every rule that can fail adds a reason; any reason rules COMPLETE out,
//! except count drops an operator accepted, which stay named as
//! DELETIONS_ACCEPTED reasons of the COMPLETE run.

use govledger_proto::v1::{
    EngineOutcome, EntityCounts, EntityType, ErrorClass, IdentityState, PresenceStatus, Reason,
    ReasonCode, RunState, SourceState, Verdict,
};

/// Default for how long an unfinished run may go without an event before it is ABANDONED.
pub const DEFAULT_ABANDON_AFTER_US: i64 = 60 * 60 * 1_000_000;

fn reason(code: ReasonCode, message: String) -> Reason {
    Reason {
        code: code as i32,
        message,
    }
}

/// `1234567` → `"1,234,567"`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `n` with its noun in the right number: `1 page`, `2 pages` (thousands separated).
pub fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", thousands(n), if n == 1 { one } else { many })
}

/// The verdict of a finished run, decided once when its `SyncRunFinished` is folded.
///
/// The checks run family by family, in this order (the order of the reasons):
/// how the engine ended, pages that failed, counts against the declared total,
/// paging defects, record defects, late events; then a changed declared total
/// and a count drop of any entity type ([`crate::deletion_guard`]) can still
/// make an otherwise clean run SUSPECT — unless an operator accepted exactly
/// those drops (`RunState.acceptance`): then it is COMPLETE and its reasons
/// are the drops as DELETIONS_ACCEPTED, naming the acceptance.
///
/// Provenance comes first: a run whose finish carries no valid seal of a
/// trusted producer (`RunState.seal_status`) is never COMPLETE — what the
/// events would have made COMPLETE, INCOMPLETE or SUSPECT is
/// UNVERIFIED_PRODUCER, the producer problem first among its reasons. FAILED
/// and ABANDONED claim nothing and stay as they are.
pub fn decide_finished(run: &RunState) -> (Verdict, Vec<Reason>) {
    let (v, mut reasons) = decide_from_events(run);
    let status = govledger_proto::v1::SealStatus::try_from(run.seal_status).unwrap_or_default();
    if status == govledger_proto::v1::SealStatus::Verified
        || !matches!(
            v,
            Verdict::Complete | Verdict::Incomplete | Verdict::Suspect
        )
    {
        return (v, reasons);
    }
    reasons.insert(
        0,
        reason(
            ReasonCode::UnverifiedProducer,
            format!(
                "run {}: {}",
                run.run_id,
                govledger_stream::seal::explain(status, &run.seal_key_id)
            ),
        ),
    );
    (Verdict::UnverifiedProducer, reasons)
}

/// The verdict the run's events alone support (see [`decide_finished`]).
fn decide_from_events(run: &RunState) -> (Verdict, Vec<Reason>) {
    let mut reasons = Vec::new();
    if let Some(v) = engine_ending(run, &mut reasons) {
        return (v, reasons);
    }
    page_failures(run, &mut reasons);
    let count_over = count_mismatches(run, &mut reasons);
    paging_defects(run, count_over, &mut reasons);
    record_defects(run, &mut reasons);
    membership_defects(run, &mut reasons);
    if run.late_events > 0 {
        reasons.push(reason(
            ReasonCode::LateEvents,
            format!(
                "{} arrived after the verdict was decided; the run cannot be trusted as complete",
                plural(run.late_events, "event", "events")
            ),
        ));
    }
    if !reasons.is_empty() {
        if run.declared_total_changed {
            reasons.push(declared_changed(run));
        }
        return (Verdict::Incomplete, reasons);
    }
    if run.declared_total_changed {
        return (Verdict::Suspect, vec![declared_changed(run)]);
    }
    let drops = crate::deletion_guard::drops(run);
    if drops.is_empty() {
        return (Verdict::Complete, reasons);
    }
    // An operator accepted exactly these drops: COMPLETE, the drops named
    // with the acceptance (DELETIONS_ACCEPTED), never hidden.
    if let Some(a) = &run.acceptance
        && crate::deletion_guard::covers(a, &drops)
    {
        return (
            Verdict::Complete,
            crate::deletion_guard::accepted_reasons(&drops, a),
        );
    }
    (
        Verdict::Suspect,
        drops
            .iter()
            .map(crate::deletion_guard::CountDrop::reason)
            .collect(),
    )
}

/// How the engine said the sync ended. ABANDONED, or FAILED before any page,
/// decides the run outright (`Some`); a failure after some pages, or no report,
/// adds its reason.
fn engine_ending(run: &RunState, reasons: &mut Vec<Reason>) -> Option<Verdict> {
    let report = run.engine_report.clone().unwrap_or_default();
    let outcome = EngineOutcome::try_from(report.engine_outcome).unwrap_or_default();
    if outcome == EngineOutcome::Abandoned {
        reasons.push(reason(
            ReasonCode::Abandoned,
            format!(
                "the run was abandoned by its worker{}",
                suffix(&report.message)
            ),
        ));
        return Some(Verdict::Abandoned);
    }
    let auth = report.error_class == ErrorClass::Auth as i32;
    let failed_code = if auth {
        ReasonCode::AuthFailed
    } else {
        ReasonCode::EngineFailed
    };
    if outcome == EngineOutcome::Failed && run.pages_fetched == 0 {
        reasons.push(reason(
            failed_code,
            format!("the sync could not run{}", suffix(&report.message)),
        ));
        return Some(Verdict::Failed);
    }
    if outcome == EngineOutcome::Failed {
        reasons.push(reason(
            failed_code,
            format!(
                "the sync stopped early after {}{}",
                plural(run.pages_fetched, "page", "pages"),
                suffix(&report.message)
            ),
        ));
    }
    if outcome == EngineOutcome::Unspecified {
        reasons.push(reason(
            ReasonCode::EngineFailed,
            "the worker did not report how the sync ended".to_owned(),
        ));
    }
    None
}

/// NO_PAGES and PAGES_FAILED: nothing read, or pages given up after retries.
fn page_failures(run: &RunState, reasons: &mut Vec<Reason>) {
    if run.pages_fetched == 0 && run.pages_failed_final == 0 {
        reasons.push(reason(
            ReasonCode::NoPages,
            "no page was fetched, so nothing shows the source was read".to_owned(),
        ));
    }
    let limited = run.pages_rate_limited_final.min(run.pages_failed_final);
    if limited > 0 {
        let keys = key_list(&run.rate_limited_page_keys, limited);
        let wait = match run.rate_limit_retry_after_ms {
            0 => "the server gave no Retry-After".to_owned(),
            ms if run.rate_limited_attempts_max <= 1 => format!(
                "the server asked to wait {} (Retry-After), longer than the retry budget",
                human_ms(i64::try_from(ms).unwrap_or(i64::MAX))
            ),
            ms => format!(
                "the server asked to wait {} (Retry-After)",
                human_ms(i64::try_from(ms).unwrap_or(i64::MAX))
            ),
        };
        let tries = match run.rate_limited_attempts_max {
            0 | 1 => "without a retry:".to_owned(),
            n => format!("after {n} attempts;"),
        };
        reasons.push(reason(
            ReasonCode::PagesFailed,
            format!(
                "{} rate limited (HTTP 429) and given up {tries} {wait} (at {keys})",
                plural(limited, "page was", "pages were")
            ),
        ));
    }
    let others = run.pages_failed_final - limited;
    if others > 0 {
        let kept: Vec<String> = run
            .failed_page_keys
            .iter()
            .filter(|k| !run.rate_limited_page_keys.contains(k))
            .cloned()
            .collect();
        reasons.push(reason(
            ReasonCode::PagesFailed,
            format!(
                "{} failed after retries (at {})",
                plural(others, "page", "pages"),
                key_list(&kept, others)
            ),
        ));
    }
}

/// Up to the kept page keys, `, …` when `total` pages are more than were kept.
fn key_list(kept: &[String], total: u64) -> String {
    let mut keys = kept.join(", ");
    if (kept.len() as u64) < total {
        keys.push_str(", …");
    }
    keys
}

/// COUNT_SHORT / COUNT_OVER against the declared totals, per entity type when
/// pages declared them so; true when more records were observed than declared.
fn count_mismatches(run: &RunState, reasons: &mut Vec<Reason>) -> bool {
    let declared_entities: Vec<&EntityCounts> = run
        .entities
        .iter()
        .filter(|e| e.declared_last.is_some())
        .collect();
    let mut count_over = false;
    if declared_entities.is_empty() {
        if let Some(d) = run.declared_total_last.or(run.declared_total_at_start) {
            count_over |= compare_counts(reasons, "", run.records_unique, d);
        }
    } else {
        let multi = declared_entities.len() > 1;
        for e in declared_entities {
            let label = if multi {
                format!("{}s: ", crate::keys::entity_label(e.entity_type))
            } else {
                String::new()
            };
            // Pages that did not name an entity type declare the whole run.
            let unique = if e.entity_type == EntityType::Unspecified as i32 {
                run.records_unique
            } else {
                e.unique
            };
            if let Some(d) = e.declared_last {
                count_over |= compare_counts(reasons, &label, unique, d);
            }
        }
    }
    count_over
}

/// Paging defects: empty or short pages before the declared end, records past
/// the last page, a paging cycle, and a declared total equal to the page size
/// while more records exist (`count_over`).
fn paging_defects(run: &RunState, count_over: bool, reasons: &mut Vec<Reason>) {
    if run.empty_pages > 0 {
        reasons.push(reason(
            ReasonCode::EmptyPage,
            format!(
                "{} came back empty before the declared end (first at {})",
                plural(run.empty_pages, "page", "pages"),
                run.first_short_page
            ),
        ));
    }
    if run.short_pages > 0 {
        reasons.push(reason(
            ReasonCode::ShortPage,
            format!(
                "{} came back with fewer records than asked before the declared end (first at {})",
                plural(run.short_pages, "page", "pages"),
                run.first_short_page
            ),
        ));
    }
    if run.probe_past_end_items > 0 {
        reasons.push(reason(
            ReasonCode::ProbeNotEmpty,
            format!(
                "the request past the last page returned {}: the source holds more than was paged",
                plural(run.probe_past_end_items, "record", "records")
            ),
        ));
    }
    if run.paging_cycles > 0 {
        reasons.push(reason(
            ReasonCode::PagingCycle,
            format!(
                "paging cycle: the cursor after page {} pointed back to a page already read",
                run.first_cycle_key
            ),
        ));
    }
    if run.declared_equals_page_size && (run.probe_past_end_items > 0 || count_over) {
        reasons.push(reason(
            ReasonCode::DeclaredEqualsPageSize,
            "the declared total equals the page size while more records exist: the source's count is wrong".to_owned(),
        ));
    }
}

/// Record defects: records observed more than once, records rejected as malformed.
fn record_defects(run: &RunState, reasons: &mut Vec<Reason>) {
    if run.duplicates > 0 {
        reasons.push(reason(
            ReasonCode::Duplicates,
            format!(
                "{} observed more than once (paging shifted while reading?)",
                plural(run.duplicates, "record was", "records were")
            ),
        ));
    }
    if run.rejected > 0 {
        let named = if run.rejected_details.is_empty() {
            String::new()
        } else {
            let more = if (run.rejected_details.len() as u64) < run.rejected {
                "; …"
            } else {
                ""
            };
            format!(" ({}{more})", run.rejected_details.join("; "))
        };
        reasons.push(reason(
            ReasonCode::RecordsRejected,
            format!(
                "{} rejected as malformed{named}",
                plural(run.rejected, "record was", "records were")
            ),
        ));
    }
}

/// MEMBERSHIP_INCOMPLETE: groups whose member lists were capped, ranged or
/// left out of the listing and could not be read in full (named, up to the
/// kept ids).
fn membership_defects(run: &RunState, reasons: &mut Vec<Reason>) {
    let n = run.memberships_incomplete_groups;
    if n == 0 {
        return;
    }
    reasons.push(reason(
        ReasonCode::MembershipIncomplete,
        format!(
            "{} capped, ranged or left out of the listing and could not be read in full ({}): \
             members not listed are unknown; raise member_fetch_max (groups read one by one per run) or the server's member list cap, \
             then sync again",
            plural(n, "group's member list was", "groups' member lists were"),
            key_list(&run.memberships_incomplete_ids, n)
        ),
    ));
}

/// Adds COUNT_SHORT / COUNT_OVER when `unique` differs from `declared`; true when over.
fn compare_counts(reasons: &mut Vec<Reason>, label: &str, unique: u64, declared: u64) -> bool {
    if unique < declared {
        reasons.push(reason(
            ReasonCode::CountShort,
            format!(
                "{label}{} of {} records missing: {} unique observed",
                thousands(declared - unique),
                thousands(declared),
                thousands(unique)
            ),
        ));
    } else if unique > declared {
        reasons.push(reason(
            ReasonCode::CountOver,
            format!(
                "{label}{} unique records observed but the source declared {}",
                thousands(unique),
                thousands(declared)
            ),
        ));
        return true;
    }
    false
}

fn declared_changed(run: &RunState) -> Reason {
    reason(
        ReasonCode::DeclaredTotalChanged,
        format!(
            "the declared total changed during the run (first {}, last {})",
            run.declared_total_at_start
                .or_else(|| declared_first(run))
                .map(thousands)
                .unwrap_or_else(|| "unknown".into()),
            run.declared_total_last
                .map(thousands)
                .unwrap_or_else(|| "unknown".into()),
        ),
    )
}

/// The total the run's pages declared first: the sum over entity types of
/// each one's first declared total (`None` when one never declared it).
fn declared_first(run: &RunState) -> Option<u64> {
    if run.entities.iter().all(|e| e.declared_first.is_none()) {
        return None;
    }
    run.entities
        .iter()
        .filter(|e| e.declared_last.is_some())
        .map(|e| e.declared_first)
        .sum()
}

fn suffix(msg: &str) -> String {
    if msg.is_empty() {
        String::new()
    } else {
        format!(": {msg}")
    }
}

/// The verdict of a run as of `now_us`: the decided one for finished runs,
/// RUNNING or ABANDONED (no event for `abandon_after_us`) for the others.
pub fn current(run: &RunState, now_us: i64, abandon_after_us: i64) -> (Verdict, Vec<Reason>) {
    if run.decided {
        let v = Verdict::try_from(run.verdict).unwrap_or_default();
        return (v, run.reasons.clone());
    }
    let idle_us = now_us.saturating_sub(run.last_event_at_us);
    if idle_us > abandon_after_us {
        return (
            Verdict::Abandoned,
            vec![reason(
                ReasonCode::Abandoned,
                format!(
                    "no event for {} s (limit {} s): the worker stopped mid-run",
                    idle_us / 1_000_000,
                    abandon_after_us / 1_000_000
                ),
            )],
        );
    }
    if run.finished {
        return (
            Verdict::Running,
            vec![reason(
                ReasonCode::NotFinished,
                format!(
                    "the worker reported the end of the run, but {} of its events have not reached the ledger yet",
                    thousands(run.events_expected.saturating_sub(run.events_folded))
                ),
            )],
        );
    }
    (
        Verdict::Running,
        vec![reason(
            ReasonCode::NotFinished,
            format!(
                "running: {} fetched, {} observed so far",
                plural(run.pages_fetched, "page", "pages"),
                plural(run.records_unique, "record", "records")
            ),
        )],
    )
}

/// Whether an identity is still present at its source. Absence is evidence only
/// from a COMPLETE full run that read the identity's entity type and started
/// after the identity was last observed; a run that did not read its type says
/// nothing about it.
pub fn presence(identity: &IdentityState, source: &SourceState) -> (PresenceStatus, String) {
    let kind = identity.entity_type;
    let types = match crate::keys::entity_label(kind) {
        "entity" => "records of no stated type".to_string(),
        label => format!("{label}s"),
    };
    let read_by = source
        .last_complete_full_by_type
        .iter()
        .find(|t| t.entity_type == kind && !t.run_id.is_empty());
    if let Some(t) = read_by
        && identity.last_observed_run_id != t.run_id
        && t.first_seq > identity.last_observed_seq
    {
        // A run COMPLETE by an acceptance of its deletions names it.
        let accepted = source
            .last_acceptance
            .as_ref()
            .filter(|a| a.run_id == t.run_id)
            .and_then(|a| a.accepted.as_ref())
            .map(|a| {
                format!(
                    " (complete because its deletions were accepted by {} under ticket {}: {:?})",
                    a.accepted_by, a.ticket, a.reason
                )
            })
            .unwrap_or_default();
        return (
            PresenceStatus::RemovedAtSource,
            format!(
                "not observed by complete full run {}{accepted}, which read {types} and started after its last observation",
                t.run_id
            ),
        );
    }
    if !source.last_run_id.is_empty()
        && identity.last_observed_run_id != source.last_run_id
        && source.last_finished_run_id == source.last_run_id
        && read_by.is_none_or(|t| t.run_id != source.last_run_id)
    {
        let why = if source.last_complete_full_run_id == source.last_run_id {
            format!(
                "not observed by the latest run {}, a complete full run that did not read {types}: \
                 no complete full run that read {types} started after its last observation",
                source.last_run_id
            )
        } else {
            format!(
                "not observed by the latest run {}, which was not a complete full run: its absence is not evidence",
                source.last_run_id
            )
        };
        return (PresenceStatus::Unknown, why);
    }
    (
        PresenceStatus::Present,
        format!("last observed in run {}", identity.last_observed_run_id),
    )
}

/// An action's outcome as of `now_us`: its concluded outcome (DRIFTED when a
/// watched identity later showed it undone; OVERDUE when it concluded
/// UNVERIFIED, never read back, and its deadline passed before an
/// observation confirmed it), OVERDUE past its deadline, else PENDING.
pub fn action_outcome(
    a: &govledger_proto::v1::ActionState,
    drift: Option<&govledger_proto::v1::WatchedIntent>,
    now_us: i64,
) -> (govledger_proto::v1::ActionOutcome, String) {
    use govledger_proto::v1::ActionOutcome;
    if a.concluded_seq == 0 && a.outcome == ActionOutcome::UnverifiedProducer as i32 {
        // Only unsealed conclusions so far: the ledger does not take their word.
        return (ActionOutcome::UnverifiedProducer, a.outcome_detail.clone());
    }
    if a.concluded_seq != 0 {
        let o = ActionOutcome::try_from(a.outcome).unwrap_or_default();
        if o == ActionOutcome::Confirmed
            && let Some(d) = drift.filter(|d| d.drifted)
        {
            return (
                ActionOutcome::Drifted,
                format!("confirmed, then undone: {}", d.drift_detail),
            );
        }
        let deadline = a.request.as_ref().map_or(0, |r| r.deadline_us);
        if o == ActionOutcome::Unverified && deadline > 0 && now_us > deadline {
            return (
                ActionOutcome::Overdue,
                format!(
                    "not verified by its deadline ({} ago): no read-back or observation has shown it in effect; {}",
                    human_ms((now_us - deadline) / 1_000),
                    a.outcome_detail
                ),
            );
        }
        return (o, a.outcome_detail.clone());
    }
    let deadline = a.request.as_ref().map_or(0, |r| r.deadline_us);
    if deadline > 0 && now_us > deadline {
        return (
            ActionOutcome::Overdue,
            format!(
                "not concluded by its deadline ({} ago); {} attempt(s) recorded",
                human_ms((now_us - deadline) / 1_000),
                a.attempts
            ),
        );
    }
    (
        ActionOutcome::Pending,
        format!("in progress: {} attempt(s) so far", a.attempts),
    )
}

/// Freshness of a source as of `now_us`: FRESH while its last COMPLETE run is
/// younger than `objective_ms`. Returns the age in ms (0 when never complete).
pub fn freshness(
    source: Option<&SourceState>,
    objective_ms: u64,
    now_us: i64,
) -> (govledger_proto::v1::Freshness, i64) {
    use govledger_proto::v1::Freshness;
    let Some(s) = source.filter(|s| !s.last_complete_run_id.is_empty()) else {
        return (Freshness::NeverComplete, 0);
    };
    let age_ms = (now_us.saturating_sub(s.last_complete_at_us) / 1_000).max(0);
    if age_ms as u64 <= objective_ms {
        (Freshness::Fresh, age_ms)
    } else {
        (Freshness::Stale, age_ms)
    }
}

/// `90061000` ms → `"1d 1h 1m"`.
pub fn human_ms(ms: i64) -> String {
    let s = ms.max(0) / 1_000;
    let (d, h, m, sec) = (s / 86_400, (s / 3_600) % 24, (s / 60) % 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{sec}s"),
        (0, 0, _) => format!("{m}m {sec}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h {m}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use govledger_proto::v1::{SyncRunFinished, TypeCompleteRun};

    fn finished(f: impl FnOnce(&mut RunState)) -> RunState {
        let mut r = RunState {
            run_id: "r1".into(),
            started: true,
            finished: true,
            decided: true,
            pages_fetched: 3,
            records_unique: 250,
            records_observed: 250,
            declared_total_at_start: Some(250),
            declared_total_last: Some(250),
            engine_report: Some(SyncRunFinished {
                engine_outcome: EngineOutcome::Succeeded as i32,
                ..Default::default()
            }),
            seal_status: govledger_proto::v1::SealStatus::Verified as i32,
            ..Default::default()
        };
        f(&mut r);
        r
    }

    #[test]
    fn a_run_not_sealed_by_a_trusted_producer_is_never_complete() {
        use govledger_proto::v1::SealStatus;
        for status in [
            SealStatus::Missing,
            SealStatus::UntrustedKey,
            SealStatus::BadSignature,
            SealStatus::EventsDiffer,
        ] {
            let run = finished(|r| {
                r.seal_status = status as i32;
                r.seal_key_id = "abcd".into();
            });
            let (v, reasons) = decide_finished(&run);
            assert_eq!(v, Verdict::UnverifiedProducer, "{status:?}");
            assert_eq!(reasons[0].code, ReasonCode::UnverifiedProducer as i32);
            assert!(
                reasons[0]
                    .message
                    .contains("not sealed by a trusted producer"),
                "{}",
                reasons[0].message
            );
        }
        let untrusted = finished(|r| {
            r.seal_status = SealStatus::UntrustedKey as i32;
            r.seal_key_id = "abcd".into();
        });
        assert!(
            decide_finished(&untrusted).1[0]
                .message
                .contains("provenance.trusted_keys")
        );
        // Other reasons stay named after the producer problem.
        let failed_page = finished(|r| {
            r.seal_status = SealStatus::Missing as i32;
            r.pages_failed_final = 1;
        });
        let (v, reasons) = decide_finished(&failed_page);
        assert_eq!(v, Verdict::UnverifiedProducer);
        assert_eq!(reasons[1].code, ReasonCode::PagesFailed as i32);
        // ABANDONED claims nothing: it stays ABANDONED.
        let abandoned = finished(|r| {
            r.seal_status = SealStatus::Missing as i32;
            r.engine_report = Some(SyncRunFinished {
                engine_outcome: EngineOutcome::Abandoned as i32,
                ..Default::default()
            });
        });
        assert_eq!(decide_finished(&abandoned).0, Verdict::Abandoned);
    }

    #[test]
    fn an_unverified_action_is_overdue_once_its_deadline_passes_unconfirmed() {
        use govledger_proto::v1::{ActionOutcome, ActionRequested, ActionState};
        let action = |outcome: ActionOutcome, deadline_us: i64| ActionState {
            request: Some(ActionRequested {
                deadline_us,
                ..Default::default()
            }),
            outcome: outcome as i32,
            outcome_detail: "step 1 deactivate u1: the target could not be read back".into(),
            concluded_seq: 7,
            ..Default::default()
        };
        let a = action(ActionOutcome::Unverified, 1_000_000);
        // Judged at the point's time: before the deadline it is UNVERIFIED.
        assert_eq!(
            action_outcome(&a, None, 999_999).0,
            ActionOutcome::Unverified
        );
        let (o, why) = action_outcome(&a, None, 61_000_000);
        assert_eq!(o, ActionOutcome::Overdue);
        assert!(
            why.starts_with("not verified by its deadline (1m 0s ago)")
                && why.ends_with("could not be read back"),
            "{why}"
        );
        // Without a deadline it stays UNVERIFIED; what a read-back did show
        // (UNVERIFIABLE, UNCONFIRMED) is not turned OVERDUE, nor is a late
        // confirmation.
        assert_eq!(
            action_outcome(&action(ActionOutcome::Unverified, 0), None, i64::MAX).0,
            ActionOutcome::Unverified
        );
        for o in [
            ActionOutcome::Unverifiable,
            ActionOutcome::Unconfirmed,
            ActionOutcome::Confirmed,
            ActionOutcome::Failed,
        ] {
            assert_eq!(action_outcome(&action(o, 1_000_000), None, i64::MAX).0, o);
        }
    }

    fn check(run: RunState, verdict: Verdict, codes: &[ReasonCode]) {
        let (v, reasons) = decide_finished(&run);
        let got: Vec<ReasonCode> = reasons
            .iter()
            .map(|r| ReasonCode::try_from(r.code).unwrap())
            .collect();
        assert_eq!((v, got), (verdict, codes.to_vec()), "{reasons:?}");
    }

    #[test]
    fn clean_run_is_complete() {
        check(finished(|_| {}), Verdict::Complete, &[]);
    }

    #[test]
    fn no_declared_total_and_clean_is_complete() {
        check(
            finished(|r| {
                r.declared_total_at_start = None;
                r.declared_total_last = None
            }),
            Verdict::Complete,
            &[],
        );
    }

    #[test]
    fn capped_member_lists_are_incomplete_and_named_in_the_right_number() {
        let run = finished(|r| {
            r.memberships_incomplete_groups = 1;
            r.memberships_incomplete_ids = vec!["g7".into()];
        });
        let (v, reasons) = decide_finished(&run);
        assert_eq!(v, Verdict::Incomplete);
        assert_eq!(
            reasons[0].message,
            "1 group's member list was capped, ranged or left out of the listing and could not \
             be read in full (g7): members not listed are unknown; raise member_fetch_max (groups read one by one per \
             run) or the server's member list cap, then sync again"
        );
        let run = finished(|r| {
            r.memberships_incomplete_groups = 20;
            r.memberships_incomplete_ids = (0..16).map(|i| format!("g{i}")).collect();
        });
        let (_, reasons) = decide_finished(&run);
        assert!(
            reasons[0]
                .message
                .starts_with("20 groups' member lists were capped, ranged or left out")
                && reasons[0].message.contains("g14, g15, …)"),
            "{reasons:?}"
        );
        check(
            run,
            Verdict::Incomplete,
            &[ReasonCode::MembershipIncomplete],
        );
    }

    #[test]
    fn failed_page_is_incomplete_and_named() {
        let run = finished(|r| {
            r.pages_failed_final = 1;
            r.failed_page_keys = vec!["startIndex=101".into()];
            r.records_unique = 150;
        });
        let (v, reasons) = decide_finished(&run);
        assert_eq!(v, Verdict::Incomplete);
        assert!(reasons[0].message.contains("1 page failed"), "{reasons:?}");
        assert!(reasons[0].message.contains("startIndex=101"));
        assert_eq!(
            reasons[1].message,
            "100 of 250 records missing: 150 unique observed"
        );
    }

    #[test]
    fn each_defect_gives_its_own_reason() {
        check(
            finished(|r| r.records_unique = 300),
            Verdict::Incomplete,
            &[ReasonCode::CountOver],
        );
        check(
            finished(|r| r.duplicates = 2),
            Verdict::Incomplete,
            &[ReasonCode::Duplicates],
        );
        check(
            finished(|r| r.rejected = 1),
            Verdict::Incomplete,
            &[ReasonCode::RecordsRejected],
        );
        check(
            finished(|r| r.pages_fetched = 0),
            Verdict::Incomplete,
            &[ReasonCode::NoPages],
        );
        check(
            finished(|r| r.engine_report = None),
            Verdict::Incomplete,
            &[ReasonCode::EngineFailed],
        );
        check(
            finished(|r| r.late_events = 2),
            Verdict::Incomplete,
            &[ReasonCode::LateEvents],
        );
    }

    #[test]
    fn declared_change_alone_is_suspect_and_joins_other_reasons() {
        check(
            finished(|r| {
                r.declared_total_changed = true;
                r.declared_total_at_start = Some(240);
            }),
            Verdict::Suspect,
            &[ReasonCode::DeclaredTotalChanged],
        );
        check(
            finished(|r| {
                r.declared_total_changed = true;
                r.duplicates = 1;
            }),
            Verdict::Incomplete,
            &[ReasonCode::Duplicates, ReasonCode::DeclaredTotalChanged],
        );
    }

    #[test]
    fn declared_change_names_the_first_total_a_page_declared() {
        let run = finished(|r| {
            r.declared_total_changed = true;
            r.declared_total_at_start = None;
            r.declared_total_last = Some(262);
            r.records_unique = 262;
            r.entities = vec![EntityCounts {
                entity_type: EntityType::User as i32,
                declared_first: Some(250),
                declared_last: Some(262),
                declared_changed: true,
                unique: 262,
            }];
        });
        let (v, reasons) = decide_finished(&run);
        assert_eq!(v, Verdict::Suspect);
        assert_eq!(
            reasons[0].message,
            "the declared total changed during the run (first 250, last 262)"
        );
    }

    #[test]
    fn a_page_given_up_on_a_long_retry_after_names_the_rate_limit() {
        let run = finished(|r| {
            r.pages_failed_final = 2;
            r.failed_page_keys = vec!["Users:startIndex=101".into(), "Users:startIndex=201".into()];
            r.pages_rate_limited_final = 1;
            r.rate_limited_page_keys = vec!["Users:startIndex=101".into()];
            r.rate_limit_retry_after_ms = 3_600_000;
            r.rate_limited_attempts_max = 1;
            r.records_unique = 50;
        });
        let (v, reasons) = decide_finished(&run);
        assert_eq!(v, Verdict::Incomplete);
        assert_eq!(
            reasons[0].message,
            "1 page was rate limited (HTTP 429) and given up without a retry: the server asked to wait 1h 0m (Retry-After), longer than the retry budget (at Users:startIndex=101)"
        );
        assert_eq!(
            reasons[1].message,
            "1 page failed after retries (at Users:startIndex=201)"
        );
        let run = finished(|r| {
            r.pages_failed_final = 1;
            r.failed_page_keys = vec!["Users:startIndex=101".into()];
            r.pages_rate_limited_final = 1;
            r.rate_limited_page_keys = vec!["Users:startIndex=101".into()];
            r.rate_limit_retry_after_ms = 0;
            r.rate_limited_attempts_max = 3;
            r.records_unique = 150;
        });
        assert_eq!(
            decide_finished(&run).1[0].message,
            "1 page was rate limited (HTTP 429) and given up after 3 attempts; the server gave no Retry-After (at Users:startIndex=101)"
        );
    }

    #[test]
    fn engine_failure_without_pages_is_failed() {
        check(
            finished(|r| {
                r.pages_fetched = 0;
                r.records_unique = 0;
                r.engine_report = Some(SyncRunFinished {
                    engine_outcome: EngineOutcome::Failed as i32,
                    message: "401 Unauthorized".into(),
                    ..Default::default()
                });
            }),
            Verdict::Failed,
            &[ReasonCode::EngineFailed],
        );
    }

    #[test]
    fn unfinished_runs_are_running_then_abandoned() {
        let mut r = finished(|r| {
            r.finished = false;
            r.decided = false;
        });
        r.last_event_at_us = 1_000_000;
        assert_eq!(current(&r, 2_000_000, 10_000_000).0, Verdict::Running);
        assert_eq!(current(&r, 20_000_000, 10_000_000).0, Verdict::Abandoned);
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }

    #[test]
    fn freshness_rules() {
        use govledger_proto::v1::Freshness;
        let hour_us = 3_600_000_000i64;
        assert_eq!(freshness(None, 1, 0).0, Freshness::NeverComplete);
        let mut s = SourceState::default();
        assert_eq!(freshness(Some(&s), 1, 0).0, Freshness::NeverComplete);
        s.last_complete_run_id = "r".into();
        s.last_complete_at_us = hour_us;
        let day_ms = 24 * 3_600_000;
        assert_eq!(
            freshness(Some(&s), day_ms, 2 * hour_us),
            (Freshness::Fresh, 3_600_000)
        );
        assert_eq!(
            freshness(Some(&s), day_ms, 26 * hour_us).0,
            Freshness::Stale
        );
        assert_eq!(human_ms(90_061_000), "1d 1h 1m");
        assert_eq!(human_ms(61_000), "1m 1s");
    }

    #[test]
    fn presence_rules() {
        let users = |run: &str, seq: u64| TypeCompleteRun {
            entity_type: EntityType::User as i32,
            run_id: run.into(),
            first_seq: seq,
        };
        let ident = IdentityState {
            entity_type: EntityType::User as i32,
            last_observed_run_id: "r1".into(),
            last_observed_seq: 10,
            ..Default::default()
        };
        let mut src = SourceState {
            last_run_id: "r1".into(),
            last_finished_run_id: "r1".into(),
            last_complete_full_run_id: "r1".into(),
            last_complete_full_first_seq: 1,
            last_complete_full_by_type: vec![users("r1", 1)],
            ..Default::default()
        };
        assert_eq!(presence(&ident, &src).0, PresenceStatus::Present);
        // A later complete full run did not see it.
        src.last_run_id = "r2".into();
        src.last_finished_run_id = "r2".into();
        src.last_complete_full_run_id = "r2".into();
        src.last_complete_full_first_seq = 20;
        src.last_complete_full_by_type = vec![users("r2", 20)];
        assert_eq!(presence(&ident, &src).0, PresenceStatus::RemovedAtSource);
        // Only an incomplete run did not see it: unknown, not removed.
        src.last_complete_full_run_id = "r1".into();
        src.last_complete_full_first_seq = 1;
        src.last_complete_full_by_type = vec![users("r1", 1)];
        assert_eq!(presence(&ident, &src).0, PresenceStatus::Unknown);
    }

    #[test]
    fn presence_rules_per_entity_type() {
        let by_type = |t: EntityType, run: &str, seq: u64| TypeCompleteRun {
            entity_type: t as i32,
            run_id: run.into(),
            first_seq: seq,
        };
        let group = IdentityState {
            entity_type: EntityType::Group as i32,
            last_observed_run_id: "r1".into(),
            last_observed_seq: 10,
            ..Default::default()
        };
        let user = IdentityState {
            entity_type: EntityType::User as i32,
            ..group.clone()
        };
        // r1 read users and groups; r2, a complete full run, read users only.
        let src = SourceState {
            last_run_id: "r2".into(),
            last_finished_run_id: "r2".into(),
            last_complete_full_run_id: "r2".into(),
            last_complete_full_first_seq: 20,
            last_complete_full_by_type: vec![
                by_type(EntityType::User, "r2", 20),
                by_type(EntityType::Group, "r1", 1),
            ],
            ..Default::default()
        };
        assert_eq!(presence(&user, &src).0, PresenceStatus::RemovedAtSource);
        let (p, why) = presence(&group, &src);
        assert_eq!(p, PresenceStatus::Unknown);
        assert_eq!(
            why,
            "not observed by the latest run r2, a complete full run that did not read groups: \
             no complete full run that read groups started after its last observation"
        );
        // No complete full run ever read groups: no conclusion either.
        let mut users_only = src.clone();
        users_only.last_complete_full_by_type.truncate(1);
        assert_eq!(presence(&group, &users_only).0, PresenceStatus::Unknown);
        // A later complete full run that read groups did not see it.
        let mut later = src.clone();
        later.last_run_id = "r3".into();
        later.last_finished_run_id = "r3".into();
        later.last_complete_full_run_id = "r3".into();
        later.last_complete_full_by_type[1] = by_type(EntityType::Group, "r3", 30);
        let (p, why) = presence(&group, &later);
        assert_eq!(p, PresenceStatus::RemovedAtSource);
        assert_eq!(
            why,
            "not observed by complete full run r3, which read groups and started after its last observation"
        );
    }
}
