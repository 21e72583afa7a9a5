//! A network's attachments, as the record keeps them: one JSON line each,
//! decoded when a command first looks at it. A `connect` among a thousand
//! attachments looks at a handful (the namespace's own, the addresses in
//! use), so what it pays to read the record does not grow with their
//! number; listings and checks that look at every one decode every one.
//!
//! Lookups by namespace, by CNI key and of the addresses in use read the
//! lines without decoding them: a line that cannot hold what is looked
//! for is skipped, and a candidate is decoded to be sure. Lines kept
//! undecoded are exactly what an nsnet that knows the same fields wrote
//! (the store checks their checksum and the writer's field list, and
//! decodes every line of a record that fails either), so their decoding
//! cannot fail.
//!
//! Copies of a state share their slots: an attachment decoded through one
//! copy is decoded for all, and comparing two copies costs a pointer per
//! attachment.

use std::borrow::Cow;
use std::net::IpAddr;
use std::ops::Range;
use std::sync::{Arc, OnceLock};

use ipnet::IpNet;
use memchr::memmem;

use super::{Attachment, CniKey, NsRef};

mod changes;
mod summary;

pub use changes::Change;
pub use summary::{Addresses, LineSummary, Summary};

/// The text of a record whose lines attachments were read from.
pub type RecordText = Arc<String>;

#[derive(Clone, Default)]
pub struct Attachments {
    /// The record lines that `Slot::Line`s are, shared by copies.
    lines: Option<Arc<Lines>>,
    slots: Vec<Slot>,
}

/// Lines of a record, each decoded when first used. Slots refer to them by
/// number: reading a record allocates a few vectors, not a value per line,
/// and copying or dropping a state does not touch every attachment.
struct Lines {
    text: RecordText,
    ranges: Vec<Range<usize>>,
    decoded: Vec<OnceLock<Arc<Attachment>>>,
}

#[derive(Clone)]
enum Slot {
    /// A line of `Attachments::lines`, by number, which still says what
    /// the attachment is.
    Line(usize),
    /// An attachment not read from a line, or changed since.
    Value(Arc<Attachment>),
}

/// Decodes one record line.
pub fn decode_line(line: &str) -> serde_json::Result<Attachment> {
    serde_json::from_str(line)
}

impl Lines {
    fn line(&self, i: usize) -> &str {
        &self.text[self.ranges[i].clone()]
    }

    fn get(&self, i: usize) -> &Arc<Attachment> {
        self.decoded[i].get_or_init(|| {
            // The store checked the record's lines before keeping any
            // undecoded (see the module's comment).
            Arc::new(decode_line(self.line(i)).expect("record lines were checked when read"))
        })
    }

    /// The line, unless it was decoded already (looking at the value is
    /// then quicker than reading the text).
    fn undecoded_line(&self, i: usize) -> Option<&str> {
        match self.decoded[i].get() {
            None => Some(self.line(i)),
            Some(_) => None,
        }
    }
}

/// False when `line` shows it cannot hold `needle`; true when it may.
fn may_hold(line: &str, needle: &Needle) -> bool {
    match needle {
        Needle::Anywhere(finder) => finder.find(line.as_bytes()).is_some(),
        // nsnet writes the namespace first: a line that starts with its
        // key holds the namespace right there, or not at all.
        Needle::First(key) => match line.strip_prefix('{') {
            Some(rest) if rest.starts_with(FIRST_KEY) => rest.as_bytes().starts_with(key),
            _ => true,
        },
    }
}

/// The key of the first field of an attachment's line.
const FIRST_KEY: &str = "\"namespace\":";

/// The key of published ports, which a line holds only when there are some
/// (the field is left out when empty).
const PORTS_KEY: &str = "\"ports\":";

