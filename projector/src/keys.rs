//! Key layout of the one sled tree that holds every projection.
//!
//! Every key starts with a one-byte tag; string components are length-prefixed
//! (u32 big-endian) so no component can run into the next, and a prefix of
//! components is a usable scan prefix. Sequences are big-endian so they sort.

use govledger_proto::v1::EntityType;

pub const TAG_META: u8 = b'm';
pub const TAG_SOURCE: u8 = b's';
pub const TAG_RUN: u8 = b'r';
pub const TAG_SOURCE_RUN: u8 = b'q';
pub const TAG_PAGE: u8 = b'p';
pub const TAG_RUN_SEEN: u8 = b'u';
/// An identity's key. No record is stored under it: its record sits on a
/// page ([`crate::identity_page`]) and the page's number in a chunk of the
/// identity index under [`TAG_IDENTITY_INDEX`] ([`crate::identity_index`]).
pub const TAG_IDENTITY: u8 = b'i';
/// A chunk of the identity index: the key of its first identity with this
/// tag, see [`crate::identity_index`].
pub const TAG_IDENTITY_INDEX: u8 = b'j';
/// A page of identity records of one source, see [`crate::identity_page`].
pub const TAG_IDENTITY_PAGE: u8 = b'k';
pub const TAG_ACTION: u8 = b'a';
pub const TAG_EVENT_ID: u8 = b'e';
/// An event id in canonical UUID form, stored as its 16 bytes (17-byte key
/// instead of 41: smaller sled nodes for the one key every event writes).
pub const TAG_EVENT_UUID: u8 = b'E';
/// A block of time-ordered (UUID v7) event ids: see [`event_block_of`].
pub const TAG_EVENT_BLOCK: u8 = b'V';
pub const TAG_POISON: u8 = b'x';
pub const TAG_SOURCE_ACTION: u8 = b'b';
pub const TAG_OPEN_ACTION: u8 = b'o';
pub const TAG_BLOCKING_ACTION: u8 = b'y';
pub const TAG_HISTORY: u8 = b'h';
pub const TAG_LEAVES: u8 = b'l';
/// Decided alerts waiting to be stored in the alerts stream (the outbox):
/// `[TAG, seq u64 BE, index u32 BE]` → the `Alert`. Written in the batch
/// that decided them, removed once stored; not a projection record (outside
/// the state digest).
pub const TAG_ALERT_OUTBOX: u8 = b'z';

/// Merkle tiles of level ≥ 1 (`crate::tiles`): `[TAG, level, index u64 BE]` →
/// the entries computed so far. Derived from the leaf blocks and kept as a
/// cache of proofs: not a projection record (outside the state digest).
pub const TAG_TILE: u8 = b'T';

/// The identity map (`crate::identity_map`): a block of 256 page leaves of
/// one source, `prefix(TAG, [source]) + block u64 BE` → 32 bytes per page.
/// Derived from the identity pages in the commit that writes them (outside
/// the state digest, like the tiles: recomputable from the pages).
pub const TAG_IDMAP_BLOCK: u8 = b'M';
/// The identity map's record of one source, `prefix(TAG, [source])` → its
/// page count (u64 BE) and the root of each block of page leaves.
pub const TAG_IDMAP_SOURCE: u8 = b'N';

/// The key of the identity map's block `block` of `source`.
pub fn idmap_block_key(source: &str, block: u64) -> Vec<u8> {
    let mut k = prefix_with_room(&[TAG_IDMAP_BLOCK], &[source], 8);
    k.extend_from_slice(&block.to_be_bytes());
    k
}

/// (source, page number) of an identity page's key.
pub fn parse_identity_page_key(k: &[u8]) -> Option<(&str, u64)> {
    let rest = k.strip_prefix(&[TAG_IDENTITY_PAGE])?;
    let (len, rest) = rest.split_first_chunk::<4>()?;
    let len = u32::from_be_bytes(*len) as usize;
    let source = std::str::from_utf8(rest.get(..len)?).ok()?;
    let page = rest.get(len..)?;
    Some((source, u64::from_be_bytes(page.try_into().ok()?)))
}

