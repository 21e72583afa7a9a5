//! The docs cannot rot: every `sh` block of each guide in `docs/guide/` is
//! run, in order, in a sandbox of its own (`set -euo pipefail`, `nsnet` on
//! the PATH, a fresh directory with `examples/` in it). Two markers in
//! HTML comments, which readers do not see, serve the harness:
//! `<!-- doc-test: COMMAND -->` runs a command at that point (what the
//! guide leaves to the reader, such as an etcd server), and
//! `<!-- file: NAME -->` writes the next fenced block to NAME, so that a
//! file the guide shows is the file its commands use. Other blocks
//! (`console`, `text`, `toml`, `json`, `ini`) are shown, not run.

use std::path::PathBuf;

use crate::common::{Sandbox, NSNET};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The script a guide's blocks and markers make.
fn script_of(markdown: &str) -> String {
    let mut out = String::new();
    let mut file: Option<String> = None;
    let mut lines = markdown.lines();
    while let Some(line) = lines.next() {
        let t = line.trim();
        if let Some(cmd) = marker(t, "doc-test:") {
            out.push_str(cmd);
            out.push('\n');
        } else if let Some(name) = marker(t, "file:") {
            file = Some(name.to_string());
        } else if let Some(lang) = t.strip_prefix("```") {
            let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
            if let Some(name) = file.take() {
                out.push_str(&format!("cat > {name} <<'NSNET_DOC_EOF'\n"));
                out.push_str(&body.join("\n"));
                out.push_str("\nNSNET_DOC_EOF\n");
            } else if lang == "sh" {
                out.push_str(&body.join("\n"));
                out.push('\n');
            }
        }
    }
    out
}

/// The text of `<!-- KEY TEXT -->`.
fn marker<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let inner = line.strip_prefix("<!--")?.strip_suffix("-->")?.trim();
    Some(inner.strip_prefix(key)?.trim())
}

/// Runs the guide `name` in a sandbox; fails with the script's output.
fn run_guide(name: &str) {
    let sb = Sandbox::new();
    let text = std::fs::read_to_string(repo().join("docs/guide").join(name)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(NSNET, bin.join("nsnet")).unwrap();
    std::os::unix::fs::symlink(repo().join("examples"), dir.path().join("examples")).unwrap();
    // The LAN the LAN guide's hidden setup makes, as the LAN tests do.
    std::os::unix::fs::symlink(
        repo().join("tests/common/simulated-lan.sh"),
        dir.path().join("simulated-lan.sh"),
    )
    .unwrap();
    // Names the guides do not serve go to a documentation address that
    // nothing in the sandbox answers, and give up at once.
    std::fs::write(
        "/etc/resolv.conf",
        "nameserver 192.0.2.53\noptions timeout:1 attempts:1\n",
    )
    .unwrap();
    let script = format!(
        "set -euo pipefail\nexport PATH={}:$PATH\ncd {}\nset -x\n{}",
        bin.display(),
        dir.path().display(),
        script_of(&text)
    );
    // Output to files, not pipes: a daemon a guide starts in the
    // background must not keep the test waiting (the sandbox's watchdog
    // ends it with the test); and a guide that hangs fails in time.
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let status = std::process::Command::new("timeout")
        .args(["300", "bash", "-c", &script])
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .status()
        .expect("running bash");
    let read = |p: &PathBuf| std::fs::read_to_string(p).unwrap_or_default();
    assert!(
        status.success(),
        "docs/guide/{name}: a command failed ({status})\n--- output\n{}\n--- trace\n{}",
        tail(&read(&out), 40),
        tail(&read(&err), 40)
    );
    drop(sb);
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

const GUIDES: [&str; 10] = [
    "networks.md",
    "lan.md",
    "ports-and-security.md",
    "topology-files.md",
    "dns.md",
    "overlay.md",
    "labs.md",
    "cni.md",
    "docker.md",
    "podman.md",
];

#[test]
fn every_guide_is_run_here() {
    let mut found: Vec<String> = std::fs::read_dir(repo().join("docs/guide"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    let mut listed: Vec<String> = GUIDES.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(
        found, listed,
        "a guide without a test, or a test without a guide"
    );
}

#[test]
fn the_harness_reads_blocks_and_markers() {
    let md = "text\n<!-- doc-test: echo hidden -->\n```sh\nnsnet ls\n```\n<!-- file: a.toml -->\n```toml\nx = 1\n```\n```text\nnot run\n```\n";
    assert_eq!(
        script_of(md),
        "echo hidden\nnsnet ls\ncat > a.toml <<'NSNET_DOC_EOF'\nx = 1\nNSNET_DOC_EOF\n"
    );
}

#[test]
fn guide_networks() {
    run_guide("networks.md");
}

#[test]
fn guide_ports_and_security() {
    run_guide("ports-and-security.md");
}

#[test]
fn guide_topology_files() {
    run_guide("topology-files.md");
}

#[test]
fn guide_dns() {
    run_guide("dns.md");
}

#[test]
fn guide_overlay() {
    run_guide("overlay.md");
}

#[test]
fn guide_labs() {
    run_guide("labs.md");
}

#[test]
fn guide_docker() {
    run_guide("docker.md");
}

#[test]
fn guide_podman() {
    run_guide("podman.md");
}

#[test]
fn guide_cni() {
    run_guide("cni.md");
}

/// Every command a user runs is in the command reference.
#[test]
fn the_command_reference_names_every_command() {
    let reference = std::fs::read_to_string(repo().join("docs/reference/commands.md")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(NSNET)
        .args(["man", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut missing = Vec::new();
    for page in std::fs::read_dir(dir.path()).unwrap() {
        let name = page.unwrap().file_name().to_string_lossy().into_owned();
        let command = name.trim_end_matches(".1").replace('-', " ");
        let command = command
            .replace("reap parked", "reap-parked")
            .replace("docker plugin", "docker-plugin");
        if !reference.contains(&format!("`{command}")) {
            missing.push(command);
        }
    }
    missing.sort();
    assert!(
        missing.is_empty(),
        "not in docs/reference/commands.md: {missing:?}"
    );
}

#[test]
fn guide_lan() {
    run_guide("lan.md");
}
