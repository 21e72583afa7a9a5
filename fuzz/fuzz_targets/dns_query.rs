//! The DNS server's request path: any datagram or TCP message, from a
//! member or not, is answered, forwarded or ignored, and never panics; an
//! answer is a DNS message that fits its transport.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nsnet::dns::answer::{answer, Outcome};
use nsnet::dns::records::Table;
use std::sync::OnceLock;

fn table() -> &'static Table {
    static T: OnceLock<Table> = OnceLock::new();
    T.get_or_init(|| {
        let state: nsnet::model::State = serde_json::from_str(include_str!("../corpus/dns_state.json"))
            .expect("the fuzz record");
        Table::from_state(&state)
    })
}

fuzz_target!(|data: &[u8]| {
    for (source, udp) in [("10.1.0.9", true), ("10.1.0.9", false), ("192.0.2.1", true)] {
        if let Outcome::Reply(bytes) = answer(data, source.parse().unwrap(), table(), udp) {
            assert!(bytes.len() >= 12);
            assert!(!udp || bytes.len() <= 1232);
        }
    }
});
