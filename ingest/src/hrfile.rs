//! HR file drops: CSV and JSON Lines exports an HR system leaves in a
//! folder, read as a source.
//!
//! Which file: the newest (modification time, then name) whose name matches
//! the pattern (one `*`) and that has *landed*: with a control file or a
//! manifest, only a file whose control file / manifest exists (the exporter
//! writes it last); with a trailer, the newest file, whose trailer then
//! proves it whole.
//!
//! Completeness comes from the export itself, never assumed: the row count
//! of its trailer (the last row, starting with the configured word), of its
//! manifest (a JSON file beside it, the count at a JSON pointer) or of its
//! control file (the first number in it). Each data row is a record; a row
//! that does not read (wrong number of fields, no id, a status that is no
//! known word, an end date that is no date) is rejected naming its line; a
//! file that ends inside a line, or without its trailer, is truncated at
//! that line; a count that differs from the rows read names the line (or
//! file) that declared it. Parsing ([`parse`]) is pure over any reader;
//! [`pick`] reads the folder.
//!
//! Layout: this file; `tests` (clean, cut, bad-row and count cases, picking).

use std::{
    collections::BTreeMap,
    io::BufRead,
    path::{Path, PathBuf},
    time::SystemTime,
};

use govledger_proto::v1::{EntityType, ErrorClass, RecordObserved, RecordRejected, RejectReason};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::{rest::ActiveWords, scim::Item};

/// The largest control file or manifest read (they hold a count).
pub const SIDE_FILE_MAX_BYTES: u64 = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    JsonLines,
}

/// Where a file's row count comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completeness {
    /// The last row starts with this word and ends with the count
    /// (`TRAILER,1234`; JSON Lines: `{"TRAILER": 1234}`).
    Trailer(String),
    /// `<file><suffix>` beside the file (e.g. `.ctl`), its first number the count.
    ControlFile(String),
    /// `<file><suffix>` beside the file (e.g. `.manifest.json`), a JSON
    /// document with the count at `pointer`.
    Manifest { suffix: String, pointer: String },
}

/// Which column holds what.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Columns {
    pub id: String,
    pub status: Option<String>,
    pub email: Option<String>,
    pub manager: Option<String>,
    pub end_date: Option<String>,
    pub name: Option<String>,
}

/// What an HR drop folder is.
#[derive(Debug, Clone, PartialEq)]
pub struct FileSpec {
    pub dir: PathBuf,
    /// A file name with one `*`, e.g. `workers_*.csv`.
    pub pattern: String,
    pub format: Format,
    pub columns: Columns,
    pub status_words: ActiveWords,
    pub completeness: Completeness,
    /// Extra kept attributes: (ledger name, column).
    pub attributes: Vec<(String, String)>,
    /// CSV delimiter.
    pub delimiter: u8,
}

/// Whether `name` matches `pattern` (one `*`, or none: the exact name).
pub fn matches(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((pre, post)) => {
            name.len() >= pre.len() + post.len() && name.starts_with(pre) && name.ends_with(post)
        }
    }
}

/// The file a run reads, with its control file or manifest if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picked {
    pub path: PathBuf,
    pub side: Option<PathBuf>,
    /// Matching files not landed yet (no control file / manifest), newer
    /// than the one picked.
    pub waiting: Vec<String>,
}

/// The newest landed file of the folder, or why there is none.
pub fn pick(spec: &FileSpec) -> Result<Picked, String> {
    let rd = std::fs::read_dir(&spec.dir)
        .map_err(|e| format!("reading the folder {}: {e}", spec.dir.display()))?;
    let mut found: Vec<(SystemTime, String)> = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|e| format!("reading the folder {}: {e}", spec.dir.display()))?;
        let name = ent.file_name().to_string_lossy().into_owned();
        if !matches(&spec.pattern, &name) || side_suffix(spec).is_some_and(|s| name.ends_with(s)) {
            continue;
        }
        let Ok(md) = ent.metadata() else { continue };
        if md.is_file() {
            found.push((md.modified().unwrap_or(SystemTime::UNIX_EPOCH), name));
        }
    }
    found.sort();
    let mut waiting = Vec::new();
    for (_, name) in found.iter().rev() {
        let path = spec.dir.join(name);
        match side_suffix(spec) {
            None => {
                return Ok(Picked {
                    path,
                    side: None,
                    waiting,
                });
            }
            Some(suffix) => {
                let side = spec.dir.join(format!("{name}{suffix}"));
                if side.is_file() {
                    return Ok(Picked {
                        path,
                        side: Some(side),
                        waiting,
                    });
                }
                waiting.push(name.clone());
            }
        }
    }
    Err(match waiting.len() {
        0 => format!(
            "no file matching {:?} in {}",
            spec.pattern,
            spec.dir.display()
        ),
        _ => format!(
            "no file matching {:?} in {} has landed: {} without its {} file",
            spec.pattern,
            spec.dir.display(),
            waiting.join(", "),
            side_suffix(spec).unwrap_or_default()
        ),
    })
}

