//! The commands about lifecycle actions: `act`, `actions`, `action`.

use std::time::Duration;

use govledger_proto::v1::{
    ActionKind, ActionOutcome, ActionRequested, GetActionRequest, GetActionResponse,
    ListActionsRequest, SubmitActionRequest,
};

use super::{
    args::{ActArgs, ActionArgs, ActionsArgs},
    client::{NotOk, as_of_arg, connect, status_err},
    output,
};

/// How long `act` follows an action before it gives up.
const FOLLOW_TIMEOUT_MS: u64 = 300_000;
/// How often `act` asks whether its action is concluded.
const FOLLOW_POLL_MS: u64 = 100;

/// `govledger act`: submits an action and follows it (exit 3 unless CONFIRMED).
pub async fn act(a: ActArgs) -> anyhow::Result<()> {
    let kind: ActionKind = a.kind.into();
    let mut c = connect(&a.client).await?;
    let deadline_us = if a.deadline_s == 0 {
        0
    } else {
        chrono::Utc::now().timestamp_micros() + (a.deadline_s as i64) * 1_000_000
    };
    let r = c
        .submit_action(SubmitActionRequest {
            source_id: a.source,
            request: Some(ActionRequested {
                kind: kind as i32,
                identity_external_id: a.identity,
                group_external_id: a.group.unwrap_or_default(),
                attribute: a.attribute.unwrap_or_default(),
                value: a.value.unwrap_or_default(),
                // The ledger records the authenticated principal (the token's).
                requested_by: String::new(),
                reason: a.reason,
                ticket: a.ticket,
                deadline_us,
                idempotency_key: a
                    .idempotency_key
                    .unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
                absent_is_proof: a.absent_is_proof,
                ..Default::default()
            }),
        })
        .await
        .map_err(status_err)?
        .into_inner();
    println!(
        "action {} {}",
        r.action_id,
        if r.created {
            "submitted"
        } else {
            "already existed (same idempotency key)"
        }
    );
    // Followed at the sequence of its request: behind a load balancer, any
    // node answers it (read-your-writes).
    let action = follow_action(&mut c, &r.action_id, r.seq).await?;
    print!("{}", output::action_detail(&action));
    if action.outcome != ActionOutcome::Confirmed as i32 {
        return Err(NotOk.into());
    }
    Ok(())
}

/// Polls an action until it is no longer PENDING.
async fn follow_action(
    c: &mut crate::cli::client::Client,
    action_id: &str,
    seq: u64,
) -> anyhow::Result<GetActionResponse> {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(FOLLOW_TIMEOUT_MS);
    loop {
        match c
            .get_action(crate::cli::client::at_least(
                GetActionRequest {
                    action_id: action_id.to_owned(),
                    as_of: None,
                },
                seq,
            ))
            .await
        {
            Ok(a) if a.get_ref().outcome != ActionOutcome::Pending as i32 => {
                return Ok(a.into_inner());
            }
            Ok(_) => {}
            // Not folded here yet (a node behind: it said how far).
            Err(s) if s.code() == tonic::Code::NotFound => {}
            Err(s) if seq > 0 && s.code() == tonic::Code::Unavailable => {}
            Err(s) => return Err(status_err(s)),
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!(
                "action {action_id} still pending; follow it with `govledger action {action_id}`"
            );
        }
        tokio::time::sleep(Duration::from_millis(FOLLOW_POLL_MS)).await;
    }
}

/// `govledger actions`: the actions of a source with their outcomes.
pub async fn actions(a: ActionsArgs) -> anyhow::Result<()> {
    let json = a.client.json;
    let mut c = connect(&a.client).await?;
    let r = c
        .list_actions(ListActionsRequest {
            source_id: a.source,
            outcome: 0,
            limit: a.limit,
        })
        .await
        .map_err(status_err)?;
    super::emit::emit(
        json,
        &r.into_inner(),
        "govledger.v1.ListActionsResponse",
        |r| output::actions_table(&r.actions),
    )?;
    Ok(())
}

/// `govledger action`: one action's outcome, steps and evidence.
pub async fn action(a: ActionArgs) -> anyhow::Result<()> {
    let json = a.client.json;
    let as_of = as_of_arg(a.as_of.as_deref())?;
    let mut c = connect(&a.client).await?;
    let r = c
        .get_action(GetActionRequest {
            action_id: a.action_id,
            as_of,
        })
        .await
        .map_err(status_err)?;
    super::emit::emit(
        json,
        &r.into_inner(),
        "govledger.v1.GetActionResponse",
        output::action_detail,
    )?;
    Ok(())
}
