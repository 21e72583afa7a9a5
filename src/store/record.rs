//! The record's format (version 3): JSON lines, so that reading it costs
//! what a command looks at, not what the record holds.
//!
//! ```text
//! {"version":3,"attachment_lines":{"net":2},"crc32":…}   the header
//! {"version":3,"networks":{"net":{…}},…}                  the state, but attachments
//! {"namespace":"a",…}                                     one line per attachment,
//! {"namespace":"b",…}                                     by network, in name order
//! ```
//!
//! Attachment lines are kept undecoded (see `model::attachments`) when
//! their checksum matches the header's: they are then exactly what nsnet
//! wrote. Lines that fail it (a record repaired by hand) are decoded one by
//! one, each error naming its line. Records of versions 1 and 2 (one JSON
//! document) are read as before.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use super::lines::{decode_line, line_pieces, RecordLines};
use crate::model::resolv_confs::{RecordedLists, ResolvConfs};
use crate::model::{Attachments, Network, State, STATE_VERSION};

/// The version from which the record is JSON lines.
const LINES_FROM: u32 = 3;

#[derive(serde::Serialize, serde::Deserialize)]
struct Header {
    version: u32,
    /// Attachment lines per network, in the order of the lines.
    #[serde(default)]
    attachment_lines: BTreeMap<String, usize>,
    #[serde(default)]
    crc32: u32,
    /// The fields of an attachment as the writer knew them: lines are
    /// kept undecoded only by a reader that knows the same (a line with a
    /// field this nsnet does not know is then reported when read, with
    /// its number, rather than when first used).
    #[serde(default)]
    attachment_fields: Vec<String>,
    /// The checksum of line 2, the state but attachments: when it holds,
    /// lists of namespaces in it are kept undecoded too (see
    /// `model::resolv_confs`). Records written before lack it.
    #[serde(default)]
    head_crc32: Option<u32>,
}

/// The fields of `Attachment`, in order (a test checks them).
const ATTACHMENT_FIELDS: [&str; 11] = [
    "namespace",
    "namespace_created",
    "host_ifname",
    "ifname",
    "mac",
    "addresses",
    "ports",
    "owner",
    "cni",
    "aliases",
    "docker",
];

/// Why a record could not be read.
pub enum Refusal {
    Corrupt(String),
    Version(u32),
}

/// The bytes of `state` as a record that has folded in `changes` changes,
/// in pieces (attachment lines read from a record are borrowed from its
/// text, not copied).
pub fn encode(state: &State, changes: u64) -> serde_json::Result<Vec<Cow<'_, [u8]>>> {
    let mut lines = Vec::new();
    let mut counts = BTreeMap::new();
    let mut networks = BTreeMap::new();
    for (name, net) in &state.networks {
        if !net.attachments.is_empty() {
            counts.insert(name.clone(), net.attachments.len());
            line_pieces(&net.attachments, &mut lines)?;
        }
        let head = Network {
            attachments: Attachments::new(),
            ..net.clone()
        };
        networks.insert(name.clone(), head);
    }
    // Every field spelt out: a field added to `State` must be placed here.
    let head = State {
        version: STATE_VERSION,
        networks,
        sysctls: state.sysctls.clone(),
        resolv_confs: state.resolv_confs.clone(),
        links: state.links.clone(),
        lab_namespaces: state.lab_namespaces.clone(),
        impairments: state.impairments.clone(),
        docker_pools: state.docker_pools.clone(),
        changes,
    };
    let mut crc = crc32fast::Hasher::new();
    lines.iter().for_each(|piece| crc.update(piece));
    let head = serde_json::to_vec(&head)?;
    let header = Header {
        version: STATE_VERSION,
        attachment_lines: counts,
        crc32: crc.finalize(),
        attachment_fields: ATTACHMENT_FIELDS.map(String::from).to_vec(),
        head_crc32: Some(crc32fast::hash(&head)),
    };
    let mut first = serde_json::to_vec(&header)?;
    first.push(b'\n');
    first.extend_from_slice(&head);
    first.push(b'\n');
    lines.insert(0, Cow::Owned(first));
    Ok(lines)
}

