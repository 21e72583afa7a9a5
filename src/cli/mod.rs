//! The command line, a front end (in the binary): clap syntax, parsing of
//! each value into model requests, dispatch, and the human/JSON output
//! (`output`), `exec`, and the `demo`. Holds no logic another front end
//! would need; uses the library's public API only.

mod capture;
mod deferred;
pub mod demo;
pub mod exec;
pub mod lab;
mod nodes;
pub mod output;
pub mod schema;
mod trace;

pub use deferred::parse;
use deferred::Deferred;

use std::io;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{CommandFactory, Parser, Subcommand};

use nsnet::api::live as ping;
use nsnet::model::ports::PortMapping;
use nsnet::model::rejection::{parse_ip, parse_subnet};
use nsnet::model::{names, ConnectRequest, CreateRequest, GatewayMode, NsRef, Rejection, State};
use nsnet::{require_root, Nsnet, Result};

#[derive(Debug, Parser)]
#[command(
    name = "nsnet",
    version,
    about = "Docker-style bridge networking for named Linux network namespaces",
    long_about = "Docker-style bridge networking for named Linux network namespaces.\n\n\
        Exit codes: 0 success, 1 operation failed, 2 invalid input, 3 not found, \
        4 conflict (exists, in use, overlap)."
)]
pub struct Cli {
    #[command(flatten)]
    pub options: GlobalOptions,
    #[command(subcommand)]
    pub command: Command,
}

