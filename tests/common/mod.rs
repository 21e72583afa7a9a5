//! The sandbox every kernel-touching test runs in: a fresh network
//! namespace and a private mount namespace, entered by the test's own
//! thread (libtest runs each test on a thread of its own), with tmpfs over
//! `/run` (so `/run/netns` and `/run/nsnet` start empty) and over
//! `/etc/netns`. Commands the test spawns inherit both namespaces. The
//! host's root namespace is never touched; `.ci/run` checks it afterwards.
#![allow(dead_code)]

use std::fs;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::process::{Command, Output};

use nix::sched::{setns, CloneFlags};

pub const NSNET: &str = env!("CARGO_BIN_EXE_nsnet");

/// Drops the kernel-derived carrier details (see `Sandbox::snapshot`).
fn settled(v: serde_json::Value) -> String {
    use serde_json::Value;
    let Value::Array(items) = v else {
        return v.to_string();
    };
    let mut out = Vec::new();
    for mut item in items {
        let dst = item.get("dst").and_then(|d| d.as_str()).unwrap_or("");
        if dst.starts_with("fe80:") || dst == "ff00::/8" {
            continue;
        }
        if let Some(obj) = item.as_object_mut() {
            obj.remove("operstate");
            // A link gets its default qdisc the first time it comes up and
            // keeps it when it goes down again.
            obj.remove("qdisc");
            if let Some(Value::Array(flags)) = obj.get_mut("flags") {
                flags.retain(|f| {
                    !matches!(f.as_str(), Some("NO-CARRIER" | "LOWER_UP" | "linkdown"))
                });
            }
            if let Some(Value::Array(addrs)) = obj.get_mut("addr_info") {
                addrs.retain(|a| {
                    !(a.get("family").and_then(|f| f.as_str()) == Some("inet6")
                        && a.get("scope").and_then(|f| f.as_str()) == Some("link"))
                });
            }
        }
        out.push(item);
    }
    out.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

pub struct Sandbox {
    /// Set in the environment of every command the sandbox runs, which
    /// all they start inherit: the watchdog's way to find them.
    id: String,
}

/// The environment variable that names a process's sandbox.
const SANDBOX_ENV: &str = "NSNET_TEST_SANDBOX";

/// A command line for nsnet: a string split on whitespace, as one would
/// type it (`"network create lab --subnet 10.0.0.0/24"`), or a list of
/// arguments (for an argument with a space in it, or one built at run
/// time).
pub trait Argv {
    fn argv(&self) -> Vec<String>;
}

impl Argv for &str {
    fn argv(&self) -> Vec<String> {
        self.split_whitespace().map(str::to_string).collect()
    }
}

impl Argv for String {
    fn argv(&self) -> Vec<String> {
        self.as_str().argv()
    }
}

impl<T: AsRef<str>> Argv for &[T] {
    fn argv(&self) -> Vec<String> {
        self.iter().map(|a| a.as_ref().to_string()).collect()
    }
}

impl<T: AsRef<str>, const N: usize> Argv for &[T; N] {
    fn argv(&self) -> Vec<String> {
        self.as_slice().argv()
    }
}

impl<T: AsRef<str>> Argv for &Vec<T> {
    fn argv(&self) -> Vec<String> {
        self.as_slice().argv()
    }
}

/// Fails loudly when one of `tools` is not on the PATH; `install` says
/// what provides them.
pub fn require_tools(tools: &[&str], install: &str) {
    for tool in tools {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .unwrap()
            .status
            .success();
        assert!(found, "{tool} is needed ({install})");
    }
}

/// Makes a process the test spawns die with the test's thread, even when
/// the whole test binary is killed (the kernel's parent-death signal):
/// servers a test starts (etcd, dnsmasq, agents) never outlive it.
pub fn bound_to_test(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl(2) is async-signal-safe and touches no memory of ours;
    // nothing else runs between fork and exec here.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// A watchdog per sandbox for what nsnet starts detached (its DNS server,
/// the processes of topology nodes): when the test's thread ends, however
/// it ends, the kernel sends it SIGTERM and it kills every process left in
/// the sandbox's mount namespace, and every process that carries the
/// sandbox's id in its environment (those in mount namespaces of their
/// own: `nsnet exec` makes one for each node process, the demo one for
/// itself).
fn start_watchdog(id: &str) {
    let script = r#"me=$(readlink /proc/self/ns/mnt); mark="NSNET_TEST_SANDBOX=$1"
trap 'for d in /proc/[0-9]*; do p=${d#/proc/}; [ "$p" = $$ ] && continue;
  if [ "$(readlink "$d/ns/mnt" 2>/dev/null)" = "$me" ] ||
     tr "\0" "\n" < "$d/environ" 2>/dev/null | grep -qx "$mark"; then kill -9 "$p" 2>/dev/null; fi
  done; exit 0' TERM
while :; do sleep 3600 & wait $!; done"#;
    let mut cmd = Command::new("sh");
    // The id goes as an argument: the watchdog's own environment is clean.
    cmd.args(["-c", script, "watchdog", id])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    use std::os::unix::process::CommandExt;
    // SAFETY: as in `bound_to_test`, with SIGTERM so that the shell's trap
    // runs.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // Never waited for: it lives exactly as long as the test's thread.
    std::mem::forget(cmd.spawn().expect("starting the sandbox watchdog"));
}

/// Daemons nsnet started inside the sandbox (its DNS server, one per state
/// directory under the sandbox's own /run) die with the test.
impl Drop for Sandbox {
    fn drop(&mut self) {
        let dirs = fs::read_dir("/run").into_iter().flatten().flatten();
        for d in dirs {
            // The PID file outlives its server: only a live nsnet-dns is killed.
            if let Some(pid) = nsnet::api::dns::running(&d.path()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

impl Sandbox {
    pub fn new() -> Sandbox {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test needs root: it creates namespaces, bridges and veths inside a private sandbox \
             (run the README's test command as root)"
        );
        nsnet::kernel::sandbox::enter().expect("entering the test sandbox");
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("{}-{n}", std::process::id());
        start_watchdog(&id);
        let sb = Sandbox { id };
        sb.sh("ip link set lo up");
        sb
    }

    /// Runs nsnet with `args`.
    pub fn run(&self, args: impl Argv) -> Output {
        self.run_env(args, &[])
    }

    /// A command of this sandbox: what it starts carries the sandbox's id.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env(SANDBOX_ENV, &self.id);
        c
    }

    pub fn run_env(&self, args: impl Argv, env: &[(&str, &str)]) -> Output {
        let mut c = self.command(NSNET);
        c.args(args.argv());
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().expect("running nsnet")
    }

    /// Runs nsnet and insists on success; returns stdout.
    #[track_caller]
    pub fn ok(&self, args: impl Argv) -> String {
        let args = args.argv();
        let out = self.run(&args);
        assert!(
            out.status.success(),
            "nsnet {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs nsnet and insists on failure with `code`; returns stderr.
    #[track_caller]
    pub fn fails(&self, args: impl Argv, code: i32) -> String {
        let args = args.argv();
        let out = self.run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(code),
            "nsnet {args:?}: expected exit {code}, got {}\nstdout: {}\nstderr: {stderr}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
        );
        stderr
    }

    /// Runs a shell command (iproute2, nft, ping as independent oracles).
    pub fn sh_status(&self, cmd: &str) -> Output {
        self.command("bash")
            .args(["-c", cmd])
            .output()
            .expect("running bash")
    }

    pub fn sh(&self, cmd: &str) -> String {
        let out = self.sh_status(cmd);
        assert!(
            out.status.success(),
            "`{cmd}` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Everything a teardown must restore, as text: links, addresses,
    /// routes, the nftables ruleset, sysctls, /run/netns and the state dir.
    ///
    /// Left out is only what the kernel derives by itself, late, from
    /// carrier events: a bridge's carrier flags and operstate (updated
    /// asynchronously by linkwatch after its last port goes) and the IPv6
    /// link-local address (and its fe80 routes) and the ff00::/8 multicast
    /// route it gains when IPv6 first comes up with carrier, and the default qdisc a link keeps after its first up.
    pub fn snapshot(&self) -> String {
        self.settle();
        let mut s = String::new();
        for cmd in [
            "ip -j link show",
            "ip -j addr show",
            "ip -j route show table all",
            "ip -6 -j route show table all",
        ] {
            let v: serde_json::Value = serde_json::from_str(&self.sh(cmd)).expect("ip -j output");
            s.push_str(&format!("## {cmd}\n{}\n", settled(v)));
        }
        for cmd in [
            "nft -j list ruleset",
            "sysctl net.ipv4.ip_forward net.ipv6.conf.all.forwarding",
            // Names, types and modes; not times (a directory's mtime moves
            // whenever an entry comes and goes).
            "find /run/netns /run/nsnet -printf '%p %y %m %s\\n' 2>/dev/null | sort",
        ] {
            s.push_str(&format!("## {cmd}\n{}\n", self.sh(cmd)));
        }
        s
    }

    /// Waits (at most 5 s) until no link whose name starts with `prefix`
    /// is left: the host ends of a namespace deleted by hand go with it,
    /// asynchronously.
    pub fn gone_with_namespace(&self, prefix: &str) {
        for _ in 0..100 {
            let links = self.sh("ip -o link show");
            if !links.lines().any(|l| {
                l.split(": ")
                    .nth(1)
                    .is_some_and(|name| name.starts_with(prefix))
            }) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("links {prefix}* outlived their namespace by 5 s");
    }

    /// Asserts that the host is back to `before` within 5 s: interfaces of
    /// a namespace deleted by hand go with it, asynchronously (the kernel's
    /// namespace clean-up runs late on a loaded machine).
    #[track_caller]
    pub fn assert_back_to(&self, before: &str, what: &str) {
        let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut now = self.snapshot();
        while now != before && std::time::Instant::now() < end {
            std::thread::sleep(std::time::Duration::from_millis(50));
            now = self.snapshot();
        }
        assert_same(&now, before, what);
    }

    /// Runs `check` (with `extra` arguments) where drift is expected:
    /// asserts its exit code 1 and returns what it printed.
    #[track_caller]
    pub fn drift(&self, extra: &[&str]) -> String {
        let mut args = vec!["check"];
        args.extend_from_slice(extra);
        let out = self.run(&args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {text}");
        text
    }

    /// Waits (at most 3 s) until no host end parked by a disconnect is left:
    /// the kernel destroys those with their namespace, asynchronously.
    pub fn settle(&self) {
        for _ in 0..150 {
            // Host ends a disconnect parked (nsnet's PARKED_LINK_GROUP),
            // destroyed with their namespace, asynchronously.
            let links = self.sh("ip -o link show type veth group 1073741822");
            let parked = !links.trim().is_empty();
            if !parked {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// A simulated upstream: namespace `up` at 203.0.113.1/24, linked to the
    /// sandbox's root namespace (203.0.113.2/24) which routes by default
    /// through it. `up` has no route back to any bridge subnet.
    pub fn upstream(&self) {
        self.sh(
            "ip netns add up && ip link add up0 type veth peer name eth0 netns up && \
             ip addr add 203.0.113.2/24 dev up0 && ip link set up0 up && \
             ip -n up addr add 203.0.113.1/24 dev eth0 && ip -n up link set eth0 up && \
             ip -n up link set lo up && ip route add default via 203.0.113.1 dev up0",
        );
    }

    /// A UDP socket bound inside namespace `ns` (a real listener).
    pub fn udp_listener(&self, ns: &str, addr: SocketAddr) -> UdpSocket {
        let f = fs::File::open(format!("/run/netns/{ns}")).expect("opening namespace");
        std::thread::scope(|s| {
            s.spawn(|| {
                setns(f.as_fd(), CloneFlags::CLONE_NEWNET).expect("setns");
                let sock = UdpSocket::bind(addr).expect("bind");
                sock.set_read_timeout(Some(std::time::Duration::from_secs(3)))
                    .unwrap();
                sock
            })
            .join()
            .unwrap()
        })
    }

    /// Sends one UDP datagram from inside `ns` using bash's /dev/udp.
    pub fn udp_send(&self, ns: &str, to: IpAddr, port: u16) {
        self.sh(&format!(
            "ip netns exec {ns} bash -c 'echo hello > /dev/udp/{to}/{port}'"
        ));
    }
}

/// A TCP or UDP echo server inside a namespace: it answers every request
/// with `NAME:REQUEST`, so a test sees which namespace served it. It stops
/// (and releases its namespace) when dropped.
pub struct Echo {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn enter(ns: &str) {
    let f = fs::File::open(format!("/run/netns/{ns}")).expect("opening namespace");
    setns(f.as_fd(), CloneFlags::CLONE_NEWNET).expect("setns");
}

impl Sandbox {
    /// Starts an echo server in `ns` on `port`, all addresses, both families.
    pub fn echo(&self, ns: &str, port: u16, udp: bool) -> Echo {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let name = ns.to_string();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            enter(&name);
            let tick = std::time::Duration::from_millis(20);
            // [::] with IPV6_V6ONLY off takes IPv4 too.
            let addr: SocketAddr = format!("[::]:{port}").parse().unwrap();
            if udp {
                let sock = UdpSocket::bind(addr).expect("udp bind");
                sock.set_read_timeout(Some(tick)).unwrap();
                ready_tx.send(()).unwrap();
                let mut buf = [0u8; 512];
                while !flag.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = sock.recv_from(&mut buf) {
                        let reply = format!("{name}:{}", String::from_utf8_lossy(&buf[..n]));
                        let _ = sock.send_to(reply.as_bytes(), from);
                    }
                }
            } else {
                let listener = std::net::TcpListener::bind(addr).expect("tcp bind");
                listener.set_nonblocking(true).unwrap();
                ready_tx.send(()).unwrap();
                while !flag.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((mut conn, _)) => {
                            conn.set_nonblocking(false).unwrap();
                            conn.set_read_timeout(Some(std::time::Duration::from_secs(2)))
                                .unwrap();
                            let mut buf = [0u8; 512];
                            if let Ok(n) = conn.read(&mut buf) {
                                let reply =
                                    format!("{name}:{}", String::from_utf8_lossy(&buf[..n]));
                                let _ = conn.write_all(reply.as_bytes());
                            }
                        }
                        Err(_) => std::thread::sleep(tick),
                    }
                }
            }
        });
        ready_rx.recv().expect("echo server started");
        Echo {
            stop,
            thread: Some(thread),
        }
    }

    /// Sends "hi" over TCP or UDP from `from` (a namespace, or `None` for
    /// the sandbox's own namespace, "the host") to `to`, and returns the
    /// answer, or the error.
    pub fn ask(&self, from: Option<&str>, to: &str, udp: bool) -> std::io::Result<String> {
        use std::io::{Read, Write};
        let to: SocketAddr = to.parse().expect("socket address");
        let from = from.map(str::to_string);
        std::thread::scope(|s| {
            s.spawn(move || {
                if let Some(ns) = &from {
                    enter(ns);
                }
                let timeout = std::time::Duration::from_millis(1500);
                if udp {
                    let bind: SocketAddr = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
                        .parse()
                        .unwrap();
                    let sock = UdpSocket::bind(bind)?;
                    sock.set_read_timeout(Some(timeout))?;
                    sock.send_to(b"hi", to)?;
                    let mut buf = [0u8; 512];
                    let (n, _) = sock.recv_from(&mut buf)?;
                    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
                } else {
                    let mut conn = std::net::TcpStream::connect_timeout(&to, timeout)?;
                    conn.set_read_timeout(Some(timeout))?;
                    conn.write_all(b"hi")?;
                    let mut reply = String::new();
                    conn.read_to_string(&mut reply)?;
                    Ok(reply)
                }
            })
            .join()
            .expect("client thread")
        })
    }

    /// A UDP socket bound inside `ns`, kept by the test (a client that keeps
    /// its source port).
    pub fn udp_socket(&self, ns: &str, bind: &str) -> UdpSocket {
        let bind: SocketAddr = bind.parse().expect("socket address");
        let ns = ns.to_string();
        std::thread::scope(|s| {
            s.spawn(move || {
                enter(&ns);
                let sock = UdpSocket::bind(bind).expect("bind");
                sock.set_read_timeout(Some(std::time::Duration::from_millis(1500)))
                    .unwrap();
                sock
            })
            .join()
            .expect("socket thread")
        })
    }

    /// Like `upstream`, with IPv6 too: `up` at 2001:db8::1/64, the sandbox
    /// at 2001:db8::2/64.
    pub fn upstream_dual(&self) {
        self.upstream();
        self.sh(
            "ip -n up addr add 2001:db8::1/64 dev eth0 nodad && ip addr add 2001:db8::2/64 dev up0 nodad && \
             ip -6 route add default via 2001:db8::1 dev up0",
        );
    }
}

/// Whether process `pid` has ended (it is gone, or a zombie whose parent
/// has not reaped it yet): at once, without waiting.
pub fn ended(pid: i64) -> bool {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // "PID (COMM) STATE ...".
    stat.rsplit_once(") ")
        .is_none_or(|(_, rest)| rest.starts_with(['Z', 'X']))
}

/// Waits (at most 5 s) until process `pid` has ended; whether it has.
pub fn wait_ended(pid: i64) -> bool {
    for _ in 0..100 {
        if ended(pid) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    ended(pid)
}

/// Asserts two snapshots are equal, showing only the lines that differ.
#[track_caller]
pub fn assert_same(after: &str, before: &str, what: &str) {
    if after == before {
        return;
    }
    let b: Vec<&str> = before.lines().collect();
    let a: Vec<&str> = after.lines().collect();
    let mut diff = String::new();
    for l in &b {
        if !a.contains(l) {
            diff.push_str(&format!("- {}\n", &l[..l.len().min(300)]));
        }
    }
    for l in &a {
        if !b.contains(l) {
            diff.push_str(&format!("+ {}\n", &l[..l.len().min(300)]));
        }
    }
    panic!("{what}: the host differs from before (- before, + after):\n{diff}");
}

/// `nsnet ping` ran and got no reply: ping's status 1 with its statistics
/// saying so, not a failure of nsnet (which also exits 1, with no output).
pub fn assert_no_reply(out: &std::process::Output, what: &str) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{what}: {stdout}");
    assert!(
        stdout.contains("1 packets transmitted, 0 received"),
        "{what}: {stdout}"
    );
    assert!(
        out.stderr.is_empty(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The request was answered by the echo server of namespace `ns`.
#[track_caller]
pub fn served_by(r: std::io::Result<String>, ns: &str, what: &str) {
    match r {
        Ok(reply) => assert_eq!(reply, format!("{ns}:hi"), "{what}"),
        Err(e) => panic!("{what}: {e}"),
    }
}

/// The connection was dropped (a timeout) or refused (RST): not some
/// other failure of the client, such as an unreachable route.
#[track_caller]
pub fn refused(r: std::io::Result<String>, what: &str) {
    use std::io::ErrorKind::*;
    match r {
        Err(e)
            if matches!(
                e.kind(),
                TimedOut | WouldBlock | ConnectionRefused | ConnectionReset
            ) => {}
        other => panic!("{what} should be dropped or refused, got {other:?}"),
    }
}
