//! Teardown leaves nothing behind; failed commands leave nothing half-made.

use crate::common::Sandbox;

#[test]
fn create_connect_disconnect_rm_restores_the_host_exactly() {
    let sb = Sandbox::new();
    // A namespace made by iproute2 stays; one made by nsnet goes.
    sb.sh("ip netns add pre");
    let before = sb.snapshot();
    sb.ok("network create t --subnet 10.40.0.0/24 --subnet fd00:40::/64");
    for ns in ["pre", "n1", "n2"] {
        sb.ok(&["connect", "t", ns]);
    }
    sb.ok("ping n1 10.40.0.2 -c 1");
    for ns in ["pre", "n1", "n2"] {
        sb.ok(&["disconnect", "t", ns]);
    }
    sb.ok("network rm t");
    crate::common::assert_same(&sb.snapshot(), &before, "teardown");
    assert!(sb.sh("ip netns list").contains("pre"));
}

#[test]
fn forced_rm_removes_every_attachment_in_one_go() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    sb.ok("network create f --subnet 10.41.0.0/24");
    for i in 0..5 {
        sb.ok(&["connect", "f", &format!("ns{i}")]);
    }
    let err = sb.fails("network rm f", 4);
    assert!(
        err.contains("in use by 5 attachment(s)") && err.contains("--force"),
        "{err}"
    );
    sb.ok("network rm f --force");
    crate::common::assert_same(&sb.snapshot(), &before, "teardown");
}

#[test]
fn adopted_bridge_stays_and_gets_its_addresses_back() {
    let sb = Sandbox::new();
    sb.sh("ip link add br-pre type bridge && ip addr add 10.42.0.1/24 dev br-pre");
    let before = sb.snapshot();
    sb.ok("network create adopt --bridge br-pre --subnet 10.42.0.0/24 --subnet fd00:42::/64");
    sb.ok("connect adopt a");
    sb.ok("connect adopt b");
    sb.ok("ping a 10.42.0.3 -c 1");
    sb.ok("ping a fd00:42::1 -c 1");
    let inspect = sb.ok("network inspect adopt");
    assert!(inspect.contains("(adopted)"), "{inspect}");
    sb.ok("network rm adopt --force");
    // The bridge, down again, with the address it had before and no other.
    crate::common::assert_same(&sb.snapshot(), &before, "teardown");
}

