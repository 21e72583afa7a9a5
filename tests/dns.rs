//! Name resolution between namespaces, with real resolver clients (glibc's
//! `getent` through the namespace's resolv.conf, and `dig`) against the DNS
//! server nsnet starts, each test in its own sandbox. The simulated upstream
//! DNS server is dnsmasq on 203.0.113.1, answering one name and forwarding
//! nothing.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::Sandbox;

fn getent(sb: &Sandbox, ns: &str, name: &str) -> Option<String> {
    let out = sb.sh_status(&format!("ip netns exec {ns} getent hosts {name}"));
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `dig` from `ns` to `server`: the status word and the answers.
fn dig(sb: &Sandbox, ns: &str, server: &str, args: &str) -> (String, String) {
    // dig exits non-zero when no answer comes: that is an outcome here.
    let out = sb.sh_status(&format!(
        "ip netns exec {ns} dig +tries=1 +time=2 @{server} {args} +noall +comments +answer"
    ));
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = out
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("no answer")
        .to_string();
    let answers = out
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .map(|l| l.split_whitespace().last().unwrap_or("").to_string())
        .collect::<Vec<_>>()
        .join(" ");
    (status, answers)
}

/// Live DNS server processes of this sandbox (its network namespace: other
/// tests run servers of their own at the same time; a killed one may
/// linger as a zombie until the machine's init reaps it, which is no
/// server).
fn dns_pids(sb: &Sandbox) -> String {
    sb.sh(
        "me=$(readlink /proc/self/ns/net); \
         ps -eo pid=,stat=,comm= | awk '$3 == \"nsnet-dns\" && $2 !~ /^Z/ {print $1}' | \
         while read -r p; do [ \"$(readlink /proc/$p/ns/net 2>/dev/null)\" = \"$me\" ] && echo $p; done; true",
    )
}

#[test]
fn members_resolve_each_other_and_nothing_else() {
    let sb = Sandbox::new();
    sb.ok("network create a --subnet 10.61.0.0/24 --subnet fd00:61::/64");
    sb.ok("network create b --subnet 10.62.0.0/24");
    sb.ok("connect a web --alias WWW");
    sb.ok("connect a cli");
    sb.ok("connect b db");
    // glibc through /etc/netns/cli/resolv.conf: the name, the search
    // domain, an alias, case-insensitively.
    let web = getent(&sb, "cli", "web").expect("web resolves");
    assert!(
        web.contains("10.61.0.2") || web.contains("fd00:61::2"),
        "{web}"
    );
    assert!(getent(&sb, "cli", "web.nsnet.internal").is_some());
    assert!(getent(&sb, "cli", "www").is_some());
    // dig at the gateway: A, AAAA, PTR, NXDOMAIN.
    assert_eq!(
        dig(&sb, "cli", "10.61.0.1", "-q WEB -t A"),
        ("NOERROR".into(), "10.61.0.2".into())
    );
    assert_eq!(
        dig(&sb, "cli", "10.61.0.1", "-q web -t AAAA"),
        ("NOERROR".into(), "fd00:61::2".into())
    );
    assert_eq!(
        dig(&sb, "cli", "10.61.0.1", "-x 10.61.0.2"),
        ("NOERROR".into(), "web.nsnet.internal.".into())
    );
    assert_eq!(dig(&sb, "cli", "10.61.0.1", "-q nosuch -t A").0, "NXDOMAIN");
    // Isolation extends to discovery: db is only on b.
    assert_eq!(dig(&sb, "cli", "10.61.0.1", "-q db -t A").0, "NXDOMAIN");
    assert!(getent(&sb, "cli", "db").is_none());
    assert_eq!(
        dig(&sb, "db", "10.62.0.1", "-q db -t A"),
        ("NOERROR".into(), "10.62.0.2".into())
    );
    // Nobody from outside gets an answer: not at the gateway, not at the
    // host's own upstream-facing address.
    sb.upstream();
    let (status, _) = dig(&sb, "up", "10.61.0.1", "-q web -t A");
    assert_eq!(status, "no answer");
    let (status, _) = dig(&sb, "up", "203.0.113.2", "-q web -t A");
    assert_eq!(status, "no answer");
}

#[test]
fn other_names_are_forwarded_but_not_from_internal_networks() {
    let sb = Sandbox::new();
    sb.upstream();
    let _upstream = Upstream::start(&sb);
    sb.ok("network create out --subnet 10.63.0.0/24 --dns 203.0.113.1");
    sb.ok("network create in --subnet 10.64.0.0/24 --internal");
    sb.ok("connect out o1");
    sb.ok("connect in i1");
    assert_eq!(
        dig(&sb, "o1", "10.63.0.1", "-q example.test -t A"),
        ("NOERROR".into(), "192.0.2.7".into())
    );
    // Over TCP too.
    assert_eq!(
        dig(&sb, "o1", "10.63.0.1", "+tcp -q example.test -t A"),
        ("NOERROR".into(), "192.0.2.7".into())
    );
    assert_eq!(
        dig(&sb, "i1", "10.64.0.1", "-q example.test -t A").0,
        "REFUSED"
    );
}

/// dnsmasq in the upstream namespace, answering example.test.
struct Upstream(Child);

impl Upstream {
    fn start(sb: &Sandbox) -> Upstream {
        let child = crate::common::bound_to_test(&mut Command::new("ip"))
            .args([
                "netns",
                "exec",
                "up",
                "dnsmasq",
                "--no-daemon",
                "--no-resolv",
                "--no-hosts",
                "--listen-address=203.0.113.1",
                "--bind-interfaces",
                "--port=53",
                "--address=/example.test/192.0.2.7",
                "--pid-file=",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting dnsmasq (Debian dnsmasq-base)");
        // Dropped (killed and reaped) on every path, a failed start included.
        let upstream = Upstream(child);
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if dig(sb, "up", "203.0.113.1", "-q example.test -t A").0 == "NOERROR" {
                return upstream;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("dnsmasq did not start");
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn names_follow_attachments_while_others_query() {
    let sb = Sandbox::new();
    sb.ok("network create n --subnet 10.65.0.0/24");
    sb.ok("connect n q");
    // Meanwhile, q keeps asking for its own name (bounded: until the rounds
    // are done, at most 5,000 queries): every one must be answered, right.
    let sock = sb.udp_socket("q", "0.0.0.0:0");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let querier = std::thread::spawn(move || {
        let (mut asked, mut wrong) = (0u32, Vec::new());
        while !flag.load(std::sync::atomic::Ordering::Relaxed) && asked < 5000 {
            asked += 1;
            match ask(&sock, "10.65.0.1:53", asked as u16, "q.") {
                Ok((_, answers)) if answers == ["10.65.0.2"] => {}
                other => wrong.push(format!("query {asked}: {other:?}")),
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        (asked, wrong)
    });
    for round in 0..10 {
        let name = format!("x{round}");
        sb.ok(&["connect", "n", &name]);
        // Visible as soon as connect returns.
        let (status, addr) = dig(&sb, "q", "10.65.0.1", &format!("-q {name} -t A"));
        assert_eq!(
            status,
            "NOERROR",
            "round {round}; server log: {}",
            sb.sh("cat /run/nsnet/dns.log 2>/dev/null || true")
        );
        assert!(addr.starts_with("10.65.0."), "round {round}: {addr}");
        // The other names answer the same throughout.
        assert_eq!(
            dig(&sb, "q", "10.65.0.1", "-q q -t A"),
            ("NOERROR".into(), "10.65.0.2".into())
        );
        sb.ok(&["disconnect", "n", &name]);
        assert_eq!(
            dig(&sb, "q", "10.65.0.1", &format!("-q {name} -t A")).0,
            "NXDOMAIN",
            "round {round}"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (asked, wrong) = querier.join().unwrap();
    assert!(asked > 20, "only {asked} queries");
    assert!(
        wrong.is_empty(),
        "{} of {asked} wrong or lost: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
}

#[test]
fn tcp_queries_see_the_record_as_it_is_now() {
    // No other query in between: nothing else makes the server look at the
    // record between the command and the TCP query.
    let sb = Sandbox::new();
    sb.ok("network create n --subnet 10.69.0.0/24");
    sb.ok("connect n q");
    for round in 0..5 {
        let name = format!("t{round}");
        sb.ok(&["connect", "n", &name]);
        let (status, addr) = dig(&sb, "q", "10.69.0.1", &format!("+tcp -q {name} -t A"));
        assert_eq!(
            status, "NOERROR",
            "round {round}: {name} right after connect"
        );
        assert!(addr.starts_with("10.69.0."), "round {round}: {addr}");
        sb.ok(&["disconnect", "n", &name]);
        assert_eq!(
            dig(&sb, "q", "10.69.0.1", &format!("+tcp -q {name} -t A")).0,
            "NXDOMAIN",
            "round {round}: {name} right after disconnect"
        );
    }
}

/// One A query for `name` over `sock` to `server`: the response code and
/// every answer's data (an address for an A record), or what went wrong
/// (an answer to another query included).
fn ask(
    sock: &std::net::UdpSocket,
    server: &str,
    id: u16,
    name: &str,
) -> Result<(String, Vec<String>), String> {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RData, RecordType};
    let mut m = Message::query();
    m.metadata.id = id;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    sock.send_to(&m.to_vec().unwrap(), server)
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 512];
    let (n, _) = sock.recv_from(&mut buf).map_err(|e| e.to_string())?;
    let r = Message::from_vec(&buf[..n]).map_err(|e| e.to_string())?;
    if r.metadata.id != id {
        return Err(format!("an answer to query {}: {r:?}", r.metadata.id));
    }
    let answers = r
        .answers
        .iter()
        .map(|a| match &a.data {
            RData::A(v4) => v4.to_string(),
            other => format!("{other:?}"),
        })
        .collect();
    Ok((format!("{:?}", r.metadata.response_code), answers))
}

#[test]
fn under_load_a_change_is_answered_the_moment_the_command_returns() {
    // A client that asks without pause keeps the server busy; another asks
    // for a name the instant the command that made or removed it returns
    // (no process start in between, as a runtime resolving from an
    // already running process would).
    let sb = Sandbox::new();
    sb.ok("network create n --subnet 10.70.0.0/24");
    sb.ok("connect n q");
    let flood = sb.udp_socket("q", "0.0.0.0:0");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    // Bounded: until the rounds are done, at most 200,000 queries or 60 s.
    let flooder = std::thread::spawn(move || {
        let start = Instant::now();
        let mut asked = 0u32;
        while !flag.load(std::sync::atomic::Ordering::Relaxed)
            && asked < 200_000
            && start.elapsed() < Duration::from_secs(60)
        {
            asked += 1;
            let _ = ask(&flood, "10.70.0.1:53", asked as u16, "q.");
        }
        asked
    });
    let sock = sb.udp_socket("q", "0.0.0.0:0");
    let mut stale = Vec::new();
    for round in 0..60u16 {
        let name = format!("x{round}");
        sb.ok(&["connect", "n", &name]);
        match ask(&sock, "10.70.0.1:53", 2 * round, &format!("{name}.")) {
            Ok((code, addrs)) if code == "NoError" && addrs.len() == 1 => {}
            other => stale.push(format!("{name} after connect: {other:?}")),
        }
        sb.ok(&["disconnect", "n", &name]);
        match ask(&sock, "10.70.0.1:53", 2 * round + 1, &format!("{name}.")) {
            Ok((code, _)) if code == "NXDomain" => {}
            other => stale.push(format!("{name} after disconnect: {other:?}")),
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let asked = flooder.join().unwrap();
    assert!(asked > 1000, "the flood asked only {asked} queries");
    assert!(
        stale.is_empty(),
        "{} stale answers of 120 (flood: {asked} queries): {stale:?}",
        stale.len()
    );
}

#[test]
fn the_server_comes_and_goes_with_the_networks() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    sb.ok("network create n --subnet 10.66.0.0/24");
    sb.ok("connect n alpha");
    assert!(!dns_pids(&sb).is_empty(), "no server");
    // A network without DNS needs none: its gateway is not served.
    sb.ok("network create quiet --subnet 10.67.0.0/24 --no-dns");
    sb.ok("connect quiet b");
    assert_eq!(dig(&sb, "b", "10.67.0.1", "-q alpha -t A").0, "no answer");
    assert!(!sb
        .sh("cat /etc/netns/b/resolv.conf 2>/dev/null || true")
        .contains("10.67.0.1"));
    // Killed: check says so, the next command brings it back.
    // Only this sandbox's server: other tests run theirs meanwhile.
    sb.sh("kill -9 $(cat /run/nsnet/dns.pid)");
    std::thread::sleep(Duration::from_millis(100));
    let text = sb.drift(&[]);
    assert!(text.contains("DNS server"), "{text}");
    sb.ok("connect n c");
    assert_eq!(dig(&sb, "alpha", "10.66.0.1", "-q c -t A").0, "NOERROR");
    // The server sees the record first and leaves on its own; the command
    // still returns only once the process has ended (a zombie has closed
    // its sockets), asked at once from here rather than through a shell.
    let pid = nsnet::api::dns::running(Path::new("/run/nsnet")).expect("the server runs");
    sb.ok("network rm n quiet --force");
    assert!(
        crate::common::ended(pid.into()),
        "the server {pid} is still there"
    );
    // No process, no socket, no file left.
    assert_eq!(dns_pids(&sb), "");
    assert_eq!(
        sb.sh("ss -Hlnup 'sport = :53'; ss -Hlntp 'sport = :53'"),
        ""
    );
    crate::common::assert_same(&sb.snapshot(), &before, "teardown");
    assert_eq!(sb.sh("ls -A /etc/netns 2>/dev/null || true"), "");
}

#[test]
fn a_routed_network_answers_no_query_from_outside() {
    let sb = Sandbox::new();
    sb.upstream();
    sb.ok("network create r --subnet 10.68.0.0/24 --gateway-mode routed");
    sb.ok("connect r srv");
    // The simulated outside routes to the subnet (routed mode lets it in
    // for published ports and ping), but DNS at the gateway is not for it.
    sb.sh("ip -n up route add 10.68.0.0/24 via 203.0.113.2");
    sb.sh("ip netns exec up ping -c 1 -W 2 10.68.0.2");
    assert_eq!(dig(&sb, "up", "10.68.0.1", "-q srv -t A").0, "no answer");
    assert_eq!(
        dig(&sb, "up", "10.68.0.1", "+tcp -q srv -t A").0,
        "no answer"
    );
    assert_eq!(
        dig(&sb, "srv", "10.68.0.1", "-q srv -t A"),
        ("NOERROR".into(), "10.68.0.2".into())
    );
    // Not only the server's member check: the firewall drops such queries
    // before they reach it (a spoofed member address included).
    let rules = sb.sh("nft list table inet nsnet");
    for l4 in ["udp", "tcp"] {
        let rule = rules
            .lines()
            .find(|l| l.contains(&format!("ip daddr 10.68.0.1 {l4} dport 53 iifname != ")))
            .unwrap_or_else(|| panic!("no {l4} DNS rule: {rules}"));
        assert!(rule.contains("drop"), "{rule}");
    }
}
