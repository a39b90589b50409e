//! An LDAP proxy that makes slapd answer like Active Directory's ranged
//! attribute retrieval. AD returns a multi-valued attribute with more values
//! than its `MaxValRange` (1500 by default) in chunks: a search asking for
//! `member` gets `member;range=0-1499` (and no plain `member`); the client
//! then asks for `member;range=1500-*` (or `member;range=1500-2999`) and gets
//! `member;range=1500-2999` for a middle chunk or `member;range=1500-*` for
//! the last one (the `*` marks the end). slapd has no such thing.
//!
//! The proxy (in-process, on its own thread and tokio runtime, so that a test
//! blocking on `ldapsearch` does not stall it) speaks LDAPv3 BER and forwards
//! every message both ways byte for byte, except:
//! - a SearchRequest (application 3) asking for `member;range=LO-HI` or
//!   `member;range=LO-*` (any case) asks slapd for `member` instead, and the
//!   range is remembered under the request's message ID;
//! - a SearchResultEntry (application 4) whose `member` holds more than
//!   `max_values` values, or that answers a ranged request, carries
//!   `member;range=LO-HI` with values LO..=HI, where LO is the asked low
//!   bound (0 if none) and HI = min(LO + `max_values` - 1, asked HI, n - 1);
//!   HI is written `*` when it is the last value. A ranged request whose LO
//!   is past the last value gets no `member` at all. An attribute of at most
//!   `max_values` values with no range asked passes unchanged, as in AD.
//!
//! Messages are framed by the outer SEQUENCE's definite length (short or long
//! form), whether they span reads or share one; past anything it cannot frame
//! (an indefinite length, a non-SEQUENCE), a connection's direction is copied
//! raw. The BER itself is read and written with `lber`, `ldap3`'s codec.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
};

use bytes::BytesMut;
use lber::{
    common::TagClass,
    structure::{PL, StructureTag},
};
use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::oneshot,
};

use crate::Error;

/// LDAPv3 protocolOp tags (application class).
const SEARCH_REQUEST: u64 = 3;
const SEARCH_RESULT_ENTRY: u64 = 4;
const SEARCH_RESULT_DONE: u64 = 5;
/// The one attribute served in ranges.
const RANGED: &[u8] = b"member";
/// How much one socket read takes.
const READ_CHUNK: usize = 64 * 1024;

/// The range a client asked: `member;range=LO-HI` (`hi` = `Some(HI)`) or
/// `member;range=LO-*` (`hi` = `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeAsk {
    pub lo: usize,
    pub hi: Option<usize>,
}

