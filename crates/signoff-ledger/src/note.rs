//! C2SP `signed-note` with Ed25519 keys, carrying C2SP `tlog-checkpoint`
//! bodies.
//!
//! A note is a UTF-8 text body of one or more `\n`-terminated lines, a blank
//! line, then one or more signature lines `— <key name> <base64(key id ‖
//! signature)>\n` (U+2014 em dash). Each signature is over the body bytes
//! exactly, including its final newline. The key id is the first 4 bytes
//! (big-endian) of `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)`, 0x01 being the
//! Ed25519 algorithm byte. Keys are written as in Go's
//! `golang.org/x/mod/sumdb/note`:
//!
//! - verifier key: `<name>+<8 hex digits key id>+<base64(0x01 ‖ public key)>`
//! - signer key: `PRIVATE+KEY+<name>+<8 hex digits key id>+<base64(0x01 ‖ seed)>`
//!
//! A checkpoint body is `<origin>\n<decimal size>\n<base64 root hash>\n`.
//! signoff checkpoints carry no extension lines, so [`Checkpoint::parse`]
//! rejects them.

use crate::merkle::Hash;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, Verifier as _};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::fmt;
use thiserror::Error;

const ALG_ED25519: u8 = 0x01;
const SIG_PREFIX: &str = "\u{2014} ";
// Go's note.Open bound: verifying is cheap, but parsing an unbounded list of
// foreign signatures is not.
const MAX_SIGNATURES: usize = 100;

/// Why a key, note or checkpoint was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NoteError {
    /// A key name is empty, contains `+` or whitespace.
    #[error("invalid key name {0:?} (must be non-empty, without '+' or spaces)")]
    KeyName(String),
    /// A verifier key string is malformed.
    #[error("malformed verifier key {0:?}")]
    VerifierKey(String),
    /// A signer key string is malformed; the key itself is not echoed.
    #[error("malformed signer key for name {0:?}")]
    SignerKey(String),
    /// The key id in a key string does not match the key.
    #[error("key id {given:08x} of key {name:?} does not match the key (expected {computed:08x})")]
    KeyIdMismatch {
        /// Key name.
        name: String,
        /// Key id written in the key string.
        given: u32,
        /// Key id computed from the key.
        computed: u32,
    },
    /// The note text does not follow the signed-note format.
    #[error("malformed note: {0}")]
    Malformed(String),
    /// A signature by the expected key does not verify.
    #[error("bad signature by key {name:?} ({key_id:08x})")]
    BadSignature {
        /// Key name.
        name: String,
        /// Key id.
        key_id: u32,
    },
    /// No signature line is from the expected key.
    #[error("note has no signature by key {name:?} ({key_id:08x})")]
    NotSigned {
        /// Key name.
        name: String,
        /// Key id.
        key_id: u32,
    },
    /// The signed body is not a checkpoint.
    #[error("malformed checkpoint: {0}")]
    Checkpoint(String),
}

/// A log checkpoint: the log's name, its size and its Merkle root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Log identity; one non-empty line, e.g. `signoff.example.com/ledger`.
    pub origin: String,
    /// Number of leaves.
    pub size: u64,
    /// RFC 6962 root of those leaves.
    pub root: Hash,
}

impl Checkpoint {
    /// `<origin>\n<size>\n<base64 root>\n`. The origin must be one
    /// non-empty line without control characters, or the note will not
    /// verify.
    pub fn to_body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }

    /// Parses a checkpoint body (the signed text of a note).
    pub fn parse(body: &str) -> Result<Checkpoint, NoteError> {
        let bad = |what: &str| NoteError::Checkpoint(what.to_string());
        let rest = body
            .strip_suffix('\n')
            .ok_or_else(|| bad("body does not end with a newline"))?;
        let lines: Vec<&str> = rest.split('\n').collect();
        let [origin, size, root] = lines[..] else {
            return Err(NoteError::Checkpoint(format!(
                "expected 3 lines (origin, size, root), got {}",
                lines.len()
            )));
        };
        if origin.is_empty() {
            return Err(bad("empty origin line"));
        }
        let size = parse_decimal(size)
            .ok_or_else(|| NoteError::Checkpoint(format!("invalid size {size:?}")))?;
        let root = decode_hash(root)
            .ok_or_else(|| NoteError::Checkpoint(format!("invalid root hash {root:?}")))?;
        Ok(Checkpoint {
            origin: origin.to_string(),
            size,
            root,
        })
    }
}

