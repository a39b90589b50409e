//! Asking witnesses for cosignatures (c2sp.org/tlog-witness `add-checkpoint`):
//! after each checkpoint, the ledger sends every configured witness
//! (`[[audit.witnesses]]`) the checkpoint note with a consistency proof from
//! the size that witness last cosigned; the cosignature lines it returns are
//! appended to the note and kept like a handed-in cosigned note
//! ([`crate::audit::witness`]: every signature checked first).
//!
//! One request per witness and checkpoint, bounded by [`WITNESS_TIMEOUT_MS`];
//! a `409 Conflict` (the witness cosigned another size before, e.g. after a
//! restart of this process) is answered once more from the size it names. A
//! witness that refuses or cannot be reached is logged and asked again at the
//! next checkpoint — never a reason to hold a checkpoint back. The request
//! body and the parsing of answers are pure ([`request_body`], [`parse_size`]).

use std::{collections::HashMap, sync::Arc};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use govledger_projector::merkle;

/// New checkpoints waiting for the witnesses at most (more: the oldest
/// wait for the next checkpoint, which supersedes them).
pub const WITNESS_QUEUE_MAX: usize = 16;
/// How long one `add-checkpoint` request may take.
pub const WITNESS_TIMEOUT_MS: u64 = 10_000;
/// Bytes of a witness's answer read at most.
pub const ANSWER_BYTES_MAX: usize = 64 << 10;
/// Witnesses one ledger asks at most (`[[audit.witnesses]]`).
pub const WITNESSES_MAX: usize = 16;

/// One witness the ledger asks (`[[audit.witnesses]]`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessConfig {
    /// The witness's submission prefix: requests go to `<url>/add-checkpoint`.
    pub url: String,
    /// Its verifier key (`name+id+base64`), trusted like `audit.witness_keys`.
    pub key: String,
}

/// What one witness answered.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// Its cosignature lines.
    Cosigned(String),
    /// It cosigned this size last: ask again from there.
    Conflict(u64),
    /// A refusal or a failure, in words.
    Refused(String),
}

/// The `add-checkpoint` body: the old size, the consistency proof from it, a
/// blank line, the signed checkpoint note.
pub fn request_body(old: u64, proof: &[merkle::Hash], note: &str) -> String {
    let mut s = format!("old {old}\n");
    for h in proof {
        s.push_str(&STANDARD.encode(h));
        s.push('\n');
    }
    s.push('\n');
    s.push_str(note);
    s
}

/// The size a `409 Conflict` body names (`<decimal>\n`).
pub fn parse_size(body: &str) -> Option<u64> {
    let t = body.strip_suffix('\n').unwrap_or(body);
    (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) && (t == "0" || !t.starts_with('0')))
        .then(|| t.parse().ok())
        .flatten()
}

/// The HTTP side: one client, and the size each witness cosigned last.
pub struct WitnessClient {
    http: reqwest::Client,
    witnesses: Vec<WitnessConfig>,
    last_size: tokio::sync::Mutex<HashMap<String, u64>>,
}

