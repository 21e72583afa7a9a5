//! The CNI plugin, driven as a runtime drives it: environment plus stdin,
//! result or error JSON on stdout.
// Table-driven tests: their length is their cases, not their logic.
#![allow(clippy::too_many_lines)]

use crate::common::{assert_same, Sandbox, NSNET};

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

pub(crate) struct Call<'a> {
    pub command: &'a str,
    pub id: &'a str,
    pub netns: &'a str,
    pub ifname: &'a str,
    pub args: &'a str,
}

pub(crate) fn cni(call: &Call, conf: &Value) -> (Value, i32) {
    cni_raw(call, conf.to_string().as_bytes())
}

fn cni_raw(call: &Call, stdin: &[u8]) -> (Value, i32) {
    let mut child = Command::new(NSNET)
        .env("CNI_COMMAND", call.command)
        .env("CNI_CONTAINERID", call.id)
        .env("CNI_NETNS", call.netns)
        .env("CNI_IFNAME", call.ifname)
        .env("CNI_ARGS", call.args)
        .env("CNI_PATH", "/usr/lib/cni")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v = if stdout.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {stdout:?}"))
    };
    (v, out.status.code().unwrap_or(-1))
}

pub(crate) fn add(id: &str, ns: &str, conf: &Value) -> Value {
    let netns = format!("/run/netns/{ns}");
    let (v, code) = cni(
        &Call {
            command: "ADD",
            id,
            netns: &netns,
            ifname: "eth0",
            args: "",
        },
        conf,
    );
    assert_eq!(code, 0, "ADD {id}: {v}");
    v
}

pub(crate) fn del(id: &str, netns: &str, conf: &Value) {
    let (v, code) = cni(
        &Call {
            command: "DEL",
            id,
            netns,
            ifname: "eth0",
            args: "",
        },
        conf,
    );
    assert_eq!(code, 0, "DEL {id}: {v}");
    assert_eq!(v, Value::Null, "DEL prints nothing");
}

fn conf(version: &str) -> Value {
    json!({
        "cniVersion": version, "name": "podnet", "type": "nsnet", "bridge": "cni-pod",
        "isGateway": true, "ipMasq": true,
        "ipam": {"type": "nsnet", "ranges": [[{"subnet": "10.88.0.0/24", "gateway": "10.88.0.1"}]]}
    })
}

#[test]
fn version_lists_every_supported_version() {
    let _sb = Sandbox::new();
    for asked in ["0.3.0", "0.4.0", "1.0.0", "1.1.0"] {
        let (v, code) = cni(
            &Call {
                command: "VERSION",
                id: "",
                netns: "dummy",
                ifname: "dummy",
                args: "",
            },
            &json!({"cniVersion": asked}),
        );
        assert_eq!(code, 0);
        assert_eq!(v["cniVersion"], asked);
        assert_eq!(
            v["supportedVersions"],
            json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
        );
    }
}

#[test]
fn add_and_del_in_every_version() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    for (i, version) in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
        .iter()
        .enumerate()
    {
        let (a, b) = (format!("a{i}"), format!("b{i}"));
        sb.sh(&format!("ip netns add {a} && ip netns add {b}"));
        let c = conf(version);
        let ra = add(&format!("id-a{i}"), &a, &c);
        let rb = add(&format!("id-b{i}"), &b, &c);
        assert_eq!(ra["cniVersion"], *version);
        let ifs = ra["interfaces"].as_array().unwrap();
        assert_eq!(ifs[0]["name"], "cni-pod");
        assert_eq!(ifs[2]["name"], "eth0");
        assert_eq!(ifs[2]["sandbox"], format!("/run/netns/{a}"));
        let ip = &ra["ips"][0];
        assert_eq!(ip["interface"], 2);
        assert_eq!(ip["gateway"], "10.88.0.1");
        assert_eq!(
            ip.get("version").is_some(),
            version.starts_with('0'),
            "{version}: {ip}"
        );
        assert_eq!(ra["routes"][0]["dst"], "0.0.0.0/0");
        // The result tells the truth: the address is there, and works.
        let addr_b = rb["ips"][0]["address"]
            .as_str()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_string();
        assert!(sb
            .sh(&format!("ip -n {a} -o addr show eth0"))
            .contains(ra["ips"][0]["address"].as_str().unwrap()));
        sb.sh(&format!("ip netns exec {a} ping -c1 -W2 {addr_b}"));
        del(&format!("id-a{i}"), &format!("/run/netns/{a}"), &c);
        del(&format!("id-b{i}"), &format!("/run/netns/{b}"), &c);
        sb.sh(&format!("ip netns del {a} && ip netns del {b}"));
    }
    // The network stays, as with the reference bridge plugin; removing it
    // leaves the host as before.
    sb.ok("network rm podnet");
    sb.assert_back_to(&before, "ADD/DEL then network rm");
}

