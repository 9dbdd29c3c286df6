//! CSR intake: any bytes, as PEM or DER, for both profiles. Must never panic.
#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;
use signet_pki::Profile;

fuzz_target!(|data: &[u8]| {
    let granted: BTreeSet<String> = ["DNS:svc.example".to_string()].into_iter().collect();
    for profile in [Profile::Server, Profile::Client] {
        let _ = signet_pki::csr::check(data, profile, &granted);
    }
});
