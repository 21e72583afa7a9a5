//! `--publish` specs: never panics, and what parses prints back the same.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nsnet::model::ports::PortMapping;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(m) = text.parse::<PortMapping>() {
            let again: PortMapping = m.to_string().parse().expect("a printed mapping parses");
            assert_eq!(again, m);
            let _ = m.conflicts_with(&again);
        }
    }
});
