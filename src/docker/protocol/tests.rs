//! The protocol against a fake backend that records the calls.

use std::cell::RefCell;

use super::*;
use crate::model::test_network;

#[derive(Default)]
struct Fake {
    calls: RefCell<Vec<String>>,
    created: RefCell<Option<CreateRequest>>,
    ports: RefCell<Vec<PortMapping>>,
    internal: bool,
}

const NET: &str = "b633ea1b9a6f00112233445566778899";
const EP: &str = "c4e46f616e0d00112233445566778899";

impl Backend for Fake {
    fn create_network(&self, req: &CreateRequest, _: &[u8]) -> Result<Network, String> {
        self.calls.borrow_mut().push("create_network".into());
        *self.created.borrow_mut() = Some(req.clone());
        Ok(test_network(&req.name, &req.name, &["10.99.0.0/24"]))
    }
    fn delete_network(&self, id: &str) -> Result<(), String> {
        self.calls.borrow_mut().push(format!("delete_network {id}"));
        Ok(())
    }
    fn create_endpoint(
        &self,
        _: &str,
        ep: &str,
        a: &[IpNet],
        mac: Option<String>,
    ) -> Result<(), String> {
        let a: Vec<String> = a.iter().map(ToString::to_string).collect();
        self.calls
            .borrow_mut()
            .push(format!("create_endpoint {ep} {} {mac:?}", a.join(",")));
        Ok(())
    }
    fn delete_endpoint(&self, _: &str, ep: &str) -> Result<(), String> {
        self.calls
            .borrow_mut()
            .push(format!("delete_endpoint {ep}"));
        Ok(())
    }
    fn join(&self, _: &str, ep: &str, sandbox: PathBuf) -> Result<(Attachment, Network), String> {
        self.calls
            .borrow_mut()
            .push(format!("join {ep} {}", sandbox.display()));
        let mut a = crate::model::test_attachment("x");
        a.ifname = "dkcc4e46f616e0d".into();
        let mut n = test_network(
            "dk-b633ea1b9a6f",
            "dk-b633ea1b9a6f",
            &["10.99.0.0/24", "fd00::/64"],
        );
        n.internal = self.internal;
        Ok((a, n))
    }
    fn leave(&self, _: &str, ep: &str) -> Result<(), String> {
        self.calls.borrow_mut().push(format!("leave {ep}"));
        Err("gone already".into())
    }
    fn publish(&self, _: &str, _: &str, ports: &[PortMapping]) -> Result<(), String> {
        *self.ports.borrow_mut() = ports.to_vec();
        Ok(())
    }
    fn unpublish(&self, _: &str, ep: &str) -> Result<(), String> {
        self.calls.borrow_mut().push(format!("unpublish {ep}"));
        Ok(())
    }
    fn request_pool(
        &self,
        asked: Option<IpNet>,
        range: Option<IpNet>,
        v6: bool,
    ) -> Result<IpNet, String> {
        let range = range.map_or(String::new(), |r| format!(" range {r}"));
        self.calls
            .borrow_mut()
            .push(format!("request_pool {asked:?}{range} {v6}"));
        Ok(asked.unwrap_or("10.5.0.0/24".parse().unwrap()))
    }
    fn release_pool(&self, id: &str) -> Result<(), String> {
        self.calls.borrow_mut().push(format!("release_pool {id}"));
        Ok(())
    }
    fn request_address(
        &self,
        id: &str,
        asked: Option<IpAddr>,
        gateway: bool,
    ) -> Result<IpNet, String> {
        self.calls
            .borrow_mut()
            .push(format!("request_address {id} {asked:?} {gateway}"));
        match asked {
            Some(a) if a.to_string() == "10.5.0.9" => Err("address 10.5.0.9 is in use".into()),
            _ => Ok("10.5.0.2/24".parse().unwrap()),
        }
    }
    fn release_address(&self, id: &str, addr: IpAddr) -> Result<(), String> {
        self.calls
            .borrow_mut()
            .push(format!("release_address {id} {addr}"));
        Ok(())
    }
}

fn call(fake: &Fake, path: &str, body: &str) -> Reply {
    handle(path, body.as_bytes(), fake)
}

