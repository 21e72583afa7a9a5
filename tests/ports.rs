//! Published ports, with real TCP and UDP connections from every place a
//! user expects them to work from, and from places they must not.

use crate::common::{refused, served_by, Sandbox};

const HOST: &str = "203.0.113.2";

#[test]
fn a_published_port_is_reachable_from_everywhere_it_should_be() {
    let sb = Sandbox::new();
    sb.upstream();
    sb.ok("network create a --subnet 10.70.0.0/24");
    sb.ok("network create b --subnet 10.71.0.0/24");
    sb.ok("connect a web -p 8080:80");
    sb.ok("connect a peer");
    sb.ok("connect b other");
    let _web = sb.echo("web", 80, false);
    let _other = sb.echo("other", 80, false);

    served_by(
        sb.ask(Some("up"), &format!("{HOST}:8080"), false),
        "web",
        "from outside",
    );
    served_by(
        sb.ask(None, &format!("{HOST}:8080"), false),
        "web",
        "from the host to its address",
    );
    served_by(
        sb.ask(None, "127.0.0.1:8080", false),
        "web",
        "from the host to 127.0.0.1",
    );
    served_by(
        sb.ask(Some("peer"), &format!("{HOST}:8080"), false),
        "web",
        "hairpin from a neighbour",
    );
    served_by(
        sb.ask(Some("peer"), "10.70.0.1:8080", false),
        "web",
        "via the gateway address",
    );
    served_by(
        sb.ask(Some("web"), &format!("{HOST}:8080"), false),
        "web",
        "from itself",
    );
    served_by(
        sb.ask(Some("other"), &format!("{HOST}:8080"), false),
        "web",
        "from another network",
    );
    // Unpublished ports of an isolated network stay closed to the other one.
    refused(
        sb.ask(Some("other"), "10.70.0.2:80", false),
        "direct across networks",
    );
    refused(
        sb.ask(Some("up"), &format!("{HOST}:8081"), false),
        "an unpublished port",
    );
}

#[test]
fn localhost_ports_are_not_reachable_from_a_neighbour() {
    let sb = Sandbox::new();
    sb.upstream();
    sb.ok("network create a --subnet 10.72.0.0/24");
    sb.ok("connect a web -p 127.0.0.1:9090:90 -p 8080:80");
    let _w90 = sb.echo("web", 90, false);
    let _w80 = sb.echo("web", 80, false);
    served_by(
        sb.ask(None, "127.0.0.1:9090", false),
        "web",
        "host to its localhost port",
    );
    refused(
        sb.ask(None, &format!("{HOST}:9090"), false),
        "localhost port via a host address",
    );
    // The attacker on the upstream link routes 127.0.0.1 to the host.
    sb.sh(
        "ip -n up route del local 127.0.0.0/8 dev lo table local && \
         ip -n up route add 127.0.0.1/32 via 203.0.113.2 && \
         ip netns exec up sysctl -qw net.ipv4.conf.all.route_localnet=1 net.ipv4.conf.eth0.route_localnet=1",
    );
    refused(
        sb.ask(Some("up"), "127.0.0.1:9090", false),
        "a localhost-only port from the upstream link",
    );
    refused(
        sb.ask(Some("up"), "127.0.0.1:8080", false),
        "an all-address port via 127.0.0.1 from the upstream link",
    );
    served_by(
        sb.ask(Some("up"), &format!("{HOST}:8080"), false),
        "web",
        "the same port the normal way",
    );
}

#[test]
fn udp_ranges_and_several_protocols() {
    let sb = Sandbox::new();
    sb.upstream();
    sb.ok("network create a --subnet 10.73.0.0/24");
    sb.ok("connect a dns -p 5353:53/udp -p 7000-7002:7100-7102");
    let _u = sb.echo("dns", 53, true);
    let servers: Vec<_> = (7100..=7102).map(|p| sb.echo("dns", p, false)).collect();
    served_by(
        sb.ask(Some("up"), &format!("{HOST}:5353"), true),
        "dns",
        "udp from outside",
    );
    served_by(
        sb.ask(None, "127.0.0.1:5353", true),
        "dns",
        "udp from the host",
    );
    for p in 7000..=7002 {
        served_by(
            sb.ask(Some("up"), &format!("{HOST}:{p}"), false),
            "dns",
            "a port of the range",
        );
    }
    refused(
        sb.ask(Some("up"), &format!("{HOST}:7003"), false),
        "past the range",
    );
    refused(
        sb.ask(Some("up"), &format!("{HOST}:5353"), false),
        "tcp on a udp mapping",
    );
    drop(servers);
    let show = sb.ok("network inspect a");
    assert!(
        show.contains("5353:53/udp") && show.contains("7000-7002:7100-7102/tcp"),
        "{show}"
    );
    let json: serde_json::Value = serde_json::from_str(&sb.ok("--json show")).unwrap();
    assert_eq!(json[0]["attachments"][0]["ports"][0]["host_port"], 5353);
}

