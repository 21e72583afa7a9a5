//! A real Docker Engine (Debian's docker.io: dockerd 20.10, containerd,
//! runc) uses `nsnet docker-plugin` as its network driver: the tutorial
//! with Docker containers, published ports beside dockerd's FORWARD DROP,
//! restarts and kill -9 of either side, and bad input as Docker shows it.
//! The scenarios are in tests/docker/run.sh, run inside the test's sandbox.

use crate::common::{Sandbox, NSNET};

fn require_tools() {
    crate::common::require_tools(
        &[
            "dockerd",
            "containerd",
            "runc",
            "busybox",
            "iptables",
            "etcd",
            "nsenter",
        ],
        "scripts/test installs docker.io containerd runc busybox-static iptables etcd-server",
    );
}

/// Runs the scenarios and checks that each of `steps` was reached.
fn scenario(names: &str, steps: &[&str]) {
    require_tools();
    let sb = Sandbox::new();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/docker/run.sh");
    let out = sb.sh_status(&format!(
        "timeout -s KILL 240 {script} {NSNET} {names} 2>&1"
    ));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "Docker scenario {names} failed:\n{text}"
    );
    for step in steps {
        assert!(
            text.contains(&format!("STEP {step}")),
            "missing {step:?} in:\n{text}"
        );
    }
}

#[test]
fn docker_containers_live_on_an_nsnet_network() {
    scenario(
        "basic",
        &[
            "network-created",
            "ping-by-address-and-name",
            "upstream-through-nat",
            "gateway-is-nsnet",
            "published-port-reached",
            "direct-access-blocked",
            "loopback-port-host-only",
            "isolated-from-docker-networks",
            "check-clean",
            "rm-host-as-before",
            "done",
        ],
    );
}

#[test]
fn nsnet_s_ipam_serves_docker_and_its_own_namespaces_without_clashes() {
    scenario(
        "ipam",
        &[
            "ipam-no-address-twice",
            "ipam-refusals-named",
            "ipam-ip-range",
            "connect-disconnect-mtu-ipv6",
            "internal-no-gateway",
            "ipam-released",
            "done",
        ],
    );
}

#[test]
fn containers_of_two_docker_hosts_meet_on_an_nsnet_overlay() {
    require_tools();
    let sb = Sandbox::new();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/docker/overlay.sh");
    let out = sb.sh_status(&format!("timeout -s KILL 240 {script} {NSNET} 2>&1"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "Docker overlay scenario failed:\n{text}"
    );
    for step in [
        "hosts-up",
        "overlay-created 1 1",
        "host-subnets",
        "ping-across-hosts",
        "tcp-across-hosts",
        "check-clean",
        "removed",
    ] {
        assert!(
            text.contains(&format!("STEP {step}")),
            "missing {step:?} in:\n{text}"
        );
    }
}

#[test]
fn docker_and_plugin_restarts_and_kills_leave_nothing_behind() {
    scenario(
        "restart faults",
        &[
            "plugin-restart",
            "dockerd-restart",
            "reboot-network-made-again",
            "container-kill-9",
            "plugin-kill-9",
            "done",
        ],
    );
}

#[test]
fn docker_shows_nsnet_s_refusals() {
    scenario(
        "bad",
        &[
            "unknown-option-refused",
            "bad-input-named",
            "docker-owned-network-kept",
            "done",
        ],
    );
}

#[test]
fn docker_containers_go_straight_on_the_lan_with_nsnet_macvlan() {
    scenario(
        "lan",
        &[
            "lan-network-created",
            "lan-address-probed",
            "lan-reached",
            "lan-ports-refused",
            "lan-removed",
            "done",
        ],
    );
}