#[test]
fn the_handshake_says_a_local_network_driver() {
    let f = Fake::default();
    assert_eq!(
        call(&f, "/Plugin.Activate", "").body,
        json!({"Implements": ["NetworkDriver", "IpamDriver"]})
    );
    let caps = call(&f, "/NetworkDriver.GetCapabilities", "").body;
    assert_eq!(caps["Scope"], "local");
    assert_eq!(call(&f, "/NetworkDriver.AllocateNetwork", "{}").status, 404);
}

#[test]
fn create_network_reads_what_docker_20_10_sends() {
    let f = Fake::default();
    let body = format!(
        r#"{{"NetworkID":"{NET}","Options":{{"com.docker.network.enable_ipv6":true,
        "com.docker.network.generic":{{"com.docker.network.driver.mtu":"1400","icc":"false"}},
        "com.docker.network.internal":true}},
        "IPv4Data":[{{"AddressSpace":"LocalDefault","Gateway":"10.97.0.254/24","Pool":"10.97.0.0/24"}}],
        "IPv6Data":[{{"AddressSpace":"LocalDefault","Gateway":"fd00:97::1/64","Pool":"fd00:97::/64"}}]}}"#
    );
    assert_eq!(
        call(&f, "/NetworkDriver.CreateNetwork", &body).body,
        json!({})
    );
    let req = f.created.borrow().clone().unwrap();
    assert_eq!(req.name, "dk-b633ea1b9a6f");
    assert_eq!(req.docker.as_deref(), Some(NET));
    assert_eq!(req.subnets.len(), 2);
    assert_eq!(
        req.gateways,
        [
            "10.97.0.254".parse::<std::net::IpAddr>().unwrap(),
            "fd00:97::1".parse().unwrap()
        ]
    );
    assert!(req.internal && !req.icc && !req.dns);
    assert_eq!(req.mtu, Some(1400));
}

#[test]
fn bad_network_options_come_back_as_err_naming_them() {
    let f = Fake::default();
    let body = format!(
        r#"{{"NetworkID":"{NET}","Options":{{"com.docker.network.generic":{{"colour":"red"}}}},
        "IPv4Data":[{{"Pool":"10.97.0.0/24","Gateway":"10.97.0.1/24"}}]}}"#
    );
    let r = call(&f, "/NetworkDriver.CreateNetwork", &body);
    assert_eq!(r.status, 200);
    assert!(
        r.body["Err"]
            .as_str()
            .unwrap()
            .contains("unknown options colour"),
        "{r:?}"
    );
    assert!(f.calls.borrow().is_empty());
    let r = call(&f, "/NetworkDriver.CreateNetwork", "{not json");
    assert!(
        r.body["Err"].as_str().unwrap().contains("unreadable"),
        "{r:?}"
    );
}

#[test]
fn an_endpoint_carries_docker_s_addresses_and_mac() {
    let f = Fake::default();
    let body = format!(
        r#"{{"NetworkID":"{NET}","EndpointID":"{EP}","Interface":{{"Address":"10.97.0.50/24",
        "AddressIPv6":"fd00:97::2/64","MacAddress":"02:AA:bb:cc:dd:ee"}},"Options":{{}}}}"#
    );
    assert_eq!(
        call(&f, "/NetworkDriver.CreateEndpoint", &body).body,
        json!({})
    );
    assert_eq!(
        f.calls.borrow()[0],
        format!("create_endpoint {EP} 10.97.0.50/24,fd00:97::2/64 Some(\"02:aa:bb:cc:dd:ee\")")
    );
}

#[test]
fn join_hands_over_the_veth_with_nsnet_s_gateways() {
    let f = Fake::default();
    let body = format!(
        r#"{{"NetworkID":"{NET}","EndpointID":"{EP}","SandboxKey":"/run/docker/netns/cc773d80c5a6","Options":{{}}}}"#
    );
    let r = call(&f, "/NetworkDriver.Join", &body).body;
    assert_eq!(
        r["InterfaceName"],
        json!({"SrcName": "dkcc4e46f616e0d", "DstPrefix": "eth"})
    );
    assert_eq!(r["Gateway"], "10.99.0.1");
    assert_eq!(r["GatewayIPv6"], "fd00::1");
    assert_eq!(
        f.calls.borrow()[0],
        format!("join {EP} /run/docker/netns/cc773d80c5a6")
    );
    // An internal network: no gateway, and no docker_gwbridge instead.
    let internal = Fake {
        internal: true,
        ..Fake::default()
    };
    let r = call(&internal, "/NetworkDriver.Join", &body).body;
    assert_eq!(r.get("Gateway"), None);
    assert_eq!(r["DisableGatewayService"], true);
}