/// The state line (line 2) as the store reads it: `State`'s fields, with
/// the resolv.conf contents kept as their text until it is known whether
/// the line's checksum holds (see `ResolvConfs::from_recorded`).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StateLine {
    version: u32,
    networks: BTreeMap<String, Network>,
    #[serde(default)]
    sysctls: BTreeMap<String, String>,
    #[serde(default)]
    resolv_confs: Option<RecordedLists>,
    #[serde(default)]
    links: Vec<crate::model::lab::Link>,
    #[serde(default)]
    lab_namespaces: BTreeMap<String, crate::model::lab::LabNamespace>,
    #[serde(default)]
    impairments: crate::model::lab::Impairments,
    #[serde(default)]
    docker_pools: BTreeMap<String, crate::model::docker::Pool>,
    #[serde(default)]
    changes: u64,
}

/// Reads the state line; `trusted` when its checksum holds. Every field of
/// `State` is spelt out, as `encode` spells them out.
fn read_state_line(line: &str, trusted: bool) -> serde_json::Result<State> {
    let l: StateLine = serde_json::from_str(line)?;
    let resolv_confs = match l.resolv_confs {
        Some(lists) => {
            ResolvConfs::from_recorded(lists, trusted).map_err(serde::de::Error::custom)?
        }
        None => ResolvConfs::default(),
    };
    Ok(State {
        version: l.version,
        networks: l.networks,
        sysctls: l.sysctls,
        resolv_confs,
        links: l.links,
        lab_namespaces: l.lab_namespaces,
        impairments: l.impairments,
        docker_pools: l.docker_pools,
        changes: l.changes,
    })
}

/// The state a record holds.
pub fn decode(bytes: Vec<u8>) -> Result<State, Refusal> {
    let corrupt = |reason: String| Refusal::Corrupt(reason);
    let text = String::from_utf8(bytes).map_err(|e| corrupt(e.utf8_error().to_string()))?;
    let header = text
        .split_once('\n')
        .and_then(|(first, _)| serde_json::from_str::<Header>(first).ok());
    let Header {
        version,
        attachment_lines: counts,
        crc32,
        attachment_fields,
        head_crc32,
    } = match header {
        Some(h) if h.version >= LINES_FROM => h,
        // One JSON document: versions 1 and 2, or not a record at all.
        _ => {
            let state: State = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
            return check_version(state.version).map(|()| state);
        }
    };
    check_version(version)?;
    if !text.ends_with('\n') {
        return Err(corrupt("it ends in the middle of a line".into()));
    }
    let text: Arc<String> = Arc::new(text);
    let mut lines = line_ranges(&text);
    let _header_line = lines.next();
    let head_line = lines
        .next()
        .ok_or_else(|| corrupt("the record ends after its header".into()))?;
    let head = &text[head_line];
    let trusted = head_crc32 == Some(crc32fast::hash(head.as_bytes()));
    let mut state = read_state_line(head, trusted).map_err(|e| corrupt(format!("line 2: {e}")))?;
    let lines: Vec<Range<usize>> = lines.collect();
    let expected: usize = counts.values().sum();
    if lines.len() != expected {
        return Err(corrupt(format!(
            "its header counts {expected} attachment lines, it has {}",
            lines.len()
        )));
    }
    let body = lines.first().map_or(0..0, |f| f.start..text.len());
    // Kept undecoded only when written as this nsnet would write them.
    let intact = attachment_fields.iter().eq(ATTACHMENT_FIELDS.iter())
        && crc32fast::hash(text[body].as_bytes()) == crc32;
    let mut at = 0;
    for (name, count) in counts {
        let net = state.networks.get_mut(&name).ok_or_else(|| {
            corrupt(format!(
                "its header names network {name}, which it does not hold"
            ))
        })?;
        let mine = &lines[at..at + count];
        net.attachments = if intact {
            Attachments::from_source(Arc::new(RecordLines::new(&text, mine.iter().cloned())))
        } else {
            decode_each(&text, mine, at + 3).map_err(corrupt)?
        };
        at += count;
    }
    Ok(state)
}

fn check_version(found: u32) -> Result<(), Refusal> {
    if (1..=STATE_VERSION).contains(&found) {
        Ok(())
    } else {
        Err(Refusal::Version(found))
    }
}