#[test]
fn specific_host_addresses_and_ipv6() {
    let sb = Sandbox::new();
    sb.upstream_dual();
    sb.sh("ip addr add 203.0.113.3/24 dev up0");
    sb.ok("network create d --subnet 10.74.0.0/24 --subnet fd00:74::/64");
    sb.ok("connect d web -p 8080:80 -p 203.0.113.3:8081:81 -p [2001:db8::2]:8082:82");
    let _e80 = sb.echo("web", 80, false);
    let _e81 = sb.echo("web", 81, false);
    let _e82 = sb.echo("web", 82, false);
    served_by(
        sb.ask(Some("up"), "[2001:db8::2]:8080", false),
        "web",
        "IPv6 from outside",
    );
    served_by(
        sb.ask(Some("up"), &format!("{HOST}:8080"), false),
        "web",
        "IPv4 from outside",
    );
    served_by(
        sb.ask(Some("up"), "203.0.113.3:8081", false),
        "web",
        "on its address",
    );
    refused(
        sb.ask(Some("up"), &format!("{HOST}:8081"), false),
        "on another address",
    );
    served_by(
        sb.ask(Some("up"), "[2001:db8::2]:8082", false),
        "web",
        "on its IPv6 address",
    );
    refused(
        sb.ask(Some("up"), &format!("{HOST}:8082"), false),
        "an IPv6-only mapping over IPv4",
    );
    served_by(
        sb.ask(None, "[2001:db8::2]:8080", false),
        "web",
        "IPv6 from the host",
    );
}

#[test]
fn conflicts_are_refused_and_teardown_is_exact() {
    let sb = Sandbox::new();
    sb.upstream();
    let before = sb.snapshot();
    sb.ok("network create a --subnet 10.75.0.0/24");
    sb.ok("network create b --subnet 10.76.0.0/24");
    sb.ok("connect a one -p 8080:80 -p 9000-9010:9000-9010/udp");
    let middle = sb.snapshot();
    let err = sb.fails("connect b two -p 8080:81", 4);
    assert!(
        err.contains("tcp/8080") && err.contains("namespace one on network a"),
        "{err}"
    );
    let err = sb.fails("connect b two -p 127.0.0.1:9005:5/udp", 4);
    assert!(err.contains("namespace one"), "{err}");
    crate::common::assert_same(
        &sb.snapshot(),
        &middle,
        "a refused connect changed something",
    );
    // The same number on another protocol, or the next port, is fine.
    sb.ok("connect b two -p 8080:80/udp -p 8081:80");
    let _one = sb.echo("one", 80, false);
    let _two = sb.echo("two", 80, true);
    served_by(
        sb.ask(Some("up"), &format!("{HOST}:8080"), true),
        "two",
        "udp 8080",
    );
    // Disconnecting one leaves the other's mappings working.
    sb.ok("disconnect b two");
    served_by(
        sb.ask(Some("up"), &format!("{HOST}:8080"), false),
        "one",
        "tcp 8080 after two left",
    );
    refused(
        sb.ask(Some("up"), &format!("{HOST}:8081"), false),
        "two's port after it left",
    );
    drop(_one);
    drop(_two);
    sb.ok("disconnect a one");
    sb.ok("network rm a");
    sb.ok("network rm b");
    crate::common::assert_same(&sb.snapshot(), &before, "teardown");
}