#[test]
fn program_publishes_the_port_map_and_errors_are_err() {
    let f = Fake::default();
    let body = format!(
        r#"{{"NetworkID":"{NET}","EndpointID":"{EP}","Options":{{
        "com.docker.network.endpoint.exposedports":[{{"Proto":6,"Port":80}}],
        "com.docker.network.portmap":[{{"Proto":6,"IP":"","Port":80,"HostIP":"","HostPort":8080,"HostPortEnd":8080}}]}}}}"#
    );
    assert_eq!(
        call(&f, "/NetworkDriver.ProgramExternalConnectivity", &body).body,
        json!({})
    );
    assert_eq!(f.ports.borrow()[0].to_string(), "8080:80/tcp");
    let ids = format!(r#"{{"NetworkID":"{NET}","EndpointID":"{EP}"}}"#);
    assert_eq!(
        call(&f, "/NetworkDriver.Leave", &ids).body,
        json!({"Err": "gone already"})
    );
    assert_eq!(
        call(&f, "/NetworkDriver.RevokeExternalConnectivity", &ids).body,
        json!({})
    );
    assert_eq!(
        call(&f, "/NetworkDriver.EndpointOperInfo", &ids).body,
        json!({"Value": {}})
    );
}

#[test]
fn the_ipam_hands_out_pools_and_addresses_and_says_error() {
    let f = Fake::default();
    let spaces = call(&f, "/IpamDriver.GetDefaultAddressSpaces", "").body;
    assert_eq!(spaces["LocalDefaultAddressSpace"], "nsnet");
    let r = call(
        &f,
        "/IpamDriver.RequestPool",
        r#"{"AddressSpace":"nsnet","Pool":"10.5.0.0/24","SubPool":"","Options":{},"V6":false}"#,
    );
    assert_eq!(
        r.body,
        json!({"PoolID": "10.5.0.0/24", "Pool": "10.5.0.0/24", "Data": {}})
    );
    let r = call(
        &f,
        "/IpamDriver.RequestAddress",
        r#"{"PoolID":"10.5.0.0/24","Address":"","Options":{"RequestAddressType":"com.docker.network.gateway"}}"#,
    );
    assert_eq!(r.body["Address"], "10.5.0.2/24");
    assert_eq!(f.calls.borrow()[1], "request_address 10.5.0.0/24 None true");
    // IPAM errors are under "Error", not "Err".
    let r = call(
        &f,
        "/IpamDriver.RequestAddress",
        r#"{"PoolID":"10.5.0.0/24","Address":"10.5.0.9","Options":{}}"#,
    );
    assert_eq!(r.body, json!({"Error": "address 10.5.0.9 is in use"}));
    // --ip-range: the pool's ID carries it, as Docker's own IPAM writes it.
    let r = call(
        &f,
        "/IpamDriver.RequestPool",
        r#"{"Pool":"10.5.0.0/24","SubPool":"10.5.0.128/25"}"#,
    );
    assert_eq!(
        r.body,
        json!({"PoolID": "10.5.0.0/24/10.5.0.128/25", "Pool": "10.5.0.0/24", "Data": {}})
    );
    assert!(f
        .calls
        .borrow()
        .contains(&"request_pool Some(10.5.0.0/24) range 10.5.0.128/25 false".to_string()));
    let r = call(
        &f,
        "/IpamDriver.RequestPool",
        r#"{"Pool":"10.5.0.0/24","SubPool":"10.5.0.128/33"}"#,
    );
    assert!(
        r.body["Error"].as_str().unwrap().contains("10.5.0.128/33"),
        "{r:?}"
    );
    let r = call(&f, "/IpamDriver.RequestPool", r#"{"Pool":"10.5.1.0/16"}"#);
    assert!(
        r.body["Error"].as_str().unwrap().contains("10.5.1.0/16"),
        "{r:?}"
    );
    call(
        &f,
        "/IpamDriver.ReleaseAddress",
        r#"{"PoolID":"10.5.0.0/24","Address":"10.5.0.2"}"#,
    );
    call(&f, "/IpamDriver.ReleasePool", r#"{"PoolID":"10.5.0.0/24"}"#);
    let calls = f.calls.borrow();
    assert_eq!(
        calls[calls.len() - 2..],
        [
            "release_address 10.5.0.0/24 10.5.0.2",
            "release_pool 10.5.0.0/24"
        ]
    );
}