#[test]
fn errors_use_the_specs_codes() {
    let sb = Sandbox::new();
    sb.sh("ip netns add c");
    let c = conf("1.0.0");
    let call = |command, netns, args| Call {
        command,
        id: "x",
        netns,
        ifname: "eth0",
        args,
    };
    let cases: Vec<(Call, Value, i64, &str)> = vec![
        (call("ADD", "", ""), c.clone(), 4, "CNI_NETNS"),
        (
            call("ADD", "/run/netns/c", ""),
            json!("not an object"),
            6,
            "decode",
        ),
        (
            call("ADD", "/run/netns/c", ""),
            json!({"cniVersion": "9.9.9", "name": "podnet"}),
            1,
            "9.9.9",
        ),
        (
            call("ADD", "/run/netns/c", "IP=10.99.0.5"),
            c.clone(),
            7,
            "outside subnet",
        ),
        (
            call("ADD", "/run/netns/c", "COLOUR=red"),
            c.clone(),
            4,
            "IgnoreUnknown",
        ),
        (
            call("ADD", "/run/netns/nope", ""),
            c.clone(),
            3,
            "does not exist",
        ),
        (call("FROB", "/run/netns/c", ""), c.clone(), 4, "FROB"),
    ];
    for (call, stdin, code, needle) in cases {
        let (v, exit) = cni(&call, &stdin);
        assert_ne!(exit, 0, "{stdin}: {v}");
        assert_eq!(v["code"], code, "{stdin}: {v}");
        let text = format!("{} {}", v["msg"], v["details"]);
        assert!(text.contains(needle), "{needle:?} not in {v}");
    }
    // Repeated ADD of the same container and interface.
    add("x", "c", &c);
    let (v, exit) = cni(&call("ADD", "/run/netns/c", ""), &c);
    assert_eq!((exit, v["code"].as_i64()), (1, Some(101)), "{v}");
    let text = format!("{} {}", v["msg"], v["details"]);
    assert!(
        text.contains("container x already has interface eth0 on network"),
        "{v}"
    );
}

#[test]
fn del_is_idempotent_and_works_without_the_namespace() {
    let sb = Sandbox::new();
    sb.upstream();
    let c = json!({
        "cniVersion": "1.0.0", "name": "podnet", "type": "nsnet", "bridge": "cni-pod", "ipMasq": true,
        "ipam": {"type": "nsnet", "ranges": [[{"subnet": "10.88.0.0/24"}]]},
        "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}
    });
    sb.sh("ip netns add c");
    add("gone", "c", &c);
    let _e = sb.echo("c", 80, false);
    assert_eq!(
        sb.ask(Some("up"), "203.0.113.2:8080", false).unwrap(),
        "c:hi"
    );
    drop(_e);
    // The runtime deleted the namespace first; DEL must still release the
    // host side, the lease and the port.
    sb.sh("ip netns del c");
    std::thread::sleep(std::time::Duration::from_millis(300));
    del("gone", "", &c);
    del("gone", "", &c);
    del("never-added", "/run/netns/whatever", &c);
    assert!(sb.sh("ip -o link show master cni-pod").trim().is_empty());
    assert!(!sb
        .sh("nft list map inet nsnet ports4_any_dest")
        .contains("8080"));
    let ls: Value = serde_json::from_str(&sb.ok("--json network ls")).unwrap();
    assert_eq!(ls[0]["attachments"], json!([]));
}