impl WitnessClient {
    pub fn new(witnesses: Vec<WitnessConfig>) -> Result<Self, String> {
        govledger_ingest::http::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_millis(WITNESS_TIMEOUT_MS))
            .user_agent(concat!("govledger/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            http,
            witnesses,
            last_size: Default::default(),
        })
    }

    pub fn witnesses(&self) -> &[WitnessConfig] {
        &self.witnesses
    }

    /// Asks `w` to cosign `note` (a checkpoint of `size`); `proof(old)` is the
    /// consistency proof from `old` to `size`. The cosignature lines, or why not.
    pub async fn ask(
        &self,
        w: &WitnessConfig,
        note: &str,
        size: u64,
        proof: impl Fn(u64) -> Result<Vec<merkle::Hash>, String>,
    ) -> Result<String, String> {
        let mut old = self
            .last_size
            .lock()
            .await
            .get(&w.url)
            .copied()
            .unwrap_or(0);
        for _ in 0..2 {
            if old > size {
                return Err(format!(
                    "the witness cosigned size {old} already, past this checkpoint's {size}"
                ));
            }
            let path = if old == 0 { Vec::new() } else { proof(old)? };
            match self.post(w, request_body(old, &path, note)).await {
                Answer::Cosigned(lines) => {
                    self.last_size.lock().await.insert(w.url.clone(), size);
                    return Ok(lines);
                }
                Answer::Conflict(s) if s != old => old = s,
                Answer::Conflict(s) => {
                    return Err(format!("the witness holds size {s} with another root"));
                }
                Answer::Refused(why) => return Err(why),
            }
        }
        Err("the witness answered 409 Conflict twice".into())
    }

    async fn post(&self, w: &WitnessConfig, body: String) -> Answer {
        let url = format!("{}/add-checkpoint", w.url.trim_end_matches('/'));
        let resp = match self
            .http
            .post(&url)
            .header("content-type", "text/plain; charset=utf-8")
            .body(body)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => return Answer::Refused(format!("cannot reach {url}: {e}")),
        };
        let status = resp.status().as_u16();
        let text = match resp.bytes().await {
            Ok(b) if b.len() <= ANSWER_BYTES_MAX => String::from_utf8_lossy(&b).into_owned(),
            Ok(b) => return Answer::Refused(format!("{url}: an answer of {} bytes", b.len())),
            Err(e) => return Answer::Refused(format!("{url}: {e}")),
        };
        match status {
            200 => Answer::Cosigned(text),
            409 => match parse_size(&text) {
                Some(s) => Answer::Conflict(s),
                None => Answer::Refused(format!("{url}: 409 Conflict without a size")),
            },
            s => Answer::Refused(format!(
                "{url}: HTTP {s}: {}",
                text.chars().take(160).collect::<String>().trim()
            )),
        }
    }
}

/// Asks every witness to cosign each checkpoint `queue` hands over, and
/// keeps what they return (checked by the checkpointer) until `shutdown`.
pub async fn run(
    checkpointer: Arc<crate::audit::checkpoints::Checkpointer>,
    client: WitnessClient,
    mut queue: tokio::sync::mpsc::Receiver<govledger_proto::v1::Checkpoint>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    loop {
        let cp = tokio::select! {
            c = queue.recv() => match c { Some(c) => c, None => return },
            _ = shutdown.cancelled() => return,
        };
        for w in client.witnesses() {
            let proof = |old: u64| checkpointer.consistency_proof(old, cp.tree_size);
            let asked = tokio::select! {
                a = client.ask(w, &cp.note, cp.tree_size, proof) => a,
                _ = shutdown.cancelled() => return,
            };
            let kept = match asked {
                // Checked against the checkpoint just made, not the whole audit log.
                Ok(lines) => checkpointer
                    .keep_cosigned(&format!("{}{lines}", cp.note), std::slice::from_ref(&cp))
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            match kept {
                Ok(w) => {
                    tracing::info!(size = w.size, witnesses = ?w.witnesses, "checkpoint cosigned by a witness")
                }
                Err(e) => tracing::warn!(witness = %w.url, size = cp.tree_size, error = %e,
                    "a witness did not cosign the checkpoint; the next checkpoint asks again"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_body_is_the_specs() {
        let note = "o\n5\nAAAA\n\n— o abc\n";
        assert_eq!(request_body(0, &[], note), format!("old 0\n\n{note}"));
        assert_eq!(
            request_body(3, &[[1u8; 32]], note),
            format!("old 3\nAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n\n{note}")
        );
    }

    #[test]
    fn a_conflict_names_a_size_in_decimal() {
        assert_eq!(parse_size("20852014\n"), Some(20_852_014));
        assert_eq!(parse_size("0\n"), Some(0));
        for bad in ["", "\n", "012\n", "-1\n", "12 \n", "x\n"] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
    }
}
