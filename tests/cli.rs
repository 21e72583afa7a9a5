//! What a new user meets at the command line: help with examples and a
//! line per argument, hints where users commonly go wrong, several
//! networks removed in one go (all or none).

use crate::common::{assert_no_reply, Sandbox};

#[test]
fn help_has_examples_and_describes_every_argument() {
    let sb = Sandbox::new();
    for (cmd, needles) in [
        (
            vec!["connect", "--help"],
            vec![
                "Examples",
                "nsnet connect mydocker0 ns1 --ip 172.16.1.1/16",
                "The network to attach to",
                "Global options:",
            ],
        ),
        (
            vec!["network", "create", "--help"],
            vec!["Examples", "--subnet 172.16.0.0/16", "The network's name"],
        ),
        (
            vec!["up", "--help"],
            vec!["Examples", "nsnet up -f examples/tutorial.toml"],
        ),
        (
            vec!["exec", "--help"],
            vec!["<NAMESPACE>", "<COMMAND>...", "optional"],
        ),
        (vec!["ping", "--help"], vec!["An IPv4 or IPv6 address"]),
    ] {
        // Columns are aligned with spaces: compare with single spaces.
        let text = sb.ok(&cmd).split_whitespace().collect::<Vec<_>>().join(" ");
        for n in needles {
            assert!(text.contains(n), "{cmd:?} lacks {n:?}:\n{text}");
        }
    }
}

#[test]
fn hints_where_users_go_wrong() {
    let sb = Sandbox::new();
    sb.ok("network create mydocker0 --subnet 172.16.0.0/16");
    let e = sb.fails("network inspect mydokcer0", 3);
    assert!(e.contains("did you mean mydocker0?"), "{e}");
    let e = sb.fails("connect mydocker1 ns1", 3);
    assert!(e.contains("did you mean mydocker0?"), "{e}");
    let e = sb.fails("network create net2 172.17.0.0/16", 2);
    assert!(
        e.contains("nsnet network create net2 --subnet 172.17.0.0/16"),
        "{e}"
    );
    // The command of `exec` may come with or without `--`.
    sb.ok("connect mydocker0 ns1");
    let e = sb.fails("disconnect mydocker0 nsl", 3);
    assert!(e.contains("did you mean ns1?"), "{e}");
    let e = sb.fails("exec ns2 true", 3);
    assert!(
        e.contains("namespace ns2 does not exist; did you mean ns1?"),
        "{e}"
    );
    let e = sb.fails("ping nsl 172.16.0.1", 3);
    assert!(e.contains("did you mean ns1?"), "{e}");
    // Ping by name: the address on a shared network.
    sb.ok("connect mydocker0 ns3");
    let out = sb.ok("ping ns1 ns3 -c 1");
    assert!(out.contains("PING 172.16.0.3 "), "{out}");
    sb.sh("ip netns add loner");
    let e = sb.fails("ping ns1 loner -c 1", 3);
    assert!(e.contains("shares no network"), "{e}");
    assert!(sb.ok("exec ns1 ip -o addr").contains("172.16.0.2"));
    assert!(sb.ok("exec ns1 -- ip -o link").contains("eth0"));
}

#[test]
fn check_says_what_repair_can_and_cannot_do() {
    let sb = Sandbox::new();
    sb.ok("network create r --subnet 10.53.0.0/24");
    sb.ok("connect r a");
    sb.sh("ip -n a addr flush dev eth0 && nft flush table inet nsnet");
    let text = sb.drift(&[]);
    assert!(
        text.contains("hint: to put it right, run: nsnet check --repair"),
        "{text}"
    );
    assert!(
        text.contains("nsnet disconnect r a && nsnet connect r a"),
        "{text}"
    );
    let text = sb.drift(&["--repair"]);
    assert!(
        text.contains("repaired from the record: the firewall table"),
        "{text}"
    );
    assert!(!text.contains("chain "), "the table was repaired: {text}");
    assert!(
        text.contains(
            "hint: --repair cannot restore this; run: nsnet disconnect r a && nsnet connect r a"
        ),
        "{text}"
    );
    sb.ok("disconnect r a");
    sb.ok("connect r a");
    sb.ok("check");
}

