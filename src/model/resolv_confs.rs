//! `State::resolv_confs`: the `/etc/netns/NAME/resolv.conf` files nsnet
//! wrote, by namespace name, at a cost per command that does not grow with
//! their number.
//!
//! The record holds one entry per distinct content with the namespaces that
//! have it (a thousand namespaces of one DNS network hold one content).
//! Read from a record whose checksum shows nsnet wrote it, each content's
//! list of namespaces is kept as the JSON text it is, and a namespace is
//! looked up by searching that text: a `connect` looks at one or two
//! namespaces and pays for those, not for decoding, copying, comparing and
//! dropping a thousand names. Changes are kept beside the recorded lists
//! (`changed`), so that copies of a state share the lists and the
//! difference between two copies is found among the changes alone.
//! Listings, checks and writing the record whole decode every list, once
//! for all copies.
//!
//! Anything else (a record repaired by hand, a journal, records written
//! before) is decoded and checked whole when read, as it always was, and
//! records of one entry per namespace are still read.

use std::cmp::Ordering;
use std::collections::{btree_map, BTreeMap};
use std::fmt;
use std::iter::Peekable;
use std::sync::{Arc, OnceLock};

use memchr::memmem;
use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

use super::ResolvConf;

type Map = BTreeMap<String, Arc<ResolvConf>>;

#[derive(Clone, Default)]
pub struct ResolvConfs {
    recorded: Arc<Recorded>,
    /// Entries set (`Some`) or removed (`None`) since the record was read.
    changed: BTreeMap<String, Option<Arc<ResolvConf>>>,
}

/// What the record held.
#[derive(Default)]
struct Recorded {
    /// Contents whose namespaces are still undecoded.
    lists: Vec<List>,
    /// Every entry, decoded on first need.
    all: OnceLock<Map>,
}

struct List {
    conf: Arc<ResolvConf>,
    /// A JSON array of names, exactly as nsnet writes it.
    namespaces: Box<RawValue>,
}

impl Recorded {
    fn all(&self) -> &Map {
        // The record's checksum showed nsnet wrote these lists (see
        // `from_recorded`): decoding them cannot fail.
        self.all.get_or_init(|| {
            self.decode()
                .expect("namespace lists were checked when read")
        })
    }

    /// Every entry, from the lists of namespaces.
    fn decode(&self) -> Result<Map, String> {
        let mut all = Vec::new();
        for list in &self.lists {
            let names: Vec<String> =
                serde_json::from_str(list.namespaces.get()).map_err(|e| e.to_string())?;
            all.extend(names.into_iter().map(|ns| (ns, list.conf.clone())));
        }
        Ok(sorted_map(all)?)
    }

    fn get(&self, name: &str) -> Option<&Arc<ResolvConf>> {
        if let Some(all) = self.all.get() {
            return all.get(name);
        }
        if !plain(name) {
            return self.all().get(name);
        }
        let needle = format!("\"{name}\"");
        let finder = memmem::Finder::new(&needle);
        self.lists
            .iter()
            .find(|list| lists_name(&finder, list.namespaces.get()))
            .map(|list| &list.conf)
    }

    fn is_empty(&self) -> bool {
        match self.all.get() {
            Some(all) => all.is_empty(),
            None => self.lists.iter().all(|l| l.namespaces.get() == "[]"),
        }
    }
}

/// Whether serde_json writes the name as it is, between quotes, and it
/// holds no comma (see `lists_name`).
fn plain(name: &str) -> bool {
    !name
        .chars()
        .any(|c| matches!(c, '"' | '\\' | ',') || c.is_control())
}

/// Whether a compact JSON array of strings holds the plain name whose
/// quoted form `finder` looks for. A quote that follows `[` or `,` is not
/// inside a string (there a quote follows a backslash): it opens an
/// element, or closes one and is then followed by `,` or `]`, with which a
/// plain quoted name never goes on. Opening one, the needle and the
/// element end at the same quote; the byte after says it is the end.
fn lists_name(finder: &memmem::Finder, array: &str) -> bool {
    let bytes = array.as_bytes();
    let len = finder.needle().len();
    finder.find_iter(bytes).any(|at| {
        at > 0
            && matches!(bytes[at - 1], b'[' | b',')
            && matches!(bytes.get(at + len), Some(b',' | b']'))
    })
}

