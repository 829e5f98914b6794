//! The pcap/pcapng reader over arbitrary bytes (gzip by magic included): it must end with a
//! frame count or an error, never a panic, a hang or an allocation the input size does not
//! justify.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nameflow::capture::pcap::PcapReader;
use nameflow::capture::FrameSource;

fuzz_target!(|data: &[u8]| {
    let Ok(mut reader) = PcapReader::from_reader("fuzz.pcap", std::io::Cursor::new(data.to_vec()))
    else {
        return;
    };
    // Every record takes at least 12 bytes of (decompressed) input, and deflate expands at
    // most 1032 times, so this many calls always reach the end.
    let gzip = data.starts_with(&[0x1f, 0x8b]);
    let bytes = if gzip { data.len() * 1032 } else { data.len() };
    for _ in 0..=bytes / 12 {
        match reader.next_frame() {
            Ok(Some(f)) => {
                assert!(f.data.len() <= bytes, "a frame larger than the input");
                std::hint::black_box(f.ts_ns);
            }
            Ok(None) | Err(_) => return,
        }
    }
    panic!("the reader returned more frames than the input can hold");
});
