//! Networks on the LAN (drivers macvlan and host-device), on a simulated
//! LAN: a bridge in namespace `lan` with the LAN's router at 192.0.2.1, a
//! DHCP-less other machine at 192.0.2.50 (namespace `other`), and a veth
//! from the LAN bridge to the sandbox's host (`lan0`, the host at
//! 192.0.2.10) as the parent. The LAN's own view (its neighbour table, its
//! pings) is the oracle for what the namespaces look like on the wire.

use crate::common::{assert_same, Sandbox};

const OTHER_MAC: &str = "02:00:00:00:00:50";

fn lan(sb: &Sandbox) {
    sb.sh(&format!(
        "{}/tests/common/simulated-lan.sh --host 192.0.2.10/24 --other-mac {OTHER_MAC} 192.0.2.50",
        env!("CARGO_MANIFEST_DIR")
    ));
}

/// The IPv4 address of `ifname` in namespace `ns`.
fn address(sb: &Sandbox, ns: &str, ifname: &str) -> String {
    let out = sb.sh(&format!(
        "ip -n {ns} -4 -o addr show dev {ifname} | awk '{{print $4}}' | cut -d/ -f1"
    ));
    out.trim().to_string()
}

fn mac(sb: &Sandbox, ns: &str, ifname: &str) -> String {
    sb.sh(&format!(
        "ip -n {ns} -j link show dev {ifname} | jq -r '.[0].address'"
    ))
    .trim()
    .to_string()
}

/// Whether one ping from `ns` (`None`: the host) to `dest` is answered
/// within 5 s: time for a neighbour lookup's retransmission.
fn pings(sb: &Sandbox, ns: Option<&str>, dest: &str) -> bool {
    ping_within(sb, ns, dest, 5)
}

/// Whether one ping from `ns` to `dest` goes unanswered for a second.
fn no_reply(sb: &Sandbox, ns: Option<&str>, dest: &str) -> bool {
    !ping_within(sb, ns, dest, 1)
}

fn ping_within(sb: &Sandbox, ns: Option<&str>, dest: &str, seconds: u32) -> bool {
    let ping = format!("ping -c1 -W{seconds} {dest}");
    let cmd = match ns {
        Some(ns) => format!("ip netns exec {ns} {ping}"),
        None => ping,
    };
    sb.sh_status(&cmd).status.success()
}

#[test]
fn macvlan_namespaces_are_on_the_lan_and_skip_addresses_in_use() {
    let sb = Sandbox::new();
    lan(&sb);
    let before = sb.snapshot();
    sb.ok("network create home --driver macvlan --parent lan0 --subnet 192.0.2.0/24 --gateway 192.0.2.1 --ip-range 192.0.2.48/29");
    sb.ok("connect home a");
    sb.ok("connect home b");
    sb.ok("connect home c");
    let addrs: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|ns| address(&sb, ns, "eth0"))
        .collect();
    assert_eq!(
        addrs,
        ["192.0.2.48", "192.0.2.49", "192.0.2.51"],
        "the other machine's 192.0.2.50 is skipped"
    );
    let route = sb.sh("ip -n a route show default");
    assert!(route.contains("default via 192.0.2.1 dev eth0"), "{route}");
    for ns in ["a", "b"] {
        assert!(pings(&sb, Some(ns), "192.0.2.1"), "{ns} reaches the router");
        assert!(
            pings(&sb, Some(ns), "192.0.2.50"),
            "{ns} reaches the other machine"
        );
    }
    assert!(pings(&sb, Some("a"), &addrs[1]), "bridge mode: a reaches b");
    // The LAN sees each namespace with its own MAC and address.
    for (ns, addr) in [("a", &addrs[0]), ("b", &addrs[1])] {
        let neigh = sb.sh(&format!("ip -n lan neigh show {addr} dev br0"));
        assert!(neigh.contains(&mac(&sb, ns, "eth0")), "{ns}: {neigh}");
    }
    // The host cannot reach its macvlan namespaces (no --host-access).
    assert!(
        no_reply(&sb, None, &addrs[0]),
        "the host reached a without host access"
    );
    let err = sb.fails("connect home d --ip 192.0.2.50", 4);
    assert!(
        err.contains("192.0.2.50") && err.contains(OTHER_MAC),
        "the conflict names the MAC that answered: {err}"
    );
    assert!(sb.sh("ip netns").lines().all(|l| !l.starts_with("d ")));
    let err = sb.fails("connect home d -p 8080:80", 2);
    assert!(err.contains("publishes no ports"), "{err}");
    assert!(sb.ok("check").contains("no drift"));
    let show = sb.ok("show home");
    assert!(
        show.contains("macvlan on lan0") && show.contains(&addrs[0]),
        "{show}"
    );
    // A namespace deleted behind nsnet's back: a finding, then gc.
    sb.sh("ip netns del c");
    assert!(sb.drift(&[]).contains("namespace c"), "check finds c gone");
    sb.ok("gc");
    assert!(sb.ok("check").contains("no drift"));
    sb.ok("disconnect home a");
    assert!(
        no_reply(&sb, Some("lan"), &addrs[0]),
        "nobody answers for a after disconnect"
    );
    sb.ok("network rm home --force");
    sb.settle();
    for addr in &addrs {
        assert!(
            no_reply(&sb, Some("lan"), addr),
            "nobody answers for {addr} after rm"
        );
    }
    assert_same(&sb.snapshot(), &before, "network rm");
}