/// The key of tile (`level`, `index`).
pub fn tile_key(level: u8, index: u64) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[0] = TAG_TILE;
    k[1] = level;
    k[2..].copy_from_slice(&index.to_be_bytes());
    k
}

/// The outbox key of the `index`th alert decided by the batch whose event `seq` decided it.
pub fn alert_outbox_key(seq: u64, index: u32) -> [u8; 13] {
    let mut k = [0u8; 13];
    k[0] = TAG_ALERT_OUTBOX;
    k[1..9].copy_from_slice(&seq.to_be_bytes());
    k[9..].copy_from_slice(&index.to_be_bytes());
    k
}

/// Sub-tags of [`TAG_HISTORY`].
pub const HISTORY_IDENTITY: u8 = b'i';
pub const HISTORY_ACTION: u8 = b'a';
pub const HISTORY_IDENTITY_ACTION: u8 = b'q';

/// Event ids kept per [`Key::EventBlock`] (16 bytes each). Ids past it go to
/// their own [`Key::EventId`] record, so a block stays under 8 KiB whatever
/// the producers' clocks say.
pub const EVENT_BLOCK_IDS_MAX: usize = 512;
/// Sub-blocks per millisecond (by the low bits of the id's random tail).
pub const EVENT_BLOCKS_PER_MS: u64 = 16;

/// RFC 6962 leaf hashes kept per [`Key::Leaves`] block (32 bytes each).
pub const LEAVES_PER_BLOCK: u64 = 256;

/// (source, entity type, external id)
pub type IdentityKey = (String, i32, String);
/// (run, entity type, external id)
pub type RunSeenKey = (String, i32, String);

/// A typed projection key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    Meta,
    Source(String),
    Run(String),
    /// Index: runs of a source, ordered by run id (UUID v7 sorts by time).
    SourceRun(String, String),
    /// (run, page key)
    Page(String, String),
    RunSeen(RunSeenKey),
    Identity(IdentityKey),
    Action(String),
    EventId(String),
    /// The ids (16 bytes each, in fold order) of UUID v7 events whose
    /// millisecond and sub-block this names (`ms << 8 | sub`).
    EventBlock(u64),
    Poison(u64),
    /// Index: actions of a source, ordered by action id.
    SourceAction(String, String),
    /// Index: actions of a source not concluded yet, or concluded UNVERIFIED
    /// and not confirmed late (what recovery and the OVERDUE scan look at,
    /// without reading every action ever submitted).
    OpenAction(String, String),
    /// Index: actions of a source that can block readiness: every action
    /// not CONFIRMED, and every confirmed one a later observation showed
    /// undone (DRIFTED). Readiness reads these only, whatever the number of
    /// confirmed actions.
    BlockingAction(String, String),
    /// A chunk of an identity's history: the stream sequences (packed u64 BE)
    /// that moved out of `IdentityState.recent_seqs`, keyed by the first one.
    IdentityHistory(IdentityKey, u64),
    /// A chunk of an action's history (as above, from `ActionState.recent_seqs`).
    ActionHistory(String, u64),
    /// Index: the actions requested on an identity.
    IdentityAction(IdentityKey, String),
    /// The leaf hashes of stream sequences `block * LEAVES_PER_BLOCK + 1 ..`,
    /// concatenated: what a verification compares the stream with.
    Leaves(u64),
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Tag + length-prefixed components: the prefix of every key of that kind.
pub fn prefix(tag: u8, parts: &[&str]) -> Vec<u8> {
    prefix_with_room(&[tag], parts, 0)
}

/// Tag bytes + length-prefixed components, in a buffer with `room` more bytes
/// reserved for what follows, so that a key is built in one allocation.
fn prefix_with_room(tags: &[u8], parts: &[&str], room: usize) -> Vec<u8> {
    let len = tags.len() + parts.iter().map(|p| 4 + p.len()).sum::<usize>();
    let mut out = Vec::with_capacity(len + room);
    out.extend_from_slice(tags);
    for p in parts {
        put_str(&mut out, p);
    }
    out
}

