//! The TLS ClientHello reader: the server name it returns must lie inside the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nameflow::decode::tls::client_hello_sni;

fuzz_target!(|data: &[u8]| {
    if let Some(sni) = client_hello_sni(data) {
        let start = sni.as_ptr() as usize - data.as_ptr() as usize;
        assert!(start + sni.len() <= data.len());
    }
});
