//! A real netavark (2.1.0, the network backend of podman 5 and 6, built
//! from crates.io by scripts/test) runs nsnet as its plugin `nsnet`: the
//! calls podman makes, from `create` to the last `teardown`, on one host
//! and across two.

use crate::common::{Sandbox, NSNET};

/// Where scripts/test installs netavark (NSNET_NETAVARK overrides).
const NETAVARK: &str = "/opt/nsnet-tools/bin/netavark";

/// Runs `script` of tests/netavark/ with nsnet and netavark; checks that
/// each of `steps` was reached.
fn scenario(script: &str, steps: &[&str]) {
    let netavark = std::env::var("NSNET_NETAVARK").unwrap_or_else(|_| NETAVARK.into());
    assert!(
        std::path::Path::new(&netavark).is_file(),
        "netavark is needed at {netavark}: scripts/test builds it \
         (cargo install --locked --version 2.1.0 netavark --root /opt/nsnet-tools)"
    );
    let sb = Sandbox::new();
    let script = format!("{}/tests/netavark/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = sb.sh_status(&format!(
        "timeout -s KILL 120 {script} {NSNET} {netavark} 2>&1"
    ));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "netavark scenario {script} failed:\n{text}"
    );
    for step in steps {
        assert!(
            text.contains(&format!("STEP {step}")),
            "missing {step:?} in:\n{text}"
        );
    }
}

#[test]
fn netavark_runs_containers_on_an_nsnet_network() {
    scenario(
        "run.sh",
        &[
            "created",
            "set-up",
            "ping-by-address",
            "names-resolve",
            "published-port",
            "check-clean",
            "second-network-same-ports",
            "teardown-without-namespace",
            "last-teardown-removes-network",
            "error-surfaces",
        ],
    );
}

#[test]
fn podman_s_containers_on_two_hosts_meet_on_an_nsnet_overlay() {
    scenario(
        "overlay.sh",
        &[
            "created",
            "host-subnets",
            "ping-across-hosts",
            "check-clean",
            "removed",
        ],
    );
}

#[test]
fn netavark_puts_containers_on_the_lan_with_nsnet_macvlan() {
    scenario(
        "lan.sh",
        &[
            "created",
            "set-up",
            "on-the-lan",
            "check-clean",
            "probed",
            "last-teardown-removes-network",
        ],
    );
}