#[test]
fn namespaces_by_path_and_by_iproute2_name() {
    let sb = Sandbox::new();
    sb.ok("network create p --subnet 10.43.0.0/24");
    // A process-held namespace, addressed as /proc/PID/ns/net.
    let mut child = std::process::Command::new("unshare")
        .args(["--net", "sleep", "30"])
        .spawn()
        .unwrap();
    let path = format!("/proc/{}/ns/net", child.id());
    // Until unshare has made the namespace (at most 5 s).
    let ours = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
    for _ in 0..500 {
        if std::fs::read_link(&path).is_ok_and(|ns| ns != ours) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    sb.ok(&["connect", "p", &path, "--ip", "10.43.0.10"]);
    sb.sh("ip netns add named");
    sb.ok("connect p named");
    sb.sh("ip netns exec named ping -c1 -W2 10.43.0.10");
    let addr = sb.sh(&format!("nsenter --net={path} ip -o addr show dev eth0"));
    assert!(addr.contains("10.43.0.10/24"), "{addr}");
    sb.ok(&["disconnect", "p", &path]);
    sb.ok("disconnect p named");
    assert!(
        sb.sh("ip netns list").contains("named"),
        "iproute2's namespace must stay"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn ns_commands_and_exec_pass_exit_status_through() {
    let sb = Sandbox::new();
    sb.ok("ns add x1");
    let ls = sb.ok("ns ls");
    assert!(ls.lines().any(|l| l == "x1"), "{ls}");
    assert!(sb.sh("ip netns list").contains("x1"));
    let err = sb.fails("ns add x1", 4);
    assert!(err.contains("x1 already exists"), "{err}");

    let out = sb.run(&["exec", "x1", "--", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    let links = sb.ok("exec x1 -- ip -o link");
    assert_eq!(
        links.lines().count(),
        1,
        "a fresh namespace has only lo: {links}"
    );
    let sys = sb.ok("exec x1 -- ls /sys/class/net");
    assert_eq!(sys.trim(), "lo", "/sys is remounted for the namespace");
    let out = sb.run("exec x1 -- /nonexistent-command");
    assert_eq!(out.status.code(), Some(127));

    sb.ok("ns del x1");
    assert!(!sb.sh("ip netns list").contains("x1"));
    sb.fails("ns del x1", 3);
}

/// A shell left open in a mount namespace of its own (`ip netns exec`
/// makes one) sees the namespaces made after it, and not those deleted.
#[test]
fn namespaces_made_later_reach_mount_namespaces_made_earlier() {
    let sb = Sandbox::new();
    sb.ok("ns add first");
    // As `ip netns exec` does: a new mount namespace, a slave of ours.
    let mut holder = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "slave", "sleep", "30"])
        .spawn()
        .expect("unshare");
    let pid = holder.id();
    let inside = |path: &str| {
        sb.sh_status(&format!(
            "nsenter -t {pid} -m stat -f -c %T {path} 2>/dev/null"
        ))
    };
    // Wait until the holder is in its own mount namespace.
    let ours = std::fs::read_link("/proc/thread-self/ns/mnt").unwrap();
    for _ in 0..200 {
        if std::fs::read_link(format!("/proc/{pid}/ns/mnt")).is_ok_and(|ns| ns != ours) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    sb.ok("ns add later");
    let seen = inside("/run/netns/later");
    let ok = String::from_utf8_lossy(&seen.stdout).trim() == "nsfs";
    sb.ok("ns del later");
    let gone = !inside("/run/netns/later").status.success();
    let _ = holder.kill();
    let _ = holder.wait();
    sb.ok("ns del first");
    assert!(
        ok,
        "the other mount namespace does not see the namespace mount: {seen:?}"
    );
    assert!(
        gone,
        "the other mount namespace still sees a deleted namespace"
    );
}

#[test]
fn json_listings_and_errors() {
    let sb = Sandbox::new();
    sb.ok("network create j --subnet 10.44.0.0/24");
    sb.ok("connect j a");
    let ls: serde_json::Value = serde_json::from_str(&sb.ok("--json network ls")).unwrap();
    assert_eq!(ls[0]["name"], "j");
    assert_eq!(ls[0]["attachments"][0]["addresses"][0], "10.44.0.2/24");
    let show: serde_json::Value = serde_json::from_str(&sb.ok("--json show")).unwrap();
    assert_eq!(show[0]["attachments"][0]["on_bridge"], true);
    // A host end taken off the bridge by hand is there, but not on it.
    let host_end = show[0]["attachments"][0]["host_ifname"].as_str().unwrap();
    sb.sh(&format!("ip link set {host_end} nomaster"));
    let show: serde_json::Value = serde_json::from_str(&sb.ok("--json show")).unwrap();
    assert_eq!(show[0]["attachments"][0]["present"], true);
    assert_eq!(show[0]["attachments"][0]["on_bridge"], false);
    let text = sb.ok("show");
    assert!(text.contains(&format!("{host_end}     -> a")), "{text}");
    assert!(text.contains("(not on bridge)"), "{text}");
    sb.sh(&format!("ip link del {host_end}"));
    assert!(sb.ok("show").contains("(host side missing)"));
    let out = sb.run("--json network inspect nope");
    assert_eq!(out.status.code(), Some(3));
    let err: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(err["error"]["kind"], "not_found");
    assert!(err["error"]["message"].as_str().unwrap().contains("nope"));
}

#[test]
fn automatic_subnets_do_not_overlap() {
    let sb = Sandbox::new();
    // A host route inside the first pool subnet (this kernel has no dummy links).
    sb.sh("ip link add brx type bridge && ip addr add 172.30.0.5/24 dev brx && ip link set brx up");
    let a = sb.ok("network create auto1");
    let b = sb.ok("network create auto2");
    assert!(
        a.contains("172.30.1.0/24") && a.contains("gateway 172.30.1.1"),
        "{a}"
    );
    assert!(b.contains("172.30.2.0/24"), "{b}");
}

#[test]
fn every_failure_point_of_connect_and_create_is_rolled_back() {
    let sb = Sandbox::new();
    sb.upstream();
    let before = sb.snapshot();
    // Fail each step in turn until the command has no step left to fail.
    let inject = |args: &[&str], expected: &str| -> usize {
        for k in 1..=30 {
            let out = sb.run_env(args, &[("NSNET_FAIL_AT", &k.to_string())]);
            if out.status.success() {
                return k - 1;
            }
            assert_eq!(out.status.code(), Some(1), "{args:?} k={k}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("injected failure") && err.contains("nothing was left behind"),
                "{err}"
            );
            crate::common::assert_same(
                &sb.snapshot(),
                expected,
                &format!("{args:?} failing at step {k} left something behind"),
            );
        }
        panic!("{args:?} still failing after 30 injected failures");
    };
    let create = [
        "network",
        "create",
        "r",
        "--subnet",
        "10.45.0.0/24",
        "--subnet",
        "fd00:45::/64",
    ];
    // bridge, accept_dad, 2 gateway addresses, up, route_localnet,
    // 2 forwarding sysctls, firewall
    assert_eq!(inject(&create, &before), 9);
    let mid = sb.snapshot();
    // netns, veth, hairpin, lo up, 2 addresses, eth0 up, 2 routes, firewall,
    // resolv.conf (DNS)
    assert_eq!(inject(&["connect", "r", "c1", "-p", "8080:80"], &mid), 11);
    sb.ok("disconnect r c1");
    crate::common::assert_same(&sb.snapshot(), &mid, "teardown");
    sb.ok("connect r c1");
    sb.ok("ping c1 203.0.113.1 -c 1");
    // With the protection rules, a routed v6 family, no ICC and a trusted
    // interface: the same steps but the forwarding sysctls, already on
    // (the rules are part of the one firewall step), and an isolated port
    // where br_netfilter is off.
    let create = [
        "network",
        "create",
        "s",
        "--subnet",
        "10.48.0.0/24",
        "--subnet",
        "fd00:48::/64",
        "--gateway-mode-v6",
        "routed",
        "--no-icc",
        "--trusted-interface",
        "up0",
    ];
    assert_eq!(inject(&create, &sb.snapshot()), 7);
    sb.sh("sysctl -qw net.bridge.bridge-nf-call-iptables=0");
    let mid = sb.snapshot();
    // ... plus the port isolation step
    assert_eq!(inject(&["connect", "s", "c2", "-p", "8081:80"], &mid), 12);
}

#[test]
fn a_failing_firewall_rolls_back_the_bridge() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    let out = sb.run_env(
        "network create fw --subnet 10.46.0.0/24",
        &[("NSNET_NFT", "/bin/false")],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nft rejected") || err.contains("nft"), "{err}");
    crate::common::assert_same(&sb.snapshot(), &before, "teardown");
}

#[test]
fn several_namespaces_connect_in_one_go_or_not_at_all() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    sb.ok("network create m --subnet 10.47.0.0/24");
    // The third is already taken by an iproute2 namespace with an eth0.
    sb.sh("ip netns add taken && ip -n taken link add eth0 type bridge");
    let before_taken = sb.snapshot();
    let err = sb.fails("connect m b1 b2 taken", 4);
    assert!(
        err.contains("taken already has an interface named eth0"),
        "{err}"
    );
    crate::common::assert_same(
        &sb.snapshot(),
        &before_taken,
        "a failed batch left attachments behind",
    );
    sb.sh("ip netns del taken");
    let out = sb.ok("connect m b1 b2 b3");
    assert_eq!(out.lines().count(), 3, "{out}");
    sb.ok("ping b1 10.47.0.4 -c 1");
    // A batch disconnect of a subset leaves the others working.
    let out = sb.ok("disconnect m b1 b3");
    assert_eq!(out.lines().count(), 2, "{out}");
    // The others are gone or provably going: parked, their namespace
    // deleted, destroyed with it by the kernel.
    let links = sb.sh("ip -o link show master m | grep -v 'group 1073741822'");
    assert_eq!(links.lines().count(), 1, "{links}");
    sb.settle();
    let links = sb.sh("ip -o link show master m");
    assert_eq!(links.lines().count(), 1, "{links}");
    assert_eq!(sb.sh("ip netns list").trim().lines().count(), 1);
    sb.fails("disconnect m b2 b2", 2);
    sb.fails("disconnect m b2 b9", 3);
    sb.ok("ping b2 10.47.0.1 -c 1");
    let err = sb.fails("connect m c1 c2 --ip 10.47.0.9", 2);
    assert!(err.contains("one namespace"), "{err}");
    sb.ok("network rm m --force");
    crate::common::assert_same(&sb.snapshot(), &before, "teardown");
}

#[test]
fn a_disconnected_namespace_can_come_back_at_once() {
    let sb = Sandbox::new();
    sb.ok("network create back --subnet 10.49.0.0/24");
    sb.ok("connect back peer");
    for round in 0..20 {
        sb.ok("connect back again");
        sb.ok("ping again 10.49.0.2 -c 1");
        sb.ok("disconnect back again");
        // Gone, or provably going: parked (its group says so) with its
        // namespace deleted, for the kernel to destroy with it.
        let ports = sb.sh("ip -o link show master back | grep -v 'group 1073741822'");
        assert_eq!(ports.lines().count(), 1, "round {round}: {ports}");
        assert!(!sb.sh("ip netns list").contains("again"), "round {round}");
    }
    sb.ok("disconnect back peer");
    sb.ok("network rm back");
}

#[test]
fn ipv4_only_networks_run_no_ipv6_on_their_veths() {
    let sb = Sandbox::new();
    sb.ok("network create four --subnet 10.52.0.0/24");
    sb.ok("network create dual --subnet 10.53.0.0/24 --subnet fd00:53::/64");
    sb.ok("connect four a");
    sb.ok("connect dual b");
    let host_end = |net: &str| {
        sb.sh(&format!(
            "ip -o link show master {net} | cut -d: -f2 | cut -d@ -f1"
        ))
        .trim()
        .to_string()
    };
    // No link-local address on either end: no DAD, MLD or RS from them.
    let v4 = host_end("four");
    assert_eq!(
        sb.sh(&format!("ip -6 -o addr show dev {v4}")).trim(),
        "",
        "host end {v4}"
    );
    assert_eq!(
        sb.sh("ip -n a -6 -o addr show dev eth0").trim(),
        "",
        "namespace end"
    );
    sb.ok("ping a 10.52.0.1 -c 1");
    // Dual-stack networks are unchanged.
    let d = host_end("dual");
    assert!(
        sb.sh(&format!("ip -6 -o addr show dev {d}"))
            .contains("fe80::"),
        "host end {d}"
    );
    assert!(sb
        .sh("ip -n b -6 -o addr show dev eth0")
        .contains("fd00:53::2"));
}

/// `network inspect` lists every attachment (read off its record line,
/// or decoded where it has published ports) as `--json` describes it.
#[test]
fn inspect_lists_every_attachment_with_its_addresses_and_ports() {
    let sb = Sandbox::new();
    sb.ok("network create insp --subnet 10.44.0.0/24");
    sb.ok("connect insp plain");
    sb.ok("connect insp web -p 8080:80");
    sb.sh("ip netns add bypath");
    sb.ok("connect insp /run/netns/bypath --ip 10.44.0.50");
    let text = sb.ok("network inspect insp");
    let json: serde_json::Value =
        serde_json::from_str(&sb.ok("--json network inspect insp")).unwrap();
    let atts = json["attachments"].as_array().unwrap();
    assert_eq!(atts.len(), 3);
    assert!(text.contains("\nattachments: 3\n"), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    for a in atts {
        let addrs: Vec<&str> = a["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap())
            .collect();
        let row = format!(
            "  {} {} -> {} {}",
            a["host_ifname"].as_str().unwrap(),
            a["namespace"].as_str().unwrap(),
            a["ifname"].as_str().unwrap(),
            addrs.join(",")
        );
        let at = lines.iter().position(|l| *l == row);
        assert!(at.is_some(), "no line {row:?} in:\n{text}");
        let published = lines
            .get(at.unwrap() + 1)
            .filter(|l| l.contains("published:"));
        assert_eq!(
            published.is_some(),
            a["namespace"] == "web",
            "published ports of {row:?} in:\n{text}"
        );
    }
    assert!(
        text.contains("/run/netns/bypath -> eth0 10.44.0.50/24"),
        "{text}"
    );
    assert!(text.contains("published: 8080:80"), "{text}");
    sb.ok("network rm insp --force");
    sb.sh("ip netns del bypath");
}

/// Processes in a namespace nsnet deletes end with it, one that ignores
/// SIGTERM too (SIGKILL after the grace period): none keeps the deleted
/// namespace, its interfaces and addresses alive. By the last disconnect
/// and by `ns del`.
#[test]
fn deleting_a_namespace_ends_the_processes_in_it() {
    let sb = Sandbox::new();
    let nsnet = crate::common::NSNET;
    let in_ns = |ns: &str| -> usize {
        let key = sb.sh(&format!("stat -L -c %d:%i /run/netns/{ns}"));
        let all =
            sb.sh("for p in /proc/[0-9]*; do stat -L -c %d:%i $p/ns/net 2>/dev/null; done; true");
        all.lines().filter(|l| *l == key.trim()).count()
    };
    let start = |ns: &str| {
        sb.sh(&format!(
            "{nsnet} exec {ns} -- sleep 600 >/dev/null 2>&1 & \
             {nsnet} exec {ns} -- sh -c 'trap \"\" TERM; while :; do sleep 0.2; done' >/dev/null 2>&1 &"
        ));
        let t = std::time::Instant::now();
        while in_ns(ns) < 2 && t.elapsed() < std::time::Duration::from_secs(5) {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(in_ns(ns) >= 2, "the processes did not start in {ns}");
    };
    sb.ok("network create lab --subnet 10.70.0.0/24");
    sb.ok("connect lab p1");
    start("p1");
    let key = sb.sh("stat -L -c %d:%i /run/netns/p1");
    sb.ok("disconnect lab p1");
    let left = sb.sh(&format!(
        "for p in /proc/[0-9]*; do [ \"$(stat -L -c %d:%i $p/ns/net 2>/dev/null)\" = {} ] && cat $p/cmdline | tr '\\0' ' '; done; true",
        key.trim()
    ));
    assert!(
        left.trim().is_empty(),
        "still in the deleted namespace: {left}"
    );
    assert!(!sb.sh("ip netns list").contains("p1"));
    sb.ok("ns add p2");
    start("p2");
    let key = sb.sh("stat -L -c %d:%i /run/netns/p2");
    sb.ok("ns del p2");
    let left = sb.sh(&format!(
        "for p in /proc/[0-9]*; do [ \"$(stat -L -c %d:%i $p/ns/net 2>/dev/null)\" = {} ] && echo $p; done; true",
        key.trim()
    ));
    assert!(
        left.trim().is_empty(),
        "still in the deleted namespace: {left}"
    );
    sb.ok("network rm lab");
}