/// What a line holding a value must contain.
enum Needle {
    Anywhere(Box<memmem::Finder<'static>>),
    /// The first field and its value, as in `FIRST_KEY"name"`.
    First(Vec<u8>),
}

/// The text a JSON line holds for a key and a string value.
fn needle(key: &str, value: &impl serde::Serialize) -> Needle {
    let mut n = format!("\"{key}\":").into_bytes();
    serde_json::to_writer(&mut n, value).expect("a string serializes");
    if n.starts_with(FIRST_KEY.as_bytes()) {
        Needle::First(n)
    } else {
        Needle::Anywhere(Box::new(memmem::Finder::new(&n).into_owned()))
    }
}

/// The addresses of a line, read off its `"addresses":["…",…]` without
/// decoding the rest; `None` when the line does not have that form.
fn scan_addresses(line: &str, out: &mut Vec<IpAddr>) -> Option<()> {
    for item in summary::address_items(summary::recorded_addresses(line)?) {
        // "address/prefix": the address alone is what is leased.
        let (addr, _prefix) = item?.split_once('/')?;
        out.push(match dotted_quad(addr.as_bytes()) {
            Some(v4) => IpAddr::V4(v4),
            None => addr.parse().ok()?,
        });
    }
    Some(())
}

/// An IPv4 address in the form nsnet writes it (four decimal numbers up to
/// 255 without leading zeros), read in a few instructions: a command reads
/// every leased address of a network. `None` for any other text, which the
/// caller then parses in full.
fn dotted_quad(text: &[u8]) -> Option<std::net::Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = text.split(|b| *b == b'.');
    for octet in &mut octets {
        let digits = parts.next()?;
        if digits.is_empty() || digits.len() > 3 || (digits.len() > 1 && digits[0] == b'0') {
            return None;
        }
        let mut value = 0u16;
        for d in digits {
            if !d.is_ascii_digit() {
                return None;
            }
            value = value * 10 + u16::from(d - b'0');
        }
        *octet = u8::try_from(value).ok()?;
    }
    match parts.next() {
        None => Some(octets.into()),
        Some(_) => None,
    }
}

impl Attachments {
    pub const fn new() -> Self {
        Attachments {
            lines: None,
            slots: Vec::new(),
        }
    }

    /// Attachments kept as the lines `ranges` of `text`, undecoded.
    pub fn from_lines(text: &RecordText, ranges: impl IntoIterator<Item = Range<usize>>) -> Self {
        let ranges: Vec<Range<usize>> = ranges.into_iter().collect();
        let n = ranges.len();
        Attachments {
            lines: Some(Arc::new(Lines {
                text: text.clone(),
                ranges,
                decoded: (0..n).map(|_| OnceLock::new()).collect(),
            })),
            slots: (0..n).map(Slot::Line).collect(),
        }
    }

    fn lines(&self) -> &Lines {
        self.lines
            .as_deref()
            .expect("a line slot comes with its lines")
    }

    fn get<'a>(&'a self, slot: &'a Slot) -> &'a Arc<Attachment> {
        match slot {
            Slot::Line(i) => self.lines().get(*i),
            Slot::Value(a) => a,
        }
    }

    /// The slot's line, unless it has none or was decoded already.
    fn undecoded_line(&self, slot: &Slot) -> Option<&str> {
        match slot {
            Slot::Line(i) => self.lines().undecoded_line(*i),
            Slot::Value(_) => None,
        }
    }

    /// Whether slot `x` of `xs` and slot `y` of `ys` hold the same
    /// attachment: the same line of the same record, or equal values.
    fn same(xs: &Attachments, x: &Slot, ys: &Attachments, y: &Slot) -> bool {
        match (x, y, &xs.lines, &ys.lines) {
            (Slot::Line(i), Slot::Line(j), Some(l), Some(m)) if i == j && Arc::ptr_eq(l, m) => true,
            _ => xs.get(x) == ys.get(y),
        }
    }

