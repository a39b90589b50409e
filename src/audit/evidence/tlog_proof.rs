//! The C2SP `tlog-proof@v1` text (c2sp.org/tlog-proof): an event's proof of
//! inclusion that any tlog-proof verifier checks offline — the header, the
//! 0-based leaf index, the audit path (leaf to root, one base64 hash per
//! line), a blank line, and the signed checkpoint note the path leads to.
//!
//! The leaf it proves is `SHA-256(0x00 ‖ seq as 8 big-endian bytes ‖ stored
//! bytes)`: an RFC 6962 leaf whose record is the sequence then the stored
//! bytes, so a verifier given the record `seq ‖ bytes` computes it itself.
//! Pure: formatting and parsing, no key and no tree.

use base64::{Engine as _, engine::general_purpose::STANDARD};
use govledger_projector::merkle;

/// The first line of every proof.
pub const HEADER: &str = "c2sp.org/tlog-proof@v1";
/// Hashes a proof may hold (a tree of 2^63 leaves needs 63).
pub const PATH_MAX: usize = 64;

/// A parsed proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlogProof {
    /// The opaque `extra` data, when the proof carries it (govledger writes none).
    pub extra: Option<Vec<u8>>,
    /// The 0-based index of the leaf (a stream sequence minus one).
    pub index: u64,
    pub path: Vec<merkle::Hash>,
    /// The signed checkpoint note, exactly as it follows the blank line.
    pub checkpoint: String,
}

/// The proof of leaf `index` by `path` in the tree `note` signs.
pub fn format(index: u64, path: &[merkle::Hash], note: &str) -> String {
    let mut s = format!("{HEADER}\nindex {index}\n");
    for h in path {
        s.push_str(&STANDARD.encode(h));
        s.push('\n');
    }
    s.push('\n');
    s.push_str(note);
    s
}

/// Parses a proof; the error says what is wrong with it.
pub fn parse(text: &str) -> Result<TlogProof, String> {
    let (head, checkpoint) = text
        .split_once("\n\n")
        .ok_or("no blank line before the checkpoint")?;
    let mut lines = head.split('\n');
    if lines.next() != Some(HEADER) {
        return Err(format!("the first line is not {HEADER:?}"));
    }
    let mut line = lines.next().ok_or("no index line")?;
    let mut extra = None;
    if let Some(b64) = line.strip_prefix("extra ") {
        extra = Some(
            STANDARD
                .decode(b64)
                .map_err(|_| "the extra line is not base64".to_owned())?,
        );
        line = lines.next().ok_or("no index line")?;
    }
    let index = line
        .strip_prefix("index ")
        .and_then(|n| n.parse::<u64>().ok())
        .filter(|n| *n < (1 << 63))
        .ok_or_else(|| format!("{line:?} is not an index line"))?;
    let mut path = Vec::new();
    for l in lines {
        if path.len() == PATH_MAX {
            return Err(format!("more than {PATH_MAX} hashes"));
        }
        let h = STANDARD
            .decode(l)
            .ok()
            .and_then(|v| merkle::Hash::try_from(v).ok())
            .ok_or_else(|| format!("{l:?} is not a base64 SHA-256 hash"))?;
        path.push(h);
    }
    if checkpoint.is_empty() {
        return Err("no checkpoint after the blank line".into());
    }
    Ok(TlogProof {
        extra,
        index,
        path,
        checkpoint: checkpoint.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOTE: &str = "ledger.example/x\n2\nAAAA\n\n— ledger.example/x abcd\n";

    #[test]
    fn a_proof_reads_back_as_written_and_in_the_specs_layout() {
        let path = [[1u8; 32], [2u8; 32]];
        let text = format(5, &path, NOTE);
        assert!(text.starts_with("c2sp.org/tlog-proof@v1\nindex 5\nAQEB"));
        assert!(text.ends_with(&format!("\n\n{NOTE}")));
        let p = parse(&text).unwrap();
        assert_eq!(
            p,
            TlogProof {
                extra: None,
                index: 5,
                path: path.to_vec(),
                checkpoint: NOTE.into()
            }
        );
        // No path (a tree of one leaf), and an extra line.
        let p = parse(&format!("{HEADER}\nextra aGk=\nindex 0\n\n{NOTE}")).unwrap();
        assert_eq!(
            (p.extra, p.index, p.path.len()),
            (Some(b"hi".to_vec()), 0, 0)
        );
    }

    #[test]
    fn malformed_proofs_are_refused_with_the_reason() {
        let good = format(1, &[[7u8; 32]], NOTE);
        for (bad, why) in [
            (good.replace("@v1", "@v2"), "first line"),
            (good.replace("index 1", "index x"), "index line"),
            (
                good.replace("index 1", "index 9223372036854775808"),
                "index line",
            ),
            (good.replace("\n\n", "\n"), "blank line"),
            (format!("{HEADER}\nindex 1\n\n"), "no checkpoint"),
            (good.replace("BwcH", "!!!!"), "not a base64"),
            (
                format!("{HEADER}\nindex 1\nAAAA\n\n{NOTE}"),
                "not a base64 SHA-256",
            ),
            (format!("{HEADER}\nextra %%\nindex 1\n\n{NOTE}"), "extra"),
            (format(0, &[[0; 32]; 65], NOTE), "more than 64"),
        ] {
            let e = parse(&bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }
}
