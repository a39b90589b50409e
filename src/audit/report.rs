//! The auditor's completeness report: one self-contained HTML page for one
//! source as of a point, rendered from a verified evidence bundle alone (the
//! source's events from its first up to the point, their proofs, the signed
//! state) — so anyone holding the bundle renders the same bytes again
//! (`govledger report --bundle`). The page names the bundle's manifest
//! signature, and the ledger signs the page's SHA-256 with the manifest key
//! after the manifest ([`seal`], the bundle's `report`): the report is
//! referenced by digest in what the ledger signed, and bound to its bundle.
//!
//! What it shows: the population (every identity of the source the ledger
//! knows, its state, and whether it is present at the source, removed, or
//! unknown — decided as the API decides it), how it was produced (the last COMPLETE full run: its query, pages,
//! the source's declared total against the unique count, and every
//! cross-check behind its verdict; every run in the period), the actions in
//! the period with their read-back evidence, the open exceptions, and the
//! checkpoint and proofs with the commands that verify them independently.
//! Numbers a test compares with the API carry `data-k` attributes.
//!
//! Pure: no I/O, no clock; every text from a source is HTML-escaped.

use std::fmt::Write as _;

use govledger_projector::{fold::Working, verdict};
use govledger_proto::v1::{
    ActionKind, ActionOutcome, ActionState, Checkpoint, EntityType, IdentityState, PresenceStatus,
    RunState, SyncMode, Verdict, event::Body,
};

use sha2::{Digest as _, Sha256};

use crate::audit::{
    checkpoints::unhex,
    evidence::{Bundle, BundleReport, ReportSeal, Verdict as BundleVerdict},
};

/// Identities listed at most (the rest are counted; the bundle holds them all).
pub const POPULATION_ROWS_MAX: usize = 5_000;

/// Why a report could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The bundle is not one the report is made of.
    #[error("{0}")]
    NotASourceBundle(String),
    /// The bundle did not verify: no report is made of it.
    #[error("the bundle did not verify ({0}); no report is made of unverified evidence")]
    NotVerified(String),
    /// The bundle's events do not fold (a bundle that verified always does).
    #[error("the bundle's events do not fold: {0}")]
    Fold(String),
}

/// What the page is made of.
pub struct ReportInput<'a> {
    pub bundle: &'a Bundle,
    /// `verify_bundle`'s report on it, VERIFIED under `pinned_key`.
    pub verification: &'a BundleReport,
    /// The fold of the bundle's events ([`crate::audit::evidence::fold_bundle`]).
    pub folded: &'a Working,
    /// The C2SP verifier key of the anchor's note (what to pin for tools we did not write).
    pub verifier_key: &'a str,
}

/// The page of a bundle `verify_bundle` judged (`verification`): its fold,
/// its anchor's verifier key, rendered — what `govledger report` writes and
/// what the ledger signs the digest of.
pub fn page(bundle: &Bundle, verification: &BundleReport) -> Result<String, ReportError> {
    use prost::Message as _;
    let folded = crate::audit::evidence::fold_bundle(bundle).map_err(ReportError::Fold)?;
    let verifier_key = bundle
        .checkpoints
        .last()
        .and_then(|c| unhex(c))
        .and_then(|bytes| Checkpoint::decode(bytes.as_slice()).ok())
        .map(|c| c.verifier_key)
        .unwrap_or_default();
    render(&ReportInput {
        bundle,
        verification,
        folded: &folded,
        verifier_key: &verifier_key,
    })
}

/// Hex SHA-256 of a page.
pub fn page_sha256(page: &str) -> String {
    govledger_projector::fold::hex(&Sha256::digest(page.as_bytes()))
}

/// The ledger's seal of the report of `bundle` (just exported, its
/// manifest signed, no seal yet): the bundle verified under its own key,
/// the page rendered, its digest signed by `sign` (the manifest key) over
/// [`crate::audit::evidence::report_statement`].
pub fn seal(bundle: &Bundle, sign: impl Fn(&[u8]) -> String) -> Result<ReportSeal, ReportError> {
    let bytes = serde_json::to_vec_pretty(bundle).map_err(|e| ReportError::Fold(e.to_string()))?;
    let verification = crate::audit::evidence::verify_bundle(&bytes, Some(&bundle.public_key));
    let sha256 = page_sha256(&page(bundle, &verification)?);
    let signature = sign(&crate::audit::evidence::report_statement(
        &bundle.manifest_signature,
        &sha256,
    ));
    Ok(ReportSeal { sha256, signature })
}

