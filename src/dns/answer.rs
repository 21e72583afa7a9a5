//! One query, answered from the zones of the networks the client belongs
//! to (pure; the wire format is hickory-proto's): A and AAAA for members'
//! names and aliases, PTR for their addresses, NXDOMAIN for unknown names
//! under a zone (or bare), REFUSED for what only an internal network could
//! forward, and `Forward` for the rest. Clients of no DNS network get no
//! answer at all.

use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::records::{Table, Zone};

/// Names change with attachments: clients must not cache them.
const TTL: u32 = 0;
/// The UDP payload nsnet offers with EDNS0 (the DNS flag day's size).
const EDNS_PAYLOAD: u16 = 1232;
/// Without EDNS0, a UDP answer holds 512 bytes.
const PLAIN_UDP: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Send these bytes back.
    Reply(Vec<u8>),
    /// Relay the query as it is to these servers (none given: the host's).
    Forward(Vec<IpAddr>),
    /// Say nothing (not a member, or not a DNS message at all).
    Ignore,
}

fn reply(req: &Message, code: ResponseCode, answers: Vec<Record>, udp: bool) -> Outcome {
    let mut m = Message::response(req.metadata.id, req.metadata.op_code);
    m.metadata.recursion_desired = req.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    m.metadata.authoritative = code != ResponseCode::Refused;
    m.metadata.response_code = code;
    m.queries = req.queries.clone();
    m.answers = answers;
    let limit = match &req.edns {
        Some(e) => {
            let mut edns = Edns::new();
            edns.set_max_payload(EDNS_PAYLOAD);
            m.edns = Some(edns);
            usize::from(e.max_payload().clamp(512, EDNS_PAYLOAD))
        }
        None => PLAIN_UDP,
    };
    let Ok(bytes) = m.to_vec() else {
        return Outcome::Ignore;
    };
    if udp && bytes.len() > limit {
        return m
            .truncate()
            .to_vec()
            .map_or(Outcome::Ignore, Outcome::Reply);
    }
    Outcome::Reply(bytes)
}

fn address_records(name: &Name, qtype: RecordType, addrs: &[IpAddr]) -> Vec<Record> {
    addrs
        .iter()
        .filter_map(|a| match (a, qtype) {
            (IpAddr::V4(v4), RecordType::A | RecordType::ANY) => {
                Some(Record::from_rdata(name.clone(), TTL, RData::A(A(*v4))))
            }
            (IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY) => Some(Record::from_rdata(
                name.clone(),
                TTL,
                RData::AAAA(AAAA(*v6)),
            )),
            _ => None,
        })
        .collect()
}

/// Where a name no member has goes: the first forwarding zone's servers;
/// REFUSED when every zone of the client is internal.
fn forward(req: &Message, zones: &[&Zone], udp: bool) -> Outcome {
    match zones.iter().find_map(|z| z.upstreams.as_ref()) {
        Some(servers) => Outcome::Forward(servers.clone()),
        None => reply(req, ResponseCode::Refused, Vec::new(), udp),
    }
}

fn answer_ptr(req: &Message, q: &Query, zones: &[&Zone], udp: bool) -> Outcome {
    let Ok(net) = q.name().parse_arpa_name() else {
        return forward(req, zones, udp);
    };
    let addr = net.addr();
    for z in zones {
        if let Some(ns) = z.reverse.get(&addr) {
            let Ok(target) = Name::from_ascii(format!("{ns}.{}.", z.domain)) else {
                continue;
            };
            let rec = Record::from_rdata(q.name().clone(), TTL, RData::PTR(PTR(target)));
            return reply(req, ResponseCode::NoError, vec![rec], udp);
        }
    }
    if zones
        .iter()
        .any(|z| z.subnets.iter().any(|s| s.contains(&addr)))
    {
        return reply(req, ResponseCode::NXDomain, Vec::new(), udp);
    }
    forward(req, zones, udp)
}

