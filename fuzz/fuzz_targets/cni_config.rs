//! CNI stdin: parsing and turning it into nsnet requests never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(conf) = nsnet::cni::NetConf::parse(data) {
        let _ = conf.network_request();
        let _ = conf.port_mappings();
        let _ = conf.runtime_ips();
        let _ = conf.valid_attachments();
        let _ = conf.delegated_ipam();
    }
});
