//! See `dht_fuzz::handshake` for what is checked on every input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dht_fuzz::handshake(data));