/// A [`Key`] whose parts are borrowed: what the store encodes (no copy of
/// the parts is needed to write a record of a table).
#[derive(Debug, Clone, Copy)]
pub enum KeyRef<'a> {
    Meta,
    Source(&'a str),
    Run(&'a str),
    SourceRun(&'a str, &'a str),
    Page(&'a str, &'a str),
    RunSeen(&'a str, i32, &'a str),
    Identity(&'a str, i32, &'a str),
    /// (source, page number)
    IdentityPage(&'a str, u64),
    Action(&'a str),
    EventId(&'a str),
    EventBlock(u64),
    Poison(u64),
    SourceAction(&'a str, &'a str),
    OpenAction(&'a str, &'a str),
    BlockingAction(&'a str, &'a str),
    IdentityHistory(&'a str, i32, &'a str, u64),
    ActionHistory(&'a str, u64),
    IdentityAction(&'a str, i32, &'a str, &'a str),
    Leaves(u64),
}

impl Key {
    pub fn as_ref(&self) -> KeyRef<'_> {
        match self {
            Key::Meta => KeyRef::Meta,
            Key::Source(s) => KeyRef::Source(s),
            Key::Run(r) => KeyRef::Run(r),
            Key::SourceRun(s, r) => KeyRef::SourceRun(s, r),
            Key::Page(r, p) => KeyRef::Page(r, p),
            Key::RunSeen((r, t, id)) => KeyRef::RunSeen(r, *t, id),
            Key::Identity((s, t, id)) => KeyRef::Identity(s, *t, id),
            Key::Action(a) => KeyRef::Action(a),
            Key::EventId(e) => KeyRef::EventId(e),
            Key::EventBlock(b) => KeyRef::EventBlock(*b),
            Key::Poison(seq) => KeyRef::Poison(*seq),
            Key::SourceAction(s, a) => KeyRef::SourceAction(s, a),
            Key::OpenAction(s, a) => KeyRef::OpenAction(s, a),
            Key::BlockingAction(s, a) => KeyRef::BlockingAction(s, a),
            Key::IdentityHistory((s, t, id), seq) => KeyRef::IdentityHistory(s, *t, id, *seq),
            Key::ActionHistory(a, seq) => KeyRef::ActionHistory(a, *seq),
            Key::IdentityAction((s, t, id), a) => KeyRef::IdentityAction(s, *t, id, a),
            Key::Leaves(b) => KeyRef::Leaves(*b),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        self.as_ref().encode()
    }
}

impl KeyRef<'_> {
    pub fn encode(&self) -> Vec<u8> {
        let tagged_u64 = |tag: u8, n: u64| {
            let mut k = Vec::with_capacity(9);
            k.push(tag);
            k.extend_from_slice(&n.to_be_bytes());
            k
        };
        match *self {
            KeyRef::Meta => vec![TAG_META],
            KeyRef::Source(s) => prefix(TAG_SOURCE, &[s]),
            KeyRef::Run(r) => prefix(TAG_RUN, &[r]),
            KeyRef::SourceRun(s, r) => prefix(TAG_SOURCE_RUN, &[s, r]),
            KeyRef::Page(r, p) => prefix(TAG_PAGE, &[r, p]),
            KeyRef::RunSeen(r, t, id) => {
                let mut k = prefix_with_room(&[TAG_RUN_SEEN], &[r], 8 + id.len());
                k.extend_from_slice(&t.to_be_bytes());
                put_str(&mut k, id);
                k
            }
            KeyRef::Identity(s, t, id) => identity_key(s, t, id),
            KeyRef::IdentityPage(s, page) => {
                let mut k = prefix_with_room(&[TAG_IDENTITY_PAGE], &[s], 8);
                k.extend_from_slice(&page.to_be_bytes());
                k
            }
            KeyRef::Action(a) => prefix(TAG_ACTION, &[a]),
            KeyRef::EventId(e) => match canonical_uuid(e) {
                Some(b) => {
                    let mut k = Vec::with_capacity(17);
                    k.push(TAG_EVENT_UUID);
                    k.extend_from_slice(&b);
                    k
                }
                None => prefix(TAG_EVENT_ID, &[e]),
            },
            KeyRef::EventBlock(b) => tagged_u64(TAG_EVENT_BLOCK, b),
            KeyRef::SourceAction(s, a) => prefix(TAG_SOURCE_ACTION, &[s, a]),
            KeyRef::OpenAction(s, a) => prefix(TAG_OPEN_ACTION, &[s, a]),
            KeyRef::BlockingAction(s, a) => prefix(TAG_BLOCKING_ACTION, &[s, a]),
            KeyRef::Poison(seq) => tagged_u64(TAG_POISON, seq),
            KeyRef::IdentityHistory(s, t, id, seq) => {
                let mut k = identity_index_prefix(HISTORY_IDENTITY, s, t, id, 8);
                k.extend_from_slice(&seq.to_be_bytes());
                k
            }
            KeyRef::ActionHistory(a, seq) => {
                let mut k = prefix_with_room(&[TAG_HISTORY, HISTORY_ACTION], &[a], 8);
                k.extend_from_slice(&seq.to_be_bytes());
                k
            }
            KeyRef::IdentityAction(s, t, id, a) => {
                let mut k = identity_index_prefix(HISTORY_IDENTITY_ACTION, s, t, id, 4 + a.len());
                put_str(&mut k, a);
                k
            }
            KeyRef::Leaves(b) => tagged_u64(TAG_LEAVES, b),
        }
    }
}

pub fn identity_key(source: &str, entity_type: i32, external_id: &str) -> Vec<u8> {
    let mut k = prefix_with_room(&[TAG_IDENTITY], &[source], 8 + external_id.len());
    k.extend_from_slice(&entity_type.to_be_bytes());
    put_str(&mut k, external_id);
    k
}

/// The 16 bytes of `s` when it is a UUID in canonical form (36 characters,
/// lowercase hex, hyphens at 8, 13, 18 and 23) — the one form that maps back to
/// exactly `s`, so the binary key is as unique as the string.
pub fn canonical_uuid(s: &str) -> Option<[u8; 16]> {
    /// Where each byte's two hex digits start.
    const AT: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
    let b = s.as_bytes();
    if b.len() != 36 || b[8] != b'-' || b[13] != b'-' || b[18] != b'-' || b[23] != b'-' {
        return None;
    }
    let mut out = [0u8; 16];
    // Any digit outside lowercase hex sets a high bit here (its LUT entry is 0xff).
    let mut bad = 0u8;
    for (o, &at) in out.iter_mut().zip(&AT) {
        let (hi, lo) = (HEX_DIGIT[b[at] as usize], HEX_DIGIT[b[at + 1] as usize]);
        bad |= hi | lo;
        *o = (hi << 4) | (lo & 0x0f);
    }
    (bad & 0xf0 == 0).then_some(out)
}

/// The value of each lowercase hex digit; 0xff for every other byte.
static HEX_DIGIT: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut c = 0;
    while c < 10 {
        t[b'0' as usize + c] = c as u8;
        c += 1;
    }
    let mut c = 0;
    while c < 6 {
        t[b'a' as usize + c] = 10 + c as u8;
        c += 1;
    }
    t
};

/// Where the duplicate check of event `id` looks first: for a UUID v7 in
/// canonical form, its [`Key::EventBlock`] (its millisecond, and one of
/// [`EVENT_BLOCKS_PER_MS`] sub-blocks by the low bits of its random tail) and
/// its 16 bytes. `None` for any other id (its own [`Key::EventId`] record).
///
/// Ids from one producer are time-ordered, so the ids of a batch fall into a
/// few blocks: a batch writes tens of block records instead of one record per
/// event (a fresh key per event is most of what sled costs per event).
pub fn event_block_of(id: &str) -> Option<(u64, [u8; 16])> {
    let b = canonical_uuid(id)?;
    // Version 7, RFC 9562 variant.
    if b[6] >> 4 != 7 || b[8] >> 6 != 0b10 {
        return None;
    }
    let ms = u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]]);
    let sub = u64::from(b[15]) % EVENT_BLOCKS_PER_MS;
    Some((ms << 8 | sub, b))
}

/// Whether the packed ids of a block hold `id`.
pub fn event_block_holds(block: &[u8], id: &[u8; 16]) -> bool {
    block.chunks_exact(16).any(|c| c == id)
}

/// Every [`Key::IdentityHistory`] key of one identity starts with this.
pub fn identity_history_prefix(source: &str, entity_type: i32, external_id: &str) -> Vec<u8> {
    identity_index_prefix(HISTORY_IDENTITY, source, entity_type, external_id, 0)
}

/// `TAG_HISTORY`, a sub-tag, then the identity's components (`room` more
/// bytes reserved for what follows).
fn identity_index_prefix(
    sub: u8,
    source: &str,
    entity_type: i32,
    external_id: &str,
    room: usize,
) -> Vec<u8> {
    let mut k = prefix_with_room(&[TAG_HISTORY, sub], &[source], 8 + external_id.len() + room);
    k.extend_from_slice(&entity_type.to_be_bytes());
    put_str(&mut k, external_id);
    k
}

/// Every [`Key::IdentityAction`] key of one identity starts with this.
pub fn identity_actions_prefix(source: &str, entity_type: i32, external_id: &str) -> Vec<u8> {
    identity_index_prefix(HISTORY_IDENTITY_ACTION, source, entity_type, external_id, 0)
}

/// Packs sequences for a history chunk (u64 big-endian each).
pub fn pack_seqs(seqs: &[u64]) -> Vec<u8> {
    seqs.iter().flat_map(|s| s.to_be_bytes()).collect()
}

/// Unpacks a history chunk (a trailing partial entry is ignored).
pub fn unpack_seqs(bytes: &[u8]) -> impl Iterator<Item = u64> + '_ {
    bytes
        .chunks_exact(8)
        .filter_map(|c| <[u8; 8]>::try_from(c).ok().map(u64::from_be_bytes))
}