fn side_suffix(spec: &FileSpec) -> Option<&str> {
    match &spec.completeness {
        Completeness::Trailer(_) => None,
        Completeness::ControlFile(s) => Some(s),
        Completeness::Manifest { suffix, .. } => Some(suffix),
    }
}

/// The count a control file or manifest declares.
pub fn side_count(spec: &FileSpec, text: &str) -> Result<u64, String> {
    match &spec.completeness {
        Completeness::Manifest { pointer, .. } => {
            let v: Value =
                serde_json::from_str(text).map_err(|e| format!("the manifest is not JSON: {e}"))?;
            match v.pointer(pointer) {
                Some(Value::Number(n)) => n
                    .as_u64()
                    .ok_or_else(|| format!("the manifest's {pointer} is not a count")),
                Some(Value::String(s)) => s
                    .trim()
                    .parse()
                    .map_err(|_| format!("the manifest's {pointer} ({s:?}) is not a count")),
                _ => Err(format!("the manifest has no count at {pointer}")),
            }
        }
        _ => first_number(text).ok_or_else(|| "the control file holds no row count".to_owned()),
    }
}

fn first_number(s: &str) -> Option<u64> {
    s.split(|c: char| !c.is_ascii_digit())
        .find(|t| !t.is_empty())
        .and_then(|t| t.parse().ok())
}

/// What a file said: its records and rejections (in file order), the count
/// it declared and where, and whether (and where) it is cut short.
#[derive(Debug, Default, PartialEq)]
pub struct Parsed {
    pub items: Vec<Item>,
    pub data_rows: u64,
    /// The declared count and the line that declared it (0 = a side file).
    pub declared: Option<(u64, u64)>,
    /// `line N: why` when the file is cut short.
    pub truncated: Option<String>,
}

/// Parses a whole file read from `r` (`name` labels its lines). `today` is
/// the date end dates are compared with (`YYYY-MM-DD`).
pub fn parse(spec: &FileSpec, name: &str, r: impl BufRead) -> Result<Parsed, String> {
    let mut lines = Lines::new(r);
    let mut out = Parsed::default();
    let header: Option<Vec<String>> = match spec.format {
        Format::Csv => match lines.next_line()? {
            None => {
                out.truncated = Some(format!("{name} line 1: the file is empty (no header)"));
                return Ok(out);
            }
            Some((_, text, _)) => Some(split_csv(&text, spec.delimiter)?),
        },
        Format::JsonLines => None,
    };
    let trailer_word = match &spec.completeness {
        Completeness::Trailer(w) => Some(w.as_str()),
        _ => None,
    };
    let mut last_line = 0;
    while let Some((line, text, ended)) = lines.next_line()? {
        last_line = line;
        if text.trim().is_empty() {
            continue;
        }
        let key = format!("{name} line {line}");
        if out.declared.is_some() {
            out.items.push(reject(
                &key,
                RejectReason::SchemaViolation,
                "a row after the trailer".into(),
                line,
            ));
            continue;
        }
        // The trailer (whole even without a final line break).
        if let Some(n) = trailer_word.and_then(|w| trailer_count(&text, w, spec)) {
            out.declared = Some((n, line));
            continue;
        }
        if !ended {
            out.truncated = Some(format!("{key}: the file ends inside this line (truncated)"));
            out.items.push(reject(
                &key,
                RejectReason::SchemaViolation,
                "the file ends inside this line (truncated)".into(),
                line,
            ));
            break;
        }
        out.data_rows += 1;
        let row = match &header {
            Some(h) => csv_row(h, &text, spec.delimiter),
            None => json_row(&text),
        };
        let row = match row {
            Ok(r) => r,
            Err(why) => {
                out.items
                    .push(reject(&key, RejectReason::SchemaViolation, why, line));
                continue;
            }
        };
        out.items.push(record(spec, &key, &row, &text, line));
    }
    if trailer_word.is_some() && out.declared.is_none() && out.truncated.is_none() {
        out.truncated = Some(format!(
            "{name} line {}: the file ends without its trailer row (truncated, or still being written)",
            last_line + 1
        ));
    }
    Ok(out)
}

