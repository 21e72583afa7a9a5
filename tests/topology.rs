//! Declarative topologies: up, down, edits, crashes, gc, bad files.

use crate::common::{assert_same, Sandbox};

const TUTORIAL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/tutorial.toml");

fn write(dir: &tempfile::TempDir, text: &str) -> String {
    let path = dir.path().join("lab.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn ifindex(sb: &Sandbox, ns: &str) -> String {
    sb.sh(&format!("ip -n {ns} -o link show eth0 | cut -d: -f1"))
}

#[test]
fn the_tutorial_file_up_ping_down() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    let out = sb.ok(&["up", "-f", TUTORIAL]);
    assert!(out.contains("create network mydocker0"), "{out}");
    sb.sh("ip netns exec ns1 ping -c1 -W2 172.16.1.2");
    sb.sh("ip netns exec ns2 ping -c1 -W2 172.16.1.1");
    let snap = sb.snapshot();
    let again = sb.ok(&["up", "-f", TUTORIAL]);
    assert!(again.contains("no changes"), "{again}");
    assert_same(&sb.snapshot(), &snap, "a second up changed the host");
    sb.ok(&["down", "-f", TUTORIAL]);
    assert_same(&sb.snapshot(), &before, "down");
    let twice = sb.ok(&["down", "-f", TUTORIAL]);
    assert!(twice.contains("no changes"), "{twice}");
}

const LAB: &str = r#"
[networks.front]
subnets = ["10.91.0.0/24", "fd00:91::/64"]

[networks.back]
subnets = ["10.92.0.0/24"]
internal = true

[namespaces.web]
dns = ["192.0.2.53"]
attach = [
  { network = "front", ip = "10.91.0.10", publish = ["8080:80"] },
  { network = "back", ifname = "eth1" },
]

[namespaces.db]
attach = [{ network = "back", ip = "10.92.0.20" }]

[namespaces.cache]
attach = [{ network = "back" }]
"#;

#[test]
fn edits_apply_only_the_difference() {
    let sb = Sandbox::new();
    sb.upstream();
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, LAB);
    sb.ok(&["up", "-f", &file]);
    let resolv = sb.sh("ip netns exec web cat /etc/resolv.conf");
    assert!(resolv.contains("nameserver 192.0.2.53"), "{resolv}");
    let web = ifindex(&sb, "web");
    let web_back = sb.sh("ip -n web -o link show eth1 | cut -d: -f1");

    // Change one address, drop a namespace, add one, publish another port.
    let edited = LAB
        .replace("ip = \"10.92.0.20\"", "ip = \"10.92.0.21\"")
        .replace(
            "[namespaces.cache]\nattach = [{ network = \"back\" }]",
            "[namespaces.new]\nattach = [{ network = \"front\" }]",
        )
        .replace(
            "publish = [\"8080:80\"]",
            "publish = [\"8080:80\", \"9090:90\"]",
        );
    let file = write(&dir, &edited);
    let plan = sb.ok(&["up", "-f", &file, "--dry-run"]);
    assert_eq!(
        plan.lines().collect::<Vec<_>>(),
        [
            "would disconnect namespace cache on network back",
            "would reconnect namespace db on network back",
            "would reconnect namespace web on network front",
            "would connect namespace db to network back",
            "would connect namespace new to network front",
            "would connect namespace web to network front",
        ],
        "{plan}"
    );
    sb.ok(&["up", "-f", &file]);
    assert!(sb
        .sh("ip -n db -o addr show eth0")
        .contains("10.92.0.21/24"));
    assert!(!sb.sh("ip netns list").contains("cache"));
    assert!(sb.sh("ip netns list").contains("new"));
    // web's eth1 (back) was not touched; its eth0 (front) was reconnected.
    assert_eq!(sb.sh("ip -n web -o link show eth1 | cut -d: -f1"), web_back);
    assert_ne!(
        ifindex(&sb, "web"),
        web,
        "web's front attachment changed, so it was remade"
    );
    let _e = sb.echo("web", 90, false);
    let r = sb
        .ask(Some("up"), "203.0.113.2:9090", false)
        .expect("new published port works");
    assert_eq!(r, "web:hi");
    assert!(sb.ok(&["up", "-f", &file]).contains("no changes"));
    let check = sb.ok("check");
    assert!(check.contains("no drift"), "{check}");
}

