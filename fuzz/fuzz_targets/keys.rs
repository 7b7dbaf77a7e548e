//! Fixed keys for the targets, built from fixed seeds so runs repeat.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use sha2::{Digest, Sha256};

fn vkey(name: &str, alg: u8, seed: u8) -> String {
    let public = *ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
        .verifying_key()
        .as_bytes();
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', alg]);
    h.update(public);
    let d = h.finalize();
    let mut key = vec![alg];
    key.extend_from_slice(&public);
    format!("{name}+{:02x}{:02x}{:02x}{:02x}+{}", d[0], d[1], d[2], d[3], B64.encode(key))
}

/// The log's verifier key (`signoff`, Ed25519 note key).
pub fn log_vkey() -> String {
    vkey("signoff", 0x01, 1)
}

/// A witness's cosignature key.
pub fn witness_vkey() -> String {
    vkey("witness.example/w1", 0x04, 2)
}
