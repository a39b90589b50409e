//! The one scrubber every text a connector may store passes before it is
//! published (error excerpts of response bodies, transport errors): the
//! configured secret values — as given, base64 (standard and URL-safe) and
//! percent-encoded — and credential-shaped text (`Bearer …`, `Basic …`,
//! `token=…`, `"password": "…"`) become `***`. A target that echoes the
//! credential it was sent ("token rejected: Bearer abc…") cannot put it in
//! the immutable ledger. URLs' userinfo goes through [`crate::redact_url`].
//!
//! Pure and allocation-bounded by the text's length; no regex engine.

/// Shorter secrets are not scrubbed by value (they would match ordinary text);
/// the credential-shaped rules still apply.
pub const SECRET_CHARS_MIN: usize = 4;

/// Words after which the next token is a credential (`Bearer abc`).
const SCHEMES: [&str; 4] = ["bearer", "basic", "token", "apikey"];
/// Keys whose value is a credential (`token=abc`, `"password": "abc"`).
const KEYS: [&str; 12] = [
    "authorization",
    "proxy-authorization",
    "password",
    "passwd",
    "secret",
    "client_secret",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "api_key",
    "apikey",
];

/// Removes secrets from text; see the module doc.
#[derive(Debug, Clone, Default)]
pub struct Scrubber {
    /// Every form of every secret, longest first.
    needles: Vec<String>,
}

impl Scrubber {
    /// A scrubber of `secrets` (their plain, base64 and percent-encoded forms).
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Self {
        let mut needles = Vec::new();
        for s in secrets {
            if s.chars().count() < SECRET_CHARS_MIN {
                continue;
            }
            needles.push(s.to_owned());
            needles.push(base64(s.as_bytes(), STD));
            needles.push(base64(s.as_bytes(), URL).trim_end_matches('=').to_owned());
            needles.push(percent(s));
        }
        needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        needles.dedup();
        Self { needles }
    }

    /// `text` with every secret and credential-shaped value replaced by `***`.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for n in &self.needles {
            if out.contains(n.as_str()) {
                out = out.replace(n.as_str(), "***");
            }
        }
        let out = after_schemes(&out);
        let out = after_keys(&out);
        crate::redact_url(&out)
    }
}

const STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn base64(b: &[u8], alphabet: &[u8; 64]) -> String {
    let mut out = String::with_capacity(b.len().div_ceil(3) * 4);
    for chunk in b.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(alphabet[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn percent(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Characters a credential token is made of (base64, JWTs, hex, opaque ids).
fn token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | '+' | '/' | '=' | '%')
}

/// `Bearer abc…` → `Bearer ***` (case-insensitive scheme; any token of 4+ characters).
fn after_schemes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    'outer: while !rest.is_empty() {
        let lower = rest.to_ascii_lowercase();
        let mut best: Option<(usize, usize)> = None;
        for s in SCHEMES {
            let mut from = 0;
            while let Some(i) = lower[from..].find(s) {
                let at = from + i;
                let before_ok =
                    at == 0 || !lower[..at].ends_with(|c: char| c.is_ascii_alphanumeric());
                let after = &rest[at + s.len()..];
                let gap = after.len() - after.trim_start_matches([' ', '\t']).len();
                if before_ok && gap > 0 {
                    let word: String = after[gap..]
                        .chars()
                        .take_while(|c| token_char(*c))
                        .collect();
                    let tok = word.len();
                    // `Bearer` always introduces a credential; `basic`,
                    // `token` and `apikey` only before something that looks
                    // like one ("token rejected", "basic checks" are prose).
                    let mixed = word.chars().any(|c| c.is_ascii_uppercase())
                        && word.chars().any(|c| c.is_ascii_lowercase());
                    let looks_secret = s == "bearer"
                        || (tok >= 8 && (mixed || word.chars().any(|c| !c.is_ascii_alphabetic())));
                    if tok >= SECRET_CHARS_MIN && looks_secret && best.is_none_or(|(b, _)| at < b) {
                        best = Some((at, s.len() + gap + tok));
                    }
                }
                from = at + s.len();
            }
        }
        match best {
            Some((at, len)) => {
                let scheme_end = at + rest[at..].find([' ', '\t']).unwrap_or(len);
                out.push_str(&rest[..scheme_end]);
                out.push_str(" ***");
                rest = &rest[at + len..];
            }
            None => {
                out.push_str(rest);
                break 'outer;
            }
        }
    }
    out
}