/// Renders the report (see the module doc).
pub fn render(i: &ReportInput<'_>) -> Result<String, ReportError> {
    let b = i.bundle;
    if !b.scope.external_id.is_empty() || b.state.source.is_none() {
        return Err(ReportError::NotASourceBundle(
            "a report is made of a whole-source bundle (export without --identity)".into(),
        ));
    }
    if b.scope.from_us != 0 {
        return Err(ReportError::NotASourceBundle(
            "a report needs the source's whole history: export with no --from".into(),
        ));
    }
    if i.verification.verdict != BundleVerdict::Verified {
        return Err(ReportError::NotVerified(i.verification.problem.clone()));
    }
    let src = &b.scope.source_id;
    let mut h = String::with_capacity(64 << 10);
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Completeness report: {}</title><style>{STYLE}</style></head><body>\n",
        esc(src)
    );
    let _ = write!(
        h,
        "<h1>Completeness report — source <code>{}</code></h1>\n\
         <p class=\"lead\">As of stream sequence <b data-k=\"as_of_seq\">{}</b> (stored {}). \
         Generated from the evidence bundle exported {}, whose manifest is signed by the ledger's \
         manifest key (checkpoint key id <code>{}</code>; manifest signature <code class=\"wrap\" \
         data-k=\"manifest_signature\">{}</code>). Everything below is read from that bundle: \
         rendering it again gives this page byte for byte, and the bundle carries this page's \
         SHA-256 signed by the same key.</p>\n",
        esc(src),
        b.state.as_of_seq,
        time(b.state.as_of_stored_at_us),
        time(b.created_at_us),
        esc(&b.key_id),
        esc(&b.manifest_signature),
    );
    let runs = source_runs(i.folded, src);
    let population = population(i.folded, src);
    summary(&mut h, i, &runs, &population);
    produced(&mut h, i, &runs);
    population_table(&mut h, &population);
    actions(&mut h, i.folded, src);
    exceptions(&mut h, i.folded, src, &runs);
    evidence(&mut h, i);
    h.push_str("</body></html>\n");
    Ok(h)
}

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#1b1f24}\
h1{font-size:22px}h2{font-size:17px;margin-top:1.8em;border-bottom:1px solid #ccd}\
table{border-collapse:collapse;width:100%;margin:.5em 0}td,th{border:1px solid #ccd;padding:3px 6px;text-align:left;vertical-align:top}\
th{background:#eef}code{font-size:12px}.wrap{word-break:break-all}.ok{color:#176b2c}.bad{color:#a1121a;font-weight:600}\
.lead{color:#333}.num{text-align:right}pre{background:#f5f5f8;padding:.6em;white-space:pre-wrap;word-break:break-all}";

fn source_runs<'w>(w: &'w Working, src: &str) -> Vec<&'w RunState> {
    let mut runs: Vec<&RunState> = w.runs.values().filter(|r| r.source_id == src).collect();
    runs.sort_by_key(|r| (r.first_seq, r.run_id.clone()));
    runs
}

/// Every identity of the source the ledger knows, with its presence at the
/// source as the API decides it (absence is evidence only from a COMPLETE
/// full run that read its type and started after its last observation).
fn population<'w>(w: &'w Working, src: &str) -> Vec<(&'w IdentityState, PresenceStatus)> {
    let source = w.sources.get(src).cloned().unwrap_or_default();
    w.identities
        .iter()
        .filter(|((s, _, _), _)| s == src)
        .map(|(_, v)| (v, verdict::presence(v, &source).0))
        .collect()
}

/// The last COMPLETE full run (what the population's completeness rests on).
fn last_complete_full<'r>(runs: &[&'r RunState]) -> Option<&'r RunState> {
    runs.iter()
        .rev()
        .find(|r| r.verdict == Verdict::Complete as i32 && r.mode == SyncMode::Full as i32)
        .copied()
}

