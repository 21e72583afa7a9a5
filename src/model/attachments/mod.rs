//! A network's attachments, as the record keeps them: one JSON line each,
//! decoded when a command first looks at it. A `connect` among a thousand
//! attachments looks at a handful (the namespace's own, the addresses in
//! use), so what it pays to read the record does not grow with their
//! number; listings and checks that look at every one decode every one.
//!
//! Lookups by namespace, by CNI key and of the addresses in use read the
//! lines without decoding them: a line that cannot hold what is looked
//! for is skipped, and a candidate is decoded to be sure. The lines'
//! text and its layout are the store's (`store::lines`), which answers
//! through `LineSource`. Lines kept undecoded are exactly what an nsnet
//! that knows the same fields wrote (the store checks their checksum and
//! the writer's field list, and decodes every line of a record that fails
//! either), so their decoding cannot fail.
//!
//! Copies of a state share their slots: an attachment decoded through one
//! copy is decoded for all, and comparing two copies costs a pointer per
//! attachment.

use std::net::IpAddr;
use std::ops::Range;
use std::sync::{Arc, OnceLock};

use ipnet::IpNet;

use super::{Attachment, CniKey, NsRef};

mod changes;
mod summary;

pub use changes::Change;
pub use summary::{address_items, Addresses, LineSummary, Summary};

