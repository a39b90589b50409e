//! The read path: one function per sync event body (run started, page fetched
//! or failed, record observed or rejected, run finished), and the run's
//! decision once it holds every event its worker emitted.

use govledger_proto::v1::{
    ActionOutcome, Alert, EntityCounts, EntityTotal, ErrorClass, Event, PageFailed, PageFetched,
    PageRole, PageState, RecordObserved, RecordRejected, RunState, ServedPageSize, SourceState,
    SyncMode, SyncRunFinished, SyncRunStarted, TypeCompleteRun, Verdict, alert,
};

use super::{
    Working,
    records::{new_identity, note_history, run_mut, source_mut},
    write::{check_drift, check_late, late_confirmed},
};
use crate::verdict;
use govledger_stream::seal::{CHAIN_START, SealCheck, chain_step};

/// Page keys kept in `RunState.failed_page_keys` for reason texts.
pub const FAILED_PAGES_KEPT_MAX: usize = 64;
/// Group ids kept in `RunState.memberships_incomplete_ids` for reason texts.
pub const MEMBERSHIP_GROUPS_KEPT_MAX: usize = 16;

/// A run starts: its mode and thresholds; the first start counts a run at its source.
pub(super) fn run_started(w: &mut Working, seq: u64, ev: &Event, s: &SyncRunStarted) {
    let at = ev.occurred_at_us;
    let run = run_mut(w, ev, seq);
    let first_start = !run.started;
    run.started = true;
    run.mode = s.mode;
    run.started_at_us = at;
    run.deletion_threshold_pct = s.deletion_threshold_pct;
    run.deletion_threshold_abs = s.deletion_threshold_abs;
    run.deletion_thresholds.clone_from(&s.deletion_thresholds);
    run.entity_types.clone_from(&s.entity_types);
    if run.declared_total_at_start.is_none() {
        run.declared_total_at_start = s.declared_total;
    }
    if first_start {
        w.source_runs
            .insert((ev.source_id.clone(), ev.run_id.clone()), ());
        let src = source_mut(w, ev);
        src.runs_total += 1;
        src.last_run_id = ev.run_id.clone();
        src.last_run_started_us = at;
    }
}

/// A page was read: page and run counters, paging cycles, declared totals, short pages.
pub(super) fn page_fetched(w: &mut Working, seq: u64, ev: &Event, p: &PageFetched) {
    // Neither the negotiation nor a group's individual read is a page of the listing.
    if p.service_provider_config {
        let run = run_mut(w, ev, seq);
        run.negotiated_page_size = p.negotiated_page_size;
        run.server_max_page_size = p.server_max_page_size;
        run.page_size_note.clone_from(&p.negotiation_note);
        return;
    }
    if p.member_read {
        run_mut(w, ev, seq).member_reads += 1;
        return;
    }
    let role = PageRole::try_from(p.role).unwrap_or_default();
    if matches!(role, PageRole::CountProbe) {
        let run = run_mut(w, ev, seq);
        note_declared(run, p.entity_type, p.declared_total);
        return;
    }
    let key = (ev.run_id.clone(), p.page_key.clone());
    let page = w.pages.get_or_insert_with(&key, PageState::default);
    let was_ok = page.ok;
    let was_given_up = page.gave_up;
    let was_rate_limited = page.gave_up && page.error_class == ErrorClass::RateLimited as i32;
    page.ok = true;
    page.gave_up = false;
    page.attempts += 1;
    page.http_status = p.http_status;
    // A cursor handed out again after its page was read: a paging cycle.
    let cycle = !p.next_page_key.is_empty()
        && w.pages
            .get(&(ev.run_id.clone(), p.next_page_key.clone()))
            .is_some_and(|pg| pg.ok);
    let run = run_mut(w, ev, seq);
    if !was_ok {
        run.pages_fetched += 1;
    }
    if was_given_up {
        run.pages_failed_final = run.pages_failed_final.saturating_sub(1);
        run.failed_page_keys.retain(|k| k != &p.page_key);
        if was_rate_limited {
            run.pages_rate_limited_final = run.pages_rate_limited_final.saturating_sub(1);
            run.rate_limited_page_keys.retain(|k| k != &p.page_key);
        }
    }
    if cycle {
        run.paging_cycles += 1;
        if run.first_cycle_key.is_empty() {
            run.first_cycle_key = p.page_key.clone();
        }
    }
    note_declared(run, p.entity_type, p.declared_total);
    if matches!(role, PageRole::ProbePastEnd) {
        run.probe_past_end_items += u64::from(p.item_count);
        return;
    }
    let declared = p.declared_total.or_else(|| {
        run.entities
            .iter()
            .find(|e| e.entity_type == p.entity_type)
            .and_then(|e| e.declared_last)
    });
    if p.offset.is_some() {
        refute_served_size(run, p);
    }
    if p.requested_count > 0
        && p.item_count < p.requested_count
        && let (Some(off), Some(d)) = (p.offset, declared)
        && off + u64::from(p.item_count) < d
    {
        let defect = if p.item_count == 0 {
            run.empty_pages += 1;
            true
        } else if short_against_served(run, p, off) {
            run.short_pages += 1;
            true
        } else {
            false
        };
        if defect && run.first_short_page.is_empty() {
            run.first_short_page = p.page_key.clone();
        }
    }
    if p.requested_count > 0
        && p.item_count == p.requested_count
        && declared == Some(u64::from(p.requested_count))
    {
        run.declared_equals_page_size = true;
    }
}