/// `token=abc`, `password: abc`, `"client_secret":"abc"` → the value as `***`.
fn after_keys(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let mut matched = None;
        for k in KEYS {
            if lower[i..].starts_with(k)
                && (i == 0
                    || !lower[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_'))
            {
                let after = &text[i + k.len()..];
                // optional closing quote of a JSON key, spaces, then ':' or '='
                let t = after.trim_start_matches(['"', '\'']).trim_start();
                if let Some(v) = t.strip_prefix([':', '=']) {
                    let v0 = v.trim_start();
                    let quoted = v0.starts_with(['"', '\'']);
                    let body = v0.trim_start_matches(['"', '\'']);
                    let n = body
                        .chars()
                        .take_while(|c| {
                            if quoted {
                                !matches!(c, '"' | '\'')
                            } else {
                                !c.is_whitespace() && !matches!(c, '&' | ',' | ';' | '}')
                            }
                        })
                        .map(char::len_utf8)
                        .sum::<usize>();
                    let scheme_first = ["bearer ", "basic "]
                        .iter()
                        .any(|w| body.to_ascii_lowercase().starts_with(w));
                    if n > 0 && !scheme_first {
                        let value_start = text.len() - body.len();
                        matched = Some((value_start, value_start + n));
                    }
                }
                break;
            }
        }
        match matched {
            Some((vs, ve)) => {
                out.push_str(&text[i..vs]);
                out.push_str("***");
                i = ve;
            }
            None => {
                let c = text[i..].chars().next().map_or(1, char::len_utf8);
                out.push_str(&text[i..i + c]);
                i += c;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_every_form_are_removed() {
        let s = Scrubber::new(["S3cret/Tok+en", "ab"]);
        for text in [
            "token rejected: S3cret/Tok+en",
            "saw UzNjcmV0L1RvaytlbjwA",
            "auth=UzNjcmV0L1RvaytlbjwA",
        ] {
            assert!(!s.scrub(text).contains("S3cret"), "{text}");
        }
        assert_eq!(
            s.scrub(&format!("echo {}", base64(b"S3cret/Tok+en", STD))),
            "echo ***"
        );
        assert_eq!(s.scrub("q=S3cret%2FTok%2Ben&x=1"), "q=***&x=1");
        assert_eq!(s.scrub("ab is short"), "ab is short");
    }

    #[test]
    fn credential_shaped_text_is_removed_without_knowing_the_secret() {
        let s = Scrubber::default();
        assert_eq!(
            s.scrub("token rejected: Bearer eyJhbGciOi.xyz-123"),
            "token rejected: Bearer ***"
        );
        assert_eq!(
            s.scrub("Authorization: Basic YWxpY2U6cHc="),
            "Authorization: Basic ***"
        );
        assert_eq!(s.scrub("basic   dXNlcjpwYXNz rest"), "basic *** rest");
        assert_eq!(
            s.scrub(r#"{"client_secret": "abc123", "x": 1}"#),
            r#"{"client_secret": "***", "x": 1}"#
        );
        assert_eq!(
            s.scrub("access_token=zzz&page=2"),
            "access_token=***&page=2"
        );
        assert_eq!(s.scrub("password : hunter22"), "password : ***");
        assert_eq!(s.scrub("https://u:p@h/x"), "https://***@h/x");
        // Ordinary words stay.
        assert_eq!(
            s.scrub("the tokenizer failed; basic checks ok"),
            "the tokenizer failed; basic checks ok"
        );
        assert_eq!(
            s.scrub("HTTP 500: internal error"),
            "HTTP 500: internal error"
        );
    }

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64(b"alice:pw", STD), "YWxpY2U6cHc=");
        assert_eq!(base64(b"", STD), "");
        assert_eq!(base64(b"f", STD), "Zg==");
        assert_eq!(base64(b"fo", STD), "Zm8=");
        assert_eq!(base64(b"\xfb\xff", URL), "-_8=");
    }
}