fn summary(
    h: &mut String,
    i: &ReportInput<'_>,
    runs: &[&RunState],
    pop: &[(&IdentityState, PresenceStatus)],
) {
    let count = |p: PresenceStatus| pop.iter().filter(|(_, q)| *q == p).count();
    let present: Vec<&IdentityState> = pop
        .iter()
        .filter(|(_, p)| *p == PresenceStatus::Present)
        .map(|(s, _)| *s)
        .collect();
    let active = present.iter().filter(|s| s.active == Some(true)).count();
    let inactive = present.iter().filter(|s| s.active == Some(false)).count();
    let complete = last_complete_full(runs);
    let verdict = match complete {
        Some(r) => format!(
            "<span class=\"ok\">COMPLETE</span> — the last complete full run <code>{}</code> finished {}",
            esc(&r.run_id),
            time(r.finished_at_us)
        ),
        None => "<span class=\"bad\">NOT COMPLETE</span> — no full run of this source was decided COMPLETE up to this point".into(),
    };
    let _ = writeln!(
        h,
        "<h2>Summary</h2><table>\
         <tr><th>Population complete?</th><td>{verdict}</td></tr>\
         <tr><th>Present at the source</th><td><b data-k=\"present\">{}</b> ({} active, {} inactive, {} without an active flag)</td></tr>\
         <tr><th>Removed at the source</th><td data-k=\"removed\">{}</td></tr>\
         <tr><th>Presence unknown</th><td data-k=\"presence_unknown\">{}</td></tr>\
         <tr><th>Known to the ledger</th><td data-k=\"identities_known\">{}</td></tr>\
         <tr><th>Runs</th><td data-k=\"runs\">{}</td></tr>\
         <tr><th>Evidence</th><td>{} event(s), each proven included in the log; {}</td></tr>\
         </table>",
        present.len(),
        active,
        inactive,
        present.len() - active - inactive,
        count(PresenceStatus::RemovedAtSource),
        count(PresenceStatus::Unknown) + count(PresenceStatus::Unspecified),
        pop.len(),
        runs.len(),
        i.bundle.events.len(),
        esc(&i.verification.scope),
    );
}

fn produced(h: &mut String, i: &ReportInput<'_>, runs: &[&RunState]) {
    h.push_str("<h2>How the population was produced</h2>\n");
    match last_complete_full(runs) {
        Some(r) => {
            let started = run_started(i.bundle, &r.run_id);
            let query = started.map_or_else(
                || "the run's start event is not in the bundle".to_owned(),
                |s| {
                    format!(
                        "page size {}, paging <code>{}</code>, entity types {}{}{}",
                        s.page_size,
                        esc(&s.paging),
                        s.entity_types
                            .iter()
                            .map(|t| entity(*t))
                            .collect::<Vec<_>>()
                            .join(", "),
                        if s.delta_filter.is_empty() {
                            String::new()
                        } else {
                            format!(", filter <code>{}</code>", esc(&s.delta_filter))
                        },
                        if s.triggered_by.is_empty() {
                            String::new()
                        } else {
                            format!(", triggered by <code>{}</code>", esc(&s.triggered_by))
                        }
                    )
                },
            );
            let _ = writeln!(
                h,
                "<table><tr><th>Run</th><td><code>{}</code> ({}), sequences {}–{}, {} → {}</td></tr>\
                 <tr><th>Query</th><td>{query}</td></tr>\
                 <tr><th>Pages</th><td><span data-k=\"pages_fetched\">{}</span> fetched, {} failed</td></tr>\
                 <tr><th>Source's declared total</th><td data-k=\"declared_total\">{}</td></tr>\
                 <tr><th>Unique records read</th><td data-k=\"records_unique\">{}</td></tr>\
                 <tr><th>Observed / duplicates / rejected</th><td>{} / {} / {}</td></tr></table>",
                esc(&r.run_id),
                mode(r.mode),
                r.first_seq,
                r.last_seq,
                time(r.started_at_us),
                time(r.finished_at_us),
                r.pages_fetched,
                r.pages_failed_final,
                r.declared_total_last
                    .map_or_else(|| "not declared".to_owned(), |t| t.to_string()),
                r.records_unique,
                r.records_observed,
                r.duplicates,
                r.rejected,
            );
            h.push_str("<p>Cross-checks behind COMPLETE (each recomputed from the events):</p><ul>");
            for c in cross_checks(r) {
                let _ = write!(h, "<li>{c}</li>");
            }
            h.push_str("</ul>\n");
        }
        None => h.push_str("<p class=\"bad\">No full run was decided COMPLETE: the population below is what the ledger saw, not a proven complete one.</p>\n"),
    }
    h.push_str("<table><tr><th>Run</th><th>Mode</th><th>Finished</th><th>Verdict</th><th class=\"num\">Unique</th><th class=\"num\">Declared</th><th>Reasons</th></tr>");
    for r in runs {
        let _ = write!(
            h,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            esc(&r.run_id),
            mode(r.mode),
            time(r.finished_at_us),
            verdict(r.verdict),
            r.records_unique,
            r.declared_total_last
                .map_or_else(|| "-".to_owned(), |t| t.to_string()),
            r.reasons
                .iter()
                .map(|x| esc(&x.message))
                .collect::<Vec<_>>()
                .join("; "),
        );
    }
    h.push_str("</table>\n");
}

