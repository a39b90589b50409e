//! A step's outcome, decided from its write's answer and the read-backs of
//! its verification window alone (pure): CONFIRMED, UNCONFIRMED, FAILED,
//! UNVERIFIABLE or UNVERIFIED (see the executor's doc for what each means),
//! and the severity order that makes an action's outcome its worst step's.

use govledger_proto::v1::ActionOutcome;

use super::{Shown, Step, Window};

/// What to do about an uncorroborated 404, for reason texts.
const UNCORROBORATED_WAY_OUT: &str = "a later sync that shows it confirms it; check the source's base_url \
     (a misrouted path answers 404 to everything), or submit the action again with absent_is_proof \
     if the target's 404 is proof enough";

/// The outcome of a step whose write the target accepted (`status`, 0 =
/// not ours: an external write or a restart): CONFIRMED only on a read-back
/// showing the intent; UNCONFIRMED when the read-backs show no change;
/// UNVERIFIABLE when the target cannot show it; UNVERIFIED when it could not
/// be read back at all. Pure.
pub fn after_success(step: &Step, status: u16, w: &Window) -> (ActionOutcome, String) {
    let label = step.label();
    let answered = if status == 0 {
        String::new()
    } else {
        format!("the target answered HTTP {status} but ")
    };
    match &w.last {
        Some(rb) if rb.shown == Shown::InEffect => (
            ActionOutcome::Confirmed,
            format!("{label}: confirmed by read-back ({})", rb.observed),
        ),
        Some(rb) if rb.shown == Shown::Unknown => (
            ActionOutcome::Unverifiable,
            format!(
                "{label}: {answered}no read-back can show whether it is in effect: {}; check it on the target by other means",
                rb.observed
            ),
        ),
        Some(rb) if rb.shown == Shown::Uncorroborated => (
            ActionOutcome::Unverified,
            format!(
                "{label}: {answered}nothing shows whether it is in effect: {}; {UNCORROBORATED_WAY_OUT}",
                rb.observed
            ),
        ),
        Some(rb) => (
            ActionOutcome::Unconfirmed,
            format!(
                "{label}: {answered}the read-back shows no change ({}) after {}",
                rb.observed,
                w.span()
            ),
        ),
        None => (
            ActionOutcome::Unverified,
            format!(
                "{label}: {answered}the target could not be read back ({}); a later sync that shows it confirms it",
                w.span()
            ),
        ),
    }
}

/// The outcome of a step whose write attempts all failed (`message`, the
/// last failure): FAILED only when the last answered read-back showed the
/// intent not in effect; UNVERIFIABLE when the target cannot show it;
/// UNVERIFIED when it could not be read back at all. Pure.
pub fn after_failure(
    step: &Step,
    message: &str,
    attempts: u32,
    w: &Window,
) -> (ActionOutcome, String) {
    let label = step.label();
    let tries = if attempts == 1 {
        "1 attempt".to_owned()
    } else {
        format!("{attempts} attempts")
    };
    match &w.last {
        Some(rb) if rb.shown == Shown::InEffect => (
            ActionOutcome::Confirmed,
            format!(
                "{label}: confirmed by read-back after {message} ({})",
                rb.observed
            ),
        ),
        Some(rb) if rb.shown == Shown::Uncorroborated => (
            ActionOutcome::Unverified,
            format!(
                "{label}: {message} after {tries}; nothing shows whether it is in effect: {}; {UNCORROBORATED_WAY_OUT}",
                rb.observed
            ),
        ),
        Some(rb) if rb.shown == Shown::NotInEffect => (
            ActionOutcome::Failed,
            format!(
                "{label}: {message} after {tries}; read-back: {}",
                rb.observed
            ),
        ),
        Some(rb) => (
            ActionOutcome::Unverifiable,
            format!(
                "{label}: {message} after {tries}; no read-back can show whether it is in effect: {}; check it on the target by other means",
                rb.observed
            ),
        ),
        None => (
            ActionOutcome::Unverified,
            format!(
                "{label}: {message} after {tries}; no read-back showed whether it is in effect (the target could not be read back, {})",
                w.span()
            ),
        ),
    }
}

/// How much an outcome weighs when an action takes its worst step's: what
/// an auditor must look at first comes last (see the module doc).
pub fn severity(o: ActionOutcome) -> u8 {
    match o {
        ActionOutcome::Confirmed => 0,
        ActionOutcome::Unverifiable => 1,
        ActionOutcome::Unverified => 2,
        ActionOutcome::Unconfirmed => 3,
        ActionOutcome::Failed => 4,
        _ => 5,
    }
}

