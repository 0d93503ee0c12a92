//! The node's identity: its host key (loaded, or created on first start) and the
//! proof-of-work nonce that binds its node id to that key (minted once, then saved
//! beside the key so that restarts do not mint again).

use std::io::Write;
use std::path::{Path, PathBuf};

use dht_id::NodeId;
use dht_security::pow::MintedId;
use dht_security::{HostKey, pow};
use tracing::info;

use crate::Error;
use crate::config::NodeConfig;

/// A node's key, id and the nonce that proves the id.
pub(crate) struct Identity {
    pub(crate) host: HostKey,
    pub(crate) id: NodeId,
    pub(crate) nonce: u64,
}

/// The random draws of a new identity, made by the caller from the node's generator.
pub(crate) struct Draws {
    /// The seed of a new host key; `None`: a key from the OS's entropy.
    pub(crate) key_seed: Option<[u8; 32]>,
    /// Where the search for a proof-of-work nonce starts.
    pub(crate) pow_start: u64,
}

/// Loads (or creates) the host key and the proof of work, off the async workers:
/// minting is CPU work and the files are blocking IO.
pub(crate) async fn load(config: &NodeConfig, draws: Draws) -> Result<Identity, Error> {
    let hostkey = config.hostkey.clone();
    let difficulty = config.pow_difficulty;
    if draws.key_seed.is_some() {
        // A simulation (seeded, on simulated time, at a low difficulty): minted here, so
        // that its nodes start in the same order on every run, not in the order the
        // blocking pool's threads happen to finish.
        return load_blocking(hostkey.as_deref(), difficulty, &draws);
    }
    tokio::task::spawn_blocking(move || load_blocking(hostkey.as_deref(), difficulty, &draws))
        .await
        .map_err(|e| Error::Identity(format!("identity task failed: {e}")))?
}

fn load_blocking(
    hostkey: Option<&Path>,
    difficulty: u32,
    draws: &Draws,
) -> Result<Identity, Error> {
    let Some(path) = hostkey else {
        // Embedders and tests without a hostkey get a fresh identity per start (the
        // same one for the same seed, in a simulation).
        let host = match &draws.key_seed {
            Some(seed) => HostKey::ed25519_from_seed(seed),
            None => HostKey::generate(),
        }
        .map_err(|e| Error::Identity(e.to_string()))?;
        let minted = mint(&host, difficulty, draws.pow_start)?;
        return Ok(Identity {
            host,
            id: minted.node_id,
            nonce: minted.nonce,
        });
    };
    let host = load_or_create_key(path)?;
    let pow_path = pow_file(path);
    let saved = std::fs::read_to_string(&pow_path)
        .ok()
        .and_then(|text| MintedId::from_text(&text, host.spki_der(), difficulty).ok());
    let minted = match saved {
        Some(minted) => minted,
        None => {
            let minted = mint(&host, difficulty, draws.pow_start)?;
            write_private(&pow_path, minted.to_text().as_bytes())?;
            minted
        }
    };
    Ok(Identity {
        host,
        id: minted.node_id,
        nonce: minted.nonce,
    })
}

/// Where the proof of work of the key at `hostkey` is saved: `<hostkey>.pow`.
pub(crate) fn pow_file(hostkey: &Path) -> PathBuf {
    let mut name = hostkey.as_os_str().to_owned();
    name.push(".pow");
    PathBuf::from(name)
}

fn mint(host: &HostKey, difficulty: u32, start: u64) -> Result<MintedId, Error> {
    let started = std::time::Instant::now();
    let (nonce, node_id) = pow::mint(host.spki_der(), difficulty, start, u64::MAX)
        .ok_or_else(|| Error::Identity(format!("no nonce of difficulty {difficulty} found")))?;
    info!(
        difficulty,
        elapsed_ms = started.elapsed().as_millis() as u64,
        id = %node_id,
        "minted the node id"
    );
    Ok(MintedId {
        nonce,
        node_id,
        difficulty,
    })
}

fn load_or_create_key(path: &Path) -> Result<HostKey, Error> {
    match std::fs::read_to_string(path) {
        Ok(pem) => HostKey::from_pem(&pem)
            .map_err(|e| Error::Identity(format!("hostkey {}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let host = HostKey::generate().map_err(|e| Error::Identity(e.to_string()))?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                    what: format!("creating the folder of hostkey {}", path.display()),
                    source,
                })?;
            }
            write_private(path, host.to_pem().as_bytes())?;
            info!(hostkey = %path.display(), "created a new Ed25519 host key");
            Ok(host)
        }
        Err(source) => Err(Error::Io {
            what: format!("reading hostkey {}", path.display()),
            source,
        }),
    }
}

/// Writes `bytes` to `path` readable by the owner only, atomically (a temporary file
/// renamed over the target), so that a crash never leaves half a key behind.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let io = |what: &str, source| Error::Io {
        what: format!("{what} {}", path.display()),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(|e| io("writing", e))?;
    file.write_all(bytes).map_err(|e| io("writing", e))?;
    file.sync_all().map_err(|e| io("syncing", e))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|e| io("renaming into", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random() -> Draws {
        Draws {
            key_seed: None,
            pow_start: rand::random(),
        }
    }

    #[test]
    fn creates_then_reuses_key_and_nonce() {
        let dir = std::env::temp_dir().join(format!("dht-identity-{}", rand::random::<u64>()));
        let path = dir.join("keys/hostkey.pem");
        let first = load_blocking(Some(&path), 4, &random()).expect("created");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("key").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "the key is readable by its owner only");
        }
        let pow_text = std::fs::read_to_string(pow_file(&path)).expect("nonce saved");
        let second = load_blocking(Some(&path), 4, &random()).expect("loaded");
        assert_eq!(first.id, second.id);
        assert_eq!(first.nonce, second.nonce);
        assert_eq!(
            std::fs::read_to_string(pow_file(&path)).expect("nonce"),
            pow_text
        );
        // A higher difficulty than the saved proof mints again.
        let harder = load_blocking(Some(&path), 6, &random()).expect("re-minted");
        assert!(pow::has_pow(&harder.id, 6));
        // A key file that is not a key is an error naming the file.
        std::fs::write(&path, "not a key").expect("overwrite");
        let err = load_blocking(Some(&path), 4, &random())
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("hostkey.pem"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
