//! Overlay networks across simulated hosts, against a real etcd (Debian
//! `etcd-server`) started inside each test's sandbox. A simulated host is a
//! network namespace `hN` with an underlay veth on the sandbox bridge `ul`
//! (198.51.100.N/24, the documentation range) and a state directory of its
//! own; etcd listens on the sandbox's end of the underlay, 198.51.100.254.
//! Namespace names differ between hosts (c1 on h1, ...), so the hosts
//! share the sandbox's /run/netns without clashing.

use std::collections::BTreeSet;
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::common::{Argv, Sandbox, NSNET};

const ETCD: &str = "http://198.51.100.254:2379";
/// Short leases, so that a dead host is withdrawn within seconds.
const TTL: u64 = 3;

/// The sandbox, its etcd and its hosts' agents; all die with it.
struct Cluster {
    sb: Sandbox,
    etcd: Option<Child>,
    /// More etcd servers or members.
    more: Vec<Child>,
    agents: Vec<(usize, Child)>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, a) in &mut self.agents {
            let _ = a.kill();
            let _ = a.wait();
        }
        for e in self.etcd.iter_mut().chain(&mut self.more) {
            let _ = e.kill();
            let _ = e.wait();
        }
    }
}

impl Cluster {
    fn new(hosts: usize) -> Cluster {
        let mut c = Cluster::without_etcd(hosts);
        c.start_etcd();
        c
    }

    /// The sandbox, its underlay and hosts; no etcd yet.
    fn without_etcd(hosts: usize) -> Cluster {
        let sb = Sandbox::new();
        // A fixed MAC: a bridge without one takes the lowest of its ports
        // and changes it when that port goes (a host deleted), leaving
        // stale ARP entries for etcd's address on the other hosts.
        sb.sh("ip link add ul address 02:00:00:00:00:fe type bridge && ip link set ul up && ip addr add 198.51.100.254/24 dev ul");
        let c = Cluster {
            sb,
            etcd: None,
            more: Vec::new(),
            agents: Vec::new(),
        };
        for i in 1..=hosts {
            c.add_host(i);
        }
        c
    }

    fn add_host(&self, i: usize) {
        self.sb.sh(&format!(
            "ip netns add h{i} && ip link add h{i}u type veth peer name eth0 netns h{i} && \
             ip link set h{i}u master ul up && ip -n h{i} link set lo up && \
             ip -n h{i} addr add 198.51.100.{i}/24 dev eth0 && ip -n h{i} link set eth0 up"
        ));
    }

    fn start_etcd(&mut self) {
        let child = crate::common::bound_to_test(&mut Command::new("etcd"))
            .args([
                "--name",
                "e1",
                "--data-dir",
                "/run/etcd-data",
                "--listen-client-urls",
                ETCD,
                "--advertise-client-urls",
                ETCD,
                "--listen-peer-urls",
                "http://127.0.0.1:2380",
                "--initial-advertise-peer-urls",
                "http://127.0.0.1:2380",
                "--initial-cluster",
                "e1=http://127.0.0.1:2380",
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create("/run/etcd.log").expect("etcd log"))
            .spawn()
            .expect("starting etcd (Debian package etcd-server)");
        self.etcd = Some(child);
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            let out = self.sb.sh_status(&format!("curl -s -m 1 {ETCD}/health"));
            if String::from_utf8_lossy(&out.stdout).contains("true") {
                return;
            }
            sleep(Duration::from_millis(100));
        }
        panic!(
            "etcd did not become healthy: {}",
            self.sb.sh("tail -5 /run/etcd.log")
        );
    }

    fn stop_etcd(&mut self) {
        if let Some(mut e) = self.etcd.take() {
            e.kill().unwrap();
            e.wait().unwrap();
        }
    }

    /// nsnet run on host `i`.
    fn cmd(&self, i: usize, args: impl Argv) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/h{i}"))
            .arg(NSNET)
            .args(args.argv())
            .env("NSNET_STATE_DIR", format!("/run/nsnet-h{i}"));
        for var in [
            "NSNET_ETCD",
            "NSNET_ETCD_CA",
            "NSNET_ETCD_CERT",
            "NSNET_ETCD_KEY",
            "NSNET_ETCD_USER",
            "NSNET_ETCD_PASSWORD",
            "NSNET_ETCD_PASSWORD_FILE",
        ] {
            c.env_remove(var);
        }
        c
    }

    fn run(&self, i: usize, args: impl Argv) -> Output {
        self.cmd(i, args).output().expect("running nsnet")
    }

    #[track_caller]
    fn ok(&self, i: usize, args: impl Argv) -> String {
        let args = args.argv();
        let out = self.run(i, &args);
        assert!(
            out.status.success(),
            "h{i}: nsnet {args:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[track_caller]
    fn fails(&self, i: usize, args: impl Argv, code: i32) -> String {
        let args = args.argv();
        let out = self.run(i, &args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "h{i}: nsnet {args:?}: {err}");
        err
    }

    fn join(&self, i: usize, subnet: &str) {
        self.ok(i, &overlay_args("lab", subnet));
    }

    /// Host `i` joins network lab (host subnets of `subnet`), connects its
    /// namespace c{i} and runs its agent.
    fn serve(&mut self, i: usize, subnet: &str) {
        self.join(i, subnet);
        self.ok(i, &["connect", "lab", &format!("c{i}")]);
        self.start_agent(i);
    }

    fn start_agent(&mut self, i: usize) {
        let log = std::fs::File::create(format!("/run/agent-h{i}.log")).unwrap();
        let mut cmd = self.cmd(i, "agent");
        let child = crate::common::bound_to_test(&mut cmd)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting the agent");
        self.agents.push((i, child));
    }

    fn kill_agent(&mut self, i: usize) {
        let pos = self
            .agents
            .iter()
            .position(|(h, _)| *h == i)
            .expect("agent");
        let (_, mut child) = self.agents.remove(pos);
        child.kill().unwrap();
        child.wait().unwrap();
    }

    fn agent_log(&self, i: usize) -> String {
        std::fs::read_to_string(format!("/run/agent-h{i}.log")).unwrap_or_default()
    }

    /// The address of namespace `ns` on its eth0.
    fn addr(&self, ns: &str) -> String {
        let out = self.sb.sh(&format!("ip -n {ns} -4 -o addr show dev eth0"));
        out.split_whitespace()
            .nth(3)
            .and_then(|a| a.split('/').next())
            .expect("an IPv4 address")
            .to_string()
    }

    fn pings(&self, from: &str, to: &str) -> bool {
        self.sb
            .sh_status(&format!("ip netns exec {from} ping -c 1 -W 1 {to}"))
            .status
            .success()
    }

    /// Waits up to `limit` for `cond`; returns how long it took.
    fn wait_for(&self, limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if cond() {
                return Some(start.elapsed());
            }
            sleep(Duration::from_millis(20));
        }
        None
    }

    /// Keys under nsnet's prefix, read with etcdctl (an independent client).
    fn keys(&self) -> BTreeSet<String> {
        self.sb
            .sh(&format!(
                "ETCDCTL_API=3 etcdctl --endpoints {ETCD} get --prefix --keys-only /nsnet/"
            ))
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }

    fn host_subnets(&self) -> Vec<String> {
        self.keys()
            .into_iter()
            .filter_map(|k| k.split("/subnets/").nth(1).map(str::to_string))
            .collect()
    }

    /// Everything of host `i` that joining and leaving must restore.
    fn host_snapshot(&self, i: usize) -> String {
        self.sb.sh(&format!(
            "(ip -n h{i} -br link; ip -n h{i} -br addr; ip -n h{i} route show table all; \
             ip -n h{i} neigh show nud permanent; bridge -n h{i} fdb show | grep -v 33:33 || true; \
             ip netns exec h{i} nft list ruleset; ls -A /run/nsnet-h{i} 2>/dev/null || true) \
             | grep -v fe80: || true"
        ))
    }
}