/// Every [`Key::ActionHistory`] key of one action starts with this.
pub fn action_history_prefix(action_id: &str) -> Vec<u8> {
    prefix_with_room(&[TAG_HISTORY, HISTORY_ACTION], &[action_id], 0)
}

/// The big-endian `u64` that ends a key: a history key's sequence, an
/// identity page key's page number.
pub fn trailing_u64(key: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(u64::from_be_bytes(tail))
}

/// The leaf block holding stream sequence `seq` (≥ 1) and the byte offset in it.
pub fn leaf_slot(seq: u64) -> (u64, usize) {
    let i = seq.saturating_sub(1);
    (i / LEAVES_PER_BLOCK, (i % LEAVES_PER_BLOCK) as usize * 32)
}

/// Reads the last length-prefixed string component of `key` starting at `at`.
pub fn read_str(key: &[u8], at: usize) -> Option<(String, usize)> {
    let len_bytes: [u8; 4] = key.get(at..at + 4)?.try_into().ok()?;
    let len = u32::from_be_bytes(len_bytes) as usize;
    let s = key.get(at + 4..at + 4 + len)?;
    Some((String::from_utf8(s.to_vec()).ok()?, at + 4 + len))
}

/// A short label for an entity type, for messages.
pub fn entity_label(t: i32) -> &'static str {
    match EntityType::try_from(t).unwrap_or(EntityType::Unspecified) {
        EntityType::User => "user",
        EntityType::Group => "group",
        EntityType::Entitlement => "entitlement",
        EntityType::Membership => "membership",
        EntityType::Unspecified => "entity",
    }
}

