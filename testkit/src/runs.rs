//! Reading the ledger's answers in tests: a run's verdict and reason codes,
//! an action's outcome, and assertions on them that print the evidence (the
//! reasons, the outcome detail) when they fail.

use govledger_proto::v1::{ActionOutcome, GetActionResponse, GetRunResponse, ReasonCode, Verdict};

/// The run's verdict (panics on a value this build does not know).
pub fn verdict(r: &GetRunResponse) -> Verdict {
    Verdict::try_from(r.verdict).unwrap_or_else(|e| panic!("verdict {}: {e}", r.verdict))
}

/// The run's reason codes, in order.
pub fn codes(r: &GetRunResponse) -> Vec<ReasonCode> {
    let code = |c: i32| ReasonCode::try_from(c).unwrap_or_else(|e| panic!("reason {c}: {e}"));
    r.reasons.iter().map(|x| code(x.code)).collect()
}

/// Asserts the run's verdict is `want`, printing its reasons otherwise.
pub fn assert_verdict(r: &GetRunResponse, want: Verdict) {
    assert_eq!(verdict(r), want, "{:?}", r.reasons);
}

/// Asserts the run's reasons include `code`, printing them otherwise.
pub fn assert_reason(r: &GetRunResponse, code: ReasonCode) {
    assert!(codes(r).contains(&code), "{:?}", r.reasons);
}

/// The action's outcome (panics on a value this build does not know).
pub fn outcome(r: &GetActionResponse) -> ActionOutcome {
    ActionOutcome::try_from(r.outcome).unwrap_or_else(|e| panic!("outcome {}: {e}", r.outcome))
}

/// Asserts the action's outcome is `want`, printing its detail otherwise.
pub fn assert_outcome(r: &GetActionResponse, want: ActionOutcome) {
    assert_eq!(outcome(r), want, "{}", r.outcome_detail);
}

/// Asserts the run's verdict is `want` and its reasons include each of
/// `reasons` (others may be there too).
pub fn assert_run(r: &GetRunResponse, want: Verdict, reasons: &[ReasonCode]) {
    assert_verdict(r, want);
    for code in reasons {
        assert_reason(r, *code);
    }
}

/// Asserts a run of 250 records in pages of 100 lost its second page for
/// good: verdict Incomplete, reasons exactly `PagesFailed` (its message
/// naming `page`, e.g. `startIndex=101`) then `CountShort` saying 100 are
/// missing.
pub fn assert_lost_second_page(r: &GetRunResponse, page: &str) {
    assert_verdict(r, Verdict::Incomplete);
    let want = vec![ReasonCode::PagesFailed, ReasonCode::CountShort];
    assert_eq!(codes(r), want);
    assert!(r.reasons[0].message.contains(page), "{:?}", r.reasons);
    let missing = "100 of 250 records missing: 150 unique observed";
    assert_eq!(r.reasons[1].message, missing);
}