#[test]
fn several_networks_are_removed_all_or_none() {
    let sb = Sandbox::new();
    sb.ok("network create a --subnet 10.54.0.0/24");
    sb.ok("network create b --subnet 10.55.0.0/24");
    sb.ok("connect b x");
    let e = sb.fails("network rm a nope", 3);
    assert!(e.contains("network nope does not exist"), "{e}");
    let e = sb.fails("network rm a b", 4);
    assert!(e.contains("in use"), "{e}");
    let ls = sb.ok("network ls");
    assert!(
        ls.contains("a ") || ls.contains("a\t") || ls.lines().any(|l| l.starts_with("a")),
        "nothing was removed: {ls}"
    );
    sb.ok("network rm a b --force");
    let ls = sb.ok("--json network ls");
    assert_eq!(ls.trim(), "[]", "{ls}");
}

#[test]
fn up_and_down_report_the_same_objects() {
    let sb = Sandbox::new();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("web-db.toml");
    std::fs::write(
        &file,
        "[networks.front]\nsubnets = [\"10.56.0.0/24\"]\n[networks.back]\nsubnets = [\"10.57.0.0/24\"]\n\
         [namespaces.web]\nattach = [{ network = \"front\" }, { network = \"back\", ifname = \"eth1\" }]\n\
         [namespaces.db]\nattach = [{ network = \"back\" }]\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let changes = |out: String| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect()
    };
    let up = changes(sb.ok(&["--json", "up", "-f", f]));
    let down = changes(sb.ok(&["--json", "down", "-f", f]));
    assert_eq!(up.len(), 5, "{up:?}");
    assert_eq!(down.len(), up.len(), "up: {up:?}\ndown: {down:?}");
    for ns in ["web", "db"] {
        assert!(
            down.iter()
                .any(|c| c.contains(&format!("namespace {ns} from network back"))),
            "{down:?}"
        );
    }
}

#[test]
fn manual_pages_are_generated_from_the_same_definitions() {
    let sb = Sandbox::new();
    let dir = tempfile::tempdir().unwrap();
    let out = sb.ok(&["man", dir.path().to_str().unwrap()]);
    assert!(out.contains("manual pages"), "{out}");
    for (page, needle) in [
        ("nsnet.1", "Docker-style bridge networking"),
        (
            "nsnet-connect.1",
            "Publish even where a host service listens",
        ),
        ("nsnet-network-create.1", "gateway"),
        // Arguments clap builds only for the subcommand invoked.
        ("nsnet-network-create.1", "--subnet"),
        ("nsnet-impair.1", "--delay"),
    ] {
        // roff escapes hyphens.
        let text = std::fs::read_to_string(dir.path().join(page))
            .unwrap()
            .replace("\\-", "-");
        assert!(
            text.starts_with(".ie") || text.contains(".TH"),
            "{page} is no man page"
        );
        assert!(text.contains(needle), "{page} lacks {needle:?}");
    }
    let page = |name: &str| {
        std::fs::read_to_string(dir.path().join(name))
            .unwrap()
            .replace("\\-", "-")
    };
    // Hidden commands get no page; a page's description is not its name line.
    for hidden in ["nsnet-dns.1", "nsnet-reap-parked.1"] {
        assert!(!dir.path().join(hidden).exists(), "{hidden} written");
    }
    let connect = page("nsnet-connect.1");
    let description = connect.split(".SH DESCRIPTION").nth(1).unwrap();
    assert!(description.contains("veth pair"), "{description}");
    let main = page("nsnet.1");
    for section in ["EXIT STATUS", "ENVIRONMENT", "FILES", "SEE ALSO"] {
        assert!(
            main.contains(&format!(".SH \"{section}\""))
                || main.contains(&format!(".SH {section}")),
            "nsnet.1 lacks {section}"
        );
    }
}

