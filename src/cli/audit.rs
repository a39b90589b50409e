//! The audit commands: `ledger`, `poison`, `replay`, `verify`, `export`,
//! `verify-bundle` (the last one offline).

use anyhow::Context as _;
use govledger_proto::v1::{
    EntityType, ExportEvidenceRequest, GetLedgerStatusRequest, ListPoisonEventsRequest,
    ReplayRequest, VerifyRangeRequest,
};

use super::{
    args::{ExportArgs, LedgerArgs, PoisonArgs, ReplayArgs, VerifyArgs, VerifyBundleArgs},
    client::{NotOk, Unpinned, connect, status_err, time_arg},
    output,
};
use crate::audit::evidence;

/// Poison events `govledger poison` lists at most.
const POISON_LIST_MAX: u32 = 100;

/// `govledger ledger`: projection position, counters, optionally the digest.
pub async fn ledger(a: LedgerArgs) -> anyhow::Result<()> {
    let mut c = connect(&a.client).await?;
    let r = c
        .get_ledger_status(GetLedgerStatusRequest {
            with_digest: a.digest,
        })
        .await
        .map_err(status_err)?;
    super::emit::emit(
        a.client.json,
        &r.into_inner(),
        "govledger.v1.LedgerStatus",
        ledger_status,
    )?;
    Ok(())
}

/// `govledger checkpoint`: the newest (or a new) checkpoint as a signed note.
pub async fn checkpoint(a: super::args::CheckpointArgs) -> anyhow::Result<()> {
    let mut c = connect(&a.client).await?;
    if let Some(f) = &a.add_cosignature {
        let note = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read the cosigned note {}", f.display()))?;
        let r = c
            .add_cosignature(govledger_proto::v1::AddCosignatureRequest { note })
            .await
            .map_err(status_err)?
            .into_inner();
        println!(
            "kept: checkpoint of size {} root {} cosigned by {}",
            r.tree_size,
            r.root,
            r.witnesses.join(", ")
        );
        return Ok(());
    }
    if a.keys {
        let mut cps = c
            .list_checkpoints(govledger_proto::v1::ListCheckpointsRequest {
                limit: crate::audit::checkpoints::LIST_CHECKPOINTS_MAX,
                key_handovers: true,
            })
            .await
            .map_err(status_err)?
            .into_inner()
            .checkpoints;
        let newest = cps.pop().ok_or_else(|| {
            anyhow::anyhow!("the ledger has signed no checkpoint yet; make one with --new")
        })?;
        let keys = crate::audit::checkpoints::key_sequence_after(&cps, &[newest])
            .context("the ledger's key handovers do not verify")?;
        print!("{}", crate::audit::checkpoints::published_key_set(&keys));
        return Ok(());
    }
    let cp = if a.new {
        c.create_checkpoint(govledger_proto::v1::CreateCheckpointRequest {})
            .await
            .map_err(status_err)?
            .into_inner()
    } else {
        c.list_checkpoints(govledger_proto::v1::ListCheckpointsRequest {
            limit: 1,
            ..Default::default()
        })
        .await
        .map_err(status_err)?
        .into_inner()
        .checkpoints
        .into_iter()
        .next()
        .ok_or_else(|| {
            anyhow::anyhow!("the ledger has signed no checkpoint yet; make one with --new")
        })?
    };
    if cp.note.is_empty() {
        anyhow::bail!(
            "the newest checkpoint (size {}) predates signed notes; make one with --new",
            cp.tree_size
        );
    }
    if a.verifier_key {
        println!("{}", cp.verifier_key);
    } else if a.client.json {
        super::emit::emit(true, &cp, "govledger.v1.Checkpoint", |_| String::new())?;
    } else {
        print!("{}", cp.note);
    }
    Ok(())
}

