//! Finding, hashing and staging the model.
//!
//! A model is a `.gguf` file, or a directory holding one `.gguf` file, or a
//! directory with `config.json`, `tokenizer.json` and `*.safetensors`. Its
//! identity is its id and `weights_sha256`, the SHA-256 of a `sha256sum`
//! manifest of its files (see [`manifest_digest`]):
//!
//! - for a directory, every file directly in it (symbolic links to regular
//!   files are followed, as in a Hugging Face cache snapshot), because
//!   mistral.rs reads more than the weights from it (chat templates,
//!   generation and processor configs...). A directory holding anything
//!   else (a subdirectory, a link to a directory, a dangling link, a pipe,
//!   socket or device, a name that is not UTF-8 or that `sha256sum` would
//!   escape) is refused with [`ModelError::UnaccountedEntry`];
//! - for a `.gguf` given as a file, that one file.
//!
//! [`stage`] copies the files into guest memory while hashing them, so the
//! engine loads exactly the bytes the identity attests. [`digest_in_place`]
//! is for models too big to hold twice in memory.

mod error;
mod manifest;
mod scan;
mod staging;

use std::io::Read;
use std::path::{Path, PathBuf};

pub use error::{ModelError, UnaccountedKind};
pub use manifest::{ManifestEntry, digest_in_place, manifest_digest};
pub use staging::{StagedModel, stage};

use error::io;
use scan::{NamedFile, kind_of, list_model_directory, manifest_name, open_regular};

/// The files and layout of a model on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelFormat {
    /// A quantized GGUF file (tokenizer and chat template inside).
    Gguf {
        /// Directory holding the file.
        dir: PathBuf,
        /// File name.
        file: String,
    },
    /// A Hugging Face style directory of safetensors weights.
    Safetensors {
        /// The directory.
        dir: PathBuf,
    },
}

/// What the manifest of a model covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestScope {
    /// Every file in the model's directory.
    Directory,
    /// The one GGUF file the model path named.
    File,
}

/// A model found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSource {
    /// The id clients use and the identity binds.
    pub id: String,
    /// The layout.
    pub format: ModelFormat,
    /// The files its identity covers, sorted by name.
    pub files: Vec<PathBuf>,
    /// Whether those are every file in the directory or one named file.
    pub scope: ManifestScope,
}

