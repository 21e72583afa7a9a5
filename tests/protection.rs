//! Direct routed access, as an attacker on the upstream link tries it: the
//! attacker namespace `up` routes the networks' subnets (v4 and v6) to the
//! host. Gateway modes, inter-namespace isolation (ICC) and trusted
//! interfaces, each with real TCP, UDP and ICMP traffic.

use crate::common::{assert_no_reply, refused, served_by, Sandbox};

const HOST: &str = "203.0.113.2";

/// `up` sends everything for `subnets` to the host, as a neighbour may.
fn route_to_host(sb: &Sandbox, subnets: &[&str]) {
    for s in subnets {
        let via = if s.contains(':') { "2001:db8::2" } else { HOST };
        sb.sh(&format!("ip -n up route add {s} via {via}"));
    }
}

fn ping(sb: &Sandbox, from: &str, dest: &str) -> std::process::Output {
    sb.run(&["ping", from, dest, "-c", "1", "-W", "0.5"])
}

#[test]
fn by_default_only_published_ports_get_in() {
    let sb = Sandbox::new();
    sb.upstream_dual();
    sb.ok("network create a --subnet 10.80.0.0/24 --subnet fd00:80::/64");
    sb.ok("connect a w -p 8080:80");
    route_to_host(&sb, &["10.80.0.0/24", "fd00:80::/64"]);
    let _web = sb.echo("w", 80, false);
    let _hidden = sb.echo("w", 82, false);
    let _udp = sb.echo("w", 83, true);
    served_by(
        sb.ask(Some("up"), &format!("{HOST}:8080"), false),
        "w",
        "published port",
    );
    served_by(
        sb.ask(Some("up"), "[2001:db8::2]:8080", false),
        "w",
        "published port, IPv6",
    );
    for (to, udp, what) in [
        ("10.80.0.2:82", false, "an unpublished TCP port"),
        (
            "10.80.0.2:80",
            false,
            "the container port of a published one",
        ),
        ("10.80.0.2:83", true, "an unpublished UDP port"),
        ("10.80.0.1:22", false, "the gateway address"),
        (
            "[fd00:80::2]:82",
            false,
            "an unpublished TCP port over IPv6",
        ),
        ("[fd00:80::2]:83", true, "an unpublished UDP port over IPv6"),
    ] {
        refused(sb.ask(Some("up"), to, udp), what);
    }
    for dest in ["10.80.0.2", "10.80.0.1", "fd00:80::2"] {
        assert_no_reply(
            &ping(&sb, "up", dest),
            &format!("the attacker pinged {dest}"),
        );
    }
    // The namespace itself still reaches out, and the gateway answers it.
    sb.ok("ping w 203.0.113.1 -c 1");
    sb.ok("ping w 10.80.0.1 -c 1");
    let raw = sb.sh("nft list chain inet nsnet raw_prerouting");
    assert!(raw.contains("ip daddr 10.80.0.0/24"), "{raw}");
    assert!(raw.contains("ip6 daddr fd00:80::/64"), "{raw}");
}

#[test]
fn without_protection_the_attacker_gets_in() {
    let sb = Sandbox::new();
    sb.upstream_dual();
    sb.ok("network create u --subnet 10.81.0.0/24 --subnet fd00:81::/64 --gateway-mode nat-unprotected");
    sb.ok("connect u w");
    route_to_host(&sb, &["10.81.0.0/24", "fd00:81::/64"]);
    let _hidden = sb.echo("w", 82, false);
    let _udp = sb.echo("w", 83, true);
    served_by(
        sb.ask(Some("up"), "10.81.0.2:82", false),
        "w",
        "nat-unprotected, TCP",
    );
    served_by(
        sb.ask(Some("up"), "10.81.0.2:83", true),
        "w",
        "nat-unprotected, UDP",
    );
    served_by(
        sb.ask(Some("up"), "[fd00:81::2]:82", false),
        "w",
        "nat-unprotected, IPv6",
    );
    sb.ok("ping up 10.81.0.2 -c 1");
}

