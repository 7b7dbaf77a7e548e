//! Ledger leaf bytes (what auditors feed to the verifier): decoding is
//! strict, so whatever decodes re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signoff_ledger::leaf;

fuzz_target!(|data: &[u8]| {
    if let Ok(event) = leaf::decode(data) {
        assert_eq!(leaf::encode(&event), data);
    }
});
