//! Lab commands of the command line: `link`, `route`, `impair`,
//! `pingall`, `graph`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::json;

use super::output::Printer;
use super::Result;
use nsnet::api::pingall;
use nsnet::model::graph::{Format, Graph};
use nsnet::model::lab::LinkRequest;
use nsnet::model::lab::{resolve_ends, Endpoint, Impairment, LinkEnd, Route};
use nsnet::model::Rejection;
use nsnet::Nsnet;

#[derive(Debug, Subcommand)]
pub enum LinkCmd {
    /// Link two namespaces with a veth pair (creating them if needed)
    #[command(
        after_help = "Examples:\n  nsnet link add r1:eth1 r2:eth1 --ip 10.1.12.1/30 --ip 10.1.12.2/30\n  \
        nsnet link add h1:eth0 network:s1 --ip 10.0.0.1/24\n  nsnet link add network:s1 network:s2\n\n\
        A switch (network:NAME) is a bridge in a namespace of its own, made with its first link\n\
        and deleted with its last; its port for h1:eth0 is NAME:h1-eth0. Links that would close\n\
        a loop of switches are refused."
    )]
    Add {
        /// NAMESPACE:INTERFACE of one end, or network:SWITCH for a port
        /// of a switch (made with its first link)
        a: String,
        /// NAMESPACE:INTERFACE or network:SWITCH of the other end
        b: String,
        /// ADDR/PLEN of an end: the first --ip goes to the first end, the
        /// second to the second (none: no addresses; a link to a switch
        /// takes one, for the namespace's end)
        #[arg(long = "ip", value_name = "ADDR/PLEN")]
        ips: Vec<String>,
        /// MTU of both ends
        #[arg(long)]
        mtu: Option<u32>,
    },
    /// Delete the link between two ends (in either order)
    Del { a: String, b: String },
    /// List links
    Ls,
}

#[derive(Debug, Subcommand)]
pub enum RouteCmd {
    /// Add a static route inside a namespace
    #[command(
        after_help = "Examples:\n  nsnet route add r1 10.2.0.0/24 via 10.1.12.2\n  nsnet route add h1 default via 10.0.1.1"
    )]
    Add {
        namespace: String,
        /// ADDR/PLEN, or `default`
        destination: String,
        #[arg(value_parser = ["via"], hide_possible_values = true)]
        via: String,
        gateway: String,
    },
    /// Delete a static route nsnet added
    Del {
        namespace: String,
        destination: String,
        #[arg(value_parser = ["via"], hide_possible_values = true)]
        via: String,
        gateway: String,
    },
    /// List static routes and forwarding namespaces
    Ls,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  nsnet impair r1:eth1 --delay 20ms --jitter 5ms --loss 1%\n  \
    nsnet impair r1:eth1 --rate 10mbit\n  nsnet impair r1:eth1 --clear\n  nsnet impair ls"
)]
pub struct ImpairArgs {
    /// NAMESPACE:INTERFACE, or `ls` to list impairments
    target: String,
    /// Added delay, e.g. 20ms
    #[arg(long)]
    delay: Option<String>,
    /// Variation of the delay, e.g. 5ms
    #[arg(long)]
    jitter: Option<String>,
    /// Packets dropped, e.g. 1%
    #[arg(long)]
    loss: Option<String>,
    /// Rate limit, e.g. 10mbit
    #[arg(long)]
    rate: Option<String>,
    /// Packets corrupted, e.g. 0.1%
    #[arg(long)]
    corrupt: Option<String>,
    /// Packets sent twice, e.g. 1%
    #[arg(long)]
    duplicate: Option<String>,
    /// Remove the impairment
    #[arg(long, conflicts_with_all = ["delay", "jitter", "loss", "rate", "corrupt", "duplicate"])]
    clear: bool,
}

#[derive(Debug, Args)]
pub struct PingallArgs {
    /// Only what this topology file made
    #[arg(short, long)]
    file: Option<PathBuf>,
    /// Echo requests per pair
    #[arg(short = 'c', long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    count: u32,
    /// Seconds to wait after a pair's last request when no reply has come
    #[arg(short = 'W', long, default_value_t = 1.0)]
    timeout: f64,
}