/// A map of sorted pairs, refusing a name given twice.
fn sorted_map(mut all: Vec<(String, Arc<ResolvConf>)>) -> Result<Map, &'static str> {
    // Sorted first, then built in one go: a thousand inserts into the map
    // cost several times more.
    all.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    if all.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err("a namespace is listed under two resolv.conf contents");
    }
    Ok(all.into_iter().collect())
}

impl ResolvConfs {
    pub fn get(&self, name: &str) -> Option<&Arc<ResolvConf>> {
        match self.changed.get(name) {
            Some(change) => change.as_ref(),
            None => self.recorded.get(name),
        }
    }

    /// Whether the recorded lists were decoded whole (tests check that a
    /// command's lookups leave them undecoded).
    #[cfg(test)]
    pub fn decoded_whole(&self) -> bool {
        self.recorded.all.get().is_some()
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn insert(&mut self, name: String, conf: Arc<ResolvConf>) {
        self.changed.insert(name, Some(conf));
    }

    /// Removes the entry, returning it.
    pub fn remove(&mut self, name: &str) -> Option<Arc<ResolvConf>> {
        let old = self.get(name).cloned();
        if old.is_some() {
            self.changed.insert(name.to_string(), None);
        }
        old
    }

    /// Every entry, in name order (decodes the recorded lists).
    pub fn iter(&self) -> Entries<'_> {
        Entries {
            recorded: self.recorded.all().iter().peekable(),
            changed: self.changed.iter().peekable(),
        }
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.iter().map(|(k, _)| k)
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        if self.changed.values().any(Option::is_some) {
            return false;
        }
        self.recorded.is_empty() || self.iter().next().is_none()
    }

    /// The entries of `before` and `after` that differ (`None`: gone).
    /// Between copies of one read state, only the changes are looked at.
    pub fn changed_between(
        before: &ResolvConfs,
        after: &ResolvConfs,
    ) -> BTreeMap<String, Option<Arc<ResolvConf>>> {
        if !Arc::ptr_eq(&before.recorded, &after.recorded) {
            return changed_entries(before.iter(), after.iter());
        }
        let mut out = BTreeMap::new();
        for name in before.changed.keys().chain(after.changed.keys()) {
            let now = after.get(name);
            if before.get(name) != now {
                out.insert(name.clone(), now.cloned());
            }
        }
        out
    }
}

/// The entries of two sorted walks that differ (`None`: gone), found in
/// one pass over both.
fn changed_entries<'a>(
    before: impl Iterator<Item = (&'a String, &'a Arc<ResolvConf>)>,
    after: impl Iterator<Item = (&'a String, &'a Arc<ResolvConf>)>,
) -> BTreeMap<String, Option<Arc<ResolvConf>>> {
    let mut out = BTreeMap::new();
    let (mut b, mut a) = (before.peekable(), after.peekable());
    loop {
        let order = match (b.peek(), a.peek()) {
            (None, None) => return out,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((kb, _)), Some((ka, _))) => kb.cmp(ka),
        };
        match order {
            Ordering::Less => {
                let (k, _) = b.next().expect("peeked");
                out.insert(k.clone(), None);
            }
            Ordering::Greater => {
                let (k, v) = a.next().expect("peeked");
                out.insert(k.clone(), Some(v.clone()));
            }
            Ordering::Equal => {
                let ((_, vb), (k, va)) = (b.next().expect("peeked"), a.next().expect("peeked"));
                if vb != va {
                    out.insert(k.clone(), Some(va.clone()));
                }
            }
        }
    }
}

/// The recorded entries with the changes laid over them, in name order.
pub struct Entries<'a> {
    recorded: Peekable<btree_map::Iter<'a, String, Arc<ResolvConf>>>,
    changed: Peekable<btree_map::Iter<'a, String, Option<Arc<ResolvConf>>>>,
}

impl<'a> Iterator for Entries<'a> {
    type Item = (&'a String, &'a Arc<ResolvConf>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let order = match (self.recorded.peek(), self.changed.peek()) {
                (None, None) => return None,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some((kr, _)), Some((kc, _))) => kr.cmp(kc),
            };
            if order == Ordering::Less {
                return self.recorded.next();
            }
            if order == Ordering::Equal {
                self.recorded.next();
            }
            if let (name, Some(conf)) = self.changed.next().expect("peeked") {
                return Some((name, conf));
            }
        }
    }
}

