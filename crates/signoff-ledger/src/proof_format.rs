//! The C2SP `tlog-proof` text format (<https://c2sp.org/tlog-proof>).
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! index 73894
//! gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=
//! B95lDa8R83lS8n0eG+o0buTxRKQTYFi//1U8anccXmA=
//!
//! example.com/fancylog
//! 109482
//! sFodV/vSp5O8n9a8QpW6PRY97tfOSW5bsc2Xl/EQi08=
//!
//! — example.com/fancylog hI2DJw…
//! ```
//!
//! Lines are `\n`-separated: the header, an optional `extra <base64>` line
//! (opaque, unauthenticated; signoff writes none and [`parse`] skips it),
//! `index <decimal, no leading zeros>`, zero or more standard-base64 SHA-256
//! hashes forming the RFC 6962 inclusion proof (the leaf's sibling first),
//! an empty line, then the signed checkpoint note verbatim.
//!
//! Parsing only checks the syntax: the caller verifies the note and the
//! proof.

use crate::merkle::Hash;
use crate::note::{decode_hash, parse_decimal};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use thiserror::Error;

/// The first line of every proof.
pub const HEADER: &str = "c2sp.org/tlog-proof@v1";

// A tree of at most 2^64 leaves has proofs of at most 64 hashes.
const MAX_HASHES: usize = 64;

/// Why a proof file does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProofFormatError {
    /// The first line is not the header.
    #[error("proof does not start with {HEADER:?}")]
    Header,
    /// The `extra` line's payload is not base64.
    #[error("invalid extra line {0:?}")]
    Extra(String),
    /// The `index N` line is missing or invalid.
    #[error("invalid or missing index line {0:?}")]
    Index(String),
    /// A proof line is not a base64 SHA-256 hash.
    #[error("proof line {line} is not a base64 sha-256 hash: {text:?}")]
    Hash {
        /// 1-based line number in the file.
        line: usize,
        /// The offending text.
        text: String,
    },
    /// More hashes than any tree can need.
    #[error("proof has more than {MAX_HASHES} hashes")]
    TooLong,
    /// No blank line and checkpoint after the hashes.
    #[error("proof has no checkpoint after the hashes")]
    NoCheckpoint,
}

/// Formats a proof file.
pub fn write(index: u64, proof: &[Hash], note: &str) -> String {
    let mut out = format!("{HEADER}\nindex {index}\n");
    for h in proof {
        out.push_str(&B64.encode(h));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(note);
    out
}

/// Takes one `\n`-terminated line off the front of `rest`.
fn take_line<'a>(rest: &mut &'a str) -> Option<&'a str> {
    let (line, after) = rest.split_once('\n')?;
    *rest = after;
    Some(line)
}

/// Parses a proof file into `(index, proof hashes, checkpoint note)`.
pub fn parse(text: &str) -> Result<(u64, Vec<Hash>, String), ProofFormatError> {
    let mut rest = text;
    if take_line(&mut rest) != Some(HEADER) {
        return Err(ProofFormatError::Header);
    }
    let mut line_no = 2;
    let mut line = take_line(&mut rest).ok_or(ProofFormatError::Index(String::new()))?;
    if let Some(extra) = line.strip_prefix("extra ") {
        if B64.decode(extra).is_err() {
            return Err(ProofFormatError::Extra(line.to_string()));
        }
        line = take_line(&mut rest).ok_or(ProofFormatError::Index(String::new()))?;
        line_no += 1;
    }
    let index = line
        .strip_prefix("index ")
        .and_then(parse_decimal)
        .ok_or_else(|| ProofFormatError::Index(line.to_string()))?;
    let mut hashes = Vec::new();
    loop {
        let line = take_line(&mut rest).ok_or(ProofFormatError::NoCheckpoint)?;
        line_no += 1;
        if line.is_empty() {
            break;
        }
        if hashes.len() == MAX_HASHES {
            return Err(ProofFormatError::TooLong);
        }
        let h = decode_hash(line).ok_or_else(|| ProofFormatError::Hash {
            line: line_no,
            text: line.to_string(),
        })?;
        hashes.push(h);
    }
    if rest.is_empty() {
        return Err(ProofFormatError::NoCheckpoint);
    }
    Ok((index, hashes, rest.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOTE: &str = "o\n3\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n\n— o AAAA\n";

    #[test]
    fn round_trip() {
        let proof = vec![[1; 32], [2; 32]];
        let text = write(12, &proof, NOTE);
        assert!(text.starts_with("c2sp.org/tlog-proof@v1\nindex 12\nAQEB"));
        assert_eq!(parse(&text).unwrap(), (12, proof, NOTE.to_string()));
        let empty = write(0, &[], NOTE);
        assert_eq!(parse(&empty).unwrap(), (0, vec![], NOTE.to_string()));
    }

    #[test]
    fn skips_extra_line() {
        let text = format!("{HEADER}\nextra aGk=\nindex 1\n\n{NOTE}");
        assert_eq!(parse(&text).unwrap().0, 1);
    }

    #[test]
    fn rejects_malformed() {
        let good = write(12, &[[1; 32]], NOTE);
        assert_eq!(
            parse(&good.replacen("@v1", "@v2", 1)),
            Err(ProofFormatError::Header)
        );
        assert!(matches!(
            parse(&good.replacen("index 12", "index 012", 1)),
            Err(ProofFormatError::Index(_))
        ));
        assert!(matches!(
            parse(&good.replacen("AQEB", "AQE", 1)),
            Err(ProofFormatError::Hash { line: 3, .. })
        ));
        assert_eq!(
            parse(&format!("{HEADER}\nindex 1\n")),
            Err(ProofFormatError::NoCheckpoint)
        );
        assert_eq!(
            parse(&format!("{HEADER}\nindex 1\n\n")),
            Err(ProofFormatError::NoCheckpoint)
        );
        let long = write(1, &[[0; 32]; 65], NOTE);
        assert_eq!(parse(&long), Err(ProofFormatError::TooLong));
    }
}
