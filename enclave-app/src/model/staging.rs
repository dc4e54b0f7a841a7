//! Copying the model into guest memory while hashing it, so the engine
//! loads exactly the bytes the identity attests.

use std::fs::{OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::error::{ModelError, io};
use super::manifest::{ManifestEntry, manifest_digest, open_sorted, read_hashing};
use super::{ModelFormat, ModelSource};

/// `statfs` magic numbers of filesystems kept in (guest) memory.
const TMPFS_MAGIC: i128 = 0x0102_1994;
const RAMFS_MAGIC: i128 = 0x8584_58f6;

/// A model copied into a private staging directory.
#[derive(Debug)]
pub struct StagedModel {
    /// The same id, format and file names as the original, with every path
    /// inside the staging directory: load this one.
    pub source: ModelSource,
    /// The digest of the bytes written to the staging directory (see
    /// [`manifest_digest`](super::manifest_digest)).
    pub weights_sha256: String,
    /// One entry per file, sorted by name.
    pub manifest: Vec<ManifestEntry>,
    /// The staging directory (mode 0700); removed with its files on drop.
    pub dir: tempfile::TempDir,
}

/// Free space on the staging filesystem, as `statvfs` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Room {
    /// Allocation unit (`f_frsize`); files take whole units.
    pub(super) block_bytes: u64,
    /// Size of the filesystem in units (`f_blocks`); 0 when it reports no
    /// limit (ramfs, tmpfs mounted with size=0).
    pub(super) blocks_total: u64,
    /// Units free for an unprivileged process (`f_bavail`).
    pub(super) blocks_available: u64,
}

impl Room {
    fn of(root: &Path) -> Result<Self, ModelError> {
        let stat = rustix::fs::statvfs(root).map_err(|e| io(root)(e.into()))?;
        Ok(Self {
            block_bytes: stat.f_frsize,
            blocks_total: stat.f_blocks,
            blocks_available: stat.f_bavail,
        })
    }

    /// Bytes that files of these sizes take, each rounded up to whole units.
    pub(super) fn needed(&self, sizes: impl IntoIterator<Item = u64>) -> u64 {
        let block = self.block_bytes.max(1);
        sizes
            .into_iter()
            .map(|size| size.div_ceil(block).saturating_mul(block))
            .fold(0, u64::saturating_add)
    }

    /// Bytes free.
    pub(super) fn available(&self) -> u64 {
        self.blocks_available.saturating_mul(self.block_bytes)
    }

    /// Fails with [`ModelError::NoRoomToStage`] unless files of these sizes fit.
    pub(super) fn ensure_fits(
        &self,
        root: &Path,
        sizes: impl IntoIterator<Item = u64>,
    ) -> Result<(), ModelError> {
        let needed = self.needed(sizes);
        if self.blocks_total == 0 {
            tracing::warn!(
                root = %root.display(),
                needed_bytes = needed,
                "the staging filesystem reports no size limit; copying without a space check"
            );
            return Ok(());
        }
        let available = self.available();
        if needed > available {
            return Err(ModelError::NoRoomToStage {
                root: root.to_owned(),
                needed,
                available,
            });
        }
        Ok(())
    }
}

/// Warns when the staging root is not a memory filesystem: the host may be
/// able to read or rewrite a disk behind the enclave's back.
fn warn_unless_in_memory(root: &Path) {
    match rustix::fs::statfs(root) {
        Ok(stat) if matches!(i128::from(stat.f_type), TMPFS_MAGIC | RAMFS_MAGIC) => {}
        Ok(_) => tracing::warn!(
            root = %root.display(),
            "the model staging directory is not on tmpfs: the host may be able to change the \
             staged files; use a memory filesystem inside the confidential VM"
        ),
        Err(e) => {
            tracing::warn!(root = %root.display(), error = %e, "cannot tell what filesystem the staging directory is on")
        }
    }
}