/// ASCII decimal without sign or leading zeros (except `0` itself).
pub(crate) fn parse_decimal(s: &str) -> Option<u64> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if canonical {
        s.parse().ok()
    } else {
        None
    }
}

/// Standard base64 of exactly 32 bytes.
pub(crate) fn decode_hash(s: &str) -> Option<Hash> {
    B64.decode(s).ok()?.try_into().ok()
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('+') && !name.chars().any(char::is_whitespace)
}

fn key_id(name: &str, public: &[u8; 32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ALG_ED25519]);
    h.update(public);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// Splits `<name>+<hex id>+<base64 key>`, checking the name and the id
/// syntax; returns the decoded key bytes.
fn split_key(s: &str) -> Option<(&str, u32, Vec<u8>)> {
    let (name, rest) = s.split_once('+')?;
    let (id_hex, key64) = rest.split_once('+')?;
    if !valid_name(name) || id_hex.len() != 8 || !id_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let id = u32::from_str_radix(id_hex, 16).ok()?;
    let key = B64.decode(key64).ok()?;
    Some((name, id, key))
}

/// An Ed25519 note signer with its key name.
pub struct SigningKey {
    name: String,
    key: ed25519_dalek::SigningKey,
    id: u32,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the private key.
        f.debug_struct("SigningKey")
            .field("name", &self.name)
            .field("id", &format_args!("{:08x}", self.id))
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    fn from_seed(name: &str, seed: &[u8; 32]) -> SigningKey {
        let key = ed25519_dalek::SigningKey::from_bytes(seed);
        let id = key_id(name, key.verifying_key().as_bytes());
        SigningKey {
            name: name.to_string(),
            key,
            id,
        }
    }

    /// A new random key named `name` (e.g. the log origin).
    pub fn generate(name: &str) -> Result<SigningKey, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::KeyName(name.to_string()));
        }
        let mut seed = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut seed);
        Ok(Self::from_seed(name, &seed))
    }

    /// Parses `PRIVATE+KEY+<name>+<hex id>+<base64(0x01 ‖ seed)>`.
    pub fn from_skey(skey: &str) -> Result<SigningKey, NoteError> {
        let rest = skey
            .trim_end()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or_else(|| NoteError::SignerKey(String::new()))?;
        let name_only = rest.split('+').next().unwrap_or_default().to_string();
        let (name, id, key) = split_key(rest).ok_or(NoteError::SignerKey(name_only))?;
        let seed: [u8; 32] = match key.split_first() {
            Some((&ALG_ED25519, seed)) => seed
                .try_into()
                .map_err(|_| NoteError::SignerKey(name.to_string()))?,
            _ => return Err(NoteError::SignerKey(name.to_string())),
        };
        let signer = Self::from_seed(name, &seed);
        if signer.id != id {
            return Err(NoteError::KeyIdMismatch {
                name: name.to_string(),
                given: id,
                computed: signer.id,
            });
        }
        Ok(signer)
    }

    /// The Go note private key string. Secret: store it like a password.
    pub fn to_skey(&self) -> String {
        let mut key = vec![ALG_ED25519];
        key.extend_from_slice(self.key.as_bytes());
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.id,
            B64.encode(key)
        )
    }

    /// The verifier key string `<name>+<hex id>+<base64(0x01 ‖ pubkey)>`.
    pub fn vkey(&self) -> String {
        let mut key = vec![ALG_ED25519];
        key.extend_from_slice(self.key.verifying_key().as_bytes());
        format!("{}+{:08x}+{}", self.name, self.id, B64.encode(key))
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 4-byte key id.
    pub fn key_id(&self) -> u32 {
        self.id
    }

    /// The verifier for this key.
    pub fn verifier(&self) -> Verifier {
        Verifier {
            name: self.name.clone(),
            key: self.key.verifying_key(),
            id: self.id,
        }
    }

    /// The signed note of `checkpoint`.
    pub fn sign(&self, checkpoint: &Checkpoint) -> String {
        self.sign_unchecked(&checkpoint.to_body())
    }

    /// Signs an arbitrary note body: non-empty `\n`-terminated lines, no
    /// blank line, no control characters other than `\n`.
    pub fn sign_text(&self, body: &str) -> Result<String, NoteError> {
        check_text(body)?;
        if body.is_empty() || body.starts_with('\n') || body.contains("\n\n") {
            return Err(NoteError::Malformed(
                "note body is empty or contains a blank line".into(),
            ));
        }
        if !body.ends_with('\n') {
            return Err(NoteError::Malformed(
                "note body does not end with a newline".into(),
            ));
        }
        Ok(self.sign_unchecked(body))
    }

    fn sign_unchecked(&self, body: &str) -> String {
        let sig = self.key.sign(body.as_bytes());
        let mut blob = Vec::with_capacity(68);
        blob.extend_from_slice(&self.id.to_be_bytes());
        blob.extend_from_slice(&sig.to_bytes());
        format!("{body}\n{SIG_PREFIX}{} {}\n", self.name, B64.encode(blob))
    }
}

