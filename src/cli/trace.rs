//! `nsnet trace SRC DST`: the path a packet takes, hop by hop, and why it
//! does or does not arrive (`api::trace`).

use nsnet::api::trace::{By, Hop, Request, Source, Trace, L4};
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
    })?;
    if out.json {
        out.print_json(serde_json::to_value(&trace).expect("a trace serializes"));
    } else {
        print(&trace);
    }
    Ok(if trace.reached { 0 } else { 1 })
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