/// The lines of `text`, without their newlines; a last line must end with
/// one (a record cut short does not).
fn line_ranges(text: &str) -> impl Iterator<Item = Range<usize>> + '_ {
    let mut start = 0;
    memchr::memchr_iter(b'\n', text.as_bytes()).map(move |end| {
        let r = start..end;
        start = end + 1;
        r
    })
}

/// Lines whose checksum failed, decoded one by one; `first` is the number
/// of the first in the file, for the error.
fn decode_each(text: &str, lines: &[Range<usize>], first: usize) -> Result<Attachments, String> {
    lines
        .iter()
        .enumerate()
        .map(|(i, r)| {
            decode_line(&text[r.clone()])
                .map(Arc::new)
                .map_err(|e| format!("line {}: {e}", first + i))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Attachments::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{test_attachment, test_network};

    fn state() -> State {
        let mut s = State {
            version: STATE_VERSION,
            ..State::default()
        };
        for (name, n) in [("a", 3), ("b", 0), ("c", 2)] {
            let mut net = test_network(name, name, &["10.0.0.0/24"]);
            net.attachments = (0..n)
                .map(|i| Arc::new(test_attachment(&format!("{name}{i}"))))
                .collect();
            s.networks.insert(name.into(), net);
        }
        let dns = Arc::new(crate::model::ResolvConf {
            servers: vec!["10.0.0.1".parse().unwrap()],
            owner: crate::model::DNS_OWNER.into(),
            search: vec!["nsnet.internal".into()],
        });
        for ns in ["a0", "a1", "a2", "c0"] {
            s.resolv_confs.insert(ns.into(), dns.clone());
        }
        s
    }

    fn decoded(bytes: Vec<u8>) -> State {
        match decode(bytes) {
            Ok(s) => s,
            Err(Refusal::Corrupt(r)) => panic!("corrupt: {r}"),
            Err(Refusal::Version(v)) => panic!("version {v}"),
        }
    }

    fn reason(bytes: Vec<u8>) -> String {
        match decode(bytes) {
            Err(Refusal::Corrupt(r)) => r,
            _ => panic!("not refused as corrupt"),
        }
    }

    #[test]
    fn a_state_reads_back_as_written_and_writes_back_the_same() {
        let s = state();
        let bytes = encode(&s, 0).unwrap().concat();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.starts_with(&format!("{{\"version\":{STATE_VERSION},")));
        assert_eq!(text.lines().count(), 2 + 5, "{text}");
        let read = decoded(bytes.clone());
        assert!(read.resolv_confs.get("a1").is_some() && read.resolv_confs.get("b1").is_none());
        assert!(
            !read.resolv_confs.decoded_whole(),
            "lists of namespaces kept undecoded"
        );
        assert_eq!(read, s);
        assert_eq!(
            encode(&read, 0).unwrap().concat(),
            bytes,
            "undecoded lines written as read"
        );
    }

    #[test]
    fn damage_is_named_and_a_repair_by_hand_is_accepted() {
        let text = String::from_utf8(encode(&state(), 0).unwrap().concat()).unwrap();
        // Half a record.
        let half = text[..text.len() / 2].to_string();
        assert!(!reason(half.into_bytes()).is_empty());
        // An attachment line made invalid: its number is given.
        let broken = text.replacen("\"namespace\":\"c1\"", "\"namespace\":7", 1);
        assert!(reason(broken.into_bytes()).starts_with("line 7: "));
        // A line removed: the header's count no longer holds.
        let mut lines: Vec<&str> = text.lines().collect();
        lines.remove(3);
        let short = lines.join("\n") + "\n";
        assert!(reason(short.into_bytes()).contains("counts 5 attachment lines, it has 4"));
        // A valid change by hand (checksum no longer matches): read.
        let edited = text.replacen(
            "\"namespace_created\":true",
            "\"namespace_created\":false",
            1,
        );
        let read = decoded(edited.into_bytes());
        assert!(!read.networks["a"].attachments[0].namespace_created);
        // A later version is refused whatever follows.
        let later = text.replacen(&format!("\"version\":{STATE_VERSION}"), "\"version\":99", 1);
        assert!(matches!(
            decode(later.into_bytes()),
            Err(Refusal::Version(99))
        ));
    }

    #[test]
    fn namespace_lists_edited_by_hand_are_checked_when_read() {
        let text = String::from_utf8(encode(&state(), 0).unwrap().concat()).unwrap();
        let list = "\"namespaces\":[\"a0\",\"a1\",\"a2\",\"c0\"]";
        assert!(text.contains(list), "{text}");
        // Spaced out by hand: read (the checksum fails, so decoded whole).
        let spaced = text.replacen(list, "\"namespaces\": [ \"a0\" , \"a1\",\"a2\",\"c0\" ]", 1);
        let read = decoded(spaced.into_bytes());
        assert!(read.resolv_confs.decoded_whole());
        assert_eq!(read.resolv_confs, state().resolv_confs);
        assert!(read.resolv_confs.get("a0").is_some());
        // A namespace given twice, or a name that is not a string: refused.
        let twice = text.replacen(list, "\"namespaces\":[\"a0\",\"a0\"]", 1);
        assert!(reason(twice.into_bytes()).contains("line 2: a namespace is listed under two"));
        let number = text.replacen(list, "\"namespaces\":[\"a0\",7]", 1);
        assert!(reason(number.into_bytes()).starts_with("line 2: invalid type"));
    }

    #[test]
    fn the_header_lists_every_field_of_an_attachment() {
        let mut a = test_attachment("a");
        a.mac = Some("02:00:00:00:00:01".into());
        a.ports = vec!["8080:80".parse().unwrap()];
        a.owner = Some("f.toml".into());
        a.cni = Some(crate::model::CniKey {
            container_id: "c".into(),
            ifname: "eth0".into(),
        });
        a.aliases = vec!["b".into()];
        a.docker = Some("0123456789ab".into());
        let text = serde_json::to_string(&a).unwrap();
        let keys: Vec<String> =
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&text)
                .unwrap()
                .keys()
                .cloned()
                .collect();
        let mut ours = ATTACHMENT_FIELDS.map(String::from).to_vec();
        ours.sort();
        assert_eq!(
            keys, ours,
            "ATTACHMENT_FIELDS must list Attachment's fields"
        );
        assert!(
            text.starts_with("{\"namespace\":"),
            "lookups rely on it: {text}"
        );
    }

    #[test]
    fn lines_of_a_writer_that_knew_other_fields_are_checked_when_read() {
        let s = state();
        let text = String::from_utf8(encode(&s, 0).unwrap().concat()).unwrap();
        // A later nsnet's field, with the header and checksum it wrote.
        let later = text
            .replacen("\"docker\"]", "\"docker\",\"colour\"]", 1)
            .replacen(
                "{\"namespace\":\"c1\",",
                "{\"namespace\":\"c1\",\"colour\":1,",
                1,
            );
        let mut lines: Vec<String> = later.lines().map(String::from).collect();
        let body: String = lines[2..].iter().map(|l| format!("{l}\n")).collect();
        let mut header: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        header["crc32"] = crc32fast::hash(body.as_bytes()).into();
        lines[0] = header.to_string();
        let later = lines.join("\n") + "\n";
        assert!(reason(later.into_bytes()).starts_with("line 7: unknown field `colour`"));
    }

    #[test]
    fn records_of_one_document_are_still_read() {
        let s = state();
        let mut v2 = s.clone();
        v2.version = 2;
        let read = decoded(serde_json::to_vec_pretty(&v2).unwrap());
        assert_eq!(read.networks, s.networks);
        let read = decoded(serde_json::to_vec(&v2).unwrap());
        assert_eq!(read.networks, s.networks);
    }

    proptest::proptest! {
        /// Damage anywhere (a byte changed, the end cut off) is refused or
        /// read; what is read can be looked at whole and written again:
        /// nothing panics, whatever lines were kept undecoded.
        #[test]
        fn damaged_records_are_refused_or_read_never_a_panic(
            at in 0usize..4096,
            byte in proptest::num::u8::ANY,
            cut in proptest::bool::ANY,
        ) {
            let mut bytes = encode(&state(), 0).unwrap().concat();
            let at = at % bytes.len();
            if cut {
                bytes.truncate(at);
            } else {
                bytes[at] = byte;
            }
            if let Ok(read) = decode(bytes) {
                let _ = read.resolv_confs.get("a1");
                let _ = read.resolv_confs.len();
                for net in read.networks.values() {
                    for a in &net.attachments {
                        let _ = a.addresses.len();
                    }
                }
                encode(&read, 0).unwrap().concat();
            }
        }
    }
}