#[test]
fn check_status_and_gc() {
    let sb = Sandbox::new();
    let c = conf("1.1.0");
    sb.sh("ip netns add c1 && ip netns add c2");
    let r1 = add("one", "c1", &c);
    add("two", "c2", &c);
    let mut with_prev = c.clone();
    with_prev["prevResult"] = r1.clone();
    let check = |conf: &Value| {
        cni(
            &Call {
                command: "CHECK",
                id: "one",
                netns: "/run/netns/c1",
                ifname: "eth0",
                args: "",
            },
            conf,
        )
    };
    assert_eq!(check(&with_prev).1, 0, "{}", check(&with_prev).0);
    // Drift: the address is removed behind nsnet's back.
    let addr = r1["ips"][0]["address"].as_str().unwrap();
    sb.sh(&format!("ip -n c1 addr del {addr} dev eth0"));
    let (v, code) = check(&with_prev);
    assert_eq!((code, v["code"].as_i64()), (1, Some(100)), "{v}");
    assert!(v["details"].as_str().unwrap().contains("is missing"), "{v}");
    // A prevResult that disagrees with the record.
    let mut wrong = c.clone();
    wrong["prevResult"] = json!({"ips": [{"address": "10.88.0.77/24"}]});
    assert!(check(&wrong).0["details"]
        .as_str()
        .unwrap()
        .contains("10.88.0.77/24"));

    let status = |conf: &Value| {
        cni(
            &Call {
                command: "STATUS",
                id: "",
                netns: "",
                ifname: "",
                args: "",
            },
            conf,
        )
    };
    assert_eq!(status(&c).1, 0);
    sb.sh("ip link del cni-pod");
    let (v, code) = status(&c);
    assert_eq!((code, v["code"].as_i64()), (1, Some(50)), "{v}");

    // GC keeps only the valid attachments.
    let mut gc = c.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "two", "ifname": "eth0"}]);
    let (v, code) = cni(
        &Call {
            command: "GC",
            id: "",
            netns: "",
            ifname: "",
            args: "",
        },
        &gc,
    );
    assert_eq!(code, 0, "{v}");
    let ls: Value = serde_json::from_str(&sb.ok("--json network ls")).unwrap();
    let left: Vec<&Value> = ls[0]["attachments"].as_array().unwrap().iter().collect();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["cni"]["container_id"], "two");
}

#[test]
fn a_delegated_ipam_plugin_is_run_through_cni_path() {
    let sb = Sandbox::new();
    assert!(
        std::path::Path::new("/usr/lib/cni/host-local").exists(),
        "the reference plugins are needed (Debian package containernetworking-plugins)"
    );
    let data = tempfile::tempdir().unwrap();
    let c = json!({
        "cniVersion": "1.0.0", "name": "hl", "type": "nsnet", "bridge": "cni-hl",
        "ipam": {"type": "host-local", "dataDir": data.path(), "ranges": [[{"subnet": "10.89.0.0/24", "rangeStart": "10.89.0.50"}]]}
    });
    sb.sh("ip netns add h1");
    let r = add("h1", "h1", &c);
    assert_eq!(
        r["ips"][0]["address"], "10.89.0.50/24",
        "host-local chose the address: {r}"
    );
    assert!(
        data.path().join("hl/10.89.0.50").exists(),
        "host-local recorded its lease"
    );
    del("h1", "/run/netns/h1", &c);
    assert!(
        !data.path().join("hl/10.89.0.50").exists(),
        "DEL released host-local's lease"
    );
}

#[test]
fn concurrent_adds_get_distinct_addresses() {
    let sb = Sandbox::new();
    let c = conf("1.0.0");
    for i in 0..20 {
        sb.sh(&format!("ip netns add p{i}"));
    }
    let results: Vec<Value> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let c = c.clone();
                s.spawn(move || add(&format!("par{i}"), &format!("p{i}"), &c))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut addrs: Vec<String> = results
        .iter()
        .map(|r| r["ips"][0]["address"].as_str().unwrap().to_string())
        .collect();
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), 20, "{addrs:?}");
    assert!(sb.ok("check").contains("no drift"));
}

