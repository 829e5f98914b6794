//! The TOML config file: parsing and the validation of every typed section.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cfg) = nameflow::config::parse(text) {
        let _ = cfg.output.resolve();
        let _ = cfg.context.resolve();
    }
});
