//! Reliability, measured: a leak matrix over option combinations, a fault
//! at every step of an `up`, concurrency storms, damaged state.
// Table-driven tests: their length is their cases, not their logic.
#![allow(clippy::too_many_lines)]

use crate::common::{assert_same, Sandbox};

/// A combination: its name, `network create` options, and the `connect`
/// options of each of its three attachments.
type Case = (&'static str, Vec<&'static str>, Vec<Vec<&'static str>>);

fn matrix() -> Vec<Case> {
    let none: Vec<Vec<&str>> = vec![vec![], vec![], vec![]];
    vec![
        ("v4", vec!["--subnet", "10.110.0.0/24"], none.clone()),
        ("v6", vec!["--subnet", "fd00:110::/64"], none.clone()),
        (
            "dual",
            vec!["--subnet", "10.111.0.0/24", "--subnet", "fd00:111::/64"],
            none.clone(),
        ),
        (
            "no-masquerade",
            vec!["--subnet", "10.112.0.0/24", "--no-masquerade"],
            none.clone(),
        ),
        (
            "internal",
            vec!["--subnet", "10.113.0.0/24", "--internal"],
            none.clone(),
        ),
        (
            "internal-dual",
            vec![
                "--subnet",
                "10.114.0.0/24",
                "--subnet",
                "fd00:114::/64",
                "--internal",
            ],
            none.clone(),
        ),
        (
            "no-isolate",
            vec!["--subnet", "10.115.0.0/24", "--no-isolate"],
            none.clone(),
        ),
        ("auto-subnet", vec![], none.clone()),
        (
            "mtu",
            vec!["--subnet", "10.116.0.0/24", "--mtu", "1400"],
            none.clone(),
        ),
        (
            "gateway",
            vec!["--subnet", "10.117.0.0/24", "--gateway", "10.117.0.254"],
            none.clone(),
        ),
        (
            "bridge-name",
            vec!["--subnet", "10.118.0.0/24", "--bridge", "br-custom"],
            none.clone(),
        ),
        (
            "adopted",
            vec!["--subnet", "10.119.0.0/24", "--bridge", "br-adopt"],
            none.clone(),
        ),
        (
            "tcp",
            vec!["--subnet", "10.120.0.0/24"],
            vec![vec!["-p", "8080:80"], vec![], vec![]],
        ),
        (
            "udp",
            vec!["--subnet", "10.121.0.0/24"],
            vec![vec!["-p", "5353:53/udp"], vec![], vec![]],
        ),
        (
            "range",
            vec!["--subnet", "10.122.0.0/24"],
            vec![vec!["-p", "9000-9009:9000-9009"], vec![], vec![]],
        ),
        (
            "localhost",
            vec!["--subnet", "10.123.0.0/24"],
            vec![vec!["-p", "127.0.0.1:8080:80"], vec![], vec![]],
        ),
        (
            "sctp",
            vec!["--subnet", "10.124.0.0/24"],
            vec![vec!["-p", "7000:7000/sctp"], vec![], vec![]],
        ),
        (
            "ports-dual",
            vec!["--subnet", "10.125.0.0/24", "--subnet", "fd00:125::/64"],
            vec![
                vec!["-p", "8080:80", "-p", "8081:81/udp"],
                vec!["-p", "8082:82"],
                vec![],
            ],
        ),
        (
            "routed",
            vec![
                "--subnet",
                "10.129.0.0/24",
                "--subnet",
                "fd00:129::/64",
                "--gateway-mode",
                "routed",
            ],
            vec![vec!["-p", "8080:80", "-p", "5353:53/udp"], vec![], vec![]],
        ),
        (
            "nat-unprotected",
            vec![
                "--subnet",
                "10.130.0.0/24",
                "--gateway-mode",
                "nat-unprotected",
            ],
            none.clone(),
        ),
        (
            "isolated-internal",
            vec![
                "--subnet",
                "10.131.0.0/24",
                "--internal",
                "--gateway-mode",
                "isolated",
            ],
            none.clone(),
        ),
        (
            "no-icc",
            vec![
                "--subnet",
                "10.132.0.0/24",
                "--subnet",
                "fd00:132::/64",
                "--no-icc",
            ],
            vec![vec!["-p", "8080:80"], vec![], vec![]],
        ),
        (
            "trusted-v6-routed",
            vec![
                "--subnet",
                "10.133.0.0/24",
                "--subnet",
                "fd00:133::/64",
                "--trusted-interface",
                "lo",
                "--gateway-mode-v6",
                "routed",
            ],
            vec![vec!["-p", "8080:80"], vec![], vec![]],
        ),
        (
            "static-ips",
            vec!["--subnet", "10.126.0.0/24"],
            vec![
                vec!["--ip", "10.126.0.10"],
                vec!["--ip", "10.126.0.11/24"],
                vec![],
            ],
        ),
        (
            "mac-ifname",
            vec!["--subnet", "10.127.0.0/24"],
            vec![
                vec!["--mac", "02:42:0a:7f:00:0a"],
                vec!["--ifname", "net0"],
                vec![],
            ],
        ),
        (
            "everything",
            vec![
                "--subnet",
                "10.128.0.0/24",
                "--subnet",
                "fd00:128::/64",
                "--mtu",
                "1420",
                "--no-isolate",
            ],
            vec![
                vec!["-p", "8080:80", "--mac", "02:42:0a:80:00:0a"],
                vec!["--ifname", "eth7"],
                vec!["--ip", "10.128.0.77"],
            ],
        ),
    ]
}

#[test]
fn leak_matrix() {
    let sb = Sandbox::new();
    sb.upstream();
    sb.sh("ip link add br-adopt type bridge");
    let before = sb.snapshot();
    let cases = matrix();
    assert!(cases.len() >= 20);
    for (name, create, connects) in &cases {
        let mut args = vec!["network", "create", "m"];
        args.extend(create.iter());
        sb.ok(&args);
        let mut peers = Vec::new();
        for (i, extra) in connects.iter().enumerate() {
            let ns = format!("m{i}");
            let mut args = vec!["connect", "m", ns.as_str()];
            args.extend(extra.iter());
            sb.ok(&args);
            peers.push(ns);
        }
        // Traffic: each namespace reaches the others' addresses.
        let json: serde_json::Value =
            serde_json::from_str(&sb.ok("--json network inspect m")).unwrap();
        let addrs: Vec<String> = json["attachments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                a["addresses"][0]
                    .as_str()
                    .unwrap()
                    .split('/')
                    .next()
                    .unwrap()
                    .to_string()
            })
            .collect();
        // Without ICC the peers are apart by design; the gateway answers.
        let icc = !create.contains(&"--no-icc");
        let gateway = json["subnets"][0]["gateway"].as_str().unwrap().to_string();
        for (i, ns) in peers.iter().enumerate() {
            let dest = if icc {
                &addrs[(i + 1) % addrs.len()]
            } else {
                &gateway
            };
            let out = sb.run(&["ping", ns, dest, "-c", "1", "-W", "2"]);
            assert!(out.status.success(), "{name}: {ns} cannot reach {dest}");
        }
        assert!(sb.ok("check").contains("no drift"), "{name}");
        for ns in &peers {
            sb.ok(&["disconnect", "m", ns]);
        }
        sb.ok("network rm m");
        assert_same(&sb.snapshot(), &before, &format!("combination {name}"));
    }
    eprintln!("leak matrix: {} combinations, 0 leaks", cases.len());
}

