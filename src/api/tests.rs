//! The orchestration on a fake machine, without root: lock, journal,
//! facts, plan, commit, rollback and recovery, as the commands run them.
//! Each test asserts what the machine ends up with (the fake's tables) and
//! what the record says, never the sentences.

use std::panic::{catch_unwind, AssertUnwindSafe};

use super::*;
use crate::host::fake::{Fake, ABORTED};
use crate::host::Probe;
use crate::model::{ConnectRequest, CreateRequest, NsRef, Rejection};
use crate::plan::Target;

/// A state directory and a fake machine, with `nsnet` driving them.
struct Bed {
    fake: Fake,
    dir: tempfile::TempDir,
    nsnet: Nsnet,
}

fn bed() -> Bed {
    let fake = Fake::default();
    let dir = tempfile::tempdir().unwrap();
    let nsnet = Nsnet::on(dir.path(), Box::new(fake.clone()));
    Bed { fake, dir, nsnet }
}

impl Bed {
    /// A new `Nsnet` on the same machine and state: the next process.
    fn next_process(&self) -> Nsnet {
        Nsnet::on(self.dir.path(), Box::new(self.fake.clone()))
    }

    fn probe(&self) -> crate::host::fake::FakeProbe {
        self.fake.state().probe.clone()
    }

    fn has_namespace(&self, name: &str) -> bool {
        self.probe().namespace_exists(&ns(name)).unwrap()
    }

    fn has_host_link(&self, name: &str) -> bool {
        self.probe().link(&Target::Host, name).unwrap().is_some()
    }

    /// Host links nsnet made (the bridges and veth host ends).
    fn host_links(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .probe()
            .host
            .links
            .iter()
            .map(|l| l.name.clone())
            .collect();
        names.sort();
        names
    }
}

fn ns(name: &str) -> NsRef {
    NsRef::Named(name.into())
}

/// A network without DNS (the DNS server is a process of its own).
fn network(name: &str, subnet: &str) -> CreateRequest {
    CreateRequest {
        subnets: vec![subnet.parse().unwrap()],
        dns: false,
        ..CreateRequest::named(name)
    }
}

fn with_network(name: &str, subnet: &str) -> Bed {
    let b = bed();
    b.nsnet.create_network(&network(name, subnet)).unwrap();
    b.fake.take_applied();
    b
}

#[test]
fn connect_makes_the_namespace_and_its_link_and_disconnect_takes_them() {
    let b = with_network("web", "10.1.0.0/24");
    let bridge = b.nsnet.state().unwrap().networks["web"].bridge.clone();
    let att = b
        .nsnet
        .connect(&ConnectRequest::new("web", ns("a")))
        .unwrap();
    assert!(b.has_namespace("a"));
    assert!(b.has_host_link(&att.host_ifname));
    let inside = b.probe().addresses(&Target::Ns(ns("a"))).unwrap();
    assert_eq!(
        inside.iter().map(|a| a.addr).collect::<Vec<_>>(),
        att.addresses
    );
    b.nsnet.disconnect("web", &ns("a")).unwrap();
    assert!(!b.has_namespace("a"));
    assert_eq!(b.host_links(), [bridge]);
    assert!(b.nsnet.state().unwrap().networks["web"]
        .attachments
        .is_empty());
}

/// The steps of one connect on a fresh machine, to fail or stop at each.
fn connect_steps() -> usize {
    let b = with_network("web", "10.1.0.0/24");
    b.nsnet
        .connect(&ConnectRequest::new("web", ns("a")))
        .unwrap();
    b.fake.take_applied().len()
}

#[test]
fn a_connect_failing_at_any_step_leaves_machine_and_record_as_they_were() {
    let steps = connect_steps();
    assert!(steps >= 4, "a connect takes several steps, not {steps}");
    for k in 1..=steps {
        let b = with_network("web", "10.1.0.0/24");
        let links = b.host_links();
        let record = b.nsnet.state().unwrap();
        let calls = b.fake.state().calls;
        b.fake.state().fail_at = Some(calls + k);
        let e = b
            .nsnet
            .connect(&ConnectRequest::new("web", ns("a")))
            .unwrap_err();
        assert!(matches!(e, Error::Apply(_)), "step {k}: {e:?}");
        assert!(!b.has_namespace("a"), "step {k}: the namespace stayed");
        assert_eq!(b.host_links(), links, "step {k}");
        assert_eq!(b.nsnet.state().unwrap(), record, "step {k}");
        // Nothing is left for the next command to finish.
        b.fake.take_applied();
        drop(b.next_process().begin().unwrap());
        assert!(b.fake.take_applied().is_empty(), "step {k}");
    }
}