#[test]
fn untouched_attachments_keep_their_interfaces() {
    let sb = Sandbox::new();
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, LAB);
    sb.ok(&["up", "-f", &file]);
    let db = ifindex(&sb, "db");
    let veths = sb.sh("ip -o link show master back | cut -d: -f1,2");
    let file = write(
        &dir,
        &LAB.replace("ip = \"10.91.0.10\"", "ip = \"10.91.0.11\""),
    );
    let out = sb.ok(&["up", "-f", &file]);
    assert_eq!(
        out.lines().next().unwrap(),
        "reconnect namespace web on network front",
        "{out}"
    );
    assert_eq!(ifindex(&sb, "db"), db);
    assert_eq!(sb.sh("ip -o link show master back | cut -d: -f1,2"), veths);
}

#[test]
fn objects_made_elsewhere_are_never_touched() {
    let sb = Sandbox::new();
    let dir = tempfile::tempdir().unwrap();
    sb.ok("network create mine --subnet 10.93.0.0/24");
    sb.ok("connect mine keepme");
    let file = write(&dir, LAB);
    sb.ok(&["up", "-f", &file]);
    sb.ok(&["down", "-f", &file]);
    assert!(sb.sh("ip netns list").contains("keepme"));
    assert!(sb.ok("network ls").contains("mine"));
    // A file that names a network made by hand is refused.
    let clash = write(&dir, "[networks.mine]\nsubnets = [\"10.93.0.0/24\"]\n");
    let err = sb.fails(&["up", "-f", &clash], 4);
    assert!(
        err.contains("network mine exists and was not created by"),
        "{err}"
    );
}

#[test]
fn a_killed_up_is_finished_by_the_next_command() {
    let sb = Sandbox::new();
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, LAB);
    let before = sb.snapshot();
    // Count the steps of a full up (-v also times its phases, in parentheses).
    let out = sb.run(&["-v", "up", "-f", &file]);
    let steps = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains(" ms ") && l.ends_with(": ok"))
        .count();
    sb.ok(&["down", "-f", &file]);
    assert_same(&sb.snapshot(), &before, "down after a full up");
    assert!(steps > 20, "{steps} steps");
    // Kill up before its k-th step, for k across the whole run.
    for k in (1..=steps).step_by(3) {
        let out = sb.run_env(&["up", "-f", &file], &[("NSNET_ABORT_AT", &k.to_string())]);
        assert!(!out.status.success(), "k={k}: up was not killed");
        // The next up converges...
        sb.ok(&["up", "-f", &file]);
        let check = sb.ok("check");
        assert!(check.contains("no drift"), "k={k}: {check}");
        sb.ok("ping web 10.92.0.20 -c 1");
        // ...and down leaves the host as before.
        sb.ok(&["down", "-f", &file]);
        assert_same(
            &sb.snapshot(),
            &before,
            &format!("killed at step {k}, then up and down"),
        );
    }
    // Killed, then straight down.
    let out = sb.run_env(
        &["up", "-f", &file],
        &[("NSNET_ABORT_AT", &(steps / 2).to_string())],
    );
    assert!(!out.status.success());
    sb.ok(&["down", "-f", &file]);
    assert_same(&sb.snapshot(), &before, "killed, then down");
}

#[test]
fn gc_cleans_up_after_namespaces_deleted_behind_its_back() {
    let sb = Sandbox::new();
    let dir = tempfile::tempdir().unwrap();
    sb.upstream();
    let file = write(&dir, LAB);
    sb.ok(&["up", "-f", &file]);
    sb.sh("ip netns del web");
    sb.gone_with_namespace("ve-web-");
    let check = sb.run("check");
    assert!(String::from_utf8_lossy(&check.stdout).contains("namespace web: the namespace is gone"));
    let out = sb.ok("gc");
    assert!(
        out.contains("forget namespace web on network front"),
        "{out}"
    );
    assert!(
        out.contains("forget namespace web on network back"),
        "{out}"
    );
    let map = sb.sh("nft list map inet nsnet ports4_any_dest");
    assert!(!map.contains("8080"), "port mapping left: {map}");
    assert!(!sb.sh("ip -o link").contains("ve-web"), "veth left");
    assert!(sb.ok("check").contains("no drift"));
    assert!(sb.ok("gc").contains("no changes"));
}