const LAB: &str = r#"
[networks.front]
subnets = ["10.130.0.0/24", "fd00:130::/64"]
[networks.back]
subnets = ["10.131.0.0/24"]
internal = true
[namespaces.web]
dns = ["192.0.2.53"]
attach = [{ network = "front", publish = ["8080:80"] }, { network = "back", ifname = "eth1" }]
[namespaces.db]
attach = [{ network = "back" }]
"#;

#[test]
fn a_fault_at_every_step_of_up_leaves_the_host_as_before() {
    let sb = Sandbox::new();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lab.toml");
    std::fs::write(&file, LAB).unwrap();
    let file = file.to_str().unwrap();
    let before = sb.snapshot();
    let mut failures = 0;
    for k in 1..=60 {
        let out = sb.run_env(&["up", "-f", file], &[("NSNET_FAIL_AT", &k.to_string())]);
        if out.status.success() {
            break;
        }
        failures += 1;
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        // The failing operation is named, and nothing was left behind.
        assert!(
            err.contains(&format!("injected failure at kernel operation {k}")),
            "{err}"
        );
        let op = err.trim_start_matches("nsnet: ").split(':').next().unwrap();
        assert!(
            op.len() > 5 && !op.contains("injected"),
            "no operation named: {err}"
        );
        assert!(err.contains("nothing was left behind"), "{err}");
        assert_same(&sb.snapshot(), &before, &format!("up failing at step {k}"));
    }
    assert!(failures > 15, "only {failures} steps");
    sb.ok(&["down", "-f", file]);
    assert_same(&sb.snapshot(), &before, "down after the successful up");
    eprintln!("fault injection: {failures} failure points of up, 0 leaks");
}