/// Whether a data page with fewer items than asked, before the declared end,
/// is short against the page size the server serves. RFC 7644 lets a server
/// cap `count`: the first page of an entity type (offset 0) sets that size,
/// and later pages are short only below it (or below the count asked, once a
/// later page brought more than the first and so refuted the cap).
fn short_against_served(run: &mut RunState, p: &PageFetched, off: u64) -> bool {
    match run
        .served_page_sizes
        .iter()
        .find(|s| s.entity_type == p.entity_type)
    {
        Some(s) => s.refuted || p.item_count < s.size,
        None if off == 0 => {
            run.served_page_sizes.push(ServedPageSize {
                entity_type: p.entity_type,
                size: p.item_count,
                first_page_key: p.page_key.clone(),
                refuted: false,
            });
            false
        }
        None => true,
    }
}

/// A later page that brought more items than the first page shows the first
/// was short, not capped: it is counted short after all (and named first).
fn refute_served_size(run: &mut RunState, p: &PageFetched) {
    let Some(s) = run
        .served_page_sizes
        .iter_mut()
        .find(|s| s.entity_type == p.entity_type)
    else {
        return;
    };
    if s.refuted || p.item_count <= s.size || p.page_key == s.first_page_key {
        return;
    }
    s.refuted = true;
    run.first_short_page = s.first_page_key.clone();
    run.short_pages += 1;
}

/// A page request failed: counted, and the page given up when no retry follows.
pub(super) fn page_failed(w: &mut Working, seq: u64, ev: &Event, p: &PageFailed) {
    let key = (ev.run_id.clone(), p.page_key.clone());
    let page = w.pages.get_or_insert_with(&key, PageState::default);
    page.attempts += 1;
    let attempts = page.attempts;
    let newly_given_up = !page.ok && !p.will_retry && !page.gave_up;
    if newly_given_up {
        page.gave_up = true;
        page.http_status = p.http_status;
        page.error_class = p.error_class;
    }
    let run = run_mut(w, ev, seq);
    run.page_failures += 1;
    if p.error_class == ErrorClass::RateLimited as i32 {
        run.rate_limited += 1;
    }
    if newly_given_up {
        run.pages_failed_final += 1;
        if run.failed_page_keys.len() < FAILED_PAGES_KEPT_MAX {
            run.failed_page_keys.push(p.page_key.clone());
        }
        if p.error_class == ErrorClass::RateLimited as i32 {
            run.pages_rate_limited_final += 1;
            if run.rate_limited_page_keys.len() < FAILED_PAGES_KEPT_MAX {
                run.rate_limited_page_keys.push(p.page_key.clone());
            }
            let wait_ms = u64::from(p.retry_after_ms.unwrap_or(0));
            run.rate_limit_retry_after_ms = run.rate_limit_retry_after_ms.max(wait_ms);
            run.rate_limited_attempts_max = run.rate_limited_attempts_max.max(attempts);
        }
    }
}

