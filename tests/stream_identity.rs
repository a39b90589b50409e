//! The projection knows which stream it folded (issue 22, item 1): a stream
//! deleted and created again is refused at start and stops a running `serve`,
//! instead of being folded silently on top of the old projection (before: the
//! new stream's sequences 1..N were never projected and nothing warned).

use std::time::Duration;

use govledger_proto::v1 as pb;
use govledger_testkit::{
    Govledger, NatsServer, ensure_stream, govledger::serve_fault_scim, run_govledger,
    runs::assert_verdict,
};

async fn delete_stream(nats: &NatsServer) {
    let js = async_nats::jetstream::new(nats.client().await);
    js.delete_stream("GOVLEDGER").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_stream_is_refused_at_start_until_the_projection_is_rebuilt() {
    let (nats, _scim, mut gl) = serve_fault_scim(5, 0, "").await;
    gl.stop();
    let data = gl.take_data();
    delete_stream(&nats).await;

    // A restart finds (and creates) another stream: refused, naming what to do.
    let cfg = data.path().join("govledger.toml");
    let data_dir = data.path().join("data");
    let args = [
        "serve",
        "--config",
        cfg.to_str().unwrap(),
        "--nats-url",
        &nats.url(),
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--grpc-addr",
        "127.0.0.1:0",
    ];
    let (status, err) = run_govledger(&args, &[]);
    assert!(!status.success(), "{err}");
    assert!(
        err.contains("was deleted and created again") && err.contains("delete the sled folder"),
        "{err}"
    );
    // `project` refuses it too.
    let (status, err) = run_govledger(
        &[
            "project",
            "--exit-at-end",
            "--config",
            cfg.to_str().unwrap(),
            "--nats-url",
            &nats.url(),
            "--data-dir",
            data_dir.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!status.success() && err.contains("created again"), "{err}");

    // Rebuilding the projection from this stream is the way out.
    std::fs::remove_dir_all(data_dir.join("sled")).unwrap();
    let gl = Govledger::serve_in(data, &nats.url(), &["--config", cfg.to_str().unwrap()]);
    assert_verdict(&gl.sync("hr").await, pb::Verdict::Complete);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_replaced_under_a_running_serve_stops_it() {
    let (nats, _scim, mut gl) = serve_fault_scim(5, 0, "").await;
    delete_stream(&nats).await;
    ensure_stream(&nats.client().await).await;
    let st = gl
        .wait_exit(Duration::from_secs(30))
        .expect("serve kept running on a replaced stream");
    let log = gl.log_text();
    assert!(!st.success(), "{st:?}\n{log}");
    assert!(log.contains("was deleted and created again"), "{log}");
}
