//! The review tool's side of the API, as a certification tool would run it:
//! `examples/python/review_gate.py` (Python, stubs generated from our .proto
//! files by grpcio-tools; not govledger's code) against a live govledger.
//! A clean ledger lets the review close; an unconfirmed deprovisioning
//! blocks it, and the tool prints the blocker, the action, and the identity
//! as it stood at the review's cut-off.

use std::path::Path;

use govledger_proto::v1::{ActionKind, ActionOutcome, Verdict};
use govledger_testkit::{
    fault_scim::Faults,
    govledger::{Govledger, action_request, serve_fault_scim},
};

/// Runs the example; (exit code, stdout).
fn review(gl: &Govledger, extra: &[&str]) -> (i32, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(root.join(".tools/venv/bin/python"))
        .arg(root.join("examples/python/review_gate.py"))
        .args(["--addr", &gl.addr, "--token-file", &gl.token_path()])
        .arg("--proto-dir")
        .arg(root.join("proto"))
        .args(extra)
        .output()
        .expect("the tools' python (scripts/install-tools.sh)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let code = out.status.code().unwrap_or(-1);
    assert!(
        code == 0 || code == 3,
        "review_gate.py failed ({code}):\n{stdout}\n{stderr}"
    );
    (code, stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_review_client_gates_a_review_on_the_ledger() {
    let (_nats, scim, gl) = serve_fault_scim(10, 2, "").await;
    let (code, out) = review(&gl, &["--source", "hr"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("READY"), "{out}");

    // The review's cut-off, then a leaver whose deactivation the target
    // answers 204 to and never applies: UNCONFIRMED.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let cutoff = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let leaver = scim.user_ids()[3].clone();
    scim.set_faults(Faults {
        write_noop: true,
        ..Default::default()
    });
    let a = gl
        .act(
            "hr",
            action_request(ActionKind::Deactivate, &leaver, "", "rv-1", "REV-1"),
        )
        .await;
    assert_eq!(
        a.outcome,
        ActionOutcome::Unconfirmed as i32,
        "{}",
        a.outcome_detail
    );
    let action_id = a.action.unwrap().action_id;

    let (code, out) = review(
        &gl,
        &["--source", "hr", "--identity", &leaver, "--cutoff", &cutoff],
    );
    assert_eq!(code, 3, "{out}");
    assert!(out.starts_with("NOT READY"), "{out}");
    assert!(out.contains("blocker hr ACTION_UNCONFIRMED"), "{out}");
    assert!(
        out.contains(&format!("unconfirmed action hr {action_id}: UNCONFIRMED")),
        "{out}"
    );
    assert!(
        out.contains(&format!("identity hr/{leaver} as of seq")),
        "{out}"
    );
    assert!(out.contains(": active"), "{out}");
    // The ledger's own view agrees.
    let run = gl.sync("hr").await;
    assert_eq!(run.verdict, Verdict::Complete as i32);
}
