//! The inventory parsers (kubectl pods/services/nodes JSON, kubectl watch events,
//! `aws ec2 describe-instances`, JSON-lines tables), then the validity windows and the inventory built from what they accept,
//! and a lookup in it.
//!
//! Byte 0 picks the file name (which decides whether the text is read as a table) and the
//! extra attributes asked for; the rest is the file's text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nameflow::context::history::Timeline;
use nameflow::context::reload::{parse_file, Parsed};
use nameflow::context::{EndContext, Inventory};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let path = if first & 1 == 0 {
        Path::new("inventory.json")
    } else {
        Path::new("inventory.jsonl")
    };
    let wanted: Vec<String> = if first & 2 == 0 {
        Vec::new()
    } else {
        vec![
            "label:app".into(),
            "team".into(),
            "az".into(),
            "tag:Name".into(),
        ]
    };
    let windows = match parse_file(path, text, 1_700_000_000_000_000_000, &wanted) {
        Ok(Parsed::Table(w)) => w,
        Ok(Parsed::Watch { windows, errors }) => {
            // Every skipped document names the file.
            for e in &errors {
                assert!(e.to_string().contains("inventory.json"), "{e}");
            }
            windows
        }
        Ok(Parsed::Snapshot(snap)) => {
            let mut tl = Timeline::default();
            tl.apply(snap);
            tl.windows()
        }
        Err(e) => {
            // Every error names the file.
            assert!(e.to_string().contains("inventory.json"), "{e}");
            return;
        }
    };
    let probe = windows.first().map(|w| (w.ip, w.from_ns));
    let inv = Inventory::build(windows, 64);
    if let Some((ip, t)) = probe {
        let mut end = EndContext::default();
        std::hint::black_box(inv.lookup(ip, t, &mut end));
    }
});