/// Names on a macvlan network: nsnet's DNS server answers on the host's
/// own address on the LAN, for the namespaces only; without host access
/// there is no address to answer on, and no resolv.conf.
#[test]
fn names_resolve_on_a_macvlan_network_with_host_access() {
    let sb = Sandbox::new();
    lan(&sb);
    let before = sb.snapshot();
    sb.ok("network create home --driver macvlan --parent lan0 --subnet 192.0.2.0/24 --ip-range 192.0.2.128/25 --host-access");
    sb.ok("connect home a b");
    let b = address(&sb, "b", "eth0");
    let dig = |ns: &str, args: &str| {
        sb.sh_status(&format!(
            "ip netns exec {ns} dig +short +time=2 +tries=1 {args}"
        ))
    };
    let got = dig("a", "b");
    assert_eq!(
        String::from_utf8_lossy(&got.stdout).trim(),
        b,
        "a resolves b: {}",
        sb.sh("cat /etc/netns/a/resolv.conf")
    );
    assert!(sb
        .sh("cat /etc/netns/a/resolv.conf")
        .contains("nameserver 192.0.2.128"));
    // The LAN's other machine is in the subnet but no member: no answer.
    let a = address(&sb, "a", "eth0");
    let other = dig("other", "@192.0.2.128 a");
    let said = String::from_utf8_lossy(&other.stdout);
    assert!(
        !other.status.success() && said.contains("timed out") && !said.contains(&a),
        "the LAN got an answer: {said}"
    );
    assert!(sb.ok("check").contains("no drift"));
    sb.ok("network rm home --force");
    assert!(
        sb.sh_status("test -e /etc/netns/a/resolv.conf")
            .status
            .code()
            == Some(1)
    );
    // Without host access: no DNS, no resolv.conf.
    sb.ok("network create away --driver macvlan --parent lan0 --subnet 192.0.2.0/24 --ip-range 192.0.2.64/26");
    sb.ok("connect away c");
    assert!(
        sb.sh_status("test -e /etc/netns/c/resolv.conf")
            .status
            .code()
            == Some(1)
    );
    let err = sb.fails(
        "network create x --driver macvlan --parent lan0 --subnet 198.51.100.0/24 --dns-domain lan.test",
        2,
    );
    assert!(err.contains("--host-access"), "{err}");
    sb.ok("network rm away --force");
    assert_same(&sb.snapshot(), &before, "network rm");
}

