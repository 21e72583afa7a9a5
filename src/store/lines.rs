//! The record's attachment lines and their layout: one JSON object per
//! line, written by serde_json in `Attachment`'s field order (the
//! namespace first), which lets a command answer lookups, list addresses
//! and summarise a line without decoding it (`LineSource`). Only lines
//! whose checksum and field list show that this nsnet wrote them are kept
//! this way (`record`); others are decoded when read.

use std::borrow::Cow;
use std::net::IpAddr;
use std::ops::Range;
use std::sync::{Arc, LazyLock};

use memchr::memmem::{self, Finder};

use crate::model::attachments::{
    address_items, Attachments, LineSource, LineSummary, Lookup, Piece,
};
use crate::model::Attachment;

/// The text of a record and which of its lines are one network's
/// attachments.
pub struct RecordLines {
    text: Arc<String>,
    ranges: Vec<Range<usize>>,
}

impl RecordLines {
    /// The lines `ranges` of `text` (each range without its newline).
    pub fn new(text: &Arc<String>, ranges: impl IntoIterator<Item = Range<usize>>) -> RecordLines {
        RecordLines {
            text: text.clone(),
            ranges: ranges.into_iter().collect(),
        }
    }

    fn line(&self, i: usize) -> &str {
        &self.text[self.ranges[i].clone()]
    }
}

impl LineSource for RecordLines {
    fn count(&self) -> usize {
        self.ranges.len()
    }

    fn decode(&self, i: usize) -> Attachment {
        // `record` checked these lines before keeping any undecoded.
        decode_line(self.line(i)).expect("record lines were checked when read")
    }

    fn matcher(&self, lookup: Lookup<'_>) -> Box<dyn Fn(usize) -> bool + '_> {
        let needle = match lookup {
            Lookup::Namespace(ns) => needle("namespace", ns),
            Lookup::ContainerId(id) => needle("container_id", &id),
            Lookup::DockerEndpoint(id) => needle("docker", &id),
            Lookup::Ports => Needle::Anywhere(Box::new(Finder::new(PORTS_KEY).into_owned())),
        };
        Box::new(move |i| may_hold(self.line(i), &needle))
    }

    fn addresses(&self, i: usize, out: &mut Vec<IpAddr>) -> bool {
        let before = out.len();
        if scan_addresses(self.line(i), out).is_some() {
            return true;
        }
        // What a scan that failed half-way pushed goes.
        out.truncate(before);
        false
    }

    fn summary(&self, i: usize) -> Option<LineSummary<'_>> {
        summary_of(self.line(i))
    }

    fn namespace(&self, i: usize) -> Option<&str> {
        string_at(self.line(i).strip_prefix('{')?.strip_prefix(FIRST_KEY)?)
    }

    fn text(&self) -> &[u8] {
        self.text.as_bytes()
    }

    fn span(&self, i: usize) -> Range<usize> {
        // Every line of a record text ends with a newline.
        let r = &self.ranges[i];
        r.start..r.end + 1
    }
}