#[cfg(test)]
mod tests {
    /// The bytes of the keys built with reserved room are the store's format
    /// (`STORE_FORMAT_VERSION`): tag bytes, then each part as a big-endian u32
    /// length and its bytes, then the fixed-width tail.
    #[test]
    fn composite_keys_keep_their_byte_layout() {
        fn part(s: &str) -> Vec<u8> {
            let mut v = (s.len() as u32).to_be_bytes().to_vec();
            v.extend_from_slice(s.as_bytes());
            v
        }
        let cat = |chunks: &[&[u8]]| chunks.concat();
        let t = 1_i32.to_be_bytes();
        let seq = 7_u64.to_be_bytes();
        assert_eq!(
            KeyRef::Identity("hr", 1, "u1").encode(),
            cat(&[&[TAG_IDENTITY], &part("hr"), &t, &part("u1")])
        );
        assert_eq!(
            KeyRef::RunSeen("r1", 1, "u1").encode(),
            cat(&[&[TAG_RUN_SEEN], &part("r1"), &t, &part("u1")])
        );
        assert_eq!(
            KeyRef::IdentityHistory("hr", 1, "u1", 7).encode(),
            cat(&[
                &[TAG_HISTORY, HISTORY_IDENTITY],
                &part("hr"),
                &t,
                &part("u1"),
                &seq
            ])
        );
        assert_eq!(
            KeyRef::ActionHistory("a1", 7).encode(),
            cat(&[&[TAG_HISTORY, HISTORY_ACTION], &part("a1"), &seq])
        );
        assert_eq!(
            KeyRef::IdentityAction("hr", 1, "u1", "a1").encode(),
            cat(&[
                &[TAG_HISTORY, HISTORY_IDENTITY_ACTION],
                &part("hr"),
                &t,
                &part("u1"),
                &part("a1")
            ])
        );
        assert_eq!(
            KeyRef::SourceRun("hr", "r1").encode(),
            cat(&[&[TAG_SOURCE_RUN], &part("hr"), &part("r1")])
        );
    }

