//! `govledger serve`'s threads and their CPU priorities, read from
//! `/proc/<pid>/task` of a real serve process: the API's threads at the
//! process's priority, the background (projector, syncs, actions) lowered by
//! `api.background_nice`, and the sled writer (which holds the store's lock
//! every read waits on) never lowered, so it cannot be preempted into
//! keeping reads waiting.

#![cfg(target_os = "linux")]

use std::collections::BTreeMap;

use govledger_testkit::{
    Govledger, NatsServer, fault_scim::FaultScim, govledger::scim_source_toml,
};

/// Each thread name (as the kernel keeps it: 15 bytes) → the nice values seen.
fn thread_nices(pid: u32) -> BTreeMap<String, Vec<i64>> {
    let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let (Ok(comm), Ok(stat)) = (
            std::fs::read_to_string(dir.join("comm")),
            std::fs::read_to_string(dir.join("stat")),
        ) else {
            continue; // the thread ended meanwhile
        };
        // Fields after the ")" that closes the name: state is field 3, nice field 19.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let nice: i64 = after.split(' ').nth(16).unwrap().parse().unwrap();
        out.entry(comm.trim().to_owned()).or_default().push(nice);
    }
    out
}

async fn serve_and_sync(
    extra_toml: &str,
) -> (
    NatsServer,
    FaultScim,
    Govledger,
    BTreeMap<String, Vec<i64>>,
    i64,
) {
    let nats = NatsServer::start().await;
    let scim = FaultScim::start(50).await;
    let toml = format!("{extra_toml}{}", scim_source_toml(&scim.base_url, ""));
    let gl = Govledger::serve_with_config(&nats.url(), &toml);
    // A sync folds and commits: every role has run at least once.
    gl.sync("hr").await;
    let pid = gl.pid().unwrap();
    let process_nice: i64 = {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        stat[stat.rfind(')').unwrap() + 2..]
            .split(' ')
            .nth(16)
            .unwrap()
            .parse()
            .unwrap()
    };
    let nices = thread_nices(pid);
    (nats, scim, gl, nices, process_nice)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_runs_lowered_and_the_api_and_the_sled_writer_do_not() {
    let (_nats, _scim, _gl, nices, base) = serve_and_sync("").await;
    let lowered = (base + 10).min(19);
    let bg = nices.get("govledger-bg").expect("background threads");
    assert!(
        bg.iter().all(|n| *n == lowered),
        "background threads: {bg:?}, want {lowered}: {nices:?}"
    );
    let writer = nices
        .get("govledger-sled-")
        .expect("the sled writer thread");
    assert_eq!(writer, &vec![base], "{nices:?}");
    let api = nices
        .get("tokio-rt-worker")
        .expect("the API's runtime threads");
    assert!(
        api.iter().all(|n| *n == base),
        "API threads: {api:?}: {nices:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_nice_zero_keeps_every_thread_at_the_process_priority() {
    let (_nats, _scim, _gl, nices, base) = serve_and_sync("[api]\nbackground_nice = 0\n").await;
    for (name, ns) in &nices {
        assert!(
            ns.iter().all(|n| *n == base),
            "{name}: {ns:?} (process {base})"
        );
    }
}