/// `govledger poison`: stream messages that could not be folded.
pub async fn poison(a: PoisonArgs) -> anyhow::Result<()> {
    let mut c = connect(&a.client).await?;
    let r = c
        .list_poison_events(ListPoisonEventsRequest {
            after_seq: 0,
            limit: POISON_LIST_MAX,
        })
        .await
        .map_err(status_err)?;
    super::emit::emit(
        a.client.json,
        &r.into_inner(),
        "govledger.v1.ListPoisonEventsResponse",
        |r| output::poison_table(&r.events),
    )?;
    Ok(())
}

/// `govledger replay`: the events as NDJSON, with a progress bar on stderr.
pub async fn replay(a: ReplayArgs) -> anyhow::Result<()> {
    use std::io::Write as _;
    let pool = prost_reflect::DescriptorPool::decode(govledger_proto::FILE_DESCRIPTOR_SET)?;
    let desc = pool
        .get_message_by_name("govledger.v1.ReplayItem")
        .context("descriptor of govledger.v1.ReplayItem missing")?;
    crate::cli::client::check_seq_range(a.from_seq, a.to_seq)?;
    let mut c = connect(&a.client).await?;
    let mut stream = c
        .replay(ReplayRequest {
            source_id: a.source.unwrap_or_default(),
            run_id: a.run.unwrap_or_default(),
            action_id: a.action.unwrap_or_default(),
            identity_external_id: a.identity.unwrap_or_default(),
            from_seq: a.from_seq,
            to_seq: a.to_seq,
            ..Default::default()
        })
        .await
        .map_err(status_err)?
        .into_inner();
    let mut w: Box<dyn std::io::Write> = match &a.out {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    // A bar over the sequence range the replay walks (the stream's end as
    // of now when no --to-seq), counting matched events in the message.
    let end = if a.to_seq > 0 {
        a.to_seq
    } else {
        c.get_ledger_status(GetLedgerStatusRequest { with_digest: false })
            .await
            .map_err(status_err)?
            .into_inner()
            .stream_last_seq
    };
    let start = a.from_seq.max(1);
    let bar = indicatif::ProgressBar::new(end.saturating_sub(start) + 1);
    bar.set_style(indicatif::ProgressStyle::with_template(
        "{bar:40} {percent:>3}% seq {msg} {elapsed_precise} eta {eta}",
    )?);
    let mut replayed: u64 = 0;
    while let Some(item) = stream.message().await.map_err(status_err)? {
        let dm = prost_reflect::DynamicMessage::decode(
            desc.clone(),
            prost::Message::encode_to_vec(&item).as_slice(),
        )?;
        serde_json::to_writer(&mut w, &dm)?;
        w.write_all(b"\n")?;
        replayed += 1;
        bar.set_position(item.seq.saturating_sub(start) + 1);
        bar.set_message(format!("{} ({replayed} events)", item.seq));
    }
    w.flush()?;
    bar.finish_and_clear();
    eprintln!("replayed {replayed} events");
    Ok(())
}

/// `govledger verify`: reads a range of the stream again (exit 3 unless intact).
pub async fn verify(a: VerifyArgs) -> anyhow::Result<()> {
    crate::cli::client::check_seq_range(a.from_seq, a.to_seq)?;
    let mut c = connect(&a.client).await?;
    let r = c
        .verify_range(VerifyRangeRequest {
            from_seq: a.from_seq,
            to_seq: a.to_seq,
            stream: a.stream.unwrap_or_default(),
        })
        .await
        .map_err(status_err)?
        .into_inner();
    print!("{}", output::verify_report(&r));
    if !r.ok {
        return Err(NotOk.into());
    }
    Ok(())
}

/// `govledger export`: writes an evidence bundle.
pub async fn export(a: ExportArgs) -> anyhow::Result<()> {
    let entity_type = match &a.identity {
        Some(_) => EntityType::from(a.r#type) as i32,
        None => 0,
    };
    let req = ExportEvidenceRequest {
        source_id: a.source,
        entity_type,
        external_id: a.identity.unwrap_or_default(),
        from_us: time_arg("--from", a.from.as_deref())?,
        to_us: time_arg("--to", a.to.as_deref())?,
        with_report: false,
    };
    let mut c = connect(&a.client).await?;
    let data = fetch_bundle(&mut c, req).await?;
    let b: evidence::Bundle =
        serde_json::from_slice(&data).context("the server sent a malformed bundle")?;
    std::fs::write(&a.out, &data).with_context(|| format!("cannot write {}", a.out.display()))?;
    print!("{}", output::export_summary(&b, &a.out));
    Ok(())
}

/// The bundle `ExportEvidence` streams for `req`, whole.
pub async fn fetch_bundle(
    c: &mut super::client::Client,
    req: ExportEvidenceRequest,
) -> anyhow::Result<Vec<u8>> {
    let mut stream = c
        .export_evidence(req)
        .await
        .map_err(status_err)?
        .into_inner();
    let mut data = Vec::new();
    while let Some(chunk) = stream.message().await.map_err(status_err)? {
        data.extend_from_slice(&chunk.data);
    }
    Ok(data)
}

/// A bundle file's bytes, at most one past [`evidence::BUNDLE_BYTES_MAX`]
/// (what `verify_bundle` refuses as too large).
pub fn read_bundle_file(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    use std::io::Read as _;
    let cannot_read = || format!("cannot read {}", path.display());
    let mut data = Vec::new();
    std::fs::File::open(path)
        .with_context(cannot_read)?
        .take(evidence::BUNDLE_BYTES_MAX + 1)
        .read_to_end(&mut data)
        .with_context(cannot_read)?;
    Ok(data)
}

/// `govledger verify-bundle`: checks a bundle offline. Exit 0 VERIFIED, 3
/// TAMPERED or REJECTED, 4 UNPINNED (no `--public-key`).
pub fn verify_bundle(a: VerifyBundleArgs) -> anyhow::Result<()> {
    let cannot_read = || format!("cannot read {}", a.bundle.display());
    let len = std::fs::metadata(&a.bundle)
        .with_context(cannot_read)?
        .len();
    let r = if len > evidence::BUNDLE_BYTES_MAX {
        evidence::BundleReport::too_large(len)
    } else {
        evidence::verify_bundle(&read_bundle_file(&a.bundle)?, a.public_key.as_deref())
    };
    print!("{}", output::bundle_report(&r));
    match r.verdict {
        evidence::Verdict::Verified => Ok(()),
        evidence::Verdict::Unpinned => Err(Unpinned.into()),
        evidence::Verdict::Tampered | evidence::Verdict::Rejected => Err(NotOk.into()),
    }
}

/// `govledger ledger`: the stream, the projection and its Merkle root.
fn ledger_status(s: &govledger_proto::v1::LedgerStatus) -> String {
    use govledger_projector::verdict::thousands;
    let m = s.meta.clone().unwrap_or_default();
    let mut out = format!(
        "stream {}: {} messages, last seq {}\nprojection: last applied seq {}, {} events applied, {} duplicate ids skipped, {} poison\n",
        s.stream_name,
        thousands(s.stream_messages),
        s.stream_last_seq,
        m.last_applied_seq,
        thousands(m.events_applied),
        thousands(m.duplicate_events),
        thousands(m.poison_events),
    );
    out.push_str(&format!(
        "merkle root over seq 1..={}: {}\n",
        s.merkle_size, s.merkle_root
    ));
    if !s.checkpoint_public_key.is_empty() {
        out.push_str(&format!(
            "checkpoint key: {} (publish it: auditors pin it with verify-bundle --public-key)\n",
            s.checkpoint_public_key
        ));
    }
    if !s.state_digest.is_empty() {
        out.push_str(&format!("state digest: {}\n", s.state_digest));
    }
    if !s.projector_stopped.is_empty() {
        out.push_str(&format!(
            "PROJECTOR STOPPED: answers are as of seq {}: {}\n",
            m.last_applied_seq, s.projector_stopped
        ));
    }
    out
}
