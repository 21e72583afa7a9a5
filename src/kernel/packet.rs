//! AF_PACKET sockets on one interface, shared by packet capture and the
//! LAN's duplicate address probes: the link-layer address, the bind, and
//! one receive with the sender's link-layer address.

use std::io;
use std::os::fd::AsRawFd;

use socket2::Socket;

/// `sll_pkttype` of a frame this host sent.
pub const PACKET_OUTGOING: u8 = 4;

/// A link-layer address on interface `index` for `protocol` (an
/// EtherType, host order), to `to` when sending.
pub fn link_address(index: u32, protocol: u16, to: Option<[u8; 6]>) -> libc::sockaddr_ll {
    // SAFETY: all-zero is a valid sockaddr_ll; the fields set make it one
    // for this interface.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = protocol.to_be();
    sll.sll_ifindex = index as i32;
    if let Some(mac) = to {
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&mac);
    }
    sll
}

/// Binds a packet socket to interface `index` and `protocol`. The socket
/// should have been made with protocol 0, so that it receives nothing
/// before: one made with its protocol receives from every interface, and
/// rebinding it waits for an RCU grace period (13 ms here).
pub fn bind(socket: &Socket, index: u32, protocol: u16) -> io::Result<()> {
    let sll = link_address(index, protocol, None);
    // SAFETY: sll lives across the call and its size is given.
    let r = unsafe {
        libc::bind(
            socket.as_raw_fd(),
            std::ptr::addr_of!(sll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One frame into `buf`: its length (with `flags` MSG_TRUNC, its length on
/// the wire) and where it came from.
pub fn receive(
    socket: &Socket,
    buf: &mut [u8],
    flags: libc::c_int,
) -> io::Result<(usize, libc::sockaddr_ll)> {
    // SAFETY: all-zero is a valid sockaddr_ll.
    let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut from_len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
    // SAFETY: buf and from are valid for the sizes given.
    let n = unsafe {
        libc::recvfrom(
            socket.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            flags,
            std::ptr::addr_of_mut!(from).cast(),
            &mut from_len,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((n as usize, from))
}
