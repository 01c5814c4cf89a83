//! Snapshots of generic guests: per runtime, guest size and network, a guest booted once to
//! its runtime's hello and saved (device state in `state`, RAM in the file `ram`), kept in
//! `<data>/microvm/snapshots/<guest hash>/<key>/` and restored by every cold start of that
//! kind. Made on first need, one at a time per kind; a snapshot of another guest build is
//! removed at start.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ignis_core::Runtime;
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

/// What a snapshot is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct SnapshotKey {
    /// Python or JavaScript (TypeScript functions run in the JavaScript guest: Bun).
    pub runtime: Runtime,
    pub memory_mb: u32,
    pub vcpus: u32,
    /// With a network card (`network: outbound`): the runtime is confined for it too.
    pub outbound: bool,
}

/// A saved guest.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub dir: PathBuf,
    /// The end marker its runtime was started with (see `docs/microvm.md`).
    pub marker: String,
    pub key: SnapshotKey,
}

pub(crate) struct Snapshots {
    root: PathBuf,
    cells: Mutex<HashMap<SnapshotKey, Arc<OnceCell<Arc<Snapshot>>>>>,
}

impl Snapshots {
    /// The snapshots of guest `hash` under `parent`; those of other guests, and
    /// unfinished ones, are removed.
    pub(crate) fn new(parent: PathBuf, hash: &str) -> Result<Snapshots, String> {
        std::fs::create_dir_all(&parent).map_err(|e| format!("mkdir {}: {e}", parent.display()))?;
        if let Ok(entries) = std::fs::read_dir(&parent) {
            for e in entries.flatten() {
                if e.file_name() != hash {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let root = parent.join(hash);
        std::fs::create_dir_all(&root).map_err(|e| format!("mkdir {}: {e}", root.display()))?;
        if let Ok(entries) = std::fs::read_dir(&root) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(".tmp-") {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        Ok(Snapshots {
            root,
            cells: Mutex::new(HashMap::new()),
        })
    }

    /// A folder to make a snapshot in (renamed into place by [`Snapshots::finish`]).
    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root
            .join(format!(".tmp-{}", hex::encode(rand::random::<[u8; 8]>())))
    }

    /// The folder of a finished snapshot of `key` made by `fingerprint` (the bootstrap's
    /// text, QEMU's build and the accelerator: a snapshot holds all three).
    fn final_dir(&self, key: SnapshotKey, fingerprint: &str) -> PathBuf {
        let mut h = Sha256::new();
        h.update(fingerprint.as_bytes());
        let sum = hex::encode(h.finalize());
        self.root
            .join(format!("{}-{}", kind_name(key), &sum[..FINGERPRINT_CHARS]))
    }

    /// Removes the snapshots of `key` made by another fingerprint than `dir`'s (an earlier
    /// bootstrap or QEMU build): nothing restores them any more, and each holds a guest's
    /// RAM.
    fn remove_stale(&self, key: SnapshotKey, dir: &Path) {
        let prefix = format!("{}-", kind_name(key));
        let entries = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!("cannot list {} for stale snapshots: {e}", self.root.display());
                return;
            }
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let stale = name.strip_prefix(&prefix).is_some_and(|sum| {
                sum.len() == FINGERPRINT_CHARS && sum.chars().all(|c| c.is_ascii_hexdigit())
            }) && e.path() != dir;
            if stale {
                if let Err(err) = std::fs::remove_dir_all(e.path()) {
                    tracing::warn!("cannot remove the stale snapshot {}: {err}", e.path().display());
                }
            }
        }
    }

    /// The snapshot of `key`: found on disk, or made by `make` (one at a time per key;
    /// a failure is not kept, so the next cold start tries again). With it, how long making
    /// it took when this call made it.
    pub(crate) async fn get<F, Fut>(
        &self,
        key: SnapshotKey,
        fingerprint: &str,
        make: F,
    ) -> Result<(Arc<Snapshot>, Option<Duration>), String>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Snapshot, String>>,
    {
        let cell = self
            .cells
            .lock()
            .expect("snapshots lock")
            .entry(key)
            .or_default()
            .clone();
        let dir = self.final_dir(key, fingerprint);
        let mut made = None;
        let snapshot = cell
            .get_or_try_init(|| async {
                if let Some(marker) = read_marker(&dir) {
                    return Ok::<_, String>(Arc::new(Snapshot { dir, marker, key }));
                }
                let began = Instant::now();
                let snapshot = finish(make().await?, &dir)?;
                made = Some(began.elapsed());
                self.remove_stale(key, &dir);
                Ok(Arc::new(snapshot))
            })
            .await?
            .clone();
        Ok((snapshot, made))
    }
}

/// Hex digits of the fingerprint's hash in a snapshot's folder name.
const FINGERPRINT_CHARS: usize = 16;

/// A kind's part of a snapshot's folder name: `python-128m-1c`, `javascript-256m-2c-net`.
fn kind_name(key: SnapshotKey) -> String {
    format!(
        "{}-{}m-{}c{}",
        key.runtime.as_str(),
        key.memory_mb,
        key.vcpus,
        if key.outbound { "-net" } else { "" }
    )
}

/// Moves a snapshot made in a temporary folder into place, readable by the sandboxed
/// QEMUs that restore it (they run as ids of their own).
fn finish(made: Snapshot, dir: &Path) -> Result<Snapshot, String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m))
            .map_err(|e| format!("chmod {}: {e}", p.display()))
    };
    for file in ["ram", "state"] {
        mode(&made.dir.join(file), 0o644)?;
    }
    std::fs::write(made.dir.join("marker"), &made.marker)
        .map_err(|e| format!("writing the snapshot's marker: {e}"))?;
    mode(&made.dir, 0o755)?;
    std::fs::rename(&made.dir, dir).map_err(|e| format!("moving the snapshot into place: {e}"))?;
    Ok(Snapshot {
        dir: dir.to_path_buf(),
        marker: made.marker,
        key: made.key,
    })
}

