//! The topology parser and validator: never panics, whatever the text.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = nsnet::topology::parse("fuzz.toml", "/fuzz.toml", text);
    }
});
