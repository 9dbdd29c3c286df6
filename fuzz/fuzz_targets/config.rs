//! The configuration file: parsed and validated.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(config) = signet::config::Config::parse(text) {
            let _ = config.validate();
            let _ = config.hsm_summary();
        }
    }
});