/// What a lookup looks for in a line.
#[derive(Debug, Clone, Copy)]
pub enum Lookup<'a> {
    Namespace(&'a NsRef),
    ContainerId(&'a str),
    /// A Docker endpoint ID.
    DockerEndpoint(&'a str),
    /// Published ports.
    Ports,
}

/// Record lines holding one attachment each, as the store read them: it
/// knows their layout, and answers what a command asks of a line without
/// decoding it.
pub trait LineSource: Send + Sync {
    /// How many lines there are.
    fn count(&self) -> usize;
    /// Line `i`, decoded. The store checked its lines before keeping any
    /// undecoded: this cannot fail.
    fn decode(&self, i: usize) -> Attachment;
    /// Which lines may hold what `lookup` looks for (false: it cannot be
    /// there; true: decode to be sure). Made once per lookup.
    fn matcher(&self, lookup: Lookup<'_>) -> Box<dyn Fn(usize) -> bool + '_>;
    /// Appends line `i`'s addresses to `out`; false (and `out` as it was)
    /// when they cannot be read off the line.
    fn addresses(&self, i: usize, out: &mut Vec<IpAddr>) -> bool;
    /// What `show` lists of line `i`, read off it; `None` when it has more
    /// than a summary holds, or when it cannot be read off.
    fn summary(&self, i: usize) -> Option<LineSummary<'_>>;
    /// Line `i`'s namespace as its string form (`NsRef`'s `Display`), when
    /// it can be read off the line.
    fn namespace(&self, i: usize) -> Option<&str>;
    /// The text the lines are in, and where line `i` is in it, newline
    /// included: runs of lines are written back as they were read.
    fn text(&self) -> &[u8];
    fn span(&self, i: usize) -> Range<usize>;
}

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
    source: Arc<dyn LineSource>,
    decoded: Vec<OnceLock<Arc<Attachment>>>,
}

/// One attachment of a list, as the store writes it back.
pub enum Piece<'a> {
    /// Line `i` of the list's `source`, unchanged since it was read.
    Line(usize),
    Value(&'a Arc<Attachment>),
}

#[derive(Clone)]
enum Slot {
    /// A line of `Attachments::lines`, by number, which still says what
    /// the attachment is.
    Line(usize),
    /// An attachment not read from a line, or changed since.
    Value(Arc<Attachment>),
}

impl Lines {
    fn get(&self, i: usize) -> &Arc<Attachment> {
        self.decoded[i].get_or_init(|| Arc::new(self.source.decode(i)))
    }

    /// Whether line `i` is still undecoded (once decoded, looking at the
    /// value is quicker than reading the text).
    fn undecoded(&self, i: usize) -> bool {
        self.decoded[i].get().is_none()
    }
}

impl Attachments {
    pub const fn new() -> Self {
        Attachments {
            lines: None,
            slots: Vec::new(),
        }
    }

    /// Attachments kept as the lines of `source`, undecoded.
    pub fn from_source(source: Arc<dyn LineSource>) -> Self {
        let n = source.count();
        Attachments {
            lines: Some(Arc::new(Lines {
                source,
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

    /// The slot's line number, unless it has none or was decoded already.
    fn undecoded_line(&self, slot: &Slot) -> Option<usize> {
        match slot {
            Slot::Line(i) if self.lines().undecoded(*i) => Some(*i),
            _ => None,
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

    /// The attachments in order: a line of `source` (by number) that
    /// still says what the attachment is, or a value.
    pub fn pieces(&self) -> impl Iterator<Item = Piece<'_>> {
        self.slots.iter().map(|slot| match slot {
            Slot::Line(i) => Piece::Line(*i),
            Slot::Value(a) => Piece::Value(a),
        })
    }

    /// The lines `Piece::Line` numbers refer to.
    pub fn source(&self) -> Option<&dyn LineSource> {
        self.lines.as_deref().map(|l| &*l.source)
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

    /// The attachments whose line may hold what `lookup` looks for and
    /// that satisfy `pred`.
    fn matching<'a>(
        &'a self,
        lookup: Lookup<'_>,
        pred: impl Fn(&Attachment) -> bool + 'a,
    ) -> impl Iterator<Item = (usize, &'a Arc<Attachment>)> + 'a {
        let may_hold = self.lines.as_ref().map(|l| l.source.matcher(lookup));
        self.slots
            .iter()
            .enumerate()
            .filter(move |(_, s)| match (self.undecoded_line(s), &may_hold) {
                (Some(i), Some(may)) => may(i),
                _ => true,
            })
            .map(|(i, s)| (i, self.get(s)))
            .filter(move |(_, a)| pred(a))
    }

    /// The attachments of namespace `ns` (one per network, unless a
    /// namespace has two interfaces on it), with where they are.
    fn of_namespace_at<'a>(
        &'a self,
        ns: &NsRef,
    ) -> impl Iterator<Item = (usize, &'a Arc<Attachment>)> + use<'a> {
        let wanted = ns.clone();
        self.matching(Lookup::Namespace(ns), move |a| a.namespace == wanted)
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
        let wanted = key.clone();
        self.matching(Lookup::ContainerId(&key.container_id), move |a| {
            a.cni.as_ref() == Some(&wanted)
        })
        .map(|(_, a)| a)
        .next()
    }

    /// The attachment Docker joined for endpoint `id`.
    pub fn of_docker(&self, id: &str) -> Option<&Arc<Attachment>> {
        let wanted = id.to_string();
        self.matching(Lookup::DockerEndpoint(id), move |a| {
            a.docker.as_deref() == Some(wanted.as_str())
        })
        .map(|(_, a)| a)
        .next()
    }

    /// The attachments with published ports.
    pub fn with_ports(&self) -> impl Iterator<Item = &Arc<Attachment>> {
        self.matching(Lookup::Ports, |a| !a.ports.is_empty())
            .map(|(_, a)| a)
    }

    /// What `show` lists of each attachment, read off the lines not
    /// decoded yet (they stay undecoded).
    pub fn summaries(&self) -> impl Iterator<Item = Summary<'_>> {
        self.slots.iter().map(|slot| {
            self.undecoded_line(slot)
                .and_then(|i| self.lines().source.summary(i))
                .map_or_else(|| Summary::Decoded(self.get(slot)), Summary::Line)
        })
    }

    /// Every address leased to an attachment.
    pub fn addresses(&self) -> Vec<IpAddr> {
        let mut out = Vec::with_capacity(self.slots.len());
        for slot in &self.slots {
            // A line that cannot be read this way leaves `out` as it was.
            let scanned = self
                .undecoded_line(slot)
                .is_some_and(|i| self.lines().source.addresses(i, &mut out));
            if !scanned {
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
impl Attachments {
    /// How many slots are decoded (tests of the store's lines).
    pub(crate) fn decoded_count(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| self.undecoded_line(s).is_none())
            .count()
    }
}