#[test]
fn host_access_joins_the_host_and_check_finds_its_pieces_missing() {
    let sb = Sandbox::new();
    lan(&sb);
    let before = sb.snapshot();
    sb.ok("network create home --driver macvlan --parent lan0 --subnet 192.0.2.0/24 --ip-range 192.0.2.128/25 --host-access");
    sb.ok("connect home a");
    let a = address(&sb, "a", "eth0");
    let inspect = sb.ok("network inspect home");
    let line = inspect
        .lines()
        .find_map(|l| l.strip_prefix("host access: "))
        .unwrap_or_else(|| panic!("no host access line: {inspect}"));
    let (shim, host_addr) = line.split_once(' ').expect("name and address");
    let host_addr = host_addr.trim_end_matches("/32");
    assert_eq!(host_addr, "192.0.2.128", "the lowest address of the range");
    assert_eq!(a, "192.0.2.129");
    assert!(pings(&sb, None, &a), "the host reaches a through {shim}");
    let text = sb.ok(&["trace", "host", "a", "--proto", "icmp", "--probe"]);
    assert!(
        text.contains(&format!(
            "the host's interface {shim} on network home -> a:eth0"
        )) && !text.contains("disagree"),
        "{text}"
    );
    assert!(
        pings(&sb, Some("a"), host_addr),
        "a reaches the host at {host_addr}"
    );
    assert!(
        pings(&sb, Some("a"), "192.0.2.50"),
        "a still reaches the LAN"
    );
    assert!(sb.ok("check").contains("no drift"));
    sb.sh(&format!("ip route del {a} dev {shim}"));
    let text = sb.drift(&[]);
    assert!(
        text.contains(&format!("the host's route to {a}/32 is missing")),
        "{text}"
    );
    sb.ok("check --repair");
    assert!(
        sb.ok("check").contains("no drift"),
        "repair put the route back"
    );
    assert!(pings(&sb, None, &a), "the host reaches a again");
    sb.sh(&format!("ip link del {shim}"));
    let text = sb.drift(&[]);
    assert!(
        text.contains(&format!("the host's interface {shim} is missing")),
        "{text}"
    );
    sb.ok("network rm home --force");
    assert_same(&sb.snapshot(), &before, "network rm");
    let err = sb.fails(
        "network create p --driver macvlan --parent lan0 --subnet 192.0.2.0/24 --mode private --host-access",
        2,
    );
    assert!(err.contains("private"), "{err}");
}

