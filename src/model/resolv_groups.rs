//! How `State::resolv_confs` is recorded: one entry per distinct content,
//! with the namespaces that have it, instead of one per namespace. A
//! thousand namespaces of one DNS network hold one content: the record
//! carries it once, and reading it back makes one shared value, not a
//! thousand copies (this map was most of the record's bytes and more than
//! half of its decoding time).
//!
//! Records written before hold the map of one entry per namespace; they
//! are still read.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ResolvConf;

type Confs = BTreeMap<String, Arc<ResolvConf>>;

/// One content and the namespaces whose file has it.
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
struct Group {
    servers: Vec<std::net::IpAddr>,
    owner: String,
    #[serde(default)]
    search: Vec<String>,
    namespaces: Vec<String>,
}

pub fn serialize<S: Serializer>(confs: &Confs, s: S) -> Result<S::Ok, S::Error> {
    let mut groups: BTreeMap<&ResolvConf, Vec<&str>> = BTreeMap::new();
    for (ns, conf) in confs {
        groups.entry(conf).or_default().push(ns);
    }
    let mut seq = s.serialize_seq(Some(groups.len()))?;
    for (conf, namespaces) in groups {
        seq.serialize_element(&GroupRef { conf, namespaces })?;
    }
    seq.end()
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Confs, D::Error> {
    d.deserialize_any(ConfsVisitor)
}

struct ConfsVisitor;

impl<'de> Visitor<'de> for ConfsVisitor {
    type Value = Confs;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of resolv.conf contents with their namespaces")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Confs, A::Error> {
        // Sorted first, then built in one go: a thousand inserts into the
        // map cost several times more.
        let mut all = Vec::new();
        while let Some(g) = seq.next_element::<Group>()? {
            let conf = Arc::new(ResolvConf {
                servers: g.servers,
                owner: g.owner,
                search: g.search,
            });
            all.extend(g.namespaces.into_iter().map(|ns| (ns, conf.clone())));
        }
        all.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        if all.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(serde::de::Error::custom(
                "a namespace is listed under two resolv.conf contents",
            ));
        }
        Ok(all.into_iter().collect())
    }

    /// The form of earlier records: one entry per namespace.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Confs, A::Error> {
        let mut out = Confs::new();
        while let Some((ns, conf)) = map.next_entry::<String, ResolvConf>()? {
            out.insert(ns, Arc::new(conf));
        }
        Ok(out)
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

    #[test]
    fn one_content_is_recorded_once_and_read_back_shared() {
        let mut state = State::default();
        let dns = conf("10.0.0.1", DNS_OWNER);
        for i in 0..100 {
            state.resolv_confs.insert(format!("n{i}"), dns.clone());
        }
        state
            .resolv_confs
            .insert("lab".into(), conf("192.0.2.53", "lab.toml"));
        let text = serde_json::to_string(&state).unwrap();
        assert_eq!(text.matches(DNS_OWNER).count(), 1, "{text}");
        let back: State = serde_json::from_str(&text).unwrap();
        assert_eq!(back, state);
        assert!(Arc::ptr_eq(
            &back.resolv_confs["n1"],
            &back.resolv_confs["n99"]
        ));
        assert_eq!(back.resolv_confs["lab"].owner, "lab.toml");
    }

    #[test]
    fn records_of_one_entry_per_namespace_are_still_read() {
        let old = r#"{"version":1,"networks":{},"resolv_confs":{
            "a":{"servers":["10.0.0.1"],"owner":"nsnet network DNS","search":["x.test"]},
            "b":{"servers":["192.0.2.53"],"owner":"lab.toml"}}}"#;
        let state: State = serde_json::from_str(old).unwrap();
        assert_eq!(state.resolv_confs.len(), 2);
        assert_eq!(state.resolv_confs["a"].search, ["x.test"]);
        assert!(state.resolv_confs["b"].search.is_empty());
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