/// One line per attachment of `atts`, in as few pieces as can be: a run
/// of lines read one after the other from a record is borrowed from its
/// text whole (nothing copied, nothing decoded), the others encoded.
pub fn line_pieces<'a>(
    atts: &'a Attachments,
    out: &mut Vec<Cow<'a, [u8]>>,
) -> serde_json::Result<()> {
    // The run being borrowed: where it starts and ends in the text
    // (newline included: every line of a record text ends with one).
    let mut run: Option<(usize, usize)> = None;
    let source = atts.source();
    let end_run = |run: &mut Option<(usize, usize)>, out: &mut Vec<Cow<'a, [u8]>>| {
        if let (Some((start, end)), Some(s)) = (run.take(), source) {
            out.push(Cow::Borrowed(&s.text()[start..end]));
        }
    };
    for piece in atts.pieces() {
        match (piece, source, &mut run) {
            (Piece::Line(i), Some(s), Some((_, end))) if *end == s.span(i).start => {
                *end = s.span(i).end;
            }
            (Piece::Line(i), Some(s), _) => {
                end_run(&mut run, out);
                let r = s.span(i);
                run = Some((r.start, r.end));
            }
            (Piece::Line(_), None, _) => unreachable!("a line comes with its source"),
            (Piece::Value(a), _, _) => {
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

/// Decodes one record line.
pub fn decode_line(line: &str) -> serde_json::Result<Attachment> {
    serde_json::from_str(line)
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
    for item in address_items(recorded_addresses(line)?) {
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

/// The string value of `key` in `line`, `None` when it has an escape (a
/// summary borrows; decoding handles those). A key cannot be matched
/// inside a string value: a `"` in there is escaped, and a key's text
/// ends with `":`. The first match is the attachment's own field: nsnet
/// writes them in `Attachment`'s order, and the nested `cni` object (its
/// own `ifname`) comes after.
fn string_value<'a>(line: &'a str, key: &Finder) -> Option<&'a str> {
    let at = key.find(line.as_bytes())? + key.needle().len();
    string_at(&line[at..])
}

/// Searchers for the keys a summary reads, built once: building one costs
/// more than searching a line with it.
struct Keys {
    host_ifname: Finder<'static>,
    ifname: Finder<'static>,
    addresses: Finder<'static>,
    ports: Finder<'static>,
}

static KEYS: LazyLock<Keys> = LazyLock::new(|| Keys {
    host_ifname: Finder::new(b"\"host_ifname\":"),
    ifname: Finder::new(b"\"ifname\":"),
    addresses: Finder::new(b"\"addresses\":["),
    ports: Finder::new(PORTS_KEY.as_bytes()),
});

/// The string `rest` starts with, unless it has an escape.
fn string_at(rest: &str) -> Option<&str> {
    let rest = rest.strip_prefix('"')?;
    let value = &rest[..memchr::memchr(b'"', rest.as_bytes())?];
    (!value.contains('\\')).then_some(value)
}

/// What is inside the brackets of a line's `"addresses":[…]`.
fn recorded_addresses(line: &str) -> Option<&str> {
    let key = &KEYS.addresses;
    let at = key.find(line.as_bytes())? + key.needle().len();
    Some(&line[at..at + memchr::memchr(b']', &line.as_bytes()[at..])?])
}

/// The summary of `line`, read off it without decoding; `None` when the
/// line has more than a summary shows (published ports) or is not in the
/// form nsnet writes.
fn summary_of(line: &str) -> Option<LineSummary<'_>> {
    let keys = &*KEYS;
    if keys.ports.find(line.as_bytes()).is_some() {
        return None;
    }
    // The first field, as nsnet writes it.
    let namespace = string_at(line.strip_prefix('{')?.strip_prefix(FIRST_KEY)?)?;
    Some(LineSummary::new(
        namespace,
        string_value(line, &keys.host_ifname)?,
        string_value(line, &keys.ifname)?,
        recorded_addresses(line)?,
    ))
}

#[cfg(test)]
mod tests {
    use ipnet::IpNet;

    use super::*;
    use crate::model::attachments::{Attachments, Change, Summary};
    use crate::model::{test_attachment, CniKey, NsRef};

    /// Appends one line per attachment to `out` (see `line_pieces`).
    fn write_lines(atts: &Attachments, out: &mut Vec<u8>) -> serde_json::Result<()> {
        let mut pieces = Vec::new();
        line_pieces(atts, &mut pieces)?;
        pieces.iter().for_each(|p| out.extend_from_slice(p));
        Ok(())
    }

    /// How many slots of `lazy` are decoded.
    fn decoded(lazy: &Attachments) -> usize {
        lazy.decoded_count()
    }

    fn lines(atts: &[Attachment]) -> (Arc<String>, Attachments) {
        let mut text = Vec::new();
        let decoded: Attachments = atts.iter().cloned().map(Arc::new).collect();
        write_lines(&decoded, &mut text).unwrap();
        let text: Arc<String> = Arc::new(String::from_utf8(text).unwrap());
        let mut ranges = Vec::new();
        let mut start = 0;
        for (i, b) in text.bytes().enumerate() {
            if b == b'\n' {
                ranges.push(start..i);
                start = i + 1;
            }
        }
        let lazy = Attachments::from_source(Arc::new(RecordLines::new(&text, ranges)));
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
        write_lines(&lazy, &mut out).unwrap();
        let mut again = Vec::new();
        write_lines(&decoded, &mut again).unwrap();
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
        line_pieces(&lazy, &mut pieces).unwrap();
        assert!(matches!(&pieces[..], [Cow::Borrowed(all)] if all == &text.as_bytes()));
        Arc::make_mut(&mut lazy[1]).namespace_created = false;
        let mut pieces = Vec::new();
        line_pieces(&lazy, &mut pieces).unwrap();
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
        write_lines(&lazy, &mut out).unwrap();
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
