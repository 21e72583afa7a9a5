//! Labs: point-to-point links, routers and routes, impairment measured on
//! the wire, pingall and graphs. Each test in its own sandbox.

use crate::common::{assert_same, Sandbox};

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::process::{ChildStderr, Stdio};
use std::time::{Duration, Instant};

const ROUTED_LAB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/routed-lab.toml");

fn write(dir: &tempfile::TempDir, text: &str) -> String {
    let path = dir.path().join("lab.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn enter(ns: &str) {
    let f = std::fs::File::open(format!("/run/netns/{ns}")).expect("opening namespace");
    nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
}

/// Bulk TCP from `from` to `to_addr` (a listener in `to`) for `secs`:
/// the receiver's throughput in Mbit/s.
fn tcp_mbits(from: &str, to: &str, to_addr: &str, secs: f64) -> f64 {
    let addr: SocketAddr = format!("{to_addr}:5201").parse().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let to = to.to_string();
    let receiver = std::thread::spawn(move || {
        enter(&to);
        let l = TcpListener::bind(addr).expect("bind");
        tx.send(()).unwrap();
        let (mut c, _) = l.accept().expect("accept");
        let mut buf = vec![0u8; 1 << 16];
        let (mut total, start) = (0usize, Instant::now());
        while let Ok(n) = c.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n;
        }
        total as f64 * 8.0 / start.elapsed().as_secs_f64() / 1e6
    });
    rx.recv().unwrap();
    let from = from.to_string();
    let sender = std::thread::spawn(move || {
        enter(&from);
        let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).expect("connect");
        let chunk = vec![0x5au8; 1 << 16];
        let end = Instant::now() + Duration::from_secs_f64(secs);
        while Instant::now() < end {
            if c.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    sender.join().unwrap();
    receiver.join().unwrap()
}

/// A link a:eth1 <-> b:eth1 with PREFIX.1/30 and PREFIX.2/30 on its ends.
fn link_a_b(sb: &Sandbox, prefix: &str) {
    let (ip_a, ip_b) = (format!("{prefix}.1/30"), format!("{prefix}.2/30"));
    sb.ok(&[
        "link", "add", "a:eth1", "b:eth1", "--ip", &ip_a, "--ip", &ip_b,
    ]);
}

/// Average RTT in ms and received count of `count` pings.
fn ping_stats(sb: &Sandbox, from: &str, to: &str, count: u32, interval: &str) -> (f64, u32) {
    let out = sb.run(&[
        "--json",
        "ping",
        from,
        to,
        "-c",
        &count.to_string(),
        "-i",
        interval,
        "-W",
        "1",
    ]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let v: serde_json::Value = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .unwrap_or_else(|| {
            panic!(
                "ping --json: {text} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let received = v["received"].as_u64().unwrap_or(0) as u32;
    let rtts: Vec<f64> = v["rtt_ms"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x.as_f64()).collect())
        .unwrap_or_default();
    let rtt = rtts.iter().sum::<f64>() / rtts.len().max(1) as f64;
    (rtt, received)
}

const TWO_LINKS: &str = r#"
[[links]]
endpoints = ["a:eth1", "b:eth1"]
ips = ["10.61.0.1/30", "10.61.0.2/30"]

[[links]]
endpoints = ["b:eth2", "c:eth1"]
ips = [["10.62.0.1/30", "fd00:62::1/64"], ["10.62.0.2/30", "fd00:62::2/64"]]
mtu = 1400
"#;

#[test]
fn links_come_up_ping_and_go_exactly() {
    let sb = Sandbox::new();
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, TWO_LINKS);
    let before = sb.snapshot();
    let out = sb.ok(&["up", "-f", &file]);
    assert!(out.contains("link a:eth1 <-> b:eth1"), "{out}");
    sb.ok("ping a 10.61.0.2 -c 1");
    sb.ok("ping c 10.62.0.1 -c 1");
    sb.ok("ping c fd00:62::1 -c 1");
    assert!(sb.sh("ip -n c link show eth1").contains("mtu 1400"));
    let snap = sb.snapshot();
    let again = sb.ok(&["up", "-f", &file]);
    assert!(again.contains("no changes"), "{again}");
    assert_same(&sb.snapshot(), &snap, "a second up changed the host");
    // Editing one link changes only that link: the other keeps its veth.
    let kept = sb.sh("ip -n c -o link show eth1 | cut -d: -f1");
    let edited = write(
        &dir,
        &TWO_LINKS.replace(
            "10.61.0.1/30\", \"10.61.0.2/30",
            "10.61.0.5/30\", \"10.61.0.6/30",
        ),
    );
    let out = sb.ok(&["up", "-f", &edited]);
    assert_eq!(
        out.lines()
            .filter(|l| l.contains("link"))
            .collect::<Vec<_>>(),
        ["delete link a:eth1 <-> b:eth1", "link a:eth1 <-> b:eth1"],
        "{out}"
    );
    assert_eq!(sb.sh("ip -n c -o link show eth1 | cut -d: -f1"), kept);
    sb.ok("ping a 10.61.0.6 -c 1");
    let ls = sb.ok("--json link ls");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&ls)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        2
    );
    sb.ok(&["down", "-f", &edited]);
    assert_same(&sb.snapshot(), &before, "down");
}

#[test]
fn bad_link_ends_are_refused_with_line_and_column() {
    let sb = Sandbox::new();
    let dir = tempfile::tempdir().unwrap();
    let before = sb.snapshot();
    for (text, at) in [
        ("[[links]]\nendpoints = [\"r1eth1\", \"r2:eth1\"]\n", ":2:14: invalid link end \"r1eth1\""),
        ("[[links]]\nendpoints = [\"r1:averyveryverylongname\", \"r2:eth1\"]\n", ":2:14: invalid link end"),
        ("[[links]]\nendpoints = [\"r1:eth1\", \"r1:eth1\"]\n", ":2:13: link end r1:eth1 is given twice"),
        ("[[links]]\nendpoints = [\"r1:eth1\"]\n", ":2:13: a link has exactly two endpoints"),
        ("[[links]]\nendpoints = [\"r1:eth1\", \"r2:eth1\"]\n[[links]]\nendpoints = [\"r1:eth1\", \"r3:eth1\"]\n", ":4:13: link end r1:eth1 is in use by another link"),
        ("[networks.n]\nsubnets = [\"10.63.0.0/24\"]\n[namespaces.r1]\nattach = [{ network = \"n\" }]\n[[links]]\nendpoints = [\"r1:eth0\", \"r2:eth1\"]\n", ":6:13: link end r1:eth0 is in use: the attachment to network n"),
        ("[[links]]\nendpoints = [\"r1:eth1\", \"r2:eth1\"]\nips = [\"10.0.0.1/30\"]\n", ":3:8: ips has one entry per end"),
        ("[[links]]\nendpoints = [\"r1:eth1\", \"r2:eth1\"]\nimpair = { delay = \"20 parsecs\" }\n", ":3:10: invalid duration"),
        ("[namespaces.r1]\nroutes = [\"10.2.0.0/24 via\"]\n", ":2:11: invalid route"),
        ("[networks.n]\nsubnets = [\"10.63.0.0/24\"]\n[[links]]\nendpoints = [\"h1:eth0\", \"network:n\"]\n", ":4:13: network:n cannot be a switch: n is a network of this file"),
        ("[[links]]\nendpoints = [\"h1:eth0\", \"network:s1\"]\nips = [\"10.0.0.1/24\", \"10.0.0.2/24\"]\n", ":3:8: network:s1 is a port of switch s1, and a switch port has no address"),
    ] {
        let file = write(&dir, text);
        let err = sb.fails(&["up", "-f", &file], 2);
        assert!(err.contains(&format!("{file}{at}")), "{text:?}: {err}");
        assert_same(&sb.snapshot(), &before, "a refused file changed the host");
    }
    // The command line: the same checks, the documented exit codes.
    let err = sb.fails("link add r1 r2:eth1", 2);
    assert!(err.contains("invalid link end \"r1\""), "{err}");
    sb.fails("link add r1:eth1 r2:eth1 --ip 10.0.0.1/30", 2);
    sb.ok("link add r1:eth1 r2:eth1");
    let snap = sb.snapshot();
    let err = sb.fails("link add r3:eth1 r1:eth1", 4);
    assert!(
        err.contains("link end r1:eth1 is already in use: link r1:eth1 <-> r2:eth1"),
        "{err}"
    );
    assert_same(&sb.snapshot(), &snap, "a refused link changed the host");
    let err = sb.fails("link del r1:eth1 r3:eth1", 3);
    assert!(err.contains("no link between r1:eth1 and r3:eth1"), "{err}");
    sb.ok("link del r2:eth1 r1:eth1");
    assert_same(&sb.snapshot(), &before, "link del");
}

#[test]
fn the_routed_triangle_routes_and_a_removed_route_breaks_that_path() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    sb.ok(&["up", "-f", ROUTED_LAB]);
    // h1 -> r1 -> r3 -> h2: two routers in between.
    sb.ok("ping h1 10.0.3.2 -c 1");
    let show = sb.ok("show");
    assert!(
        show.contains("  r2:eth2 10.1.23.1/30 [rate 10mbit] <-> r3:eth2"),
        "{show}"
    );
    assert!(
        show.contains("namespace r1: forwards; routes 10.0.3.0/24 via 10.1.13.2"),
        "{show}"
    );
    let trace = sb.sh("ip netns exec h1 ip route get 10.0.3.2");
    assert!(trace.contains("via 10.0.1.1"), "{trace}");
    let all = sb.ok(&["--json", "pingall", "-f", ROUTED_LAB, "-c", "1"]);
    let v: serde_json::Value = serde_json::from_str(&all).unwrap();
    let pairs = v["pairs"].as_array().unwrap();
    assert!(pairs.len() >= 30, "{all}");
    assert_eq!(v["failed"], 0, "{all}");
    // Both hosts see every router address, and each other.
    for (from, to) in [("h1", "10.0.3.2"), ("h2", "10.0.1.2"), ("h1", "10.1.23.2")] {
        assert!(
            pairs
                .iter()
                .any(|p| p["from"] == from && p["address"] == to),
            "{from} -> {to} missing: {all}"
        );
    }
    // Without r1's route to h2's subnet, exactly the paths through it
    // break: h1 and h2 lose each other, the links still work.
    sb.ok("route del r1 10.0.3.0/24 via 10.1.13.2");
    let out = sb.run("--json pingall -c 1 -W 0.5");
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let failed: Vec<(String, String)> = v["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["received"] == 0)
        .map(|p| {
            (
                p["from"].as_str().unwrap().into(),
                p["address"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        failed.contains(&("h1".into(), "10.0.3.2".into())),
        "{failed:?}"
    );
    assert!(
        failed.contains(&("h2".into(), "10.0.1.2".into())),
        "{failed:?}"
    );
    // What breaks is what r1 must send towards 10.0.3.0/24: h1's requests
    // there, and the replies of h1 and r1 to h2.
    let r1 = ["10.0.1.1", "10.1.12.1", "10.1.13.1"];
    for (from, to) in &failed {
        let through_r1 = (from == "h1" && to.starts_with("10.0.3."))
            || (from == "h2" && (to.starts_with("10.0.1.") || r1.contains(&to.as_str())));
        assert!(
            through_r1,
            "only paths through r1's route may break: {from} -> {to}"
        );
    }
    sb.ok("ping r1 10.1.13.2 -c 1");
    sb.ok("route add r1 10.0.3.0/24 via 10.1.13.2");
    sb.ok("ping h1 10.0.3.2 -c 1");
    let err = sb.fails("route del r1 10.9.0.0/24 via 10.1.13.2", 3);
    assert!(
        err.contains("has no route 10.9.0.0/24 via 10.1.13.2"),
        "{err}"
    );
    sb.ok(&["down", "-f", ROUTED_LAB]);
    assert_same(&sb.snapshot(), &before, "down");
}

const SWITCH_LAB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/switch-lab.toml");

/// Mininet's `linear,3`: pingall passes at once after `up`, the bridges
/// hold exactly the ports the file names, a loop is refused, a port taken
/// off its bridge by hand is found and put back, `down` leaves nothing.
#[test]
fn a_chain_of_switches_carries_one_subnet_and_refuses_a_loop() {
    let sb = Sandbox::new();
    let dir = tempfile::tempdir().unwrap();
    let before = sb.snapshot();
    let out = sb.ok(&["up", "-f", SWITCH_LAB]);
    assert!(out.contains("link h1:eth0 <-> s1:h1-eth0"), "{out}");
    assert!(out.contains("link s1:s2 <-> s2:s1"), "{out}");
    // No wait: the ports forward from the moment `up` returns.
    let pings = sb.ok(&["--json", "pingall", "-f", SWITCH_LAB, "-c", "1"]);
    let v: serde_json::Value = serde_json::from_str(&pings).unwrap();
    let pairs = v["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 6, "every host pings the two others: {pings}");
    assert!(pairs.iter().all(|p| p["received"] == 1), "{pings}");
    assert!(pairs.iter().any(|p| p["because"] == "switch s3"), "{pings}");
    // The oracle: the bridge in s2 has its trunks and its host's port.
    let ports = sb
        .sh("ip -n s2 -o link show master br0 | cut -d' ' -f2 | cut -d@ -f1 | sort | tr '\\n' ' '");
    assert_eq!(ports.trim(), "h2-eth0 s1 s3", "{ports}");
    sb.ok("ping h1 10.0.0.3 -c 1");
    let graph = sb.ok("graph");
    assert!(
        graph.contains("shape=box3d, label=\"s2 (switch)\""),
        "{graph}"
    );
    // A loop is refused (conflict), and nothing changes.
    let up = sb.snapshot();
    let looped = write(
        &dir,
        &format!(
            "{}\n[[links]]\nendpoints = [\"network:s3\", \"network:s1\"]\n",
            std::fs::read_to_string(SWITCH_LAB).unwrap()
        ),
    );
    let err = sb.fails(&["up", "-f", &looped], 4);
    assert!(err.contains("would make a loop (s3 - s2 - s1)"), "{err}");
    assert_same(&sb.snapshot(), &up, "a refused loop changed the host");
    // A port off its bridge: found, and put back by `up`.
    sb.sh("ip -n s2 link set dev s3 nomaster");
    let drift = sb.run("check");
    assert_eq!(drift.status.code(), Some(1));
    let text = String::from_utf8_lossy(&drift.stdout);
    assert!(
        text.contains("s2:s3 is not a port of the switch's bridge br0"),
        "{text}"
    );
    sb.fails("ping h1 10.0.0.3 -c 1 -W 0.5", 1);
    sb.ok(&["up", "-f", SWITCH_LAB]);
    sb.ok("check");
    sb.ok("ping h1 10.0.0.3 -c 1");
    // The command line: a host on a switch the file made, and gone again.
    let out = sb.ok("link add h9:eth0 network:s2 --ip 10.0.0.9/24");
    assert!(out.contains("linked h9:eth0 <-> s2:h9-eth0"), "{out}");
    sb.ok("ping h9 10.0.0.1 -c 1");
    sb.ok("link del network:s2 h9:eth0");
    sb.ok(&["down", "-f", SWITCH_LAB]);
    assert_same(&sb.snapshot(), &before, "down");
}

#[test]
fn graphs_are_valid_dot_and_mermaid() {
    let sb = Sandbox::new();
    let dot = sb.ok(&["graph", "-f", ROUTED_LAB]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lab.dot");
    std::fs::write(&path, &dot).unwrap();
    let svg = sb.sh(&format!("dot -Tsvg {}", path.display()));
    assert!(svg.contains("<svg") && svg.contains("r1 (router)"), "{dot}");
    assert_eq!(dot.matches(" -- ").count(), 5, "five links: {dot}");
    // Mermaid: a flowchart header, every node declared once, every edge
    // between declared nodes, labels quoted.
    let m = sb.ok(&["graph", "-f", ROUTED_LAB, "--format", "mermaid"]);
    let mut lines = m.lines();
    assert_eq!(lines.next(), Some("graph LR"));
    let mut nodes = std::collections::BTreeSet::new();
    let mut edges = 0;
    for l in lines {
        let l = l.trim();
        let id: String = l
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        if l.contains("---|") || l.contains("-.-|") {
            let parts: Vec<&str> = l.split('|').collect();
            assert_eq!(parts.len(), 3, "{l}");
            assert!(parts[1].starts_with('"') && parts[1].ends_with('"'), "{l}");
            assert!(nodes.contains(&id), "edge from undeclared {id}: {l}");
            assert!(
                nodes.contains(parts[2].trim()),
                "edge to undeclared node: {l}"
            );
            edges += 1;
        } else {
            assert!(nodes.insert(id.clone()), "node {id} declared twice");
            assert!(l.contains('"'), "{l}");
        }
    }
    assert_eq!((nodes.len(), edges), (5, 5), "{m}");
    assert!(m.contains("-.-|"), "the impaired link is drawn dashed: {m}");
    // From the record, after an up, the same graph.
    sb.ok(&["up", "-f", ROUTED_LAB]);
    assert_eq!(sb.ok("graph"), dot);
    sb.ok(&["down", "-f", ROUTED_LAB]);
}

#[test]
fn a_rate_limit_is_measured_on_the_wire_and_clear_restores_the_baseline() {
    let sb = Sandbox::new();
    link_a_b(&sb, "10.64.0");
    let base = tcp_mbits("a", "b", "10.64.0.2", 1.0);
    assert!(base > 100.0, "baseline {base} Mbit/s");
    sb.ok("impair a:eth1 --rate 10mbit");
    let ls = sb.ok("impair ls");
    assert!(ls.contains("a:eth1") && ls.contains("rate 10mbit"), "{ls}");
    let limited = tcp_mbits("a", "b", "10.64.0.2", 4.0);
    assert!(
        (8.0..=12.0).contains(&limited),
        "10mbit gave {limited:.2} Mbit/s"
    );
    let clean = sb.ok("check");
    assert!(clean.contains("no drift"), "{clean}");
    // Someone removes the qdisc: check says so.
    sb.sh("tc -n a qdisc del dev eth1 root");
    let out = sb.run("check");
    assert_eq!(out.status.code(), Some(1));
    let drift = String::from_utf8_lossy(&out.stdout);
    assert!(
        drift.contains("a:eth1: impairment is none, the record says rate 10mbit"),
        "{drift}"
    );
    sb.ok("impair a:eth1 --rate 10mbit");
    sb.ok("impair a:eth1 --clear");
    let after = tcp_mbits("a", "b", "10.64.0.2", 1.0);
    assert!(after > 100.0, "after --clear {after} Mbit/s");
    assert!(sb.sh("tc -n a qdisc show dev eth1").contains("noqueue"));
    let err = sb.fails("impair a:eth1 --clear", 3);
    assert!(err.contains("a:eth1 is not impaired"), "{err}");
    let err = sb.fails("impair a:eth9 --loss 1%", 3);
    assert!(err.contains("namespace a has no interface eth9"), "{err}");
    let err = sb.fails("impair a:eth1 --loss 120%", 2);
    assert!(err.contains("between 0% and 100%"), "{err}");
    sb.ok("link del a:eth1 b:eth1");
}

#[test]
fn loss_is_measured_on_the_wire_and_clear_restores_the_baseline() {
    // netem where the kernel has it, a bpf classifier where it has not:
    // either way packets vanish on the wire, unseen by the sender.
    let sb = Sandbox::new();
    link_a_b(&sb, "10.67.0");
    sb.ok("impair a:eth1 --loss 20%");
    let (_, received) = ping_stats(&sb, "a", "10.67.0.2", 200, "0.01");
    let lost = 200 - received;
    assert!((20..=60).contains(&lost), "20% loss lost {lost} of 200");
    assert!(sb.ok("check").contains("no drift"));
    // Loss and a rate together.
    sb.ok("impair a:eth1 --loss 20% --rate 10mbit");
    assert!(sb.ok("check").contains("no drift"));
    sb.ok("impair a:eth1 --clear");
    let (_, received) = ping_stats(&sb, "a", "10.67.0.2", 50, "0.01");
    assert_eq!(received, 50, "after --clear");
    let qdiscs = sb.sh("tc -n a qdisc show dev eth1");
    assert!(
        !qdiscs.contains("clsact") && qdiscs.contains("noqueue"),
        "{qdiscs}"
    );
    sb.ok("link del a:eth1 b:eth1");
}

#[test]
fn delay_is_measured_or_refused_where_the_kernel_has_no_netem() {
    let sb = Sandbox::new();
    link_a_b(&sb, "10.65.0");
    let (base, _) = ping_stats(&sb, "a", "10.65.0.2", 5, "0.05");
    let out = sb.run("impair a:eth1 --delay 50ms");
    if !out.status.success() {
        // A kernel built without netem (this project's CI machine): a
        // clear refusal naming the cause, and nothing changed.
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("this kernel has no netem qdisc"), "{err}");
        assert!(sb.ok("impair ls").trim().is_empty());
        assert!(sb.sh("tc -n a qdisc show dev eth1").contains("noqueue"));
        sb.ok("link del a:eth1 b:eth1");
        return;
    }
    let (rtt, _) = ping_stats(&sb, "a", "10.65.0.2", 10, "0.1");
    let added = rtt - base;
    assert!(
        (40.0..=60.0).contains(&added),
        "50ms delay added {added:.1} ms"
    );
    assert!(sb.ok("check").contains("no drift"));
    sb.ok("impair a:eth1 --clear");
    let (rtt, _) = ping_stats(&sb, "a", "10.65.0.2", 10, "0.05");
    assert!(rtt < base + 10.0, "after --clear {rtt:.1} ms");
    sb.ok("link del a:eth1 b:eth1");
}

#[test]
fn a_fault_at_every_step_of_the_lab_leaves_the_host_as_before() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    let mut k = 1;
    loop {
        let out = sb.run_env(
            &["up", "-f", ROUTED_LAB],
            &[("NSNET_FAIL_AT", &k.to_string())],
        );
        if out.status.success() {
            break;
        }
        assert_same(&sb.snapshot(), &before, &format!("failure at step {k}"));
        k += 1;
        assert!(k < 200, "the lab never came up");
    }
    assert!(k > 30, "only {k} steps");
    sb.ok("ping h1 10.0.3.2 -c 1");
    sb.ok(&["down", "-f", ROUTED_LAB]);
    assert_same(&sb.snapshot(), &before, "down");
    // Killed at points along the way: the next up finishes the job.
    for k in [3, 17, 40] {
        let out = sb.run_env(
            &["up", "-f", ROUTED_LAB],
            &[("NSNET_ABORT_AT", &k.to_string())],
        );
        assert!(!out.status.success(), "abort at {k}");
        sb.ok(&["up", "-f", ROUTED_LAB]);
        sb.ok("ping h2 10.0.1.2 -c 1");
        assert!(sb.ok("check").contains("no drift"), "after abort at {k}");
        sb.ok(&["down", "-f", ROUTED_LAB]);
        assert_same(&sb.snapshot(), &before, &format!("down after abort at {k}"));
    }
}

#[test]
fn namespaces_of_links_are_guarded_and_vanished_ones_collected() {
    let sb = Sandbox::new();
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, TWO_LINKS);
    let before = sb.snapshot();
    sb.ok(&["up", "-f", &file]);
    let err = sb.fails("ns del a", 4);
    assert!(
        err.contains("namespace a is in use by link a:eth1 <-> b:eth1"),
        "{err}"
    );
    // Deleted behind nsnet's back: check says so, gc forgets the link.
    sb.sh("ip netns del a");
    let out = sb.run("check");
    assert_eq!(out.status.code(), Some(1));
    let drift = String::from_utf8_lossy(&out.stdout);
    assert!(
        drift.contains("link a:eth1 b:eth1: end a:eth1 is missing"),
        "{drift}"
    );
    let gc = sb.ok("gc");
    assert!(gc.contains("forget link a:eth1 <-> b:eth1"), "{gc}");
    assert!(sb.ok("check").contains("no drift"));
    sb.ok("ping c 10.62.0.1 -c 1");
    sb.ok(&["down", "-f", &file]);
    assert_same(&sb.snapshot(), &before, "down after gc");
}

#[test]
fn routers_routes_and_impairments_from_the_command_line() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    sb.ok("ns add r --forward");
    assert_eq!(
        sb.sh("ip netns exec r sysctl -n net.ipv4.ip_forward")
            .trim(),
        "1"
    );
    assert_eq!(
        sb.sh("ip netns exec r sysctl -n net.ipv6.conf.all.forwarding")
            .trim(),
        "1"
    );
    assert!(sb.ok("route ls").contains("r                forwards"));
    sb.ok("link add r:e1 s:e1 --ip 10.66.0.1/30 --ip 10.66.0.2/30");
    sb.ok("route add s 10.66.9.0/24 via 10.66.0.1");
    assert!(sb
        .sh("ip -n s route")
        .contains("10.66.9.0/24 via 10.66.0.1"));
    let err = sb.fails("route add s 10.66.9.0/24 via 10.66.0.2", 4);
    assert!(err.contains("already has a route to 10.66.9.0/24"), "{err}");
    let ls: serde_json::Value = serde_json::from_str(&sb.ok("--json route ls")).unwrap();
    assert_eq!(ls["s"]["routes"][0], "10.66.9.0/24 via 10.66.0.1", "{ls}");
    sb.ok("impair s:e1 --rate 1mbit");
    let imp: serde_json::Value = serde_json::from_str(&sb.ok("--json impair ls")).unwrap();
    assert_eq!(imp[0]["end"], "s:e1", "{imp}");
    assert_eq!(imp[0]["impairment"]["rate_bps"], 1_000_000, "{imp}");
    let err = sb.fails("ns del s", 4);
    assert!(err.contains("in use by link r:e1 <-> s:e1"), "{err}");
    sb.ok("route del s 10.66.9.0/24 via 10.66.0.1");
    sb.ok("link del r:e1 s:e1");
    // r only forwards now: ns del turns that off and deletes it.
    sb.ok("ns del r");
    assert_same(&sb.snapshot(), &before, "after the last lab object");
}

#[test]
fn up_remakes_what_was_damaged_by_hand() {
    let sb = Sandbox::new();
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        &dir,
        &format!("{TWO_LINKS}\n[namespaces.a]\nroutes = [\"10.62.0.0/30 via 10.61.0.2\"]\n"),
    );
    let before = sb.snapshot();
    sb.ok(&["up", "-f", &file]);
    // A link and a route deleted behind nsnet's back.
    sb.sh("ip -n c link del eth1");
    sb.sh("ip -n a route del 10.62.0.0/30");
    let out = sb.run("check");
    let drift = String::from_utf8_lossy(&out.stdout);
    assert!(
        drift.contains("link b:eth2 c:eth1: end c:eth1 is missing"),
        "{drift}"
    );
    assert!(
        drift.contains("namespace a: route 10.62.0.0/30 via 10.61.0.2 is missing"),
        "{drift}"
    );
    let up = sb.ok(&["up", "-f", &file]);
    assert!(up.contains("link b:eth2 <-> c:eth1"), "{up}");
    assert!(
        up.contains("add route 10.62.0.0/30 via 10.61.0.2 in a"),
        "{up}"
    );
    assert!(
        !up.contains("link a:eth1 <-> b:eth1"),
        "the intact link stays: {up}"
    );
    assert!(sb.ok("check").contains("no drift"));
    sb.ok("ping c 10.62.0.1 -c 1");
    assert!(sb.ok(&["up", "-f", &file]).contains("no changes"));
    sb.ok(&["down", "-f", &file]);
    assert_same(&sb.snapshot(), &before, "down after repair");
}

/// `capture` on one end of a link while pings cross it: the pcap file
/// holds the echo requests and replies (tcpdump reads it); `-c 5` stops
/// after five packets with a filter that keeps only ICMP; lines name the
/// direction; a bad filter, an unknown interface and an unknown node are
/// refused with their exit codes.
#[test]
fn capture_writes_what_crosses_a_link() {
    crate::common::require_tools(
        &["tcpdump"],
        "Debian package tcpdump; scripts/test installs it",
    );
    let sb = Sandbox::new();
    link_a_b(&sb, "10.9.0");
    let pcap = "/run/link.pcap";
    let (cap, mut said) = listening(&sb, &["capture", "a:eth1", "-w", pcap, "-c", "5", "icmp"]);
    // Three echoes and their replies, ARP besides: the filter keeps ICMP
    // only, and the capture stops at the fifth packet.
    sb.sh("ip netns exec a ping -c 3 -i 0.2 10.9.0.2 >/dev/null");
    let out = cap.wait_with_output().unwrap();
    assert!(out.status.success());
    let mut rest = String::new();
    said.read_to_string(&mut rest).unwrap();
    assert_eq!(rest.trim(), "5 packets captured");
    let read = sb.sh(&format!("tcpdump -n -r {pcap} 2>/dev/null"));
    assert_eq!(read.lines().count(), 5, "{read}");
    assert_eq!(read.matches("ICMP echo request").count(), 3, "{read}");
    assert_eq!(read.matches("ICMP echo reply").count(), 2, "{read}");
    assert!(read.contains("10.9.0.1 > 10.9.0.2"), "{read}");
    // Lines, both directions.
    let (cap, _) = listening(&sb, &["capture", "b:eth1", "-c", "2", "icmp"]);
    sb.sh("ip netns exec a ping -c 1 10.9.0.2 >/dev/null");
    let lines = String::from_utf8_lossy(&cap.wait_with_output().unwrap().stdout).into_owned();
    assert!(
        lines.contains("eth1 in  IP 10.9.0.1 > 10.9.0.2: ICMP echo request"),
        "{lines}"
    );
    assert!(
        lines.contains("eth1 out IP 10.9.0.2 > 10.9.0.1: ICMP echo reply"),
        "{lines}"
    );
    let err = sb.fails("capture a:eth1 bogus((", 2);
    assert!(err.contains("capture filter"), "{err}");
    sb.fails("capture a:eth9 -w /run/none.pcap", 3);
    assert!(
        !std::path::Path::new("/run/none.pcap").exists(),
        "a file was left"
    );
    sb.fails("capture nowhere:eth0", 3);
}

/// `nsnet capture ARGS` started, once it says it listens (stdout piped):
/// the capture and the rest of its stderr.
fn listening(sb: &Sandbox, args: &[&str]) -> (std::process::Child, BufReader<ChildStderr>) {
    let mut cap = sb
        .command(crate::common::NSNET)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = BufReader::new(cap.stderr.take().unwrap());
    let mut line = String::new();
    said.read_line(&mut line).unwrap();
    assert!(line.starts_with("listening on "), "{args:?}: {line}");
    (cap, said)
}

/// An FRR lab of `examples/` copied where the daemons (user frr) may read
/// their configurations, in a sandbox whose /var/tmp (FRR's crash
/// buffers) is its own; the copy's topology file.
fn frr_lab(sb: &Sandbox, name: &str) -> String {
    crate::common::require_tools(
        &[
            "/usr/lib/frr/zebra",
            "/usr/lib/frr/ospfd",
            "/usr/lib/frr/bgpd",
            "vtysh",
        ],
        "Debian package frr; scripts/test installs it",
    );
    sb.sh(&format!(
        "mount -t tmpfs nsnet-test /var/tmp && mkdir -m 755 /run/lab && \
         cp -r {0}/examples/{name}.toml {0}/examples/{name} /run/lab/ && chmod -R a+rX /run/lab",
        env!("CARGO_MANIFEST_DIR")
    ));
    format!("/run/lab/{name}.toml")
}

/// `vtysh -N NODE -c CMD` in the node; its history goes to the lab's
/// private directory, not to the host's $HOME.
fn vtysh(sb: &Sandbox, node: &str, cmd: &str) -> String {
    let out = sb.run_env(
        &["exec", node, "--", "vtysh", "-N", node, "-c", cmd],
        &[("HOME", "/run/lab")],
    );
    assert!(
        out.status.success(),
        "vtysh {cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// How long until `from` pings `to`, within `limit` seconds.
fn reach(sb: &Sandbox, from: &str, to: &str, limit: u64) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(limit) {
        let ping = format!("ip netns exec {from} ping -c 1 -W 1 {to}");
        if sb.sh_status(&ping).status.success() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// The pids of the processes nsnet runs in nodes (its runtime files;
/// never another test's), each checked to be an FRR daemon.
fn frr_pids(sb: &Sandbox) -> Vec<i64> {
    let ps: serde_json::Value = serde_json::from_str(&sb.ok("--json ps")).unwrap();
    let pids: Vec<i64> = ps
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["running"] == true)
        .map(|p| p["pid"].as_i64().unwrap())
        .collect();
    for pid in &pids {
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
        assert!(exe.starts_with("/usr/lib/frr"), "{pid}: {}", exe.display());
    }
    pids
}

fn assert_gone(pids: &[i64]) {
    for pid in pids {
        let gone = !std::path::Path::new(&format!("/proc/{pid}/ns/net")).exists();
        assert!(gone, "FRR process {pid} left");
    }
}

/// `examples/ospf-lab.toml` with FRR: the routers' zebra and ospfd start
/// with `up`, h1 reaches h2 once OSPF converged (bounded), the learned
/// routes are in r1's kernel, a ring link taken down re-routes within the
/// protocol's timers, and `down` leaves no FRR process and the host as
/// before.
#[test]
fn the_ospf_lab_converges_reroutes_and_leaves_nothing() {
    let sb = Sandbox::new();
    let file = frr_lab(&sb, "ospf-lab");
    let before = sb.snapshot();
    sb.ok(&["up", "-f", &file]);
    let converged = reach(&sb, "h1", "10.0.3.2", 60);
    assert!(converged.is_some(), "no convergence: {}", sb.ok("logs r1"));
    let routes = sb.sh("ip -n r1 -4 route show proto ospf");
    assert!(routes.contains("10.0.3.0/24"), "{routes}");
    let neighbours = vtysh(&sb, "r1", "show ip ospf neighbor");
    assert_eq!(neighbours.matches("Full").count(), 2, "{neighbours}");
    // The link r1 uses goes: traffic takes the other side of the ring once
    // SPF ran (at once when r1 sees its link down; else after 4 s).
    let via = sb.sh("ip -n r1 route get 10.0.3.2");
    let (gone, other) = if via.contains("dev eth1") {
        ("eth1", "eth2")
    } else {
        ("eth2", "eth1")
    };
    sb.sh(&format!("ip -n r1 link set {gone} down"));
    let rerouted = reach(&sb, "h1", "10.0.3.2", 20);
    assert!(
        rerouted.is_some(),
        "no re-route: {}",
        sb.sh("ip -n r1 route")
    );
    let via = sb.sh("ip -n r1 route get 10.0.3.2");
    assert!(via.contains(&format!("dev {other}")), "{via}");
    eprintln!(
        "OSPF lab: converged in {:?}, re-routed in {:?}",
        converged.unwrap(),
        rerouted.unwrap()
    );
    let pids = frr_pids(&sb);
    assert_eq!(pids.len(), 8, "zebra and ospfd on four routers");
    sb.ok(&["down", "-f", &file]);
    assert_gone(&pids);
    assert_same(&sb.snapshot(), &before, "down");
}

/// `examples/bgp-lab.toml`: two autonomous systems learn each other's LAN
/// over eBGP, h1 reaches h2, and `down` leaves nothing.
#[test]
fn the_bgp_lab_exchanges_routes_and_leaves_nothing() {
    let sb = Sandbox::new();
    let file = frr_lab(&sb, "bgp-lab");
    let before = sb.snapshot();
    sb.ok(&["up", "-f", &file]);
    let converged = reach(&sb, "h1", "10.0.2.2", 60);
    assert!(converged.is_some(), "no session: {}", sb.ok("logs r1"));
    let routes = sb.sh("ip -n r1 -4 route show proto bgp");
    assert!(
        routes.contains("10.0.2.0/24 nhid") || routes.contains("10.0.2.0/24 via"),
        "{routes}"
    );
    let summary = vtysh(&sb, "r2", "show bgp ipv4 unicast 10.0.1.0/24");
    assert!(
        summary.contains("65001"),
        "r2 did not learn h1's LAN from AS 65001: {summary}"
    );
    eprintln!("BGP lab: converged in {:?}", converged.unwrap());
    let pids = frr_pids(&sb);
    assert_eq!(pids.len(), 4, "zebra and bgpd on two routers");
    sb.ok(&["down", "-f", &file]);
    assert_gone(&pids);
    assert_same(&sb.snapshot(), &before, "down");
}
