//! Human and JSON output. Results go to stdout, errors to stderr.

use std::io::{self, Write};
use std::net::IpAddr;

use serde_json::json;

use nsnet::api::live::{LinkInfo, LivePorts, Reply, Summary};
use nsnet::model::overlay::Peer;
use nsnet::model::ports::PortMapping;
use nsnet::model::{Attachment, Network, State};
use nsnet::{error_chain, Error};

use super::schema::{AttachmentView, NetworkView, PeerView};

pub struct Printer {
    pub json: bool,
    pub quiet: bool,
    /// ANSI colour on labels (a terminal, or `--color always`).
    pub color: bool,
}

/// When to colour: `auto` colours a terminal unless `NO_COLOR` is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    pub fn enabled(self) -> bool {
        use std::io::IsTerminal;
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                    && std::io::stdout().is_terminal()
            }
        }
    }
}

/// Reports a listing that could not be written (a reader gone away is
/// not worth a word).
fn report_stdout(printed: io::Result<()>) {
    if let Err(e) = printed {
        if e.kind() != io::ErrorKind::BrokenPipe {
            eprintln!("nsnet: writing to stdout: {e}");
        }
    }
}

/// `network inspect`: the settings, then a line per attachment read off
/// its record line (as `show` does), not decoded.
fn print_inspect(w: &mut impl Write, net: &Network, peers: &[Peer]) -> io::Result<()> {
    writeln!(w, "network:     {}", net.name)?;
    match &net.lan {
        None => writeln!(
            w,
            "bridge:      {}{} (mac {})",
            net.bridge,
            if net.bridge_adopted { " (adopted)" } else { "" },
            net.bridge_mac
        )?,
        Some(_) => writeln!(w, "driver:      {}", made_of(net))?,
    }
    if let Some(h) = net.macvlan().and_then(|m| m.host_access.as_ref()) {
        let list: Vec<String> = h.addresses.iter().map(|a| a.to_string()).collect();
        writeln!(w, "host access: {} {}", h.ifname, list.join(","))?;
    }
    for s in &net.subnets {
        writeln!(w, "subnet:      {} gateway {}", s.cidr, s.gateway)?;
    }
    writeln!(w, "internal:    {}", net.internal)?;
    if net.has_bridge() {
        writeln!(
            w,
            "gateway mode: {} (IPv6: {})",
            net.gateway_mode, net.gateway_mode_v6
        )?;
        writeln!(w, "masquerade:  {}", net.masquerades(true))?;
        writeln!(w, "isolate:     {}", net.isolate)?;
        writeln!(w, "icc:         {}", net.icc)?;
    }
    if !net.trusted_interfaces.is_empty() {
        writeln!(w, "trusted:     {}", net.trusted_interfaces.join(", "))?;
    }
    if let Some(mtu) = net.mtu {
        writeln!(w, "mtu:         {mtu}")?;
    }
    if let Some(o) = &net.overlay {
        writeln!(
            w,
            "overlay:     cluster subnet {} (host subnets /{}), VNI {}, UDP port {}",
            o.config.subnet, o.config.host_subnet_len, o.config.vni, o.config.port
        )?;
        writeln!(
            w,
            "             vtep {} on {}, device {}, etcd {}",
            o.vtep,
            o.underlay,
            o.vxlan,
            o.etcd.join(",")
        )?;
        if let Some(c) = &o.conflict {
            writeln!(
                w,
                "DEGRADED:    host {} claims this host's subnet (its claim lapsed); leave and join again",
                c.holder
            )?;
        }
        writeln!(w, "peers:       {}", peers.len())?;
        for p in peers {
            writeln!(
                w,
                "  {} via {} ({})",
                p.subnet,
                p.vtep,
                nsnet::model::names::format_mac(&p.mac)
            )?;
        }
    }
    writeln!(w, "attachments: {}", net.attachments.len())?;
    for a in net.attachments.summaries() {
        writeln!(
            w,
            "  {} {} -> {} {}",
            a.host_ifname(),
            a.namespace(),
            a.ifname(),
            a.addresses()
        )?;
        if !a.ports().is_empty() {
            writeln!(w, "      published: {}", ports(a.ports()))?;
        }
    }
    Ok(())
}

impl Printer {
    /// `label` in `code` (an SGR number) when colouring.
    fn paint(&self, label: &str, code: u8) -> String {
        if self.color {
            format!("\x1b[{code}m{label}\x1b[0m")
        } else {
            label.to_string()
        }
    }
}

