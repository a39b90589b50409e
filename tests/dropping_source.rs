//! A source whose network drops connections (issue 22, item 8's faults: "a
//! slow and a dropping source"): the SCIM server sits behind a TCP proxy
//! that resets connections part-way through an answer (in a header, a body,
//! between keep-alive answers). Syncs are COMPLETE with exact counts (the
//! engine retried what was cut) or name what they could not read — never
//! COMPLETE short; an action through it is CONFIRMED only when the server
//! shows it in effect.

use std::time::Duration;

use govledger_proto::v1::{ActionKind, ActionOutcome, Verdict};
use govledger_testkit::{
    Govledger, NatsServer,
    cut_proxy::CutProxy,
    fault_scim::{FaultScim, Faults, ScimConfig},
    govledger::{action_request, scim_source_toml},
};

const USERS: usize = 600;
const GROUPS: usize = 12;

async fn setup(
    cut_every: usize,
    cut_after_bytes: usize,
) -> (NatsServer, FaultScim, CutProxy, Govledger) {
    let nats = NatsServer::start().await;
    let scim = FaultScim::start_with(ScimConfig {
        users: USERS,
        groups: GROUPS,
        ..Default::default()
    })
    .await;
    let upstream = scim
        .base_url
        .trim_start_matches("http://")
        .trim_end_matches("/v2")
        .to_owned();
    let proxy = CutProxy::start(&upstream, cut_every, cut_after_bytes).await;
    let toml = scim_source_toml(
        &format!("{}/v2", proxy.base),
        "resources = [\"Users\", \"Groups\"]",
    );
    let gl = Govledger::serve_with_config(&nats.url(), &toml);
    (nats, scim, proxy, gl)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropping_source_is_read_completely_or_named_never_complete_short() {
    // Cut points spread over headers, bodies and keep-alive gaps.
    // (every n-th connection, cut after bytes, runs of 3 that must read
    // everything): a cut after 4 KB never lets a whole page through, so no
    // run may be COMPLETE then; the others are ridden out by retries.
    for (cut_every, cut_after, complete_min) in [(1, 60_000, 2), (2, 20_000, 2), (1, 4_000, 0)] {
        let (_nats, scim, proxy, gl) = setup(cut_every, cut_after).await;
        let mut complete = 0;
        for i in 0..3 {
            let r = gl.sync("hr").await;
            let run = r.run.clone().unwrap_or_default();
            if r.verdict == Verdict::Complete as i32 {
                complete += 1;
                assert_eq!(
                    run.records_unique,
                    (USERS + GROUPS) as u64,
                    "run {i} (cut every {cut_every} after {cut_after} B) COMPLETE with a wrong count: {:?}",
                    r.reasons
                );
            } else {
                // Not read in full: it says what is missing.
                assert!(
                    r.reasons.iter().any(|x| !x.message.is_empty()),
                    "run {i}: {r:?}"
                );
                assert!(
                    [
                        Verdict::Incomplete as i32,
                        Verdict::Suspect as i32,
                        Verdict::Failed as i32
                    ]
                    .contains(&r.verdict),
                    "run {i}: {r:?}"
                );
            }
        }
        eprintln!(
            "cut every {cut_every} after {cut_after} B: {} of {} connections cut, {complete} of 3 runs COMPLETE",
            proxy.cuts(),
            proxy.connections()
        );
        assert!(
            proxy.cuts() > 0,
            "the proxy cut nothing ({} connections)",
            proxy.connections()
        );
        assert!(
            complete >= complete_min,
            "cut every {cut_every} after {cut_after} B: {complete} of 3 COMPLETE"
        );

        if complete == 0 {
            // No run read the users: an action on one is refused (never reported).
            continue;
        }
        // A write through the same link: CONFIRMED only if it is in effect.
        scim.set_faults(Faults::default());
        let u = scim.user_ids()[cut_every].clone();
        let r = gl
            .act(
                "hr",
                action_request(
                    ActionKind::Deactivate,
                    &u,
                    "",
                    &format!("cut-{cut_after}"),
                    "T-1",
                ),
            )
            .await;
        let in_effect = scim.user_state(&u).map(|s| s.0) == Some(false);
        eprintln!(
            "  deactivate through it: {:?} (in effect: {in_effect})",
            ActionOutcome::try_from(r.outcome).unwrap_or_default()
        );
        if r.outcome == ActionOutcome::Confirmed as i32 {
            assert!(
                in_effect,
                "CONFIRMED but the user is active: {}",
                r.outcome_detail
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
