//! CNI plugin mode (spec 1.1.0, and the results of 0.3.x, 0.4.0 and 1.0.0):
//! when `CNI_COMMAND` is set, nsnet is a plugin of type `nsnet`. It takes
//! the reference `bridge` plugin's configuration keys, so that a conflist
//! written for `bridge` works after changing `type`, and turns each request
//! into the same model requests the command line makes. stdout carries the
//! result or the error JSON and nothing else. A front end: may import
//! `api` and `model`, nothing below and no other front end.

mod config;
mod result;

pub use config::NetConf;

use std::collections::BTreeMap;
use std::io::Read;

use serde_json::{json, Value};

use crate::api::{Finding, Report};
use crate::model::{Attachment, Class, CniKey, ConnectRequest, NsRef, Rejection, State};
use crate::{error_chain, Error, Nsnet};

pub const SUPPORTED: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// A CNI error: the spec's code, a message, details.
#[derive(Debug)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> CniError {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    fn with(mut self, details: impl Into<String>) -> CniError {
        self.details = details.into();
        self
    }
}

/// Spec codes: 1 incompatible version, 2 unsupported field, 3 unknown
/// container, 4 invalid environment, 5 I/O, 6 decoding, 7 invalid network
/// config, 11 try again later; 100+ are nsnet's own.
impl From<Error> for CniError {
    fn from(e: Error) -> CniError {
        let code = match (&e, e.class()) {
            (_, Some(Class::Invalid)) => 7,
            (_, Some(Class::NotFound)) => 3,
            (_, Some(Class::Conflict)) => 101,
            (Error::NotRoot(_), None) => 102,
            (_, None) => 100,
        };
        CniError::new(code, e.kind()).with(error_chain(&e))
    }
}

/// The environment of one invocation.
#[derive(Debug, Default, Clone)]
pub struct Env {
    pub command: String,
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    pub args: String,
    pub path: String,
}

impl Env {
    pub fn from_process() -> Env {
        let var = |k: &str| std::env::var(k).unwrap_or_default();
        Env {
            command: var("CNI_COMMAND"),
            container_id: var("CNI_CONTAINERID"),
            netns: var("CNI_NETNS"),
            ifname: var("CNI_IFNAME"),
            args: var("CNI_ARGS"),
            path: var("CNI_PATH"),
        }
    }

    fn require(&self, what: &str, value: &str) -> Result<(), CniError> {
        if value.is_empty() {
            return Err(CniError::new(4, format!("{what} is not set")));
        }
        Ok(())
    }

    fn key(&self) -> CniKey {
        CniKey {
            container_id: self.container_id.clone(),
            ifname: self.ifname.clone(),
        }
    }

    /// `CNI_ARGS`: `K=V;K=V`. IP, MAC and the kubelet's `K8S_*` are
    /// understood; anything else is an error unless `IgnoreUnknown` is
    /// true, as the spec asks.
    fn parsed_args(&self) -> Result<BTreeMap<String, String>, CniError> {
        let mut out = BTreeMap::new();
        for pair in self.args.split(';').filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| CniError::new(4, format!("CNI_ARGS: {pair:?} is not KEY=VALUE")))?;
            out.insert(k.to_string(), v.to_string());
        }
        let ignore = out
            .get("IgnoreUnknown")
            .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
        if !ignore {
            if let Some(k) = out.keys().find(|k| {
                !matches!(k.as_str(), "IP" | "MAC" | "IgnoreUnknown") && !k.starts_with("K8S_")
            }) {
                return Err(CniError::new(
                    4,
                    format!("CNI_ARGS: unknown key {k:?} (set IgnoreUnknown=1 to allow)"),
                ));
            }
        }
        Ok(out)
    }
}

/// Runs one request; returns what to print on stdout and the exit code.
pub fn run(env: &Env, stdin: &[u8], nsnet: &Nsnet) -> (String, i32) {
    let version = config::cni_version(stdin).unwrap_or_else(|| "1.1.0".into());
    match dispatch(env, stdin, nsnet) {
        Ok(Some(out)) => (out.to_string(), 0),
        Ok(None) => (String::new(), 0),
        Err(e) => (
            json!({"cniVersion": version, "code": e.code, "msg": e.msg, "details": e.details})
                .to_string(),
            1,
        ),
    }
}

