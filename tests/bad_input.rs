//! Bad input: a clear message naming the value, the documented exit code,
//! and nothing left behind.
// Table-driven tests: their length is their cases, not their logic.
#![allow(clippy::too_many_lines)]

use crate::common::Sandbox;

#[test]
fn every_bad_input_is_refused_cleanly() {
    let sb = Sandbox::new();
    sb.ok("network create net --subnet 172.16.0.0/16");
    sb.ok("connect net ns1 --ip 172.16.1.1/16");
    let before = sb.snapshot();
    let long = "x".repeat(16);
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        // Interface names.
        (
            vec![
                "network",
                "create",
                "n2",
                "--bridge",
                &long,
                "--subnet",
                "10.1.0.0/24",
            ],
            2,
            "16 bytes",
        ),
        (
            vec![
                "network",
                "create",
                "n2",
                "--bridge",
                "a/b",
                "--subnet",
                "10.1.0.0/24",
            ],
            2,
            "\"a/b\"",
        ),
        (
            vec![
                "network",
                "create",
                "averylongnetworkname",
                "--subnet",
                "10.1.0.0/24",
            ],
            2,
            "pass --bridge",
        ),
        (
            vec!["connect", "net", "ns2", "--ifname", &long],
            2,
            "16 bytes",
        ),
        (
            vec!["connect", "net", "ns2", "--ifname", "a b"],
            2,
            "\"a b\"",
        ),
        // Namespace names.
        (vec!["connect", "net", ".."], 2, "\"..\""),
        // A relative path is neither a name nor a path to a namespace.
        (vec!["connect", "net", "a/../../etc"], 2, "absolute path"),
        (
            vec!["connect", "net", "/run/netns/nope"],
            3,
            "does not exist",
        ),
        (vec!["ns", "add", "bad name"], 2, "\"bad name\""),
        (vec!["ns", "add", ".."], 2, "\"..\""),
        (vec!["ns", "del", "a/b"], 2, "\"a/b\""),
        // Addresses.
        (
            vec!["connect", "net", "ns2", "--ip", "10.0.0.5"],
            2,
            "outside subnet 172.16.0.0/16",
        ),
        (
            vec!["connect", "net", "ns2", "--ip", "172.16.1.1"],
            4,
            "172.16.1.1 is already in use",
        ),
        (
            // The gateway's address is in use (by the bridge): a conflict.
            vec!["connect", "net", "ns2", "--ip", "172.16.0.1"],
            4,
            "is the gateway",
        ),
        (
            vec!["connect", "net", "ns2", "--ip", "172.16.1.2/24"],
            2,
            "prefix /24 does not match",
        ),
        (
            vec!["connect", "net", "ns2", "--ip", "fd00::5"],
            2,
            "has no IPv6 subnet",
        ),
        (
            vec!["connect", "net", "ns2", "--ip", "172.16.300.1"],
            2,
            "\"172.16.300.1\"",
        ),
        (
            vec!["connect", "net", "ns2", "--mac", "01:00:5e:00:00:01"],
            2,
            "multicast",
        ),
        (
            vec!["connect", "net", "ns2", "--mac", "nonsense"],
            2,
            "\"nonsense\"",
        ),
        // Published ports.
        (
            vec!["connect", "net", "ns2", "-p", "0:80"],
            2,
            "outside 1-65535",
        ),
        (
            vec!["connect", "net", "ns2", "-p", "8080:65536"],
            2,
            "outside 1-65535",
        ),
        (
            vec!["connect", "net", "ns2", "-p", "9000-8000:1-1001"],
            2,
            "reversed",
        ),
        (
            vec!["connect", "net", "ns2", "-p", "8000-8010:9000-9001"],
            2,
            "11 ports",
        ),
        (
            vec!["connect", "net", "ns2", "-p", "8080:80/icmp"],
            2,
            "unknown protocol",
        ),
        (
            vec!["connect", "net", "ns2", "-p", "[2001:db8::1]:8080:80"],
            2,
            "no IPv6 subnet",
        ),
        (
            vec!["connect", "net", "ns2", "-p", "[::1]:8080:80"],
            2,
            "cannot forward ports published on ::1",
        ),
        (vec!["connect", "net", "ns2", "-p", "8080:"], 2, "\"8080:\""),
        (
            vec!["connect", "net", "ns2", "-p", "localhost:8080:80"],
            2,
            "\"localhost\"",
        ),
        (
            vec!["connect", "net", "ns2", "-p", "8080:80", "-p", "8080:81"],
            4,
            "overlap",
        ),
        // Subnets.
        (
            vec!["network", "create", "n2", "--subnet", "172.16.5.0/24"],
            4,
            "overlaps subnet 172.16.0.0/16 of network net",
        ),
        (
            vec!["network", "create", "n2", "--subnet", "10.0.0.0/33"],
            2,
            "\"10.0.0.0/33\"",
        ),
        (
            vec!["network", "create", "n2", "--subnet", "::/129"],
            2,
            "\"::/129\"",
        ),
        (
            vec!["network", "create", "n2", "--subnet", "10.1.2.3/16"],
            2,
            "host bits",
        ),
        (
            vec!["network", "create", "n2", "--subnet", "banana"],
            2,
            "\"banana\"",
        ),
        (
            vec![
                "network",
                "create",
                "n2",
                "--subnet",
                "10.1.0.0/24",
                "--gateway",
                "10.2.0.1",
            ],
            2,
            "10.2.0.1",
        ),
        (
            vec![
                "network",
                "create",
                "n2",
                "--subnet",
                "10.1.0.0/24",
                "--mtu",
                "50",
            ],
            2,
            "MTU 50",
        ),
        (
            vec!["network", "create", "net", "--subnet", "10.1.0.0/24"],
            4,
            "network net already exists",
        ),
        (
            vec![
                "network",
                "create",
                "n2",
                "--bridge",
                "net",
                "--subnet",
                "10.1.0.0/24",
            ],
            4,
            "already belongs to network net",
        ),
        // Unknown things.
        (
            vec!["connect", "nope", "ns2"],
            3,
            "network nope does not exist",
        ),
        (
            vec!["connect", "net", "/run/netns/missing"],
            3,
            "does not exist",
        ),
        (
            vec!["disconnect", "net", "ns9"],
            3,
            "ns9 is not connected to network net",
        ),
        (
            vec!["network", "rm", "nope"],
            3,
            "network nope does not exist",
        ),
        (vec!["network", "inspect", "nope"], 3, "nope"),
        (
            vec!["ping", "missing", "172.16.1.1", "-c", "1"],
            3,
            "missing does not exist",
        ),
        (
            vec!["exec", "missing", "--", "true"],
            3,
            "missing does not exist",
        ),
        (vec!["ping", "ns1", "not-an-ip"], 2, "\"not-an-ip\""),
        (
            vec!["ping", "ns1", "172.16.1.1", "-W", "0"],
            2,
            "invalid timeout 0",
        ),
        // Conflicts.
        (
            vec!["connect", "net", "ns1"],
            4,
            "ns1 is already connected to network net",
        ),
        (vec!["network", "rm", "net"], 4, "in use"),
        (vec!["ns", "del", "ns1"], 4, "connected to network net"),
        // Usage errors from the parser.
        (vec!["network", "create"], 2, "NAME"),
        (vec!["frobnicate"], 2, "frobnicate"),
    ];
    for (args, code, needle) in &cases {
        let err = sb.fails(args, *code);
        assert!(
            err.contains(needle),
            "nsnet {args:?}: {err:?} does not mention {needle:?}"
        );
        crate::common::assert_same(
            &sb.snapshot(),
            &before,
            &format!("nsnet {args:?} left something behind"),
        );
    }
}