impl ModelSource {
    /// Finds the model at `path`. `id` defaults to the file stem or
    /// directory name.
    pub fn resolve(path: &Path, id: Option<String>) -> Result<Self, ModelError> {
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ModelError::NotFound(path.to_owned()));
            }
            Err(e) => return Err(io(path)(e)),
        };
        let default_id = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".to_owned());
        let id = id.unwrap_or(default_id);
        if meta.is_file() {
            return Self::gguf_file(path, id);
        }
        if !meta.is_dir() {
            return Err(ModelError::UnaccountedEntry {
                path: path.to_owned(),
                kind: kind_of(meta.file_type()),
            });
        }
        let files = list_model_directory(path)?;
        let with = |extension: &str| -> Vec<&NamedFile> {
            files
                .iter()
                .filter(|f| f.name.ends_with(extension))
                .collect()
        };
        let (ggufs, safetensors) = (with(".gguf"), with(".safetensors"));
        let format = match (ggufs.as_slice(), safetensors.is_empty()) {
            ([one], true) => {
                check_gguf_magic(&one.path)?;
                ModelFormat::Gguf {
                    dir: path.to_owned(),
                    file: one.name.clone(),
                }
            }
            ([], false) => {
                for required in ["config.json", "tokenizer.json"] {
                    if !files.iter().any(|f| f.name == required) {
                        return Err(ModelError::UnrecognisedLayout {
                            path: path.to_owned(),
                            found: format!(
                                "{} safetensors files but no {required}",
                                safetensors.len()
                            ),
                        });
                    }
                }
                ModelFormat::Safetensors {
                    dir: path.to_owned(),
                }
            }
            ([], true) => {
                return Err(ModelError::UnrecognisedLayout {
                    path: path.to_owned(),
                    found: "no .gguf or .safetensors files".into(),
                });
            }
            (many, _) => {
                return Err(ModelError::AmbiguousGguf {
                    path: path.to_owned(),
                    files: many
                        .iter()
                        .map(|f| f.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        };
        Ok(Self {
            id,
            format,
            files: files.into_iter().map(|f| f.path).collect(),
            scope: ManifestScope::Directory,
        })
    }

    fn gguf_file(file: &Path, id: String) -> Result<Self, ModelError> {
        let name = manifest_name(file)?;
        check_gguf_magic(file)?;
        let dir = match file.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => PathBuf::from("."),
        };
        Ok(Self {
            id,
            format: ModelFormat::Gguf { dir, file: name },
            files: vec![file.to_owned()],
            scope: ManifestScope::File,
        })
    }

    /// The directory or file the model was found at, for messages.
    pub fn location(&self) -> PathBuf {
        match &self.format {
            ModelFormat::Gguf { dir, file } => dir.join(file),
            ModelFormat::Safetensors { dir } => dir.clone(),
        }
    }

    /// Total size of the files, in bytes.
    pub fn size(&self) -> u64 {
        self.files
            .iter()
            .filter_map(|f| std::fs::metadata(f).ok())
            .map(|m| m.len())
            .sum()
    }
}

fn check_gguf_magic(file: &Path) -> Result<(), ModelError> {
    let (mut handle, _) = open_regular(file)?;
    let mut magic = [0u8; 4];
    handle.read_exact(&mut magic).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => ModelError::NotGguf(file.to_owned()),
        _ => io(file)(e),
    })?;
    if &magic != b"GGUF" {
        return Err(ModelError::NotGguf(file.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    #[test]
    fn a_directory_with_one_gguf_covers_every_file_in_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("m.gguf"), b"GGUF....").unwrap();
        std::fs::write(dir.path().join("chat_template.json"), b"{}").unwrap();
        let source = ModelSource::resolve(dir.path(), Some("m".into())).unwrap();
        assert_eq!(source.scope, ManifestScope::Directory);
        assert_eq!(
            source.files,
            [
                dir.path().join("chat_template.json"),
                dir.path().join("m.gguf")
            ]
        );
        assert!(matches!(source.format, ModelFormat::Gguf { ref file, .. } if file == "m.gguf"));
    }

    #[test]
    fn a_gguf_file_covers_itself_and_refuses_in_place_loading_beside_a_template() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("m.gguf");
        std::fs::write(&file, b"GGUF....").unwrap();
        let source = ModelSource::resolve(&file, None).unwrap();
        assert_eq!(source.id, "m");
        assert_eq!(source.scope, ManifestScope::File);
        assert_eq!(source.files, std::slice::from_ref(&file));
        digest_in_place(&source, |_, _| {}).unwrap();

        std::fs::write(dir.path().join("chat_template.json"), b"{}").unwrap();
        match digest_in_place(&source, |_, _| {}).unwrap_err() {
            ModelError::UnhashedSibling { path } => {
                assert_eq!(path, dir.path().join("chat_template.json"));
            }
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn a_file_added_after_resolving_is_seen_when_hashing_in_place() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("m.gguf"), b"GGUF....").unwrap();
        let source = ModelSource::resolve(dir.path(), None).unwrap();
        std::fs::write(dir.path().join("chat_template.jinja"), b"{{ evil }}").unwrap();
        match digest_in_place(&source, |_, _| {}).unwrap_err() {
            ModelError::ListingChanged { change, .. } => {
                assert_eq!(change, "added: [chat_template.jinja]; removed: []");
            }
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn safetensors_without_a_tokenizer_or_a_non_gguf_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("model.safetensors"), b"x").unwrap();
        std::fs::write(dir.path().join("config.json"), b"{}").unwrap();
        assert!(matches!(
            ModelSource::resolve(dir.path(), None),
            Err(ModelError::UnrecognisedLayout { .. })
        ));
        let file = dir.path().join("fake.gguf");
        std::fs::write(&file, b"GGU").unwrap();
        assert!(matches!(
            ModelSource::resolve(&file, None),
            Err(ModelError::NotGguf(_))
        ));
        assert!(matches!(
            ModelSource::resolve(&dir.path().join("missing"), None),
            Err(ModelError::NotFound(_))
        ));
    }
}