/// Reads stdin and the environment of this process and runs the request.
pub fn main(nsnet: &Nsnet) -> i32 {
    let mut stdin = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut stdin);
    let (out, code) = run(&Env::from_process(), &stdin, nsnet);
    if !out.is_empty() {
        println!("{out}");
    }
    code
}

fn dispatch(env: &Env, stdin: &[u8], nsnet: &Nsnet) -> Result<Option<Value>, CniError> {
    if env.command == "VERSION" {
        let asked = config::cni_version(stdin).unwrap_or_else(|| "1.1.0".into());
        return Ok(Some(
            json!({"cniVersion": asked, "supportedVersions": SUPPORTED}),
        ));
    }
    let conf = NetConf::parse(stdin)?;
    match env.command.as_str() {
        "ADD" => add(env, &conf, stdin, nsnet).map(Some),
        "DEL" => del(env, &conf, stdin, nsnet).map(|_| None),
        "CHECK" => check(env, &conf, nsnet).map(|_| None),
        "STATUS" => status(&conf, nsnet).map(|_| None),
        "GC" => gc(&conf, nsnet).map(|_| None),
        "" => Err(CniError::new(4, "CNI_COMMAND is not set")),
        other => Err(CniError::new(4, format!("unknown CNI_COMMAND {other:?}"))),
    }
}

fn find<'a>(state: &'a State, network: &str, key: &CniKey) -> Option<&'a Attachment> {
    state.networks.get(network)?.cni_attachment(key)
}