#[test]
fn bad_files_are_refused_with_line_and_column() {
    let sb = Sandbox::new();
    let dir = tempfile::tempdir().unwrap();
    let before = sb.snapshot();
    for (text, at) in [
        ("[networks.a]\nsubnets = [\"10.0.0.0/24\"]\nbogus = true\n", ":3:1: unknown field `bogus`"),
        ("[networks.a]\nsubnets = [\"10.0.0.0/24\"]\n[networks.b]\nsubnets = [\"10.0.0.128/25\"]\n", ":4:12: subnet 10.0.0.128/25 overlaps"),
        ("[networks.a]\nsubnets = [\"10.0.0.0/24\"]\n[namespaces.x]\nattach = [{ network = \"nope\" }]\n", ":4:23: unknown network \"nope\""),
        ("[networks.a]\nsubnets = [\"10.0.0.0/24\"]\n[namespaces.x]\nattach = [{ network = \"a\", ip = \"10.0.1.1\" }]\n", ":4:33: address 10.0.1.1 is outside"),
        ("[networks.a]\nsubnets = [\"10.0.0.0/24\"]\n[namespaces.x]\nattach = [{ network = \"a\", ip = \"10.0.0.9\" }]\n[namespaces.y]\nattach = [{ network = \"a\", ip = \"10.0.0.9\" }]\n", ":6:33: address 10.0.0.9 is also given to namespace x"),
        ("[networks.a]\nsubnets = [\"10.0.0.0/24\"]\n[networks.a]\nsubnets = [\"10.1.0.0/24\"]\n", ":3:"),
        ("[networks.a]\nsubnets = [\"10.0.0.0/24\"]\n[namespaces.x]\nattach = [{ network = \"a\" }]\nfiles = { \"etc/../x\" = \"y\" }\n", ":5:11: node file \"etc/../x\""),
        ("[namespaces.x]\nrun = [\"sleep 1\"]\n", ":1:13: namespace x has commands to run but nothing makes it"),
    ] {
        let file = write(&dir, text);
        let err = sb.fails(&["up", "-f", &file], 2);
        assert!(err.contains(&format!("{file}{at}")), "{text:?}: {err}");
        assert_same(&sb.snapshot(), &before, "a refused file changed the host");
    }
    sb.fails("up -f /nonexistent.toml", 3);
}

#[test]
fn every_example_validates_and_the_lab_comes_up_and_down() {
    let sb = Sandbox::new();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    for f in &files {
        let out = sb.ok(&["up", "--dry-run", "-f", f.to_str().unwrap()]);
        assert!(
            out.contains("would create network") || out.contains("would link"),
            "{}: {out}",
            f.display()
        );
    }
    let before = sb.snapshot();
    let lab = format!("{dir}/web-db.toml");
    sb.ok(&["up", "-f", &lab]);
    sb.ok("ping web 10.82.0.20 -c 1");
    // db is on the internal network only: no way out.
    assert!(!sb.sh("ip -n db route").contains("default"));
    assert!(sb.ok("check").contains("no drift"));
    sb.ok(&["down", "-f", &lab]);
    assert_same(&sb.snapshot(), &before, "web-db up and down");
}

#[test]
fn up_repairs_what_was_damaged_by_hand() {
    let sb = Sandbox::new();
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, LAB);
    sb.ok(&["up", "-f", &file]);
    // A bridge deleted, a veth deleted, a namespace deleted, the table flushed.
    sb.sh("ip link del front");
    let veth = sb.sh("ip -o link show master back | grep -o 've-cach-[0-9a-f]*' | head -1");
    sb.sh(&format!("ip link del {}", veth.trim()));
    sb.sh("ip netns del db");
    sb.sh("nft flush table inet nsnet");
    sb.gone_with_namespace("ve-db-");
    assert_eq!(sb.run("check").status.code(), Some(1));
    let out = sb.ok(&["up", "-f", &file]);
    for want in [
        "recreate network front",
        "reconnect namespace cache on network back",
        "reconnect namespace db on network back",
        "repair the nftables table inet nsnet",
    ] {
        assert!(out.contains(want), "{want:?} not in:\n{out}");
    }
    let check = sb.ok("check");
    assert!(check.contains("no drift"), "{check}");
    // db is a new namespace again (its eth0 is numbered alike: 2).
    assert!(sb.sh("ip netns list").contains("db"));
    sb.ok("ping web 10.92.0.20 -c 1");
    assert!(sb.ok(&["up", "-f", &file]).contains("no changes"));
}