fn read_marker(dir: &Path) -> Option<String> {
    let marker = std::fs::read_to_string(dir.join("marker")).ok()?;
    (dir.join("ram").is_file() && dir.join("state").is_file() && !marker.is_empty()).then_some(marker)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SnapshotKey {
        SnapshotKey {
            runtime: Runtime::Python,
            memory_mb: 128,
            vcpus: 1,
            outbound: false,
        }
    }

    fn fake(snapshots: &Snapshots, marker: &str) -> Result<Snapshot, String> {
        let dir = snapshots.tmp_dir();
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("ram"), b"r").map_err(|e| e.to_string())?;
        std::fs::write(dir.join("state"), b"s").map_err(|e| e.to_string())?;
        Ok(Snapshot {
            dir,
            marker: marker.to_owned(),
            key: key(),
        })
    }

    #[tokio::test]
    async fn a_snapshot_is_made_once_then_found_on_disk_and_other_guests_go() {
        let tmp = std::env::temp_dir().join(format!("ignis-snap-{}", hex::encode(rand::random::<[u8; 6]>())));
        std::fs::create_dir_all(tmp.join("old-guest")).expect("mkdir");
        let s = Snapshots::new(tmp.clone(), "guestA").expect("new");
        assert!(
            !tmp.join("old-guest").exists(),
            "another guest's snapshots are removed"
        );
        let (first, made) = s
            .get(key(), "fp", || async { fake(&s, "m1") })
            .await
            .expect("made");
        assert_eq!(first.marker, "m1");
        assert!(made.is_some(), "this call made it");
        let (again, made) = s
            .get(key(), "fp", || async { Err("must not be made twice".to_owned()) })
            .await
            .expect("kept");
        assert_eq!(again.dir, first.dir);
        assert_eq!(made, None);
        // A new server finds it on disk.
        let s2 = Snapshots::new(tmp.clone(), "guestA").expect("new");
        let (found, made) = s2
            .get(key(), "fp", || async { Err("must be found on disk".to_owned()) })
            .await
            .expect("found");
        assert_eq!(found.marker, "m1");
        assert_eq!(made, None);
        // Another bootstrap (fingerprint) needs its own.
        let err = s2
            .get(
                SnapshotKey {
                    memory_mb: 256,
                    ..key()
                },
                "fp",
                || async { Err("boom".to_owned()) },
            )
            .await
            .expect_err("failure");
        assert_eq!(err, "boom");
        let _ = std::fs::remove_dir_all(&tmp);
    }

    #[tokio::test]
    async fn a_new_snapshot_of_a_kind_removes_the_kind_s_stale_ones_only() {
        let tmp = std::env::temp_dir().join(format!("ignis-snap-{}", hex::encode(rand::random::<[u8; 6]>())));
        let s = Snapshots::new(tmp.clone(), "guestA").expect("new");
        let root = tmp.join("guestA");
        let stale = root.join(format!("{}-0123456789abcdef", kind_name(key())));
        let outbound = SnapshotKey {
            outbound: true,
            ..key()
        };
        let other_kind = root.join(format!("{}-0123456789abcdef", kind_name(outbound)));
        for d in [&stale, &other_kind] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        let (made, _) = s
            .get(key(), "a new bootstrap", || async { fake(&s, "m") })
            .await
            .expect("made");
        assert!(made.dir.is_dir());
        assert!(
            !stale.exists(),
            "the kind's snapshot of an earlier fingerprint is removed"
        );
        assert!(
            other_kind.is_dir(),
            "another kind's (with a network card) is kept"
        );
        let _ = std::fs::remove_dir_all(&tmp);
    }
}