/// The options every subcommand takes, before or after its name.
#[derive(Debug, clap::Args)]
pub struct GlobalOptions {
    /// Where nsnet records networks and leases
    #[arg(long, global = true, help_heading = "Global options", env = "NSNET_STATE_DIR", default_value = nsnet::api::live::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Machine-readable output for listings and errors
    #[arg(long, global = true, help_heading = "Global options")]
    pub json: bool,
    /// More detail on stderr
    #[arg(
        short,
        long,
        global = true,
        help_heading = "Global options",
        conflicts_with = "quiet"
    )]
    pub verbose: bool,
    /// Print nothing but errors
    #[arg(short, long, global = true, help_heading = "Global options")]
    pub quiet: bool,
    /// Colour labels: auto (on a terminal, unless NO_COLOR is set), always, never
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "auto",
        help_heading = "Global options"
    )]
    pub color: output::ColorChoice,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, list, inspect and remove networks (a bridge plus subnets)
    #[command(subcommand)]
    Network(Deferred<NetworkCmd>),
    /// Add, delete and list named network namespaces (like `ip netns`)
    #[command(subcommand)]
    Ns(Deferred<NsCmd>),
    /// Attach namespaces to a network (creating them if needed)
    #[command(after_help = "Examples (the tutorial's steps):\n  \
        nsnet connect mydocker0 ns1 --ip 172.16.1.1/16\n  \
        nsnet connect mydocker0 ns2 --ip 172.16.1.2/16\n  \
        nsnet connect mydocker0 web -p 8080:80\n  \
        nsnet connect mydocker0 a b c          (three namespaces, all or nothing)")]
    Connect {
        /// The network to attach to (see `nsnet network ls`)
        network: String,
        /// Names under /run/netns, or paths such as /proc/PID/ns/net; several
        /// are attached in one go, all or nothing
        #[arg(required = true, value_name = "NAMESPACE")]
        namespaces: Vec<String>,
        /// Address inside the namespace, with or without prefix (one per family)
        #[arg(long = "ip", value_name = "ADDR")]
        ips: Vec<String>,
        /// Interface name inside the namespace
        #[arg(long, value_name = "IF", default_value = nsnet::model::DEFAULT_IFNAME)]
        ifname: String,
        /// MAC address of the interface inside the namespace
        #[arg(long)]
        mac: Option<String>,
        /// Publish a port: [HOSTIP:]HOSTPORT[-END]:PORT[-END][/tcp|/udp|/sctp]
        #[arg(short = 'p', long = "publish", value_name = "SPEC")]
        publish: Vec<String>,
        /// Publish even where a host service listens on the port (its
        /// traffic then goes to the namespace)
        #[arg(long)]
        force: bool,
        /// Another DNS name of the namespace on this network; repeatable
        #[arg(long = "alias", value_name = "NAME")]
        aliases: Vec<String>,
    },
    /// Detach namespaces from a network (and delete those that connect created)
    Disconnect {
        /// The network to detach from
        network: String,
        /// One or more namespaces; several are detached in one batch
        #[arg(required = true, value_name = "NAMESPACE")]
        namespaces: Vec<String>,
    },
    /// Run a command inside a namespace (like `ip netns exec`)
    #[command(
        after_help = "Examples:\n  nsnet exec ns1 ip addr\n  nsnet exec ns1 -- ping -c 1 172.16.1.2"
    )]
    Exec {
        /// A name under /run/netns, or a path such as /proc/PID/ns/net
        namespace: String,
        /// The command and its arguments (`--` before it is optional; it
        /// lets the command have options nsnet would take for its own)
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            required = true,
            value_name = "COMMAND"
        )]
        command: Vec<String>,
    },
    /// Send ICMP echo requests from inside a namespace
    Ping {
        /// The namespace to ping from
        namespace: String,
        /// An IPv4 or IPv6 address, or a namespace on a network shared with
        /// NAMESPACE (its address there; IPv4 first)
        destination: String,
        /// Number of requests
        #[arg(short = 'c', long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=100000))]
        count: u32,
        /// Seconds to wait after the last request when no reply has come, as
        /// ping(8)'s -W; a reply counts whenever it arrives
        #[arg(short = 'W', long, default_value_t = 10.0)]
        timeout: f64,
        /// Seconds between requests
        #[arg(short = 'i', long, default_value_t = 1.0)]
        interval: f64,
    },
    /// Capture packets on an interface of a namespace or of the host, like
    /// tcpdump: a line per packet, or a pcap file
    #[command(after_help = "Examples:\n  \
        nsnet capture r1:eth1 -c 5 icmp\n  \
        nsnet capture r1:eth1 -w ping.pcap\n  \
        nsnet capture r1:eth1 -w - | wireshark -k -i -\n\
        The filter is libpcap's (tcpdump's) and is compiled by tcpdump, which must be installed\n\
        for a filter. Ctrl-C ends the capture; the number of packets goes to stderr.")]
    Capture(capture::CaptureArgs),
    /// Why a packet from SRC does or does not reach DST: each route
    /// lookup, bridge, link and firewall chain on the way, and the cause
    #[command(after_help = "Examples:\n  \
        nsnet trace web db --port 5432\n  \
        nsnet trace h1 10.9.2.10 --proto icmp\n  \
        nsnet trace from:eth0 host:8080\n  \
        nsnet trace web db --json\n  \
        nsnet trace web db --port 5432 --probe\n\
        Exit 0 if the packet would arrive (or leaves the host towards the outside), 1 if not;\n\
        with --probe, if the real packet arrived. The probe's trace rule is in a table the kernel\n\
        deletes with nsnet's netlink socket: nothing is left behind, even after kill -9.")]
    Trace(trace::TraceArgs),
    /// A local web page with the live topology, traffic counters, drift and
    /// traces between two namespaces chosen with two clicks
    #[command(
        after_help = "Prints the page's URL, with the token every request needs, and serves\n\
        until Ctrl-C or SIGTERM. Listens on loopback only, unless --allow-remote.\n\
        Everything it serves is in the binary: it works offline."
    )]
    Ui(UiArgs),
    #[command(flatten)]
    Nodes(nodes::NodeCmd),
    /// Show bridges, their networks and attachments (like `brctl show`, and more)
    Show {
        /// Only this network (its bridge, subnets and attachments); links,
        /// routes and impairments are left out
        network: Option<String>,
    },
    /// Point-to-point links between namespaces: a veth pair, no bridge
    #[command(subcommand)]
    Link(Deferred<lab::LinkCmd>),
    /// Static routes inside namespaces (make a namespace a router with
    /// `nsnet ns add NAME --forward`)
    #[command(subcommand)]
    Route(Deferred<lab::RouteCmd>),
    /// Impair what an interface sends (a netem qdisc): delay, jitter, loss,
    /// rate, corruption, duplication
    Impair(Deferred<lab::ImpairArgs>),
    /// Ping every pair that should reach each other, in parallel (like
    /// Mininet's pingall); exit 1 if any pair gets no reply
    Pingall(Deferred<lab::PingallArgs>),
    /// The topology as a Graphviz (dot) or Mermaid graph
    #[command(after_help = "Example:
  nsnet graph -f lab.toml | dot -Tsvg > lab.svg")]
    Graph(Deferred<lab::GraphArgs>),
    /// The host's DNS server for nsnet networks (started and stopped by
    /// nsnet itself; runs in the foreground, logs to stderr)
    #[command(hide = true)]
    Dns,
    /// Deletes host veths a disconnect parked (started detached by nsnet
    /// itself, so that the command need not wait for the kernel)
    #[command(hide = true)]
    ReapParked { names: Vec<String> },
    /// The per-host daemon of overlay networks: keeps this host's claims
    /// alive in etcd and programs the other hosts as they come and go
    #[command(
        after_help = "Runs in the foreground until SIGTERM or SIGINT; logs to stderr.\n\
        Start it on every host that has joined an overlay network (see the README for a\n\
        systemd unit)."
    )]
    Agent {
        /// etcd endpoints to use instead of those recorded with each network
        #[arg(long, env = "NSNET_ETCD", value_delimiter = ',', value_name = "URL")]
        etcd: Vec<String>,
        /// Each given replaces what a network recorded
        #[command(flatten)]
        access: EtcdAccessArgs,
    },
    /// Docker's network driver: serves Docker Engine on a unix socket, so
    /// that `docker network create -d nsnet` makes nsnet networks
    #[command(
        name = "docker-plugin",
        after_help = "Runs in the foreground until SIGTERM or SIGINT; logs to stderr. Start it before\n\
        dockerd and stop it after (see docs/guide/docker.md for a systemd unit).\n\
        Example:\n  nsnet docker-plugin &\n  docker network create -d nsnet --subnet 172.16.0.0/16 mydocker0"
    )]
    DockerPlugin {
        /// The socket dockerd finds the driver on (its name is the driver's)
        #[arg(long, value_name = "PATH", default_value = nsnet::docker::DEFAULT_SOCKET)]
        socket: PathBuf,
        /// Where Docker's networks are kept, to make them again after a
        /// reboot empties nsnet's record (Docker never sends them again)
        #[arg(long, value_name = "DIR", default_value = nsnet::docker::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
    },
    /// Make the host match a topology file; only what differs is changed
    #[command(
        after_help = "Examples:\n  nsnet up -f examples/tutorial.toml --dry-run\n  nsnet up -f examples/tutorial.toml\n  nsnet down -f examples/tutorial.toml"
    )]
    Up {
        /// The topology file
        #[arg(short = 'f', long = "file", default_value = "nsnet.toml")]
        file: PathBuf,
        /// Print what would change, change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Remove everything an `up` of a topology file created
    Down {
        /// The topology file
        #[arg(short = 'f', long = "file", default_value = "nsnet.toml")]
        file: PathBuf,
    },
    /// Forget what refers to namespaces that no longer exist: attachments (their veths,
    /// leases, ports), links, and the processes topology files ran in them
    Gc,
    /// Compare what nsnet recorded with the kernel and the firewall (exit 1 on drift)
    Check {
        /// Only this network (the firewall is always checked whole)
        network: Option<String>,
        /// Put back what can be restored from the record: the firewall table,
        /// forwarding sysctls, bridges brought down
        #[arg(long)]
        repair: bool,
    },
    /// Run the tutorial end to end in a private sandbox (the host is untouched)
    Demo,
    /// Write the manual pages: nsnet(1) and one per command (nsnet-connect(1), ...)
    #[command(after_help = "Example:\n  nsnet man /usr/local/share/man/man1 && man nsnet-connect")]
    Man {
        /// The directory to write them to (created if needed)
        dir: PathBuf,
    },
    /// Print a shell completion script
    Completions {
        /// bash, elvish, fish, powershell or zsh
        shell: clap_complete::Shell,
    },
}