pub fn error(e: &Error, json: bool) {
    if json {
        eprintln!(
            "{}",
            json!({"error": {"kind": e.kind(), "exit_code": e.exit_code(), "message": error_chain(e)}})
        );
    } else {
        eprintln!("nsnet: {}", error_chain(e));
    }
}

/// Whether the link `port` is a port of `bridge` (false when the bridge is
/// missing).
fn on_bridge(port: &LinkInfo, bridge: Option<&LinkInfo>) -> bool {
    bridge.is_some_and(|b| port.master == Some(b.index))
}

/// The host's bridge ports and the links the record names, as the kernel
/// has them now (none when it cannot be asked).
pub fn live_ports(nsnet: &nsnet::Nsnet, state: &State) -> LivePorts {
    nsnet.live_ports(state).unwrap_or_default()
}

/// `show --json`.
fn show_json(state: &State, live: &LivePorts) -> serde_json::Value {
    let nets: Vec<NetworkView> = state
        .networks
        .values()
        .map(|n| {
            let bridge = live.get(&n.bridge);
            let mut view = NetworkView::of(n);
            view.present = Some(bridge.is_some());
            if let Some(o) = view.overlay.as_mut() {
                o.peers = Some(live.peers_of(&n.name).iter().map(PeerView::of).collect());
            }
            for (v, a) in view.attachments.iter_mut().zip(&n.attachments) {
                let port = live.get(&a.host_ifname);
                v.present = Some(port.is_some());
                v.on_bridge = Some(port.is_some_and(|p| on_bridge(p, bridge)));
            }
            view
        })
        .collect();
    json!(nets)
}

/// Links, routers and impairments, after the networks.
fn print_lab(w: &mut impl Write, state: &State) -> io::Result<()> {
    if !state.links.is_empty() {
        writeln!(w)?;
        writeln!(w, "links:")?;
    }
    for l in &state.links {
        let end = |i: usize| {
            let addrs: Vec<String> = l.addresses[i].iter().map(|a| a.to_string()).collect();
            let imp = state
                .impairments
                .get(&l.ends[i])
                .map(|r| format!(" [{}]", r.impairment))
                .unwrap_or_default();
            format!("{} {}{imp}", l.ends[i], addrs.join(","))
        };
        writeln!(w, "  {} <-> {}", end(0), end(1))?;
    }
    for (ns, r) in &state.lab_namespaces {
        if r.forward || !r.routes.is_empty() {
            let routes: Vec<String> = r.routes.iter().map(|x| x.to_string()).collect();
            writeln!(
                w,
                "namespace {ns}:{}{}{}",
                if r.forward { " forwards" } else { "" },
                if routes.is_empty() { "" } else { "; routes " },
                routes.join(", ")
            )?;
        }
    }
    Ok(())
}

/// Where the interfaces column of `show` starts.
const PORT_COLUMN: usize = 56;

/// `text` left-aligned in `width` columns, as `{:<width$}` does. Padding
/// through the formatter writes one character at a time: with a thousand
/// rows that was a tenth of `show`.
fn padded(w: &mut impl Write, text: &str, width: usize) -> io::Result<()> {
    const SPACES: &[u8; 64] = &[b' '; 64];
    w.write_all(text.as_bytes())?;
    let pad = width.saturating_sub(text.chars().count()).min(SPACES.len());
    w.write_all(&SPACES[..pad])
}

/// The `brctl show` table.
fn print_bridges(w: &mut impl Write, state: &State, live: &LivePorts) -> io::Result<()> {
    if state.bridges().is_empty() && !state.networks.is_empty() {
        return Ok(());
    }
    writeln!(
        w,
        "{:<16}{:<24}{:<16}interfaces",
        "bridge name", "bridge id", "STP enabled"
    )?;
    for net in state.networks.values().filter(|n| n.has_bridge()) {
        let bridge = live.get(&net.bridge);
        let id = bridge
            .and_then(|b| b.mac)
            .map(|m| {
                format!(
                    "8000.{}",
                    m.iter().map(|b| format!("{b:02x}")).collect::<String>()
                )
            })
            .unwrap_or_else(|| "(missing)".into());
        let ports: Vec<&str> = match bridge {
            Some(b) => live.ports_of(b.index).map(|l| l.name.as_str()).collect(),
            None => Vec::new(),
        };
        let mut first = true;
        if ports.is_empty() {
            writeln!(w, "{:<16}{:<24}{:<16}", net.bridge, id, "no")?;
        }
        for p in ports {
            if first {
                writeln!(w, "{:<16}{:<24}{:<16}{p}", net.bridge, id, "no")?;
                first = false;
            } else {
                padded(w, "", PORT_COLUMN)?;
                writeln!(w, "{p}")?;
            }
        }
    }
    Ok(())
}