/// The count of a trailer row (`WORD,60`, `{"WORD": 60}`), if `text` is one.
fn trailer_count(text: &str, word: &str, spec: &FileSpec) -> Option<u64> {
    match spec.format {
        Format::Csv => {
            let first = text
                .split(spec.delimiter as char)
                .next()?
                .trim()
                .trim_matches('"');
            if !first.eq_ignore_ascii_case(word) {
                return None;
            }
            text.rsplit(spec.delimiter as char)
                .next()
                .and_then(|n| n.trim().trim_matches('"').parse().ok())
        }
        Format::JsonLines => {
            let v: Value = serde_json::from_str(text).ok()?;
            let o = v.as_object()?;
            let (_, n) = o.iter().find(|(k, _)| k.eq_ignore_ascii_case(word))?;
            match n {
                Value::Number(n) => n.as_u64(),
                Value::Object(m) => m.values().find_map(Value::as_u64),
                _ => None,
            }
        }
    }
}

fn reject(key: &str, reason: RejectReason, detail: String, line: u64) -> Item {
    Item::Rejected(RecordRejected {
        page_key: key.to_owned(),
        reason: reason as i32,
        detail,
        index_in_page: u32::try_from(line).unwrap_or(u32::MAX),
        raw_digest: String::new(),
        entity_type: EntityType::User as i32,
    })
}

/// One CSV line's fields (RFC 4180 quoting; a quoted field does not span lines).
fn split_csv(text: &str, delimiter: u8) -> Result<Vec<String>, String> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(text.as_bytes());
    let mut rec = csv::StringRecord::new();
    match rdr.read_record(&mut rec) {
        Ok(true) => Ok(rec.iter().map(|f| f.trim().to_owned()).collect()),
        Ok(false) => Ok(Vec::new()),
        Err(e) => Err(format!("the row does not read as CSV: {e}")),
    }
}

fn csv_row(
    header: &[String],
    text: &str,
    delimiter: u8,
) -> Result<BTreeMap<String, String>, String> {
    let fields = split_csv(text, delimiter)?;
    if fields.len() != header.len() {
        return Err(format!(
            "{} fields where the header has {}",
            fields.len(),
            header.len()
        ));
    }
    Ok(header.iter().cloned().zip(fields).collect())
}

fn json_row(text: &str) -> Result<BTreeMap<String, String>, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("the row is not JSON: {e}"))?;
    let Value::Object(o) = v else {
        return Err("the row is not a JSON object".into());
    };
    Ok(o.into_iter()
        .filter_map(|(k, v)| {
            let s = match v {
                Value::String(s) => s,
                Value::Null => return None,
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                other => other.to_string(),
            };
            Some((k, s))
        })
        .collect())
}

/// `YYYY-MM-DD` (a time after it, as in `2026-11-30T00:00:00Z`, is cut off).
pub fn date(s: &str) -> Option<String> {
    let d = s.trim().get(..10)?;
    chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()?;
    Some(d.to_owned())
}

