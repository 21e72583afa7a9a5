//! `nsnet capture NODE:IF`: packets of one interface, as a pcap file or a
//! line each (tcpdump's habits: `-w FILE`, `-w -` for a pipe, `-c COUNT`,
//! a filter in libpcap's language, a count on stderr at the end).

use std::io::{self, Write};
use std::time::UNIX_EPOCH;

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use nsnet::api::live::{self, CaptureOptions, Packet};
use nsnet::model::{NsRef, Rejection};
use nsnet::{Nsnet, Result};

/// `NODE:IF` as a namespace (`None`: the host) and an interface name.
pub fn target(text: &str) -> Result<(Option<NsRef>, String)> {
    let bad = || Rejection::Unparsable {
        what: "capture point",
        value: text.to_string(),
        expected: "NODE:IF, a namespace and one of its interfaces (or host:IF)",
    };
    let (node, ifname) = text.rsplit_once(':').ok_or_else(bad)?;
    if node.is_empty() || ifname.is_empty() {
        return Err(bad().into());
    }
    let ns = (node != "host").then(|| NsRef::parse(node)).transpose()?;
    Ok((ns, ifname.to_string()))
}

#[derive(Debug, clap::Args)]
pub struct CaptureArgs {
    /// NODE:IF, a namespace and one of its interfaces (host:IF for the host's)
    point: String,
    /// Write the packets to a pcap file (`-` for stdout) instead of a line each
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    write: Option<String>,
    /// Stop after this many packets
    #[arg(short = 'c', long, value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// A capture filter in libpcap's language, such as `icmp` or `tcp port 80`
    filter: Vec<String>,
}

/// Runs a capture; the number of packets goes to stderr at the end.
pub fn run(nsnet: &Nsnet, args: &CaptureArgs) -> Result<()> {
    nsnet::require_root("capture packets")?;
    let (ns, ifname) = target(&args.point)?;
    let (write, count, filter) = (args.write.as_deref(), args.count, &args.filter);
    if let Some(n) = &ns {
        if !nsnet.namespace_exists(n) {
            return Err(super::missing_namespace(nsnet, n));
        }
    }
    let expr = filter.join(" ");
    let program = (!expr.is_empty())
        .then(|| live::compile_filter(&expr))
        .transpose()?;
    let opts = CaptureOptions {
        count,
        stop: Some(live::stop_on(&[libc::SIGINT, libc::SIGTERM])),
    };
    // The socket first: an interface that is not there leaves no file.
    let capture = live::Capture::open(ns.as_ref(), &ifname, program.as_deref())?;
    let mut sink = write.map(open_sink).transpose()?;
    // tcpdump's words: from here on nothing is missed, which scripts wait for.
    eprintln!(
        "listening on {}, link-type EN10MB (Ethernet), snapshot length {} bytes",
        args.point,
        live::SNAPLEN
    );
    let seen = match &mut sink {
        // Flushed per packet: a reader at the other end of a pipe
        // (Wireshark's `-k -i -`) sees each as it comes.
        Some(sink) => capture.run(&opts, |p| {
            sink.write_all(&live::pcap_record(p))?;
            sink.flush()
        })?,
        None => {
            let mut out = io::stdout().lock();
            capture.run(&opts, |p| writeln!(out, "{}", line(&ifname, p)))?
        }
    };
    eprintln!("{seen} packet{} captured", if seen == 1 { "" } else { "s" });
    Ok(())
}

/// The pcap file at `path` (stdout for `-`), its header written.
fn open_sink(path: &str) -> Result<Box<dyn Write>> {
    let fail = |source| nsnet::Error::WriteFile {
        path: path.to_string(),
        source,
    };
    let mut sink: Box<dyn Write> = if path == "-" {
        Box::new(io::stdout().lock())
    } else {
        Box::new(std::fs::File::create(path).map_err(fail)?)
    };
    sink.write_all(&live::file_header(live::SNAPLEN, live::LINKTYPE_ETHERNET))
        .and_then(|()| sink.flush())
        .map_err(fail)?;
    Ok(sink)
}

