//! The tutorial, literally, with iproute2 and iputils as independent oracles.

use crate::common::{assert_no_reply, Sandbox};

#[test]
fn tutorial_bridge_two_namespaces_ping_both_ways() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    sb.ok("network create mydocker0 --subnet 172.16.0.0/16");
    sb.ok("connect mydocker0 ns1 --ip 172.16.1.1/16");
    sb.ok("connect mydocker0 ns2 --ip 172.16.1.2/16");

    // iputils ping, run with ip netns exec: the namespaces are iproute2's.
    sb.sh("ip netns exec ns1 ping -c1 -W2 172.16.1.2");
    sb.sh("ip netns exec ns2 ping -c1 -W2 172.16.1.1");
    let out = sb.ok("ping ns1 172.16.1.2 -c 1");
    assert!(
        out.contains("64 bytes from 172.16.1.2: icmp_seq=1"),
        "{out}"
    );
    assert!(out.contains("1 packets transmitted, 1 received"), "{out}");

    let addr = sb.sh("ip -n ns1 addr show dev eth0");
    assert!(addr.contains("inet 172.16.1.1/16"), "{addr}");
    let lo = sb.sh("ip -n ns1 link show lo");
    assert!(lo.contains("UP"), "{lo}");
    let route = sb.sh("ip -n ns1 route show default");
    assert!(route.contains("default via 172.16.0.1 dev eth0"), "{route}");

    let ports = sb.sh("bridge link show");
    let ours: Vec<&str> = ports
        .lines()
        .filter(|l| l.contains("master mydocker0"))
        .collect();
    assert_eq!(ours.len(), 2, "{ports}");

    let show = sb.ok("show");
    assert!(show.contains("mydocker0"), "{show}");
    assert!(
        show.contains("ns1") && show.contains("172.16.1.1/16"),
        "{show}"
    );
    // Columns as `brctl show` aligns them: the second port under the first.
    let second = show.lines().find(|l| l.trim() == ours_name(&ports, 1));
    assert_eq!(
        second.map(|l| l.find(|c: char| c != ' ')),
        Some(Some(56)),
        "{show}"
    );

    // One network of several: only its bridge and attachments.
    sb.ok("network create other --subnet 10.20.0.0/24");
    sb.ok("connect other ns3");
    let one = sb.ok("show mydocker0");
    assert!(one.contains("ns1") && one.contains("ns2"), "{one}");
    assert!(!one.contains("other") && !one.contains("ns3"), "{one}");
    let err = sb.fails("show mydocke0", 3);
    assert!(
        err.contains("mydocke0") && err.contains("mydocker0"),
        "{err}"
    );
    sb.ok("disconnect other ns3");
    sb.ok("network rm other");

    sb.ok("disconnect mydocker0 ns1");
    sb.ok("disconnect mydocker0 ns2");
    sb.ok("network rm mydocker0");
    crate::common::assert_same(&sb.snapshot(), &before, "teardown");
}

/// The name of the `i`-th (sorted) port of mydocker0 in `bridge link show`
/// output.
fn ours_name(ports: &str, i: usize) -> String {
    let mut names: Vec<String> = ports
        .lines()
        .filter(|l| l.contains("master mydocker0"))
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(|n| {
            n.trim_end_matches(':')
                .split('@')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    names.sort();
    names[i].clone()
}

#[test]
fn ping_fails_with_exit_1_when_nobody_answers() {
    let sb = Sandbox::new();
    sb.ok("network create n --subnet 10.10.0.0/24");
    sb.ok("connect n a");
    let out = sb.run("ping a 10.10.0.200 -c 1 -W 0.3");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("1 packets transmitted, 0 received, 100% packet loss"),
        "{text}"
    );
}

#[test]
fn nat_lets_namespaces_reach_upstream_with_the_hosts_address() {
    let sb = Sandbox::new();
    sb.upstream();
    sb.ok("network create plain --subnet 172.16.0.0/16 --no-masquerade");
    sb.ok("connect plain ns0");
    // Forwarded, but the upstream has no route back to 172.16.0.0/16.
    let out = sb.run("ping ns0 203.0.113.1 -c 1 -W 0.5");
    assert_no_reply(&out, "reply without NAT?");

    sb.ok("network create nat --subnet 172.17.0.0/16");
    sb.ok("connect nat ns1");
    sb.ok("ping ns1 203.0.113.1 -c 1 -W 2");
    sb.sh("ip netns exec ns1 ping -c1 -W2 203.0.113.1");

    // A listener upstream sees the host's upstream address, not 172.17.x.
    let sock = sb.udp_listener("up", "203.0.113.1:9999".parse().unwrap());
    sb.udp_send("ns1", "203.0.113.1".parse().unwrap(), 9999);
    let mut buf = [0u8; 64];
    let (n, from) = sock.recv_from(&mut buf).expect("datagram arrives upstream");
    assert_eq!(&buf[..n], b"hello\n");
    assert_eq!(from.ip().to_string(), "203.0.113.2");

    let rules = sb.sh("nft list table inet nsnet");
    assert!(
        rules.contains("ip saddr 172.17.0.0/16 oifname != \"nat\" oifname != \"lo\" masquerade"),
        "{rules}"
    );
    // --no-masquerade: nothing leaving the network is rewritten (only
    // hairpin traffic to published ports, which must come back).
    assert!(!rules.contains("ip saddr 172.16.0.0/16 oifname"), "{rules}");
}

#[test]
fn internal_networks_have_no_way_out() {
    let sb = Sandbox::new();
    sb.upstream();
    sb.ok("network create lab --subnet 10.20.0.0/24 --internal");
    sb.ok("connect lab a");
    sb.ok("connect lab b");
    sb.ok("ping a 10.20.0.3 -c 1");
    let routes = sb.sh("ip -n a route");
    assert!(!routes.contains("default"), "{routes}");
    // Even with a route added by hand, the forward chain drops it.
    sb.sh("ip -n a route add default via 10.20.0.1");
    let out = sb.run("ping a 203.0.113.1 -c 1 -W 0.5");
    assert_no_reply(&out, "an internal network reached the upstream");
}

#[test]
fn dual_stack_network_pings_over_ipv6() {
    let sb = Sandbox::new();
    sb.ok("network create dual --subnet 10.30.0.0/24 --subnet fd00:30::/64");
    let a = sb.ok("--json connect dual a");
    assert!(
        a.contains("10.30.0.2/24") && a.contains("fd00:30::2/64"),
        "{a}"
    );
    sb.ok("connect dual b --ip fd00:30::b");
    sb.sh("ip netns exec a ping -6 -c1 -W2 fd00:30::b");
    sb.ok("ping a fd00:30::b -c 1");
    sb.ok("ping b fd00:30::1 -c 1");
    sb.ok("ping b 10.30.0.2 -c 1");
    let addr = sb.sh("ip -n b -6 addr show dev eth0");
    let ours = addr
        .lines()
        .find(|l| l.contains("fd00:30::b/64"))
        .expect("address present");
    assert!(!ours.contains("tentative"), "DAD was not skipped: {addr}");
    let route = sb.sh("ip -n b -6 route show default");
    assert!(route.contains("via fd00:30::1"), "{route}");
}

#[test]
fn demo_runs_in_its_own_sandbox() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    let out = sb.ok("demo");
    assert!(out.contains("every ping was answered"), "{out}");
    assert!(out.contains("brctl addbr mydocker0"), "{out}");
    crate::common::assert_same(
        &sb.snapshot(),
        &before,
        "demo leaked into the calling namespace",
    );
}