/// Answers one DNS message from `source`; `udp` decides truncation.
pub fn answer(packet: &[u8], source: IpAddr, table: &Table, udp: bool) -> Outcome {
    let zones: Vec<&Zone> = table.zones_of(source).collect();
    if zones.is_empty() {
        return Outcome::Ignore;
    }
    let Ok(req) = Message::from_vec(packet) else {
        return Outcome::Ignore;
    };
    if req.metadata.message_type != MessageType::Query {
        return Outcome::Ignore;
    }
    if req.metadata.op_code != OpCode::Query {
        return reply(&req, ResponseCode::NotImp, Vec::new(), udp);
    }
    let [q] = req.queries.as_slice() else {
        return reply(&req, ResponseCode::FormErr, Vec::new(), udp);
    };
    if q.query_type() == RecordType::PTR {
        return answer_ptr(&req, q, &zones, udp);
    }
    let name = q
        .name()
        .to_ascii()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let mut ours = false;
    for z in &zones {
        match z.lookup(&name) {
            Some(Some(addrs)) => {
                let answers = address_records(q.name(), q.query_type(), addrs);
                return reply(&req, ResponseCode::NoError, answers, udp);
            }
            Some(None) => ours = true,
            None => {}
        }
    }
    if ours {
        return reply(&req, ResponseCode::NXDomain, Vec::new(), udp);
    }
    forward(&req, &zones, udp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{test_attachment, test_network, State};

    fn table() -> Table {
        let mut s = State::default();
        let mut a = test_network("a", "a", &["10.1.0.0/24", "fd00:1::/64"]);
        let mut web = test_attachment("Web");
        web.addresses = vec![
            "10.1.0.2/24".parse().unwrap(),
            "fd00:1::2/64".parse().unwrap(),
        ];
        web.aliases = vec!["www".into()];
        a.attachments.push(web.into());
        // A container known by its path is named by its aliases.
        let mut pod = test_attachment("pod");
        pod.namespace = crate::model::NsRef::Path("/run/netns/netns-1234".into());
        pod.addresses = vec!["10.1.0.3/24".parse().unwrap()];
        pod.aliases = vec!["Cache".into(), "redis".into()];
        a.attachments.push(pod.into());
        let mut b = test_network("b", "b", &["10.2.0.0/24"]);
        b.internal = true;
        let mut db = test_attachment("db");
        db.addresses = vec!["10.2.0.2/24".parse().unwrap()];
        b.attachments.push(db.into());
        s.networks.insert("a".into(), a);
        s.networks.insert("b".into(), b);
        Table::from_state(&s)
    }

    fn ask(name: &str, qtype: RecordType, from: &str) -> Outcome {
        let mut m = Message::query();
        m.metadata.id = 7;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        answer(&m.to_vec().unwrap(), from.parse().unwrap(), &table(), true)
    }

    fn parsed(o: Outcome) -> Message {
        match o {
            Outcome::Reply(b) => Message::from_vec(&b).unwrap(),
            other => panic!("no reply: {other:?}"),
        }
    }

    #[test]
    fn members_get_names_aliases_both_families_and_reverse() {
        let m = parsed(ask("web.", RecordType::A, "10.1.0.9"));
        assert_eq!(
            (m.metadata.id, m.metadata.response_code),
            (7, ResponseCode::NoError)
        );
        assert_eq!(m.answers[0].data, RData::A(A("10.1.0.2".parse().unwrap())));
        let m = parsed(ask("WWW.nsnet.internal.", RecordType::AAAA, "10.1.0.9"));
        assert_eq!(
            m.answers[0].data,
            RData::AAAA(AAAA("fd00:1::2".parse().unwrap()))
        );
        let m = parsed(ask("2.0.1.10.in-addr.arpa.", RecordType::PTR, "10.1.0.9"));
        assert_eq!(m.answers[0].data.to_string(), "web.nsnet.internal.");
    }

    #[test]
    fn containers_known_by_path_get_their_aliases() {
        for name in ["cache.", "redis.nsnet.internal."] {
            let m = parsed(ask(name, RecordType::A, "10.1.0.9"));
            assert_eq!(
                m.answers[0].data,
                RData::A(A("10.1.0.3".parse().unwrap())),
                "{name}"
            );
        }
        let m = parsed(ask("3.0.1.10.in-addr.arpa.", RecordType::PTR, "10.1.0.9"));
        assert_eq!(m.answers[0].data.to_string(), "cache.nsnet.internal.");
    }

    #[test]
    fn on_the_lan_only_the_namespaces_and_the_host_are_answered() {
        use crate::model::lan::{HostAccess, Lan, Macvlan, MacvlanMode};
        let mut s = State::default();
        let mut home = test_network("home", "home", &["192.0.2.0/24"]);
        home.lan = Some(Lan::Macvlan(Macvlan {
            parent: "lan0".into(),
            mode: MacvlanMode::Bridge,
            ip_ranges: vec![],
            host_access: Some(HostAccess {
                ifname: "nsl1".into(),
                addresses: vec!["192.0.2.3/32".parse().unwrap()],
            }),
            probe_ms: 200,
        }));
        let mut a = test_attachment("a");
        a.addresses = vec!["192.0.2.4/24".parse().unwrap()];
        home.attachments.push(a.into());
        s.networks.insert("home".into(), home);
        let table = Table::from_state(&s);
        assert_eq!(
            crate::dns::records::listen_addresses(&s),
            ["192.0.2.3".parse::<IpAddr>().unwrap()],
            "the host's address on the LAN, not the LAN's router"
        );
        let ask = |from: &str| {
            let mut m = Message::query();
            m.add_query(Query::query(Name::from_ascii("a.").unwrap(), RecordType::A));
            answer(&m.to_vec().unwrap(), from.parse().unwrap(), &table, true)
        };
        for member in ["192.0.2.4", "192.0.2.3"] {
            let m = parsed(ask(member));
            assert_eq!(m.answers.len(), 1, "{member}");
        }
        // Another machine of the subnet, on the LAN: not a member.
        assert_eq!(ask("192.0.2.50"), Outcome::Ignore);
        // Without host access, nothing to answer on.
        let mut off = s.clone();
        let home = off.networks.get_mut("home").unwrap();
        if let Some(Lan::Macvlan(m)) = &mut home.lan {
            m.host_access = None;
        }
        assert!(crate::dns::records::listen_addresses(&off).is_empty());
    }

    #[test]
    fn isolation_extends_to_discovery() {
        let m = parsed(ask("db.", RecordType::A, "10.1.0.9"));
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(ask("web.", RecordType::A, "192.0.2.1"), Outcome::Ignore);
    }

    #[test]
    fn other_names_are_forwarded_except_from_internal_networks() {
        assert_eq!(
            ask("example.org.", RecordType::A, "10.1.0.9"),
            Outcome::Forward(vec![])
        );
        let m = parsed(ask("example.org.", RecordType::A, "10.2.0.9"));
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    }

    #[test]
    fn garbage_is_ignored() {
        for junk in [&b""[..], b"\x00", &[0xff; 600]] {
            assert_eq!(
                answer(junk, "10.1.0.9".parse().unwrap(), &table(), true),
                Outcome::Ignore
            );
        }
    }
}
