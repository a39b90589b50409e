//! HR file parsing: clean, truncated, bad rows, counts, and picking the file.

use std::io::Cursor;

use super::*;

fn spec(completeness: Completeness) -> FileSpec {
    FileSpec {
        dir: PathBuf::new(),
        pattern: "workers_*.csv".into(),
        format: Format::Csv,
        columns: Columns {
            id: "employee_id".into(),
            status: Some("status".into()),
            email: Some("email".into()),
            manager: None,
            end_date: Some("end_date".into()),
            name: None,
        },
        status_words: ActiveWords {
            inverted: false,
            active: vec!["active".into()],
            inactive: vec!["terminated".into()],
        },
        completeness,
        attributes: vec![],
        delimiter: b',',
    }
}

fn trailer() -> FileSpec {
    spec(Completeness::Trailer("TRAILER".into()))
}

fn parse_str(s: &FileSpec, text: &str) -> Parsed {
    parse(s, "f.csv", Cursor::new(text.as_bytes().to_vec())).unwrap()
}

fn observed(p: &Parsed) -> Vec<(String, Option<bool>)> {
    p.items
        .iter()
        .filter_map(|i| match i {
            Item::Observed(r) => Some((r.external_id.clone(), r.active)),
            Item::Rejected(_) => None,
        })
        .collect()
}

fn rejected(p: &Parsed) -> Vec<String> {
    p.items
        .iter()
        .filter_map(|i| match i {
            Item::Rejected(r) => Some(format!("{}: {}", r.page_key, r.detail)),
            Item::Observed(_) => None,
        })
        .collect()
}

const HEAD: &str = "employee_id,email,status,end_date\n";

#[test]
fn a_clean_file_reads_whole() {
    let p = parse_str(
        &trailer(),
        &format!("\u{feff}{HEAD}E1,a@x,active,\nE2,b@x,TERMINATED,2026-11-30\nTRAILER,2\n"),
    );
    assert_eq!(
        observed(&p),
        vec![("E1".into(), Some(true)), ("E2".into(), Some(false))]
    );
    assert_eq!(p.declared, Some((2, 4)));
    assert_eq!((p.data_rows, p.truncated.as_deref()), (2, None));
    let Item::Observed(r) = &p.items[1] else {
        panic!()
    };
    assert_eq!(
        r.attributes.get("end_date").map(String::as_str),
        Some("2026-11-30")
    );
    assert_eq!(r.attributes.get("email").map(String::as_str), Some("b@x"));
    assert_eq!(r.page_key, "f.csv line 3");
    // A trailer without a final line break is whole too.
    let p = parse_str(&trailer(), &format!("{HEAD}E1,a@x,active,\nTRAILER,1"));
    assert_eq!((p.declared, p.truncated), (Some((1, 3)), None));
}

#[test]
fn a_cut_file_names_the_line() {
    let p = parse_str(&trailer(), &format!("{HEAD}E1,a@x,active,\nE2,b@x,act"));
    assert_eq!(
        p.truncated.as_deref(),
        Some("f.csv line 3: the file ends inside this line (truncated)")
    );
    assert_eq!(observed(&p).len(), 1);
    let p = parse_str(
        &trailer(),
        &format!("{HEAD}E1,a@x,active,\nE2,b@x,active,\n"),
    );
    assert!(
        p.truncated
            .as_deref()
            .is_some_and(|t| t.contains("line 4") && t.contains("without its trailer")),
        "{:?}",
        p.truncated
    );
    // Without a trailer rule, a last line without its break is still cut.
    let p = parse_str(
        &spec(Completeness::ControlFile(".ctl".into())),
        &format!("{HEAD}E1,a@x,active,"),
    );
    assert!(p.truncated.is_some());
    let p = parse_str(&trailer(), "");
    assert!(p.truncated.unwrap().contains("no header"));
}

#[test]
fn bad_rows_are_rejected_by_line() {
    let p = parse_str(
        &trailer(),
        &format!(
            "{HEAD}E1,a@x,active,\n,b@x,active,\nE3,c@x,on leave,\nE4,d@x,active,31/12/2026\nE5,e@x\nTRAILER,5\nE6,f@x,active,\n"
        ),
    );
    assert_eq!(observed(&p), vec![("E1".into(), Some(true))]);
    let r = rejected(&p);
    assert_eq!(r.len(), 5, "{r:?}");
    assert!(r[0].starts_with("f.csv line 3: no employee_id"), "{r:?}");
    assert!(
        r[1].starts_with("f.csv line 4: E3: status") && r[1].contains("on leave"),
        "{r:?}"
    );
    assert!(
        r[2].contains("line 5") && r[2].contains("not a date"),
        "{r:?}"
    );
    assert!(
        r[3].contains("line 6: 2 fields where the header has 4"),
        "{r:?}"
    );
    assert!(r[4].contains("line 8: a row after the trailer"), "{r:?}");
    assert_eq!(p.data_rows, 5);
}

#[test]
fn json_lines_read_too() {
    let mut s = trailer();
    s.format = Format::JsonLines;
    let p = parse_str(
        &s,
        "{\"employee_id\": \"E1\", \"status\": \"active\"}\n{\"employee_id\": 2, \"status\": \"terminated\"}\nnot json\n{\"TRAILER\": {\"count\": 3}}\n",
    );
    assert_eq!(
        observed(&p),
        vec![("E1".into(), Some(true)), ("2".into(), Some(false))]
    );
    assert_eq!(p.declared, Some((3, 4)));
    assert_eq!(rejected(&p).len(), 1);
}

#[test]
fn side_files_declare_counts() {
    let ctl = spec(Completeness::ControlFile(".ctl".into()));
    assert_eq!(side_count(&ctl, "rows=1234\n"), Ok(1234));
    assert!(side_count(&ctl, "none").is_err());
    let m = spec(Completeness::Manifest {
        suffix: ".manifest.json".into(),
        pointer: "/row_count".into(),
    });
    assert_eq!(side_count(&m, r#"{"row_count": 7}"#), Ok(7));
    assert_eq!(side_count(&m, r#"{"row_count": "7"}"#), Ok(7));
    assert!(
        side_count(&m, r#"{"rows": 7}"#)
            .unwrap_err()
            .contains("/row_count")
    );
}

#[test]
fn the_newest_landed_file_is_picked() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(Completeness::ControlFile(".ctl".into()));
    s.dir = dir.path().to_owned();
    assert!(pick(&s).unwrap_err().contains("no file matching"));
    let write = |name: &str, age_s: u64| {
        let p = dir.path().join(name);
        std::fs::write(&p, HEAD).unwrap();
        let t = SystemTime::now() - std::time::Duration::from_secs(age_s);
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(t)
            .unwrap();
    };
    write("workers_1.csv", 300);
    write("workers_1.csv.ctl", 300);
    write("workers_2.csv", 200);
    write("workers_2.csv.ctl", 200);
    write("workers_3.csv", 100);
    write("other.csv", 10);
    let p = pick(&s).unwrap();
    assert_eq!(p.path.file_name().unwrap(), "workers_2.csv");
    assert_eq!(p.side.unwrap().file_name().unwrap(), "workers_2.csv.ctl");
    assert_eq!(p.waiting, vec!["workers_3.csv".to_owned()]);
    // With a trailer rule the newest file is read (its trailer proves it).
    s.completeness = Completeness::Trailer("TRAILER".into());
    assert_eq!(pick(&s).unwrap().path.file_name().unwrap(), "workers_3.csv");
    assert!(matches("a*b", "ab") && matches("a*b", "axxb") && !matches("a*b", "ba"));
}
