//! C2SP tlog-proof files: parsing, then checking the parsed proof against
//! its embedded checkpoint (as `audit verify --bundle` does).
#![no_main]

use libfuzzer_sys::fuzz_target;
use signoff_ledger::{merkle, note::Checkpoint, proof_format};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok((index, proof, note)) = proof_format::parse(text) else {
        return;
    };
    // Written back, it parses to the same thing.
    let again = proof_format::write(index, &proof, &note);
    assert_eq!(proof_format::parse(&again), Ok((index, proof.clone(), note.clone())));
    if let Some(cp) = note::body(&note).and_then(|b| Checkpoint::parse(b).ok()) {
        let leaf = merkle::leaf_hash(b"fuzz");
        let _ = merkle::verify_inclusion(&leaf, index, cp.size, &proof, &cp.root);
        let _ = merkle::verify_consistency(index, cp.size, &leaf, &cp.root, &proof);
    }
});

mod note {
    pub fn body(n: &str) -> Option<&str> {
        signoff_ledger::note::note_body(n)
    }
}
