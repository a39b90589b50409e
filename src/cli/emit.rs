//! How a client command prints its answer: `--json` as one JSON document
//! (the API's protobuf JSON mapping), else the table [`super::output`]
//! formats, coloured on a terminal and plain when piped or when `NO_COLOR`
//! is set.

/// Prints an answer: with `json`, as one JSON document (the protobuf JSON
/// mapping of `m`, the message named `full_name`); else `table(m)`,
/// coloured on a terminal unless `NO_COLOR` is set, plain when piped.
pub fn emit<M: prost::Message>(
    json: bool,
    m: &M,
    full_name: &str,
    table: impl FnOnce(&M) -> String,
) -> anyhow::Result<()> {
    use std::io::{IsTerminal as _, Write as _};
    let mut out = std::io::stdout().lock();
    if json {
        let text = json_of(m, full_name)?;
        writeln!(out, "{text}")?;
    } else {
        let text = table(m);
        let color = std::io::stdout().is_terminal()
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        if color {
            write!(out, "{}", paint(&text))?;
        } else {
            write!(out, "{text}")?;
        }
    }
    Ok(())
}

/// `m` (the message named `full_name`) in the protobuf JSON mapping.
pub fn json_of<M: prost::Message>(m: &M, full_name: &str) -> anyhow::Result<String> {
    let pool = crate::audit::evidence::descriptors().map_err(anyhow::Error::msg)?;
    let desc = pool
        .get_message_by_name(full_name)
        .ok_or_else(|| anyhow::anyhow!("no message {full_name} in the descriptor"))?;
    let dm = prost_reflect::DynamicMessage::decode(desc, m.encode_to_vec().as_slice())?;
    Ok(serde_json::to_string(&dm)?)
}

/// Good words green, bad ones red, doubtful ones yellow (whole words only;
/// the escape codes take no columns, so the table stays aligned).
pub fn paint(text: &str) -> String {
    const GREEN: &str = "\x1b[32m";
    const RED: &str = "\x1b[31m";
    const YELLOW: &str = "\x1b[33m";
    const RESET: &str = "\x1b[0m";
    let colour = |w: &str| match w {
        "COMPLETE" | "FRESH" | "CONFIRMED" | "READY" | "OK" | "VERIFIED" | "MATCH" => Some(GREEN),
        "INCOMPLETE"
        | "FAILED"
        | "STALE"
        | "NEVER_COMPLETE"
        | "DRIFTED"
        | "OVERDUE"
        | "TAMPERED"
        | "REJECTED"
        | "MISMATCH"
        | "UNVERIFIED_PRODUCER" => Some(RED),
        "SUSPECT" | "UNCONFIRMED" | "UNVERIFIED" | "UNVERIFIABLE" | "ABANDONED" | "PENDING"
        | "RUNNING" => Some(YELLOW),
        _ => None,
    };
    let mut out = String::with_capacity(text.len() + 64);
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        match colour(word) {
            Some(c) => {
                out.push_str(c);
                out.push_str(word);
                out.push_str(RESET);
            }
            None => out.push_str(word),
        }
        word.clear();
    };
    for ch in text.chars() {
        if ch.is_ascii_alphanumeric() || ch == '_' {
            word.push(ch);
        } else {
            flush(&mut word, &mut out);
            out.push(ch);
        }
    }
    flush(&mut word, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paint_colours_whole_words_only() {
        let p = paint("hr  COMPLETE  INCOMPLETED FRESH");
        assert!(p.contains("\x1b[32mCOMPLETE\x1b[0m"), "{p:?}");
        assert!(
            p.contains("INCOMPLETED") && !p.contains("\x1b[31mINCOMPLETED"),
            "{p:?}"
        );
        assert!(p.contains("\x1b[32mFRESH\x1b[0m"), "{p:?}");
        assert_eq!(paint("plain"), "plain");
    }

    #[test]
    fn json_uses_the_protobuf_mapping() {
        let r = govledger_proto::v1::ListSourcesResponse::default();
        assert_eq!(
            json_of(&r, "govledger.v1.ListSourcesResponse").unwrap(),
            "{}"
        );
        assert!(json_of(&r, "govledger.v1.NoSuch").is_err());
    }
}