fn check_text(text: &str) -> Result<(), NoteError> {
    if let Some(c) = text.chars().find(|&c| c != '\n' && c.is_control()) {
        return Err(NoteError::Malformed(format!(
            "note contains control character U+{:04X}",
            c as u32
        )));
    }
    Ok(())
}

/// An Ed25519 note verifier with its key name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    name: String,
    key: ed25519_dalek::VerifyingKey,
    id: u32,
}

impl Verifier {
    /// Parses `<name>+<hex id>+<base64(0x01 ‖ pubkey)>`.
    pub fn from_vkey(vkey: &str) -> Result<Verifier, NoteError> {
        let vkey = vkey.trim();
        let malformed = || NoteError::VerifierKey(vkey.to_string());
        let (name, id, key) = split_key(vkey).ok_or_else(malformed)?;
        let public: [u8; 32] = match key.split_first() {
            Some((&ALG_ED25519, public)) => public.try_into().map_err(|_| malformed())?,
            _ => return Err(malformed()),
        };
        let key = ed25519_dalek::VerifyingKey::from_bytes(&public).map_err(|_| malformed())?;
        let computed = key_id(name, &public);
        if computed != id {
            return Err(NoteError::KeyIdMismatch {
                name: name.to_string(),
                given: id,
                computed,
            });
        }
        Ok(Verifier {
            name: name.to_string(),
            key,
            id,
        })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 4-byte key id.
    pub fn key_id(&self) -> u32 {
        self.id
    }

    /// Verifies a signed note and returns its body. Signature lines by other
    /// keys (witnesses, a second log key) are ignored; at least one must be
    /// by this key and all of this key's must verify.
    pub fn verify_text<'a>(&self, note: &'a str) -> Result<&'a str, NoteError> {
        let malformed = |what: &str| NoteError::Malformed(what.to_string());
        check_text(note)?;
        if !note.ends_with('\n') {
            return Err(malformed("note does not end with a newline"));
        }
        let split = note
            .rfind("\n\n")
            .ok_or_else(|| malformed("no blank line between body and signatures"))?;
        let (body, sigs) = (&note[..=split], &note[split + 2..]);
        if sigs.is_empty() {
            return Err(malformed("no signature lines"));
        }
        let mut verified = false;
        for (n, line) in sigs.lines().enumerate() {
            if n >= MAX_SIGNATURES {
                return Err(malformed("more than 100 signature lines"));
            }
            let rest = line.strip_prefix(SIG_PREFIX).ok_or_else(|| {
                NoteError::Malformed(format!("unsigned text after the body: {line:?}"))
            })?;
            let (name, b64) = rest
                .split_once(' ')
                .ok_or_else(|| NoteError::Malformed(format!("bad signature line {line:?}")))?;
            let blob = B64.decode(b64).ok().filter(|b| b.len() >= 5);
            let Some(blob) = blob.filter(|_| valid_name(name)) else {
                return Err(NoteError::Malformed(format!("bad signature line {line:?}")));
            };
            let id = u32::from_be_bytes([blob[0], blob[1], blob[2], blob[3]]);
            if name != self.name || id != self.id {
                continue;
            }
            let bad = || NoteError::BadSignature {
                name: self.name.clone(),
                key_id: self.id,
            };
            let sig = Signature::from_slice(&blob[4..]).map_err(|_| bad())?;
            self.key.verify(body.as_bytes(), &sig).map_err(|_| bad())?;
            verified = true;
        }
        if !verified {
            return Err(NoteError::NotSigned {
                name: self.name.clone(),
                key_id: self.id,
            });
        }
        Ok(body)
    }

    /// Verifies a signed checkpoint note and parses its body.
    pub fn verify_note(&self, note: &str) -> Result<Checkpoint, NoteError> {
        Checkpoint::parse(self.verify_text(note)?)
    }
}

