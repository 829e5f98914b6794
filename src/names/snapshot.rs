//! The name cache as a file, for a warm restart (`--name-state FILE`).
//!
//! The file is an `rkyv` archive checked with bytecheck when it is loaded: a truncated,
//! corrupt or foreign file (wrong magic or version) is an error that names the file and says
//! what happens next (the run starts cold), never undefined behaviour. It is written to a
//! temporary file beside the target and renamed, so a crash never leaves half a snapshot.

use super::{Evidence, Name, NameSource};
use rkyv::rancor;
use std::net::{IpAddr, Ipv6Addr};
use std::path::{Path, PathBuf};

/// Identifies a nameflow name-cache snapshot ("NFNAMES" + a zero byte).
const MAGIC: u64 = u64::from_le_bytes(*b"NFNAMES\0");
/// Bumped whenever the layout changes; other versions are refused.
const VERSION: u32 = 1;

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// IPv4 addresses as IPv4-mapped IPv6.
    addr: [u8; 16],
    name: Vec<u8>,
    source: u8,
    first_ns: u64,
    expires_ns: u64,
    client: Option<[u8; 16]>,
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq, Eq)]
struct File {
    magic: u64,
    version: u32,
    saved_ns: u64,
    entries: Vec<Entry>,
}

/// One saved mapping: the evidence (time of first proof, client) and when it expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Saved {
    pub evidence: Evidence,
    pub expires_ns: u64,
}

/// Why a snapshot could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot read name state {path}: {source}; starting with an empty name cache")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("name state {path} is not a valid nameflow snapshot ({why}); ignoring it and starting with an empty name cache (it is overwritten at exit)")]
    Invalid { path: PathBuf, why: String },
    #[error("cannot write name state {path}: {source}; check the directory's permissions and free space")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn to16(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

fn from16(b: [u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(b);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// Writes `entries` to `path` (through a temporary file and a rename).
pub fn save(path: &Path, saved_ns: u64, entries: &[Saved]) -> Result<(), SnapshotError> {
    let file = File {
        magic: MAGIC,
        version: VERSION,
        saved_ns,
        entries: entries
            .iter()
            .map(|s| Entry {
                addr: to16(s.evidence.addr),
                name: s.evidence.name.as_bytes().to_vec(),
                source: s.evidence.source as u8,
                first_ns: s.evidence.ts_ns,
                expires_ns: s.expires_ns,
                client: s.evidence.client.map(to16),
            })
            .collect(),
    };
    let werr = |source| SnapshotError::Write {
        path: path.to_owned(),
        source,
    };
    let bytes = rkyv::to_bytes::<rancor::Error>(&file)
        .map_err(|e| werr(std::io::Error::other(e.to_string())))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, &bytes).map_err(werr)?;
    std::fs::rename(&tmp, path).map_err(werr)
}

/// Reads and validates the snapshot at `path`. `Ok(None)` when there is no such file (a first
/// run).
pub fn load(path: &Path) -> Result<Option<Vec<Saved>>, SnapshotError> {
    let raw = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(SnapshotError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    let invalid = |why: String| SnapshotError::Invalid {
        path: path.to_owned(),
        why,
    };
    // The archive must be read from an aligned buffer.
    let mut bytes = rkyv::util::AlignedVec::<16>::with_capacity(raw.len());
    bytes.extend_from_slice(&raw);
    let file =
        rkyv::from_bytes::<File, rancor::Error>(&bytes).map_err(|e| invalid(e.to_string()))?;
    if file.magic != MAGIC {
        return Err(invalid("wrong magic number".into()));
    }
    if file.version != VERSION {
        return Err(invalid(format!(
            "version {} where {VERSION} is expected",
            file.version
        )));
    }
    let mut out = Vec::with_capacity(file.entries.len());
    for (i, e) in file.entries.iter().enumerate() {
        let source = NameSource::from_u8(e.source)
            .ok_or_else(|| invalid(format!("entry {i} has unknown source {}", e.source)))?;
        if e.name.is_empty() || e.name.len() > super::NAME_CAP {
            return Err(invalid(format!(
                "entry {i} has a name of {} bytes",
                e.name.len()
            )));
        }
        out.push(Saved {
            evidence: Evidence {
                addr: from16(e.addr),
                name: Name::new(&e.name),
                source,
                ts_ns: e.first_ns,
                ttl_s: 0,
                client: e.client.map(from16),
                clk_ns: e.first_ns,
                own: None,
            },
            expires_ns: e.expires_ns,
        });
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(addr: &str, name: &str, client: Option<&str>) -> Saved {
        Saved {
            evidence: Evidence {
                addr: addr.parse().unwrap(),
                name: Name::new(name.as_bytes()),
                source: NameSource::Cname,
                ts_ns: 5,
                ttl_s: 0,
                client: client.map(|c| c.parse().unwrap()),
                clk_ns: 5,
                own: None,
            },
            expires_ns: 99,
        }
    }

    #[test]
    fn round_trip_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("names.state");
        assert!(load(&path).unwrap().is_none());
        let entries = vec![
            saved("198.18.1.1", "a.example", Some("198.18.0.1")),
            saved("fd00::5", "b.example", None),
        ];
        save(&path, 7, &entries).unwrap();
        assert_eq!(load(&path).unwrap().unwrap(), entries);

        let good = std::fs::read(&path).unwrap();
        // Truncated: refused, with the file named.
        std::fs::write(&path, &good[..good.len() / 2]).unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(
            e.contains("names.state") && e.contains("not a valid"),
            "{e}"
        );
        // Flipped bytes everywhere: never a panic, either refused or read as valid data.
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0xa5;
            std::fs::write(&path, &bad).unwrap();
            let _ = load(&path);
        }
        // A foreign file.
        std::fs::write(&path, b"hello, this is not a snapshot at all....").unwrap();
        assert!(load(&path).is_err());
    }
}