/// A record was observed: run counters, the run-seen spill, the identity record, drift.
pub(super) fn record_observed(w: &mut Working, seq: u64, ev: &Event, mut r: RecordObserved) {
    let at = ev.occurred_at_us;
    let ikey = (
        ev.source_id.clone(),
        r.entity_type,
        std::mem::take(&mut r.external_id),
    );
    let (seen_before, spill_into) = {
        // Which run observed this identity last ("" = none yet).
        let last_run = w
            .identities
            .get(&ikey)
            .map_or("", |i| i.last_observed_run_id.as_str());
        // Seen by this run before: it observed the identity last, or another
        // run took over while this one was open and this run's observation was
        // spilled into a run-seen record (a run without spills has none).
        let seen_before = last_run == ev.run_id
            || (w
                .runs
                .get(&ev.run_id)
                .is_some_and(|run| run.seen_spilled > 0)
                && w.run_seen
                    .get(&(ev.run_id.clone(), ikey.1, ikey.2.clone()))
                    .is_some());
        // The run that observed it last may still observe it again while
        // it is open: that fact is kept (below) before this observation
        // takes over. (Folding this event changes no other run.)
        let spill_into = (!last_run.is_empty()
            && last_run != ev.run_id
            && w.runs.get(last_run).is_some_and(|prev| !prev.decided))
        .then(|| last_run.to_owned());
        (seen_before, spill_into)
    };
    let run = run_mut(w, ev, seq);
    // A decided run's record counters stay as they were at the decision;
    // the event counts as late (after_run_event).
    if !run.decided {
        run.records_observed += 1;
        if seen_before {
            run.duplicates += 1;
        } else {
            run.records_unique += 1;
            let refs = r.memberships.len() as u64;
            run.membership_refs += refs;
            if refs > 0 {
                refs_mut(run, r.entity_type).unique += refs;
            }
            entity_mut(run, r.entity_type).unique += 1;
            if r.memberships_incomplete {
                run.memberships_incomplete_groups += 1;
                if run.memberships_incomplete_ids.len() < MEMBERSHIP_GROUPS_KEPT_MAX {
                    run.memberships_incomplete_ids.push(ikey.2.clone());
                }
            }
        }
    }
    if let Some(last_run) = spill_into
        && let Some(prev) = w.runs.get_mut(&last_run)
    {
        prev.seen_spilled += 1;
        w.run_seen.insert((last_run, ikey.1, ikey.2.clone()), ());
    }
    // When the record was read (events before `read_at_us`: their stamp).
    let read_at_us = if r.read_at_us > 0 { r.read_at_us } else { at };
    let (sources, created) = (&mut w.sources, &mut w.identity_pages_of);
    let ident = w
        .identities
        .get_or_insert_with(&ikey, || new_identity(sources, created, &ikey, at));
    ident.display_name = std::mem::take(&mut r.display_name);
    ident.active = r.active;
    ident.attribute_digest = std::mem::take(&mut r.attribute_digest);
    ident.version = std::mem::take(&mut r.version);
    ident.attributes = std::mem::take(&mut r.attributes);
    // A capped list: each member shown is one, the earlier ones are unknown
    // (kept); drift and late checks look only at the members shown.
    let members_complete = !r.memberships_incomplete;
    let shown = std::mem::take(&mut r.memberships);
    let incomplete_shown = if members_complete {
        ident.memberships = shown;
        None
    } else {
        let known: std::collections::HashSet<&String> = ident.memberships.iter().collect();
        let new: Vec<String> = shown
            .iter()
            .filter(|m| !known.contains(m))
            .cloned()
            .collect();
        ident.memberships.extend(new);
        Some(shown)
    };
    ident.memberships_incomplete = !members_complete;
    ident.last_observed_at_us = at;
    ident.last_observed_run_id.clone_from(&ev.run_id);
    ident.last_observed_seq = seq;
    ident.observations += 1;
    crate::identity_map::note(ident, seq);
    if let Some(chunk) = note_history(&mut ident.recent_seqs, seq) {
        w.identity_history.insert((ikey.clone(), chunk.0), chunk.1);
    }
    let late = if ident.watched.iter().any(|wi| wi.awaiting) {
        let shown = incomplete_shown.as_ref().unwrap_or(&ident.memberships);
        check_late(&mut ident.watched, r.active, shown, seq, read_at_us)
    } else {
        Vec::new()
    };
    if !ident.watched.is_empty() {
        for (action_id, why) in check_drift(
            &mut ident.watched,
            r.active,
            incomplete_shown.as_ref().unwrap_or(&ident.memberships),
            members_complete,
            (&ev.run_id, read_at_us),
            seq,
        ) {
            // Undone: it blocks readiness again.
            w.blocking_actions
                .insert((ev.source_id.clone(), action_id.clone()), ());
            w.alerts.push(Alert {
                kind: alert::Kind::ActionDrifted as i32,
                source_id: ev.source_id.clone(),
                run_id: ev.run_id.clone(),
                action_id,
                outcome: ActionOutcome::Drifted as i32,
                message: why,
                seq,
                ..Default::default()
            });
        }
    }
    for (action_id, evidence) in late {
        late_confirmed(w, &ev.source_id, &action_id, &evidence, &ev.run_id, seq);
    }
}