const ALG_COSIGNATURE_V1: u8 = 0x04;

/// A C2SP `tlog-cosignature` (`cosignature/v1`, Ed25519) verifier: the key
/// of a transparency-log witness, written as a vkey with algorithm byte 0x04
/// (`<name>+<hex id>+<base64(0x04 ‖ pubkey)>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignatureVerifier {
    name: String,
    key: ed25519_dalek::VerifyingKey,
    id: u32,
}

/// One verified cosignature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cosignature {
    /// The witness's key name.
    pub name: String,
    /// When the witness signed (POSIX seconds).
    pub timestamp: u64,
    /// The signature line, verbatim (without its newline).
    pub line: String,
}

impl CosignatureVerifier {
    /// Parses a witness vkey with algorithm byte 0x04.
    pub fn from_vkey(vkey: &str) -> Result<CosignatureVerifier, NoteError> {
        let vkey = vkey.trim();
        let malformed = || NoteError::VerifierKey(vkey.to_string());
        let (name, id, key) = split_key(vkey).ok_or_else(malformed)?;
        let public: [u8; 32] = match key.split_first() {
            Some((&ALG_COSIGNATURE_V1, public)) => public.try_into().map_err(|_| malformed())?,
            _ => return Err(malformed()),
        };
        let verifying =
            ed25519_dalek::VerifyingKey::from_bytes(&public).map_err(|_| malformed())?;
        let computed = cosigner_key_id(name, &public);
        if computed != id {
            return Err(NoteError::KeyIdMismatch {
                name: name.to_string(),
                given: id,
                computed,
            });
        }
        Ok(CosignatureVerifier {
            name: name.to_string(),
            key: verifying,
            id,
        })
    }

    /// The witness's key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Verifies the signature lines of `lines` (a witness's response)
    /// over the checkpoint `body` (the note text before its blank line,
    /// final newline included). Lines by other keys are ignored; at least
    /// one must be by this key, and all of this key's must verify.
    pub fn verify(&self, body: &str, lines: &str) -> Result<Vec<Cosignature>, NoteError> {
        let mut out = Vec::new();
        for (n, line) in lines.lines().enumerate() {
            if n >= MAX_SIGNATURES {
                return Err(NoteError::Malformed("more than 100 signature lines".into()));
            }
            let bad_line = || NoteError::Malformed(format!("bad signature line {line:?}"));
            let rest = line.strip_prefix(SIG_PREFIX).ok_or_else(bad_line)?;
            let (name, b64) = rest.split_once(' ').ok_or_else(bad_line)?;
            let blob = B64.decode(b64).map_err(|_| bad_line())?;
            if blob.len() < 4 {
                return Err(bad_line());
            }
            let id = u32::from_be_bytes([blob[0], blob[1], blob[2], blob[3]]);
            if name != self.name || id != self.id {
                continue;
            }
            let bad = || NoteError::BadSignature {
                name: self.name.clone(),
                key_id: self.id,
            };
            if blob.len() != 4 + 8 + 64 {
                return Err(bad());
            }
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&blob[4..12]);
            let timestamp = u64::from_be_bytes(ts);
            if timestamp > i64::MAX as u64 {
                return Err(bad());
            }
            let sig = Signature::from_slice(&blob[12..]).map_err(|_| bad())?;
            let message = format!("cosignature/v1\ntime {timestamp}\n{body}");
            self.key
                .verify(message.as_bytes(), &sig)
                .map_err(|_| bad())?;
            out.push(Cosignature {
                name: name.to_string(),
                timestamp,
                line: line.to_string(),
            });
        }
        if out.is_empty() {
            return Err(NoteError::NotSigned {
                name: self.name.clone(),
                key_id: self.id,
            });
        }
        Ok(out)
    }
}

fn cosigner_key_id(name: &str, public: &[u8; 32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ALG_COSIGNATURE_V1]);
    h.update(public);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// The body of a signed note (everything before the blank line that