fn overlay_args<'a>(name: &'a str, subnet: &'a str) -> Vec<&'a str> {
    vec![
        "network",
        "create",
        name,
        "--driver",
        "overlay",
        "--etcd",
        ETCD,
        "--subnet",
        subnet,
        "--lease-ttl",
        "3",
    ]
}

#[test]
fn three_hosts_share_one_network() {
    let mut c = Cluster::new(3);
    for i in 1..=3 {
        c.join(i, "10.200.0.0/16");
        c.ok(i, &["connect", "lab", &format!("c{i}")]);
    }
    for i in 1..=3 {
        c.start_agent(i);
    }
    let subnets = c.host_subnets();
    let distinct: BTreeSet<&String> = subnets.iter().collect();
    assert_eq!((subnets.len(), distinct.len()), (3, 3), "{subnets:?}");
    let addrs: Vec<String> = (1..=3).map(|i| c.addr(&format!("c{i}"))).collect();
    for (i, a) in addrs.iter().enumerate() {
        assert!(a.starts_with("10.200."), "c{}: {a}", i + 1);
    }
    let reached = c.wait_for(Duration::from_secs(5), || {
        c.pings("c1", &addrs[1]) && c.pings("c1", &addrs[2])
    });
    assert!(reached.is_some(), "c1 reaches no peer: {}", c.agent_log(1));
    for from in 1..=3 {
        for to in 1..=3 {
            if from != to {
                assert!(
                    c.pings(&format!("c{from}"), &addrs[to - 1]),
                    "c{from} -> c{to}"
                );
            }
        }
    }
    // TCP across hosts, and the source is the namespace's own address (no
    // masquerading inside the cluster).
    let _echo = c.sb.echo("c3", 7000, false);
    let reply = c.sb.ask(Some("c1"), &format!("{}:7000", addrs[2]), false);
    assert_eq!(reply.unwrap(), "c3:hi");
    // The MTU leaves room for the VXLAN header: 1450 on a 1500 underlay.
    let mtu = c.sb.sh("ip -n c1 -o link show dev eth0");
    assert!(mtu.contains("mtu 1450"), "{mtu}");
    // The peers are listed, and each host's record matches its kernel.
    let shown = c.ok(1, "network inspect lab");
    let own = c.sb.sh("ip -n h1 -4 -o route show dev lab");
    for a in subnets
        .iter()
        .filter(|s| !own.contains(&s.replace('-', "/")))
    {
        let cidr = a.replace('-', "/");
        assert!(shown.contains(&cidr), "inspect lacks {cidr}: {shown}");
    }
    let shown = c.ok(1, "show");
    assert!(shown.contains("2 peer(s)"), "{shown}");
    for i in 1..=3 {
        c.ok(i, "check");
    }
    // A tunnel deleted by hand is drift, named.
    c.sb.sh("ip -n h2 link del $(ip -n h2 -o link show type vxlan | awk -F': ' '{print $2}')");
    let out = c.run(2, "check");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("VXLAN device nsv") && text.contains("missing"),
        "{text}"
    );
}