/// One network and its attachments, with what the kernel lacks of them.
fn print_network(w: &mut impl Write, net: &Network, live: &LivePorts) -> io::Result<()> {
    writeln!(w)?;
    let gws: Vec<String> = net
        .subnets
        .iter()
        .map(|s| format!("{} via {}", s.cidr, s.gateway))
        .collect();
    writeln!(
        w,
        "network {} ({}): {} [{}]",
        net.name,
        made_of(net),
        gws.join(", "),
        flags(net)
    )?;
    if let Some(o) = &net.overlay {
        // The kernel's view: the hosts this one is programmed to reach.
        let peers = live.peers_of(&net.name);
        let list: Vec<String> = peers
            .iter()
            .map(|p| format!("{} via {}", p.subnet, p.vtep))
            .collect();
        writeln!(
            w,
            "  overlay {} (VNI {}, vtep {}): {} peer(s){}{}",
            o.config.subnet,
            o.config.vni,
            o.vtep,
            peers.len(),
            if list.is_empty() { "" } else { ": " },
            list.join(", ")
        )?;
        if let Some(c) = &o.conflict {
            writeln!(
                w,
                "  DEGRADED: host {} claims this host's subnet; see nsnet check",
                c.holder
            )?;
        }
    }
    let bridge = live.get(&net.bridge);
    for a in net.attachments.summaries() {
        let state = match live.get(a.host_ifname()) {
            _ if !net.has_bridge() => "",
            None => " (host side missing)",
            Some(l) if !on_bridge(l, bridge) => " (not on bridge)",
            Some(_) => "",
        };
        w.write_all(b"  ")?;
        padded(w, a.host_ifname(), 16)?;
        w.write_all(b" -> ")?;
        padded(w, &a.namespace(), 20)?;
        w.write_all(b" ")?;
        padded(w, a.ifname(), 8)?;
        writeln!(w, " {}{state}", a.addresses())?;
        if !a.ports().is_empty() {
            writeln!(w, "  {:<16}    published: {}", "", ports(a.ports()))?;
        }
    }
    Ok(())
}

/// What the network is made of: its bridge, or its host interface on the
/// LAN.
fn made_of(net: &Network) -> String {
    use nsnet::model::lan::Lan;
    match &net.lan {
        None => format!("bridge {}", net.bridge),
        Some(Lan::Macvlan(m)) => format!("macvlan on {}, mode {}", m.parent, m.mode),
        Some(Lan::HostDevice(d)) => format!("host-device {}", d.device),
    }
}