/// The alert of a run's decision (`kind`) at `seq`: its verdict, and its
/// reasons joined as the message.
pub(super) fn run_alert(kind: alert::Kind, run: &RunState, seq: u64) -> Alert {
    Alert {
        kind: kind as i32,
        source_id: run.source_id.clone(),
        run_id: run.run_id.clone(),
        verdict: run.verdict,
        message: run
            .reasons
            .iter()
            .map(|r| r.message.as_str())
            .collect::<Vec<_>>()
            .join("; "),
        seq,
        ..Default::default()
    }
}

/// Rejected records whose detail a run keeps for its verdict's reason.
pub const REJECTED_DETAILS_KEPT_MAX: usize = 3;

/// A record the worker could not use: counted for its run, the first few
/// named (`page key: detail`, e.g. a file's line) for the verdict.
pub(super) fn record_rejected(w: &mut Working, seq: u64, ev: &Event, r: &RecordRejected) {
    let run = run_mut(w, ev, seq);
    run.rejected += 1;
    if !run.decided && run.rejected_details.len() < REJECTED_DETAILS_KEPT_MAX {
        run.rejected_details.push(if r.page_key.is_empty() {
            r.detail.clone()
        } else {
            format!("{}: {}", r.page_key, r.detail)
        });
    }
}

/// The run seal on a finish event, checked against what the fold chained of
/// the run so far (nothing yet: an empty chain).
pub(super) fn run_seal(w: &Working, ev: &Event) -> SealCheck {
    let (events, chain) = w.runs.get(&ev.run_id).map_or((0, CHAIN_START), |r| {
        (
            r.seal_events,
            <[u8; 32]>::try_from(r.seal_chain.as_slice()).unwrap_or(CHAIN_START),
        )
    });
    w.trust.check_run(ev, events, &chain)
}

/// The worker's report that a run finished (the first report counts, with
/// what its seal check found).
pub(super) fn run_finished(
    w: &mut Working,
    seq: u64,
    ev: &Event,
    f: &SyncRunFinished,
    seal: SealCheck,
) {
    let at = ev.occurred_at_us;
    let run = run_mut(w, ev, seq);
    if run.finished {
        // A second report for the same run: the first one counts, and
        // after_run_event counts this one as late if the run is decided.
    } else {
        run.finished = true;
        run.finished_at_us = at;
        run.seal_status = seal.status as i32;
        run.seal_key_id = seal.key_id;
        run.engine_report = Some(f.clone());
        run.events_expected = if f.events_emitted > 0 {
            f.events_emitted + 1
        } else {
            0
        };
        if run.declared_total_last.is_none() && f.declared_total.is_some() {
            run.declared_total_last = f.declared_total;
        }
    }
}