#[test]
fn racing_joins_get_distinct_subnets() {
    let c = Cluster::new(10);
    // A cluster subnet with 16 host subnets for 10 hosts: collisions of
    // first choices are likely; compare-and-swap must sort them out.
    let mut children: Vec<Child> = (1..=10)
        .map(|i| {
            c.cmd(i, &overlay_args("lab", "10.200.0.0/20"))
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, ch) in children.iter_mut().enumerate() {
        let out = ch.wait().unwrap();
        assert!(out.success(), "host {} failed to join", i + 1);
    }
    let subnets = c.host_subnets();
    let distinct: BTreeSet<&String> = subnets.iter().collect();
    assert_eq!((subnets.len(), distinct.len()), (10, 10), "{subnets:?}");
    // Each host's bridge carries the gateway of the subnet it claimed.
    for i in 1..=10 {
        let gw = c.sb.sh(&format!("ip -n h{i} -4 -o addr show dev lab"));
        let claimed = subnets.iter().any(|s| {
            let base = s.split('-').next().unwrap();
            let prefix = base.rsplit_once('.').unwrap().0;
            gw.contains(&format!("{prefix}.1/24"))
        });
        assert!(
            claimed,
            "h{i}: {gw} is not a claimed subnet's gateway ({subnets:?})"
        );
    }
}

#[test]
fn late_joiner_is_reachable_and_a_dead_host_is_withdrawn() {
    let mut c = Cluster::new(3);
    for i in 1..=2 {
        c.serve(i, "10.200.0.0/16");
    }
    c.join(3, "10.200.0.0/16");
    c.ok(3, "connect lab c3");
    let a3 = c.addr("c3");
    c.start_agent(3);
    let took = c.wait_for(Duration::from_secs(3), || {
        c.pings("c1", &a3) && c.pings("c3", &c.addr("c2"))
    });
    assert!(
        took.is_some(),
        "the late host is not reachable: {}",
        c.agent_log(3)
    );

    // Its agent dies and so does the host: the claim lapses with its lease
    // and both peers withdraw it.
    let subnet3 =
        c.sb.sh("ip -n h3 -4 -o route show dev lab")
            .split_whitespace()
            .next()
            .unwrap()
            .to_string();
    c.kill_agent(3);
    c.sb.sh("ip netns del h3 && ip netns del c3");
    let withdrawn = c.wait_for(Duration::from_secs(TTL + 4), || {
        (1..=2).all(|i| !c.sb.sh(&format!("ip -n h{i} route")).contains(&subnet3))
    });
    assert!(
        withdrawn.is_some(),
        "peers still route {subnet3}: {}",
        c.agent_log(1)
    );
    assert!(
        !c.host_subnets().contains(&subnet3.replace('/', "-")),
        "the claim is still in etcd"
    );
    // The other two still talk.
    let a2 = c.addr("c2");
    assert!(
        c.pings("c1", &a2),
        "c1 no longer reaches c2: {}\n{}\n{}",
        String::from_utf8_lossy(&c.sb.sh_status("for i in 1 2; do echo h$i; ip -n h$i route; ip -n h$i neigh; bridge -n h$i fdb show | grep nsv; done").stdout),
        c.agent_log(1),
        c.sb.sh(&format!("date +%T.%N; ETCDCTL_API=3 etcdctl --endpoints {ETCD} get --prefix -w json /nsnet/v1/networks/lab/subnets/; ETCDCTL_API=3 etcdctl --endpoints {ETCD} lease list"))
    );
}

#[test]
fn an_etcd_outage_flushes_nothing_and_the_agents_reconverge() {
    let mut c = Cluster::new(3);
    for i in 1..=2 {
        c.serve(i, "10.200.0.0/16");
    }
    let a2 = c.addr("c2");
    assert!(c
        .wait_for(Duration::from_secs(3), || c.pings("c1", &a2))
        .is_some());
    let routes = c.sb.sh("ip -n h1 route");
    c.stop_etcd();
    sleep(Duration::from_secs(TTL + 1));
    assert!(c.pings("c1", &a2), "traffic stopped with etcd");
    assert_eq!(
        c.sb.sh("ip -n h1 route"),
        routes,
        "routes changed while etcd was away"
    );
    // Joining needs etcd: refused, naming it, with nothing made.
    let err = c.fails(3, &overlay_args("lab", "10.200.0.0/16"), 1);
    assert!(err.contains(ETCD), "{err}");
    assert_eq!(c.sb.sh("ip -n h3 -br link show type bridge"), "");
    c.start_etcd();
    c.join(3, "10.200.0.0/16");
    c.ok(3, "connect lab c3");
    c.start_agent(3);
    let a3 = c.addr("c3");
    let back = c.wait_for(Duration::from_secs(8), || {
        c.pings("c1", &a3) && c.pings("c2", &a3)
    });
    assert!(back.is_some(), "no reconvergence: {}", c.agent_log(1));
    assert!(c.pings("c1", &a2));
}

#[test]
fn leaving_on_every_host_restores_etcd_and_the_hosts() {
    let mut c = Cluster::new(3);
    let before: Vec<String> = (1..=3).map(|i| c.host_snapshot(i)).collect();
    for i in 1..=3 {
        c.serve(i, "10.200.0.0/16");
    }
    assert!(c
        .wait_for(Duration::from_secs(3), || c.pings("c1", &c.addr("c3")))
        .is_some());
    for i in 1..=3 {
        c.ok(i, "network rm lab --force");
    }
    // The agents follow the record and program nothing more.
    sleep(Duration::from_millis(800));
    assert_eq!(c.keys(), BTreeSet::new(), "keys left in etcd");
    for i in 1..=3 {
        crate::common::assert_same(&c.host_snapshot(i), &before[i - 1], &format!("host h{i}"));
    }
}

#[test]
fn bad_overlay_requests_are_refused_with_nothing_made() {
    let c = Cluster::new(2);
    let before = c.host_snapshot(1);
    // No etcd there.
    let err = c.fails(
        1,
        "network create lab --driver overlay --etcd http://198.51.100.253:2379 --subnet 10.200.0.0/16",
        1,
    );
    assert!(
        err.contains("198.51.100.253:2379") && err.contains("unreachable"),
        "{err}"
    );
    crate::common::assert_same(&c.host_snapshot(1), &before, "after an unreachable etcd");
    // Not IPv4, no subnet, host subnets that do not fit.
    let err = c.fails(
        1,
        &[
            "network",
            "create",
            "lab",
            "--driver",
            "overlay",
            "--etcd",
            ETCD,
            "--subnet",
            "fd00:1::/64",
        ],
        2,
    );
    assert!(err.contains("fd00:1::/64"), "{err}");
    let err = c.fails(
        1,
        &[
            "network", "create", "lab", "--driver", "overlay", "--etcd", ETCD,
        ],
        2,
    );
    assert!(err.contains("--subnet"), "{err}");
    let err = c.fails(
        1,
        &[
            "network",
            "create",
            "lab",
            "--driver",
            "overlay",
            "--etcd",
            ETCD,
            "--subnet",
            "10.200.0.0/16",
            "--host-subnet-len",
            "12",
        ],
        2,
    );
    assert!(err.contains("/12"), "{err}");
    assert_eq!(c.keys(), BTreeSet::new());
    // One host subnet only: the second host finds none free.
    c.ok(1, &overlay_args("small", "10.201.0.0/24"));
    let err = c.fails(2, &overlay_args("small", "10.201.0.0/24"), 4);
    assert!(err.contains("no free host subnet"), "{err}");
    assert_eq!(c.sb.sh("ip -n h2 -br link show type bridge"), "");
    // Same name, other settings: a conflict; another network on a VNI in
    // use: a conflict naming the holder.
    let err = c.fails(2, &overlay_args("small", "10.202.0.0/16"), 4);
    assert!(err.contains("other settings"), "{err}");
    let vni = c.sb.sh(&format!(
        "ETCDCTL_API=3 etcdctl --endpoints {ETCD} get --prefix --keys-only /nsnet/v1/vnis/"
    ));
    let vni = vni.trim().rsplit('/').next().unwrap().to_string();
    let mut args = overlay_args("other", "10.203.0.0/16");
    args.extend(["--vni", &vni]);
    let err = c.fails(2, &args, 4);
    assert!(
        err.contains(&format!("VNI {vni}")) && err.contains("small"),
        "{err}"
    );
    c.ok(1, "network rm small");
    assert_eq!(c.keys(), BTreeSet::new());
}

/// A CNI ADD or DEL of container `ns` run on host `i`, as a runtime on that
/// node runs the plugin; the result JSON.
fn cni_on(i: usize, command: &str, ns: &str, conf: &serde_json::Value) -> String {
    use std::io::Write;
    let mut child = Command::new("nsenter")
        .arg(format!("--net=/run/netns/h{i}"))
        .arg(NSNET)
        .env("NSNET_STATE_DIR", format!("/run/nsnet-h{i}"))
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", format!("id-{ns}"))
        .env("CNI_NETNS", format!("/run/netns/{ns}"))
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running nsnet as a CNI plugin");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "h{i}: CNI {command} {ns}: {text}");
    text
}

/// A CNI network configuration may name an overlay: each node's ADDs take
/// addresses of that node's host subnet, pods on different nodes reach
/// each other, and a node that leaves is withdrawn from the others.
#[test]
fn cni_pods_on_three_nodes_meet_on_an_overlay() {
    let mut c = Cluster::new(3);
    let conf = serde_json::json!({
        "cniVersion": "1.0.0", "name": "podlan", "type": "nsnet", "bridge": "podlan0",
        "subnets": ["10.220.0.0/16"],
        "overlay": {"etcd": [ETCD], "leaseTtl": 3}
    });
    for i in 1..=3 {
        c.start_agent(i);
        c.sb.sh(&format!("ip netns add p{i}"));
        let result = cni_on(i, "ADD", &format!("p{i}"), &conf);
        assert!(result.contains("10.220."), "h{i}: {result}");
    }
    let (a1, a2) = (c.addr("p1"), c.addr("p2"));
    assert_ne!(
        a1.rsplit_once('.').unwrap().0,
        a2.rsplit_once('.').unwrap().0,
        "both nodes allocated from one host subnet"
    );
    assert!(
        c.wait_for(Duration::from_secs(10), || c.pings("p2", &a1))
            .is_some(),
        "p2 on h2 cannot reach p1 on h1 ({a1})"
    );
    // h3 goes (its agent dies, its lease lapses): the others withdraw it.
    let a3 = c.addr("p3");
    assert!(
        c.wait_for(Duration::from_secs(10), || c.pings("p1", &a3))
            .is_some(),
        "p1 cannot reach p3 ({a3})"
    );
    c.kill_agent(3);
    assert!(
        c.wait_for(Duration::from_secs(15), || !c.pings("p1", &a3))
            .is_some(),
        "h3 was not withdrawn from h1"
    );
    for i in 1..=2 {
        c.ok(i, "check");
        cni_on(i, "DEL", &format!("p{i}"), &conf);
        c.ok(i, "check");
    }
    // An unknown key of the overlay object is refused when decoding (code 6).
    let mut bad = conf.clone();
    bad["overlay"]["colour"] = serde_json::json!("red");
    c.sb.sh("ip netns add p9");
    let out = Command::new(NSNET)
        .env("CNI_COMMAND", "ADD")
        .env("CNI_CONTAINERID", "id-p9")
        .env("CNI_NETNS", "/run/netns/p9")
        .env("CNI_IFNAME", "eth0")
        .env("NSNET_STATE_DIR", "/run/nsnet-h1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut ch| {
            use std::io::Write;
            ch.stdin
                .take()
                .unwrap()
                .write_all(bad.to_string().as_bytes())?;
            ch.wait_with_output()
        })
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["code"], 6, "{v}");
    assert!(v["details"].as_str().unwrap().contains("colour"), "{v}");
}

