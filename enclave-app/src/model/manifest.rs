//! The manifest of a model's files and its digest, and hashing in place.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::error::{ModelError, io};
use super::scan::{list_model_directory, manifest_name, open_regular};
use super::{ManifestScope, ModelFormat, ModelSource};

/// Bytes read and hashed at a time: memory use does not grow with the model.
pub(super) const CHUNK_BYTES: usize = 1 << 20;

/// Files mistral.rs reads from the directory of a GGUF file when they are
/// there (its `get_paths_gguf`). A GGUF given as a file is hashed alone, so
/// loading it in place beside one of these is refused.
const READ_BESIDE_GGUF: [&str; 7] = [
    "chat_template.jinja",
    "chat_template.json",
    "generation_config.json",
    "preprocessor_config.json",
    "processor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
];

/// One line of the manifest: a file, as `sha256sum` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ManifestEntry {
    /// The file's name in the model directory (no directory part).
    pub name: String,
    /// Lowercase hex SHA-256 of its contents.
    pub sha256: String,
    /// Its size.
    pub bytes: u64,
}

/// The model digest (`weights_sha256`) of a manifest: SHA-256 over the lines
/// `<hex sha256>  <name>\n` (two spaces), entries in the order given, which
/// is byte order of the names. Auditors reproduce it with coreutils:
///
/// ```sh
/// # every file in the directory, dot files included, in byte order of name:
/// cd <model dir> && ls -A | LC_ALL=C sort | tr '\n' '\0' | xargs -0 sha256sum -- | sha256sum
/// # a GGUF given as a file:
/// cd <its dir> && sha256sum -- <file name> | sha256sum
/// ```
///
/// Names never hold a newline, carriage return or backslash (such files
/// are refused), so `sha256sum` prints them unescaped; symbolic links are
/// hashed under their own name with their target's contents.
pub fn manifest_digest(entries: &[ManifestEntry]) -> String {
    let mut hasher = Sha256::new();
    for entry in entries {
        hasher.update(entry.sha256.as_bytes());
        hasher.update(b"  ");
        hasher.update(entry.name.as_bytes());
        hasher.update(b"\n");
    }
    hex::encode(hasher.finalize())
}