#[test]
fn a_udp_client_follows_the_port_to_its_new_owner() {
    let sb = Sandbox::new();
    sb.upstream();
    sb.ok("network create a --subnet 10.77.0.0/24");
    sb.ok("connect a old -p 5353:53/udp");
    let client = sb.udp_socket("up", "203.0.113.1:40000");
    let mut buf = [0u8; 64];
    let mut ask = || -> std::io::Result<String> {
        client.send_to(b"hi", format!("{HOST}:5353"))?;
        let (n, _) = client.recv_from(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    };
    {
        let _old = sb.echo("old", 53, true);
        served_by(ask(), "old", "before the switch");
    }
    sb.ok("disconnect a old");
    // A different address, so that a stale flow would lead nowhere.
    sb.ok("connect a new --ip 10.77.0.9 -p 5353:53/udp");
    let _new = sb.echo("new", 53, true);
    // Same client, same source port: without forgetting the old flow the
    // datagram would still be sent to the old (gone) address.
    served_by(ask(), "new", "after the switch");
}

#[test]
fn check_reports_damage_and_commands_repair_the_firewall() {
    let sb = Sandbox::new();
    sb.upstream();
    sb.ok("network create a --subnet 10.78.0.0/24 --subnet fd00:78::/64");
    sb.ok("connect a web -p 8080:80");
    sb.ok("connect a db");
    let out = sb.ok("check");
    assert!(out.contains("no drift"), "{out}");

    // Damage: a flushed table, a deleted veth, a removed address, a
    // forwarding sysctl turned off, a foreign FORWARD drop policy.
    // (flush keeps map elements; a lost port is removed by hand.)
    sb.sh("nft flush table inet nsnet && nft delete element inet nsnet ports4_any_dest '{ tcp . 8080 }'");
    let veth = sb.sh("ip -o link show master a | grep -o 've-db-[0-9a-f]*' | head -1");
    sb.sh(&format!("ip link del {}", veth.trim()));
    sb.sh("ip -n web addr del 10.78.0.2/24 dev eth0");
    sb.sh("sysctl -qw net.ipv6.conf.all.forwarding=0");
    sb.sh("nft add table ip filter && nft add chain ip filter FORWARD '{ type filter hook forward priority 0; policy drop; }'");
    let out = sb.run("check");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "namespace db: host interface",
        "namespace web: address 10.78.0.2/24 is missing from eth0",
        "sysctl net/ipv6/conf/all/forwarding is not 1",
        "chain forward: ",
        "map ports4_any_dest: 1 published port(s) missing",
        "warning: chain FORWARD of table ip filter drops forwarded traffic",
    ] {
        assert!(
            text.contains(needle),
            "check output lacks {needle:?}:\n{text}"
        );
    }
    let json: serde_json::Value = serde_json::from_str(
        &sb.run("--json check")
            .stdout
            .iter()
            .map(|b| *b as char)
            .collect::<String>(),
    )
    .unwrap();
    assert_eq!(json["clean"], false);
    sb.sh("nft delete table ip filter");

    // Re-running a command that changes ports restores the whole table.
    sb.ok("connect a other -p 9090:90");
    let out = sb.run("check");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("chain ") && !text.contains("map "),
        "firewall not restored:\n{text}"
    );
    // --repair puts back the sysctl; links and addresses are reported.
    sb.sh("nft flush table inet nsnet");
    let out = sb.run("check --repair");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("sysctl") && !text.contains("chain "),
        "{text}"
    );
    assert!(text.contains("address 10.78.0.2/24 is missing"), "{text}");
    let _web = sb.echo("web", 80, false);
    // Deleting the address took the default route with it (check said so).
    sb.sh("ip -n web addr add 10.78.0.2/24 dev eth0 && ip -n web route add default via 10.78.0.1");
    let r = sb
        .ask(Some("up"), "203.0.113.2:8080", false)
        .expect("port works after repair");
    assert_eq!(r, "web:hi");
}

#[test]
fn a_new_network_rewrites_the_table_in_place_and_a_changed_chain_gets_it_replaced_whole() {
    let sb = Sandbox::new();
    sb.upstream();
    sb.ok("network create a --subnet 10.80.0.0/24");
    sb.ok("connect a web -p 8080:80");
    let _web = sb.echo("web", 80, false);
    let hook = || {
        let chain: serde_json::Value =
            serde_json::from_str(&sb.sh("nft -j list chain inet nsnet forward")).unwrap();
        chain["nftables"][1]["chain"]["hook"].clone()
    };
    // A second network: the table is flushed and filled again, in one
    // transaction, and the published port of the first survives it.
    sb.ok("network create b --subnet 10.81.0.0/24");
    assert!(sb.ok("check").contains("no drift"));
    served_by(
        sb.ask(Some("up"), &format!("{HOST}:8080"), false),
        "web",
        "after b",
    );
    // Someone made nsnet's forward chain an input chain: adding the chain
    // in place is refused, so the table is replaced outright.
    sb.sh("nft flush chain inet nsnet forward && nft delete chain inet nsnet forward && nft add chain inet nsnet forward '{ type filter hook input priority 0; }'");
    assert_eq!(hook(), "input");
    sb.ok("network create c --subnet 10.82.0.0/24");
    assert_eq!(hook(), "forward");
    assert!(sb.ok("check").contains("no drift"));
    served_by(
        sb.ask(Some("up"), &format!("{HOST}:8080"), false),
        "web",
        "after c",
    );
}

#[test]
fn a_bare_port_is_published_on_a_free_host_port() {
    let sb = Sandbox::new();
    sb.upstream();
    sb.ok("network create a --subnet 10.79.0.0/24");
    // A host service holds the first port of the range: it is skipped.
    let _held = std::net::TcpListener::bind("0.0.0.0:32768").unwrap();
    let out = sb.ok("connect a web -p 80");
    assert!(out.contains("32769:80/tcp"), "{out}");
    let out = sb.ok("connect a web2 -p 80 -p 81");
    assert!(
        out.contains("32770:80/tcp") && out.contains("32771:81/tcp"),
        "{out}"
    );
    let _web = sb.echo("web", 80, false);
    served_by(
        sb.ask(Some("up"), &format!("{HOST}:32769"), false),
        "web",
        "picked port",
    );
}
