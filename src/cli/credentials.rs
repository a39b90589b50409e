//! `govledger credentials siem`: the read-only user of the embedded NATS
//! server, for a SIEM that subscribes to the ledger's events.
//!
//! The credential is printed on stdout (never logged), or written with
//! `--out F` to a file of mode 0600 (then only the path is printed). It says
//! what the user may do: subscribe and read the stream, nothing else.

use anyhow::Context as _;

use super::{
    args::{CredentialUserArg, CredentialsArgs, ServerFlags},
    server::{running_nats_url, settings},
};
use crate::serve::{nats, nats_embed};

/// The credential text: what the user may do (comment lines) and the
/// `key=value` lines a SIEM's configuration takes. Pure.
pub fn credential_text(url: &str, user: &str, password: &str, stream: &str) -> String {
    let subjects = govledger_stream::subject::stream_subjects().join(",");
    format!(
        "# NATS credential of the READ-ONLY user {user:?} of govledger's embedded server.\n\
         # It may subscribe to the ledger's subjects and read stream {stream} (and the\n\
         # decided alerts, stream {alerts_stream}, and the OCSF feed, stream {ocsf_stream})\n\
         # with its own consumers; it may not publish\n\
         # to a ledger subject, nor delete, purge or change a stream. Keep it secret: anyone\n\
         # holding it reads every ledger event.\n\
         url={url}\n\
         user={user}\n\
         password={password}\n\
         stream={stream}\n\
         subjects={subjects}\n\
         alerts_stream={alerts_stream}\n\
         alert_subjects={alert_subjects}\n\
         ocsf_stream={ocsf_stream}\n\
         ocsf_subjects={ocsf_subjects}\n",
        alerts_stream = crate::alerts::ALERTS_STREAM,
        alert_subjects = crate::alerts::ALERT_SUBJECTS,
        ocsf_stream = crate::ocsf::feed::OCSF_STREAM,
        ocsf_subjects = crate::ocsf::feed::OCSF_SUBJECTS,
    )
}

/// `govledger credentials siem [--config C] [--data-dir D] [--out F]`.
pub fn credentials(a: CredentialsArgs) -> anyhow::Result<()> {
    let cfg = settings(&ServerFlags {
        config: a.config,
        data_dir: a.data_dir,
        grpc_addr: None,
        nats_url: None,
    })?;
    cfg.validate()?;
    if cfg.nats.external_url().is_some() {
        anyhow::bail!(
            "nats.url (or nats.urls) names an external NATS server: govledger does not manage its \
             users; ask its operator for a read-only credential (this command is for the \
             embedded server)"
        );
    }
    let user = match a.user {
        CredentialUserArg::Siem => nats_embed::SIEM_USER,
    };
    let password = nats_embed::read_password(&nats::embedded_dir(&cfg), user)?;
    let url = running_nats_url(&cfg, "; start `govledger serve` on this data folder first")?;
    let text = credential_text(&url, user, password.expose(), &cfg.nats.stream);
    match a.out {
        Some(path) => {
            nats_embed::write_private(&path, &text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            println!(
                "wrote the read-only {user:?} NATS credential (url, user, password) to {} (mode 0600)",
                path.display()
            );
        }
        None => print!("{text}"),
    }
    if cfg.nats.embedded_port == 0 {
        eprintln!(
            "note: the embedded server picks a free port at each start; set nats.embedded_port \
             so the url above stays valid across restarts"
        );
    }
    Ok(())
}
