//! Finding, hashing and loading the model.
//!
//! A model is a `.gguf` file (or a directory holding exactly one), or a
//! directory with `config.json`, `tokenizer.json` and `*.safetensors`. Its
//! identity is its id and the SHA-256 of its files, which auditors reproduce
//! with coreutils (see [`weights_digest`]).

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest, Sha256};

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

/// Why the model cannot be used. Checked before anything is loaded, so a
/// bad path fails at start with this message and nothing else.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// The path does not exist.
    #[error("model path {0} does not exist")]
    NotFound(PathBuf),
    /// A directory that holds no recognisable model.
    #[error(
        "{path} holds no model: expected a .gguf file, or config.json + tokenizer.json + *.safetensors ({found})"
    )]
    UnrecognisedLayout {
        /// The directory.
        path: PathBuf,
        /// What was found there.
        found: String,
    },
    /// Several GGUF files where one was expected.
    #[error("{path} holds several .gguf files ({files}); pass the one to serve")]
    AmbiguousGguf {
        /// The directory.
        path: PathBuf,
        /// The files.
        files: String,
    },
    /// A file that claims to be GGUF but is not.
    #[error("{0} is not a GGUF file (no GGUF magic at its start)")]
    NotGguf(PathBuf),
    /// A file that cannot be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// mistral.rs refused the files (corrupt, truncated, unsupported architecture).
    #[error("mistral.rs could not load the model from {path}: {message}")]
    Load {
        /// The model path.
        path: PathBuf,
        /// mistral.rs's message.
        message: String,
    },
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
}

const TOKENIZER_AND_CONFIG: [&str; 4] = [
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "generation_config.json",
];

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ModelError + '_ {
    move |source| ModelError::Io {
        path: path.to_owned(),
        source,
    }
}

fn names_with(dir: &Path, extension: &str) -> Result<Vec<String>, ModelError> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(extension) && entry.path().is_file() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

impl ModelSource {
    /// Finds the model at `path`. `id` defaults to the file stem or
    /// directory name.
    pub fn resolve(path: &Path, id: Option<String>) -> Result<Self, ModelError> {
        if !path.exists() {
            return Err(ModelError::NotFound(path.to_owned()));
        }
        let default_id = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".to_owned());
        let id = id.unwrap_or(default_id);
        if path.is_file() {
            return Self::gguf(path, id);
        }
        let ggufs = names_with(path, ".gguf")?;
        let safetensors = names_with(path, ".safetensors")?;
        match (ggufs.as_slice(), safetensors.is_empty()) {
            ([one], true) => Self::gguf(&path.join(one), id),
            ([], false) => {
                let mut files: Vec<PathBuf> = safetensors.iter().map(|n| path.join(n)).collect();
                for name in TOKENIZER_AND_CONFIG {
                    let file = path.join(name);
                    if file.is_file() {
                        files.push(file);
                    } else if matches!(name, "config.json" | "tokenizer.json") {
                        return Err(ModelError::UnrecognisedLayout {
                            path: path.to_owned(),
                            found: format!("{} safetensors files but no {name}", safetensors.len()),
                        });
                    }
                }
                files.sort();
                Ok(Self {
                    id,
                    format: ModelFormat::Safetensors {
                        dir: path.to_owned(),
                    },
                    files,
                })
            }
            ([], true) => Err(ModelError::UnrecognisedLayout {
                path: path.to_owned(),
                found: "no .gguf or .safetensors files".into(),
            }),
            (many, _) => Err(ModelError::AmbiguousGguf {
                path: path.to_owned(),
                files: many.join(", "),
            }),
        }
    }

    fn gguf(file: &Path, id: String) -> Result<Self, ModelError> {
        let mut magic = [0u8; 4];
        File::open(file)
            .and_then(|mut f| f.read_exact(&mut magic))
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => ModelError::NotGguf(file.to_owned()),
                _ => ModelError::Io {
                    path: file.to_owned(),
                    source: e,
                },
            })?;
        if &magic != b"GGUF" {
            return Err(ModelError::NotGguf(file.to_owned()));
        }
        let dir = file
            .parent()
            .map(Path::to_owned)
            .unwrap_or_else(|| PathBuf::from("."));
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| ModelError::NotGguf(file.to_owned()))?;
        Ok(Self {
            id,
            format: ModelFormat::Gguf { dir, file: name },
            files: vec![file.to_owned()],
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

/// The digest of a model's files, as auditors reproduce it:
///
/// ```sh
/// cd <model dir> && sha256sum <files, sorted by name> | sha256sum
/// ```
///
/// i.e. SHA-256 over the lines `<hex sha256>  <file name>\n` in file-name
/// order. `progress(done_bytes, total_bytes)` is called as hashing proceeds.
pub fn weights_digest(
    files: &[PathBuf],
    mut progress: impl FnMut(u64, u64),
) -> Result<String, ModelError> {
    let total: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let mut done = 0u64;
    let mut manifest = String::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut sorted: Vec<&PathBuf> = files.iter().collect();
    sorted.sort_by_key(|f| f.file_name().map(|n| n.to_owned()));
    for file in sorted {
        let mut f = File::open(file).map_err(io(file))?;
        let mut hasher = Sha256::new();
        loop {
            let n = f.read(&mut buf).map_err(io(file))?;
            if n == 0 {
                break;
            }
            hasher.update(buf.get(..n).unwrap_or_default());
            done += n as u64;
            progress(done, total);
        }
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        manifest.push_str(&format!("{}  {name}\n", hex::encode(hasher.finalize())));
    }
    Ok(hex::encode(Sha256::digest(manifest.as_bytes())))
}

/// Hashes the model's files, logging progress every few seconds.
pub fn digest_with_progress(source: &ModelSource) -> Result<String, ModelError> {
    let started = Instant::now();
    let mut last_log = Instant::now();
    let size = source.size();
    tracing::info!(model = %source.id, files = source.files.len(), bytes = size, "hashing model files");
    let digest = weights_digest(&source.files, |done, total| {
        if last_log.elapsed().as_secs() >= 3 {
            last_log = Instant::now();
            let percent = done.saturating_mul(100) / total.max(1);
            tracing::info!(percent, done_bytes = done, "hashing model files");
        }
    })?;
    tracing::info!(
        weights_sha256 = %digest,
        seconds = started.elapsed().as_secs_f32(),
        "model files hashed"
    );
    Ok(digest)
}
