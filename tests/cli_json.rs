//! `--json` on every read command, against the real binary and a real
//! ledger: each prints one JSON document that parses and carries the same
//! facts as its table, with the same exit code; the table is plain when
//! piped (no colour codes), and GOVLEDGER_GRPC_ADDR stands in for
//! --grpc-addr.

use govledger_proto::v1::{ActionKind, ActionOutcome};
use govledger_testkit::govledger::{action_request, run_govledger_out, serve_fault_scim};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_read_command_prints_json_with_the_tables_facts() {
    let (_nats, scim, gl) = serve_fault_scim(10, 2, "").await;
    let run = gl.sync("hr").await.run.unwrap();
    let user = scim.user_ids()[1].clone();
    let action = gl
        .act(
            "hr",
            action_request(ActionKind::Deactivate, &user, "", "j-1", "T-1"),
        )
        .await;
    assert_eq!(action.outcome, ActionOutcome::Confirmed as i32);
    let action_id = action.action.unwrap().action_id;
    let (k, v) = gl.token_env();
    let env = [(k, v.as_str()), ("GOVLEDGER_GRPC_ADDR", gl.addr.as_str())];
    // (command, JSON pointer, the value there, the same fact's words in the table)
    let cases: Vec<(Vec<&str>, &str, Value, &str)> = vec![
        (vec!["status"], "/sources/0/sourceId", "hr".into(), "hr"),
        (
            vec!["status"],
            "/sources/0/freshness",
            "FRESHNESS_FRESH".into(),
            "FRESH",
        ),
        (
            vec!["runs", "hr"],
            "/runs/0/runId",
            run.run_id.clone().into(),
            &run.run_id,
        ),
        (
            vec!["runs", "hr"],
            "/runs/0/verdict",
            "VERDICT_COMPLETE".into(),
            "COMPLETE",
        ),
        (
            vec!["run", &run.run_id],
            "/verdict",
            "VERDICT_COMPLETE".into(),
            "COMPLETE",
        ),
        (vec!["source", "hr"], "/status/sourceId", "hr".into(), "hr"),
        (
            vec!["identity", "hr", &user],
            "/identity/externalId",
            user.clone().into(),
            &user,
        ),
        (
            vec!["actions", "hr"],
            "/actions/0/outcome",
            "ACTION_OUTCOME_CONFIRMED".into(),
            "CONFIRMED",
        ),
        (
            vec!["action", &action_id],
            "/action/actionId",
            action_id.clone().into(),
            &action_id,
        ),
        (
            vec!["action", &action_id],
            "/outcome",
            "ACTION_OUTCOME_CONFIRMED".into(),
            "CONFIRMED",
        ),
        (vec!["readiness"], "/ready", true.into(), "ready"),
        (
            vec!["ledger"],
            "/streamName",
            "GOVLEDGER".into(),
            "GOVLEDGER",
        ),
        (vec!["poison"], "", serde_json::json!({}), "no poison"),
    ];
    for (cmd, pointer, want, words) in cases {
        let (status, table, err) = run_govledger_out(&cmd, &env);
        assert!(status.success(), "{cmd:?}: {err}");
        assert!(
            !table.contains('\u{1b}'),
            "{cmd:?}: colour codes when piped:\n{table}"
        );
        assert!(
            table.to_lowercase().contains(&words.to_lowercase()),
            "{cmd:?}: the table does not say {words:?}:\n{table}"
        );
        let mut json_cmd = cmd.clone();
        json_cmd.push("--json");
        let (status, out, err) = run_govledger_out(&json_cmd, &env);
        assert!(status.success(), "{json_cmd:?}: {err}");
        assert_eq!(out.lines().count(), 1, "{json_cmd:?}: one document:\n{out}");
        let doc: Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("{json_cmd:?}: not JSON ({e}):\n{out}"));
        let got = doc
            .pointer(pointer)
            .unwrap_or_else(|| panic!("{json_cmd:?}: no {pointer} in {doc}"));
        assert_eq!(got, &want, "{json_cmd:?} {pointer}");
    }
    // A negative answer keeps its exit code with --json.
    let (status, out, _) = run_govledger_out(&["readiness", "nosuch", "--json"], &env);
    assert_eq!(status.code(), Some(3), "{out}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        doc["ready"],
        Value::Null,
        "ready=false is the JSON default (omitted): {doc}"
    );
    assert_eq!(doc["blockers"][0]["code"], "UNKNOWN_SOURCE");
}