impl<'a> IntoIterator for &'a ResolvConfs {
    type Item = (&'a String, &'a Arc<ResolvConf>);
    type IntoIter = Entries<'a>;

    fn into_iter(self) -> Entries<'a> {
        self.iter()
    }
}

impl FromIterator<(String, Arc<ResolvConf>)> for ResolvConfs {
    fn from_iter<I: IntoIterator<Item = (String, Arc<ResolvConf>)>>(entries: I) -> Self {
        ResolvConfs {
            recorded: Default::default(),
            changed: entries.into_iter().map(|(k, v)| (k, Some(v))).collect(),
        }
    }
}

impl PartialEq for ResolvConfs {
    fn eq(&self, other: &Self) -> bool {
        if Arc::ptr_eq(&self.recorded, &other.recorded) {
            return Self::changed_between(self, other).is_empty();
        }
        self.iter().eq(other.iter())
    }
}

impl fmt::Debug for ResolvConfs {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// The contents a record's state line holds, each list of namespaces
/// still its JSON text: what the store reads before it knows whether the
/// line's checksum holds (`ResolvConfs::from_recorded`).
pub struct RecordedLists(Recorded);

impl<'de> Deserialize<'de> for RecordedLists {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(RecordedLists(d.deserialize_any(ListsVisitor)?))
    }
}

/// Reads contents with their lists undecoded; earlier records' one entry
/// per namespace is read as `Deserialize` reads it.
struct ListsVisitor;

impl<'de> Visitor<'de> for ListsVisitor {
    type Value = Recorded;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of resolv.conf contents with their namespaces")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Recorded, A::Error> {
        let mut lists = Vec::new();
        while let Some(g) = seq.next_element::<Group<Box<RawValue>>>()? {
            let (conf, namespaces) = g.split();
            lists.push(List { conf, namespaces });
        }
        Ok(Recorded {
            lists,
            all: OnceLock::new(),
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Recorded, A::Error> {
        RecordedVisitor.visit_map(map)
    }
}

impl ResolvConfs {
    /// The contents a record holds. `trusted` (the line's checksum shows
    /// nsnet wrote it, as serde_json writes it): each list of namespaces
    /// stays undecoded until a command needs it. Otherwise every list is
    /// decoded and checked now, as `Deserialize` does.
    pub fn from_recorded(lists: RecordedLists, trusted: bool) -> Result<ResolvConfs, String> {
        let mut recorded = lists.0;
        if !trusted && recorded.all.get().is_none() {
            recorded = Recorded {
                all: OnceLock::from(recorded.decode()?),
                lists: Vec::new(),
            };
        }
        Ok(ResolvConfs {
            recorded: Arc::new(recorded),
            changed: BTreeMap::new(),
        })
    }
}

/// One content and the namespaces whose file has it, as recorded.
#[derive(Serialize)]
struct GroupRef<'a> {
    #[serde(flatten)]
    conf: &'a ResolvConf,
    namespaces: Vec<&'a str>,
}

/// The same, read back. `ResolvConf`'s fields are spelt out rather than
/// flattened: serde cannot refuse unknown fields through a flatten, and a
/// flatten buffers every entry before decoding it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Group<Names> {
    servers: Vec<std::net::IpAddr>,
    owner: String,
    #[serde(default)]
    search: Vec<String>,
    namespaces: Names,
}

impl<Names> Group<Names> {
    fn split(self) -> (Arc<ResolvConf>, Names) {
        let conf = ResolvConf {
            servers: self.servers,
            owner: self.owner,
            search: self.search,
        };
        (Arc::new(conf), self.namespaces)
    }
}

impl Serialize for ResolvConfs {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut groups: BTreeMap<&ResolvConf, Vec<&str>> = BTreeMap::new();
        for (ns, conf) in self {
            groups.entry(conf).or_default().push(ns);
        }
        let mut seq = s.serialize_seq(Some(groups.len()))?;
        for (conf, namespaces) in groups {
            seq.serialize_element(&GroupRef { conf, namespaces })?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for ResolvConfs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let recorded = d.deserialize_any(RecordedVisitor)?;
        Ok(ResolvConfs {
            recorded: Arc::new(recorded),
            changed: BTreeMap::new(),
        })
    }
}