#[test]
fn a_hundred_parallel_connects_get_distinct_addresses() {
    let sb = Sandbox::new();
    sb.ok("network create storm --subnet 10.132.0.0/24");
    let children: Vec<_> = (0..100)
        .map(|i| {
            sb.command(crate::common::NSNET)
                .args(["-q", "connect", "storm", &format!("s{i}")])
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let json: serde_json::Value =
        serde_json::from_str(&sb.ok("--json network inspect storm")).unwrap();
    let mut addrs: Vec<String> = json["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["addresses"][0].as_str().unwrap().to_string())
        .collect();
    assert_eq!(addrs.len(), 100);
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), 100, "an address was handed out twice");
    assert!(sb.ok("check").contains("no drift"));
    assert_eq!(sb.sh("ip -o link show master storm | wc -l").trim(), "100");
}

#[test]
fn overlapping_creates_race_and_exactly_one_wins() {
    let sb = Sandbox::new();
    let children: Vec<_> = (0..20)
        .map(|i| {
            sb.command(crate::common::NSNET)
                .args([
                    "-q",
                    "network",
                    "create",
                    &format!("race{i}"),
                    "--subnet",
                    &format!("10.133.{i}.0/24"),
                    "--subnet",
                    "fd00:133::/64",
                ])
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let codes: Vec<i32> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap().status.code().unwrap())
        .collect();
    assert_eq!(codes.iter().filter(|c| **c == 0).count(), 1, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 4).count(), 19, "{codes:?}");
    assert!(sb.ok("check").contains("no drift"));
}

#[test]
fn parallel_ups_and_downs_of_different_files_do_not_interfere() {
    let sb = Sandbox::new();
    let dir = tempfile::tempdir().unwrap();
    let before = sb.snapshot();
    let files: Vec<String> = (0..4)
        .map(|i| {
            let path = dir.path().join(format!("t{i}.toml"));
            let mut text = format!("[networks.n{i}]\nsubnets = [\"10.134.{i}.0/24\"]\n");
            for j in 0..10 {
                text.push_str(&format!(
                    "[namespaces.t{i}x{j}]\nattach = [{{ network = \"n{i}\" }}]\n"
                ));
            }
            std::fs::write(&path, text).unwrap();
            path.display().to_string()
        })
        .collect();
    for round in 0..2 {
        let verb = if round == 0 { "up" } else { "down" };
        let children: Vec<_> = files
            .iter()
            .map(|f| {
                sb.command(crate::common::NSNET)
                    .args(["-q", verb, "-f", f])
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for c in children {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{verb}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if round == 0 {
            assert!(sb.ok("check").contains("no drift"));
            assert_eq!(sb.sh("ip netns list | wc -l").trim(), "40");
        }
    }
    sb.assert_back_to(&before, "parallel up then down");
}

#[test]
fn damaged_state_is_reported_never_replaced() {
    let sb = Sandbox::new();
    sb.ok("network create d --subnet 10.135.0.0/24");
    sb.ok("connect d x");
    let state = "/run/nsnet/state.json";
    let good = std::fs::read(state).unwrap();
    let text = String::from_utf8(good.clone()).unwrap();
    assert!(text.contains("\n{\"namespace\":\"x\","), "{text}");
    for (what, bytes) in [
        ("truncated", good[..good.len() / 2].to_vec()),
        (
            "an attachment line damaged",
            text.replace("{\"namespace\":\"x\",", "{\"namespace\":7,")
                .into_bytes(),
        ),
        ("garbage", b"\x00\xff not json".to_vec()),
        ("wrong shape", br#"{"version": 1, "networks": 7}"#.to_vec()),
        (
            "future version",
            br#"{"version": 99, "networks": {}}"#.to_vec(),
        ),
    ] {
        std::fs::write(state, &bytes).unwrap();
        for args in [
            vec!["network", "ls"],
            vec!["show"],
            vec!["connect", "d", "y"],
            vec!["disconnect", "d", "x"],
            vec!["network", "rm", "d", "--force"],
            vec!["check"],
            vec!["gc"],
        ] {
            let out = sb.run(&args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{what}: {args:?}: {err}");
            assert!(
                err.contains(state),
                "{what}: {args:?} does not name the file: {err}"
            );
            assert!(!err.contains("panicked"), "{err}");
        }
        assert_eq!(
            std::fs::read(state).unwrap(),
            bytes,
            "{what}: the state file was replaced"
        );
    }
    // The damaged line is named, so that it can be repaired by hand.
    std::fs::write(
        state,
        text.replace("{\"namespace\":\"x\",", "{\"namespace\":7,"),
    )
    .unwrap();
    let err = sb.fails("network ls", 1);
    assert!(err.contains("line 3: invalid type: integer `7`"), "{err}");
    std::fs::write(state, &good).unwrap();
    assert!(sb.ok("check").contains("no drift"));
    // A symlink in /run/netns that points elsewhere is not followed.
    sb.sh("ln -s /proc/1/ns/net /run/netns/sneaky");
    let err = sb.fails("connect d sneaky", 2);
    assert!(err.contains("not a network namespace"), "{err}");
    // A symlinked state directory is refused.
    let real = tempfile::tempdir().unwrap();
    let link = real.path().join("link");
    std::os::unix::fs::symlink(real.path(), &link).unwrap();
    let err = sb.fails(
        &[
            "--state-dir",
            link.to_str().unwrap(),
            "network",
            "create",
            "s",
            "--subnet",
            "10.136.0.0/24",
        ],
        1,
    );
    assert!(err.contains("symlink"), "{err}");
}

#[test]
fn hostile_topology_files() {
    let sb = Sandbox::new();
    let dir = tempfile::tempdir().unwrap();
    let before = sb.snapshot();
    let deep = format!("a = {}{}\n", "[".repeat(5000), "]".repeat(5000));
    let huge = "# x\n".repeat(1_200_000);
    let cases: Vec<(String, &str)> = vec![
        (deep, ""),
        (huge, "limit"),
        ("[networks.\"a\\u0000b\"]\nsubnets = [\"10.0.0.0/24\"]\n".into(), "network name"),
        ("[networks.a]\nsubnets = [\"10.0.0.0/24\"]\n[namespaces.\"..\"]\n".into(), ".."),
        ("[networks.a]\nsubnets = [\"10.0.0.0/24\"]\n[namespaces.\"with space\"]\n".into(), "spaces"),
        ("[networks.a]\nsubnets = [\"::/129\"]\n".into(), "::/129"),
        ("[networks.a]\nsubnets = [\"10.0.0.0/24\"]\nbridge = \"sixteen-bytes-xx\"\n".into(), "16 bytes"),
        ("[networks.a]\nsubnets = [\"10.0.0.0/24\"]\n[namespaces.x]\nattach = [{ network = \"a\", ip = \"fd00::1\" }]\n".into(), "outside"),
        ("[networks.a]\nsubnets = [\"10.0.0.0/24\"]\n[namespaces.x]\nattach = [{ network = \"a\", mac = \"ff:ff:ff:ff:ff:ff\" }]\n".into(), "multicast"),
        ("[networks.a]\nsubnets = [\"10.0.0.0/24\"]\n[namespaces.x]\ndns = [\"dns.example\"]\n".into(), "dns.example"),
        ("networks = 5\n".into(), "invalid type"),
        ("\u{feff}[networks.ü]\nsubnets = [\"10.0.0.0/24\"]\n".into(), "invalid unquoted key"),
    ];
    for (i, (text, needle)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("h{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let out = sb.run(&["up", "-f", path.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "case {i}: {err}");
        assert!(err.contains(needle), "case {i}: {needle:?} not in {err}");
        assert_same(&sb.snapshot(), &before, &format!("hostile file {i}"));
    }
}