#[derive(Debug, Args)]
pub struct GraphArgs {
    /// Draw this topology file (default: what is recorded)
    #[arg(short, long)]
    file: Option<PathBuf>,
    /// dot (Graphviz) or mermaid
    #[arg(long, default_value = "dot", value_parser = ["dot", "mermaid"])]
    format: String,
}

fn endpoint(s: &str) -> Result<Endpoint> {
    Ok(s.parse::<Endpoint>()?)
}

fn link_end(s: &str) -> Result<LinkEnd> {
    Ok(s.parse::<LinkEnd>()?)
}

pub fn link(nsnet: &Nsnet, out: &Printer, cmd: LinkCmd) -> Result<()> {
    match cmd {
        LinkCmd::Add { a, b, ips, mtu } => {
            let ends = [link_end(&a)?, link_end(&b)?];
            let addrs = super::all(&ips, |s| {
                s.parse::<ipnet::IpNet>()
                    .map_err(|_| Rejection::Unparsable {
                        what: "address",
                        value: s.to_string(),
                        expected: "expected ADDR/PLEN such as 10.1.12.1/30",
                    })
            })?;
            let to_switch = |i: usize| matches!(ends[i], LinkEnd::Switch(_));
            let addresses = match addrs.as_slice() {
                [] => [vec![], vec![]],
                // A switch's port has no address: one --ip is the other end's.
                [x] if to_switch(1) && !to_switch(0) => [vec![*x], vec![]],
                [x] if to_switch(0) && !to_switch(1) => [vec![], vec![*x]],
                [x, y] => [vec![*x], vec![*y]],
                _ => return Err(Rejection::LinkAddressCount { given: addrs.len() }.into()),
            };
            let req = LinkRequest {
                ends,
                addresses,
                mtu,
                owner: None,
                impair: None,
            };
            nsnet.link_add(&req)?;
            let [a, b] = req.resolved_ends();
            out.done(&format!("linked {a} <-> {b}"));
        }
        LinkCmd::Del { a, b } => {
            let [a, b] = resolve_ends(&[link_end(&a)?, link_end(&b)?]);
            nsnet.link_del(&a, &b)?;
            out.done(&format!("deleted link {a} <-> {b}"));
        }
        LinkCmd::Ls => {
            let state = nsnet.state()?;
            if out.json {
                out.print_json(json!(state.links));
            } else {
                for l in &state.links {
                    let end = |i: usize| {
                        let addrs: Vec<String> =
                            l.addresses[i].iter().map(|a| a.to_string()).collect();
                        format!("{} {}", l.ends[i], addrs.join(","))
                    };
                    println!("{:<40} <-> {}", end(0), end(1));
                }
            }
        }
    }
    Ok(())
}

fn route_of(destination: &str, gateway: &str) -> Result<Route> {
    Ok(Route::new(destination, gateway)?)
}

pub fn route(nsnet: &Nsnet, out: &Printer, cmd: RouteCmd) -> Result<()> {
    match cmd {
        RouteCmd::Add {
            namespace,
            destination,
            gateway,
            ..
        } => {
            let r = route_of(&destination, &gateway)?;
            nsnet.route_add(&namespace, &r)?;
            out.done(&format!("added route {r} in {namespace}"));
        }
        RouteCmd::Del {
            namespace,
            destination,
            gateway,
            ..
        } => {
            let r = route_of(&destination, &gateway)?;
            nsnet.route_del(&namespace, &r)?;
            out.done(&format!("deleted route {r} in {namespace}"));
        }
        RouteCmd::Ls => {
            let state = nsnet.state()?;
            if out.json {
                out.print_json(json!(state.lab_namespaces));
            } else {
                for (ns, r) in &state.lab_namespaces {
                    if r.forward {
                        println!("{ns:<16} forwards");
                    }
                    for route in &r.routes {
                        println!("{ns:<16} {route}");
                    }
                }
            }
        }
    }
    Ok(())
}