fn subnets(net: &Network) -> String {
    net.subnets
        .iter()
        .map(|s| s.cidr.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn addresses(a: &Attachment) -> String {
    a.addresses
        .iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn ports(ports: &[PortMapping]) -> String {
    ports
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn flags(net: &Network) -> String {
    let mut f = Vec::new();
    if let Some(lan) = &net.lan {
        f.push(match lan {
            nsnet::model::lan::Lan::Macvlan(m) => format!("macvlan:{}", m.mode),
            nsnet::model::lan::Lan::HostDevice(_) => "host-device".into(),
        });
        if net.macvlan().is_some_and(|m| m.host_access.is_some()) {
            f.push("host-access".into());
        }
        if net.internal {
            f.push("internal".into());
        }
        return f.join(",");
    }
    let mode = |v4| net.mode(v4).as_str().to_string();
    if net.internal {
        f.push("internal".to_string());
        if !net.has_gateway_addresses() {
            f.push("no-gateway-address".into());
        }
    } else if net.gateway_mode == net.gateway_mode_v6 || net.subnet_v6().is_none() {
        f.push(mode(true));
    } else {
        f.push(format!("{}/v6:{}", mode(true), mode(false)));
    }
    if net.isolate {
        f.push("isolated".into());
    }
    if !net.icc {
        f.push("no-icc".into());
    }
    if !net.trusted_interfaces.is_empty() {
        f.push(format!("trusted:{}", net.trusted_interfaces.join("+")));
    }
    if let Some(d) = &net.docker {
        f.push(format!("docker:{}", &d.id[..d.id.len().min(12)]));
    }
    if net.bridge_adopted {
        f.push("adopted-bridge".into());
    }

    f.join(",")
}

impl Printer {
    pub fn print_json(&self, v: serde_json::Value) {
        println!(
            "{}",
            serde_json::to_string_pretty(&v).expect("serializable")
        );
    }

    pub fn done(&self, msg: &str) {
        if self.json {
            self.print_json(json!({"ok": true, "message": msg}));
        } else if !self.quiet {
            println!("{msg}");
        }
    }

    pub fn network_created(&self, net: &Network) {
        if self.json {
            self.print_json(json!(NetworkView::of(net)));
        } else if !self.quiet {
            let gws: Vec<String> = net.subnets.iter().map(|s| s.gateway.to_string()).collect();
            if net.subnets.is_empty() {
                println!(
                    "created network {} ({}; a namespace keeps its addresses)",
                    net.name,
                    made_of(net)
                );
                return;
            }
            println!(
                "created network {} ({}, subnet {}, gateway {})",
                net.name,
                made_of(net),
                subnets(net),
                gws.join(",")
            );
        }
    }

    pub fn network_list(&self, state: &State) {
        if self.json {
            let list: Vec<NetworkView> = state.networks.values().map(NetworkView::of).collect();
            self.print_json(json!(list));
            return;
        }
        println!(
            "{:<20} {:<16} {:<36} {:>11}  FLAGS",
            "NAME", "BRIDGE", "SUBNETS", "ATTACHMENTS"
        );
        for net in state.networks.values() {
            let lan = net.lan.as_ref().map(|l| l.host_interface().to_string());
            println!(
                "{:<20} {:<16} {:<36} {:>11}  {}",
                net.name,
                lan.unwrap_or_else(|| net.bridge.clone()),
                subnets(net),
                net.attachments.len(),
                flags(net)
            );
        }
    }

    /// One network in detail; an overlay network with the peers its
    /// kernel is programmed for (`peers`).
    pub fn network_inspect(&self, net: &Network, peers: &[Peer]) {
        if self.json {
            let mut view = NetworkView::of(net);
            if let Some(o) = view.overlay.as_mut() {
                o.peers = Some(peers.iter().map(PeerView::of).collect());
            }
            self.print_json(json!(view));
            return;
        }
        // One write for the whole listing, as for `show`.
        let mut w = io::BufWriter::new(io::stdout().lock());
        let printed = print_inspect(&mut w, net, peers).and_then(|()| w.flush());
        report_stdout(printed);
    }

    pub fn namespace_list(&self, names: &[String]) {
        if self.json {
            self.print_json(json!(names));
        } else {
            // One write, not one per namespace.
            let mut w = io::BufWriter::new(io::stdout().lock());
            let printed = names
                .iter()
                .try_for_each(|n| writeln!(w, "{n}"))
                .and_then(|()| w.flush());
            report_stdout(printed);
        }
    }

    pub fn attachment(&self, network: &str, a: &Attachment) {
        if self.json {
            self.print_json(json!({"schema": super::schema::SCHEMA, "network": network, "attachment": AttachmentView::of(a)}));
        } else if !self.quiet {
            let side = match (&a.device, a.host_ifname.is_empty()) {
                (Some(d), _) => format!(" (host interface {})", d.name),
                (None, true) => String::new(),
                (None, false) => format!(" (host side {})", a.host_ifname),
            };
            println!(
                "connected {} to {network}: {} {}{side}",
                a.namespace,
                a.ifname,
                addresses(a),
            );
            if !a.ports.is_empty() {
                println!("published {}", ports(&a.ports));
            }
        }
    }

    /// What `brctl show` printed in the tutorial, then per network its
    /// subnets and per attachment its namespace, interface and addresses.
    pub fn show(&self, state: &State, live: &LivePorts) {
        if self.json {
            self.print_json(show_json(state, live));
            return;
        }
        // One write for the whole listing, not one per line: it has a line
        // per attachment.
        let mut w = io::BufWriter::new(io::stdout().lock());
        let printed = print_bridges(&mut w, state, live)
            .and_then(|()| {
                state
                    .networks
                    .values()
                    .try_for_each(|net| print_network(&mut w, net, live))
            })
            .and_then(|()| print_lab(&mut w, state))
            .and_then(|()| w.flush());
        report_stdout(printed);
    }

    pub fn outcome(&self, o: &nsnet::model::topology::Outcome, what: &str, dry_run: bool) {
        if self.json {
            self.print_json(
                json!({"changes": o.changes, "applied": o.applied, "dry_run": dry_run}),
            );
            return;
        }
        if self.quiet {
            return;
        }
        if o.changes.is_empty() {
            println!("no changes: nothing to do for {what}");
            return;
        }
        for c in &o.changes {
            println!("{}{c}", if dry_run { "would " } else { "" });
        }
        if !dry_run {
            println!("{} change(s) applied for {what}", o.changes.len());
        }
    }

    pub fn check(&self, report: &nsnet::api::Report, repaired: bool) {
        if self.json {
            self.print_json(json!({"clean": report.clean(), "drift": report.drift, "warnings": report.warnings}));
            return;
        }
        if repaired && !self.quiet {
            println!(
                "repaired from the record: the firewall table, IP forwarding and bridges' up state"
            );
        }
        for d in &report.drift {
            println!("{} {d}", self.paint("drift:", 31));
        }
        let mut remedies: Vec<String> = Vec::new();
        for d in &report.drift {
            let r = d.remedy();
            let done_by_repair = repaired && d.repairable();
            if !done_by_repair && !remedies.contains(&r) {
                remedies.push(r);
            }
        }
        if !remedies.is_empty() && !self.quiet {
            let why = if repaired {
                "--repair cannot restore this; run"
            } else {
                "to put it right, run"
            };
            for r in remedies {
                println!("{} {why}: {r}", self.paint("hint:", 33));
            }
        }
        for w in &report.warnings {
            println!("{} {w}", self.paint("warning:", 33));
        }
        if report.clean() && !self.quiet {
            println!("no drift: the kernel and the firewall match what nsnet recorded");
        }
    }

    pub fn ping_header(&self, dest: IpAddr) {
        if !self.json && !self.quiet {
            let payload = nsnet::api::live::PAYLOAD;
            // As ping(8) says it: IPv4 with the packet size, ICMPv6 not.
            if dest.is_ipv4() {
                println!(
                    "PING {dest} ({dest}) {payload}({}) bytes of data.",
                    payload + 8 + 20
                );
            } else {
                println!("PING {dest} ({dest}) {payload} data bytes");
            }
        }
    }

    pub fn ping_reply(&self, dest: IpAddr, r: &Reply) {
        if !self.json && !self.quiet {
            let ttl = r.ttl.map(|t| format!(" ttl={t}")).unwrap_or_default();
            println!(
                "{} bytes from {dest}: icmp_seq={}{ttl} time={:.3} ms",
                r.bytes,
                r.seq,
                r.rtt.as_secs_f64() * 1000.0
            );
        }
    }

    pub fn ping_summary(&self, dest: IpAddr, s: &Summary) {
        let ms: Vec<f64> = s.rtts.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        let loss = if s.transmitted == 0 {
            0.0
        } else {
            100.0 * f64::from(s.transmitted - s.received) / f64::from(s.transmitted)
        };
        if self.json {
            self.print_json(json!({"destination": dest, "transmitted": s.transmitted,
                "received": s.received, "loss_percent": loss, "rtt_ms": ms}));
            return;
        }
        if self.quiet {
            return;
        }
        println!();
        println!("--- {dest} ping statistics ---");
        println!(
            "{} packets transmitted, {} received, {loss:.0}% packet loss, time {}ms",
            s.transmitted,
            s.received,
            s.elapsed.as_millis()
        );
        if !ms.is_empty() {
            let min = ms.iter().cloned().fold(f64::MAX, f64::min);
            let max = ms.iter().cloned().fold(0.0, f64::max);
            let avg = ms.iter().sum::<f64>() / ms.len() as f64;
            let mdev = (ms.iter().map(|m| (m - avg).powi(2)).sum::<f64>() / ms.len() as f64).sqrt();
            println!("rtt min/avg/max/mdev = {min:.3}/{avg:.3}/{max:.3}/{mdev:.3} ms");
        }
    }
}