#[cfg(test)]
mod tests {
    use govledger_proto::v1::ActionKind;

    use super::*;
    use crate::actions::{ReadBack, readback::tests::step};

    fn window(shown: Option<(Shown, &str)>) -> Window {
        Window {
            last: shown.map(|(shown, observed)| ReadBack {
                shown,
                absent: false,
                http_status: 200,
                observed: observed.into(),
            }),
            reads: 3,
            unanswered: 0,
            elapsed_ms: 700,
        }
    }

    #[test]
    fn failed_only_when_a_read_back_showed_it_not_in_effect() {
        let s = step(ActionKind::Deactivate);
        let f = |w| after_failure(&s, "HTTP 503", 3, &w);
        assert_eq!(
            f(window(Some((Shown::NotInEffect, "active=true")))).0,
            ActionOutcome::Failed
        );
        assert_eq!(
            f(window(Some((Shown::InEffect, "active=false")))).0,
            ActionOutcome::Confirmed
        );
        // The target never answered: nothing is known, never FAILED.
        let (o, d) = f(Window {
            unanswered: 3,
            ..window(None)
        });
        assert_eq!(o, ActionOutcome::Unverified, "{d}");
        assert!(
            d.contains("HTTP 503 after 3 attempts; no read-back showed whether it is in effect (the target could not be read back, 3 read-back(s) over 700 ms, none answered)"),
            "{d}"
        );
        // It answered, but cannot show it.
        let (o, d) = f(window(Some((Shown::Unknown, "no members"))));
        assert_eq!(o, ActionOutcome::Unverifiable, "{d}");
        assert!(
            d.contains("no read-back can show whether it is in effect: no members"),
            "{d}"
        );
        // An earlier read-back showed it not in effect, later ones went
        // unanswered: the last answer stands.
        let (o, d) = f(Window {
            unanswered: 2,
            ..window(Some((Shown::NotInEffect, "active=true")))
        });
        assert_eq!(o, ActionOutcome::Failed, "{d}");
    }

    #[test]
    fn an_uncorroborated_404_is_unverified_with_its_reason() {
        let s = step(ActionKind::Delete);
        let w = window(Some((Shown::Uncorroborated, "no listing agrees")));
        let (o, d) = after_success(&s, 204, &w);
        assert_eq!(o, ActionOutcome::Unverified, "{d}");
        assert!(
            d.contains("nothing shows whether it is in effect: no listing agrees")
                && d.contains("absent_is_proof"),
            "{d}"
        );
        let (o, d) = after_failure(&s, "HTTP 404", 1, &w);
        assert_eq!(o, ActionOutcome::Unverified, "{d}");
        assert!(d.contains("HTTP 404 after 1 attempt; nothing shows"), "{d}");
    }

    #[test]
    fn the_worst_step_is_the_one_an_auditor_must_see_first() {
        use ActionOutcome::*;
        let order = [Confirmed, Unverifiable, Unverified, Unconfirmed, Failed];
        for pair in order.windows(2) {
            assert!(severity(pair[0]) < severity(pair[1]), "{pair:?}");
        }
    }

    #[test]
    fn success_is_confirmed_only_by_a_read_back_showing_it() {
        let s = step(ActionKind::RemoveMembership);
        let (o, d) = after_success(&s, 204, &window(Some((Shown::Unknown, "no members"))));
        assert_eq!(o, ActionOutcome::Unverifiable);
        assert!(
            d.contains("no read-back can show whether it is in effect"),
            "{d}"
        );
        let (o, d) = after_success(&s, 204, &window(Some((Shown::NotInEffect, "a member"))));
        assert_eq!(o, ActionOutcome::Unconfirmed);
        assert!(
            d.contains("HTTP 204 but the read-back shows no change (a member) after 3 read-back(s) over 700 ms"),
            "{d}"
        );
        let (o, _) = after_success(&s, 0, &window(Some((Shown::InEffect, "not a member"))));
        assert_eq!(o, ActionOutcome::Confirmed);
        let (o, d) = after_success(&s, 0, &window(None));
        assert_eq!(o, ActionOutcome::Unverified);
        assert!(d.contains("could not be read back"), "{d}");
    }
}