// Parsed once per process: the size of `Create` costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum NetworkCmd {
    /// Create a network: a bridge, a gateway address per subnet, NAT
    #[command(after_help = "Examples (the tutorial's bridge, and more):\n  \
        nsnet network create mydocker0 --subnet 172.16.0.0/16\n  \
        nsnet network create lab --subnet 10.20.0.0/24 --subnet fd00:20::/64 --no-icc\n  \
        nsnet network create back --internal")]
    Create {
        /// The network's name (also the bridge's, unless --bridge is given)
        name: String,
        /// A subnet given without --subnet: refused with a hint
        #[arg(hide = true)]
        stray: Vec<String>,
        /// IPv4 and/or IPv6 subnet (default: a free private /24)
        #[arg(long = "subnet", value_name = "CIDR")]
        subnets: Vec<String>,
        /// Gateway address per subnet (default: the first host address)
        #[arg(long = "gateway", value_name = "IP")]
        gateways: Vec<String>,
        /// Bridge name (default: the network name); an existing bridge is adopted
        #[arg(long, value_name = "IFNAME")]
        bridge: Option<String>,
        /// No route out: traffic stays on the bridge
        #[arg(long)]
        internal: bool,
        /// How the network meets the outside (IPv4, and IPv6 unless
        /// --gateway-mode-v6 is given): nat (masquerade, and nothing routed
        /// to the namespaces from outside gets in), nat-unprotected
        /// (masquerade only), routed (no masquerade; only published
        /// container ports and ping reach the namespaces), isolated (with
        /// --internal: no address on the bridge)
        #[arg(long, value_name = "MODE", default_value = "nat")]
        gateway_mode: String,
        /// The gateway mode for IPv6, when it differs
        #[arg(long, value_name = "MODE")]
        gateway_mode_v6: Option<String>,
        /// Same as --gateway-mode routed
        #[arg(long)]
        no_masquerade: bool,
        /// Namespaces of the network cannot reach each other (except through
        /// published ports); the gateway still answers
        #[arg(long)]
        no_icc: bool,
        /// A host interface whose traffic may reach the namespaces directly
        /// (exempt from the direct-access protection); repeatable
        #[arg(long = "trusted-interface", value_name = "IFNAME")]
        trusted_interfaces: Vec<String>,
        /// Allow traffic to and from other nsnet networks
        #[arg(long)]
        no_isolate: bool,
        /// MTU of the bridge and its veths
        #[arg(long)]
        mtu: Option<u32>,
        /// Names of the network's namespaces do not resolve (no DNS server)
        #[arg(long)]
        no_dns: bool,
        /// The DNS search domain of the network
        #[arg(long, value_name = "DOMAIN")]
        dns_domain: Option<String>,
        /// Where names the network does not know are forwarded (default:
        /// the host's resolv.conf); repeatable
        #[arg(long = "dns", value_name = "IP")]
        dns_servers: Vec<String>,
        #[command(flatten)]
        overlay: OverlayArgs,
        #[command(flatten)]
        lan: Box<LanArgs>,
    },
    /// List networks
    Ls,
    /// Show one network in detail
    Inspect {
        /// The network's name
        name: String,
    },
    /// Remove networks (all or none: each must exist and, without --force,
    /// have no attachment)
    Rm {
        /// One or more networks
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
        /// Also disconnect every attachment
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Driver {
    /// A bridge on this host
    Bridge,
    /// One network across hosts: a host subnet per host, routed over VXLAN,
    /// coordinated in etcd
    Overlay,
    /// Namespaces straight on the LAN of a host interface (--parent), each
    /// with a MAC and an address of the LAN's own
    Macvlan,
    /// A host interface (--device) moved into the namespace that connects,
    /// and back on disconnect
    HostDevice,
    /// Refused, saying whether the kernel has ipvlan at all (use macvlan)
    Ipvlan,
}

#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Networks on the LAN (--driver macvlan, --driver host-device)")]
pub struct LanArgs {
    /// The host interface on the LAN (macvlan)
    #[arg(long, value_name = "IFNAME")]
    parent: Option<String>,
    /// How namespaces of the network reach each other: bridge (inside the
    /// host), private (not at all), vepa (through the LAN's switch),
    /// passthru (one namespace takes the parent over)
    #[arg(long, value_name = "MODE", default_value = "bridge")]
    mode: String,
    /// Addresses nsnet hands out, within --subnet (default: all of it);
    /// one per family
    #[arg(long = "ip-range", value_name = "CIDR")]
    ip_ranges: Vec<String>,
    /// Give the host an interface on the network too, so that the host and
    /// its namespaces reach each other (the kernel passes nothing between
    /// a macvlan interface and its parent)
    #[arg(long)]
    host_access: bool,
    /// Milliseconds to wait for an answer to the probes (ARP, IPv6 DAD) that keep
    /// addresses in use on the LAN from being handed out (0: no probes)
    #[arg(long, value_name = "MS", default_value_t = nsnet::model::lan::DEFAULT_PROBE_MS)]
    probe_wait: u32,
    /// The host interface to move in (host-device)
    #[arg(long, value_name = "IFNAME")]
    device: Option<String>,
}

impl LanArgs {
    /// The LAN part of the request; options of the other LAN driver, or
    /// of none, are refused.
    fn request(
        &self,
        nsnet: &Nsnet,
        driver: Driver,
    ) -> Result<Option<nsnet::model::lan::LanRequest>> {
        use nsnet::model::lan::LanRequest;
        let stray = |option: &'static str| -> Result<()> {
            Err(Rejection::NotForDriver {
                option,
                driver: driver_name(driver),
            }
            .into())
        };
        if driver == Driver::Ipvlan {
            return Err(nsnet.ipvlan_refusal().into());
        }
        if driver != Driver::Macvlan {
            if self.parent.is_some() {
                stray("--parent")?;
            }
            if self.host_access {
                stray("--host-access")?;
            }
            if !self.ip_ranges.is_empty() {
                stray("--ip-range")?;
            }
            if self.mode != "bridge" {
                stray("--mode")?;
            }
        }
        if driver != Driver::HostDevice && self.device.is_some() {
            stray("--device")?;
        }
        Ok(match driver {
            Driver::Bridge | Driver::Overlay => None,
            Driver::Ipvlan => unreachable!("refused above"),
            Driver::Macvlan => Some(LanRequest::Macvlan {
                parent: self.parent.clone().ok_or(Rejection::MissingOption {
                    option: "--parent",
                    reason: "a macvlan network is on a host interface on the LAN",
                })?,
                mode: self.mode.parse()?,
                ip_ranges: all(&self.ip_ranges, parse_subnet)?,
                host_access: self.host_access,
                probe_ms: self.probe_wait,
            }),
            Driver::HostDevice => Some(LanRequest::HostDevice {
                device: self.device.clone().ok_or(Rejection::MissingOption {
                    option: "--device",
                    reason: "a host-device network moves that host interface into its namespace",
                })?,
            }),
        })
    }
}