#[test]
fn a_connect_killed_at_any_step_is_undone_by_the_next_command() {
    let steps = connect_steps();
    for k in 1..=steps {
        let b = with_network("web", "10.1.0.0/24");
        let links = b.host_links();
        let record = b.nsnet.state().unwrap();
        let calls = b.fake.state().calls;
        b.fake.state().abort_at = Some(calls + k);
        let died = catch_unwind(AssertUnwindSafe(|| {
            b.nsnet.connect(&ConnectRequest::new("web", ns("a")))
        }));
        let cause = died.expect_err("the process died at the step");
        assert_eq!(cause.downcast_ref::<&str>(), Some(&ABORTED));
        b.fake.state().abort_at = None;
        // The next process finishes the interrupted command first.
        let next = b.next_process();
        drop(next.begin().unwrap());
        assert!(!b.has_namespace("a"), "step {k}: the namespace stayed");
        assert_eq!(b.host_links(), links, "step {k}");
        assert_eq!(next.state().unwrap(), record, "step {k}");
        // And then works as usual.
        next.connect(&ConnectRequest::new("web", ns("a"))).unwrap();
        assert!(b.has_namespace("a"));
    }
}

#[test]
fn removing_several_networks_is_all_or_none() {
    let b = with_network("a", "10.1.0.0/24");
    b.nsnet
        .create_network(&network("b", "10.2.0.0/24"))
        .unwrap();
    b.nsnet.connect(&ConnectRequest::new("b", ns("x"))).unwrap();
    b.fake.take_applied();
    let names = ["a".to_string(), "b".to_string()];
    let e = b.nsnet.remove_networks(&names, false).unwrap_err();
    assert!(matches!(
        e,
        Error::Rejected(Rejection::NetworkInUse { ref network, .. }) if network == "b"
    ));
    assert!(b.fake.take_applied().is_empty(), "nothing was touched");
    assert_eq!(b.nsnet.state().unwrap().networks.len(), 2);
    // With force, both go in one command.
    let gone = b.nsnet.remove_networks(&names, true).unwrap();
    assert_eq!(gone.len(), 2);
    assert!(b.nsnet.state().unwrap().networks.is_empty());
    assert!(b.host_links().is_empty(), "left: {:?}", b.host_links());
    assert!(!b.has_namespace("x"));
}

const TOPOLOGY: &str = r#"
[networks.front]
subnets = ["10.3.0.0/24"]
dns = false

[networks.back]
subnets = ["10.4.0.0/24"]
dns = false

[namespaces.web]
attach = [{ network = "front" }, { network = "back", ifname = "eth1" }]

[namespaces.db]
attach = [{ network = "back", ip = "10.4.0.9/24" }]
"#;

fn topology() -> crate::model::topology::Topology {
    crate::topology::parse("/lab/t.toml", "/lab/t.toml", TOPOLOGY)
        .unwrap_or_else(|e| panic!("{}", crate::error_chain(&e)))
}

#[test]
fn a_second_up_changes_nothing() {
    let b = bed();
    let first = b.nsnet.up(&topology(), false).unwrap();
    assert!(first.applied);
    assert!(b.has_namespace("web") && b.has_namespace("db"));
    b.fake.take_applied();
    let again = b.nsnet.up(&topology(), false).unwrap();
    assert!(again.changes.is_empty(), "{:?}", again.changes);
    assert!(!again.applied);
    assert!(b.fake.take_applied().is_empty());
}