/// Copies the model's files into a fresh private directory (mode 0700)
/// under `staging_root`, hashing each chunk as it is written, and returns
/// the copy with its digest: the engine then reads only bytes that were
/// hashed, and nothing on the host's disk is read after hashing.
///
/// `staging_root` should be a memory filesystem inside the confidential VM
/// (`/dev/shm`): guest memory, which the host can neither read nor write.
/// Before copying, checks that the files fit there. Memory use is one
/// chunk, whatever the model's size. Fails if a source file changes size
/// while it is copied. `progress(done_bytes, total_bytes)` is called as
/// copying proceeds.
pub fn stage(
    source: &ModelSource,
    staging_root: &Path,
    mut progress: impl FnMut(u64, u64),
) -> Result<StagedModel, ModelError> {
    let opened = open_sorted(source)?;
    Room::of(staging_root)?.ensure_fits(staging_root, opened.iter().map(|f| f.3))?;
    warn_unless_in_memory(staging_root);

    let dir = tempfile::Builder::new()
        .prefix("cloister-model-")
        .permissions(Permissions::from_mode(0o700))
        .tempdir_in(staging_root)
        .map_err(io(staging_root))?;
    std::fs::set_permissions(dir.path(), Permissions::from_mode(0o700)).map_err(io(dir.path()))?;

    let total = opened.iter().map(|f| f.3).fold(0u64, u64::saturating_add);
    let mut done = 0u64;
    let mut manifest = Vec::with_capacity(opened.len());
    let mut staged_files = Vec::with_capacity(opened.len());
    for (name, path, file, size) in opened {
        let staged_path = dir.path().join(&name);
        let mut staged = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&staged_path)
            .map_err(io(&staged_path))?;
        let sha256 = read_hashing(
            path,
            file,
            size,
            |chunk| staged.write_all(chunk).map_err(io(&staged_path)),
            |n| {
                done = done.saturating_add(n);
                progress(done, total);
            },
        )?;
        drop(staged);
        std::fs::set_permissions(&staged_path, Permissions::from_mode(0o400))
            .map_err(io(&staged_path))?;
        manifest.push(ManifestEntry {
            name,
            sha256,
            bytes: size,
        });
        staged_files.push(staged_path);
    }

    let format = match &source.format {
        ModelFormat::Gguf { file, .. } => ModelFormat::Gguf {
            dir: dir.path().to_owned(),
            file: file.clone(),
        },
        ModelFormat::Safetensors { .. } => ModelFormat::Safetensors {
            dir: dir.path().to_owned(),
        },
    };
    let weights_sha256 = manifest_digest(&manifest);
    tracing::info!(
        model = %source.id,
        files = manifest.len(),
        bytes = total,
        staging = %dir.path().display(),
        weights_sha256 = %weights_sha256,
        "model staged and hashed"
    );
    Ok(StagedModel {
        source: ModelSource {
            id: source.id.clone(),
            format,
            files: staged_files,
            scope: source.scope,
        },
        weights_sha256,
        manifest,
        dir,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const ROOT: &str = "/dev/shm";

    fn room(block_bytes: u64, blocks_total: u64, blocks_available: u64) -> Room {
        Room {
            block_bytes,
            blocks_total,
            blocks_available,
        }
    }

    #[test]
    fn files_take_whole_blocks() {
        let r = room(4096, 100, 10);
        assert_eq!(r.needed([0, 1, 4096, 4097]), 4096 + 4096 + 2 * 4096);
        assert_eq!(r.available(), 40960);
    }

    #[test]
    fn exactly_full_fits_and_one_byte_more_does_not() {
        let r = room(4096, 100, 10);
        r.ensure_fits(Path::new(ROOT), [40960]).unwrap();
        let err = r.ensure_fits(Path::new(ROOT), [40961]).unwrap_err();
        match err {
            ModelError::NoRoomToStage {
                root,
                needed,
                available,
            } => {
                assert_eq!(root, Path::new(ROOT));
                assert_eq!(needed, 45056);
                assert_eq!(available, 40960);
            }
            other => panic!("unexpected {other}"),
        }
        let msg = r
            .ensure_fits(Path::new(ROOT), [40961])
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("45056 bytes needed") && msg.contains("40960 available"),
            "{msg}"
        );
        assert!(msg.contains(ROOT), "{msg}");
    }

    #[test]
    fn many_small_files_can_overflow_what_their_sum_suggests() {
        // 11 one-byte files need 11 blocks, not 11 bytes.
        let r = room(4096, 100, 10);
        assert!(r.ensure_fits(Path::new(ROOT), [1; 10]).is_ok());
        assert!(r.ensure_fits(Path::new(ROOT), [1; 11]).is_err());
    }

    #[test]
    fn huge_sizes_saturate_instead_of_wrapping() {
        let r = room(4096, u64::MAX, u64::MAX);
        assert_eq!(r.needed([u64::MAX, u64::MAX]), u64::MAX);
        assert_eq!(r.available(), u64::MAX);
        let r = room(4096, 100, 10);
        assert!(r.ensure_fits(Path::new(ROOT), [u64::MAX - 1, 2]).is_err());
    }

    #[test]
    fn zero_block_size_and_unlimited_filesystems() {
        assert_eq!(room(0, 1, 1).needed([5]), 5);
        // A filesystem with no size limit reports zero blocks: no refusal.
        assert!(
            room(4096, 0, 0)
                .ensure_fits(Path::new(ROOT), [1 << 40])
                .is_ok()
        );
    }
}
