//! See `dht_fuzz::peer_stream` for what is checked on every input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dht_fuzz::peer_stream(data));