/// precedes the signatures, final newline included), unverified.
pub fn note_body(note: &str) -> Option<&str> {
    let split = note.rfind("\n\n")?;
    Some(&note[..=split])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cosignature made the way the spec describes, with dalek directly.
    #[test]
    fn cosignature_round_trip() {
        let seed = [9u8; 32];
        let sk = ed25519_dalek::SigningKey::from_bytes(&seed);
        let public = *sk.verifying_key().as_bytes();
        let name = "witness.example/w1";
        let id = cosigner_key_id(name, &public);
        let mut k = vec![ALG_COSIGNATURE_V1];
        k.extend_from_slice(&public);
        let vkey = format!("{name}+{id:08x}+{}", B64.encode(&k));
        let v = CosignatureVerifier::from_vkey(&vkey).unwrap();
        let body = "o\n3\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n";
        let ts: u64 = 1_700_000_000;
        let sig = sk.sign(format!("cosignature/v1\ntime {ts}\n{body}").as_bytes());
        let mut blob = id.to_be_bytes().to_vec();
        blob.extend_from_slice(&ts.to_be_bytes());
        blob.extend_from_slice(&sig.to_bytes());
        let line = format!("\u{2014} {name} {}", B64.encode(&blob));
        let other = "\u{2014} other.example AAAAAAAA".to_string();
        let got = v.verify(body, &format!("{other}\n{line}\n")).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].timestamp, ts);
        // a different body does not verify
        assert!(matches!(
            v.verify(
                "o\n4\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n",
                &line
            ),
            Err(NoteError::BadSignature { .. })
        ));
        // no line by this key
        assert!(matches!(
            v.verify(body, &other),
            Err(NoteError::NotSigned { .. })
        ));
        // an Ed25519 note key (0x01) is not a cosigner key
        let note_key = SigningKey::generate("n").unwrap().vkey();
        assert!(CosignatureVerifier::from_vkey(&note_key).is_err());
    }

    #[test]
    fn key_round_trip() {
        let k = SigningKey::generate("log.example/ledger").unwrap();
        let again = SigningKey::from_skey(&k.to_skey()).unwrap();
        assert_eq!(again.vkey(), k.vkey());
        assert_eq!(Verifier::from_vkey(&k.vkey()).unwrap(), k.verifier());
        assert!(!format!("{k:?}").contains(&k.to_skey()[30..]));
    }

    #[test]
    fn rejects_bad_names_and_keys() {
        assert!(matches!(
            SigningKey::generate("a b"),
            Err(NoteError::KeyName(_))
        ));
        assert!(matches!(
            SigningKey::generate("a+b"),
            Err(NoteError::KeyName(_))
        ));
        assert!(matches!(
            SigningKey::generate(""),
            Err(NoteError::KeyName(_))
        ));
        let k = SigningKey::generate("n").unwrap();
        let vkey = k.vkey();
        let wrong_id = format!("n+00000000+{}", vkey.splitn(3, '+').nth(2).unwrap());
        assert!(matches!(
            Verifier::from_vkey(&wrong_id),
            Err(NoteError::KeyIdMismatch { .. })
        ));
        assert!(matches!(
            Verifier::from_vkey("n+0000+AAAA"),
            Err(NoteError::VerifierKey(_))
        ));
        assert!(matches!(
            SigningKey::from_skey(&vkey),
            Err(NoteError::SignerKey(_))
        ));
        let renamed = k.to_skey().replacen("+n+", "+m+", 1);
        assert!(matches!(
            SigningKey::from_skey(&renamed),
            Err(NoteError::KeyIdMismatch { .. })
        ));
    }

    #[test]
    fn checkpoint_parse() {
        let c = Checkpoint {
            origin: "o".into(),
            size: 10,
            root: [7; 32],
        };
        assert_eq!(Checkpoint::parse(&c.to_body()).unwrap(), c);
        for bad in [
            "o\n10\n",
            "o\n010\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n",
            "o\n+10\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n",
            "o\n10\nBwcH\n",
            "\n10\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n",
            "o\n10\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\next\n",
            "o\n10\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=",
        ] {
            assert!(Checkpoint::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sign_text_rejects_bad_bodies() {
        let k = SigningKey::generate("n").unwrap();
        for bad in ["", "a", "a\n\nb\n", "\na\n", "a\u{7}\n"] {
            assert!(k.sign_text(bad).is_err(), "{bad:?}");
        }
    }
}