fn driver_name(driver: Driver) -> &'static str {
    match driver {
        Driver::Bridge => "bridge",
        Driver::Overlay => "overlay",
        Driver::Macvlan => "macvlan",
        Driver::HostDevice => "host-device",
        Driver::Ipvlan => "ipvlan",
    }
}

#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Overlay networks (--driver overlay)")]
pub struct OverlayArgs {
    /// The kind of network
    #[arg(long, value_enum, default_value = "bridge")]
    driver: Driver,
    /// etcd endpoints (http://HOST:PORT or https://HOST:PORT), comma-separated
    #[arg(long, env = "NSNET_ETCD", value_delimiter = ',', value_name = "URL")]
    etcd: Vec<String>,
    #[command(flatten)]
    access: Box<EtcdAccessArgs>,
    /// Prefix length of each host's subnet within --subnet
    #[arg(long, value_name = "LEN", default_value_t = nsnet::model::overlay::DEFAULT_HOST_SUBNET_LEN)]
    host_subnet_len: u8,
    /// VXLAN network identifier (default: derived from the network name)
    #[arg(long)]
    vni: Option<u32>,
    /// UDP port of the VXLAN traffic
    #[arg(long, value_name = "PORT", default_value_t = nsnet::model::overlay::DEFAULT_PORT)]
    vxlan_port: u16,
    /// This host's underlay address (default: the one it reaches etcd from)
    #[arg(long, value_name = "ADDR")]
    underlay: Option<String>,
    /// Seconds this host's claim outlives its agent
    #[arg(long, value_name = "SECONDS", default_value_t = nsnet::model::overlay::DEFAULT_LEASE_TTL)]
    lease_ttl: u64,
}

/// How to reach etcd beyond its endpoints. The paths and the user are
/// recorded with the network (for the agent); a password never is.
#[derive(Debug, Clone, clap::Args)]
pub struct EtcdAccessArgs {
    /// PEM file of the CAs that sign etcd's server certificates (default:
    /// the public web roots)
    #[arg(long, env = "NSNET_ETCD_CA", value_name = "FILE")]
    etcd_ca: Option<PathBuf>,
    /// PEM client certificate presented to etcd (with --etcd-key)
    #[arg(long, env = "NSNET_ETCD_CERT", value_name = "FILE")]
    etcd_cert: Option<PathBuf>,
    /// The client certificate's PEM private key
    #[arg(long, env = "NSNET_ETCD_KEY", value_name = "FILE")]
    etcd_key: Option<PathBuf>,
    /// etcd user; its password from --etcd-password-file or the
    /// NSNET_ETCD_PASSWORD environment variable
    #[arg(long, env = "NSNET_ETCD_USER", value_name = "NAME")]
    etcd_user: Option<String>,
    /// File whose first line is the etcd user's password
    #[arg(long, env = "NSNET_ETCD_PASSWORD_FILE", value_name = "FILE")]
    etcd_password_file: Option<PathBuf>,
}

impl EtcdAccessArgs {
    /// The settings, with paths made absolute: the agent reads them later
    /// from another directory.
    fn access(&self) -> Result<nsnet::model::overlay::EtcdAccess> {
        let abs = |p: &Option<PathBuf>| -> Result<Option<PathBuf>> {
            p.as_ref()
                .map(|p| {
                    std::path::absolute(p).map_err(|e| nsnet::Error::ReadFile {
                        path: p.display().to_string(),
                        source: e,
                    })
                })
                .transpose()
        };
        Ok(nsnet::model::overlay::EtcdAccess {
            ca: abs(&self.etcd_ca)?,
            cert: abs(&self.etcd_cert)?,
            key: abs(&self.etcd_key)?,
            user: self.etcd_user.clone(),
            password_file: abs(&self.etcd_password_file)?,
        })
    }
}

impl OverlayArgs {
    fn request(
        &self,
        name: &str,
        subnets: &[ipnet::IpNet],
    ) -> Result<Option<nsnet::model::overlay::OverlayRequest>> {
        if self.driver != Driver::Overlay {
            return Ok(None);
        }
        let underlay = self
            .underlay
            .as_deref()
            .map(|u| parse_ip(u, "underlay address"))
            .transpose()?;
        let opts = nsnet::model::overlay::OverlayOptions {
            etcd: self.etcd.clone(),
            access: self.access.access()?,
            host_subnet_len: self.host_subnet_len,
            vni: self.vni,
            port: self.vxlan_port,
            underlay,
            lease_ttl: self.lease_ttl,
        };
        Ok(Some(nsnet::model::overlay::OverlayRequest::new(
            name, subnets, opts,
        )?))
    }
}

