//! `nsnet trace SRC DST`: the path a packet takes, hop by hop, and why it
//! does or does not arrive (`api::trace`).

use nsnet::api::trace::{By, Hop, Outcome, Request, Source, Trace, L4};
use nsnet::{Nsnet, Result};

use super::output::Printer;

#[derive(Debug, clap::Args)]
pub struct TraceArgs {
    /// A namespace, `host`, or from:IFNAME[@ADDR] for a packet entering the
    /// host on an interface (from an upstream client at ADDR)
    src: String,
    /// A namespace, a name nsnet's DNS answers, an address, or host:PORT
    /// for a published port (the host's address on SRC's interface)
    dst: String,
    /// The destination port (TCP and UDP; default 80)
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    port: Option<u16>,
    /// tcp, udp or icmp (an echo request)
    #[arg(long, default_value = "tcp", value_parser = ["tcp", "udp", "icmp"])]
    proto: String,
    /// Also send a real packet (a TCP SYN, a UDP datagram or an echo
    /// request) and report what the kernel did with it, chain by chain
    #[arg(long)]
    probe: bool,
}

/// Exit 0 when the packet arrives (or leaves the host towards the
/// outside), 1 when it does not.
pub fn run(nsnet: &Nsnet, out: &Printer, args: &TraceArgs) -> Result<i32> {
    let l4 = match args.proto.as_str() {
        "udp" => L4::Udp,
        "icmp" => L4::Icmp,
        _ => L4::Tcp,
    };
    let src: Source = args.src.parse()?;
    let trace = nsnet.trace(&Request {
        src,
        dst: args.dst.clone(),
        port: args.port,
        l4,
        probe: args.probe,
    })?;
    if out.json {
        out.print_json(serde_json::to_value(&trace).expect("a trace serializes"));
    } else {
        print(&trace);
    }
    // With a probe, what the packet did decides.
    let reached = match &trace.probe {
        Some(p) => matches!(p.outcome, Outcome::Connected | Outcome::Answered),
        None => trace.reached,
    };
    Ok(if reached { 0 } else { 1 })
}

fn print(t: &Trace) {
    let what = match (t.protocol, t.port) {
        (L4::Icmp, _) => "icmp echo".to_string(),
        (L4::Udp, Some(p)) => format!("udp port {p}"),
        (_, p) => format!("tcp port {}", p.unwrap_or(0)),
    };
    println!("trace {} -> {} ({}), {what}", t.from, t.to, t.address);
    for (i, hop) in t.hops.iter().enumerate() {
        println!("{:>3}  {}", i + 1, line(hop));
    }
    match (&t.cause, t.reached) {
        (_, true) => println!("reached"),
        (Some(c), false) => println!("{c}"),
        (None, false) => println!("not reached"),
    }
    for u in &t.unsure {
        println!("unsure: a rule nsnet cannot evaluate may decide otherwise: {u}");
    }
    if let Some(p) = &t.probe {
        let outcome = match p.outcome {
            Outcome::Connected => "connected",
            Outcome::Refused => "refused (it arrived, nothing took it)",
            Outcome::Answered => "answered",
            Outcome::NoAnswer => "no answer",
            Outcome::NoRoute => "not sent: the source has no route",
        };
        println!("probe: {outcome}");
        for e in &p.events {
            let by = match e.handle {
                Some(h) if e.kind == "rule" => format!("rule {h}"),
                _ => e.kind.to_string(),
            };
            println!(
                "  kernel: {} {} {}: {} by {by}",
                e.family, e.table, e.chain, e.verdict
            );
        }
        match &p.note {
            Some(n) => println!("{n}"),
            None => println!("the probe agrees"),
        }
    }
}

fn line(hop: &Hop) -> String {
    match hop {
        Hop::Route {
            namespace,
            to,
            dev,
            via,
            source,
        } => {
            let via = via.map_or_else(String::new, |v| format!(" via {v}"));
            let src = source.map_or_else(String::new, |s| format!(" src {s}"));
            format!("{namespace}: route to {to}{via} dev {dev}{src}")
        }
        Hop::Cross { what } => what.clone(),
        Hop::Chains { hook, chains } => {
            let parts: Vec<String> = chains
                .iter()
                .map(|c| {
                    let by = match &c.by {
                        By::Policy => "policy".to_string(),
                        By::Rule { chain, handle, .. } => match handle {
                            Some(h) => format!("rule {h} of {chain}"),
                            None => format!("a rule of {chain}"),
                        },
                    };
                    let verdict = format!("{:?}", c.verdict).to_lowercase();
                    format!(
                        "{} {} {} ({}): {verdict} by {by}",
                        c.family, c.table, c.chain, c.priority
                    )
                })
                .collect();
            format!("host {}: {}", hook.name(), parts.join("; "))
        }
        Hop::Dnat { published, to } => format!("DNAT {published} -> {to}"),
        Hop::Arrive { namespace } => format!("{namespace}: the address is its own"),
        Hop::Listen {
            namespace,
            port,
            listening,
        } => format!(
            "{namespace}: {} on port {port}",
            if *listening {
                "something listens"
            } else {
                "nothing listens"
            }
        ),
        Hop::Leave { dev } => format!("leaves the host through {dev}"),
    }
}
