//! Process hygiene for a process that holds prompts in clear: no core dumps,
//! not dumpable, and panics that never print their message.
//!
//! The one module of this crate allowed `unsafe`: two `prctl`/`setrlimit`
//! calls and their read-backs, each checked.
//!
//! - `RLIMIT_CORE` 0 (soft and hard): no core file, whatever the host's
//!   `core_pattern` says.
//! - `PR_SET_DUMPABLE` 0: no core dump either, `/proc/<pid>/mem` and
//!   friends are unreadable to other same-uid processes, and they cannot
//!   `ptrace` attach.
//! - The panic hook prints only where the panic happened: a panic message
//!   may carry request text (a formatted value, a JSON fragment), and stderr
//!   goes to the host.

use std::io::Write as _;

/// A hardening call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HardeningError {
    /// `setrlimit(RLIMIT_CORE, 0)` failed.
    #[error("turning core dumps off (setrlimit RLIMIT_CORE) failed: {0}")]
    CoreLimit(std::io::Error),
    /// `prctl(PR_SET_DUMPABLE, 0)` failed.
    #[error("making the process non-dumpable (prctl PR_SET_DUMPABLE) failed: {0}")]
    Dumpable(std::io::Error),
}

/// Turns core dumps off and makes the process non-dumpable. Call first
/// thing in `main`, before any request can arrive.
pub fn harden_process() -> Result<(), HardeningError> {
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `setrlimit` reads the struct we pass by reference; it lives
    // for the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &zero) } != 0 {
        return Err(HardeningError::CoreLimit(std::io::Error::last_os_error()));
    }
    // SAFETY: PR_SET_DUMPABLE takes one integer argument; the rest are
    // ignored.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(HardeningError::Dumpable(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Whether the process may be dumped (false after [`harden_process`]).
pub fn is_dumpable() -> bool {
    // SAFETY: PR_GET_DUMPABLE takes no pointer arguments.
    unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) == 1 }
}

/// The core file size limit, `(soft, hard)` ((0, 0) after
/// [`harden_process`]).
pub fn core_limit() -> (u64, u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` writes into the struct we pass; it lives for the
    // call.
    if unsafe { libc::getrlimit(libc::RLIMIT_CORE, &mut limit) } != 0 {
        return (u64::MAX, u64::MAX);
    }
    (limit.rlim_cur, limit.rlim_max)
}

/// Replaces the panic hook with one that prints where the panic happened and
/// never its message.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_else(|| "an unknown location".to_owned());
        let thread = std::thread::current();
        let thread = thread.name().unwrap_or("unnamed");
        let _ = writeln!(
            std::io::stderr(),
            "cloister enclave: internal error (panic) at {location} in thread {thread}; \
             the message is withheld because it may contain request data"
        );
        tracing::error!(%location, thread, "panic (message withheld)");
    }));
}