#[derive(Debug, Subcommand)]
pub enum NsCmd {
    /// Create a named namespace
    Add {
        /// Its name under /run/netns
        name: String,
        /// Make it a router: IPv4 and IPv6 forwarding on (recorded, so
        /// that `nsnet down` and `check` know of it)
        #[arg(long)]
        forward: bool,
    },
    /// Delete a named namespace
    Del {
        /// Its name under /run/netns
        name: String,
    },
    /// List named namespaces
    Ls,
}

fn seconds(v: f64, what: &'static str) -> Result<Duration> {
    if !(v.is_finite() && v > 0.0 && v <= 3600.0) {
        return Err(Rejection::OutOfRange {
            what,
            value: v.to_string(),
            expected: "expected seconds between 0 and 3600",
        }
        .into());
    }
    Ok(Duration::from_secs_f64(v))
}

/// What a page says beyond its one line, and the guide that tells more:
/// the DESCRIPTION of a command's man page (`--help` stays short).
fn description(page: &str) -> Option<(&'static str, &'static str)> {
    Some(match page {
        "nsnet" => (
            "nsnet gives named network namespaces the networking Docker gives containers: \
             bridge networks with IPAM, NAT, published ports and direct-access protection, \
             DNS between namespaces, declarative topology files, VXLAN overlays across hosts, \
             lab links, routers and impairment, and a CNI plugin mode. Every command is all \
             or nothing, and a command killed half-way is finished by the next one.",
            "docs/guide/networks.md",
        ),
        "nsnet-network-create" => (
            "Creates a bridge (or adopts an existing one of that name), gives it a gateway \
             address per subnet, and sets up forwarding, masquerade and the network's firewall \
             rules in nftables table inet nsnet. Without --subnet a free private /24 is chosen.",
            "docs/guide/networks.md",
        ),
        "nsnet-connect" => (
            "Attaches each namespace to the network with a veth pair: an address from the \
             network's IPAM (or --ip), a default route via the gateway, published ports. A \
             namespace that does not exist is created, and deleted again by the disconnect \
             of its last attachment.",
            "docs/guide/networks.md",
        ),
        "nsnet-disconnect" => (
            "Detaches namespaces from a network: their veth, leases and published ports go, and \
             a namespace connect created goes with its last attachment.",
            "docs/guide/networks.md",
        ),
        "nsnet-up" | "nsnet-down" | "nsnet-gc" => (
            "up makes the host match a topology file, changing only what differs from what an \
             earlier up of the same file made, and repairing what the kernel lost; down removes \
             it all; gc forgets attachments whose namespace is gone.",
            "docs/guide/topology-files.md",
        ),
        "nsnet-check" => (
            "Compares the record with the kernel and the firewall, one line per difference; \
             --repair restores the firewall table, forwarding and bridges' state.",
            "docs/guide/ports-and-security.md",
        ),
        "nsnet-docker-plugin" => (
            "Serves Docker Engine's remote network and IPAM driver protocol: docker network \
             create -d nsnet makes nsnet networks, and Docker's containers get nsnet's bridge, NAT, \
             published ports and overlays; keeps nsnet's rules in Docker's DOCKER-USER chain.",
            "docs/guide/docker.md",
        ),
        "nsnet-agent" => (
            "Keeps this host's claims of overlay networks alive in etcd and programs the other \
             hosts of each network as they come and go.",
            "docs/guide/overlay.md",
        ),
        "nsnet-network" | "nsnet-network-ls" | "nsnet-network-inspect" | "nsnet-network-rm" => (
            "A network is a bridge with at most one IPv4 and one IPv6 subnet, its gateway \
             addresses, IPAM, and the network's rules in nftables table inet nsnet. rm of \
             several networks is all or none; --force takes their attachments with them.",
            "docs/guide/networks.md",
        ),
        "nsnet-ns" | "nsnet-ns-add" | "nsnet-ns-del" | "nsnet-ns-ls" => (
            "Named namespaces are iproute2's (bind mounts under /run/netns): ip netns and \
             nsnet work on the same ones. --forward makes a namespace a router.",
            "docs/guide/networks.md",
        ),
        "nsnet-exec" => (
            "Runs a command inside a namespace as ip netns exec does: a private /sys, and the \
             files of /etc/netns/NAME/ over /etc. Exits with the command's status.",
            "docs/guide/networks.md",
        ),
        "nsnet-ping" => (
            "Sends ICMP or ICMPv6 echo requests from inside a namespace over a raw socket and \
             prints as ping(8) does; exit 0 if a reply arrived.",
            "docs/guide/networks.md",
        ),
        "nsnet-show" => (
            "Prints what brctl show printed, then each network's subnets and attachments, \
             marking host ends that are missing or off their bridge.",
            "docs/guide/networks.md",
        ),
        "nsnet-demo" => (
            "Runs the tutorial nsnet grew from in a private network and mount namespace, \
             with a simulated upstream that only NAT reaches; the host is untouched.",
            "README.md",
        ),
        "nsnet-man" | "nsnet-completions" => (
            "Installation helpers: the manual pages, and completion scripts for bash, elvish, \
             fish, powershell and zsh.",
            "README.md",
        ),
        p if ["link", "route", "impair", "pingall", "graph"]
            .iter()
            .any(|c| p.starts_with(&format!("nsnet-{c}"))) =>
        {
            (
                "Lab features: point-to-point links, routers and static routes, impairment, \
                 reachability of every pair, and the topology as a graph.",
                "docs/guide/labs.md",
            )
        }
        _ => return None,
    })
}

