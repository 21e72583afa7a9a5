//! `nsnet trace`: a table of paths, each with the verdict and the cause
//! the trace must give, and the same path tried for real (a connection
//! or a ping) as the independent oracle. One sandbox for the table.

use crate::common::{refused, served_by, Sandbox};

/// One case: the trace's arguments, whether it reaches, what its cause
/// says, and the real attempt that must agree.
struct Case {
    args: &'static str,
    reached: bool,
    cause: &'static str,
    oracle: Oracle,
}

enum Oracle {
    /// TCP "hi" from a namespace (`None`: the host) to an address, served
    /// by the namespace named, or dropped/refused when `None`.
    Ask(Option<&'static str>, &'static str, Option<&'static str>),
    /// A ping from a namespace: answered or not.
    Ping(&'static str, &'static str, bool),
}

fn setup(sb: &Sandbox) {
    sb.upstream();
    for cmd in [
        "network create front --subnet 10.80.0.0/24",
        "network create back --subnet 10.81.0.0/24",
        "network create solo --subnet 10.82.0.0/24 --no-icc",
        "network create inner --subnet 10.83.0.0/24 --internal",
        "connect front web --ip 10.80.0.2",
        "connect front web2 --ip 10.80.0.3 -p 8080:80",
        "connect back db --ip 10.81.0.2",
        "connect solo s1 --ip 10.82.0.2",
        "connect solo s2 --ip 10.82.0.3",
        "connect inner i1 --ip 10.83.0.2",
        "network create rt --subnet 10.84.0.0/24 --gateway-mode routed",
        "connect rt rtw --ip 10.84.0.2 -p 8081:80",
        "link add h1:eth0 r1:eth0 --ip 10.9.1.10/24 --ip 10.9.1.1/24",
        "link add r1:eth1 r2:eth1 --ip 10.9.0.1/30 --ip 10.9.0.2/30",
        "link add r2:eth0 h2:eth0 --ip 10.9.2.1/24 --ip 10.9.2.10/24",
        "ns add r1 --forward",
        "ns add r2 --forward",
        "route add h1 default via 10.9.1.1",
        "route add h2 default via 10.9.2.1",
        "route add r1 10.9.2.0/24 via 10.9.0.2",
        "route add r2 10.9.1.0/24 via 10.9.0.1",
    ] {
        sb.ok(cmd);
    }
    // The upstream routes the bridges' subnets to the host: it tries the
    // direct access that protection stops.
    sb.sh("ip -n up route add 10.80.0.0/24 via 203.0.113.2");
    sb.sh("ip -n up route add 10.84.0.0/24 via 203.0.113.2");
}

fn check(sb: &Sandbox, c: &Case) {
    let args: Vec<&str> = ["--json", "trace"]
        .into_iter()
        .chain(c.args.split_whitespace())
        .collect();
    let out = sb.run(&args);
    let code = if c.reached { 0 } else { 1 };
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(code), "trace {}: {text}", c.args);
    let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(v["reached"], c.reached, "trace {}: {text}", c.args);
    if !c.cause.is_empty() {
        let cause = v["cause"].as_str().unwrap_or_default();
        assert!(cause.contains(c.cause), "trace {}: cause {cause:?}", c.args);
    }
    // The probe: a real packet, and the kernel's own account, agree.
    if !c.args.starts_with("from:") {
        let probed: Vec<&str> = args.iter().copied().chain(["--probe"]).collect();
        let out = sb.run(&probed);
        let text = String::from_utf8_lossy(&out.stdout);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!(
                "trace {} --probe: {e}: {}",
                c.args,
                String::from_utf8_lossy(&out.stderr)
            )
        });
        assert_eq!(
            v["probe"]["agrees"], true,
            "trace {} --probe: {text}",
            c.args
        );
        assert_eq!(
            out.status.code(),
            Some(code),
            "trace {} --probe: {text}",
            c.args
        );
    }
    let what = format!("the real attempt of `trace {}`", c.args);
    match c.oracle {
        Oracle::Ask(from, to, Some(by)) => served_by(sb.ask(from, to, false), by, &what),
        Oracle::Ask(from, to, None) => refused(sb.ask(from, to, false), &what),
        Oracle::Ping(from, to, answered) => {
            // A reply may need a neighbour lookup's retransmission (1 s).
            let wait = if answered { 5 } else { 1 };
            let ping = sb.sh_status(&format!("ip netns exec {from} ping -c 1 -W {wait} {to}"));
            assert_eq!(ping.status.success(), answered, "{what}");
        }
    }
}

