//! The HTTP/1.x request Host reader and the DHCP host-name option reader (both take one
//! payload and return a slice of it).
#![no_main]

use libfuzzer_sys::fuzz_target;
use nameflow::decode::dhcp::host_name;
use nameflow::decode::http::request_host;

fuzz_target!(|data: &[u8]| {
    if let Some(host) = request_host(data) {
        let start = host.as_ptr() as usize - data.as_ptr() as usize;
        assert!(start + host.len() <= data.len());
    }
    if let Some((addr, name)) = host_name(data) {
        std::hint::black_box(addr);
        let start = name.as_ptr() as usize - data.as_ptr() as usize;
        assert!(start + name.len() <= data.len());
    }
});