/// The membership references counted on a run's records of one entity type.
fn refs_mut(run: &mut RunState, entity_type: i32) -> &mut EntityTotal {
    let i = match run
        .membership_refs_by_type
        .iter()
        .position(|e| e.entity_type == entity_type)
    {
        Some(i) => i,
        None => {
            run.membership_refs_by_type.push(EntityTotal {
                entity_type,
                unique: 0,
            });
            run.membership_refs_by_type.len() - 1
        }
    };
    &mut run.membership_refs_by_type[i]
}

fn entity_mut(run: &mut RunState, entity_type: i32) -> &mut EntityCounts {
    let i = match run
        .entities
        .iter()
        .position(|e| e.entity_type == entity_type)
    {
        Some(i) => i,
        None => {
            run.entities.push(EntityCounts {
                entity_type,
                ..Default::default()
            });
            run.entities.len() - 1
        }
    };
    &mut run.entities[i]
}

/// Records a total the source declared for one entity type, and keeps the run's
/// summed `declared_total_last` and `declared_total_changed` up to date.
fn note_declared(run: &mut RunState, entity_type: i32, declared: Option<u64>) {
    let Some(d) = declared else { return };
    let e = entity_mut(run, entity_type);
    if e.declared_first.is_none() {
        e.declared_first = Some(d);
    }
    if e.declared_last.is_some_and(|prev| prev != d) {
        e.declared_changed = true;
    }
    e.declared_last = Some(d);
    let sum: Option<u64> = run.entities.iter().map(|e| e.declared_last).sum();
    run.declared_total_last = sum;
    if run.entities.iter().any(|e| e.declared_changed) {
        run.declared_total_changed = true;
    }
}

/// After every read-path event: count it for its run, and decide the verdict once
/// the run is finished and holds every event its worker said it emitted. An
/// event arriving after the decision makes the run INCOMPLETE (LATE_EVENTS).
pub(super) fn after_run_event(w: &mut Working, ev: &Event, leaf: &crate::merkle::Hash) {
    let Some(run) = w.runs.get_mut(&ev.run_id) else {
        return;
    };
    run.events_folded += 1;
    if !run.finished {
        // What the run's seal must cover: its events before the finish, in
        // stream order (O(1): a count and a chain).
        let chain = <[u8; 32]>::try_from(run.seal_chain.as_slice()).unwrap_or(CHAIN_START);
        run.seal_chain = chain_step(&chain, leaf).to_vec();
        run.seal_events += 1;
    }
    if run.decided {
        run.late_events += 1;
    } else if !(run.finished
        && (run.events_expected == 0 || run.events_folded >= run.events_expected))
    {
        return;
    }
    let was_decided = run.decided;
    run.decided = true;
    if !was_decided {
        run.decided_seq = run.last_seq;
        let prev = w
            .sources
            .get(&ev.source_id)
            .map_or(0, |s| s.last_complete_unique);
        let prev_entities = guard_baseline(w, ev);
        if let Some(run) = w.runs.get_mut(&ev.run_id) {
            run.previous_complete_unique = prev;
            run.previous_complete_entities = prev_entities;
        }
    }
    let Some(run) = w.runs.get_mut(&ev.run_id) else {
        return;
    };
    let (v, reasons) = verdict::decide_finished(run);
    run.verdict = v as i32;
    run.reasons = reasons;
    let alert = run_alert(alert::Kind::RunDecided, run, run.last_seq);
    let run_id = run.run_id.clone();
    let finished_at = run.finished_at_us;
    let (full, first_seq, unique) = (
        run.mode == SyncMode::Full as i32,
        run.first_seq,
        run.records_unique,
    );
    // The types this run read: it set out to read them, declared a total for
    // them or observed one of their records.
    let read_types = crate::deletion_guard::types_read(run);
    let acceptance = crate::deletion_guard::accepted(run)
        .then(|| run.acceptance.clone())
        .flatten();
    w.alerts.push(alert);
    let src = source_mut(w, ev);
    if was_decided {
        // Only a late event gets here; the verdict can only have got worse.
        if src.last_finished_run_id == run_id {
            src.last_finished_verdict = v as i32;
        }
        if v != Verdict::Complete && src.last_complete_run_id == run_id {
            // Conservative: no COMPLETE run is claimed until the next one.
            src.last_complete_run_id.clear();
            src.last_complete_at_us = 0;
            src.last_complete_unique = 0;
        }
        if v != Verdict::Complete && src.last_complete_full_run_id == run_id {
            src.last_complete_full_run_id.clear();
            src.last_complete_full_first_seq = 0;
        }
        if v != Verdict::Complete {
            src.last_complete_full_by_type
                .retain(|t| t.run_id != run_id);
        }
        return;
    }
    src.last_finished_run_id = run_id.clone();
    src.last_finished_verdict = v as i32;
    src.last_finished_at_us = finished_at;
    if v == Verdict::Complete {
        src.last_complete_run_id = run_id.clone();
        src.last_complete_at_us = finished_at;
        src.consecutive_failures = 0;
        if let Some(a) = acceptance {
            super::accept::note_acceptance(src, a);
        }
        if full {
            // The deletion guard compares full runs with full runs only.
            src.last_complete_unique = unique;
            for t in read_types {
                note_type_read(src, t, &run_id, first_seq);
            }
            src.last_complete_full_run_id = run_id;
            src.last_complete_full_first_seq = first_seq;
        }
    } else {
        src.consecutive_failures += 1;
    }
}

