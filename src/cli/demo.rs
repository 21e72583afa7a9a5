//! `nsnet demo`: the tutorial, end to end, in a private sandbox.

use std::net::IpAddr;
use std::time::Duration;

use nsnet::api::live::{self as ping, enter_sandbox_alone, DEFAULT_STATE_DIR};
use nsnet::model::{ConnectRequest, CreateRequest, NsRef};
use nsnet::{Nsnet, Result};

use super::output::{live_ports, Printer};

const UPSTREAM_NS: &str = "upstream";
const UPSTREAM_ADDR: &str = "203.0.113.1";

fn step(title: &str, manual: &[&str]) {
    println!();
    println!("==> {title}");
    for m in manual {
        println!("    tutorial: {m}");
    }
}

fn demo_ping(out: &Printer, ns: &str, dest: &str) -> Result<bool> {
    let dest: IpAddr = dest.parse().expect("valid");
    let opts = ping::PingOptions {
        count: 2,
        timeout: Duration::from_secs(1),
        interval: Duration::from_millis(200),
        stop: None,
    };
    println!("$ nsnet ping {ns} {dest} -c 2");
    out.ping_header(dest);
    let s = ping::ping(&NsRef::Named(ns.into()), dest, &opts, |r| {
        out.ping_reply(dest, r)
    })?;
    out.ping_summary(dest, &s);
    Ok(s.received > 0)
}

/// Runs the demo. It keeps its state in the sandbox, whatever `--state-dir`
/// says: the demo never touches the host's state either.
pub fn run(out: &Printer) -> Result<i32> {
    nsnet::require_root("build the demo sandbox")?;
    // The process has no other thread yet, so all of it moves; in a PID
    // namespace of its own, so that its DNS server dies with it however
    // the demo ends (`nsnet demo | head -3`, Ctrl-C).
    enter_sandbox_alone()?;
    let nsnet = Nsnet::new(DEFAULT_STATE_DIR);
    println!(
        "nsnet demo: the tutorial in a private network and mount namespace; the host is untouched."
    );
    nsnet.make_upstream(
        UPSTREAM_NS,
        UPSTREAM_ADDR.parse().expect("valid"),
        "203.0.113.2".parse().expect("valid"),
    )?;
    println!("(simulated upstream: namespace {UPSTREAM_NS} at {UPSTREAM_ADDR}, with no route back to 172.16.0.0/16)");

    step(
        "create the bridge mydocker0",
        &["brctl addbr mydocker0", "ip link set dev mydocker0 up"],
    );
    println!("$ nsnet network create mydocker0 --subnet 172.16.0.0/16");
    let net = nsnet.create_network(&CreateRequest {
        subnets: vec!["172.16.0.0/16".parse().expect("valid")],
        ..CreateRequest::named("mydocker0")
    })?;
    out.network_created(&net);

    for (ns, ip) in [("ns1", "172.16.1.1/16"), ("ns2", "172.16.1.2/16")] {
        step(
            &format!("attach namespace {ns} with {ip}"),
            &[&format!("sh add-ns-to-br.sh mydocker0 {ns} {ip}")],
        );
        println!("$ nsnet connect mydocker0 {ns} --ip {ip}");
        let att = nsnet.connect(&ConnectRequest {
            ips: vec![ip.parse()?],
            ..ConnectRequest::new("mydocker0", NsRef::Named(ns.into()))
        })?;
        out.attachment("mydocker0", &att);
    }

    step("look at the bridge", &["brctl show"]);
    println!("$ nsnet show");
    let state = nsnet.state()?;
    out.show(&state, &live_ports(&nsnet, &state));

    step(
        "ping between the namespaces",
        &["ip netns exec ns1 ping 172.16.1.2"],
    );
    let mut ok = demo_ping(out, "ns1", "172.16.1.2")?;
    ok &= demo_ping(out, "ns2", "172.16.1.1")?;

    step(
        "external communication through NAT",
        &[
            "echo 1 > /proc/sys/net/ipv4/ip_forward",
            "iptables -t nat -A POSTROUTING -s 172.16.0.0/16 ! -o mydocker0 -j MASQUERADE",
        ],
    );
    println!("nsnet did both when it created the network: ip_forward=1 and, in table inet nsnet,");
    println!("    ip saddr 172.16.0.0/16 oifname != \"mydocker0\" masquerade");
    ok &= demo_ping(out, "ns1", UPSTREAM_ADDR)?;

    step(
        "tear down",
        &[
            "ip netns del ns1",
            "ip netns del ns2",
            "ip link del mydocker0",
        ],
    );
    for ns in ["ns1", "ns2"] {
        println!("$ nsnet disconnect mydocker0 {ns}");
        nsnet.disconnect("mydocker0", &NsRef::Named(ns.into()))?;
    }
    println!("$ nsnet network rm mydocker0");
    nsnet.remove_network("mydocker0", false)?;
    println!();
    if ok {
        println!("demo finished: every ping was answered.");
        Ok(0)
    } else {
        println!("demo finished, but some pings were not answered.");
        Ok(1)
    }
}
