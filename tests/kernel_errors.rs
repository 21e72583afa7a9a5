//! The kernel's own reasons reach the user: errno plus extended-ack text.

use crate::common::Sandbox;

#[test]
fn netlink_errors_carry_errno_and_the_kernels_text() {
    let _sb = Sandbox::new();
    let mut h = nsnet::kernel::netlink::Handle::open().expect("netlink socket");
    let lo = h.link_by_name("lo").unwrap().expect("lo exists");
    // A gateway that is not on-link: the kernel refuses with a reason.
    let err = h
        .add_default_route("192.0.2.77".parse().unwrap(), lo.index)
        .unwrap_err();
    assert_eq!(err.errno(), Some(libc::ENETUNREACH), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("adding route default via 192.0.2.77"),
        "{text}"
    );
    assert!(
        text.contains("Nexthop has invalid gateway"),
        "no extended ack in: {text}"
    );

    assert!(h.link_by_name("nosuchlink").unwrap().is_none());
    let err = h
        .create_bridge("lo", [2, 0, 0, 0, 0, 1], None, None)
        .unwrap_err();
    assert_eq!(err.errno(), Some(libc::EEXIST), "{err}");
}

/// Work inside a namespace is a visit of the calling thread: it comes back
/// to its own namespace when the work ends, however it ends (done, failed,
/// panicked), and what it opened inside stays bound to that namespace.
#[test]
fn a_thread_that_works_in_a_namespace_comes_back_however_the_work_ends() {
    use nsnet::kernel::netns;
    use std::os::fd::AsFd;
    let sb = Sandbox::new();
    let home = netns::current_id().unwrap();
    let (fd, (inside, handle)) = netns::add_with("visited", || {
        (
            netns::current_id().unwrap(),
            nsnet::kernel::netlink::Handle::open().unwrap(),
        )
    })
    .unwrap();
    assert_ne!(inside, home);
    assert_eq!(netns::current_id().unwrap(), home, "back after add_with");
    let named = nsnet::model::NsRef::Named("visited".into());
    assert_eq!(netns::id(&named).unwrap(), Some(inside));
    // The socket opened inside talks to that namespace from home: a bridge
    // made through it is there (iproute2 as the oracle), not here.
    let mut handle = handle;
    handle
        .create_bridge("made-inside", [2, 0, 0, 0, 0, 1], None, None)
        .unwrap();
    assert!(sb.sh("ip -n visited -br link").contains("made-inside"));
    assert!(!sb.sh("ip -br link").contains("made-inside"));

    let seen = netns::in_netns(fd.as_fd(), "visited", || netns::current_id().unwrap()).unwrap();
    assert_eq!(seen, inside);
    assert_eq!(netns::current_id().unwrap(), home, "back after in_netns");
    let panicked = std::panic::catch_unwind(|| {
        netns::in_netns(fd.as_fd(), "visited", || panic!("work inside failed"))
    });
    assert!(panicked.is_err());
    assert_eq!(netns::current_id().unwrap(), home, "back after a panic");
    // A namespace that cannot be made (the name is taken): still home.
    match netns::add_with("visited", || ()) {
        Err(netns::Error::Exists(name)) => assert_eq!(name, "visited"),
        other => panic!("expected Exists, got {:?}", other.map(|_| ())),
    }
    assert_eq!(
        netns::current_id().unwrap(),
        home,
        "back after a failed add"
    );
}
