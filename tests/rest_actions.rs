//! A REST source that can write: `[sources.rest.actions]` templates for
//! deactivate (PATCH `{"active": false}`, read back at `/active`) and remove
//! member (DELETE of a membership resource, read back as a 404), against the
//! fault-injecting server's REST API: CONFIRMED by read-back; a server that
//! answers 204 and changes nothing (W1) UNCONFIRMED; a kind without a
//! template refused before anything is recorded.

use govledger_proto::v1::{ActionKind, ActionOutcome, ActionRequested, EntityType, Verdict};
use govledger_testkit::{
    Govledger, NatsServer,
    fault_scim::{FaultScim, Faults, ScimConfig},
    runs::assert_verdict,
};

fn config(api: &str) -> String {
    format!(
        r#"
[[sources]]
id = "app"
kind = "rest"
base_url = "{api}"
paging = "page-number"
page_size = 50
verify_window_ms = 300

[sources.rest]
path = "users"
items_pointer = "/users"
total_pointer = "/total"
active_field = "active"

[sources.rest.actions.deactivate]
method = "PATCH"
path = "users/{{user}}"
body = '{{"active": false}}'
verify_pointer = "/active"
verify_equals = false

[sources.rest.actions.remove_member]
method = "DELETE"
path = "groups/{{group}}/members/{{user}}"
verify_absent = true
"#
    )
}

fn action(kind: ActionKind, user: &str, group: &str, key: &str) -> ActionRequested {
    ActionRequested {
        kind: kind as i32,
        entity_type: EntityType::User as i32,
        identity_external_id: user.into(),
        group_external_id: group.into(),
        requested_by: "test".into(),
        reason: "leaver".into(),
        ticket: "T-9".into(),
        idempotency_key: key.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_templates_write_and_prove_by_read_back() {
    let nats = NatsServer::start().await;
    let scim = FaultScim::start_with(ScimConfig {
        users: 120,
        groups: 4,
        ..Default::default()
    })
    .await;
    let api = scim.base_url.trim_end_matches("/v2").to_owned() + "/api";
    let gl = Govledger::serve_with_config(&nats.url(), &config(&api));
    assert_verdict(&gl.sync("app").await, Verdict::Complete);

    let a = gl
        .act("app", action(ActionKind::Deactivate, "u0000001", "", "d1"))
        .await;
    assert_eq!(a.outcome, ActionOutcome::Confirmed as i32, "{a:?}");
    assert!(
        a.outcome_detail.contains("/active=false"),
        "{}",
        a.outcome_detail
    );
    assert_eq!(scim.user_state("u0000001").map(|s| s.0), Some(false));

    // g0000000 holds u0000000..u0000002.
    assert!(
        scim.group_members("g0000000")
            .contains(&"u0000002".to_owned())
    );
    let a = gl
        .act(
            "app",
            action(ActionKind::RemoveMembership, "u0000002", "g0000000", "r1"),
        )
        .await;
    assert_eq!(a.outcome, ActionOutcome::Confirmed as i32, "{a:?}");
    assert!(
        !scim
            .group_members("g0000000")
            .contains(&"u0000002".to_owned())
    );

    // W1: the server answers 204 and changes nothing.
    scim.set_faults(Faults {
        write_noop: true,
        ..Default::default()
    });
    let a = gl
        .act("app", action(ActionKind::Deactivate, "u0000005", "", "d2"))
        .await;
    assert_eq!(a.outcome, ActionOutcome::Unconfirmed as i32, "{a:?}");
    assert!(
        a.outcome_detail.contains("/active=true"),
        "{}",
        a.outcome_detail
    );
    let a = gl
        .act(
            "app",
            action(ActionKind::RemoveMembership, "u0000003", "g0000001", "r2"),
        )
        .await;
    assert_eq!(a.outcome, ActionOutcome::Unconfirmed as i32, "{a:?}");
    assert_eq!(scim.user_state("u0000005").map(|s| s.0), Some(true));

    // A kind the source has no template for is refused before anything is recorded.
    let e = gl
        .client()
        .await
        .submit_action(govledger_proto::v1::SubmitActionRequest {
            source_id: "app".into(),
            request: Some(action(ActionKind::Delete, "u0000006", "", "x1")),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert!(
        e.message().contains("[sources.rest.actions.delete]")
            && e.message().contains("deactivate, remove_member"),
        "{}",
        e.message()
    );
}