/// The facts a COMPLETE verdict rests on, in words.
fn cross_checks(r: &RunState) -> Vec<String> {
    let mut out = vec![
        format!(
            "every page fetched: {} fetched, {} failed for good",
            r.pages_fetched, r.pages_failed_final
        ),
        match r.declared_total_last {
            Some(t) => format!(
                "the source's declared total ({t}) equals the unique records read ({}){}",
                r.records_unique,
                if r.declared_total_changed {
                    "; the total changed during the run"
                } else {
                    ""
                }
            ),
            None => {
                "the source declares no total: completeness rests on the paging reaching its end"
                    .into()
            }
        },
        format!(
            "every event the producer reported for the run is in the log: {} folded of {} expected, the run's seal checked",
            r.events_folded, r.events_expected
        ),
        format!(
            "no paging anomaly: {} short page(s), {} empty page(s), {} paging cycle(s), {} item(s) past the end",
            r.short_pages, r.empty_pages, r.paging_cycles, r.probe_past_end_items
        ),
    ];
    if r.late_events > 0 {
        out.push(format!(
            "{} event(s) arrived after the run was decided",
            r.late_events
        ));
    }
    out
}

fn run_started(b: &Bundle, run_id: &str) -> Option<govledger_proto::v1::SyncRunStarted> {
    use prost::Message as _;
    b.events.iter().find_map(|e| {
        let ev = govledger_proto::v1::Event::decode(unhex(&e.raw)?.as_slice()).ok()?;
        match ev.body {
            Some(Body::SyncRunStarted(s)) if ev.run_id == run_id => Some(s),
            _ => None,
        }
    })
}

fn population_table(h: &mut String, pop: &[(&IdentityState, PresenceStatus)]) {
    let _ = write!(
        h,
        "<h2>Population ({} identities known)</h2><table><tr><th>Type</th><th>External id</th><th>Name</th><th>At the source</th><th>Active</th><th class=\"num\">Memberships</th><th>Last observed</th><th>In run</th></tr>",
        pop.len()
    );
    for (s, presence) in pop.iter().take(POPULATION_ROWS_MAX) {
        let at_source = match presence {
            PresenceStatus::Present => "present",
            PresenceStatus::RemovedAtSource => "<span class=\"bad\">removed</span>",
            _ => "unknown",
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{at_source}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td><td><code>{}</code></td></tr>",
            entity(s.entity_type),
            esc(&s.external_id),
            esc(&s.display_name),
            match s.active {
                Some(true) => "yes",
                Some(false) => "no",
                None => "-",
            },
            s.memberships.len(),
            time(s.last_observed_at_us),
            esc(&s.last_observed_run_id),
        );
    }
    h.push_str("</table>\n");
    if pop.len() > POPULATION_ROWS_MAX {
        let _ = writeln!(
            h,
            "<p>{} more identities are in the bundle (the page lists the first {POPULATION_ROWS_MAX} in key order).</p>",
            pop.len() - POPULATION_ROWS_MAX
        );
    }
}