/// Sections of nsnet(1) that clap does not make.
const MAN_EXTRA: &str = r#".SH "EXIT STATUS"
0 success, 1 the operation failed (or check found drift, or ping got no reply),
2 invalid input, 3 not found, 4 conflict (exists, in use, overlap).
.SH ENVIRONMENT
.TP
NSNET_STATE_DIR
where nsnet records networks and leases (\-\-state\-dir), /run/nsnet by default
.TP
NSNET_ETCD
etcd endpoints for overlay networks (\-\-etcd)
.TP
NSNET_ETCD_CA, NSNET_ETCD_CERT, NSNET_ETCD_KEY
TLS files for etcd (\-\-etcd\-ca, \-\-etcd\-cert, \-\-etcd\-key)
.TP
NSNET_ETCD_USER, NSNET_ETCD_PASSWORD_FILE
an etcd user and the file holding its password
.TP
NSNET_ETCD_PASSWORD
the etcd user's password, when no password file is named (never recorded)
.TP
NO_COLOR
no colour on a terminal either
.TP
CNI_COMMAND
set by a container runtime: nsnet runs as its CNI plugin
.SH FILES
.TP
/run/nsnet/state.json, state.log, journal.json
the record, its log of changes, the command in progress
.TP
/run/netns/NAME
named namespaces (iproute2's)
.TP
/etc/netns/NAME/resolv.conf
the DNS servers of a namespace
.SH "SEE ALSO"
ip-netns(8), nft(8), bridge(8); the guides and the reference in docs/ of nsnet's sources
"#;

/// nsnet(1) and a page per command and subcommand a user runs, generated
/// from the same definitions as `--help`.
fn man_pages(dir: &std::path::Path) -> Result<usize> {
    fn write(
        cmd: clap::Command,
        name: String,
        dir: &std::path::Path,
        n: &mut usize,
    ) -> io::Result<()> {
        let mut cmd = cmd.name(name.clone());
        if let Some((text, guide)) = description(&name) {
            cmd = cmd.long_about(format!("{text}\n\nMore: {guide}."));
        }
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
        if name == "nsnet" {
            page.extend_from_slice(MAN_EXTRA.as_bytes());
        }
        std::fs::write(dir.join(format!("{name}.1")), page)?;
        *n += 1;
        let visible = cmd
            .get_subcommands()
            .filter(|s| s.get_name() != "help" && !s.is_hide_set());
        for sub in visible {
            write(sub.clone(), format!("{name}-{}", sub.get_name()), dir, n)?;
        }
        Ok(())
    }
    let mut n = 0;
    // Built: subcommands defer their arguments until then (see `deferred`).
    let mut cli = Cli::command();
    cli.build();
    std::fs::create_dir_all(dir)
        .and_then(|_| write(cli, "nsnet".into(), dir, &mut n))
        .map_err(|source| nsnet::Error::WriteFile {
            path: dir.display().to_string(),
            source,
        })?;
    Ok(n)
}

fn parse_mode(s: &str) -> std::result::Result<GatewayMode, Rejection> {
    s.parse().map_err(|_| Rejection::BadGatewayMode {
        value: s.to_string(),
    })
}

/// Parses each text with `parse`.
fn all<T>(
    texts: &[String],
    parse: impl Fn(&str) -> std::result::Result<T, Rejection>,
) -> Result<Vec<T>> {
    Ok(texts
        .iter()
        .map(|t| parse(t))
        .collect::<std::result::Result<_, _>>()?)
}

fn up(nsnet: &Nsnet, out: &output::Printer, file: &std::path::Path, dry_run: bool) -> Result<()> {
    let topo = nsnet::topology::load(file)?;
    let outcome = nsnet.up(&topo, dry_run)?;
    out.outcome(&outcome, &file.display().to_string(), dry_run);
    Ok(())
}

fn disconnect(
    nsnet: &Nsnet,
    out: &output::Printer,
    network: &str,
    namespaces: &[String],
) -> Result<()> {
    let refs = all(namespaces, |n| Ok(NsRef::parse(n)?))?;
    for att in nsnet.disconnect_many(network, &refs)? {
        out.done(&format!(
            "disconnected {} from network {network}",
            att.namespace
        ));
    }
    Ok(())
}

/// `show`, of every network or of one.
fn show(nsnet: &Nsnet, out: &output::Printer, network: Option<String>) -> Result<()> {
    let start = Instant::now();
    let mut state = nsnet.state()?;
    nsnet::api::phase("read the record", start);
    if let Some(name) = network {
        let net = state
            .networks
            .remove(&name)
            .ok_or_else(|| Rejection::no_such_network(&name, state.networks.keys()))?;
        state = State {
            networks: [(name, net)].into(),
            ..State::default()
        };
    }
    let start = Instant::now();
    let live = output::live_ports(nsnet, &state);
    nsnet::api::phase("list the bridges' ports", start);
    let start = Instant::now();
    out.show(&state, &live);
    nsnet::api::phase("print", start);
    // The process ends next: freeing what a thousand attachments and
    // ports took, piece by piece, is a tenth of a millisecond for nothing.
    std::mem::forget(state);
    std::mem::forget(live);
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct UiArgs {
    /// Address and port to listen on (port 0: any free port)
    #[arg(long, default_value = nsnet::ui::DEFAULT_LISTEN, value_name = "ADDR:PORT")]
    listen: std::net::SocketAddr,
    /// Allow an address other than loopback (anyone who reaches it and has
    /// the URL sees your network)
    #[arg(long)]
    allow_remote: bool,
}

fn ui(nsnet: &Nsnet, args: &UiArgs) -> Result<()> {
    nsnet::ui::check_listen(args.listen, args.allow_remote)?;
    nsnet.require_root("read the network for the web view")?;
    nsnet::ui::serve(nsnet, args.listen, args.allow_remote)
}

pub fn run(cli: Cli) -> Result<i32> {
    let out = output::Printer {
        json: cli.options.json,
        quiet: cli.options.quiet,
        color: !cli.options.json && cli.options.color.enabled(),
    };
    nsnet::api::set_verbose(cli.options.verbose);
    let nsnet = Nsnet::new(&cli.options.state_dir);
    match cli.command {
        Command::Network(Deferred(cmd)) => network(&nsnet, &out, cmd)?,
        Command::Ns(Deferred(cmd)) => namespace(&nsnet, &out, cmd)?,
        Command::Connect {
            network,
            namespaces,
            ips,
            ifname,
            mac,
            publish,
            force,
            aliases,
        } => {
            let template = ConnectRequest {
                aliases: all(&aliases, |a| Ok(names::validate_domain(a)?))?,
                ips: all(&ips, str::parse)?,
                ifname: Some(ifname),
                mac: mac.as_deref().map(names::parse_mac).transpose()?,
                publish: all(&publish, |p| Ok(p.parse::<PortMapping>()?))?,
                take_host_ports: force,
                ..ConnectRequest::new(&network, NsRef::Named(String::new()))
            };
            connect(&nsnet, &out, &namespaces, template)?;
        }
        Command::Disconnect {
            network,
            namespaces,
        } => disconnect(&nsnet, &out, &network, &namespaces)?,
        Command::Exec { namespace, command } => {
            let ns = NsRef::parse(&namespace)?;
            if !nsnet.namespace_exists(&ns) {
                return Err(missing_namespace(&nsnet, &ns));
            }
            return exec::exec(&ns, &command, &cli.options.state_dir);
        }
        Command::Ping {
            namespace,
            destination,
            count,
            timeout,
            interval,
        } => {
            let opts = ping::PingOptions {
                count,
                timeout: seconds(timeout, "timeout")?,
                interval: seconds(interval, "interval")?,
                stop: Some(stop_on_interrupt()),
            };
            return ping_command(&nsnet, &out, &namespace, &destination, &opts);
        }
        Command::Up { file, dry_run } => up(&nsnet, &out, &file, dry_run)?,
        Command::Down { file } => {
            // The file's identity, even when it was edited or deleted since.
            let outcome = nsnet.down(&nsnet::topology::owner_of(&file))?;
            out.outcome(&outcome, &file.display().to_string(), false);
        }
        Command::Gc => {
            let outcome = nsnet.gc()?;
            out.outcome(&outcome, "gc", false);
        }
        Command::Check { network, repair } => return check(&nsnet, &out, network, repair),
        Command::Show { network } => show(&nsnet, &out, network)?,
        Command::Capture(args) => capture::run(&nsnet, &args)?,
        Command::Trace(args) => return trace::run(&nsnet, &out, &args),
        Command::Ui(args) => ui(&nsnet, &args)?,
        Command::Nodes(cmd) => return nodes::run(&nsnet, &out, &cmd),
        Command::Demo => return demo::run(&out),
        Command::Agent { etcd, access } => agent(&nsnet, etcd, &access)?,
        Command::DockerPlugin { socket, data_dir } => docker_plugin(&nsnet, &socket, &data_dir)?,
        Command::Link(Deferred(cmd)) => lab::link(&nsnet, &out, cmd)?,
        Command::Route(Deferred(cmd)) => lab::route(&nsnet, &out, cmd)?,
        Command::Impair(Deferred(args)) => lab::impair(&nsnet, &out, args)?,
        Command::Pingall(Deferred(args)) => return lab::pingall_command(&nsnet, &out, args),
        Command::Graph(Deferred(args)) => lab::graph(&nsnet, args)?,
        Command::Dns => dns_server(&cli.options.state_dir)?,
        Command::ReapParked { names } => nsnet::api::live::reap_parked(&names),
        Command::Man { dir } => {
            let written = man_pages(&dir)?;
            out.done(&format!(
                "wrote {written} manual pages to {}",
                dir.display()
            ));
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "nsnet", &mut io::stdout());
        }
    }
    if !cli.options.quiet {
        for n in nsnet.take_notices() {
            eprintln!("note: {n}");
        }
    }
    Ok(0)
}

/// `check`: exit 1 when something drifted.
fn check(
    nsnet: &Nsnet,
    out: &output::Printer,
    network: Option<String>,
    repair: bool,
) -> Result<i32> {
    let report = if repair {
        nsnet.repair(network.as_deref())?
    } else {
        nsnet.check(network.as_deref())?
    };
    out.check(&report, repair);
    Ok(if report.clean() { 0 } else { 1 })
}

fn dns_server(state_dir: &std::path::Path) -> Result<()> {
    require_root("serve DNS")?;
    nsnet::api::dns::serve(state_dir)
}

fn docker_plugin(
    nsnet: &Nsnet,
    socket: &std::path::Path,
    data_dir: &std::path::Path,
) -> Result<()> {
    require_root("serve Docker")?;
    nsnet::docker::serve(nsnet, socket, data_dir).map_err(|e| nsnet::Error::Serve {
        what: "Docker",
        source: Box::new(e),
    })
}

fn agent(nsnet: &Nsnet, etcd: Vec<String>, access: &EtcdAccessArgs) -> Result<()> {
    require_root("run the agent")?;
    let etcd = (!etcd.is_empty()).then_some(etcd);
    let access = access.access()?;
    if let Some(e) = &etcd {
        access.check(e)?;
    }
    nsnet::agent::run(nsnet, &nsnet::agent::Options { etcd, access })
}

/// `connect`: the request for each namespace is `template` with its name.
fn connect(
    nsnet: &Nsnet,
    out: &output::Printer,
    namespaces: &[String],
    template: ConnectRequest,
) -> Result<()> {
    let per_namespace =
        !template.ips.is_empty() || template.mac.is_some() || !template.publish.is_empty();
    if namespaces.len() > 1 && per_namespace {
        return Err(Rejection::OptionsForOneNamespace {
            what: "--ip, --mac and --publish",
        }
        .into());
    }
    let reqs = all(namespaces, |n| {
        Ok(ConnectRequest {
            namespace: NsRef::parse(n)?,
            ..template.clone()
        })
    })?;
    for att in nsnet.connect_many(&reqs)? {
        out.attachment(&template.network, &att);
    }
    Ok(())
}

fn network(nsnet: &Nsnet, out: &output::Printer, cmd: NetworkCmd) -> Result<()> {
    match cmd {
        NetworkCmd::Create {
            name,
            stray,
            subnets,
            gateways,
            bridge,
            internal,
            gateway_mode,
            gateway_mode_v6,
            no_masquerade,
            no_icc,
            trusted_interfaces,
            no_isolate,
            mtu,
            no_dns,
            dns_domain,
            dns_servers,
            overlay,
            lan,
        } => {
            if let Some(extra) = stray.first() {
                return Err(Rejection::StrayArgument {
                    value: extra.clone(),
                    hint: if parse_subnet(extra).is_ok() {
                        format!("a subnet is given with --subnet: nsnet network create {name} --subnet {extra}")
                    } else {
                        "network create takes one name; options start with --".to_string()
                    },
                }
                .into());
            }
            let mut gateway_mode = parse_mode(&gateway_mode)?;
            if no_masquerade {
                if !matches!(gateway_mode, GatewayMode::Nat | GatewayMode::Routed) {
                    return Err(Rejection::MasqueradeContradiction {
                        mode: gateway_mode.to_string(),
                    }
                    .into());
                }
                gateway_mode = GatewayMode::Routed;
            }
            let subnets = all(&subnets, parse_subnet)?;
            let net = nsnet.create_network(&CreateRequest {
                gateway_mode,
                gateway_mode_v6: gateway_mode_v6.as_deref().map(parse_mode).transpose()?,
                icc: !no_icc,
                trusted_interfaces,
                overlay: overlay.request(&name, &subnets)?,
                lan: lan.request(nsnet, overlay.driver)?,
                subnets,
                dns: !no_dns,
                dns_domain: dns_domain.map(|d| names::validate_domain(&d)).transpose()?,
                dns_servers: all(&dns_servers, |g| parse_ip(g, "DNS server"))?,
                gateways: all(&gateways, |g| parse_ip(g, "gateway"))?,
                bridge,
                internal,
                isolate: !no_isolate,
                mtu,
                ..CreateRequest::named(&name)
            })?;
            out.network_created(&net);
        }
        NetworkCmd::Ls => out.network_list(&nsnet.state()?),
        NetworkCmd::Inspect { name } => {
            let state = nsnet.state()?;
            let net = state
                .networks
                .get(&name)
                .ok_or_else(|| Rejection::no_such_network(&name, state.networks.keys()))?;
            let peers = match nsnet.programmed_peers(net) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!(
                        "nsnet: reading the peers of {name}: {}",
                        nsnet::error_chain(&e)
                    );
                    Vec::new()
                }
            };
            out.network_inspect(net, &peers);
        }
        NetworkCmd::Rm { names, force } => {
            // All or none, under one lock.
            for net in nsnet.remove_networks(&names, force)? {
                out.done(&format!("removed network {}", net.name));
            }
        }
    }
    Ok(())
}