/// The paths of the table, on `setup`'s networks and lab.
fn cases() -> [Case; 11] {
    [
        Case {
            args: "web host:8080",
            reached: true,
            cause: "",
            oracle: Oracle::Ask(Some("web"), "10.80.0.1:8080", Some("web2")),
        },
        Case {
            args: "from:up0@203.0.113.1 10.84.0.2",
            reached: true,
            cause: "",
            oracle: Oracle::Ask(Some("up"), "10.84.0.2:80", Some("rtw")),
        },
        Case {
            args: "from:up0@203.0.113.1 10.84.0.2 --port 81",
            reached: false,
            cause: "network rt accepts no new connections from outside (gateway mode routed)",
            oracle: Oracle::Ask(Some("up"), "10.84.0.2:81", None),
        },
        Case {
            args: "web web2",
            reached: true,
            cause: "",
            oracle: Oracle::Ask(Some("web"), "10.80.0.3:80", Some("web2")),
        },
        Case {
            args: "web db --port 5432",
            reached: false,
            cause: "networks back and front are isolated",
            oracle: Oracle::Ask(Some("web"), "10.81.0.2:5432", None),
        },
        Case {
            args: "s1 s2 --port 7",
            reached: false,
            cause: "network solo has icc=false",
            oracle: Oracle::Ask(Some("s1"), "10.82.0.3:7", None),
        },
        Case {
            args: "i1 203.0.113.1 --proto icmp",
            reached: false,
            cause: "network inner is internal",
            oracle: Oracle::Ping("i1", "203.0.113.1", false),
        },
        Case {
            args: "from:up0 host:8080",
            reached: true,
            cause: "",
            oracle: Oracle::Ask(Some("up"), "203.0.113.2:8080", Some("web2")),
        },
        Case {
            args: "from:up0@203.0.113.1 10.80.0.3",
            reached: false,
            cause: "direct-access protection of network front",
            oracle: Oracle::Ask(Some("up"), "10.80.0.3:80", None),
        },
        Case {
            args: "web web2 --port 81",
            reached: false,
            cause: "nothing listens on web2:81",
            oracle: Oracle::Ask(Some("web"), "10.80.0.3:81", None),
        },
        Case {
            args: "h1 h2 --proto icmp",
            reached: true,
            cause: "",
            oracle: Oracle::Ping("h1", "10.9.2.10", true),
        },
    ]
}

#[test]
fn traces_name_the_cause_and_agree_with_a_real_attempt() {
    let sb = Sandbox::new();
    setup(&sb);
    let _web2 = sb.echo("web2", 80, false);
    let _db = sb.echo("db", 5432, false);
    let _s2 = sb.echo("s2", 7, false);
    let _rtw = sb.echo("rtw", 80, false);
    let _rtw81 = sb.echo("rtw", 81, false);
    for c in &cases() {
        check(&sb, c);
    }
    // A route nsnet made, deleted by hand: the router and prefix named.
    sb.sh("ip -n r1 route del 10.9.2.0/24");
    check(
        &sb,
        &Case {
            args: "h1 h2 --proto icmp",
            reached: false,
            cause: "no route to 10.9.2.10 in r1: the route 10.9.2.0/24 via 10.9.0.2 nsnet made there is gone",
            oracle: Oracle::Ping("h1", "10.9.2.10", false),
        },
    );
    // A foreign table's drop policy (Docker's shape): table and chain named,
    // also between two namespaces of one bridge (br_netfilter).
    sb.sh(
        "nft add table ip filter && nft add chain ip filter DOCKER && \
         nft add chain ip filter FORWARD '{ type filter hook forward priority 0; policy drop; }'",
    );
    check(
        &sb,
        &Case {
            args: "web web2",
            reached: false,
            cause: "dropped by table ip filter chain FORWARD policy drop (not nsnet's: Docker's)",
            oracle: Oracle::Ask(Some("web"), "10.80.0.3:80", None),
        },
    );
    sb.sh("nft delete table ip filter");
    let err = sb.fails("trace from:up0 host:8080 --probe", 3);
    assert!(
        err.contains("--probe sends its packet from a namespace or the host"),
        "{err}"
    );
    // Bad ends: the documented exit codes, the value named.
    let err = sb.fails("trace web nowhere", 3);
    assert!(err.contains("cannot trace to nowhere"), "{err}");
    let err = sb.fails("trace ghost web", 3);
    assert!(
        err.contains("cannot trace from ghost: no such namespace"),
        "{err}"
    );
    let err = sb.fails("trace from:up0 host:9999", 3);
    assert!(err.contains("no namespace publishes port 9999"), "{err}");
}

#[test]
fn a_probe_killed_mid_way_leaves_no_rule() {
    let sb = Sandbox::new();
    sb.ok("network create front --subnet 10.80.0.0/24");
    sb.ok("connect front web --ip 10.80.0.2");
    // The probe's rule is there while it waits (for an address nobody
    // holds: a second), and gone when it is killed: the kernel deletes
    // the table with nsnet's socket.
    let mut child = sb
        .command(crate::common::NSNET)
        .args(["trace", "web", "10.80.0.99", "--probe"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let table = format!("nsnet_probe_{}", child.id());
    let mut seen = false;
    for _ in 0..100 {
        if sb.sh("nft list tables").contains(&table) {
            seen = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(seen, "the probe's table {table} was never there");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    child.wait().unwrap();
    assert!(
        !sb.sh("nft list tables").contains("nsnet_probe"),
        "left behind"
    );
}