fn source_actions<'w>(w: &'w Working, src: &str) -> Vec<&'w ActionState> {
    let mut a: Vec<&ActionState> = w.actions.values().filter(|a| a.source_id == src).collect();
    a.sort_by_key(|a| (a.first_seq, a.action_id.clone()));
    a
}

fn actions(h: &mut String, w: &Working, src: &str) {
    let list = source_actions(w, src);
    let _ = write!(
        h,
        "<h2>Actions in the period (<span data-k=\"actions\">{}</span>)</h2><table><tr><th>Action</th><th>Kind</th><th>Identity</th><th>Requested</th><th>Outcome</th><th>Read-back evidence</th></tr>",
        list.len()
    );
    for a in list {
        let r = a.request.clone().unwrap_or_default();
        let evidence = if a.verified {
            format!(
                "read back: {}{}",
                if a.in_effect {
                    "in effect"
                } else if a.target_absent {
                    "target absent"
                } else {
                    "not in effect"
                },
                if a.concluded_seq > 0 {
                    format!(" (sequence {})", a.concluded_seq)
                } else {
                    String::new()
                }
            )
        } else if a.read_back_unknown {
            "read-back unknown".into()
        } else {
            "not read back".into()
        };
        let _ = write!(
            h,
            "<tr><td><code>{}</code></td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}{}</td></tr>",
            esc(&a.action_id),
            ActionKind::try_from(r.kind)
                .map_or("?", |k| k.as_str_name().trim_start_matches("ACTION_KIND_")),
            esc(&r.identity_external_id),
            time(a.requested_at_us),
            outcome(a.outcome),
            evidence,
            if a.outcome_detail.is_empty() {
                String::new()
            } else {
                format!(" — {}", esc(&a.outcome_detail))
            },
        );
    }
    h.push_str("</table>\n");
}