/// The sum of the counters of the rules of a table, as `nft -j list
/// table` prints it.
fn counted(listing: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(listing).unwrap();
    v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i.get("rule"))
        .flat_map(|r| r["expr"].as_array().unwrap().iter())
        .filter_map(|e| e["counter"]["packets"].as_u64())
        .sum()
}

/// Packets from the forger's inner address that reached `ns` (a counter
/// in the namespace's own table, made on first use).
fn forged_arrivals(c: &Cluster, ns: &str) -> u64 {
    c.sb.sh(&format!(
        "ip netns exec {ns} nft list table ip probe >/dev/null 2>&1 || \
         ip netns exec {ns} nft -f - <<'EOF'
table ip probe {{
  chain input {{ type filter hook prerouting priority -300; ip saddr 10.200.250.1 counter; }}
}}
EOF"
    ));
    counted(
        &c.sb
            .sh(&format!("ip netns exec {ns} nft -j list table ip probe")),
    )
}

/// Sends ICMP echo requests to `target` from namespace `evil`, over a VXLAN
/// device of `vni` whose packets leave from `source` towards h1's VTEP,
/// addressed to h1's VXLAN device (`mac`), as a forger would. The device
/// sends nothing else: without an IPv6 link-local address it sends no
/// DAD or MLD, which the kernel delays by up to a second, so that they
/// could reach h1 while the next forge is counted.
fn forge(c: &Cluster, vni: u32, source: &str, mac: &str, target: &str) {
    c.sb.sh(&format!(
        "ip -n evil link del vx 2>/dev/null; \
         ip -n evil link add vx type vxlan id {vni} local {source} remote 198.51.100.1 dstport 4789 nolearning && \
         ip -n evil link set vx addrgenmode none && \
         ip -n evil addr add 10.200.250.1/16 dev vx && ip -n evil link set vx up && \
         ip -n evil neigh replace {target} lladdr {mac} dev vx nud permanent && \
         (ip netns exec evil ping -c 3 -i 0.2 -W 1 {target} >/dev/null || true)"
    ));
}

/// The packets the guard dropped on host `i`.
fn guard_drops(c: &Cluster, i: usize) -> u64 {
    counted(&c.sb.sh(&format!(
        "ip netns exec h{i} nft -j list table ip nsnet_vxlan"
    )))
}

/// VXLAN is accepted only from the network's peers: a forged packet from
/// another address of the underlay is dropped before decapsulation; the
/// same packet from a peer's address gets through (the positive control).
#[test]
fn vxlan_is_accepted_only_from_peers() {
    let mut c = Cluster::new(2);
    for i in 1..=2 {
        c.serve(i, "10.200.0.0/16");
    }
    let a1 = c.addr("c1");
    assert!(
        c.wait_for(Duration::from_secs(10), || c.pings("c2", &a1))
            .is_some(),
        "c2 cannot reach c1: {}",
        c.agent_log(2)
    );
    for i in 1..=2 {
        c.ok(i, "check");
    }
    let inspect: serde_json::Value =
        serde_json::from_str(&c.ok(1, &["--json", "network", "inspect", "lab"])).unwrap();
    let vni = inspect["overlay"]["vni"].as_u64().unwrap() as u32;
    let vxlan = inspect["overlay"]["vxlan"].as_str().unwrap().to_string();
    let mac = c.sb.sh(&format!(
        "ip -n h1 -j link show dev {vxlan} | python3 -c 'import json,sys; print(json.load(sys.stdin)[0][\"address\"])'"
    ));
    let mac = mac.trim();
    c.sb.sh(
        "ip netns add evil && ip link add evilu type veth peer name eth0 netns evil && \
             ip link set evilu master ul up && ip -n evil link set lo up && \
             ip -n evil addr add 198.51.100.99/24 dev eth0 && ip -n evil link set eth0 up",
    );
    let (drops, rx) = (guard_drops(&c, 1), forged_arrivals(&c, "c1"));
    forge(&c, vni, "198.51.100.99", mac, &a1);
    assert!(
        guard_drops(&c, 1) >= drops + 3,
        "the forged packets were not dropped"
    );
    assert_eq!(forged_arrivals(&c, "c1"), rx, "a forged packet reached c1");
    // The same from a peer's address (h2's VTEP) gets through.
    c.sb.sh("ip -n evil addr add 198.51.100.2/24 dev eth0 nodad");
    let rx = forged_arrivals(&c, "c1");
    let drops = guard_drops(&c, 1);
    forge(&c, vni, "198.51.100.2", mac, &a1);
    assert!(
        forged_arrivals(&c, "c1") > rx,
        "the peer's packets did not reach c1"
    );
    assert_eq!(guard_drops(&c, 1), drops, "the peer's packets were dropped");
    // A guard emptied by hand is drift, named.
    c.sb.sh(&format!(
        "ip netns exec h1 nft flush set ip nsnet_vxlan peers_{vni}"
    ));
    let out = c.run(1, "check");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("VXLAN guard is stale"), "{text}");
}

