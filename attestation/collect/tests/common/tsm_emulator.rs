//! A "kernel" for a temporary directory laid out like configfs-tsm.
//!
//! A thread watches the root for new entry directories. For each it creates
//! the attribute files (`provider`, `generation` = 0, `privlevel`,
//! `privlevel_floor`, `inblob`, `auxblob`, and `outblob` as a FIFO), waits
//! for 64 bytes in `inblob`, bumps `generation` by the number of writes, and
//! writes a report for that data into the FIFO, so the collector's read
//! blocks until the "report" is ready, as with the real kernel.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(2);
const GIVE_UP: Duration = Duration::from_secs(20);

pub type MakeReport = dyn Fn(&[u8; 64]) -> Vec<u8> + Send + Sync;

/// How the emulated kernel behaves.
#[derive(Clone)]
pub struct Config {
    pub provider: String,
    pub make_report: Arc<MakeReport>,
    /// Contents of `auxblob`; `None`: no auxblob file (as for TDX).
    pub auxblob: Option<Vec<u8>>,
    pub privlevel_floor: u32,
    /// Extra generation bumps, as if another process wrote to the entry.
    pub concurrent_writes: u64,
    /// Delay before the attribute files appear.
    pub populate_delay: Duration,
}

impl Config {
    pub fn new(
        provider: &str,
        make_report: impl Fn(&[u8; 64]) -> Vec<u8> + Send + Sync + 'static,
    ) -> Self {
        Self {
            provider: provider.to_owned(),
            make_report: Arc::new(make_report),
            auxblob: None,
            privlevel_floor: 0,
            concurrent_writes: 0,
            populate_delay: Duration::from_millis(5),
        }
    }
}

/// What one entry received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub entry: String,
    pub inblob: Vec<u8>,
    pub privlevel: Option<String>,
}

pub struct Emulator {
    root: tempfile::TempDir,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Seen>>>,
    watcher: Option<JoinHandle<()>>,
}

impl Emulator {
    pub fn start(config: Config) -> Self {
        let root = tempfile::tempdir().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let watcher = {
            let (dir, stop, seen) = (root.path().to_path_buf(), stop.clone(), seen.clone());
            std::thread::spawn(move || watch(&dir, &config, &stop, &seen))
        };
        Self {
            root,
            stop,
            seen,
            watcher: Some(watcher),
        }
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// Entries that received report data.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Entry directories still present.
    pub fn entries(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.root())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(watcher) = self.watcher.take() {
            let _ = watcher.join();
        }
    }
}

fn watch(root: &Path, config: &Config, stop: &AtomicBool, seen: &Mutex<Vec<Seen>>) {
    let mut known = HashSet::new();
    std::thread::scope(|s| {
        while !stop.load(Ordering::SeqCst) {
            for entry in std::fs::read_dir(root).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() && known.insert(path.clone()) {
                    s.spawn(move || serve_entry(&path, config, stop, seen));
                }
            }
            std::thread::sleep(POLL);
        }
    });
}

/// Writes a file atomically (temporary name outside the entry, then rename),
/// so the collector never sees it half-written.
fn put(dir: &Path, name: &str, contents: &[u8]) {
    let tmp = dir.parent().unwrap().join(format!(
        ".{}-{name}.tmp",
        dir.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

fn serve_entry(dir: &Path, config: &Config, stop: &AtomicBool, seen: &Mutex<Vec<Seen>>) {
    std::thread::sleep(config.populate_delay);
    let status = Command::new("mkfifo")
        .arg(dir.join("outblob"))
        .status()
        .unwrap();
    assert!(status.success(), "mkfifo failed");
    put(dir, "inblob", b"");
    put(dir, "privlevel", b"");
    put(
        dir,
        "privlevel_floor",
        format!("{}\n", config.privlevel_floor).as_bytes(),
    );
    if let Some(aux) = &config.auxblob {
        put(dir, "auxblob", aux);
    }
    put(dir, "generation", b"0\n");
    put(dir, "provider", format!("{}\n", config.provider).as_bytes());

    // Wait for the report data.
    let deadline = Instant::now() + GIVE_UP;
    let inblob = loop {
        if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
            return;
        }
        match std::fs::read(dir.join("inblob")) {
            Ok(data) if data.len() >= 64 => break data,
            _ => std::thread::sleep(POLL),
        }
    };
    let privlevel = std::fs::read_to_string(dir.join("privlevel"))
        .ok()
        .filter(|p| !p.is_empty());
    seen.lock().unwrap().push(Seen {
        entry: dir.file_name().unwrap().to_string_lossy().into_owned(),
        inblob: inblob.clone(),
        privlevel: privlevel.clone(),
    });
    let writes = 1 + u64::from(privlevel.is_some()) + config.concurrent_writes;
    put(dir, "generation", format!("{writes}\n").as_bytes());

    let report_data: [u8; 64] = inblob[..64].try_into().unwrap();
    let report = (config.make_report)(&report_data);
    // Open the FIFO without blocking (ENXIO until the collector opens it
    // for reading), then write the report and close: the reader sees EOF.
    let mut fifo = loop {
        if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
            return;
        }
        match OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(dir.join("outblob"))
        {
            Ok(file) => break file,
            Err(_) => std::thread::sleep(POLL),
        }
    };
    // Reports are far smaller than a pipe buffer (64 KiB).
    assert!(report.len() < 60_000);
    // A collector that gave up closed its end: nothing to do then.
    let _ = fifo.write_all(&report);
}