fn exceptions(h: &mut String, w: &Working, src: &str, runs: &[&RunState]) {
    let mut open = Vec::new();
    if let Some(last) = runs
        .iter()
        .rev()
        .find(|r| r.decided)
        .filter(|r| r.verdict != Verdict::Complete as i32)
    {
        open.push(format!(
            "the last decided run <code>{}</code> is {}: {}",
            esc(&last.run_id),
            verdict(last.verdict),
            last.reasons
                .iter()
                .map(|x| esc(&x.message))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    for a in source_actions(w, src) {
        let o = ActionOutcome::try_from(a.outcome).unwrap_or(ActionOutcome::Unspecified);
        if o != ActionOutcome::Confirmed {
            open.push(format!(
                "action <code>{}</code> on <code>{}</code>: {}",
                esc(&a.action_id),
                esc(&a
                    .request
                    .as_ref()
                    .map(|r| r.identity_external_id.clone())
                    .unwrap_or_default()),
                outcome(a.outcome)
            ));
        }
    }
    let _ = write!(
        h,
        "<h2>Open exceptions (<span data-k=\"exceptions\">{}</span>)</h2>",
        open.len()
    );
    if open.is_empty() {
        h.push_str("<p class=\"ok\">None.</p>\n");
    } else {
        h.push_str("<ul>");
        for o in open {
            let _ = write!(h, "<li class=\"bad\">{o}</li>");
        }
        h.push_str("</ul>\n");
    }
}

fn evidence(h: &mut String, i: &ReportInput<'_>) {
    use prost::Message as _;
    let anchor = i
        .bundle
        .checkpoints
        .last()
        .and_then(|c| unhex(c))
        .and_then(|b| Checkpoint::decode(b.as_slice()).ok())
        .unwrap_or_default();
    let f = "&lt;bundle file&gt;";
    let _ = write!(
        h,
        "<h2>Checkpoint and proofs</h2><p>Anchor checkpoint: tree size <b data-k=\"anchor_size\">{}</b>, root <code class=\"wrap\">{}</code>; \
         {} signed checkpoint(s) back to before the source's first event, each proven consistent with the next.</p>\
         <pre>{}</pre><p>Checks that held:</p><ul>",
        anchor.tree_size,
        esc(&anchor.root),
        i.bundle.checkpoints.len(),
        esc(&anchor.note),
    );
    for c in &i.verification.checked {
        let _ = write!(h, "<li>{}</li>", esc(c));
    }
    let _ = writeln!(
        h,
        "</ul><p>Verify it yourself — with govledger (pin the ledger's key, published by its operator):</p>\
         <pre>govledger verify-bundle {f} --public-key {}</pre>\
         <p>and with Go's golang.org/x/mod/sumdb/note and sumdb/tlog, a tool we did not write \
         (the repository's tests/go/c2sp_check.go):</p><pre>c2sp_check bundle '{}' {f}</pre>",
        esc(&i.verification.public_key),
        esc(i.verifier_key),
    );
}

/// The status page's escaping, with control characters (but line breaks and
/// tabs) shown as U+FFFD.
fn esc(s: &str) -> String {
    let shown: String = s
        .chars()
        .map(|c| match c {
            '\n' | '\t' => c,
            c if c.is_control() => '\u{fffd}',
            c => c,
        })
        .collect();
    crate::http::page::escape(&shown)
}

fn time(us: i64) -> String {
    if us == 0 {
        return "-".into();
    }
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.format("%Y-%m-%d %H:%M:%SZ").to_string())
        .unwrap_or_else(|| us.to_string())
}

fn entity(t: i32) -> String {
    EntityType::try_from(t).map_or_else(
        |_| t.to_string(),
        |t| {
            t.as_str_name()
                .trim_start_matches("ENTITY_TYPE_")
                .to_ascii_lowercase()
        },
    )
}

fn mode(m: i32) -> String {
    SyncMode::try_from(m).map_or_else(
        |_| m.to_string(),
        |m| {
            m.as_str_name()
                .trim_start_matches("SYNC_MODE_")
                .to_ascii_lowercase()
        },
    )
}

fn verdict(v: i32) -> String {
    Verdict::try_from(v).map_or_else(
        |_| v.to_string(),
        |v| v.as_str_name().trim_start_matches("VERDICT_").to_owned(),
    )
}

fn outcome(o: i32) -> String {
    match ActionOutcome::try_from(o) {
        Ok(ActionOutcome::Unspecified) => "PENDING".into(),
        Ok(o) => o
            .as_str_name()
            .trim_start_matches("ACTION_OUTCOME_")
            .to_owned(),
        Err(_) => o.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_a_source_cannot_become_markup() {
        assert_eq!(
            esc("<script>alert('x')</script>&\"\u{7}\n"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;\u{fffd}\n"
        );
    }

    #[test]
    fn a_bundle_that_is_not_a_verified_whole_source_one_makes_no_report() {
        let w = Working::default();
        let mut b = Bundle::default();
        let verified = BundleReport {
            ok: true,
            verdict: BundleVerdict::Verified,
            ..Default::default()
        };
        let input = |b: &Bundle, v: &BundleReport| {
            render(&ReportInput {
                bundle: b,
                verification: v,
                folded: &w,
                verifier_key: "",
            })
            .map(|_| ())
        };
        b.scope.external_id = "u1".into();
        assert!(matches!(
            input(&b, &verified),
            Err(ReportError::NotASourceBundle(_))
        ));
        b.scope.external_id.clear();
        b.state.source = Some(String::new());
        b.scope.from_us = 5;
        assert!(matches!(
            input(&b, &verified),
            Err(ReportError::NotASourceBundle(_))
        ));
        b.scope.from_us = 0;
        let tampered = BundleReport {
            problem: "the manifest signature does not match".into(),
            ..Default::default()
        };
        assert!(matches!(
            input(&b, &tampered),
            Err(ReportError::NotVerified(_))
        ));
        let page = render(&ReportInput {
            bundle: &b,
            verification: &verified,
            folded: &w,
            verifier_key: "k",
        })
        .unwrap();
        assert!(page.contains("NOT COMPLETE") && page.contains("data-k=\"present\">0<"));
    }
}
