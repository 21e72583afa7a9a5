//! `nsnet ui` in a real browser (headless Chromium): the page needs its
//! token, draws the routed lab, counts traffic, marks drift, traces.

use std::io::{BufRead, Read, Write};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::{require_tools, Sandbox, NSNET};

const ROUTED_LAB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/routed-lab.toml");

/// The web view, serving in the sandbox; killed when dropped.
struct Ui {
    child: Child,
    url: String,
}

impl Drop for Ui {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ui(sb: &Sandbox) -> Ui {
    let mut child = sb
        .command(NSNET)
        .args(["ui", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("http://127.0.0.1:"), "{line}");
    Ui {
        child,
        url: line.trim().to_string(),
    }
}

/// The page's DOM after `budget_ms` of its (virtual) time.
fn dom(url: &str, budget_ms: u32) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        // Its caches and settings too, never the host's $HOME.
        .env("HOME", profile.path())
        .env("XDG_CACHE_HOME", profile.path())
        .env("XDG_CONFIG_HOME", profile.path())
        .arg(format!("--virtual-time-budget={budget_ms}"))
        .arg("--dump-dom")
        .arg(url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The bytes h1's end of its link has sent, as the page shows them.
fn h1_sent(dom: &str) -> u64 {
    let at = dom.find(r#"data-if="h1:eth0""#).expect("h1:eth0's counter");
    let rest = &dom[at..];
    let v = rest
        .split(r#"data-tx-bytes=""#)
        .nth(1)
        .expect("a byte count");
    v[..v.find('"').unwrap()].parse().unwrap()
}

fn raw_get(url: &str, host: &str) -> String {
    let addr = url.trim_start_matches("http://");
    let (hostport, path) = addr.split_once('/').unwrap();
    let mut s = std::net::TcpStream::connect(hostport).unwrap();
    write!(
        s,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn the_web_view_draws_counts_marks_drift_and_traces() {
    require_tools(
        &["chromium"],
        "Debian package chromium; scripts/test installs it",
    );
    let sb = Sandbox::new();
    sb.ok(&["up", "-f", ROUTED_LAB]);
    let ui = ui(&sb);
    let bare = ui.url.split('?').next().unwrap().to_string();
    // Without the token: refused, and the page says how to get in.
    let refused = dom(&bare, 500);
    assert!(refused.contains(r#"id="forbidden""#), "{refused}");
    assert!(raw_get(&format!("{bare}api/topology"), "x").starts_with("HTTP/1.1 403"));
    // Another Host (DNS rebinding): refused even with the token.
    let rebound = raw_get(&ui.url, "attacker.example:80");
    assert!(rebound.starts_with("HTTP/1.1 403"), "{rebound}");
    // The lab, drawn: every node, the impaired link dashed.
    let page = dom(&ui.url, 3000);
    for name in ["h1", "h2", "r1", "r2", "r3"] {
        assert!(
            page.contains(&format!(r#"data-name="{name}""#)),
            "{name} not drawn"
        );
    }
    assert!(
        page.contains(r#"class="edge impaired""#),
        "the rate-limited link"
    );
    // A counter that grows while a ping runs.
    let before = h1_sent(&page);
    sb.ok("ping h1 10.0.3.2 -c 20 -i 0.02");
    let after = h1_sent(&dom(&ui.url, 1500));
    assert!(
        after >= before + 20 * 84,
        "h1:eth0 sent {before} then {after} bytes"
    );
    // Two clicks (the page's #trace=A,B does the same): the verdict.
    let traced = dom(&format!("{}#trace=h1,h2", ui.url), 3000);
    assert!(
        traced.contains(r#"<p class="verdict reached">h1 → h2"#),
        "{traced}"
    );
    for n in ["h1", "h2"] {
        let clicked = format!(r#"class="node host selected" data-name="{n}""#);
        assert!(traced.contains(&clicked), "{n} not selected by its click");
    }
    // A link deleted by hand: drifted on the page's first refresh.
    sb.sh("ip -n r2 link del eth1");
    let start = Instant::now();
    let drifted = dom(&ui.url, 1500);
    assert!(
        drifted.contains(r#"class="edge drifted" data-id="link:r1:eth1|r2:eth1""#),
        "{drifted}"
    );
    assert!(drifted.contains("is missing</li>"), "the finding listed");
    assert!(start.elapsed() < Duration::from_secs(10));
    // Only loopback, unless asked.
    let err = sb.fails("ui --listen 0.0.0.0:7780", 2);
    assert!(err.contains("--allow-remote"), "{err}");
}