#[test]
fn long_namespace_names_still_get_valid_host_interfaces() {
    let sb = Sandbox::new();
    sb.ok("network create n --subnet 10.50.0.0/24");
    // The tutorial's `veth-$namespace` would be 31 bytes here.
    let long = "a-namespace-with-a-long-name-1";
    let out = sb.ok(&["connect", "n", long]);
    assert!(out.contains("host side ve-a-na-"), "{out}");
    sb.ok("connect n a-namespace-with-a-long-name-2");
    sb.ok(&["ping", long, "10.50.0.3", "-c", "1"]);
}

#[test]
fn a_namespace_with_eth0_needs_another_ifname() {
    let sb = Sandbox::new();
    sb.ok("network create a --subnet 10.51.0.0/24");
    sb.ok("network create b --subnet 10.52.0.0/24");
    sb.ok("connect a multi");
    let err = sb.fails("connect b multi", 4);
    assert!(
        err.contains("already has interface eth0") && err.contains("--ifname"),
        "{err}"
    );
    sb.ok("connect b multi --ifname eth1");
    let links = sb.sh("ip -n multi -o link");
    assert!(links.contains("eth0") && links.contains("eth1"), "{links}");
    let routes = sb.sh("ip -n multi route show default");
    assert_eq!(routes.trim(), "default via 10.51.0.1 dev eth0", "{routes}");
    sb.ok("ping multi 10.52.0.1 -c 1");
    // Disconnecting one keeps the namespace for the other.
    sb.ok("disconnect a multi");
    assert!(sb.sh("ip netns list").contains("multi"));
    sb.ok("disconnect b multi");
    assert!(!sb.sh("ip netns list").contains("multi"));
}

#[test]
fn commands_refuse_to_run_unprivileged() {
    let sb = Sandbox::new();
    let out = sb.sh_status(&format!(
        "setpriv --reuid=65534 --regid=65534 --clear-groups {} network create x --subnet 10.9.0.0/24",
        crate::common::NSNET
    ));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs root"), "{err}");
}

#[test]
fn a_closed_stdout_ends_listings_quietly() {
    use std::process::{Command, Stdio};
    let sb = Sandbox::new();
    sb.ok("network create net --subnet 10.51.0.0/24");
    for i in 0..3 {
        sb.ok(&["connect", "net", &format!("p{i}")]);
    }
    let listings: [&[&str]; 6] = [
        &["completions", "fish"],
        &["show"],
        &["network", "ls"],
        &["--json", "network", "inspect", "net"],
        &["ns", "ls"],
        &["--help"],
    ];
    for args in listings {
        let mut child = Command::new(env!("CARGO_BIN_EXE_nsnet"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before nsnet writes a byte: a real pipe,
        // closed, as `| head -0` does.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.is_empty(), "{args:?}: {err}");
        use std::os::unix::process::ExitStatusExt;
        assert!(
            out.status.success() || out.status.signal() == Some(libc::SIGPIPE),
            "{args:?}: {:?}",
            out.status
        );
    }
}