/// One data row as a record, or its rejection.
fn record(
    spec: &FileSpec,
    key: &str,
    row: &BTreeMap<String, String>,
    text: &str,
    line: u64,
) -> Item {
    let get = |col: &str| row.get(col).map(|v| v.trim()).filter(|v| !v.is_empty());
    let c = &spec.columns;
    let Some(id) = get(&c.id) else {
        return reject(
            key,
            RejectReason::MissingId,
            format!("no {} (the id column)", c.id),
            line,
        );
    };
    let active = match c.status.as_deref().and_then(get) {
        None => None,
        Some(word) => match spec.status_words.read(&Value::String(word.to_owned())) {
            Ok(a) => Some(a),
            Err(why) => {
                return reject(key, RejectReason::BadType, format!("{id}: {why}"), line);
            }
        },
    };
    let mut attributes = std::collections::HashMap::new();
    if let Some(d) = c.end_date.as_deref().and_then(get) {
        match date(d) {
            Some(d) => {
                attributes.insert("end_date".to_owned(), d);
            }
            None => {
                return reject(
                    key,
                    RejectReason::BadType,
                    format!("{id}: end date {d:?} is not a date (YYYY-MM-DD)"),
                    line,
                );
            }
        }
    }
    for (name, col) in [
        ("status", &c.status),
        ("email", &c.email),
        ("manager", &c.manager),
    ] {
        if let Some(v) = col.as_deref().and_then(get) {
            attributes.insert(name.to_owned(), v.to_owned());
        }
    }
    for (name, col) in &spec.attributes {
        if let Some(v) = get(col) {
            attributes.insert(name.clone(), v.to_owned());
        }
    }
    let display_name = c
        .name
        .as_deref()
        .and_then(get)
        .or_else(|| c.email.as_deref().and_then(get))
        .unwrap_or(id)
        .to_owned();
    Item::Observed(RecordObserved {
        entity_type: EntityType::User as i32,
        external_id: id.to_owned(),
        active,
        attribute_digest: Sha256::digest(text.trim_end().as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        page_key: key.to_owned(),
        display_name,
        attributes,
        ..Default::default()
    })
}

/// Lines of a reader with their numbers, each saying whether it ended with
/// a line break (the last one of a cut file does not). Invalid UTF-8 is an
/// error naming the line.
struct Lines<R> {
    r: R,
    n: u64,
    buf: Vec<u8>,
}

impl<R: BufRead> Lines<R> {
    fn new(r: R) -> Self {
        Self {
            r,
            n: 0,
            buf: Vec::new(),
        }
    }

    fn next_line(&mut self) -> Result<Option<(u64, String, bool)>, String> {
        self.buf.clear();
        let read = self
            .r
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| format!("reading line {}: {e}", self.n + 1))?;
        if read == 0 {
            return Ok(None);
        }
        self.n += 1;
        let ended = self.buf.last() == Some(&b'\n');
        let mut bytes = self.buf.as_slice();
        if self.n == 1 {
            bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        }
        let text = std::str::from_utf8(bytes)
            .map_err(|_| format!("line {} is not UTF-8", self.n))?
            .trim_end_matches(['\n', '\r'])
            .to_owned();
        Ok(Some((self.n, text, ended)))
    }
}

/// Reads the picked side file's count (bounded).
pub fn read_side(spec: &FileSpec, side: &Path) -> Result<u64, String> {
    use std::io::Read as _;
    let f = std::fs::File::open(side).map_err(|e| format!("opening {}: {e}", side.display()))?;
    let mut text = String::new();
    f.take(SIDE_FILE_MAX_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| format!("reading {}: {e}", side.display()))?;
    side_count(spec, &text).map_err(|e| format!("{}: {e}", side.display()))
}

/// The newest landed file, read: its path and name, what it holds, and its
/// side file's count.
#[derive(Debug)]
pub struct Newest {
    pub path: PathBuf,
    pub name: String,
    pub parsed: Parsed,
    pub side_count: Option<u64>,
}

/// Picks the newest landed file of the folder, reads its side file and
/// parses it (blocking I/O): what a run and `config check --live` read.
pub fn read_newest(spec: &FileSpec) -> Result<Newest, (ErrorClass, String)> {
    let picked = pick(spec).map_err(|why| (ErrorClass::NotFound, why))?;
    let name = picked
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let side_count = match &picked.side {
        Some(side) => Some(read_side(spec, side).map_err(|why| (ErrorClass::Parse, why))?),
        None => None,
    };
    let f = std::fs::File::open(&picked.path).map_err(|e| {
        (
            ErrorClass::Other,
            format!("opening {}: {e}", picked.path.display()),
        )
    })?;
    let parsed = parse(spec, &name, std::io::BufReader::new(f))
        .map_err(|why| (ErrorClass::Parse, format!("{name}: {why}")))?;
    Ok(Newest {
        path: picked.path,
        name,
        parsed,
        side_count,
    })
}

#[cfg(test)]
mod tests;