/// Reads exactly `size_when_opened` bytes of `file` (at `path`), a chunk at
/// a time, handing each chunk to `sink` after hashing it and reporting the
/// bytes read to `on_read`. Fails if the file turns out longer or shorter
/// than it was when opened. Returns the hex SHA-256 of the bytes read.
pub(super) fn read_hashing(
    path: &Path,
    file: File,
    size_when_opened: u64,
    mut sink: impl FnMut(&[u8]) -> Result<(), ModelError>,
    mut on_read: impl FnMut(u64),
) -> Result<String, ModelError> {
    let changed = |bytes_read| ModelError::ChangedWhileReading {
        path: path.to_owned(),
        size_when_opened,
        bytes_read,
    };
    // One byte more than expected is enough to see growth without copying it.
    let mut limited = (&file).take(size_when_opened.saturating_add(1));
    let mut buf = vec![0u8; CHUNK_BYTES];
    let mut hasher = Sha256::new();
    let mut bytes_read = 0u64;
    loop {
        let n = match limited.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io(path)(e)),
        };
        bytes_read = bytes_read.saturating_add(n as u64);
        if bytes_read > size_when_opened {
            return Err(changed(bytes_read));
        }
        let chunk = buf.get(..n).unwrap_or_default();
        hasher.update(chunk);
        sink(chunk)?;
        on_read(n as u64);
    }
    if bytes_read != size_when_opened {
        return Err(changed(bytes_read));
    }
    let size_now = file.metadata().map_err(io(path))?.len();
    if size_now != size_when_opened {
        return Err(changed(bytes_read));
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Checks that what mistral.rs would read from the model's directory is
/// what `source` lists: for a directory, the same names as when the model
/// was found; for a GGUF given as a file, none of the files mistral.rs reads
/// beside it.
pub(super) fn check_nothing_unhashed(source: &ModelSource) -> Result<(), ModelError> {
    let dir = match &source.format {
        ModelFormat::Gguf { dir, .. } | ModelFormat::Safetensors { dir } => dir,
    };
    match source.scope {
        ManifestScope::File => {
            for name in READ_BESIDE_GGUF {
                let path = dir.join(name);
                if std::fs::symlink_metadata(&path).is_ok() {
                    return Err(ModelError::UnhashedSibling { path });
                }
            }
            Ok(())
        }
        ManifestScope::Directory => {
            let now: BTreeSet<String> = list_model_directory(dir)?
                .into_iter()
                .map(|f| f.name)
                .collect();
            let then: BTreeSet<String> = source
                .files
                .iter()
                .map(|f| manifest_name(f))
                .collect::<Result<_, _>>()?;
            if now == then {
                return Ok(());
            }
            let list = |names: Vec<&String>| {
                names
                    .into_iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            Err(ModelError::ListingChanged {
                dir: dir.clone(),
                change: format!(
                    "added: [{}]; removed: [{}]",
                    list(now.difference(&then).collect()),
                    list(then.difference(&now).collect())
                ),
            })
        }
    }
}

/// Every file of `source` opened (regular files only), with its manifest
/// name and size, in manifest order.
pub(super) fn open_sorted(
    source: &ModelSource,
) -> Result<Vec<(String, &std::path::PathBuf, File, u64)>, ModelError> {
    let mut opened = Vec::with_capacity(source.files.len());
    for path in &source.files {
        let name = manifest_name(path)?;
        let (file, size) = open_regular(path)?;
        opened.push((name, path, file, size));
    }
    opened.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(opened)
}

/// Hashes the model's files where they are, for loading without staging
/// (`--no-model-staging`). Returns `weights_sha256` (see
/// [`manifest_digest`]) and the manifest. `progress(done_bytes,
/// total_bytes)` is called as hashing proceeds.
///
/// Call it before loading and again after, and refuse to serve if the two
/// digests differ. It also fails when the directory gained or lost files
/// since [`ModelSource::resolve`], and for a GGUF given as a file, when a
/// file mistral.rs reads beside it is present. What remains: files swapped
/// only while mistral.rs reads them and swapped back before the second
/// hash are not seen here; only dm-verity on the model volume (see the
/// deploy design) catches that. [`stage`](super::stage) has no such gap.
pub fn digest_in_place(
    source: &ModelSource,
    mut progress: impl FnMut(u64, u64),
) -> Result<(String, Vec<ManifestEntry>), ModelError> {
    check_nothing_unhashed(source)?;
    let opened = open_sorted(source)?;
    let total = opened.iter().map(|f| f.3).fold(0u64, u64::saturating_add);
    let mut done = 0u64;
    let mut manifest = Vec::with_capacity(opened.len());
    for (name, path, file, size) in opened {
        let sha256 = read_hashing(
            path,
            file,
            size,
            |_| Ok(()),
            |n| {
                done = done.saturating_add(n);
                progress(done, total);
            },
        )?;
        manifest.push(ManifestEntry {
            name,
            sha256,
            bytes: size,
        });
    }
    Ok((manifest_digest(&manifest), manifest))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn digest_is_sha256_of_sha256sum_output() {
        let entries = vec![
            ManifestEntry {
                name: "a.json".into(),
                sha256: hex::encode(Sha256::digest(b"{}")),
                bytes: 2,
            },
            ManifestEntry {
                name: "b c.safetensors".into(),
                sha256: hex::encode(Sha256::digest(b"")),
                bytes: 0,
            },
        ];
        let text = format!(
            "{}  a.json\n{}  b c.safetensors\n",
            entries[0].sha256, entries[1].sha256
        );
        assert_eq!(
            manifest_digest(&entries),
            hex::encode(Sha256::digest(text.as_bytes()))
        );
    }

    #[test]
    fn a_shorter_file_than_when_opened_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.gguf");
        std::fs::write(&path, b"GGUF1234").unwrap();
        let (file, size) = open_regular(&path).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(4)
            .unwrap();
        let err = read_hashing(&path, file, size, |_| Ok(()), |_| {}).unwrap_err();
        assert!(matches!(
            err,
            ModelError::ChangedWhileReading {
                size_when_opened: 8,
                bytes_read: 4,
                ..
            }
        ));
    }
}