#[test]
fn colour_only_where_asked_or_on_a_terminal() {
    let sb = Sandbox::new();
    sb.ok("network create c --subnet 10.58.0.0/24");
    sb.sh("nft flush table inet nsnet");
    let text = |args: &[&str], env: &[(&str, &str)]| {
        String::from_utf8_lossy(&sb.run_env(args, env).stdout).into_owned()
    };
    // A pipe stays plain, whatever NO_COLOR says.
    assert!(
        text(&["check"], &[]).contains("\ndrift: ") || text(&["check"], &[]).starts_with("drift: ")
    );
    assert!(!text(&["check"], &[]).contains('\x1b'));
    assert!(text(&["check", "--color", "always"], &[]).contains("\x1b[31mdrift:\x1b[0m"));
    assert!(!text(&["check", "--color", "never"], &[]).contains('\x1b'));
    assert!(!text(&["--json", "check", "--color", "always"], &[]).contains('\x1b'));
    assert!(!text(&["check", "--color", "auto"], &[("NO_COLOR", "1")]).contains('\x1b'));
}

#[test]
fn ping_behaves_like_ping8() {
    use std::os::unix::process::ExitStatusExt;
    let sb = Sandbox::new();
    sb.ok("network create p --subnet 10.59.0.0/24 --subnet fd00:59::/64");
    sb.ok("connect p a");
    let v6 = sb.ok("ping a fd00:59::1 -c 1");
    assert!(
        v6.starts_with("PING fd00:59::1 (fd00:59::1) 56 data bytes"),
        "{v6}"
    );
    assert!(
        v6.contains("icmp_seq=1 ttl=64"),
        "the hop limit is shown: {v6}"
    );
    let v4 = sb.ok("ping a 10.59.0.1 -c 1");
    assert!(
        v4.starts_with("PING 10.59.0.1 (10.59.0.1) 56(84) bytes of data."),
        "{v4}"
    );
    // Ctrl-C: the statistics, and ping's status (0: replies came).
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_nsnet"))
        .args(["ping", "a", "10.59.0.1", "-c", "100", "-i", "0.1"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    // SAFETY: sending a signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{:?} {text}",
        out.status.signal()
    );
    assert!(text.contains("--- 10.59.0.1 ping statistics ---"), "{text}");
    let sent: u32 = text
        .split(" packets transmitted")
        .next()
        .and_then(|l| l.rsplit('\n').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap();
    assert!((2..100).contains(&sent), "stopped early: {text}");
}

/// Replies held back 1.5 s by a token bucket on the way into the
/// namespace: nsnet's ping waits for them as ping(8) does (-W: how long to
/// wait after the last request when no reply came, 10 s by default).
#[test]
fn late_replies_count_as_with_ping8() {
    let sb = Sandbox::new();
    sb.ok("network create p --subnet 10.59.0.0/24");
    sb.ok("connect p a");
    sb.ok("ping a 10.59.0.1 -c 1");
    let port = sb.sh("ip -j link show master p | jq -r '.[0].ifname'");
    // 64 bytes a second, a bucket of 100: once the host's own echo
    // request has emptied the bucket, each 98-byte reply waits ~1.5 s for
    // the one before it (a reply that is waited for leaves it empty again).
    sb.sh(&format!(
        "tc qdisc add dev {} root tbf rate 512bit burst 100 latency 20s",
        port.trim()
    ));
    sb.sh("ping -c 1 -W 5 10.59.0.2 >/dev/null");
    let held_back = |nsnet: bool, args: &str| {
        if nsnet {
            sb.run(format!("ping a 10.59.0.1 {args}"))
        } else {
            sb.sh_status(&format!("ip netns exec a ping {args} 10.59.0.1"))
        }
    };
    let late = held_back(true, "-c 1");
    let text = String::from_utf8_lossy(&late.stdout);
    assert_eq!(late.status.code(), Some(0), "{text}");
    let rtt: f64 = text
        .split("time=")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no reply line: {text}"));
    assert!(rtt > 1000.0, "the reply was held back: {text}");
    assert_eq!(held_back(false, "-c 1").status.code(), Some(0), "ping(8)");
    // -W shorter than the delay: no reply, ping's status 1, for both.
    assert_no_reply(&held_back(true, "-c 1 -W 0.3"), "-W 0.3");
    assert_eq!(held_back(false, "-c 1 -W 0.3").status.code(), Some(1));
}