fn namespace(nsnet: &Nsnet, out: &output::Printer, cmd: NsCmd) -> Result<()> {
    match cmd {
        NsCmd::Add {
            name,
            forward: true,
        } => {
            nsnet::model::nsref::validate_name(&name)?;
            nsnet.forward(&name, true)?;
            out.done(&format!("namespace {name} forwards"));
        }
        NsCmd::Add { name, .. } => {
            nsnet.add_namespace(&name)?;
            out.done(&format!("created namespace {name}"));
        }
        NsCmd::Del { name } => {
            nsnet.delete_namespace(&name)?;
            out.done(&format!("deleted namespace {name}"));
        }
        NsCmd::Ls => out.namespace_list(&nsnet.namespaces()?),
    }
    Ok(())
}

/// Ctrl-C stops a ping early, which then prints its statistics and exits
/// with ping's status, as ping(8) does.
fn stop_on_interrupt() -> &'static std::sync::atomic::AtomicBool {
    ping::stop_on(&[libc::SIGINT])
}

/// A namespace that does not exist, with the closest name under
/// /run/netns when one is close.
fn missing_namespace(nsnet: &Nsnet, ns: &NsRef) -> nsnet::Error {
    let names = nsnet.namespaces().unwrap_or_default();
    Rejection::NoSuchNamespace {
        namespace: ns.to_string(),
        suggestion: ns.name().and_then(|n| names::closest(n, &names)),
    }
    .into()
}

