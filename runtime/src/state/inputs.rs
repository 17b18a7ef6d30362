//! Durable state on the embedded broker: refusing to apply an input file twice.
//!
//! The embedded broker keeps no positions between runs: every run reads its input files from
//! the start. Durable state does outlive the run, so running the same input again would
//! apply its events a second time (a counter counting them twice). The store therefore
//! records each input file it is fed (its length and the SHA-256 of its content, before the
//! first event is read), and a later run is refused if an input still begins with content
//! already fed: the same file, or the same file with lines appended. A file whose recorded
//! part changed is new input and is accepted.

use super::StateBackend;
use crate::event::now_rfc3339;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;

/// What the store remembers of one input file.
struct Fed {
    len: u64,
    sha256: String,
    at: String,
}

impl Fed {
    fn encode(&self) -> Vec<u8> {
        format!("{} {} {}", self.len, self.sha256, self.at).into_bytes()
    }

    fn decode(bytes: &[u8]) -> Option<Fed> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut parts = text.splitn(3, ' ');
        Some(Fed {
            len: parts.next()?.parse().ok()?,
            sha256: parts.next()?.to_owned(),
            at: parts.next()?.to_owned(),
        })
    }
}

/// The SHA-256 of the first `len` bytes of `path`, and how many there were.
fn digest_prefix(path: &Path, len: u64) -> std::io::Result<(u64, String)> {
    let file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let read = std::io::copy(&mut file.take(len), &mut hasher)?;
    Ok((read, hex::encode(hasher.finalize())))
}

/// Records that `inputs` are about to be fed into `store`, or refuses (with what to do) if
/// one of them was fed into it before.
pub fn admit(store: &dyn StateBackend, inputs: &[&Path]) -> Result<(), String> {
    if !store.durable() {
        return Ok(());
    }
    let mut admitted = Vec::new();
    for path in inputs {
        let canonical =
            std::fs::canonicalize(path).map_err(|e| format!("input {}: {e}", path.display()))?;
        let key = format!("input:{}", canonical.display());
        if std::fs::metadata(&canonical).is_ok_and(|m| m.len() == 0) {
            continue; // nothing in it to apply twice (`--input T=/dev/null`)
        }
        let previous = store
            .meta(&key)
            .map_err(|e| e.to_string())?
            .and_then(|bytes| Fed::decode(&bytes));
        if let Some(fed) = previous {
            let (len, sha256) = digest_prefix(&canonical, fed.len)
                .map_err(|e| format!("input {}: {e}", path.display()))?;
            if len == fed.len && sha256 == fed.sha256 {
                return Err(format!(
                    "input {} was already fed into the durable {} (at {}); running it again would apply its events a second time, because the embedded broker reads every input from the start. Delete the state file to start over, feed only new events, or set [state] backend = \"memory\" for throwaway runs",
                    path.display(),
                    store.describe(),
                    fed.at
                ));
            }
        }
        let (len, sha256) = digest_prefix(&canonical, u64::MAX)
            .map_err(|e| format!("input {}: {e}", path.display()))?;
        admitted.push((
            key,
            Fed {
                len,
                sha256,
                at: now_rfc3339(),
            },
        ));
    }
    for (key, fed) in admitted {
        store
            .set_meta(&key, &fed.encode())
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{MemoryBackend, local::LocalBackend};

    #[test]
    fn an_input_fed_into_durable_state_is_refused_the_second_time_and_when_appended_to() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBackend::open(&dir.path().join("s.redb")).unwrap();
        let input = dir.path().join("in.jsonl");
        std::fs::write(&input, "one\n").unwrap();
        admit(&store, &[&input]).expect("first time");
        let refused = admit(&store, &[&input]).unwrap_err();
        assert!(
            refused.contains("already fed") && refused.contains("in.jsonl"),
            "{refused}"
        );
        std::fs::write(&input, "one\ntwo\n").unwrap();
        assert!(
            admit(&store, &[&input]).is_err(),
            "appended: its start was fed already"
        );
        std::fs::write(&input, "three\n").unwrap();
        admit(&store, &[&input]).expect("new content");
        assert!(admit(&MemoryBackend::default(), &[&input]).is_ok());
        assert!(
            admit(&MemoryBackend::default(), &[&input]).is_ok(),
            "memory state is not durable"
        );
    }
}
