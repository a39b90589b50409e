//! Redaction of what may carry a secret when printed: the userinfo of a URL
//! (`nats://user:pass@host`, `https://token@api`) becomes `***`.
//!
//! [`redact_url`] is the one helper every error and log line that shows a URL
//! goes through (NATS urls and source base URLs alike). It is pure and works on
//! free text too, so an error text from a library that may quote a URL can be
//! passed through it whole.

/// The characters that end a URL's authority (and a URL in free text).
fn ends_authority(c: char) -> bool {
    matches!(
        c,
        '/' | '?' | '#' | ',' | '"' | '\'' | '<' | '>' | '`' | ')' | ']'
    ) || c.is_whitespace()
}

/// `text` with the userinfo of every URL in it replaced by `***`:
/// `nats://alice:pw@h:4222` → `nats://***@h:4222`. A comma-separated list of
/// URLs is redacted item by item; a URL without a scheme (`alice:pw@h:4222`,
/// as NATS accepts) is redacted when the whole text is one such address.
/// Text without userinfo is returned unchanged.
pub fn redact_url(text: &str) -> String {
    if !text.contains('@') {
        return text.to_owned();
    }
    if !text.contains("://") {
        // One schemeless address or a list of them: `user:pass@host:port`.
        return text
            .split(',')
            .map(|item| redact_authority(item, 0))
            .collect::<Vec<_>>()
            .join(",");
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let start = i + 3;
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        let end = after.find(ends_authority).unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// `item` with the userinfo of its authority (starting at `from`) redacted.
fn redact_authority(item: &str, from: usize) -> String {
    let after = &item[from..];
    let end = after.find(ends_authority).unwrap_or(after.len());
    match after[..end].rfind('@') {
        Some(at) => format!("{}***{}", &item[..from], &after[at..]),
        None => item.to_owned(),
    }
}

/// Whether `url` (or any URL of a comma-separated list) carries userinfo
/// (`user@`, `user:pass@`, `token@`): the config refuses such URLs.
pub fn has_userinfo(url: &str) -> bool {
    redact_url(url) != url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_replaced_everywhere_it_can_appear() {
        let cases = [
            (
                "nats://alice:S3cret@127.0.0.1:4222",
                "nats://***@127.0.0.1:4222",
            ),
            ("nats://tok3n@h:4222", "nats://***@h:4222"),
            (
                "tls://a:b@h:1,nats://c:d@g:2",
                "tls://***@h:1,nats://***@g:2",
            ),
            ("a:b@h:4222", "***@h:4222"),
            ("a:b@h:1,c:d@g:2", "***@h:1,***@g:2"),
            (
                "https://u:p@api.example/v2/Users?x=a@b",
                "https://***@api.example/v2/Users?x=a@b",
            ),
            (
                "error sending request for url (https://u:p%40x@h/scim/Users): refused",
                "error sending request for url (https://***@h/scim/Users): refused",
            ),
            (
                "cannot reach \"nats://p:q@h:1\" now",
                "cannot reach \"nats://***@h:1\" now",
            ),
            // An '@' in the password itself: the last '@' ends the userinfo.
            ("nats://a:p@ss@h:1", "nats://***@h:1"),
        ];
        for (input, want) in cases {
            assert_eq!(redact_url(input), want, "{input}");
            assert!(has_userinfo(input), "{input}");
        }
    }

    #[test]
    fn text_without_userinfo_is_unchanged() {
        for t in [
            "nats://127.0.0.1:4222",
            "nats://h:1,nats://g:2",
            "https://api.example/v2/Users?filter=email eq \"a@b.c\"",
            "mailto a@b",
            "",
            "no url here",
        ] {
            // A schemeless text with '@' is read as one address; the others pass as they are.
            if t.contains("://") || !t.contains('@') {
                assert_eq!(redact_url(t), t, "{t}");
                assert!(!has_userinfo(t), "{t}");
            }
        }
    }
}
