//! Signed notes and checkpoints: keys, note verification (with a fixed log
//! key and a fixed witness key), checkpoint bodies, cosignature lines.
#![no_main]

#[path = "keys.rs"]
mod keys;

use libfuzzer_sys::fuzz_target;
use signoff_ledger::note::{self, Checkpoint, CosignatureVerifier, SigningKey, Verifier};


fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cp) = Checkpoint::parse(text) {
        assert_eq!(Checkpoint::parse(&cp.to_body()), Ok(cp));
    }
    let _ = Verifier::from_vkey(text);
    let _ = SigningKey::from_skey(text);
    let _ = CosignatureVerifier::from_vkey(text);
    if let Ok(v) = Verifier::from_vkey(&keys::log_vkey()) {
        let _ = v.verify_note(text);
    }
    if let Ok(w) = CosignatureVerifier::from_vkey(&keys::witness_vkey()) {
        let body = note::note_body(text).unwrap_or("o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n");
        let _ = w.verify(body, text);
    }
});