    /// One line per attachment, in as few pieces as can be: a run of
    /// lines read one after the other from a record is borrowed from its
    /// text whole (nothing copied, nothing decoded), the others encoded.
    pub fn line_pieces<'a>(&'a self, out: &mut Vec<Cow<'a, [u8]>>) -> serde_json::Result<()> {
        // The run being borrowed: where it starts and ends in the text
        // (newline included: every line of a record text ends with one).
        let mut run: Option<(usize, usize)> = None;
        let end_run = |run: &mut Option<(usize, usize)>, out: &mut Vec<Cow<'a, [u8]>>| {
            if let Some((start, end)) = run.take() {
                out.push(Cow::Borrowed(&self.lines().text.as_bytes()[start..end]));
            }
        };
        for slot in &self.slots {
            match (slot, &mut run) {
                (Slot::Line(i), Some((_, end))) if *end == self.lines().ranges[*i].start => {
                    *end = self.lines().ranges[*i].end + 1;
                }
                (Slot::Line(i), _) => {
                    end_run(&mut run, out);
                    let r = &self.lines().ranges[*i];
                    run = Some((r.start, r.end + 1));
                }
                (Slot::Value(a), _) => {
                    end_run(&mut run, out);
                    let mut line = serde_json::to_vec(a.as_ref())?;
                    line.push(b'\n');
                    match out.last_mut() {
                        Some(Cow::Owned(lines)) => lines.extend_from_slice(&line),
                        _ => out.push(Cow::Owned(line)),
                    }
                }
            }
        }
        end_run(&mut run, out);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn iter(&self) -> Iter<'_> {
        Iter {
            of: self,
            slots: self.slots.iter(),
        }
    }

    /// Where the (first) attachment of `ns` is.
    pub fn position(&self, ns: &NsRef) -> Option<usize> {
        self.of_namespace_at(ns).map(|(i, _)| i).next()
    }

    /// The (first) attachment of `ns`, to change in place (the record
    /// writes it anew; the others keep their lines).
    pub fn of_namespace_mut(&mut self, ns: &NsRef) -> Option<&mut Arc<Attachment>> {
        let i = self.position(ns)?;
        Some(&mut self[i])
    }

    pub fn push(&mut self, a: Arc<Attachment>) {
        self.slots.push(Slot::Value(a));
    }

    pub fn pop(&mut self) -> Option<Arc<Attachment>> {
        let slot = self.slots.pop()?;
        Some(self.get(&slot).clone())
    }

    pub fn remove(&mut self, i: usize) -> Arc<Attachment> {
        let slot = self.slots.remove(i);
        self.get(&slot).clone()
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&Arc<Attachment>) -> bool) {
        let mut slots = std::mem::take(&mut self.slots);
        slots.retain(|s| keep(self.get(s)));
        self.slots = slots;
    }

    pub fn contains(&self, a: &Arc<Attachment>) -> bool {
        self.iter().any(|x| x == a)
    }

    /// The attachments that may hold `needle` and satisfy `pred`.
    fn matching<'a>(
        &'a self,
        needle: Needle,
        pred: impl Fn(&Attachment) -> bool + 'a,
    ) -> impl Iterator<Item = (usize, &'a Arc<Attachment>)> + 'a {
        self.slots
            .iter()
            .enumerate()
            .filter(move |(_, s)| self.undecoded_line(s).is_none_or(|l| may_hold(l, &needle)))
            .map(|(i, s)| (i, self.get(s)))
            .filter(move |(_, a)| pred(a))
    }

    /// The attachments of namespace `ns` (one per network, unless a
    /// namespace has two interfaces on it), with where they are.
    fn of_namespace_at<'a>(
        &'a self,
        ns: &NsRef,
    ) -> impl Iterator<Item = (usize, &'a Arc<Attachment>)> + use<'a> {
        let ns = ns.clone();
        self.matching(needle("namespace", &ns), move |a| a.namespace == ns)
    }

    /// The attachments of namespace `ns`.
    pub fn of_namespace<'a>(
        &'a self,
        ns: &NsRef,
    ) -> impl Iterator<Item = &'a Arc<Attachment>> + use<'a> {
        self.of_namespace_at(ns).map(|(_, a)| a)
    }

    /// The attachment a container runtime made under `key`.
    pub fn of_cni(&self, key: &CniKey) -> Option<&Arc<Attachment>> {
        let key = key.clone();
        self.matching(needle("container_id", &key.container_id), move |a| {
            a.cni.as_ref() == Some(&key)
        })
        .map(|(_, a)| a)
        .next()
    }

    /// The attachments with published ports (their lines alone hold
    /// `PORTS_KEY`).
    pub fn with_ports(&self) -> impl Iterator<Item = &Arc<Attachment>> {
        let needle = Needle::Anywhere(Box::new(memmem::Finder::new(PORTS_KEY).into_owned()));
        self.matching(needle, |a| !a.ports.is_empty())
            .map(|(_, a)| a)
    }

    /// What `show` lists of each attachment, read off the lines not
    /// decoded yet (they stay undecoded).
    pub fn summaries(&self) -> impl Iterator<Item = Summary<'_>> {
        self.slots.iter().map(|slot| {
            self.undecoded_line(slot)
                .and_then(Summary::of_line)
                .unwrap_or_else(|| Summary::Decoded(self.get(slot)))
        })
    }

    /// Every address leased to an attachment.
    pub fn addresses(&self) -> Vec<IpAddr> {
        let mut out = Vec::with_capacity(self.slots.len());
        for slot in &self.slots {
            let before = out.len();
            let scanned = self
                .undecoded_line(slot)
                .is_some_and(|line| scan_addresses(line, &mut out).is_some());
            if !scanned {
                // What a scan that failed half-way pushed goes.
                out.truncate(before);
                out.extend(self.get(slot).addresses.iter().map(IpNet::addr));
            }
        }
        out
    }

    /// Removes the attachments of `ns`.
    pub fn remove_namespace(&mut self, ns: &NsRef) {
        let doomed: Vec<usize> = self.of_namespace_at(ns).map(|(i, _)| i).collect();
        for i in doomed.into_iter().rev() {
            self.slots.remove(i);
        }
    }

    /// Replaces the attachment of `a`'s namespace with `a`, or appends it.
    pub fn upsert(&mut self, a: Arc<Attachment>) {
        match self.position(&a.namespace) {
            Some(i) => self.slots[i] = Slot::Value(a),
            None => self.push(a),
        }
    }

    /// What two lists do not share at their start and their end (same
    /// attachment, same place), compared slot by slot without decoding: a
    /// command changes a few attachments of many.
    pub fn differing<'a>(
        before: &'a Attachments,
        after: &'a Attachments,
    ) -> (Vec<&'a Arc<Attachment>>, Vec<&'a Arc<Attachment>>) {
        let same = |(x, y): &(&Slot, &Slot)| Attachments::same(before, x, after, y);
        let (b, a) = (&before.slots[..], &after.slots[..]);
        let prefix = b.iter().zip(a).take_while(same).count();
        let (b, a) = (&b[prefix..], &a[prefix..]);
        let suffix = b.iter().rev().zip(a.iter().rev()).take_while(same).count();
        let (b, a) = (&b[..b.len() - suffix], &a[..a.len() - suffix]);
        (
            b.iter().map(|s| before.get(s)).collect(),
            a.iter().map(|s| after.get(s)).collect(),
        )
    }
}

