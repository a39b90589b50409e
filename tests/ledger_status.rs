//! GetLedgerStatus's stream position (`api::stream_state`): callers at the
//! same moment share one JetStream reading, and no caller is ever answered
//! with a reading older than its call (the stream is never reported behind
//! the projection beside it). Real nats-server.

use std::time::Instant;

use futures::StreamExt as _;
use govledger::api::stream_state::StreamState;
use govledger_testkit::NatsServer;

const STREAM: &str = "STATUS_T";

async fn stream_with(
    n: usize,
) -> (
    NatsServer,
    async_nats::Client,
    async_nats::jetstream::Context,
) {
    let nats = NatsServer::start().await;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    js.create_stream(async_nats::jetstream::stream::Config {
        name: STREAM.into(),
        subjects: vec!["status.t".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    for i in 0..n {
        js.publish("status.t", format!("{i}").into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    (nats, client, js)
}

/// `n` callers asking at once, each with the moment of its own call.
async fn at_once(
    state: &std::sync::Arc<StreamState>,
    n: usize,
) -> Vec<Result<govledger::api::stream_state::Position, String>> {
    let calls: Vec<_> = (0..n)
        .map(|_| {
            let state = state.clone();
            tokio::spawn(async move { state.position(Instant::now()).await })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for c in calls {
        out.push(c.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_callers_at_once_share_a_few_readings() {
    let (_nats, client, js) = stream_with(5).await;
    // Every STREAM.INFO request crosses this subject: count them.
    let mut asked = client
        .subscribe(format!("$JS.API.STREAM.INFO.{STREAM}"))
        .await
        .unwrap();
    client.flush().await.unwrap();
    let state = std::sync::Arc::new(StreamState::new(js, STREAM.into()));
    for p in at_once(&state, 50).await {
        let p = p.unwrap();
        assert_eq!((p.last_seq, p.messages), (5, 5));
    }
    let mut requests = 0;
    while tokio::time::timeout(std::time::Duration::from_millis(300), asked.next())
        .await
        .is_ok()
    {
        requests += 1;
    }
    assert!(
        (1..=10).contains(&requests),
        "50 concurrent callers made {requests} STREAM.INFO requests (one per call would be 50)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reading_is_never_older_than_the_call() {
    let (_nats, _client, js) = stream_with(3).await;
    let state = StreamState::new(js.clone(), STREAM.into());
    assert_eq!(state.position(Instant::now()).await.unwrap().last_seq, 3);
    for expect in 4..=8 {
        js.publish("status.t", "x".into())
            .await
            .unwrap()
            .await
            .unwrap();
        // Published before this call: the answer must include it.
        let p = state.position(Instant::now()).await.unwrap();
        assert_eq!(
            p.last_seq, expect,
            "a reading from before the call was reused"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_stream_is_an_error_for_every_waiting_caller() {
    let (_nats, _client, js) = stream_with(1).await;
    let state = std::sync::Arc::new(StreamState::new(js, "NO_SUCH_STREAM".into()));
    for r in at_once(&state, 10).await {
        let e = r.unwrap_err();
        assert!(e.contains("not found"), "{e}");
    }
}
