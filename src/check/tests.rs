//! `check` against fake machines: what is recorded and present is clean;
//! each kind of damage is one specific finding.

use super::*;
use crate::host::fake::FakeProbe;
use crate::model::{test_attachment, test_network, Attachment};

fn state() -> State {
    let mut s = State::default();
    let mut n = test_network("n", "br-n", &["10.0.0.0/24"]);
    for ns in ["ns1", "ns10"] {
        n.attachments.push(std::sync::Arc::new(Attachment {
            addresses: vec![format!("10.0.0.{}/24", ns.len()).parse().unwrap()],
            ..test_attachment(ns)
        }));
    }
    s.networks.insert("n".into(), n);
    s
}

fn check(state: &State, probe: &mut FakeProbe) -> Report {
    check_where(state, |_| true, probe).unwrap()
}

fn ns(name: &str) -> NsRef {
    NsRef::Named(name.into())
}

#[test]
fn a_machine_as_recorded_is_clean() {
    let s = state();
    let report = check(&s, &mut FakeProbe::matching(&s));
    assert!(report.clean(), "{:?}", report.drift);
}

#[test]
fn each_damage_is_one_typed_finding() {
    let s = state();
    type Damage = fn(&mut FakeProbe);
    let cases: Vec<(Damage, Finding)> = vec![
        (
            |p| p.host.links.retain(|l| l.name != "br-n"),
            Finding::BridgeMissing {
                network: "n".into(),
                bridge: "br-n".into(),
            },
        ),
        (
            |p| {
                p.host
                    .links
                    .iter_mut()
                    .for_each(|l| l.up = l.name != "br-n")
            },
            Finding::BridgeDown {
                network: "n".into(),
                bridge: "br-n".into(),
            },
        ),
        (
            |p| p.host.addresses.clear(),
            Finding::GatewayMissing {
                network: "n".into(),
                bridge: "br-n".into(),
                address: "10.0.0.1/24".parse().unwrap(),
            },
        ),
        (
            |p| p.host.links.retain(|l| l.name != "ve-ns1"),
            Finding::HostVethMissing {
                network: "n".into(),
                namespace: ns("ns1"),
                ifname: "ve-ns1".into(),
            },
        ),
        (
            |p| {
                p.host
                    .links
                    .iter_mut()
                    .filter(|l| l.name == "ve-ns1")
                    .for_each(|l| l.master = None)
            },
            Finding::HostVethOffBridge {
                network: "n".into(),
                namespace: ns("ns1"),
                ifname: "ve-ns1".into(),
                bridge: "br-n".into(),
            },
        ),
        (
            |p| {
                p.namespaces.remove(&ns("ns10"));
            },
            Finding::NamespaceGone {
                network: "n".into(),
                namespace: ns("ns10"),
            },
        ),
        (
            |p| p.namespaces.get_mut(&ns("ns1")).unwrap().addresses.clear(),
            Finding::AddressMissing {
                network: "n".into(),
                namespace: ns("ns1"),
                ifname: "eth0".into(),
                address: "10.0.0.3/24".parse().unwrap(),
            },
        ),
        (
            |p| p.namespaces.get_mut(&ns("ns1")).unwrap().routes.clear(),
            Finding::DefaultRouteMissing {
                network: "n".into(),
                namespace: ns("ns1"),
                ipv4: true,
            },
        ),
        (
            |p| {
                p.sysctls.clear();
            },
            Finding::Sysctl {
                key: sysctl::IPV4_FORWARD.into(),
                wanted: "1".into(),
            },
        ),
    ];
    for (damage, want) in cases {
        let mut probe = FakeProbe::matching(&s);
        damage(&mut probe);
        let report = check(&s, &mut probe);
        assert_eq!(report.drift, vec![want.clone()], "for {want}");
    }
}

#[test]
fn a_missing_table_is_a_firewall_finding() {
    let s = state();
    let mut probe = FakeProbe::matching(&s);
    probe.firewall = None;
    let report = check(&s, &mut probe);
    assert!(report.firewall_damaged());
    assert_eq!(report.drift.len(), 1, "{:?}", report.drift);
    assert_eq!(
        report.drift[0].to_string(),
        "nftables table inet nsnet is missing"
    );
}

#[test]
fn findings_say_whom_they_concern_without_matching_text() {
    let off_bridge = Finding::HostVethOffBridge {
        network: "n".into(),
        namespace: ns("ns10"),
        ifname: "ve-ns10".into(),
        bridge: "br-n".into(),
    };
    // Its sentence mentions "bridge" and "namespace ns1" (a prefix of
    // ns10): matching text would take it for a bridge problem of ns1.
    let text = off_bridge.to_string();
    assert!(text.contains("bridge") && text.contains("namespace ns1"));
    assert!(!off_bridge.is_about_the_bridge());
    assert!(!off_bridge.is_about("n", &ns("ns1")));
    assert!(off_bridge.is_about("n", &ns("ns10")));
    let down = Finding::BridgeDown {
        network: "n".into(),
        bridge: "br-n".into(),
    };
    assert!(down.is_about_the_bridge());
    assert_eq!(down.namespace(), None);
}

#[test]
fn only_the_selected_networks_are_checked() {
    let mut s = state();
    s.networks
        .insert("m".into(), test_network("m", "br-m", &["10.9.0.0/24"]));
    let mut probe = FakeProbe::matching(&s);
    probe.host.links.retain(|l| l.name != "br-m");
    let report = check_where(&s, |n| n.name == "n", &mut probe).unwrap();
    assert!(report.clean(), "{:?}", report.drift);
}
