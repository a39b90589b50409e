//! The auditor's completeness report (issue 26 item 4): `govledger report`
//! against a real `serve` over a real NATS and a SCIM source, after two
//! syncs, a deactivation and a user deleted at the source. Its numbers equal the API's (GetSource, GetRun
//! of the last complete full run, ListActions); it renders in headless
//! Chromium (the screenshot is kept in target/test-artifacts/report.png,
//! and a PDF printed from it beside it);
//! rendering it again offline from the bundle gives the same bytes, whose
//! SHA-256 the bundle carries signed by the ledger's manifest key; a
//! tampered bundle or seal makes no report.

use govledger_proto::v1::{
    ActionKind, ActionOutcome, EntityType, GetIdentityRequest, GetLedgerStatusRequest,
    GetRunRequest, GetSourceRequest, ListActionsRequest, PresenceStatus,
};
use govledger_testkit::govledger::{action_request, run_govledger_out, serve_fault_scim};

/// The number in the element carrying `data-k="key"`.
fn number(page: &str, key: &str) -> u64 {
    let at = page
        .find(&format!("data-k=\"{key}\""))
        .unwrap_or_else(|| panic!("no {key} in the report"));
    let rest = &page[at..];
    let text = &rest[rest.find('>').unwrap() + 1..];
    text[..text.find('<').unwrap()]
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{key}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_renders_in_chromium_and_its_numbers_equal_the_apis() {
    let (_nats, scim, gl) = serve_fault_scim(12, 2, "").await;
    let leaver = scim.user_ids()[2].clone();
    let a = gl
        .act(
            "hr",
            action_request(ActionKind::Deactivate, &leaver, "", "report-1", "T-1"),
        )
        .await;
    assert_eq!(a.outcome, ActionOutcome::Confirmed as i32, "{a:?}");
    // One user leaves the source: the next complete full run proves it gone.
    let gone = scim.user_ids()[5].clone();
    scim.delete_user(&gone);
    gl.sync("hr").await;

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report.html");
    let (k, v) = gl.token_env();
    let env = [(k, v.as_str())];
    let (st, text, err) = run_govledger_out(
        &[
            "report",
            "--grpc-addr",
            &gl.addr,
            "--source",
            "hr",
            "--out",
            out.to_str().unwrap(),
        ],
        &env,
    );
    assert!(st.success(), "{text}{err}");
    assert!(text.contains("report.bundle.json"), "{text}");
    let page = std::fs::read_to_string(&out).unwrap();

    // The numbers equal the API's.
    let mut c = gl.client().await;
    let src = c
        .get_source(GetSourceRequest {
            as_of: None,
            source_id: "hr".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .source
        .unwrap();
    assert_eq!(
        number(&page, "identities_known"),
        src.identities_total,
        "{page}"
    );
    assert_eq!(number(&page, "identities_known"), 14);
    // Presence as the API decides it: the deleted user is removed at the source.
    let removed = c
        .get_identity(GetIdentityRequest {
            as_of: None,
            source_id: "hr".into(),
            entity_type: EntityType::User as i32,
            external_id: gone.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        removed.presence,
        PresenceStatus::RemovedAtSource as i32,
        "{removed:?}"
    );
    assert_eq!(number(&page, "removed"), 1, "{page}");
    assert_eq!(number(&page, "present"), 13);
    assert_eq!(number(&page, "presence_unknown"), 0);
    let run = c
        .get_run(GetRunRequest {
            run_id: src.last_complete_full_run_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap();
    assert!(page.contains(&src.last_complete_full_run_id));
    assert_eq!(number(&page, "records_unique"), run.records_unique);
    assert_eq!(
        number(&page, "declared_total"),
        run.declared_total_last.unwrap()
    );
    assert_eq!(number(&page, "pages_fetched"), run.pages_fetched);
    assert_eq!(number(&page, "runs"), src.runs_total);
    let actions = c
        .list_actions(ListActionsRequest {
            source_id: "hr".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .actions;
    assert_eq!(number(&page, "actions") as usize, actions.len());
    assert_eq!(number(&page, "exceptions"), 0, "{page}");
    assert!(page.contains("COMPLETE") && page.contains(&leaver));
    let status = c
        .get_ledger_status(GetLedgerStatusRequest { with_digest: false })
        .await
        .unwrap()
        .into_inner();
    assert!(number(&page, "anchor_size") >= number(&page, "as_of_seq"));

    // Rendered again offline from the bundle, pinned: the same bytes.
    let bundle = dir.path().join("report.bundle.json");
    let again = dir.path().join("again.html");
    let (st, text, err) = run_govledger_out(
        &[
            "report",
            "--bundle",
            bundle.to_str().unwrap(),
            "--public-key",
            &status.checkpoint_public_key,
            "--out",
            again.to_str().unwrap(),
        ],
        &[],
    );
    assert!(st.success(), "{text}{err}");
    assert_eq!(std::fs::read_to_string(&again).unwrap(), page);
    // The bundle references the page by digest, signed by the ledger's
    // manifest key after the manifest (which the page names).
    let sealed: govledger::audit::evidence::Bundle =
        serde_json::from_slice(&std::fs::read(&bundle).unwrap()).unwrap();
    let seal = sealed.report.clone().expect("the export sealed its report");
    assert_eq!(seal.sha256, govledger::audit::report::page_sha256(&page));
    assert!(page.contains(&sealed.manifest_signature));
    assert!(
        text.contains("the one the ledger's manifest key signed"),
        "{text}"
    );
    let (st, text, err) = run_govledger_out(
        &[
            "verify-bundle",
            bundle.to_str().unwrap(),
            "--public-key",
            &status.checkpoint_public_key,
        ],
        &[],
    );
    assert!(st.success(), "{text}{err}");
    assert!(
        text.contains(&format!("report page SHA-256 {} signed", seal.sha256)),
        "{text}"
    );
    // An edited bundle makes no report (exit 3), and says why.
    let refused = |edit: &dyn Fn(&mut govledger::audit::evidence::Bundle), why: &str| {
        let mut b = sealed.clone();
        edit(&mut b);
        let edited = dir.path().join("edited.json");
        std::fs::write(&edited, serde_json::to_vec(&b).unwrap()).unwrap();
        let (st, text, err) = run_govledger_out(
            &[
                "report",
                "--bundle",
                edited.to_str().unwrap(),
                "--public-key",
                &status.checkpoint_public_key,
                "--out",
                dir.path().join("no.html").to_str().unwrap(),
            ],
            &[],
        );
        assert_eq!(st.code(), Some(3), "{text}{err}");
        assert!(err.contains(why), "{why}: {err}");
        assert!(!dir.path().join("no.html").exists());
    };
    // Another page's digest put in the seal.
    refused(
        &|b| b.report.as_mut().unwrap().sha256 = "ab".repeat(32),
        "report digest is not signed",
    );
    // The bundle itself tampered with.
    refused(&|b| b.state.as_of_seq -= 1, "Tampered");

    // Headless Chromium renders it; the screenshot is kept.
    let artifacts = govledger_testkit::browser::artifacts();
    let png = artifacts.join("report.png");
    let _ = std::fs::remove_file(&png);
    let url = format!("file://{}", out.display());
    let run = |args: &[&str]| govledger_testkit::browser::headless(&url, args);
    let dom = run(&["--dump-dom"]);
    assert!(
        dom.contains("Completeness report") && dom.contains("data-k=\"present\">13<"),
        "{dom}"
    );
    run(&[
        "--window-size=1280,2400",
        &format!("--screenshot={}", png.display()),
    ]);
    let bytes = std::fs::read(&png).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
        "{} bytes",
        bytes.len()
    );
    // And prints to PDF (the README's recipe).
    let pdf = artifacts.join("report.pdf");
    let _ = std::fs::remove_file(&pdf);
    run(&[&format!("--print-to-pdf={}", pdf.display())]);
    assert!(std::fs::read(&pdf).unwrap().starts_with(b"%PDF"));
    eprintln!(
        "report screenshot: {}, PDF: {}",
        png.display(),
        pdf.display()
    );
}