#[test]
fn private_mode_keeps_namespaces_apart_and_a_lost_parent_is_a_finding() {
    let sb = Sandbox::new();
    lan(&sb);
    sb.ok("network create p --driver macvlan --parent lan0 --subnet 192.0.2.0/24 --ip-range 192.0.2.64/26 --mode private");
    sb.ok("connect p a");
    sb.ok("connect p b");
    let b = address(&sb, "b", "eth0");
    assert!(pings(&sb, Some("a"), "192.0.2.1"), "a reaches the router");
    assert!(no_reply(&sb, Some("a"), &b), "private mode: a reached b");
    // trace says why, and its probe agrees.
    let out = sb.run(&["trace", "a", "b", "--proto", "icmp", "--probe"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("private macvlan network") && !text.contains("disagree"),
        "{text}"
    );
    // The parent goes: the kernel takes every interface on it along.
    sb.sh("ip link del lan0");
    let text = sb.drift(&[]);
    assert!(text.contains("host interface lan0 is gone"), "{text}");
    sb.ok("network rm p --force");
    assert!(sb.ok("check").contains("no drift"));
    assert!(!sb.sh("ip netns").contains("a "), "a's namespace went");
}

/// dev0 as `ip` shows it: name, MTU, MAC, state, flags, global addresses,
/// and its routes; and the settings of its own set off the defaults.
fn device(sb: &Sandbox) -> String {
    sb.sh(
        "ip -j addr show dev dev0 | jq -c '.[0] | {ifname,mtu,address,operstate,flags,\
         addr:[.addr_info[]|select(.scope==\"global\")|{local,prefixlen}]}'; \
         ip route show dev dev0; \
         sysctl net.ipv6.conf.dev0.accept_ra net.ipv4.conf.dev0.rp_filter \
           net.ipv4.neigh.dev0.base_reachable_time_ms",
    )
}

#[test]
fn host_device_moves_in_and_back_exactly_also_after_a_kill() {
    let sb = Sandbox::new();
    lan(&sb);
    sb.sh(
        "ip link add dev0 mtu 1400 address 02:11:22:33:44:55 type veth peer name p-dev netns lan && \
         ip -n lan link set p-dev master br0 up && ip addr add 192.0.2.77/24 dev dev0 && \
         ip addr add 192.0.2.78/24 dev dev0 && ip link set dev0 up && \
         ip route add 198.51.100.0/24 via 192.0.2.1 dev dev0 proto static metric 50 && \
         ip route add 203.0.113.0/24 via 192.0.2.1 dev dev0 && \
         sysctl -qw net.ipv6.conf.dev0.accept_ra=2 net.ipv4.conf.dev0.rp_filter=2 \
           net.ipv4.neigh.dev0.base_reachable_time_ms=12345",
    );
    let kept = device(&sb);
    sb.ok("network create hd --driver host-device --device dev0");
    let before = sb.snapshot();
    sb.ok("connect hd x --ifname lan1");
    assert!(sb.sh_status("ip link show dev0").status.code() != Some(0));
    let inside = sb.sh("ip -n x addr show dev lan1");
    assert!(
        inside.contains("192.0.2.77/24")
            && inside.contains("192.0.2.78/24")
            && inside.contains("02:11:22:33:44:55")
            && inside.contains("mtu 1400"),
        "{inside}"
    );
    assert!(pings(&sb, Some("x"), "192.0.2.50"), "x reaches the LAN");
    assert!(sb.ok("check").contains("no drift"));
    let err = sb.fails("connect hd y", 4);
    assert!(err.contains("dev0") && err.contains("x"), "{err}");
    sb.ok("disconnect hd x");
    assert_eq!(device(&sb), kept, "dev0 is back as it was");
    assert_same(&sb.snapshot(), &before, "disconnect");
    // Killed after the move, or after its addresses: the next command
    // finishes the job from the journal and dev0 is back.
    for k in [2, 3, 5] {
        let out = sb.run_env(
            &["connect", "hd", "x"],
            &[("NSNET_ABORT_AT", &k.to_string())],
        );
        assert!(!out.status.success(), "abort at {k}");
        sb.ok("gc");
        assert_eq!(device(&sb), kept, "dev0 after an abort at step {k}");
        assert_same(&sb.snapshot(), &before, &format!("abort at {k}"));
    }
    // With a subnet: an address of it and a default route via the router.
    sb.ok("network rm hd");
    sb.ok("network create hd2 --driver host-device --device dev0 --subnet 203.0.113.0/24 --gateway 203.0.113.1");
    sb.ok("connect hd2 y --ip 203.0.113.9");
    let inside = sb.sh("ip -n y -4 -o addr show dev eth0");
    assert!(
        inside.contains("203.0.113.9/24") && !inside.contains("192.0.2.77"),
        "{inside}"
    );
    assert!(sb
        .sh("ip -n y route show default")
        .contains("via 203.0.113.1"));
    sb.ok("network rm hd2 --force");
    assert_eq!(device(&sb), kept, "dev0 is back after rm --force");
}

#[test]
fn lan_networks_refuse_what_they_cannot_do() {
    let sb = Sandbox::new();
    lan(&sb);
    let before = sb.snapshot();
    let mv = "network create m --driver macvlan --subnet 192.0.2.0/24";
    for (args, code, needle) in [
        (
            format!("{mv} --parent nope0"),
            3,
            "host interface nope0 does not exist",
        ),
        (format!("{mv} --parent lan0.10"), 2, "CONFIG_VLAN_8021Q"),
        (mv.to_string(), 2, "--parent is needed"),
        (
            "network create m --driver macvlan --parent lan0".into(),
            2,
            "--subnet is needed",
        ),
        (
            format!("{mv} --parent lan0 --mode bridged"),
            2,
            "macvlan mode \"bridged\"",
        ),
        (format!("{mv} --parent lan0 --no-icc"), 2, "--mode private"),
        (
            format!("{mv} --parent lan0 --ip-range 198.51.100.0/28"),
            2,
            "not inside the network's --subnet",
        ),
        (format!("{mv} --parent lo"), 2, "loopback"),
        (
            "network create i --driver ipvlan --parent lan0 --subnet 192.0.2.0/24".into(),
            2,
            "CONFIG_IPVLAN",
        ),
        (
            "network create h --driver host-device".into(),
            2,
            "--device is needed",
        ),
        (
            "network create h --driver host-device --device lan0 --parent lan0".into(),
            2,
            "--parent is not an option",
        ),
        (
            "network create b --parent lan0".into(),
            2,
            "--parent is not an option of a bridge network",
        ),
    ] {
        let err = sb.fails(args.as_str(), code);
        assert!(err.contains(needle), "{args}: {err}");
    }
    sb.ok("network create m --driver macvlan --parent lan0 --subnet 192.0.2.0/24");
    let err = sb.fails("network create h --driver host-device --device lan0", 4);
    assert!(err.contains("already used by network m"), "{err}");
    sb.ok("network rm m");
    assert_same(&sb.snapshot(), &before, "refusals and rm");
}

const LAN_FILE: &str = r#"
[networks.home]
driver = "macvlan"
parent = "lan0"
subnets = ["192.0.2.0/24"]
ip_ranges = ["192.0.2.64/27"]
host_access = true

[networks.dev]
driver = "host-device"
device = "dev0"
subnets = ["198.51.100.0/24"]

[namespaces.a]
attach = [{ network = "home" }]

[namespaces.b]
attach = [{ network = "home" }, { network = "dev", ifname = "eth1" }]
"#;

#[test]
fn topology_files_make_lan_networks_and_take_them_away() {
    let sb = Sandbox::new();
    lan(&sb);
    sb.sh("ip link add dev0 type veth peer name p-dev netns lan && \
         ip -n lan link set p-dev master br0 up");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lan.toml");
    std::fs::write(&file, LAN_FILE).unwrap();
    let file = file.to_str().unwrap();
    let before = sb.snapshot();
    sb.ok(&["up", "-f", file]);
    assert!(
        sb.ok(&["up", "-f", file]).contains("no changes"),
        "up is idempotent"
    );
    assert!(sb.ok("check").contains("no drift"));
    let out = sb.ok(&["pingall", "-f", file]);
    assert!(out.contains("2 of 2 pairs reached"), "{out}");
    assert!(sb.sh("ip -n b link show eth1").contains("eth1"));
    assert!(sb.sh_status("ip link show dev0").status.code() != Some(0));
    sb.ok(&["down", "-f", file]);
    assert_same(&sb.snapshot(), &before, "down");
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[networks.n]\nsubnets = [\"10.9.0.0/24\"]\nparent = \"lan0\"\n",
    )
    .unwrap();
    let err = sb.fails(&["up", "-f", bad.to_str().unwrap()], 2);
    assert!(
        err.contains("bad.toml:3:") && err.contains("parent is not an option of a bridge network"),
        "{err}"
    );
}

#[test]
fn a_cni_runtime_puts_pods_on_the_lan_with_the_macvlan_plugin_s_keys() {
    use serde_json::json;
    let sb = Sandbox::new();
    lan(&sb);
    let before = sb.snapshot();
    let conf = json!({
        "cniVersion": "1.0.0", "name": "lan", "type": "nsnet",
        "master": "lan0", "mode": "bridge", "ipRanges": ["192.0.2.48/29"],
        "ipam": {"type": "nsnet", "ranges": [[{"subnet": "192.0.2.0/24", "gateway": "192.0.2.1"}]]}
    });
    sb.sh("ip netns add p1 && ip netns add p2");
    let r1 = crate::cni::add("p1", "p1", &conf);
    let r2 = crate::cni::add("p2", "p2", &conf);
    assert_eq!(r1["ips"][0]["address"], "192.0.2.48/24", "{r1}");
    assert_eq!(r2["ips"][0]["address"], "192.0.2.49/24", "{r2}");
    assert_eq!(r1["ips"][0]["gateway"], "192.0.2.1", "{r1}");
    let ifs = r1["interfaces"].as_array().expect("interfaces");
    assert_eq!(ifs.len(), 1, "only the pod's interface: {r1}");
    assert_eq!(ifs[0]["mac"], mac(&sb, "p1", "eth0"), "{r1}");
    assert!(pings(&sb, Some("p1"), "192.0.2.50") && pings(&sb, Some("p2"), "192.0.2.48"));
    // CHECK with the runtime's prevResult, and STATUS: all there.
    let mut checked = conf.clone();
    checked["prevResult"] = r1.clone();
    let call = |command| crate::cni::Call {
        command,
        id: "p1",
        netns: "/run/netns/p1",
        ifname: "eth0",
        args: "",
    };
    assert_eq!(crate::cni::cni(&call("CHECK"), &checked).1, 0, "CHECK");
    assert_eq!(crate::cni::cni(&call("STATUS"), &conf).1, 0, "STATUS");
    // The pod's interface taken away behind nsnet's back: CHECK says so.
    sb.sh("ip -n p1 link del eth0");
    let (v, code) = crate::cni::cni(&call("CHECK"), &checked);
    assert_eq!((code, &v["code"]), (1, &serde_json::json!(100)), "{v}");
    assert!(
        v["details"]
            .as_str()
            .unwrap_or("")
            .contains("eth0 is missing"),
        "{v}"
    );
    crate::cni::del("p1", "/run/netns/p1", &conf);
    assert_eq!(
        sb.ok("check").trim(),
        "no drift: the kernel and the firewall match what nsnet recorded"
    );
    crate::cni::del("p2", "/run/netns/p2", &conf);
    sb.sh("ip netns del p1 && ip netns del p2");
    // The network stays, as the reference plugins leave their bridge.
    assert!(sb.ok("show lan").contains("macvlan on lan0"));
    sb.ok("network rm lan");
    assert_same(&sb.snapshot(), &before, "after DEL and rm");
}

#[test]
fn ipv6_addresses_in_use_on_the_lan_are_found_by_neighbour_solicitation() {
    let sb = Sandbox::new();
    lan(&sb);
    sb.sh("ip -n lan addr add 2001:db8:1::1/64 dev br0 nodad && \
         ip -n other addr add 2001:db8:1::2/64 dev o0 nodad");
    let before = sb.snapshot();
    sb.ok("network create home --driver macvlan --parent lan0 --subnet 192.0.2.0/24 --subnet 2001:db8:1::/64 --gateway 2001:db8:1::1");
    sb.ok("connect home a");
    let v6 = sb.sh("ip -n a -6 -o addr show dev eth0 scope global");
    assert!(
        v6.contains("2001:db8:1::3/64"),
        "::2 answers on the LAN: {v6}"
    );
    assert!(
        pings(&sb, Some("a"), "2001:db8:1::2"),
        "a reaches the other machine over IPv6"
    );
    let err = sb.fails("connect home b --ip 2001:db8:1::2", 4);
    assert!(
        err.contains("2001:db8:1::2") && err.contains(OTHER_MAC),
        "the conflict names the MAC that answered: {err}"
    );
    sb.ok("network rm home --force");
    assert_same(&sb.snapshot(), &before, "network rm");
}