    use super::*;

    #[test]
    fn components_cannot_run_into_each_other() {
        let a = Key::SourceRun("ab".into(), "c".into()).encode();
        let b = Key::SourceRun("a".into(), "bc".into()).encode();
        assert_ne!(a, b);
    }

    #[test]
    fn source_run_prefix_scans_one_source() {
        let p = prefix(TAG_SOURCE_RUN, &["hr"]);
        assert!(
            Key::SourceRun("hr".into(), "r1".into())
                .encode()
                .starts_with(&p)
        );
        assert!(
            !Key::SourceRun("hr2".into(), "r1".into())
                .encode()
                .starts_with(&p)
        );
    }

    #[test]
    fn poison_keys_sort_by_sequence() {
        assert!(Key::Poison(2).encode() < Key::Poison(256).encode());
    }

    #[test]
    fn history_keys_sort_by_sequence_within_one_entity() {
        let id = ("hr".to_owned(), 1, "u1".to_owned());
        let a = Key::IdentityHistory(id.clone(), 9).encode();
        let b = Key::IdentityHistory(id.clone(), 300).encode();
        assert!(a < b);
        assert!(a.starts_with(&identity_history_prefix("hr", 1, "u1")));
        assert!(!a.starts_with(&identity_history_prefix("hr", 1, "u")));
        assert_eq!(trailing_u64(&b), Some(300));
        assert_eq!(
            trailing_u64(&Key::ActionHistory("a".into(), 7).encode()),
            Some(7)
        );
    }