struct RecordedVisitor;

impl<'de> Visitor<'de> for RecordedVisitor {
    type Value = Recorded;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of resolv.conf contents with their namespaces")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Recorded, A::Error> {
        let mut all = Vec::new();
        while let Some(g) = seq.next_element::<Group<Vec<String>>>()? {
            let (conf, names) = g.split();
            all.extend(names.into_iter().map(|ns| (ns, conf.clone())));
        }
        let all = sorted_map(all).map_err(serde::de::Error::custom)?;
        Ok(Recorded {
            lists: Vec::new(),
            all: OnceLock::from(all),
        })
    }

    /// The form of earlier records: one entry per namespace.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Recorded, A::Error> {
        let mut all = Map::new();
        while let Some((ns, conf)) = map.next_entry::<String, ResolvConf>()? {
            all.insert(ns, Arc::new(conf));
        }
        Ok(Recorded {
            lists: Vec::new(),
            all: OnceLock::from(all),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{State, DNS_OWNER};

    fn conf(server: &str, owner: &str) -> Arc<ResolvConf> {
        Arc::new(ResolvConf {
            servers: vec![server.parse().unwrap()],
            owner: owner.into(),
            search: vec!["nsnet.internal".into()],
        })
    }

    fn state_of(confs: &[(&str, &Arc<ResolvConf>)]) -> State {
        let mut state = State::default();
        for (ns, c) in confs {
            state.resolv_confs.insert(ns.to_string(), Arc::clone(c));
        }
        state
    }

    /// Read back as the store reads a record it wrote, and as it reads
    /// anything else.
    fn read_both_ways(text: &str) -> [State; 2] {
        let whole: serde_json::Value = serde_json::from_str(text).unwrap();
        let lists = serde_json::from_str(&whole["resolv_confs"].to_string()).unwrap();
        let trusted = State {
            resolv_confs: ResolvConfs::from_recorded(lists, true).unwrap(),
            ..serde_json::from_str(text).unwrap()
        };
        [trusted, serde_json::from_str(text).unwrap()]
    }

    #[test]
    fn one_content_is_recorded_once_and_read_back_shared() {
        let dns = conf("10.0.0.1", DNS_OWNER);
        let mut state = State::default();
        for i in 0..100 {
            state.resolv_confs.insert(format!("n{i}"), dns.clone());
        }
        state
            .resolv_confs
            .insert("lab".into(), conf("192.0.2.53", "lab.toml"));
        let text = serde_json::to_string(&state).unwrap();
        assert_eq!(text.matches(DNS_OWNER).count(), 1, "{text}");
        for back in read_both_ways(&text) {
            assert_eq!(back, state);
            let (n1, n99) = (back.resolv_confs.get("n1"), back.resolv_confs.get("n99"));
            assert!(Arc::ptr_eq(n1.unwrap(), n99.unwrap()));
            assert_eq!(back.resolv_confs.get("lab").unwrap().owner, "lab.toml");
        }
    }

    #[test]
    fn a_name_is_found_in_undecoded_lists_only_where_it_is_an_element() {
        let (a, b) = (conf("10.0.0.1", DNS_OWNER), conf("10.1.0.1", DNS_OWNER));
        let odd = ["x,", ",y", "q\"r", "back\\slash", "ünï", "[", "]", "a b"];
        let mut entries: Vec<(&str, &Arc<ResolvConf>)> = vec![("n1", &a), ("n10", &b)];
        entries.extend(odd.iter().map(|n| (*n, &a)));
        let state = state_of(&entries);
        let text = serde_json::to_string(&state).unwrap();
        let [lazy, _] = read_both_ways(&text);
        // Looked up before anything decodes the lists whole.
        for (name, want) in entries.iter().filter(|(n, _)| plain(n)) {
            let got = lazy.resolv_confs.get(name);
            assert!(got.is_some_and(|c| c == *want), "{name}: {got:?}");
        }
        assert!(!lazy.resolv_confs.decoded_whole());
        for (name, want) in &entries {
            let got = lazy.resolv_confs.get(name);
            assert!(got.is_some_and(|c| c == *want), "{name}: {got:?}");
        }
        // Parts, joins and neighbours of listed names are not listed.
        for absent in [
            "n",
            "1",
            "n100",
            "x",
            "y",
            "x,\",\",y",
            ",",
            "q",
            "r",
            "\"",
            "n1,n10",
        ] {
            assert_eq!(lazy.resolv_confs.get(absent), None, "{absent}");
        }
        assert_eq!(lazy.resolv_confs.len(), entries.len());
    }

    #[test]
    fn changes_lie_over_the_record_and_differences_are_found_among_them() {
        let dns = conf("10.0.0.1", DNS_OWNER);
        let names: Vec<String> = (0..50).map(|i| format!("n{i}")).collect();
        let entries: Vec<(&str, &Arc<ResolvConf>)> =
            names.iter().map(|n| (n.as_str(), &dns)).collect();
        let text = serde_json::to_string(&state_of(&entries)).unwrap();
        let [before, eager] = read_both_ways(&text);
        let mut after = before.clone();
        after.resolv_confs.insert("new".into(), dns.clone());
        assert_eq!(after.resolv_confs.remove("n7"), Some(dns.clone()));
        assert_eq!(after.resolv_confs.remove("absent"), None);
        let other = conf("10.9.0.1", "lab.toml");
        after.resolv_confs.insert("n8".into(), other.clone());
        let d = ResolvConfs::changed_between(&before.resolv_confs, &after.resolv_confs);
        let want: BTreeMap<String, Option<Arc<ResolvConf>>> = [
            ("n7".to_string(), None),
            ("n8".to_string(), Some(other)),
            ("new".to_string(), Some(dns.clone())),
        ]
        .into();
        assert_eq!(d, want);
        // The same from unrelated copies (a walk over both).
        assert_eq!(
            ResolvConfs::changed_between(&eager.resolv_confs, &after.resolv_confs),
            want
        );
        assert_eq!(after.resolv_confs.get("n7"), None);
        assert_eq!(after.resolv_confs.len(), 50);
        let names: Vec<&String> = after.resolv_confs.keys().collect();
        assert!(names.windows(2).all(|w| w[0] < w[1]), "{names:?}");
        assert!(!names.iter().any(|n| *n == "n7"));
        // Written again and read back, the changes are in the record.
        let again = serde_json::to_string(&after).unwrap();
        for back in read_both_ways(&again) {
            assert_eq!(back, after);
        }
        assert_ne!(before, after);
    }

    #[test]
    fn removing_every_entry_leaves_it_empty() {
        let dns = conf("10.0.0.1", DNS_OWNER);
        let text = serde_json::to_string(&state_of(&[("a", &dns), ("b", &dns)])).unwrap();
        for mut state in read_both_ways(&text) {
            assert!(!state.resolv_confs.is_empty());
            state.resolv_confs.remove("a");
            assert!(!state.resolv_confs.is_empty());
            state.resolv_confs.remove("b");
            assert!(state.resolv_confs.is_empty());
            assert_eq!(state, State::default());
        }
        let none: [State; 2] = read_both_ways(&serde_json::to_string(&State::default()).unwrap());
        assert!(none.iter().all(|s| s.resolv_confs.is_empty()));
    }

    #[test]
    fn records_of_one_entry_per_namespace_are_still_read() {
        let old = r#"{"version":1,"networks":{},"resolv_confs":{
            "a":{"servers":["10.0.0.1"],"owner":"nsnet network DNS","search":["x.test"]},
            "b":{"servers":["192.0.2.53"],"owner":"lab.toml"}}}"#;
        for state in read_both_ways(old) {
            assert_eq!(state.resolv_confs.len(), 2);
            assert_eq!(state.resolv_confs.get("a").unwrap().search, ["x.test"]);
            assert!(state.resolv_confs.get("b").unwrap().search.is_empty());
        }
    }

    #[test]
    fn a_namespace_under_two_contents_is_refused() {
        let bad = r#"{"version":1,"networks":{},"resolv_confs":[
            {"servers":["10.0.0.1"],"owner":"o","namespaces":["a"]},
            {"servers":["10.0.0.2"],"owner":"o","namespaces":["a"]}]}"#;
        let err = serde_json::from_str::<State>(bad).unwrap_err();
        assert!(
            err.to_string().contains("two resolv.conf contents"),
            "{err}"
        );
    }
}