#[test]
fn up_remakes_exactly_what_the_machine_lost() {
    let b = bed();
    b.nsnet.up(&topology(), false).unwrap();
    // Someone deletes db's namespace behind nsnet's back.
    b.fake
        .state()
        .probe
        .carry_out(&crate::plan::Op::DeleteNetns { name: "db".into() })
        .unwrap();
    b.fake.take_applied();
    let out = b.nsnet.up(&topology(), false).unwrap();
    assert!(out.applied);
    assert!(b.has_namespace("db"));
    let remade: Vec<String> = b
        .fake
        .take_applied()
        .iter()
        .filter_map(|op| match op {
            crate::plan::Op::CreateNetns { name } => Some(name.clone()),
            crate::plan::Op::CreateNamespaces { names } => Some(names.join(",")),
            _ => None,
        })
        .collect();
    assert_eq!(remade, ["db"]);
    let db = &b.nsnet.state().unwrap().networks["back"];
    let att = db.attachment(&ns("db")).unwrap();
    assert_eq!(att.addresses[0].to_string(), "10.4.0.9/24");
}

#[test]
fn down_removes_everything_up_made() {
    let b = bed();
    b.nsnet.up(&topology(), false).unwrap();
    b.nsnet.down("/lab/t.toml").unwrap();
    assert!(b.nsnet.state().unwrap().networks.is_empty());
    assert!(b.host_links().is_empty(), "left: {:?}", b.host_links());
    assert!(!b.has_namespace("web") && !b.has_namespace("db"));
}

#[test]
fn gc_forgets_attachments_whose_namespace_is_gone() {
    let b = with_network("web", "10.1.0.0/24");
    b.nsnet
        .connect(&ConnectRequest::new("web", ns("a")))
        .unwrap();
    b.nsnet
        .connect(&ConnectRequest::new("web", ns("b")))
        .unwrap();
    b.fake
        .state()
        .probe
        .carry_out(&crate::plan::Op::DeleteNetns { name: "a".into() })
        .unwrap();
    let out = b.nsnet.gc().unwrap();
    assert_eq!(out.changes.len(), 1, "{:?}", out.changes);
    let net = &b.nsnet.state().unwrap().networks["web"];
    assert!(net.attachment(&ns("a")).is_none());
    assert!(net.attachment(&ns("b")).is_some());
    assert!(b.has_namespace("b"));
}

