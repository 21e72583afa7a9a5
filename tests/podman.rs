//! A real CNI client: podman runs containers on an nsnet network.

use crate::common::{Sandbox, NSNET};

#[test]
fn podman_runs_containers_on_an_nsnet_network() {
    let sb = Sandbox::new();
    crate::common::require_tools(
        &["podman", "runc", "conmon", "busybox"],
        "scripts/test installs podman runc conmon busybox-static",
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/podman/run.sh");
    let out = sb.sh_status(&format!("{script} {NSNET} 2>&1"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "podman scenario failed:\n{text}");
    for step in [
        "STEP network-listed",
        "STEP ping-a-to-b",
        "STEP published-port served by b",
        "STEP check-clean",
        "STEP reload-no-leak",
        "STEP rm-no-leak",
    ] {
        assert!(text.contains(step), "missing {step:?} in:\n{text}");
    }
}