fn ping_command(
    nsnet: &Nsnet,
    out: &output::Printer,
    namespace: &str,
    destination: &str,
    opts: &ping::PingOptions,
) -> Result<i32> {
    let ns = NsRef::parse(namespace)?;
    if !nsnet.namespace_exists(&ns) {
        return Err(missing_namespace(nsnet, &ns));
    }
    let dest: IpAddr = match destination.parse() {
        Ok(ip) => ip,
        // A namespace's name: its address on a network the two share.
        Err(_) => {
            let invalid = || Rejection::Unparsable {
                what: "destination",
                value: destination.to_string(),
                expected: "expected an IPv4 or IPv6 address, or a namespace on a shared network",
            };
            let to = NsRef::parse(destination).map_err(|_| invalid())?;
            if !nsnet.namespace_exists(&to) {
                return Err(invalid().into());
            }
            nsnet
                .state()?
                .address_between(&ns, &to)
                .ok_or_else(|| Rejection::NoSharedNetwork {
                    from: ns.to_string(),
                    to: to.to_string(),
                })?
        }
    };
    out.ping_header(dest);
    let summary = ping::ping(&ns, dest, opts, |r| out.ping_reply(dest, r))?;
    out.ping_summary(dest, &summary);
    Ok(if summary.received > 0 { 0 } else { 1 })
}