#[test]
fn commands_that_change_the_machine_need_a_privileged_one() {
    struct Unprivileged(Fake);
    impl crate::host::Machine for Unprivileged {
        fn open(&self) -> Box<dyn crate::host::Host> {
            self.0.open()
        }
        fn privileged(&self) -> bool {
            false
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::default();
    let nsnet = Nsnet::on(dir.path(), Box::new(Unprivileged(fake.clone())));
    let e = nsnet
        .create_network(&network("web", "10.1.0.0/24"))
        .unwrap_err();
    assert!(matches!(e, Error::NotRoot(_)), "{e:?}");
    assert!(fake.take_applied().is_empty());
    // A dry run plans from the record alone.
    let out = nsnet.up(&topology(), true).unwrap();
    assert!(!out.applied);
    assert!(out.changes.iter().any(|c| c.contains("front")));
}

/// Network `web` with `namespaces` connected.
fn web_with(b: &Bed, namespaces: &[&str]) {
    b.nsnet
        .create_network(&network("web", "10.1.0.0/24"))
        .unwrap();
    for n in namespaces {
        b.nsnet.connect(&ConnectRequest::new("web", ns(n))).unwrap();
    }
}

/// Runs `command` on a machine that stops (as a killed process) at its
/// k-th step, for every k, and checks with `after` what the next command
/// left once it finished the interrupted one.
fn killed_at_every_step(
    setup: impl Fn(&Bed),
    command: impl Fn(&Nsnet) -> Result<()>,
    after: impl Fn(&Bed, &Nsnet, usize),
) {
    let steps = {
        let b = bed();
        setup(&b);
        b.fake.take_applied();
        command(&b.nsnet).unwrap();
        b.fake.take_applied().len()
    };
    assert!(steps >= 2, "{steps} steps");
    for k in 1..=steps {
        let b = bed();
        setup(&b);
        let calls = b.fake.state().calls;
        b.fake.state().abort_at = Some(calls + k);
        let died = catch_unwind(AssertUnwindSafe(|| command(&b.nsnet)));
        assert!(died.is_err(), "step {k}: the command was not stopped");
        b.fake.state().abort_at = None;
        let next = b.next_process();
        drop(next.begin().unwrap());
        after(&b, &next, k);
    }
}

#[test]
fn a_disconnect_killed_at_any_step_is_finished_by_the_next_command() {
    killed_at_every_step(
        |b| web_with(b, &["a", "b"]),
        |n| n.disconnect("web", &ns("a")).map(drop),
        |b, next, k| {
            let net = &next.state().unwrap().networks["web"];
            assert!(net.attachment(&ns("a")).is_none(), "step {k}");
            assert!(!b.has_namespace("a"), "step {k}: a stayed");
            assert!(
                net.attachment(&ns("b")).is_some() && b.has_namespace("b"),
                "step {k}"
            );
        },
    );
}

#[test]
fn a_network_rm_killed_at_any_step_is_finished_by_the_next_command() {
    killed_at_every_step(
        |b| web_with(b, &["a"]),
        |n| n.remove_network("web", true).map(drop),
        |b, next, k| {
            assert!(next.state().unwrap().networks.is_empty(), "step {k}");
            assert!(b.host_links().is_empty(), "step {k}: {:?}", b.host_links());
            assert!(!b.has_namespace("a"), "step {k}");
        },
    );
}

#[test]
fn an_up_killed_at_any_step_converges_on_the_next_up() {
    killed_at_every_step(
        |_| {},
        |n| n.up(&topology(), false).map(drop),
        |b, next, k| {
            // What the killed up had made is gone: the host matches the
            // record again; the next up makes all of it, the next down
            // takes all of it.
            next.up(&topology(), false).unwrap();
            assert!(b.has_namespace("web") && b.has_namespace("db"), "step {k}");
            assert!(
                next.up(&topology(), false).unwrap().changes.is_empty(),
                "step {k}"
            );
            next.down("/lab/t.toml").unwrap();
            assert!(b.host_links().is_empty(), "step {k}: {:?}", b.host_links());
            assert!(
                !b.has_namespace("web") && !b.has_namespace("db"),
                "step {k}"
            );
        },
    );
}

const DOCKER_NET: &str = "0123456789abcdef0123456789abcdef";
const DOCKER_EP: &str = "fedcba9876543210fedcba9876543210";

/// A network Docker made, with one endpoint (no join yet). Without ICC:
/// a join is then two steps (the veth, its port isolated).
fn docker_network(b: &Bed) {
    let req = CreateRequest {
        docker: Some(DOCKER_NET.into()),
        icc: false,
        ..network("dk-0123456789ab", "10.9.0.0/24")
    };
    b.nsnet.docker_create_network(&req).unwrap();
    let addr = "10.9.0.5/24".parse().unwrap();
    b.nsnet
        .docker_create_endpoint(DOCKER_NET, DOCKER_EP, &[addr], None)
        .unwrap();
}

fn sandbox() -> std::path::PathBuf {
    "/run/docker/netns/0a1b2c3d4e5f".into()
}

#[test]
fn docker_s_calls_make_and_take_everything_and_repeat_safely() {
    let b = bed();
    docker_network(&b);
    let bridge = b.host_links();
    let (att, _) = b
        .nsnet
        .docker_join(DOCKER_NET, DOCKER_EP, sandbox())
        .unwrap();
    // Both ends are in the host: Docker moves one into the container.
    assert!(b.has_host_link(&att.host_ifname) && b.has_host_link(&att.ifname));
    let p: crate::model::ports::PortMapping = "8080:80".parse().unwrap();
    let published = b
        .nsnet
        .docker_publish(DOCKER_NET, DOCKER_EP, std::slice::from_ref(&p))
        .unwrap();
    assert_eq!(published, [p]);
    b.nsnet.docker_unpublish(DOCKER_NET, DOCKER_EP).unwrap();
    b.nsnet.docker_leave(DOCKER_NET, DOCKER_EP).unwrap();
    assert_eq!(b.host_links(), bridge);
    // Docker repeats what it saw fail: no error, no step.
    b.fake.take_applied();
    b.nsnet.docker_leave(DOCKER_NET, DOCKER_EP).unwrap();
    b.nsnet.docker_unpublish(DOCKER_NET, DOCKER_EP).unwrap();
    assert!(b.fake.take_applied().is_empty());
    b.nsnet
        .docker_delete_endpoint(DOCKER_NET, DOCKER_EP)
        .unwrap();
    b.nsnet
        .docker_delete_endpoint(DOCKER_NET, DOCKER_EP)
        .unwrap();
    // nsnet's own command line leaves a Docker network alone.
    let e = b
        .nsnet
        .remove_network("dk-0123456789ab", false)
        .unwrap_err();
    assert!(
        matches!(e, Error::Rejected(Rejection::OwnedByDocker { .. })),
        "{e:?}"
    );
    b.nsnet.docker_delete_network(DOCKER_NET).unwrap();
    b.nsnet.docker_delete_network(DOCKER_NET).unwrap();
    assert!(b.host_links().is_empty(), "{:?}", b.host_links());
    assert!(b.nsnet.state().unwrap().networks.is_empty());
}

#[test]
fn a_docker_join_failing_at_any_step_leaves_nothing() {
    let steps = {
        let b = bed();
        docker_network(&b);
        b.fake.take_applied();
        b.nsnet
            .docker_join(DOCKER_NET, DOCKER_EP, sandbox())
            .unwrap();
        b.fake.take_applied().len()
    };
    assert!(steps >= 2, "{steps} steps");
    for k in 1..=steps {
        let b = bed();
        docker_network(&b);
        let (links, record) = (b.host_links(), b.nsnet.state().unwrap());
        let calls = b.fake.state().calls;
        b.fake.state().fail_at = Some(calls + k);
        let e = b
            .nsnet
            .docker_join(DOCKER_NET, DOCKER_EP, sandbox())
            .unwrap_err();
        assert!(matches!(e, Error::Apply(_)), "step {k}: {e:?}");
        assert_eq!(b.host_links(), links, "step {k}");
        assert_eq!(b.nsnet.state().unwrap(), record, "step {k}");
        // And Docker's retry works.
        b.nsnet
            .docker_join(DOCKER_NET, DOCKER_EP, sandbox())
            .unwrap();
    }
}

#[test]
fn a_docker_join_killed_at_any_step_is_undone_by_the_next_call() {
    killed_at_every_step(
        docker_network,
        |n| n.docker_join(DOCKER_NET, DOCKER_EP, sandbox()).map(drop),
        |b, next, k| {
            let net = next.docker_network(DOCKER_NET).unwrap();
            assert!(net.attachments.is_empty(), "step {k}");
            assert_eq!(
                b.host_links(),
                std::slice::from_ref(&net.bridge),
                "step {k}"
            );
            next.docker_join(DOCKER_NET, DOCKER_EP, sandbox()).unwrap();
        },
    );
}

#[test]
fn check_knows_nsnet_s_rules_in_docker_s_forward_chain() {
    use crate::firewall::docker_user::{rules, Placed};
    use crate::firewall::rules::ForeignDrop;
    let b = bed();
    docker_network(&b);
    let forward = ForeignDrop {
        family: "ip".into(),
        table: "filter".into(),
        chain: "FORWARD".into(),
    };
    let warnings = |placed: Option<Placed>| {
        let mut s = b.fake.state();
        s.probe.foreign_drops = vec![forward.clone()];
        s.probe.docker_forward = [placed, None];
        drop(s);
        b.nsnet.check(None).unwrap().warnings
    };
    let serving = Placed {
        jump: true,
        rules: rules(&["dk-0123456789ab"]),
    };
    assert!(warnings(Some(serving)).is_empty());
    let stale = warnings(Some(Placed::default()));
    assert!(stale[0].contains("DOCKER-USER"), "{stale:?}");
    // No dockerd: the plain warning about a drop policy.
    let plain = warnings(None);
    assert!(
        plain[0].contains("chain FORWARD of table ip filter"),
        "{plain:?}"
    );
}
