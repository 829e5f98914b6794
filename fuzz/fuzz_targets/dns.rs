//! The DNS message view: header, every section, every record's data, names read from any
//! offset (compression pointers must never loop or read out of bounds), and the DNS-over-TCP
//! framing and reverse-name helpers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nameflow::decode::dns::{reverse_addr, tcp_message, Message};
use nameflow::names::Name;

fn walk(bytes: &[u8]) {
    let Ok(m) = Message::new_checked(bytes) else {
        return;
    };
    let mut name = Name::default();
    if let Ok(p) = m.parse() {
        for q in p.questions() {
            std::hint::black_box(q);
        }
        for r in p.records() {
            let data = m.rdata(r);
            assert!(data.len() <= bytes.len());
            std::hint::black_box(m.rdata_addr(r));
            if m.rdata_name(r, &mut name).is_ok() {
                assert!(name.len() <= 255);
                std::hint::black_box(reverse_addr(name.as_bytes()));
            }
        }
    }
    // Names read from arbitrary offsets, as a hostile pointer would make the reader do.
    for off in (12..bytes.len()).step_by(7).take(32) {
        if let Ok(end) = m.read_name(off, &mut name) {
            assert!(end <= bytes.len());
        }
        let _ = std::hint::black_box(m.skip_name(off));
    }
}

fuzz_target!(|data: &[u8]| {
    walk(data);
    if let Some(msg) = tcp_message(data) {
        walk(msg);
    }
    std::hint::black_box(reverse_addr(data));
});
