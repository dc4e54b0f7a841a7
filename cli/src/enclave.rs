//! `cloister enclave`: process hardening, logging, the async runtime and
//! signals around [`cloister_enclave::run`].

use std::process::ExitCode;

use cloister_enclave::{EnclaveArgs, hardening, log_filter};
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

pub(crate) fn run(args: EnclaveArgs) -> ExitCode {
    // Before anything can hold a prompt: panics print no message, no core
    // dumps, not dumpable.
    hardening::install_panic_hook();
    if let Err(e) = hardening::harden_process() {
        eprintln!("error: {e}; refusing to start a node whose memory could be dumped");
        return ExitCode::FAILURE;
    }
    let rust_log = std::env::var("RUST_LOG").ok();
    let (filter, warning) = log_filter::filter(rust_log.as_deref());
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(filter);
    tracing_subscriber::registry().with(layer).init();
    if let Some(warning) = warning {
        tracing::warn!("{warning}");
    }
    tracing::info!(
        dumpable = hardening::is_dumpable(),
        core_limit = ?hardening::core_limit(),
        "core dumps off, process not dumpable, panic messages withheld; \
         third-party logs capped at {} whatever RUST_LOG says",
        log_filter::THIRD_PARTY_MAX
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cloister_enclave::run(args, shutdown_signal())) {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Completes on SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