/// Records `run_id` as the last COMPLETE full run that read `entity_type`.
pub(super) fn note_type_read(
    src: &mut SourceState,
    entity_type: i32,
    run_id: &str,
    first_seq: u64,
) {
    let entry = TypeCompleteRun {
        entity_type,
        run_id: run_id.to_string(),
        first_seq,
    };
    match src
        .last_complete_full_by_type
        .iter_mut()
        .find(|t| t.entity_type == entity_type)
    {
        Some(t) => *t = entry,
        None => src.last_complete_full_by_type.push(entry),
    }
}

/// The deletion guard's baseline for the run of `ev`, type by type: each
/// entity type it read against the source's last COMPLETE full run that read
/// that type ([`crate::deletion_guard::baseline_for`]).
fn guard_baseline(w: &Working, ev: &Event) -> Vec<EntityTotal> {
    let (Some(run), Some(src)) = (w.runs.get(&ev.run_id), w.sources.get(&ev.source_id)) else {
        return Vec::new();
    };
    crate::deletion_guard::baseline_for(run, |t| {
        src.last_complete_full_by_type
            .iter()
            .find(|c| c.entity_type == t && !c.run_id.is_empty())
            .and_then(|c| w.runs.get(&c.run_id))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(key: &str, off: u64, items: u32) -> PageFetched {
        PageFetched {
            page_key: key.into(),
            offset: Some(off),
            requested_count: 100,
            item_count: items,
            ..Default::default()
        }
    }

    /// Folds a page's short-page rule the way `page_fetched` does (before the declared end).
    fn fold(run: &mut RunState, p: &PageFetched) -> bool {
        refute_served_size(run, p);
        p.item_count < p.requested_count && short_against_served(run, p, p.offset.unwrap_or(0))
    }

    #[test]
    fn a_capped_first_page_sets_the_served_size() {
        let mut run = RunState::default();
        assert!(!fold(&mut run, &page("s=1", 0, 40)), "the cap, not short");
        assert!(!fold(&mut run, &page("s=41", 40, 40)));
        assert!(fold(&mut run, &page("s=81", 80, 20)), "short against 40");
        assert_eq!(run.short_pages, 0, "counted by the caller");
    }

    #[test]
    fn a_later_page_bringing_more_refutes_the_cap() {
        let mut run = RunState::default();
        assert!(!fold(&mut run, &page("s=1", 0, 50)));
        assert!(!fold(&mut run, &page("s=51", 50, 100)));
        assert_eq!(run.short_pages, 1);
        assert_eq!(run.first_short_page, "s=1");
        // Once refuted, pages are measured against the count asked.
        assert!(fold(&mut run, &page("s=151", 150, 60)));
    }

    #[test]
    fn a_short_page_of_an_entity_without_a_first_page_is_short() {
        let mut run = RunState::default();
        assert!(fold(&mut run, &page("s=101", 100, 50)));
    }
}