/// Member `n` (1-3) of a three-member etcd cluster on the underlay
/// (198.51.100.25N).
fn etcd_member(n: usize) -> Child {
    let me = format!("198.51.100.25{n}");
    let cluster: Vec<String> = (1..=3)
        .map(|m| format!("m{m}=http://198.51.100.25{m}:2380"))
        .collect();
    let log = std::fs::File::create(format!("/run/etcd-m{n}.log")).unwrap();
    crate::common::bound_to_test(&mut Command::new("etcd"))
        .args([
            "--name",
            &format!("m{n}"),
            "--data-dir",
            &format!("/run/etcd-m{n}"),
        ])
        .args(["--listen-client-urls", &format!("http://{me}:2379")])
        .args(["--advertise-client-urls", &format!("http://{me}:2379")])
        .args(["--listen-peer-urls", &format!("http://{me}:2380")])
        .args([
            "--initial-advertise-peer-urls",
            &format!("http://{me}:2380"),
        ])
        .args(["--initial-cluster", &cluster.join(",")])
        .args(["--initial-cluster-state", "new"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("starting an etcd member")
}

/// A three-member etcd cluster loses its leader for good (the first
/// endpoint every host names): claims stay alive, watches follow, peers
/// stay programmed, and a new host still joins, through the other two.
#[test]
fn a_three_member_etcd_cluster_survives_the_loss_of_its_leader() {
    let mut c = Cluster::without_etcd(3);
    c.sb.sh(
        "ip addr add 198.51.100.251/24 dev ul && ip addr add 198.51.100.252/24 dev ul && \
             ip addr add 198.51.100.253/24 dev ul",
    );
    let mut members: Vec<Child> = (1..=3).map(etcd_member).collect();
    let mut all: Vec<String> = (1..=3)
        .map(|m| format!("http://198.51.100.25{m}:2379"))
        .collect();
    let leader = etcd_leader(&c, &all.join(","));
    all.rotate_left(leader);
    let endpoints = &all.join(",");
    let join = |c: &Cluster, i: usize| {
        c.ok(
            i,
            &[
                "network",
                "create",
                "lab",
                "--driver",
                "overlay",
                "--etcd",
                endpoints,
                "--subnet",
                "10.200.0.0/16",
                "--lease-ttl",
                "3",
            ],
        );
        c.ok(i, &["connect", "lab", &format!("c{i}")]);
    };
    for i in 1..=2 {
        join(&c, i);
        c.start_agent(i);
    }
    let a2 = c.addr("c2");
    assert!(c
        .wait_for(Duration::from_secs(5), || c.pings("c1", &a2))
        .is_some());
    // The leader goes for good.
    members[leader].kill().unwrap();
    members[leader].wait().unwrap();
    // Two lease TTLs: the agents renew through the others.
    sleep(Duration::from_secs(2 * TTL + 1));
    assert!(c.pings("c1", &a2), "traffic stopped: {}", c.agent_log(1));
    join(&c, 3);
    c.start_agent(3);
    let a3 = c.addr("c3");
    let reached = c.wait_for(Duration::from_secs(10), || {
        c.pings("c1", &a3) && c.pings("c3", &a2)
    });
    assert!(
        reached.is_some(),
        "h3 not reached: {}\n{}",
        c.agent_log(1),
        c.agent_log(3)
    );
    let keys = c.sb.sh(&format!(
        "ETCDCTL_API=3 etcdctl --endpoints {endpoints} get --prefix --keys-only /nsnet/"
    ));
    let claims = keys.lines().filter(|k| k.contains("/subnets/")).count();
    assert_eq!(claims, 3, "every host keeps one claim: {keys}");
    for i in 1..=3 {
        c.ok(i, "check");
    }
    for m in &mut members {
        let _ = m.kill();
        let _ = m.wait();
    }
}

/// Certificates made with openssl in /run/pki: a CA and another CA, a
/// server certificate for the etcd addresses (serverAuth and clientAuth:
/// etcd's JSON gateway presents it to etcd's own gRPC port), a client
/// certificate, and the same client key with a certificate that expired.
fn make_pki(c: &Cluster) {
    c.sb.sh(
        "set -e; mkdir -p /run/pki && cd /run/pki
         key() { openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $1.key -out $1.csr -subj /CN=$2 2>/dev/null; }
         for ca in ca other-ca; do
           openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $ca.key \
             -out $ca.pem -subj /CN=nsnet-test-$ca -days 1 2>/dev/null
         done
         key server etcd
         printf 'subjectAltName=IP:198.51.100.254,IP:198.51.100.253\\nextendedKeyUsage=serverAuth,clientAuth\\n' > server.ext
         openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -extfile server.ext -out server.pem 2>/dev/null
         key client host
         printf 'extendedKeyUsage=clientAuth\\n' > client.ext
         openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -days 1 -extfile client.ext -out client.pem 2>/dev/null
         openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -days -1 -extfile client.ext -out expired.pem 2>/dev/null",
    );
}

/// etcd on `addr` over TLS with the test PKI's server certificate, and
/// more `flags`; waits until it answers.
fn start_tls_etcd(c: &mut Cluster, name: &str, addr: &str, flags: &[&str]) {
    let url = format!("https://{addr}:2379");
    let peer = format!("http://{addr}:2380");
    let log = std::fs::File::create(format!("/run/etcd-{name}.log")).unwrap();
    let child = crate::common::bound_to_test(&mut Command::new("etcd"))
        .args(["--name", name, "--data-dir", &format!("/run/etcd-{name}")])
        .args([
            "--listen-client-urls",
            &url,
            "--advertise-client-urls",
            &url,
        ])
        .args(["--listen-peer-urls", &peer])
        .args(["--initial-advertise-peer-urls", &peer])
        .args(["--initial-cluster", &format!("{name}={peer}")])
        .args(["--cert-file", "/run/pki/server.pem"])
        .args(["--key-file", "/run/pki/server.key"])
        .args(flags)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("starting etcd");
    c.more.push(child);
    let up = c.wait_for(Duration::from_secs(20), || {
        let out = c.sb.sh_status(&format!(
            "curl -s -m 1 --cacert /run/pki/ca.pem --cert /run/pki/client.pem --key /run/pki/client.key {url}/health"
        ));
        String::from_utf8_lossy(&out.stdout).contains("true")
    });
    assert!(
        up.is_some(),
        "{}",
        c.sb.sh(&format!("tail -5 /run/etcd-{name}.log"))
    );
}

/// `network create NAME --driver overlay` on etcd at `url`, with `extra`.
fn overlay_on(url: &str, name: &str, subnet: &str, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = overlay_args(name, subnet)
        .into_iter()
        .map(str::to_string)
        .collect();
    a[6] = url.to_string();
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// etcd with client-certificate authentication: hosts with a certificate
/// signed by etcd's CA join (given as options, or through `NSNET_ETCD_*`)
/// and their agents reach each other; a missing client certificate, an
/// expired one, and a server certificate from another CA are each refused
/// with an error that says which, leaving nothing made.
#[test]
fn etcd_over_tls_takes_client_certificates() {
    let mut c = Cluster::without_etcd(2);
    make_pki(&c);
    start_tls_etcd(
        &mut c,
        "certs",
        "198.51.100.254",
        &["--client-cert-auth", "--trusted-ca-file", "/run/pki/ca.pem"],
    );
    let tls = "https://198.51.100.254:2379";
    let create = |extra: &[&str]| overlay_on(tls, "lab", "10.200.0.0/16", extra);
    let before = c.host_snapshot(1);
    let (ca, other_ca) = ("/run/pki/ca.pem", "/run/pki/other-ca.pem");
    let (cert, expired, key) = (
        "/run/pki/client.pem",
        "/run/pki/expired.pem",
        "/run/pki/client.key",
    );
    let refusals: [(&[&str], &str); 3] = [
        (&["--etcd-ca", ca], "refused this host's client certificate"),
        (
            &["--etcd-ca", ca, "--etcd-cert", expired, "--etcd-key", key],
            "refused this host's client certificate",
        ),
        (
            &[
                "--etcd-ca",
                other_ca,
                "--etcd-cert",
                cert,
                "--etcd-key",
                key,
            ],
            "does not verify",
        ),
    ];
    for (extra, says) in refusals {
        let err = c.fails(1, &create(extra), 1);
        assert!(err.contains(says) && err.contains(tls), "{extra:?}: {err}");
        assert_eq!(c.host_snapshot(1), before, "{extra:?} left something");
    }
    c.ok(
        1,
        &create(&["--etcd-ca", ca, "--etcd-cert", cert, "--etcd-key", key]),
    );
    // The same through the environment.
    let out = c
        .cmd(2, &create(&[]))
        .env("NSNET_ETCD_CA", ca)
        .env("NSNET_ETCD_CERT", cert)
        .env("NSNET_ETCD_KEY", key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for i in 1..=2 {
        c.ok(i, &["connect", "lab", &format!("c{i}")]);
        c.start_agent(i);
    }
    let a2 = c.addr("c2");
    let reached = c.wait_for(Duration::from_secs(10), || c.pings("c1", &a2));
    assert!(reached.is_some(), "{}\n{}", c.agent_log(1), c.agent_log(2));
    let inspect = c.ok(1, &["network", "inspect", "lab", "--json"]);
    assert!(
        inspect.contains("\"key\": \"/run/pki/client.key\""),
        "{inspect}"
    );
}

/// etcd with users (TLS for the server only): a wrong password is refused;
/// the right one (from a file) works; an agent learns of a new host after a
/// restart of etcd, which forgets its tokens; the password appears in no
/// record, listing or log.
#[test]
fn etcd_users_log_in_and_their_password_is_never_shown() {
    let mut c = Cluster::without_etcd(2);
    make_pki(&c);
    start_tls_etcd(&mut c, "users", "198.51.100.254", &[]);
    let users = "https://198.51.100.254:2379";
    c.sb.sh(&format!(
        "set -e; C='etcdctl --endpoints {users} --cacert /run/pki/ca.pem'
         $C user add root:rootpw && $C role add nsnet
         $C role grant-permission nsnet --prefix=true readwrite /nsnet/
         $C user add nsnet:s3cret-pw && $C user grant-role nsnet nsnet
         $C auth enable 2>/dev/null
         echo s3cret-pw > /run/pw && echo guess > /run/wrong-pw"
    ));
    let join = |pw: &str| {
        let login = ["--etcd-ca", "/run/pki/ca.pem", "--etcd-user", "nsnet"];
        overlay_on(
            users,
            "lab",
            "10.201.0.0/16",
            &[&login[..], &["--etcd-password-file", pw]].concat(),
        )
    };
    let err = c.fails(2, &join("/run/wrong-pw"), 1);
    assert!(err.contains("refused user nsnet"), "{err}");
    c.ok(2, &join("/run/pw"));
    c.ok(2, &["connect", "lab", "c2"]);
    c.start_agent(2);
    sleep(Duration::from_secs(2));
    // etcd keeps tokens in memory: after a restart, h2's agent follows
    // the claims again (a lost watch, a new list) only with a new token.
    let mut first = c.more.pop().unwrap();
    first.kill().unwrap();
    first.wait().unwrap();
    start_tls_etcd(&mut c, "users", "198.51.100.254", &[]);
    c.ok(1, &join("/run/pw"));
    c.ok(1, &["connect", "lab", "c1"]);
    c.start_agent(1);
    let a1 = c.addr("c1");
    let reached = c.wait_for(Duration::from_secs(10), || c.pings("c2", &a1));
    assert!(reached.is_some(), "h2 did not learn h1: {}", c.agent_log(2));
    let shown = format!(
        "{}{}{}",
        c.ok(2, &["network", "inspect", "lab", "--json"]),
        c.agent_log(2),
        c.sb.sh("cat /run/nsnet-h2/* 2>/dev/null || true")
    );
    assert!(!shown.contains("s3cret"), "the password leaked: {shown}");
    assert!(shown.contains("\"user\": \"nsnet\""), "{shown}");
}

/// Host `i` cut off from etcd (its underlay packets to etcd dropped), or
/// joined again.
fn cut_off(c: &Cluster, i: usize, cut: bool) {
    if cut {
        c.sb.sh(&format!(
            "ip netns exec h{i} nft -f - <<'EOF'
table ip partition {{
  chain out {{ type filter hook output priority 0; ip daddr 198.51.100.254 tcp dport 2379 drop; }}
}}
EOF"
        ));
    } else {
        c.sb.sh(&format!("ip netns exec h{i} nft delete table ip partition"));
    }
}

/// The claims in etcd: host subnet (`A.B.C.D/LEN`) → VTEP.
fn claims_in_etcd(c: &Cluster) -> std::collections::BTreeMap<String, String> {
    let out = c.sb.sh(&format!(
        "ETCDCTL_API=3 etcdctl --endpoints {ETCD} get --prefix /nsnet/v1/networks/lab/subnets/"
    ));
    let lines: Vec<&str> = out.lines().filter(|l| !l.is_empty()).collect();
    lines
        .chunks(2)
        .map(|kv| {
            let subnet = kv[0].rsplit('/').next().unwrap().replace('-', "/");
            let v: serde_json::Value = serde_json::from_str(kv[1]).unwrap();
            (subnet, v["vtep"].as_str().unwrap().to_string())
        })
        .collect()
}

/// The peers host `i`'s kernel is programmed with: subnet → VTEP.
fn peers_of(c: &Cluster, i: usize) -> std::collections::BTreeMap<String, String> {
    let json = c.ok(i, &["network", "inspect", "lab", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let net = if v.is_array() { &v[0] } else { &v };
    net["overlay"]["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let s = |k: &str| p[k].as_str().unwrap().to_string();
            (s("subnet"), s("vtep"))
        })
        .collect()
}

/// Every host in `hosts` routes each other host's claim to that host's
/// VTEP and nothing else: one route per subnet, the claimant's.
fn assert_peers_follow_etcd(c: &Cluster, hosts: &[usize]) {
    let claims = claims_in_etcd(c);
    for &i in hosts {
        let me = format!("198.51.100.{i}");
        let wanted: std::collections::BTreeMap<String, String> = claims
            .iter()
            .filter(|(_, v)| **v != me)
            .map(|(s, v)| (s.clone(), v.clone()))
            .collect();
        let settled = c.wait_for(Duration::from_secs(5), || peers_of(c, i) == wanted);
        assert!(
            settled.is_some(),
            "h{i} routes {:?}, etcd claims {claims:?}\n{}",
            peers_of(c, i),
            c.agent_log(i)
        );
    }
}

/// A host cut off from etcd for three lease TTLs loses its claim; a host
/// that joins meanwhile does not get its subnet (held), traffic among the
/// others goes on, and the returning host claims its subnet again.
#[test]
fn a_host_cut_off_from_etcd_finds_its_subnet_held() {
    let mut c = Cluster::new(4);
    for i in 1..=3 {
        c.serve(i, "10.200.0.0/16");
    }
    let before = claims_in_etcd(&c);
    let (a1, a2) = (c.addr("c1"), c.addr("c2"));
    assert!(c
        .wait_for(Duration::from_secs(5), || c.pings("c2", &a1))
        .is_some());
    cut_off(&c, 3, true);
    let lapsed = c.wait_for(Duration::from_secs(3 * TTL), || {
        claims_in_etcd(&c).len() == 2
    });
    assert!(lapsed.is_some(), "h3's claim did not lapse");
    c.join(4, "10.200.0.0/16");
    c.ok(4, &["connect", "lab", "c4"]);
    c.start_agent(4);
    let h3_subnet = before.iter().find(|(_, v)| *v == "198.51.100.3").unwrap().0;
    let now = claims_in_etcd(&c);
    assert!(
        !now.contains_key(h3_subnet),
        "h4 took h3's held subnet: {now:?}"
    );
    sleep(Duration::from_secs(TTL));
    assert!(c.pings("c1", &a2), "traffic between the others stopped");
    let a4 = c.addr("c4");
    assert!(c
        .wait_for(Duration::from_secs(5), || c.pings("c1", &a4))
        .is_some());
    cut_off(&c, 3, false);
    let back = c.wait_for(Duration::from_secs(3 * TTL), || {
        claims_in_etcd(&c).get(h3_subnet).map(String::as_str) == Some("198.51.100.3")
    });
    assert!(
        back.is_some(),
        "h3 did not claim its subnet again: {}",
        c.agent_log(3)
    );
    assert_peers_follow_etcd(&c, &[1, 2, 3, 4]);
    let a3 = c.addr("c3");
    assert!(c
        .wait_for(Duration::from_secs(5), || c.pings("c4", &a3))
        .is_some());
    for i in 1..=4 {
        c.ok(i, "check");
    }
}

/// When no other subnet is free, a lapsed subnet goes to a new host; the
/// returning host finds it taken: it stops announcing it, logs it, and
/// `check`, `show` and `inspect` say the network is degraded and what to
/// do. Nobody routes the subnet to two hosts. When the new host leaves,
/// the subnet is the returning host's again.
#[test]
fn a_returning_host_whose_subnet_was_taken_reports_the_conflict() {
    let mut c = Cluster::new(3);
    // Two host subnets in all.
    let join = |c: &Cluster, i: usize| {
        let mut args = overlay_args("lab", "10.200.0.0/23");
        args.extend(["--host-subnet-len", "24"]);
        c.ok(i, &args);
        c.ok(i, &["connect", "lab", &format!("c{i}")]);
    };
    for i in 1..=2 {
        join(&c, i);
        c.start_agent(i);
    }
    let before = claims_in_etcd(&c);
    cut_off(&c, 2, true);
    let lapsed = c.wait_for(Duration::from_secs(3 * TTL), || {
        claims_in_etcd(&c).len() == 1
    });
    assert!(lapsed.is_some(), "h2's claim did not lapse");
    join(&c, 3);
    c.start_agent(3);
    let h2_subnet = before.iter().find(|(_, v)| *v == "198.51.100.2").unwrap().0;
    assert_eq!(
        claims_in_etcd(&c).get(h2_subnet).map(String::as_str),
        Some("198.51.100.3"),
        "h3 should get the only subnet left"
    );
    cut_off(&c, 2, false);
    // Until check names the conflict: right after the cut ends, a peer
    // the agent is still reprogramming is drift of another kind.
    let noted = c.wait_for(Duration::from_secs(3 * TTL), || {
        String::from_utf8_lossy(&c.run(2, "check").stdout).contains("degraded")
    });
    assert!(noted.is_some(), "h2 noted nothing: {}", c.agent_log(2));
    let out = c.run(2, "check");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("degraded")
            && text.contains("198.51.100.3")
            && text.contains("leave and join again"),
        "{text}"
    );
    assert!(c.ok(2, "show").contains("DEGRADED"));
    assert!(c
        .ok(2, &["network", "inspect", "lab", "--json"])
        .contains("\"conflict\""));
    assert!(c.agent_log(2).contains("DEGRADED"), "{}", c.agent_log(2));
    // h2 routes nothing to h3 for its own subnet; h1 routes it to h3 only.
    assert_peers_follow_etcd(&c, &[1, 3]);
    assert!(
        !peers_of(&c, 2).contains_key(h2_subnet),
        "{:?}",
        peers_of(&c, 2)
    );
    let a3 = c.addr("c3");
    assert!(
        c.pings("c1", &a3),
        "h1 does not reach the subnet's new holder"
    );
    // h3 leaves: the subnet is h2's again, and the network whole.
    c.ok(3, &["network", "rm", "lab", "--force"]);
    let healed = c.wait_for(Duration::from_secs(3 * TTL), || {
        c.run(2, "check").status.success()
    });
    assert!(healed.is_some(), "{}", c.agent_log(2));
    assert_eq!(
        claims_in_etcd(&c).get(h2_subnet).map(String::as_str),
        Some("198.51.100.2")
    );
}

/// The index (0-2) of the three-member cluster's leader, once it has one.
fn etcd_leader(c: &Cluster, endpoints: &str) -> usize {
    let mut leader = None;
    c.wait_for(Duration::from_secs(20), || {
        let out = c.sb.sh_status(&format!(
            "ETCDCTL_API=3 etcdctl --endpoints {endpoints} endpoint status -w json"
        ));
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
            return false;
        };
        leader = v.as_array().and_then(|members| {
            members.iter().position(|m| {
                let s = &m["Status"];
                s["leader"].as_u64().is_some() && s["leader"] == s["header"]["member_id"]
            })
        });
        leader.is_some()
    });
    leader.expect("the etcd cluster elected no leader")
}

/// Ten hosts join while the etcd leader is killed (the first endpoint each
/// host names), five before, five during the election: every join
/// succeeds or fails with nothing made, and no two hosts hold one subnet,
/// in etcd or in their kernels.
#[test]
fn ten_hosts_join_while_the_etcd_leader_is_killed() {
    let c = Cluster::without_etcd(10);
    c.sb.sh(
        "ip addr add 198.51.100.251/24 dev ul && ip addr add 198.51.100.252/24 dev ul && \
         ip addr add 198.51.100.253/24 dev ul",
    );
    let mut members: Vec<Child> = (1..=3).map(etcd_member).collect();
    let all: Vec<String> = (1..=3)
        .map(|m| format!("http://198.51.100.25{m}:2379"))
        .collect();
    let leader = etcd_leader(&c, &all.join(","));
    let mut order = all.clone();
    order.rotate_left(leader);
    let endpoints = order.join(",");
    let join = |i: usize| {
        let mut args = overlay_args("lab", "10.200.0.0/16");
        args[6] = &endpoints;
        args[10] = "60";
        c.cmd(i, &args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // Five joins under way when the leader dies, five during the election.
    let started = Instant::now();
    let mut joins: Vec<Child> = (1..=5).map(join).collect();
    sleep(Duration::from_millis(40));
    members[leader].kill().unwrap();
    members[leader].wait().unwrap();
    joins.extend((6..=10).map(join));
    let mut joined = Vec::new();
    for (i, j) in (1..=10).zip(joins) {
        let out = j.wait_with_output().unwrap();
        eprintln!("h{i}: done after {:?}", started.elapsed());
        if out.status.success() {
            joined.push(i);
        } else {
            let snapshot = c.host_snapshot(i);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                !snapshot.contains("lab"),
                "h{i} failed ({err}) but left: {snapshot}"
            );
            eprintln!("h{i}: {err}");
        }
    }
    let survivors: Vec<&String> = all
        .iter()
        .enumerate()
        .filter(|(m, _)| *m != leader)
        .map(|(_, e)| e)
        .collect();
    let claims = c.sb.sh(&format!(
        "ETCDCTL_API=3 etcdctl --endpoints {} get --prefix /nsnet/v1/networks/lab/subnets/",
        survivors
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(",")
    ));
    let lines: Vec<&str> = claims.lines().filter(|l| !l.is_empty()).collect();
    let mut by_vtep = std::collections::BTreeMap::new();
    for kv in lines.chunks(2) {
        let subnet = kv[0].rsplit('/').next().unwrap().replace('-', "/");
        let v: serde_json::Value = serde_json::from_str(kv[1]).unwrap();
        let vtep = v["vtep"].as_str().unwrap().to_string();
        assert!(
            by_vtep.insert(vtep.clone(), subnet).is_none(),
            "{vtep} holds two subnets: {claims}"
        );
    }
    let mut bridges = BTreeSet::new();
    for &i in &joined {
        let route =
            c.sb.sh(&format!("ip -n h{i} -4 -o route show dev lab proto kernel"));
        let subnet = route.split_whitespace().next().unwrap().to_string();
        assert!(bridges.insert(subnet.clone()), "two hosts on {subnet}");
        assert_eq!(
            by_vtep.get(&format!("198.51.100.{i}")),
            Some(&subnet),
            "h{i}'s bridge has {subnet}; etcd: {claims}"
        );
    }
    eprintln!(
        "{} of 10 joins succeeded while the leader was killed",
        joined.len()
    );
    assert!(
        joined.len() >= 8,
        "joins failed instead of moving to another member: {joined:?}"
    );
    for m in &mut members {
        let _ = m.kill();
        let _ = m.wait();
    }
}

/// Twenty hosts join and leave for a bounded time (a seeded sequence),
/// while namespaces on them keep reaching each other; at the end every
/// member's peers are etcd's claims, `check` is clean on each, and the
/// hosts that left have nothing left.
#[test]
fn twenty_hosts_churn_and_end_with_the_peers_etcd_holds() {
    const HOSTS: usize = 20;
    let mut c = Cluster::new(HOSTS);
    let mut members = BTreeSet::new();
    let join = |c: &mut Cluster, i: usize| {
        c.serve(i, "10.200.0.0/16");
    };
    for i in 1..=10 {
        join(&mut c, i);
        members.insert(i);
    }
    // A fixed linear congruential sequence: the same churn on every run.
    let mut seed: u64 = 0x6e736e6574;
    let mut next = |n: usize| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as usize % n
    };
    let end = Instant::now() + Duration::from_secs(20);
    let mut steps = 0;
    while Instant::now() < end && steps < 60 {
        steps += 1;
        let i = next(HOSTS) + 1;
        if members.remove(&i) {
            c.kill_agent(i);
            c.ok(i, &["network", "rm", "lab", "--force"]);
        } else {
            join(&mut c, i);
            members.insert(i);
        }
        if steps % 4 == 0 && members.len() >= 2 {
            let list: Vec<usize> = members.iter().copied().collect();
            let (from, to) = (list[next(list.len())], list[next(list.len())]);
            if from != to {
                let a = c.addr(&format!("c{to}"));
                let reached =
                    c.wait_for(Duration::from_secs(3), || c.pings(&format!("c{from}"), &a));
                assert!(
                    reached.is_some(),
                    "step {steps}: c{from} does not reach c{to}\n{}",
                    c.agent_log(to)
                );
            }
        }
    }
    let list: Vec<usize> = members.iter().copied().collect();
    assert_eq!(claims_in_etcd(&c).len(), list.len(), "{list:?}");
    assert_peers_follow_etcd(&c, &list);
    for &i in &list {
        c.ok(i, "check");
    }
    for i in (1..=HOSTS).filter(|i| !members.contains(i)) {
        let left = c.sb.sh(&format!("ip -n h{i} -br link"));
        assert!(!left.contains("nsv"), "h{i} left a VXLAN device: {left}");
    }
    eprintln!("{steps} steps of churn, {} members at the end", list.len());
}
