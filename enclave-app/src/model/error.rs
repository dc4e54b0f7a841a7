//! Why a model cannot be used.

use std::fmt;
use std::path::{Path, PathBuf};

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
    /// A file that cannot be read or written.
    #[error("cannot read or write {path}: {source}")]
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
    /// Something in the model directory (or the model path itself) that the
    /// digest cannot cover. mistral.rs could read it, so an unhashed entry
    /// would let whoever controls the disk change the model's behaviour
    /// without changing its attested identity.
    #[error(
        "{path} is {kind}: the model's attested digest cannot cover it, so the enclave refuses to \
         start (remove it, or point --model at a directory holding only the model's files)"
    )]
    UnaccountedEntry {
        /// The entry.
        path: PathBuf,
        /// What it is.
        kind: UnaccountedKind,
    },
    /// A GGUF file loaded in place (without staging) beside a file that
    /// mistral.rs reads from the same directory but the digest does not
    /// cover (the digest of a GGUF given as a file covers that file only).
    #[error(
        "{path} lies beside the GGUF file and mistral.rs would read it, but the model digest does \
         not cover it: remove it, pass the directory instead of the file, or load with staging"
    )]
    UnhashedSibling {
        /// The file mistral.rs would read.
        path: PathBuf,
    },
    /// The model directory gained or lost files after the model was found
    /// (someone with access to the disk is changing it).
    #[error(
        "the files in {dir} changed after the model was found ({change}); refusing to serve a \
         model whose digest does not cover what would be loaded"
    )]
    ListingChanged {
        /// The model directory.
        dir: PathBuf,
        /// The names added and removed.
        change: String,
    },
    /// A model file changed size while it was being copied or hashed
    /// (someone with access to the disk is writing to it).
    #[error(
        "{path} changed size while being read ({size_when_opened} bytes when opened, \
         {bytes_read} bytes read when the change showed): the model files are being modified \
         underneath the enclave"
    )]
    ChangedWhileReading {
        /// The file.
        path: PathBuf,
        /// Its size when it was opened.
        size_when_opened: u64,
        /// How many bytes had been read when the change was seen.
        bytes_read: u64,
    },
    /// The staging filesystem has too little free space for the copy.
    #[error(
        "not enough room to stage the model under {root}: {needed} bytes needed, {available} \
         available (give --model-staging a larger memory filesystem, or use --no-model-staging)"
    )]
    NoRoomToStage {
        /// The staging root.
        root: PathBuf,
        /// Bytes the copy needs, rounded up to whole filesystem blocks.
        needed: u64,
        /// Bytes free for an unprivileged process there.
        available: u64,
    },
}

/// What an entry the model digest cannot cover is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnaccountedKind {
    /// A subdirectory.
    Directory,
    /// A symbolic link to a directory.
    SymlinkToDirectory,
    /// A symbolic link whose target does not exist.
    DanglingSymlink,
    /// A named pipe.
    Fifo,
    /// A Unix socket.
    Socket,
    /// A block device.
    BlockDevice,
    /// A character device.
    CharacterDevice,
    /// Some other kind of file that is not a regular file.
    NotRegularFile,
    /// A name that is not UTF-8.
    NonUtf8Name,
    /// A name holding a newline, carriage return or backslash, which
    /// `sha256sum` escapes and which would make the manifest ambiguous.
    NameBreaksManifest,
}

impl fmt::Display for UnaccountedKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Directory => "a subdirectory",
            Self::SymlinkToDirectory => "a symbolic link to a directory",
            Self::DanglingSymlink => "a dangling symbolic link",
            Self::Fifo => "a named pipe (FIFO)",
            Self::Socket => "a socket",
            Self::BlockDevice => "a block device",
            Self::CharacterDevice => "a character device",
            Self::NotRegularFile => "not a regular file",
            Self::NonUtf8Name => "a file whose name is not UTF-8",
            Self::NameBreaksManifest => {
                "a file whose name holds a newline, carriage return or backslash \
                 (which sha256sum escapes)"
            }
        })
    }
}

/// Maps an I/O error on `path` to [`ModelError::Io`].
pub(super) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ModelError + '_ {
    move |source| ModelError::Io {
        path: path.to_owned(),
        source,
    }
}