#[test]
fn routed_networks_expose_published_container_ports_only() {
    let sb = Sandbox::new();
    sb.upstream_dual();
    sb.ok("network create r --subnet 10.82.0.0/24 --subnet fd00:82::/64 --gateway-mode routed");
    sb.ok("connect r w -p 8080:80 -p 5353:53/udp");
    route_to_host(&sb, &["10.82.0.0/24", "fd00:82::/64"]);
    let _web = sb.echo("w", 80, false);
    let _dns = sb.echo("w", 53, true);
    let _hidden = sb.echo("w", 82, false);
    served_by(
        sb.ask(Some("up"), "10.82.0.2:80", false),
        "w",
        "routed, the container port",
    );
    served_by(
        sb.ask(Some("up"), "10.82.0.2:53", true),
        "w",
        "routed, a UDP container port",
    );
    served_by(
        sb.ask(Some("up"), "[fd00:82::2]:80", false),
        "w",
        "routed, IPv6",
    );
    refused(
        sb.ask(Some("up"), "10.82.0.2:82", false),
        "routed, an unpublished port",
    );
    refused(
        sb.ask(Some("up"), "10.82.0.2:8080", false),
        "routed, the host port at the namespace",
    );
    refused(
        sb.ask(Some("up"), "[fd00:82::2]:82", false),
        "routed, unpublished, IPv6",
    );
    sb.ok("ping up 10.82.0.2 -c 1");
    sb.ok("ping up fd00:82::2 -c 1");
    // Replies to the namespace's own connections pass the inbound filter.
    let _server = sb.echo("up", 7000, false);
    served_by(
        sb.ask(Some("w"), "203.0.113.1:7000", false),
        "up",
        "routed, a reply to the namespace's own connection",
    );
    // Outgoing traffic keeps the namespace's address.
    let listener = sb.udp_listener("up", "203.0.113.1:9999".parse().unwrap());
    sb.udp_send("w", "203.0.113.1".parse().unwrap(), 9999);
    let mut buf = [0u8; 64];
    let (_, from) = listener.recv_from(&mut buf).expect("datagram from w");
    assert_eq!(
        from.ip().to_string(),
        "10.82.0.2",
        "routed traffic was masqueraded"
    );
}

#[test]
fn no_masquerade_is_routed() {
    let sb = Sandbox::new();
    sb.ok("network create p --subnet 10.86.0.0/24 --no-masquerade");
    let text = sb.ok("network inspect p");
    assert!(text.contains("gateway mode: routed"), "{text}");
    let e = sb.fails(
        "network create q --subnet 10.87.0.0/24 --no-masquerade --gateway-mode nat-unprotected",
        2,
    );
    assert!(e.contains("contradicts"), "{e}");
}

#[test]
fn isolated_internal_networks_have_no_way_in_or_out() {
    let sb = Sandbox::new();
    sb.upstream();
    let e = sb.fails(
        "network create i --subnet 10.83.0.0/24 --gateway-mode isolated",
        2,
    );
    assert!(e.contains("--internal"), "{e}");
    sb.ok("network create i --subnet 10.83.0.0/24 --internal --gateway-mode isolated");
    let addrs = sb.sh("ip -o addr show dev i");
    assert!(
        !addrs.contains("inet"),
        "the bridge has an address: {addrs}"
    );
    sb.ok("connect i x");
    sb.ok("connect i y");
    route_to_host(&sb, &["10.83.0.0/24"]);
    sb.ok("ping x 10.83.0.3 -c 1");
    // No route out at all: the request cannot even be sent.
    let out = ping(&sb, "x", "203.0.113.1");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("Network is unreachable"),
        "an isolated namespace got out: {err}"
    );
    assert_no_reply(
        &ping(&sb, "up", "10.83.0.2"),
        "the attacker got into an isolated network",
    );
    assert_no_reply(
        &ping(&sb, "x", "10.83.0.1"),
        "the bridge answered without an address",
    );
    sb.ok("network rm i --force");
}

#[test]
fn without_icc_namespaces_meet_only_through_published_ports() {
    let sb = Sandbox::new();
    sb.ok("network create n --subnet 10.84.0.0/24 --subnet fd00:84::/64 --no-icc");
    sb.ok("connect n a -p 8080:80");
    sb.ok("connect n b");
    let _web = sb.echo("a", 80, false);
    let _hidden = sb.echo("a", 81, false);
    assert_no_reply(&ping(&sb, "b", "10.84.0.2"), "b pinged a (IPv4)");
    assert_no_reply(&ping(&sb, "b", "fd00:84::2"), "b pinged a (IPv6)");
    let ask_from_b = |to: &str| sb.ask(Some("b"), to, false);
    // Port isolation works at layer 2: ARP and neighbour discovery get no
    // answer, so the connection times out or the neighbour is unreachable.
    for (to, what) in [("10.84.0.2:81", "IPv4"), ("[fd00:84::2]:81", "IPv6")] {
        use std::io::ErrorKind::*;
        match ask_from_b(to) {
            Err(e) if matches!(e.kind(), TimedOut | WouldBlock | HostUnreachable) => {}
            other => panic!("b reached a directly over {what}: {other:?}"),
        }
    }
    served_by(
        ask_from_b("10.84.0.1:8080"),
        "a",
        "a's published port through the host",
    );
    sb.ok("ping b 10.84.0.1 -c 1");
    sb.ok("ping b fd00:84::1 -c 1");
    // Where br_netfilter does not hand bridged frames to the forward chain,
    // the bridge ports are isolated at layer 2 instead.
    sb.sh("sysctl -qw net.bridge.bridge-nf-call-iptables=0 net.bridge.bridge-nf-call-ip6tables=0");
    sb.ok("network create m --subnet 10.91.0.0/24 --subnet fd00:91::/64 --no-icc");
    sb.ok("connect m c -p 8081:80");
    sb.ok("connect m d");
    let ports = sb.sh("bridge -d link show master m");
    assert_eq!(ports.matches("isolated on").count(), 2, "{ports}");
    let _c = sb.echo("c", 80, false);
    assert_no_reply(&ping(&sb, "d", "10.91.0.2"), "d pinged c (IPv4, L2)");
    assert_no_reply(&ping(&sb, "d", "fd00:91::2"), "d pinged c (IPv6, L2)");
    served_by(
        sb.ask(Some("d"), "10.91.0.1:8081", false),
        "c",
        "c's published port, L2 isolation",
    );
    sb.ok("ping d 10.91.0.1 -c 1");
}

