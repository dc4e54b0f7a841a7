//! Listing a model directory and opening its files, refusing anything the
//! manifest cannot account for.

use std::fs::{File, FileType};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};

use super::error::{ModelError, UnaccountedKind, io};

/// A regular file directly in a model directory (or a symbolic link to
/// one), under the name the manifest gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct NamedFile {
    /// The name in the directory (the symbolic link's name, not its target's).
    pub(super) name: String,
    /// The path to open.
    pub(super) path: PathBuf,
}

/// The name `path` goes into the manifest under, if the manifest can hold it.
pub(super) fn manifest_name(path: &Path) -> Result<String, ModelError> {
    let unaccounted = |kind| ModelError::UnaccountedEntry {
        path: path.to_owned(),
        kind,
    };
    let name = path
        .file_name()
        .ok_or_else(|| unaccounted(UnaccountedKind::NotRegularFile))?;
    let name = name
        .to_str()
        .ok_or_else(|| unaccounted(UnaccountedKind::NonUtf8Name))?;
    if name.contains(['\n', '\r', '\\']) {
        return Err(unaccounted(UnaccountedKind::NameBreaksManifest));
    }
    Ok(name.to_owned())
}

/// What a non-regular, non-directory file type is.
pub(super) fn kind_of(file_type: FileType) -> UnaccountedKind {
    if file_type.is_dir() {
        UnaccountedKind::Directory
    } else if file_type.is_fifo() {
        UnaccountedKind::Fifo
    } else if file_type.is_socket() {
        UnaccountedKind::Socket
    } else if file_type.is_block_device() {
        UnaccountedKind::BlockDevice
    } else if file_type.is_char_device() {
        UnaccountedKind::CharacterDevice
    } else {
        UnaccountedKind::NotRegularFile
    }
}

/// Checks that `path` (a directory entry) is a regular file or a symbolic
/// link to one.
fn check_entry(path: &Path) -> Result<(), ModelError> {
    let unaccounted = |kind| ModelError::UnaccountedEntry {
        path: path.to_owned(),
        kind,
    };
    let own = std::fs::symlink_metadata(path).map_err(io(path))?;
    if !own.file_type().is_symlink() {
        return if own.is_file() {
            Ok(())
        } else {
            Err(unaccounted(kind_of(own.file_type())))
        };
    }
    match std::fs::metadata(path) {
        Ok(target) if target.is_file() => Ok(()),
        Ok(target) if target.is_dir() => Err(unaccounted(UnaccountedKind::SymlinkToDirectory)),
        Ok(target) => Err(unaccounted(kind_of(target.file_type()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(unaccounted(UnaccountedKind::DanglingSymlink))
        }
        Err(e) => Err(io(path)(e)),
    }
}

/// Every entry directly in `dir`, sorted by name (byte order). Fails on the
/// first entry that is not a regular file or a symbolic link to one, or
/// whose name the manifest cannot hold.
pub(super) fn list_model_directory(dir: &Path) -> Result<Vec<NamedFile>, ModelError> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        let name = manifest_name(&path)?;
        check_entry(&path)?;
        files.push(NamedFile { name, path });
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

/// Opens `path` for reading and checks, on the open handle, that it is a
/// regular file. Opening does not block on a named pipe swapped in after
/// the directory was listed. Returns the file and its size.
pub(super) fn open_regular(path: &Path) -> Result<(File, u64), ModelError> {
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io(path)(e.into()))?;
    let file = File::from(fd);
    let meta = file.metadata().map_err(io(path))?;
    if !meta.is_file() {
        return Err(ModelError::UnaccountedEntry {
            path: path.to_owned(),
            kind: kind_of(meta.file_type()),
        });
    }
    Ok((file, meta.len()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn names_sort_in_byte_order_like_c_locale_sort() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b", "B", "a.json", "_x", "-y", "Z.safetensors"] {
            std::fs::write(dir.path().join(name), name).unwrap();
        }
        let names: Vec<String> = list_model_directory(dir.path())
            .unwrap()
            .into_iter()
            .map(|f| f.name)
            .collect();
        assert_eq!(names, ["-y", "B", "Z.safetensors", "_x", "a.json", "b"]);
    }

    #[test]
    fn names_sha256sum_would_escape_are_refused() {
        for name in ["a\\b", "a\rb", "a\nb"] {
            let err = manifest_name(Path::new("/m").join(name).as_path()).unwrap_err();
            assert!(
                matches!(
                    err,
                    ModelError::UnaccountedEntry {
                        kind: UnaccountedKind::NameBreaksManifest,
                        ..
                    }
                ),
                "{name:?}: {err}"
            );
        }
        assert_eq!(
            manifest_name(Path::new("/m/model-00001-of-00002.safetensors")).unwrap(),
            "model-00001-of-00002.safetensors"
        );
    }

    #[test]
    fn non_utf8_names_are_refused() {
        use std::os::unix::ffi::OsStrExt;
        let name = std::ffi::OsStr::from_bytes(b"bad\xff.json");
        let err = manifest_name(&Path::new("/m").join(name)).unwrap_err();
        assert!(matches!(
            err,
            ModelError::UnaccountedEntry {
                kind: UnaccountedKind::NonUtf8Name,
                ..
            }
        ));
    }

    #[test]
    fn opening_a_directory_or_device_is_refused_on_the_handle() {
        let dir = tempfile::tempdir().unwrap();
        let err = open_regular(dir.path()).unwrap_err();
        assert!(matches!(
            err,
            ModelError::UnaccountedEntry {
                kind: UnaccountedKind::Directory,
                ..
            }
        ));
        let err = open_regular(Path::new("/dev/null")).unwrap_err();
        assert!(matches!(
            err,
            ModelError::UnaccountedEntry {
                kind: UnaccountedKind::CharacterDevice,
                ..
            }
        ));
    }
}