    #[test]
    fn canonical_uuids_become_16_bytes_and_nothing_else_does() {
        let id = "0192f3a4-5b6c-7d8e-9f00-112233445566";
        let k = Key::EventId(id.into()).encode();
        assert_eq!(k.len(), 17);
        assert_eq!(k[0], TAG_EVENT_UUID);
        assert_eq!(&k[1..3], &[0x01, 0x92]);
        // Other spellings of the same UUID stay strings: distinct keys.
        for other in [
            "0192F3A4-5B6C-7D8E-9F00-112233445566",
            "0192f3a45b6c7d8e9f00112233445566",
            "{0192f3a4-5b6c-7d8e-9f00-112233445566}",
            "not-a-uuid",
        ] {
            let o = Key::EventId(other.into()).encode();
            assert_eq!(o[0], TAG_EVENT_ID, "{other}");
            assert_ne!(o, k);
        }
        assert_eq!(canonical_uuid("0192f3a4-5b6c-7d8e-9f00-11223344556g"), None);
        assert_eq!(canonical_uuid("0192f3a4+5b6c-7d8e-9f00-112233445566"), None);
        // Every byte value at every position: accepted exactly when it is a
        // hyphen at 8/13/18/23 or a lowercase hex digit elsewhere, and then the
        // bytes are the digits' values.
        for at in 0..36 {
            for c in 0..=255u8 {
                let mut b = id.as_bytes().to_vec();
                b[at] = c;
                let Ok(s) = String::from_utf8(b) else {
                    continue;
                };
                let hyphen_at = matches!(at, 8 | 13 | 18 | 23);
                let ok = if hyphen_at {
                    c == b'-'
                } else {
                    c.is_ascii_digit() || (b'a'..=b'f').contains(&c)
                };
                let got = canonical_uuid(&s);
                assert_eq!(got.is_some(), ok, "{s:?}");
                if let Some(g) = got {
                    let hex: String = s.chars().filter(|c| *c != '-').collect();
                    let want: Vec<u8> = (0..16)
                        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
                        .collect();
                    assert_eq!(g.to_vec(), want, "{s:?}");
                }
            }
        }
    }

    #[test]
    fn v7_ids_go_to_blocks_by_millisecond_and_tail() {
        let a = "0192f3a4-5b6c-7d8e-9f00-112233445566";
        let (blk, bytes) = event_block_of(a).unwrap();
        assert_eq!(blk >> 8, 0x0192_f3a4_5b6c);
        assert_eq!(blk & 0xff, 0x66 % EVENT_BLOCKS_PER_MS);
        assert_eq!(bytes, canonical_uuid(a).unwrap());
        // Same millisecond, other tail: other sub-block; other millisecond: other block.
        let (b2, _) = event_block_of("0192f3a4-5b6c-7d8e-9f00-112233445567").unwrap();
        assert_eq!(b2 >> 8, blk >> 8);
        assert_ne!(b2, blk);
        let (b3, _) = event_block_of("0192f3a4-5b6d-7d8e-9f00-112233445566").unwrap();
        assert_ne!(b3 >> 8, blk >> 8);
        // Not v7, not the RFC variant, not canonical: no block.
        for other in [
            "0192f3a4-5b6c-4d8e-9f00-112233445566",
            "0192f3a4-5b6c-7d8e-1f00-112233445566",
            "0192F3A4-5B6C-7D8E-9F00-112233445566",
            "not-a-uuid",
        ] {
            assert_eq!(event_block_of(other), None, "{other}");
        }
        let mut block = Vec::new();
        assert!(!event_block_holds(&block, &bytes));
        block.extend_from_slice(&[0u8; 16]);
        block.extend_from_slice(&bytes);
        assert!(event_block_holds(&block, &bytes));
        assert_eq!(Key::EventBlock(blk).encode()[0], TAG_EVENT_BLOCK);
    }

    #[test]
    fn leaf_slots() {
        assert_eq!(leaf_slot(1), (0, 0));
        assert_eq!(leaf_slot(256), (0, 255 * 32));
        assert_eq!(leaf_slot(257), (1, 0));
    }

    #[test]
    fn read_back_a_component() {
        let k = Key::SourceRun("hr".into(), "run-1".into()).encode();
        let (s, at) = read_str(&k, 1).unwrap();
        assert_eq!(s, "hr");
        assert_eq!(read_str(&k, at).unwrap().0, "run-1");
    }
}