#[test]
fn trusted_interfaces_may_route_to_the_namespaces() {
    let sb = Sandbox::new();
    sb.upstream();
    // A second neighbour, on a link the host trusts.
    sb.sh(
        "ip netns add t && ip link add t0 type veth peer name eth0 netns t && \
         ip addr add 198.51.100.2/24 dev t0 && ip link set t0 up && \
         ip -n t addr add 198.51.100.1/24 dev eth0 && ip -n t link set eth0 up && \
         ip -n t link set lo up && ip -n t route add 10.85.0.0/24 via 198.51.100.2",
    );
    sb.ok("network create tr --subnet 10.85.0.0/24 --trusted-interface t0");
    sb.ok("connect tr w");
    route_to_host(&sb, &["10.85.0.0/24"]);
    let _hidden = sb.echo("w", 82, false);
    served_by(
        sb.ask(Some("t"), "10.85.0.2:82", false),
        "w",
        "from the trusted interface",
    );
    refused(
        sb.ask(Some("up"), "10.85.0.2:82", false),
        "from another interface",
    );
    let text = sb.ok("network inspect tr");
    assert!(text.contains("trusted:     t0"), "{text}");
}

#[test]
fn the_hosts_own_namespace_and_bad_names_are_refused() {
    let sb = Sandbox::new();
    sb.ok("network create h --subnet 10.88.0.0/24");
    let before = sb.snapshot();
    // nsnet's own namespace, by path and by a bind mount under /run/netns.
    sb.sh("touch /run/netns/alias && mount --bind /proc/self/ns/net /run/netns/alias");
    for ns in ["/proc/self/ns/net", "/proc/thread-self/ns/net", "alias"] {
        let e = sb.fails(&["connect", "h", ns, "--ifname", "x"], 2);
        assert!(e.contains("host's network namespace"), "{ns}: {e}");
    }
    sb.sh("umount /run/netns/alias && rm /run/netns/alias");
    let e = sb.fails("connect h ns/bad", 2);
    assert!(e.contains("absolute path"), "{e}");
    let e = sb.fails("connect h g --ip 10.88.0.1", 4);
    assert!(e.contains("gateway"), "{e}");
    crate::common::assert_same(&sb.snapshot(), &before, "refused connects");
}

#[test]
fn check_and_repair_cover_the_protection_rules() {
    let sb = Sandbox::new();
    sb.ok("network create c --subnet 10.89.0.0/24 --gateway-mode routed");
    sb.ok("connect c w -p 8080:80");
    sb.ok("network create d --subnet 10.90.0.0/24");
    sb.ok("check");
    sb.sh("nft flush chain inet nsnet raw_prerouting && nft flush set inet nsnet routed4");
    let text = sb.drift(&[]);
    // d's protection rule, and each network's two DNS rules (UDP, TCP).
    assert!(
        text.contains("chain raw_prerouting: 5 rule(s) missing"),
        "{text}"
    );
    assert!(
        text.contains("routed4: 1 published port(s) missing"),
        "{text}"
    );
    sb.ok("check --repair");
    sb.ok("check");
}

#[test]
fn published_ports_do_not_hijack_host_services() {
    let sb = Sandbox::new();
    sb.ok("network create p --subnet 10.92.0.0/24");
    let before = sb.snapshot();
    // Host services, in the sandbox's own namespace (the test's thread).
    let _tcp = std::net::TcpListener::bind("0.0.0.0:8080").unwrap();
    let _local = std::net::TcpListener::bind("127.0.0.1:9091").unwrap();
    let _udp = std::net::UdpSocket::bind("[::]:5353").unwrap();
    for (spec, needle) in [
        ("8080:80", "0.0.0.0:8080/tcp"),
        ("9091:91", "127.0.0.1:9091/tcp"),
        ("5353:53/udp", "[::]:5353/udp"),
        ("8000-8100:8000-8100", "0.0.0.0:8080/tcp"),
    ] {
        let e = sb.fails(&["connect", "p", "w", "-p", spec], 4);
        assert!(e.contains(needle) && e.contains("--force"), "{spec}: {e}");
        // The process is named as ps shows it: the test binary's name,
        // cut to the kernel's 15 bytes.
        let exe = std::env::current_exe().unwrap();
        let name = exe.file_name().unwrap().to_string_lossy();
        let comm = &name[..name.len().min(15)];
        assert!(
            e.contains(&format!("({comm}[")),
            "{spec}: the listening process is not named: {e}"
        );
    }
    crate::common::assert_same(&sb.snapshot(), &before, "refused hijacks");
    // Other ports and protocols are free; --force takes the port anyway.
    sb.ok("connect p w -p 8081:80 -p 8080:80/udp");
    sb.ok("connect p v -p 8080:80 --force");
}
