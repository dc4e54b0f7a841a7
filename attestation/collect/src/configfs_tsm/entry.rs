//! One report entry under the configfs-tsm root: created with a unique name,
//! removed when dropped, with bounded readers and writers for its attributes.

use std::io::{ErrorKind, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::error::TsmError;

/// Linux `ENXIO`: configfs-tsm returns it from mkdir when no provider is
/// registered.
const ENXIO: i32 = 6;
/// How often to look for attribute files while waiting for them.
const POLL: Duration = Duration::from_millis(2);

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A report entry directory; removed (rmdir) on drop.
#[derive(Debug)]
pub(super) struct Entry {
    dir: PathBuf,
}

impl Entry {
    /// Creates a uniquely named entry under `root`.
    pub(super) fn create(root: &Path) -> Result<Self, TsmError> {
        match std::fs::metadata(root) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(TsmError::NotAvailable {
                    root: root.to_path_buf(),
                });
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(TsmError::NotAvailable {
                    root: root.to_path_buf(),
                });
            }
            Err(e) => return Err(io_error("stat", root, e)),
        }
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        // A few attempts in case a stale entry from a crashed process (same
        // pid after reboot) holds the name.
        let mut last = None;
        for _ in 0..4 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let dir = root.join(format!("cloister-{}-{n}-{nanos:08x}", std::process::id()));
            match std::fs::create_dir(&dir) {
                Ok(()) => {
                    tracing::debug!(entry = %dir.display(), "created configfs-tsm entry");
                    return Ok(Self { dir });
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(mkdir_error(root, &dir, e)),
            }
        }
        Err(io_error(
            "mkdir",
            root,
            last.unwrap_or_else(|| ErrorKind::AlreadyExists.into()),
        ))
    }

    /// The path of an attribute.
    pub(super) fn attr(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Waits until every attribute in `names` exists.
    ///
    /// configfs creates an item's attribute files together with its
    /// directory, so on a real kernel the first check succeeds and this
    /// costs nothing. Layouts where a userspace agent populates the entry
    /// after mkdir (test emulators, FUSE shims) need a moment, so we poll
    /// for up to `wait` instead of failing at once.
    pub(super) fn wait_for(&self, names: &[&str], wait: Duration) -> Result<(), TsmError> {
        let start = Instant::now();
        for name in names {
            let path = self.attr(name);
            loop {
                match std::fs::symlink_metadata(&path) {
                    Ok(_) => break,
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(io_error("stat", &path, e)),
                }
                if start.elapsed() >= wait {
                    return Err(TsmError::MissingAttribute { path, waited: wait });
                }
                std::thread::sleep(POLL);
            }
        }
        Ok(())
    }

    /// Whether an attribute exists (optional attributes such as `auxblob`).
    pub(super) fn has(&self, name: &str) -> bool {
        self.attr(name).exists()
    }

    /// Reads an attribute, refusing more than `limit` bytes.
    pub(super) fn read(&self, name: &str, limit: usize) -> Result<Vec<u8>, TsmError> {
        let path = self.attr(name);
        read_limited(&path, limit).map_err(|e| match e {
            ReadError::Io(e) => io_error("read", &path, e),
            ReadError::TooLarge => TsmError::TooLarge { path, limit },
        })
    }

    /// Reads a decimal attribute such as `generation`.
    pub(super) fn read_u64(&self, name: &str) -> Result<u64, TsmError> {
        let text = self.read_text(name)?;
        text.parse().map_err(|_| TsmError::Malformed {
            path: self.attr(name),
            reason: format!("{text:?} is not a decimal number"),
        })
    }

    /// Reads a short text attribute, trimmed.
    pub(super) fn read_text(&self, name: &str) -> Result<String, TsmError> {
        let bytes = self.read(name, 4096)?;
        let text = String::from_utf8(bytes).map_err(|_| TsmError::Malformed {
            path: self.attr(name),
            reason: "not UTF-8 text".into(),
        })?;
        Ok(text
            .trim_matches(|c: char| c.is_ascii_whitespace() || c == '\0')
            .to_owned())
    }

    /// Writes an attribute with a single write on an existing file (configfs
    /// attributes cannot be created or truncated by userspace).
    pub(super) fn write(&self, name: &str, data: &[u8]) -> Result<(), TsmError> {
        let path = self.attr(name);
        let result = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut file| {
                file.write_all(data)?;
                // configfs binary attributes are committed when the file is
                // closed; flush explicitly so errors surface here.
                file.flush()
            });
        result.map_err(|e| match e.kind() {
            ErrorKind::PermissionDenied => TsmError::PermissionDenied { path },
            _ => io_error("write", &path, e),
        })
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir(&self.dir) {
            tracing::warn!(
                entry = %self.dir.display(),
                error = %e,
                "could not remove configfs-tsm entry; it stays until removed by hand"
            );
        } else {
            tracing::debug!(entry = %self.dir.display(), "removed configfs-tsm entry");
        }
    }
}

pub(super) enum ReadError {
    Io(std::io::Error),
    TooLarge,
}

/// Reads a whole file (blocking until a FIFO's writer closes), refusing
/// more than `limit` bytes.
pub(super) fn read_limited(path: &Path, limit: usize) -> Result<Vec<u8>, ReadError> {
    let file = std::fs::File::open(path).map_err(ReadError::Io)?;
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    file.take(cap)
        .read_to_end(&mut out)
        .map_err(ReadError::Io)?;
    if out.len() > limit {
        return Err(ReadError::TooLarge);
    }
    Ok(out)
}

pub(super) fn io_error(op: &'static str, path: &Path, source: std::io::Error) -> TsmError {
    if source.kind() == ErrorKind::PermissionDenied {
        return TsmError::PermissionDenied {
            path: path.to_path_buf(),
        };
    }
    TsmError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn mkdir_error(root: &Path, dir: &Path, e: std::io::Error) -> TsmError {
    match e.kind() {
        ErrorKind::NotFound => TsmError::NotAvailable {
            root: root.to_path_buf(),
        },
        _ if e.raw_os_error() == Some(ENXIO) => TsmError::NoProvider {
            root: root.to_path_buf(),
        },
        _ => io_error("mkdir", dir, e),
    }
}