/// Creates the network of the configuration (concurrent ADDs may race to
/// it: losing that race is fine).
fn create_network(conf: &NetConf, nsnet: &Nsnet) -> Result<(), CniError> {
    match nsnet.create_network(&conf.network_request()?) {
        Ok(_) | Err(Error::Rejected(Rejection::NetworkExists { .. })) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Connects under one lock, reading the record once: the network is made
/// on the first ADD that finds it missing, and the network's record after
/// the change serves the result.
fn add(env: &Env, conf: &NetConf, stdin: &[u8], nsnet: &Nsnet) -> Result<Value, CniError> {
    env.require("CNI_CONTAINERID", &env.container_id)?;
    env.require("CNI_NETNS", &env.netns)?;
    env.require("CNI_IFNAME", &env.ifname)?;
    let args = env.parsed_args()?;
    let req = connect_request(env, conf, &args, stdin)?;
    let made = match nsnet.connect_reporting(&req) {
        Err(Error::Rejected(Rejection::NoSuchNetwork { .. })) => {
            create_network(conf, nsnet).and_then(|()| Ok(nsnet.connect_reporting(&req)?))
        }
        made => made.map_err(CniError::from),
    };
    let made = match made {
        Ok(made) => made,
        Err(e) => {
            // What the delegated IPAM plugin handed out goes back.
            if let Some(kind) = conf.delegated_ipam() {
                let _ = config::delegate(kind, "DEL", env, stdin);
            }
            return Err(e);
        }
    };
    Ok(result::render(
        conf,
        &made.network,
        &made.attachment,
        &env.netns,
        made.macs,
    ))
}

/// The model request of an ADD. Addresses: asked for (CNI_ARGS IP=,
/// runtimeConfig.ips), or from a delegated IPAM plugin (which is run
/// here), or nsnet's own IPAM.
fn connect_request(
    env: &Env,
    conf: &NetConf,
    args: &BTreeMap<String, String>,
    stdin: &[u8],
) -> Result<ConnectRequest, CniError> {
    let namespace = NsRef::parse(&env.netns)
        .map_err(|e| CniError::new(4, "invalid CNI_NETNS").with(e.to_string()))?;
    let mac = match args.get("MAC").cloned().or_else(|| conf.runtime_mac()) {
        Some(m) => Some(
            crate::model::names::parse_mac(&m)
                .map_err(|e| CniError::new(7, "invalid MAC address").with(e.to_string()))?,
        ),
        None => None,
    };
    let publish = conf.port_mappings()?;
    let mut texts: Vec<String> = args
        .get("IP")
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(str::to_string)
        .collect();
    texts.extend(conf.runtime_ips().iter().cloned());
    let mut ips = config::requested_ips(texts.iter().map(String::as_str))?;
    if let Some(kind) = conf.delegated_ipam() {
        let res = config::delegate(kind, "ADD", env, stdin)?;
        let leased: Vec<String> = res
            .as_ref()
            .and_then(|r| r["ips"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|i| i["address"].as_str().map(str::to_string))
            .collect();
        ips = match config::requested_ips(leased.iter().map(String::as_str)) {
            Ok(ips) => ips,
            Err(e) => {
                let _ = config::delegate(kind, "DEL", env, stdin);
                return Err(e);
            }
        };
    }
    Ok(ConnectRequest {
        ips,
        ifname: Some(env.ifname.clone()),
        mac,
        publish,
        aliases: names(args, conf),
        cni: Some(env.key()),
        // The runtime owns its port mappings, and may hold the host ports
        // itself to reserve them.
        take_host_ports: true,
        ..ConnectRequest::new(&conf.name, namespace)
    })
}

/// The container's DNS names on the network: the pod's name (the
/// kubelet's `K8S_POD_NAME`) and the runtime's aliases, those that are
/// DNS labels (others are left out: a runtime's names are not checked).
fn names(args: &BTreeMap<String, String>, conf: &NetConf) -> Vec<String> {
    let label = |n: &&String| {
        !n.is_empty()
            && n.len() <= 63
            && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !n.starts_with('-')
    };
    let mut out: Vec<String> = Vec::new();
    for n in args
        .get("K8S_POD_NAME")
        .into_iter()
        .chain(conf.runtime_aliases())
        .filter(label)
    {
        let n = n.to_ascii_lowercase();
        if !out.contains(&n) {
            out.push(n);
        }
    }
    out
}

fn del(env: &Env, conf: &NetConf, stdin: &[u8], nsnet: &Nsnet) -> Result<(), CniError> {
    env.require("CNI_CONTAINERID", &env.container_id)?;
    env.require("CNI_IFNAME", &env.ifname)?;
    if let Some(att) = find(&nsnet.state()?, &conf.name, &env.key()) {
        match nsnet.disconnect(&conf.name, &att.namespace) {
            // A concurrent DEL of the same attachment won: fine.
            Ok(_) | Err(Error::Rejected(Rejection::NotConnected { .. })) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(kind) = conf.delegated_ipam() {
        config::delegate(kind, "DEL", env, stdin)?;
    }
    Ok(())
}

fn check(env: &Env, conf: &NetConf, nsnet: &Nsnet) -> Result<(), CniError> {
    env.require("CNI_CONTAINERID", &env.container_id)?;
    env.require("CNI_NETNS", &env.netns)?;
    env.require("CNI_IFNAME", &env.ifname)?;
    let state = nsnet.state()?;
    let Some(att) = find(&state, &conf.name, &env.key()) else {
        return Err(CniError::new(
            3,
            format!(
                "container {} has no interface {} on network {}",
                env.container_id, env.ifname, conf.name
            ),
        ));
    };
    // What the runtime remembers must be what nsnet recorded...
    if let Some(prev) = &conf.prev_result {
        let theirs: Vec<String> = prev["ips"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["address"].as_str().map(str::to_string))
            .collect();
        let ours: Vec<String> = att.addresses.iter().map(|a| a.to_string()).collect();
        for addr in &theirs {
            if !ours.contains(addr) {
                return Err(CniError::new(100, "drift").with(format!(
                    "prevResult has address {addr}, nsnet recorded {}",
                    ours.join(", ")
                )));
            }
        }
    }
    // ...and the kernel must still have it all.
    if let Some(first) = drift_of(&nsnet.check(Some(&conf.name))?, &conf.name, &att.namespace) {
        return Err(CniError::new(100, "drift").with(first.to_string()));
    }
    if NsRef::parse(&env.netns).ok().as_ref() != Some(&att.namespace) {
        return Err(CniError::new(100, "drift").with(format!(
            "CNI_NETNS is {} but the attachment was made in {}",
            env.netns, att.namespace
        )));
    }
    Ok(())
}

/// Ready when nsnet can make or use the network: root, nft, a readable
/// state, and the bridge present when the network exists.
fn status(conf: &NetConf, nsnet: &Nsnet) -> Result<(), CniError> {
    let fail = |msg: String| CniError::new(50, "the plugin is not available").with(msg);
    nsnet
        .require_root("manage networks")
        .map_err(|e| fail(error_chain(&e)))?;
    let state = nsnet.state().map_err(|e| fail(error_chain(&e)))?;
    nsnet.firewall_table().map_err(|e| fail(error_chain(&e)))?;
    if let Some(net) = state.networks.get(&conf.name) {
        let report = nsnet
            .check(Some(&conf.name))
            .map_err(|e| fail(error_chain(&e)))?;
        if let Some(d) = bridge_drift(&report) {
            return Err(fail(format!("network {}: {d}", net.name)));
        }
    }
    Ok(())
}

/// Releases every attachment of the network that the runtime does not list
/// in `cni.dev/valid-attachments`.
fn gc(conf: &NetConf, nsnet: &Nsnet) -> Result<(), CniError> {
    let valid = conf.valid_attachments();
    let state = nsnet.state()?;
    let Some(net) = state.networks.get(&conf.name) else {
        return Ok(());
    };
    let stale: Vec<NsRef> = net
        .attachments
        .iter()
        .filter(|a| a.cni.as_ref().is_some_and(|k| !valid.contains(k)))
        .map(|a| a.namespace.clone())
        .collect();
    if !stale.is_empty() {
        nsnet.disconnect_many(&conf.name, &stale)?;
    }
    Ok(())
}

/// CHECK's question: the first finding about this attachment or about its
/// network's bridge.
fn drift_of<'a>(report: &'a Report, network: &str, ns: &NsRef) -> Option<&'a Finding> {
    report.drift.iter().find(|d| {
        d.is_about(network, ns) || (d.network() == Some(network) && d.is_about_the_bridge())
    })
}

/// STATUS's question: is the bridge itself broken (not one attachment)?
fn bridge_drift(report: &Report) -> Option<&Finding> {
    report.drift.iter().find(|d| d.is_about_the_bridge())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(drift: Vec<Finding>) -> Report {
        Report {
            drift,
            warnings: vec![],
        }
    }

    fn ns(name: &str) -> NsRef {
        NsRef::Named(name.into())
    }

    #[test]
    fn status_is_not_fooled_by_a_port_off_its_bridge() {
        let off = Finding::HostVethOffBridge {
            network: "podnet".into(),
            namespace: ns("c1"),
            ifname: "ve-c1".into(),
            bridge: "cni0".into(),
        };
        assert!(off.to_string().contains("bridge"));
        assert_eq!(bridge_drift(&report(vec![off])), None);
        let down = Finding::BridgeDown {
            network: "podnet".into(),
            bridge: "cni0".into(),
        };
        assert_eq!(bridge_drift(&report(vec![down.clone()])), Some(&down));
    }

    #[test]
    fn check_is_not_fooled_by_a_longer_namespace_name() {
        let other = Finding::InterfaceMissing {
            network: "podnet".into(),
            namespace: ns("ns10"),
            ifname: "eth0".into(),
        };
        assert!(other.to_string().contains("namespace ns1"));
        let r = report(vec![other.clone()]);
        assert_eq!(drift_of(&r, "podnet", &ns("ns1")), None);
        assert_eq!(drift_of(&r, "podnet", &ns("ns10")), Some(&other));
        // A problem of the bridge concerns every attachment of the network,
        // and no attachment of another one.
        let bridge = Finding::BridgeMissing {
            network: "podnet".into(),
            bridge: "cni0".into(),
        };
        let r = report(vec![bridge.clone()]);
        assert_eq!(drift_of(&r, "podnet", &ns("ns1")), Some(&bridge));
        assert_eq!(drift_of(&r, "other", &ns("ns1")), None);
    }

    #[test]
    fn pods_and_aliases_become_names() {
        let conf = NetConf::parse(
            br#"{"cniVersion": "1.0.0", "name": "podnet", "type": "nsnet",
                "runtimeConfig": {"aliases": {"podnet": ["Web", "www", "bad_name"], "other": ["no"]}}}"#,
        )
        .unwrap();
        let args: BTreeMap<String, String> = [
            ("K8S_POD_NAME".to_string(), "web-7f9c".to_string()),
            ("K8S_POD_NAMESPACE".to_string(), "default".to_string()),
        ]
        .into();
        assert_eq!(names(&args, &conf), ["web-7f9c", "web", "www"]);
        // The kubelet's keys are known, others are not.
        let env = |args: &str| Env {
            args: args.into(),
            ..Env::default()
        };
        assert!(env("K8S_POD_NAME=a;K8S_POD_NAMESPACE=b")
            .parsed_args()
            .is_ok());
        assert!(env("COLOUR=red").parsed_args().is_err());
    }
}