pub struct Iter<'a> {
    of: &'a Attachments,
    slots: std::slice::Iter<'a, Slot>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a Arc<Attachment>;
    fn next(&mut self) -> Option<Self::Item> {
        self.slots.next().map(|s| self.of.get(s))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.slots.size_hint()
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.slots.next_back().map(|s| self.of.get(s))
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a Attachments {
    type Item = &'a Arc<Attachment>;
    type IntoIter = Iter<'a>;
    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl FromIterator<Arc<Attachment>> for Attachments {
    fn from_iter<I: IntoIterator<Item = Arc<Attachment>>>(iter: I) -> Self {
        Attachments {
            lines: None,
            slots: iter.into_iter().map(Slot::Value).collect(),
        }
    }
}

impl From<Vec<Arc<Attachment>>> for Attachments {
    fn from(v: Vec<Arc<Attachment>>) -> Self {
        v.into_iter().collect()
    }
}

impl std::ops::Index<usize> for Attachments {
    type Output = Arc<Attachment>;
    fn index(&self, i: usize) -> &Arc<Attachment> {
        self.get(&self.slots[i])
    }
}

impl std::ops::IndexMut<usize> for Attachments {
    /// The slot alone, cut from its line (its value is about to change).
    fn index_mut(&mut self, i: usize) -> &mut Arc<Attachment> {
        if let Slot::Line(_) = self.slots[i] {
            self.slots[i] = Slot::Value(self[i].clone());
        }
        match &mut self.slots[i] {
            Slot::Value(a) => a,
            Slot::Line(_) => unreachable!("made a value above"),
        }
    }
}

impl PartialEq for Attachments {
    fn eq(&self, other: &Self) -> bool {
        self.slots.len() == other.slots.len()
            && self
                .slots
                .iter()
                .zip(&other.slots)
                .all(|(x, y)| Attachments::same(self, x, other, y))
    }
}

impl Eq for Attachments {}

impl std::fmt::Debug for Attachments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl serde::Serialize for Attachments {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> serde::Deserialize<'de> for Attachments {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Vec::<Arc<Attachment>>::deserialize(d)?.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::test_attachment;

    impl Attachments {
        /// Appends one line per attachment to `out` (see `line_pieces`).
        fn write_lines(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
            let mut pieces = Vec::new();
            self.line_pieces(&mut pieces)?;
            pieces.iter().for_each(|p| out.extend_from_slice(p));
            Ok(())
        }
    }

    /// How many slots of `lazy` are decoded.
    fn decoded(lazy: &Attachments) -> usize {
        lazy.slots
            .iter()
            .filter(|s| lazy.undecoded_line(s).is_none())
            .count()
    }

    fn lines(atts: &[Attachment]) -> (RecordText, Attachments) {
        let mut text = Vec::new();
        let decoded: Attachments = atts.iter().cloned().map(Arc::new).collect();
        decoded.write_lines(&mut text).unwrap();
        let text: RecordText = Arc::new(String::from_utf8(text).unwrap());
        let mut ranges = Vec::new();
        let mut start = 0;
        for (i, b) in text.bytes().enumerate() {
            if b == b'\n' {
                ranges.push(start..i);
                start = i + 1;
            }
        }
        let lazy = Attachments::from_lines(&text, ranges);
        (text, lazy)
    }

    fn sample() -> Vec<Attachment> {
        let mut v: Vec<Attachment> = ["a", "b", "ab", "c"].map(test_attachment).into();
        v[1].addresses = vec![
            "10.0.0.7/24".parse().unwrap(),
            "fd00::7/64".parse().unwrap(),
        ];
        v[2].cni = Some(CniKey {
            container_id: "c1".into(),
            ifname: "eth0".into(),
        });
        v[3].aliases = vec!["\"namespace\":\"a\"".into()];
        v
    }

    /// An attachment of `ns` told apart by `version`.
    fn versioned(ns: &str, version: u8) -> Attachment {
        let mut a = test_attachment(ns);
        a.host_ifname = format!("ve-{version}");
        a
    }

    fn listed(atts: &Attachments) -> Vec<(String, String)> {
        atts.iter()
            .map(|a| (a.namespace.to_string(), a.host_ifname.clone()))
            .collect()
    }

    proptest::proptest! {
        /// A run of removals and upserts applied in one walk leaves the
        /// list that applying them one by one leaves: lines undecoded,
        /// decoded or changed, a namespace listed twice, one whose line
        /// escapes a quote, runs short and long.
        #[test]
        fn changes_in_one_walk_are_changes_one_by_one(
            names in proptest::collection::vec(0usize..5, 0..8),
            changed in proptest::collection::vec(0usize..8, 0..3),
            changes in proptest::collection::vec((proptest::bool::ANY, 0usize..5, 0u8..4), 0..12),
        ) {
            const NAMES: [&str; 5] = ["a", "b", "ab", "q\"r", "c"];
            let atts: Vec<Attachment> = names.iter().map(|n| versioned(NAMES[*n], 9)).collect();
            let (_, mut walked) = lines(&atts);
            for i in changed.into_iter().filter(|i| *i < atts.len()) {
                Arc::make_mut(&mut walked[i]).namespace_created = false;
            }
            walked.iter().take(1).for_each(drop); // decodes the first line
            let mut one_by_one = walked.clone();
            let values: Vec<(bool, Arc<Attachment>)> = changes
                .iter()
                .map(|(remove, n, v)| (*remove, Arc::new(versioned(NAMES[*n], *v))))
                .collect();
            let run: Vec<Change> = values
                .iter()
                .map(|(remove, a)| if *remove { Change::Remove(&a.namespace) } else { Change::Upsert(a) })
                .collect();
            for (remove, a) in &values {
                if *remove {
                    one_by_one.remove_namespace(&a.namespace);
                } else {
                    one_by_one.upsert(a.clone());
                }
            }
            walked.apply_changes(&run);
            proptest::prop_assert_eq!(listed(&walked), listed(&one_by_one));
            proptest::prop_assert_eq!(walked, one_by_one);
        }
    }

    #[test]
    fn a_dotted_quad_reads_as_the_standard_parser_reads_it() {
        for text in [
            "0.0.0.0",
            "10.98.3.233",
            "255.255.255.255",
            "192.0.2.1",
            "1.2.3",
            "1.2.3.4.5",
            "256.1.1.1",
            "01.2.3.4",
            "1..2.3",
            "1.2.3.4 ",
            "+1.2.3.4",
            "",
            "fd00::1",
            "1.2.3.999",
        ] {
            let quick = dotted_quad(text.as_bytes());
            assert_eq!(quick, text.parse().ok(), "{text:?}");
        }
    }

    #[test]
    fn lines_read_back_as_the_attachments_written() {
        let atts = sample();
        let (_, lazy) = lines(&atts);
        let decoded: Attachments = atts.iter().cloned().map(Arc::new).collect();
        assert_eq!(lazy, decoded);
        assert_eq!(format!("{lazy:?}"), format!("{decoded:?}"));
        let mut out = Vec::new();
        lazy.write_lines(&mut out).unwrap();
        let mut again = Vec::new();
        decoded.write_lines(&mut again).unwrap();
        assert_eq!(out, again);
    }

    #[test]
    fn lookups_decode_only_candidates_and_find_the_right_one() {
        let atts = sample();
        let (_, lazy) = lines(&atts);
        let a = NsRef::Named("a".into());
        let found: Vec<_> = lazy.of_namespace(&a).collect();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].namespace, a);
        // "ab" was not a candidate; "c" was (its alias holds the needle's
        // text escaped, so it is not), and neither was decoded.
        let decoded = decoded(&lazy);
        assert_eq!(decoded, 1, "only a's line was decoded");
        let key = CniKey {
            container_id: "c1".into(),
            ifname: "eth0".into(),
        };
        assert_eq!(lazy.of_cni(&key).unwrap().namespace.to_string(), "ab");
        let mut want: Vec<IpAddr> = atts
            .iter()
            .flat_map(|a| a.addresses.iter().map(IpNet::addr))
            .collect();
        let mut got = lazy.addresses();
        want.sort();
        got.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn changes_cut_the_line_and_keep_the_rest() {
        let atts = sample();
        let (text, mut lazy) = lines(&atts);
        let copy = lazy.clone();
        let mut pieces = Vec::new();
        lazy.line_pieces(&mut pieces).unwrap();
        assert!(matches!(&pieces[..], [Cow::Borrowed(all)] if all == &text.as_bytes()));
        Arc::make_mut(&mut lazy[1]).namespace_created = false;
        let mut pieces = Vec::new();
        lazy.line_pieces(&mut pieces).unwrap();
        let kinds: Vec<bool> = pieces
            .iter()
            .map(|p| matches!(p, Cow::Borrowed(_)))
            .collect();
        assert_eq!(
            kinds,
            [true, false, true],
            "lines 0 and 2-3 borrowed, 1 encoded"
        );
        lazy.remove_namespace(&NsRef::Named("c".into()));
        lazy.upsert(Arc::new(test_attachment("new")));
        let (gone, came) = Attachments::differing(&copy, &lazy);
        let names = |v: &[&Arc<Attachment>]| -> Vec<String> {
            v.iter().map(|a| a.namespace.to_string()).collect()
        };
        assert_eq!(names(&gone), ["b", "ab", "c"]);
        assert_eq!(names(&came), ["b", "ab", "new"]);
        let mut out = Vec::new();
        lazy.write_lines(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("\"namespace\":\"b\",\"namespace_created\":false"));
        assert_eq!(text.lines().count(), 4);
        assert_ne!(copy, lazy);
        assert!(copy[1].namespace_created, "the copy keeps its own");
    }
    #[test]
    fn summaries_read_off_lines_say_what_decoding_says() {
        let mut atts = sample();
        // A path with a quote and a key's text in it: escaped in the line,
        // so its summary comes from decoding.
        let mut odd = test_attachment("x");
        odd.namespace = NsRef::Path("/run/x/\"host_ifname\":\"evil".into());
        atts.push(odd);
        let mut published = test_attachment("web");
        published.ports = vec![crate::model::ports::PortMapping {
            host_ip: None,
            host_port: 8080,
            port: 80,
            count: 1,
            protocol: crate::model::ports::Protocol::Tcp,
        }];
        published.mac = Some("02:00:00:00:00:01".into());
        atts.push(published);
        let mut none = test_attachment("bare");
        none.addresses.clear();
        atts.push(none);
        let (_, lazy) = lines(&atts);
        let kinds: Vec<bool> = lazy
            .summaries()
            .map(|s| matches!(s, Summary::Line(_)))
            .collect();
        assert_eq!(kinds, [true, true, true, true, false, false, true]);
        for (summary, a) in lazy.summaries().zip(&atts) {
            assert_eq!(summary.namespace(), a.namespace.to_string());
            assert_eq!(summary.host_ifname(), a.host_ifname);
            assert_eq!(summary.ifname(), a.ifname);
            let addresses: Vec<String> = a.addresses.iter().map(|n| n.to_string()).collect();
            assert_eq!(summary.addresses().to_string(), addresses.join(","));
            assert_eq!(summary.ports(), &a.ports[..]);
        }
        let decoded = decoded(&lazy);
        assert_eq!(decoded, 2, "only the lines a summary cannot borrow from");
    }
}