/// A running proxy; dropping it stops it and closes its connections.
pub struct AdRangeProxy {
    addr: SocketAddr,
    ranged: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AdRangeProxy {
    /// Proxies `127.0.0.1:PORT` (a free port) to `upstream`, serving `member`
    /// in ranges of `max_values` values (AD's `MaxValRange`; at least 1).
    pub fn start(upstream: SocketAddr, max_values: usize) -> Self {
        Self::try_start(upstream, max_values).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Self::start`], returning errors instead of panicking.
    pub fn try_start(upstream: SocketAddr, max_values: usize) -> Result<Self, Error> {
        let max_values = max_values.max(1);
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(Error::io("binding the AD range proxy on 127.0.0.1"))?;
        listener
            .set_nonblocking(true)
            .map_err(Error::io("making the proxy's socket non-blocking"))?;
        let addr = listener
            .local_addr()
            .map_err(Error::io("reading the proxy's address"))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(Error::io("building the proxy's runtime"))?;
        let listener = {
            let _in_rt = rt.enter();
            TcpListener::from_std(listener).map_err(Error::io("registering the proxy's socket"))?
        };
        let ranged = Arc::new(AtomicUsize::new(0));
        let (stop, stopped) = oneshot::channel();
        let counter = ranged.clone();
        let thread = std::thread::Builder::new()
            .name("ad-range-proxy".into())
            .spawn(move || {
                rt.block_on(async move {
                    tokio::select! {
                        _ = stopped => {}
                        () = accept_loop(listener, upstream, max_values, counter) => {}
                    }
                });
                // Dropping the runtime here cancels the open connections.
            })
            .map_err(Error::io("starting the proxy's thread"))?;
        Ok(Self {
            addr,
            ranged,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Where clients connect (`127.0.0.1:PORT`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ldap://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("ldap://{}", self.addr)
    }

    /// How many `member` attributes were served as ranges so far.
    pub fn ranged_entries(&self) -> usize {
        self.ranged.load(Ordering::SeqCst)
    }
}

impl Drop for AdRangeProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    max_values: usize,
    ranged: Arc<AtomicUsize>,
) {
    while let Ok((client, _)) = listener.accept().await {
        let ranged = ranged.clone();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(upstream).await else {
                return;
            };
            serve(client, server, max_values, &ranged).await;
        });
    }
}

/// One client connection: requests up, answers down, with the ranges asked
/// on this connection (message IDs are per connection) shared between them.
async fn serve(client: TcpStream, server: TcpStream, max_values: usize, ranged: &AtomicUsize) {
    let asks: Mutex<HashMap<i64, RangeAsk>> = Mutex::new(HashMap::new());
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = relay(cr, sw, |msg| {
        let (id, op) = peek(msg)?;
        if op != SEARCH_REQUEST {
            return None;
        }
        let mut asks = asks.lock().unwrap_or_else(PoisonError::into_inner);
        match rewrite_search_request(msg) {
            Some((ask, out)) => {
                asks.insert(id, ask);
                Some(out)
            }
            None => {
                asks.remove(&id);
                None
            }
        }
    });
    let down = relay(sr, cw, |msg| {
        let (id, op) = peek(msg)?;
        let mut asks = asks.lock().unwrap_or_else(PoisonError::into_inner);
        match op {
            SEARCH_RESULT_ENTRY => {
                let out = rewrite_search_entry(msg, asks.get(&id).copied(), max_values)?;
                ranged.fetch_add(1, Ordering::SeqCst);
                Some(out)
            }
            SEARCH_RESULT_DONE => {
                asks.remove(&id);
                None
            }
            _ => None,
        }
    });
    tokio::join!(up, down);
}

/// Copies `from` to `to` message by message, sending `rewrite(msg)` in place
/// of a message when it gives one; raw once the stream cannot be framed.
async fn relay<R, W>(mut from: R, mut to: W, mut rewrite: impl FnMut(&[u8]) -> Option<Vec<u8>>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; READ_CHUNK];
    let mut raw = false;
    loop {
        let n = match from.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if raw {
            if to.write_all(&chunk[..n]).await.is_err() {
                break;
            }
            continue;
        }
        pending.extend_from_slice(&chunk[..n]);
        let mut out = Vec::with_capacity(pending.len());
        let mut start = 0;
        while start < pending.len() {
            match frame_len(&pending[start..]) {
                Ok(Some(len)) => {
                    let msg = &pending[start..start + len];
                    match rewrite(msg) {
                        Some(new) => out.extend_from_slice(&new),
                        None => out.extend_from_slice(msg),
                    }
                    start += len;
                }
                Ok(None) => break,
                Err(()) => {
                    out.extend_from_slice(&pending[start..]);
                    start = pending.len();
                    raw = true;
                }
            }
        }
        pending.drain(..start);
        if !out.is_empty() && to.write_all(&out).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// A BER header at the start of `buf`: (header length, content length);
/// `Ok(None)` when `buf` ends inside it, `Err` for an indefinite or absurd
/// length or a multi-byte tag (LDAP uses neither).
fn header(buf: &[u8]) -> Result<Option<(usize, usize)>, ()> {
    let (Some(&tag), Some(&first)) = (buf.first(), buf.get(1)) else {
        return Ok(None);
    };
    if tag & 0x1f == 0x1f || first == 0x80 {
        return Err(());
    }
    if first < 0x80 {
        return Ok(Some((2, usize::from(first))));
    }
    let n = usize::from(first & 0x7f);
    if n > std::mem::size_of::<usize>() {
        return Err(());
    }
    let Some(bytes) = buf.get(2..2 + n) else {
        return Ok(None);
    };
    let len = bytes
        .iter()
        .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
    Ok(Some((2 + n, len)))
}

/// The length of the whole LDAPMessage at the start of `buf`: `Ok(None)`
/// while incomplete, `Err` when `buf` does not start with a definite-length
/// SEQUENCE.
fn frame_len(buf: &[u8]) -> Result<Option<usize>, ()> {
    if buf.first().is_some_and(|&t| t != 0x30) {
        return Err(());
    }
    let Some((head, len)) = header(buf)? else {
        return Ok(None);
    };
    let total = head.checked_add(len).ok_or(())?;
    Ok((buf.len() >= total).then_some(total))
}

/// A whole LDAPMessage's message ID and protocolOp tag number (application
/// class), read from the headers alone.
fn peek(msg: &[u8]) -> Option<(i64, u64)> {
    let (head, _) = header(msg).ok()??;
    let rest = msg.get(head..)?;
    if rest.first() != Some(&0x02) {
        return None;
    }
    let (id_head, id_len) = header(rest).ok()??;
    if id_len == 0 || id_len > 8 {
        return None;
    }
    let id_bytes = rest.get(id_head..id_head + id_len)?;
    // Two's complement, big-endian (LDAP's IDs are 0..2^31-1).
    let sign = if id_bytes[0] & 0x80 != 0 { -1i64 } else { 0 };
    let id = id_bytes
        .iter()
        .fold(sign, |acc, &b| (acc << 8) | i64::from(b));
    let op = *rest.get(id_head + id_len)?;
    (op >> 6 == 1).then_some((id, u64::from(op & 0x1f)))
}

/// `member;range=LO-HI` or `member;range=LO-*` (any case) as a [`RangeAsk`];
/// `None` for anything else (including HI below LO).
pub fn parse_range_selector(attr: &[u8]) -> Option<RangeAsk> {
    let (name, option) = std::str::from_utf8(attr).ok()?.split_once(';')?;
    if !name.as_bytes().eq_ignore_ascii_case(RANGED) {
        return None;
    }
    let (key, bounds) = option.split_once('=')?;
    if !key.eq_ignore_ascii_case("range") {
        return None;
    }
    let (lo, hi) = bounds.split_once('-')?;
    let lo = lo.parse().ok()?;
    let hi = match hi {
        "*" => None,
        h => Some(h.parse().ok().filter(|&h| h >= lo)?),
    };
    Some(RangeAsk { lo, hi })
}

fn parse_message(msg: &[u8]) -> Option<StructureTag> {
    match lber::parse::parse_tag(msg) {
        Ok(([], tag)) => Some(tag),
        _ => None,
    }
}

fn encode(tag: StructureTag) -> Option<Vec<u8>> {
    let mut buf = BytesMut::new();
    lber::write::encode_into(&mut buf, tag).ok()?;
    Some(buf.to_vec())
}

/// The fields of `msg`'s protocolOp when it is application `op`.
fn op_fields(msg: &mut StructureTag, op: u64) -> Option<&mut Vec<StructureTag>> {
    let PL::C(items) = &mut msg.payload else {
        return None;
    };
    let op_tag = items.get_mut(1)?;
    if op_tag.class != TagClass::Application || op_tag.id != op {
        return None;
    }
    match &mut op_tag.payload {
        PL::C(fields) => Some(fields),
        PL::P(_) => None,
    }
}

/// A SearchRequest whose attribute list asks a `member` range, with each
/// such selector replaced by the bare name: (the first range asked, the new
/// message). `None` when there is nothing to change.
pub fn rewrite_search_request(msg: &[u8]) -> Option<(RangeAsk, Vec<u8>)> {
    let mut tag = parse_message(msg)?;
    let fields = op_fields(&mut tag, SEARCH_REQUEST)?;
    // baseObject, scope, derefAliases, sizeLimit, timeLimit, typesOnly,
    // filter, attributes.
    let PL::C(attrs) = &mut fields.get_mut(7)?.payload else {
        return None;
    };
    let mut ask = None;
    for attr in attrs.iter_mut() {
        let PL::P(name) = &mut attr.payload else {
            continue;
        };
        if let Some(r) = parse_range_selector(name) {
            ask.get_or_insert(r);
            name.truncate(RANGED.len());
        }
    }
    let ask = ask?;
    Some((ask, encode(tag)?))
}

/// What [`range_attribute`] did to one attribute.
enum Ranged {
    Kept,
    Changed,
    Dropped,
}

/// A SearchResultEntry with its `member` served as a range (see the module
/// doc); `None` when the entry passes unchanged.
pub fn rewrite_search_entry(
    msg: &[u8],
    ask: Option<RangeAsk>,
    max_values: usize,
) -> Option<Vec<u8>> {
    let mut tag = parse_message(msg)?;
    let fields = op_fields(&mut tag, SEARCH_RESULT_ENTRY)?;
    // objectName, attributes.
    let PL::C(attrs) = &mut fields.get_mut(1)?.payload else {
        return None;
    };
    let mut changed = false;
    attrs.retain_mut(|attr| {
        let r = range_attribute(attr, ask, max_values.max(1));
        changed |= !matches!(r, Ranged::Kept);
        !matches!(r, Ranged::Dropped)
    });
    changed.then(|| encode(tag)).flatten()
}

/// One PartialAttribute (SEQUENCE of type and SET of values): a `member`
/// past `max` values or answering `ask` becomes `member;range=LO-HI`.
fn range_attribute(attr: &mut StructureTag, ask: Option<RangeAsk>, max: usize) -> Ranged {
    let PL::C(parts) = &mut attr.payload else {
        return Ranged::Kept;
    };
    let [ty, vals] = parts.as_mut_slice() else {
        return Ranged::Kept;
    };
    let (PL::P(name), PL::C(values)) = (&mut ty.payload, &mut vals.payload) else {
        return Ranged::Kept;
    };
    let n = values.len();
    if !name.eq_ignore_ascii_case(RANGED) || (n <= max && ask.is_none()) {
        return Ranged::Kept;
    }
    let RangeAsk { lo, hi: asked_hi } = ask.unwrap_or(RangeAsk { lo: 0, hi: None });
    if lo >= n {
        return Ranged::Dropped;
    }
    let mut hi = lo.saturating_add(max - 1).min(n - 1);
    if let Some(h) = asked_hi {
        hi = hi.min(h);
    }
    let end = (hi < n - 1).then(|| hi.to_string());
    let end = end.as_deref().unwrap_or("*");
    name.extend_from_slice(format!(";range={lo}-{end}").as_bytes());
    values.truncate(hi + 1);
    values.drain(..lo);
    Ranged::Changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prim(class: TagClass, id: u64, bytes: &[u8]) -> StructureTag {
        StructureTag {
            class,
            id,
            payload: PL::P(bytes.to_vec()),
        }
    }

    fn cons(class: TagClass, id: u64, items: Vec<StructureTag>) -> StructureTag {
        StructureTag {
            class,
            id,
            payload: PL::C(items),
        }
    }

    fn octets(s: &str) -> StructureTag {
        prim(TagClass::Universal, 4, s.as_bytes())
    }

    fn message(id: u8, op: StructureTag) -> Vec<u8> {
        let int = prim(TagClass::Universal, 2, &[id]);
        encode(cons(TagClass::Universal, 16, vec![int, op])).unwrap()
    }

    fn search_request(id: u8, attrs: &[&str]) -> Vec<u8> {
        let u = TagClass::Universal;
        let op = cons(
            TagClass::Application,
            SEARCH_REQUEST,
            vec![
                octets("cn=big,ou=groups,dc=example,dc=org"),
                prim(u, 10, &[0]),
                prim(u, 10, &[0]),
                prim(u, 2, &[0]),
                prim(u, 2, &[0]),
                prim(u, 1, &[0]),
                prim(TagClass::Context, 7, b"objectClass"),
                cons(u, 16, attrs.iter().map(|a| octets(a)).collect()),
            ],
        );
        message(id, op)
    }

    fn member(i: usize) -> String {
        format!("uid=user{i},ou=people,dc=example,dc=org")
    }

    /// An entry with `cn` and `name` holding `n` member DNs.
    fn entry(id: u8, name: &str, n: usize) -> Vec<u8> {
        let u = TagClass::Universal;
        let attr = |ty: &str, vals: Vec<String>| {
            let vals = vals.iter().map(|v| octets(v)).collect();
            cons(u, 16, vec![octets(ty), cons(u, 17, vals)])
        };
        let attrs = vec![
            attr("cn", vec!["big".into()]),
            attr(name, (0..n).map(member).collect()),
        ];
        let op = cons(
            TagClass::Application,
            SEARCH_RESULT_ENTRY,
            vec![
                octets("cn=big,ou=groups,dc=example,dc=org"),
                cons(u, 16, attrs),
            ],
        );
        message(id, op)
    }

    fn text(t: &StructureTag) -> String {
        match &t.payload {
            PL::P(b) => String::from_utf8(b.clone()).unwrap(),
            PL::C(_) => panic!("constructed octets"),
        }
    }

    fn items(t: &StructureTag) -> &[StructureTag] {
        match &t.payload {
            PL::C(items) => items,
            PL::P(_) => panic!("primitive where constructed expected"),
        }
    }

    /// (type, values) of each attribute of an encoded entry.
    fn attributes(msg: &[u8]) -> Vec<(String, Vec<String>)> {
        let mut tag = parse_message(msg).unwrap();
        let fields = op_fields(&mut tag, SEARCH_RESULT_ENTRY).unwrap();
        let pair = |a: &StructureTag| {
            let p = items(a);
            (text(&p[0]), items(&p[1]).iter().map(text).collect())
        };
        items(&fields[1]).iter().map(pair).collect()
    }

    fn requested(msg: &[u8]) -> Vec<String> {
        let mut tag = parse_message(msg).unwrap();
        let fields = op_fields(&mut tag, SEARCH_REQUEST).unwrap();
        items(&fields[7]).iter().map(text).collect()
    }

    #[test]
    fn range_selectors() {
        let ask = |lo, hi| Some(RangeAsk { lo, hi });
        assert_eq!(parse_range_selector(b"member;range=0-*"), ask(0, None));
        assert_eq!(
            parse_range_selector(b"Member;Range=50-99"),
            ask(50, Some(99))
        );
        assert_eq!(
            parse_range_selector(b"MEMBER;RANGE=1500-*"),
            ask(1500, None)
        );
        for bad in [
            "member",
            "member;range=9-3",
            "member;range=a-*",
            "cn;range=0-*",
            "member;x=0-*",
        ] {
            assert_eq!(parse_range_selector(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn framing_by_the_outer_sequence() {
        let big = entry(9, "member", 120);
        assert!(
            big.len() > 256 && big[1] == 0x82,
            "long-form length expected"
        );
        assert_eq!(frame_len(&big), Ok(Some(big.len())));
        assert_eq!(frame_len(&big[..1]), Ok(None));
        assert_eq!(frame_len(&big[..3]), Ok(None));
        assert_eq!(frame_len(&big[..big.len() - 1]), Ok(None));
        let mut two = big.clone();
        two.extend_from_slice(&search_request(10, &["cn"]));
        assert_eq!(frame_len(&two), Ok(Some(big.len())));
        assert_eq!(frame_len(&[0x30, 0x80, 0, 0]), Err(()));
        assert_eq!(frame_len(&[0x04, 0x01, 0]), Err(()));
        assert_eq!(peek(&big), Some((9, SEARCH_RESULT_ENTRY)));
        assert_eq!(peek(&search_request(200, &[])), Some((-56, SEARCH_REQUEST)));
    }

    #[test]
    fn request_range_becomes_the_bare_attribute() {
        let req = search_request(7, &["cn", "Member;Range=50-99"]);
        let (ask, out) = rewrite_search_request(&req).unwrap();
        assert_eq!(
            ask,
            RangeAsk {
                lo: 50,
                hi: Some(99)
            }
        );
        assert_eq!(requested(&out), ["cn", "Member"]);
        assert_eq!(peek(&out), Some((7, SEARCH_REQUEST)));
        assert_eq!(
            rewrite_search_request(&search_request(7, &["member"])),
            None
        );
        assert_eq!(rewrite_search_request(&entry(7, "member", 3)), None);
    }

    #[test]
    fn entry_member_is_served_in_ranges() {
        let big = entry(3, "member", 120);
        let chunk = |ask, want_name: &str, want: std::ops::Range<usize>| {
            let out = rewrite_search_entry(&big, ask, 50).unwrap();
            let attrs = attributes(&out);
            assert_eq!(attrs[0], ("cn".to_owned(), vec!["big".to_owned()]));
            assert_eq!(attrs[1].0, want_name);
            assert_eq!(attrs[1].1, want.map(member).collect::<Vec<_>>());
            assert_eq!(peek(&out), Some((3, SEARCH_RESULT_ENTRY)));
        };
        let ask = |lo, hi| Some(RangeAsk { lo, hi });
        chunk(None, "member;range=0-49", 0..50);
        chunk(ask(50, None), "member;range=50-99", 50..100);
        chunk(ask(50, Some(99)), "member;range=50-99", 50..100);
        chunk(ask(100, None), "member;range=100-*", 100..120);
        chunk(ask(60, Some(69)), "member;range=60-69", 60..70);
        chunk(ask(110, Some(500)), "member;range=110-*", 110..120);
        // Past the end: no member at all.
        let out = rewrite_search_entry(&big, ask(120, None), 50).unwrap();
        assert_eq!(attributes(&out).len(), 1);
    }

    #[test]
    fn small_or_other_attributes_pass_unchanged() {
        assert_eq!(
            rewrite_search_entry(&entry(1, "member", 50), None, 50),
            None
        );
        assert_eq!(
            rewrite_search_entry(&entry(1, "uniqueMember", 120), None, 50),
            None
        );
        assert_eq!(
            rewrite_search_entry(&search_request(1, &["member"]), None, 50),
            None
        );
        // A range asked of a small attribute: the whole of it, as `0-*`.
        let ask = Some(RangeAsk { lo: 0, hi: None });
        let out = rewrite_search_entry(&entry(1, "MEMBER", 30), ask, 50).unwrap();
        assert_eq!(attributes(&out)[1].0, "MEMBER;range=0-*");
        assert_eq!(attributes(&out)[1].1.len(), 30);
    }

    #[tokio::test]
    async fn relay_frames_across_reads_and_within_one() {
        let (mut client, relay_in) = tokio::io::duplex(1 << 20);
        let (relay_out, mut server) = tokio::io::duplex(1 << 20);
        let task = tokio::spawn(relay(relay_in, relay_out, |msg| {
            rewrite_search_entry(msg, None, 50)
        }));
        let (small, big) = (entry(1, "member", 2), entry(2, "member", 120));
        let mut sent = small.clone();
        sent.extend_from_slice(&big);
        sent.extend_from_slice(&small);
        // Odd-sized writes: messages cut anywhere, two of them in one write.
        for piece in sent.chunks(97) {
            client.write_all(piece).await.unwrap();
            client.flush().await.unwrap();
            tokio::task::yield_now().await;
        }
        drop(client);
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        task.await.unwrap();
        let first = frame_len(&got).unwrap().unwrap();
        assert_eq!(&got[..first], &small[..]);
        let second = frame_len(&got[first..]).unwrap().unwrap();
        let ranged = attributes(&got[first..first + second]);
        assert_eq!(ranged[1].0, "member;range=0-49");
        assert_eq!(&got[first + second..], &small[..]);
    }
}