/// A file whose node n1 runs `runs` (TOML strings) and writes its address
/// to `marker` when made; n2 serves HTTP.
fn nodes_file(marker: &std::path::Path, runs: &str) -> String {
    format!(
        r#"
[networks.lan]
subnets = ["10.77.0.0/24"]

[namespaces.n1]
attach = [{{ network = "lan", ip = "10.77.0.10" }}]
exec = ["ip -4 -o addr show dev eth0 > {}"]
run = [{runs}]

[namespaces.n2]
attach = [{{ network = "lan", ip = "10.77.0.20" }}]
run = ["busybox httpd -f -p 10.77.0.20:8080 -h /run/site"]
files = {{ "/run/site/index.html" = {{ text = "served by n2\n" }}, "/etc/nsnet-test/motd" = "motd.txt" }}
"#,
        marker.display()
    )
}

/// The pids nsnet started, by command (never another test's).
fn pids(sb: &Sandbox) -> Vec<(String, i64)> {
    let v: serde_json::Value = serde_json::from_str(&sb.ok("--json ps")).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["command"].as_str().unwrap().to_string(),
                p["pid"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// `exec` and `run` in a file: exec commands run once when `up` makes the
/// node (in its network), run commands keep running (a web server another
/// node reaches; one that ignores SIGTERM), `ps` and `logs` show them,
/// `check` reports one that died and the next `up` starts it again, an
/// edit stops what the file no longer asks for, a process that exits at
/// once fails `up` naming its log, and `down` leaves no process, no file
/// and the host as before.
#[test]
fn nodes_run_their_commands_and_down_stops_them() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("made");
    let text = |runs: &str| nodes_file(&marker, runs);
    let stubborn = r#""echo started; exec sleep 600", "trap '' TERM; while :; do sleep 0.2; done""#;
    // The directories node files are bound over exist on the host (the
    // sandbox's /run and /etc); the files are seen only in n2.
    sb.sh("mkdir -p /run/site /etc/nsnet-test");
    std::fs::write(dir.path().join("motd.txt"), "welcome to n2\n").unwrap();
    let file = write(&dir, &text(stubborn));
    let out = sb.ok(&["up", "-f", &file]);
    assert!(out.contains("run in n2: busybox httpd"), "{out}");
    let made = std::fs::read_to_string(&marker).unwrap();
    assert!(
        made.contains("10.77.0.10/24"),
        "exec ran outside the node: {made}"
    );
    let ps = sb.ok("ps");
    assert_eq!(ps.matches("running").count(), 3, "{ps}");
    let reached = (0..50).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        sb.sh_status("ip netns exec n1 curl -s -m 1 -o /dev/null http://10.77.0.20:8080/")
            .status
            .success()
    });
    assert!(
        reached,
        "n1 does not reach n2's server: {}",
        sb.ok("logs n2")
    );
    assert!(sb.ok("logs n1").contains("started"));
    sb.ok("check");
    let started = pids(&sb);
    // One dies: check says so, up starts it again, only it.
    let victim = started
        .iter()
        .find(|(c, _)| c.starts_with("echo started"))
        .unwrap()
        .1;
    sb.sh(&format!("kill {victim}"));
    assert!(
        crate::common::wait_ended(victim),
        "{victim} outlived SIGTERM"
    );
    let err = sb.run("check");
    let text_out = String::from_utf8_lossy(&err.stdout);
    assert_eq!(err.status.code(), Some(1), "{text_out}");
    assert!(
        text_out.contains("has exited") && text_out.contains("nsnet up -f"),
        "{text_out}"
    );
    let again = sb.ok(&["up", "-f", &file]);
    assert!(
        again.contains("run in n1: echo started") && !again.contains("n2"),
        "{again}"
    );
    sb.ok("check");
    // The stubborn one goes with an edit (SIGKILL after the grace).
    sb.ok(&[
        "up",
        "-f",
        &write(&dir, &text(r#""echo started; exec sleep 600""#)),
    ]);
    assert_eq!(sb.ok("ps").matches("running").count(), 2);
    // n2 without commands or files: its server stops, its files go.
    let motd = std::path::Path::new("/etc/netns/n2/nsnet-test/motd");
    assert!(motd.exists(), "the node file is where iproute2 looks");
    let bare = text(r#""echo started; exec sleep 600""#)
        .replace(
            "run = [\"busybox httpd -f -p 10.77.0.20:8080 -h /run/site\"]\n",
            "",
        )
        .lines()
        .filter(|l| !l.starts_with("files = "))
        .collect::<Vec<_>>()
        .join("\n");
    let out = sb.ok(&["up", "-f", &write(&dir, &bare)]);
    assert!(
        out.contains("stop in n2") && out.contains("remove /etc/nsnet-test/motd in n2"),
        "{out}"
    );
    assert!(!motd.exists());
    assert_eq!(sb.ok("ps").matches("running").count(), 1);
    write(&dir, &text(r#""echo started; exec sleep 600""#));
    // A process that exits at once fails up, naming its log.
    write(
        &dir,
        &text(r#""echo started; exec sleep 600", "echo oops >&2; exit 3""#),
    );
    let err = sb.fails(&["up", "-f", &file], 1);
    assert!(
        err.contains("exited at once") && err.contains(".log"),
        "{err}"
    );
    let last = pids(&sb);
    sb.ok(&["down", "-f", &file]);
    for (command, pid) in started.iter().chain(&last) {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}/ns/net")).exists(),
            "{command} ({pid}) still runs"
        );
    }
    assert_eq!(sb.ok("ps").lines().count(), 1, "only the header");
    assert_same(&sb.snapshot(), &before, "down");
}

/// A process whose record was lost (an `up` killed between starting it
/// and recording it) is found again by the next `up`, not started twice,
/// and `down` stops it.
#[test]
fn a_node_process_whose_record_was_lost_is_taken_on_not_doubled() {
    let sb = Sandbox::new();
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        &dir,
        "[networks.lan]\nsubnets = [\"10.78.0.0/24\"]\n[namespaces.n1]\nattach = [{ network = \"lan\" }]\nrun = [\"exec sleep 600\"]\n",
    );
    sb.ok(&["up", "-f", &file]);
    let first = pids(&sb);
    assert_eq!(first.len(), 1);
    sb.sh("rm /run/nsnet/nodes/n1.json");
    assert!(pids(&sb).is_empty(), "the record is gone");
    let again = sb.ok(&["up", "-f", &file]);
    assert!(!again.contains("run in n1"), "{again}");
    assert_eq!(pids(&sb), first, "the same process, taken on");
    sb.sh("rm /run/nsnet/nodes/n1.json");
    sb.ok(&["down", "-f", &file]);
    let pid = first[0].1;
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}/ns/net")).exists(),
        "an unrecorded process survived down"
    );
}

/// A node deleted behind nsnet's back (`ip netns del`) leaves its
/// processes running in the unnamed namespace; `gc` stops and forgets
/// them.
#[test]
fn gc_stops_the_processes_of_a_node_deleted_by_hand() {
    let sb = Sandbox::new();
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        &dir,
        "[networks.lan]\nsubnets = [\"10.79.0.0/24\"]\n[namespaces.n1]\nattach = [{ network = \"lan\" }]\nrun = [\"exec sleep 600\"]\n",
    );
    sb.ok(&["up", "-f", &file]);
    let pid = pids(&sb)[0].1;
    sb.sh("ip netns del n1");
    assert!(std::path::Path::new(&format!("/proc/{pid}/ns/net")).exists());
    let out = sb.ok("gc");
    assert!(
        out.contains("stop process \"exec sleep 600\" of n1"),
        "{out}"
    );
    assert!(!std::path::Path::new(&format!("/proc/{pid}/ns/net")).exists());
    assert!(pids(&sb).is_empty());
    sb.ok(&["down", "-f", &file]);
}
