//! The kernel's own reasons reach the user: errno plus extended-ack text.

mod common;
use common::Sandbox;

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