/// A pipe closed once the demo's network exists (`nsnet demo | grep -m1
/// ...`) and SIGINT in the middle end the demo with
/// everything it started (its DNS server among them): no process that
/// inherited its environment is left, and the caller's world is unchanged.
#[test]
fn the_demo_leaves_nothing_running_however_it_ends() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    let mark = format!("nsnet-demo-{}", std::process::id());
    let nsnet = crate::common::NSNET;
    // What still runs once the demo's processes have had 5 s to end
    // (a leak keeps running; an ending process is merely slow on a
    // loaded machine).
    let left = || {
        let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let now = sb.sh(&format!(
                "for p in /proc/[0-9]*; do grep -qs -a {mark} $p/environ && tr '\\0' ' ' < $p/cmdline && echo; done; true"
            ));
            if now.trim().is_empty() || std::time::Instant::now() > end {
                return now;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    let head = sb.sh(&format!(
        "NSNET_TEST_MARK={mark} {nsnet} demo | grep -m1 'attach namespace ns2'"
    ));
    assert!(head.contains("ns2"), "{head}");
    let after_pipe = left();
    assert!(after_pipe.trim().is_empty(), "left running: {after_pipe}");
    let code = sb.sh(&format!(
        "NSNET_TEST_MARK={mark} {nsnet} demo >/dev/null 2>&1 & p=$!; sleep 0.5; kill -INT $p; \
         wait $p; echo $?"
    ));
    assert_eq!(code.trim(), "130", "the demo did not end on SIGINT");
    let after_int = left();
    assert!(after_int.trim().is_empty(), "left running: {after_int}");
    crate::common::assert_same(&sb.snapshot(), &before, "the demo leaked");
}

#[test]
fn networks_are_isolated_unless_both_opt_out() {
    let sb = Sandbox::new();
    sb.ok("network create red --subnet 10.60.0.0/24");
    sb.ok("network create blue --subnet 10.61.0.0/24");
    sb.ok("connect red r1");
    sb.ok("connect blue b1");
    // Same network: fine. Across networks: dropped in both directions.
    sb.ok("connect red r2");
    sb.ok("ping r1 10.60.0.3 -c 1");
    for (ns, dest) in [("r1", "10.61.0.2"), ("b1", "10.60.0.2")] {
        let out = sb.run(&["ping", ns, dest, "-c", "1", "-W", "0.5"]);
        assert_no_reply(&out, &format!("{ns} reached {dest} across networks"));
    }
    // Two networks that both opt out reach each other through the host.
    sb.ok("network create g1 --subnet 10.62.0.0/24 --no-isolate");
    sb.ok("network create g2 --subnet 10.63.0.0/24 --no-isolate");
    sb.ok("connect g1 x1");
    sb.ok("connect g2 x2");
    sb.ok("ping x1 10.63.0.2 -c 1 -W 2");
    // One isolated side is enough to keep them apart.
    let out = sb.run("ping x1 10.60.0.2 -c 1 -W 0.5");
    assert_no_reply(&out, "x1 reached an isolated network");
}