#[test]
fn hostile_cni_input_is_refused_cleanly() {
    let sb = Sandbox::new();
    sb.sh("ip netns add h");
    let before = sb.snapshot();
    let base = conf("1.0.0");
    let with = |key: &str, value: Value| {
        let mut c = base.clone();
        c[key] = value;
        c
    };
    let cases: Vec<(Value, &str)> = vec![
        (with("name", json!("a/b")), "network name"),
        (with("name", json!("")), "network name"),
        (with("name", json!("x".repeat(100))), "network name"),
        (with("name", json!(7)), "decode"),
        (with("cniVersion", json!(1)), "decode"),
        (
            with("bridge", json!("a-bridge-name-that-is-long")),
            "26 bytes",
        ),
        (with("bridge", json!("a/b")), "\"a/b\""),
        (
            with(
                "ipam",
                json!({"type": "nsnet", "ranges": [[{"subnet": "10.0.0.0/33"}]]}),
            ),
            "10.0.0.0/33",
        ),
        (
            with(
                "ipam",
                json!({"type": "nsnet", "ranges": [[{"subnet": "::/129"}]]}),
            ),
            "::/129",
        ),
        (with("ipam", json!({"type": "nsnet"})), "no subnet"),
        (
            with(
                "ipam",
                json!({"type": "../../bin/sh", "ranges": [[{"subnet": "10.0.0.0/24"}]]}),
            ),
            "invalid IPAM type",
        ),
        (
            with(
                "ipam",
                json!({"type": "no-such-plugin", "ranges": [[{"subnet": "10.0.0.0/24"}]]}),
            ),
            "not found in CNI_PATH",
        ),
        (
            with(
                "runtimeConfig",
                json!({"portMappings": [{"hostPort": 0, "containerPort": 80}]}),
            ),
            "outside 1-65535",
        ),
        (
            with(
                "runtimeConfig",
                json!({"portMappings": [{"hostPort": 70000, "containerPort": 80}]}),
            ),
            "outside 1-65535",
        ),
        (
            with(
                "runtimeConfig",
                json!({"portMappings": [{"hostPort": 80, "containerPort": 80, "protocol": "icmp"}]}),
            ),
            "unknown protocol",
        ),
        (
            with(
                "runtimeConfig",
                json!({"portMappings": [{"hostPort": 80, "containerPort": 80, "hostIP": "::1"}]}),
            ),
            "::1",
        ),
        (
            with("runtimeConfig", json!({"ips": ["10.99.9.9"]})),
            "outside subnet",
        ),
        (
            with("runtimeConfig", json!({"ips": ["not-an-ip"]})),
            "not-an-ip",
        ),
        (
            with("runtimeConfig", json!({"mac": "01:00:5e:00:00:01"})),
            "multicast",
        ),
        (with("mtu", json!(20)), "MTU 20"),
    ];
    for (i, (c, needle)) in cases.iter().enumerate() {
        let (v, code) = cni(
            &Call {
                command: "ADD",
                id: &format!("h{i}"),
                netns: "/run/netns/h",
                ifname: "eth0",
                args: "",
            },
            c,
        );
        assert_eq!(code, 1, "case {i}: {v}");
        let text = format!(
            "{} {}",
            v["msg"].as_str().unwrap_or(""),
            v["details"].as_str().unwrap_or("")
        );
        assert!(text.contains(needle), "case {i}: {needle:?} not in {v}");
        // Whatever failed, nothing was left behind (but the network, which a
        // later valid ADD uses; it is removed below).
        let _ = sb.run("network rm podnet --force");
        assert_same(&sb.snapshot(), &before, &format!("hostile CNI input {i}"));
    }
    // 100,000 levels of nesting in a key the spec says to ignore: no crash.
    let deep = format!(
        "{{\"cniVersion\":\"1.0.0\",\"name\":\"podnet\",\"nested\":{}1{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let (v, code) = cni_raw(
        &Call {
            command: "STATUS",
            id: "",
            netns: "",
            ifname: "",
            args: "",
        },
        deep.as_bytes(),
    );
    assert_eq!(code, 0, "{v}");
    // Bad CNI_ARGS and interface names.
    for (args, ifname, needle) in [
        ("IP", "eth0", "KEY=VALUE"),
        ("MAC=zz", "eth0", "zz"),
        ("", "a-very-long-ifname", "bytes"),
        ("", "a/b", "\"a/b\""),
    ] {
        let (v, code) = cni(
            &Call {
                command: "ADD",
                id: "args",
                netns: "/run/netns/h",
                ifname,
                args,
            },
            &base,
        );
        assert_eq!(code, 1, "{args} {ifname}: {v}");
        let text = format!(
            "{} {}",
            v["msg"].as_str().unwrap_or(""),
            v["details"].as_str().unwrap_or("")
        );
        assert!(text.contains(needle), "{needle:?} not in {v}");
        let _ = sb.run("network rm podnet --force");
        assert_same(&sb.snapshot(), &before, "hostile CNI_ARGS");
    }
}

/// A pod is known on its network by the name the kubelet gives it and by
/// the runtime's aliases, although its namespace is a path.
#[test]
fn pods_resolve_by_their_names() {
    let sb = Sandbox::new();
    sb.sh("ip netns add pod1 && ip netns add pod2");
    let mut c = conf("1.0.0");
    c["runtimeConfig"] = json!({"aliases": {"podnet": ["cache"]}});
    let (v, code) = cni(
        &Call {
            command: "ADD",
            id: "pod1",
            netns: "/run/netns/pod1",
            ifname: "eth0",
            args: "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-7f9c",
        },
        &c,
    );
    assert_eq!(code, 0, "{v}");
    add("pod2", "pod2", &conf("1.0.0"));
    let ask = |name: &str| {
        sb.sh(&format!(
            "ip netns exec pod2 dig +short +tries=1 +time=2 @10.88.0.1 {name}"
        ))
        .trim()
        .to_string()
    };
    assert_eq!(ask("web-7f9c.nsnet.internal"), "10.88.0.2");
    assert_eq!(ask("cache"), "10.88.0.2");
    del("pod1", "/run/netns/pod1", &c);
    assert_eq!(ask("web-7f9c.nsnet.internal"), "");
}
