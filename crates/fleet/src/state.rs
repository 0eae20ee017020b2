//! The state file a proxy keeps of each service: the last snapshot it
//! accepted, so that it can start and serve from it while the control
//! plane is away.
//!
//! Two lines: a header with a format number and the SHA-256 of the
//! second line, then the snapshot's JSON. A torn or damaged file fails
//! the checksum and is refused instead of being served. Pure: bytes in,
//! bytes out; writing it atomically is the proxy's job.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::snapshot::Snapshot;

/// The state file's format.
pub const STATE_FORMAT: u32 = 1;

/// The first line of a state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub format: u32,
    /// Hex SHA-256 of the second line, without its newline.
    pub sha256: String,
    /// When the snapshot was received, in Unix milliseconds.
    pub received_at_ms: u64,
    /// The control plane it came from.
    pub control_plane: String,
}

/// A state file's contents.
#[derive(Debug, Clone, PartialEq)]
pub struct Saved {
    pub header: Header,
    pub snapshot: Snapshot,
}

/// Why a state file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("it is not a backout state file (expected two lines: a header and a snapshot)")]
    Shape,
    #[error("its header is unreadable: {0}")]
    Header(String),
    #[error(
        "it is in format {0}, which this backout does not know (it writes format {STATE_FORMAT}); delete it and let the proxy fetch the snapshot from the control plane"
    )]
    Format(u32),
    #[error("its checksum does not match: the file is damaged or was cut short")]
    Checksum,
    #[error("its snapshot is unreadable: {0}")]
    Snapshot(String),
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of a state file for `snapshot`.
pub fn encode(snapshot: &Snapshot, received_at_ms: u64, control_plane: &str) -> Vec<u8> {
    let body = serde_json::to_vec(snapshot).unwrap_or_default();
    let header = Header {
        format: STATE_FORMAT,
        sha256: hex(&Sha256::digest(&body)),
        received_at_ms,
        control_plane: control_plane.to_string(),
    };
    let mut out = serde_json::to_vec(&header).unwrap_or_default();
    out.push(b'\n');
    out.extend_from_slice(&body);
    out.push(b'\n');
    out
}

/// Reads a state file, refusing anything damaged.
pub fn decode(bytes: &[u8]) -> Result<Saved, StateError> {
    let text = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let mut lines = text.splitn(2, |&b| b == b'\n');
    let (Some(head), Some(body)) = (lines.next(), lines.next()) else {
        return Err(StateError::Shape);
    };
    let header: Header =
        serde_json::from_slice(head).map_err(|e| StateError::Header(e.to_string()))?;
    if header.format != STATE_FORMAT {
        return Err(StateError::Format(header.format));
    }
    if hex(&Sha256::digest(body)) != header.sha256 {
        return Err(StateError::Checksum);
    }
    let snapshot: Snapshot =
        serde_json::from_slice(body).map_err(|e| StateError::Snapshot(e.to_string()))?;
    snapshot
        .check()
        .map_err(|e| StateError::Snapshot(e.to_string()))?;
    Ok(Saved { header, snapshot })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::snapshot::{Config, ServiceSettings};

    fn snapshot() -> Snapshot {
        Snapshot {
            service: "shop".into(),
            generation: 9,
            epoch: "e".into(),
            config: Config {
                settings: ServiceSettings {
                    hosts: vec!["shop.example".into()],
                    path_prefix: None,
                    strip_prefix: false,
                    sticky: None,
                    version_header: Some("x-version".into()),
                    timeouts: backout_spec::TimeoutsSpec::default(),
                    trusted_proxies: Vec::new(),
                    tls: None,
                    upstream_tls: Default::default(),
                },
                pools: BTreeMap::new(),
                route: None,
            },
        }
    }

    #[test]
    fn a_state_file_reads_back() {
        let bytes = encode(&snapshot(), 42, "http://cp:9900");
        let saved = decode(&bytes).expect("decode");
        assert_eq!(saved.snapshot, snapshot());
        assert_eq!(
            (
                saved.header.received_at_ms,
                saved.header.control_plane.as_str()
            ),
            (42, "http://cp:9900")
        );
    }

    #[test]
    fn damage_is_refused() {
        let bytes = encode(&snapshot(), 42, "cp");
        let cut = &bytes[..bytes.len() - 10];
        assert_eq!(decode(cut), Err(StateError::Checksum));
        let mut flipped = bytes.clone();
        let at = flipped.len() - 5;
        flipped[at] ^= 0x01;
        assert_eq!(decode(&flipped), Err(StateError::Checksum));
        assert_eq!(decode(b""), Err(StateError::Shape));
        assert_eq!(decode(b"garbage"), Err(StateError::Shape));
        assert!(matches!(decode(b"{\n{}"), Err(StateError::Header(_))));
        let newer =
            String::from_utf8(bytes)
                .expect("utf-8")
                .replacen("\"format\":1", "\"format\":2", 1);
        assert_eq!(decode(newer.as_bytes()), Err(StateError::Format(2)));
    }
}