/// One packet as a line: time of day (UTC), interface, direction, what it
/// carries, length.
fn line(ifname: &str, p: &Packet) -> String {
    let t = p
        .time
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros();
    let day = t % 86_400_000_000;
    let clock = format!(
        "{:02}:{:02}:{:02}.{:06}",
        day / 3_600_000_000,
        day / 60_000_000 % 60,
        day / 1_000_000 % 60,
        day % 1_000_000
    );
    let dir = if p.outgoing { "out" } else { "in " };
    format!(
        "{clock} {ifname} {dir} {}, length {}",
        summary(p.data),
        p.wire_len
    )
}

/// What a frame carries, as tcpdump would sum it up.
pub fn summary(frame: &[u8]) -> String {
    let Ok(s) = SlicedPacket::from_ethernet(frame) else {
        return "undecoded frame".into();
    };
    let (src, dst) = match &s.net {
        Some(NetSlice::Ipv4(ip)) => (
            ip.header().source_addr().to_string(),
            ip.header().destination_addr().to_string(),
        ),
        Some(NetSlice::Ipv6(ip)) => (
            ip.header().source_addr().to_string(),
            ip.header().destination_addr().to_string(),
        ),
        Some(NetSlice::Arp(_)) => return "ARP".into(),
        None => return "non-IP frame".into(),
    };
    match &s.transport {
        Some(TransportSlice::Tcp(t)) => {
            let flags: String = [
                (t.syn(), 'S'),
                (t.fin(), 'F'),
                (t.rst(), 'R'),
                (t.ack(), '.'),
            ]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, c)| *c)
            .collect();
            format!(
                "IP {src}.{} > {dst}.{}: TCP [{flags}]",
                t.source_port(),
                t.destination_port()
            )
        }
        Some(TransportSlice::Udp(u)) => format!(
            "IP {src}.{} > {dst}.{}: UDP",
            u.source_port(),
            u.destination_port()
        ),
        Some(TransportSlice::Icmpv4(i)) => {
            let what = match i.type_u8() {
                8 => "echo request".to_string(),
                0 => "echo reply".to_string(),
                3 => "destination unreachable".to_string(),
                n => format!("type {n}"),
            };
            format!("IP {src} > {dst}: ICMP {what}")
        }
        Some(TransportSlice::Icmpv6(i)) => {
            let what = match i.type_u8() {
                128 => "echo request".to_string(),
                129 => "echo reply".to_string(),
                135 => "neighbor solicitation".to_string(),
                136 => "neighbor advertisement".to_string(),
                n => format!("type {n}"),
            };
            format!("IP6 {src} > {dst}: ICMP6 {what}")
        }
        None => format!("IP {src} > {dst}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_points_name_a_node_and_an_interface() {
        let (ns, ifname) = target("r1:eth1").unwrap();
        assert_eq!(
            (ns.unwrap().to_string(), ifname.as_str()),
            ("r1".into(), "eth1")
        );
        assert!(target("host:br0").unwrap().0.is_none());
        for bad in ["r1", "r1:", ":eth0"] {
            let e = target(bad).unwrap_err().to_string();
            assert!(e.contains("NODE:IF"), "{bad}: {e}");
        }
    }

    #[test]
    fn frames_are_summed_up() {
        // An Ethernet frame with an ICMP echo request from 10.0.0.1 to 10.0.0.2.
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        f.extend_from_slice(&[
            0x45, 0, 0, 28, 0, 0, 0, 0, 64, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ]);
        f.extend_from_slice(&[8, 0, 0, 0, 0, 1, 0, 1]);
        assert_eq!(summary(&f), "IP 10.0.0.1 > 10.0.0.2: ICMP echo request");
        assert_eq!(summary(&[1, 2, 3]), "undecoded frame");
    }
}
