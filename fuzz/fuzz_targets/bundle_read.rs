//! Evidence bundles as an auditor reads them: the entries file, the
//! checkpoint and the proofs are all attacker-controlled text. The input is
//! split into those files at `\0` bytes.
#![no_main]

#[path = "keys.rs"]
mod keys;

use libfuzzer_sys::fuzz_target;
use signoff_ledger::bundle::{self, BundleError};
use signoff_ledger::note::Verifier;


fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.split('\0');
    let note = parts.next().unwrap_or_default();
    let entries = parts.next().unwrap_or_default();
    let proofs: Vec<&str> = parts.collect();
    let Ok(verifier) = Verifier::from_vkey(&keys::log_vkey()) else {
        return;
    };
    let _ = bundle::verify_contents(&verifier, note, entries, |index| {
        proofs
            .get(usize::try_from(index).unwrap_or(usize::MAX) % proofs.len().max(1))
            .map(|p| (*p).to_owned())
            .ok_or(BundleError::ProofFile {
                index,
                path: "fuzz".into(),
                reason: "absent".into(),
            })
    });
});
