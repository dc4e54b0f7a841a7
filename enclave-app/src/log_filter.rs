//! The log filter of `cloister enclave`: `RUST_LOG` as usual for our own
//! crates, and a cap no environment can lift for everyone else's.
//!
//! The host sets the environment. mistral.rs, candle, tokenizers and the
//! HTTP stacks (hyper, h2, reqwest, ureq, rustls) log request and response
//! content at debug and trace, so `RUST_LOG=trace` must not reach them: an
//! event from a target outside `cloister*` passes only at INFO or above,
//! whatever `RUST_LOG` says. Our own crates never log prompt or completion
//! text at any level (tested), so they follow `RUST_LOG` fully.

use tracing::{Level, Metadata, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{FilterExt as _, filter_fn};
use tracing_subscriber::layer::Filter;
use tracing_subscriber::registry::LookupSpan;

/// The filter when `RUST_LOG` is unset: our crates at info; mistral.rs at
/// warn, except its loading progress.
pub const DEFAULT_LOG: &str = "info,mistralrs_core=warn,mistralrs_quant=warn,candle_core=warn";

/// The most verbose level any target outside our crates can log at.
pub const THIRD_PARTY_MAX: Level = Level::INFO;

/// Whether `target` is one of this project's crates.
pub fn is_own_target(target: &str) -> bool {
    target == "cloister" || target.starts_with("cloister_") || target.starts_with("cloister::")
}

fn within_cap(meta: &Metadata<'_>) -> bool {
    is_own_target(meta.target()) || *meta.level() <= THIRD_PARTY_MAX
}

/// The filter for `rust_log` (the value of `RUST_LOG`, if set), capped as the
/// module docs say. A `RUST_LOG` that does not parse falls back to
/// [`DEFAULT_LOG`], and the second value says why (print it).
pub fn filter<S>(rust_log: Option<&str>) -> (impl Filter<S> + Send + Sync + 'static, Option<String>)
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let (env, warning) = match rust_log {
        None => (EnvFilter::new(DEFAULT_LOG), None),
        Some(directives) => match EnvFilter::try_new(directives) {
            Ok(env) => (env, None),
            Err(e) => (
                EnvFilter::new(DEFAULT_LOG),
                Some(format!(
                    "RUST_LOG could not be parsed ({e}); logging with the default {DEFAULT_LOG:?}"
                )),
            ),
        },
    };
    (env.and(filter_fn(within_cap)), warning)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::{Layer as _, Registry};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged_with(rust_log: Option<&str>) -> (String, Option<String>) {
        let captured = Captured::default();
        let writer = captured.clone();
        let (filter, warning) = filter::<Registry>(rust_log);
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .with_filter(filter);
        let subscriber = Registry::default().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::trace!(target: "mistralrs_core::engine", "ENGINE-TRACE prompt text");
            tracing::debug!(target: "hyper::proto::h1", "HYPER-DEBUG body bytes");
            tracing::debug!(target: "tokenizers", "TOKENIZER-DEBUG");
            tracing::info!(target: "mistralrs_core::pipeline", "ENGINE-INFO loading");
            tracing::trace!(target: "cloister_enclave::sealed", "OURS-TRACE sizes only");
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        (text, warning)
    }

    #[test]
    fn rust_log_trace_cannot_raise_third_party_crates() {
        for rust_log in [
            "trace",
            "mistralrs_core=trace,hyper=trace,tokenizers=trace",
            "debug",
        ] {
            let (text, warning) = logged_with(Some(rust_log));
            assert!(warning.is_none());
            assert!(!text.contains("ENGINE-TRACE"), "{rust_log}: {text}");
            assert!(!text.contains("HYPER-DEBUG"), "{rust_log}: {text}");
            assert!(!text.contains("TOKENIZER-DEBUG"), "{rust_log}: {text}");
        }
        let (text, _) = logged_with(Some("trace"));
        assert!(text.contains("ENGINE-INFO"), "{text}");
        assert!(text.contains("OURS-TRACE"), "{text}");
    }

    #[test]
    fn the_default_and_a_bad_rust_log() {
        let (text, warning) = logged_with(None);
        assert!(warning.is_none());
        assert!(
            !text.contains("OURS-TRACE") && !text.contains("ENGINE-INFO"),
            "{text}"
        );
        let (_, warning) = logged_with(Some("=[{not a directive"));
        assert!(warning.unwrap().contains("RUST_LOG"));
    }

    #[test]
    fn own_targets() {
        assert!(is_own_target("cloister_enclave::sealed"));
        assert!(is_own_target("cloister"));
        assert!(!is_own_target("cloisterfoo"));
        assert!(!is_own_target("mistralrs_core"));
    }
}