pub fn impair(nsnet: &Nsnet, out: &Printer, args: ImpairArgs) -> Result<()> {
    if args.target == "ls" {
        let state = nsnet.state()?;
        if out.json {
            let list: Vec<_> = state
                .impairments
                .iter()
                .map(|(e, r)| json!({"end": e.to_string(), "impairment": r.impairment}))
                .collect();
            out.print_json(json!(list));
        } else {
            for (e, r) in &state.impairments {
                println!("{:<24} {}", e.to_string(), r.impairment);
            }
        }
        return Ok(());
    }
    let end = endpoint(&args.target)?;
    if args.clear {
        nsnet.impair(&end, None)?;
        out.done(&format!("cleared the impairment of {end}"));
        return Ok(());
    }
    let imp = Impairment::from_options([
        ("delay", args.delay.as_ref()),
        ("jitter", args.jitter.as_ref()),
        ("loss", args.loss.as_ref()),
        ("rate", args.rate.as_ref()),
        ("corrupt", args.corrupt.as_ref()),
        ("duplicate", args.duplicate.as_ref()),
    ])?
    .ok_or(Rejection::MissingOption {
        option: "--delay, --loss, --rate, --jitter, --corrupt, --duplicate or --clear",
        reason: "say how to impair the link",
    })?;
    nsnet.impair(&end, Some(&imp))?;
    out.done(&format!("impaired {end}: {imp}"));
    Ok(())
}

/// Exit 0 when every expected pair got a reply, 1 otherwise.
pub fn pingall_command(nsnet: &Nsnet, out: &Printer, args: PingallArgs) -> Result<i32> {
    let timeout = super::seconds(args.timeout, "timeout")?;
    let mut state = nsnet.state()?;
    if let Some(file) = &args.file {
        state = only_owned_by(state, &nsnet::topology::owner_of(file));
    }
    let pairs = pingall::expected(&state);
    let results = pingall::run(&pairs, args.count, timeout)?;
    let failed = results.iter().filter(|r| !r.ok()).count();
    if out.json {
        out.print_json(json!({"pairs": results, "failed": failed}));
    } else {
        print_matrix(&results);
        println!(
            "{} of {} pairs reached ({} failed)",
            results.len() - failed,
            results.len(),
            failed
        );
    }
    Ok(if failed == 0 { 0 } else { 1 })
}

fn print_matrix(results: &[pingall::Outcome]) {
    println!(
        "{:<14} {:<14} {:<28} {:>6} {:>9}  because",
        "from", "to", "address", "loss", "rtt"
    );
    for r in results {
        let rtt = r
            .rtt_ms
            .map(|ms| format!("{ms:.2} ms"))
            .unwrap_or_else(|| "-".into());
        let mark = if r.ok() { "" } else { "  FAILED" };
        println!(
            "{:<14} {:<14} {:<28} {:>5.0}% {:>9}  {}{mark}",
            r.pair.from,
            r.pair.to,
            r.pair.address.to_string(),
            r.loss_pct(),
            rtt,
            r.pair.because
        );
        if let Some(e) = &r.error {
            println!("    {e}");
        }
    }
}

/// The record reduced to what one topology file made.
fn only_owned_by(mut state: nsnet::model::State, owner: &str) -> nsnet::model::State {
    let mine = |o: &Option<String>| o.as_deref() == Some(owner);
    state.networks.retain(|_, n| mine(&n.owner));
    for n in state.networks.values_mut() {
        n.attachments.retain(|a| mine(&a.owner));
    }
    state.links.retain(|l| mine(&l.owner));
    // A switch belongs to whoever's links it carries.
    let links = &state.links;
    state
        .lab_namespaces
        .retain(|ns, r| mine(&r.owner) || (r.switch && links.iter().any(|l| l.uses_namespace(ns))));
    state
}

pub fn graph(nsnet: &Nsnet, args: GraphArgs) -> Result<()> {
    let g = match &args.file {
        Some(file) => nsnet::topology::graph(&nsnet::topology::load(file)?),
        None => Graph::from_state(&nsnet.state()?),
    };
    let format = if args.format == "mermaid" {
        Format::Mermaid
    } else {
        Format::Dot
    };
    print!("{}", g.render(format));
    Ok(())
}
