//! Prometheus metrics (`GET /metrics`, text format). Labels carry routes,
//! status codes, reason codes, node states and models: never keys, payers
//! or request content.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;
type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 5 ms .. ~82 s
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

/// The router's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    latency: HistogramFamily,
    ttft: HistogramFamily,
    tokens: Family<Labels, Counter>,
    attestations: Family<Labels, Counter>,
    nodes: Family<Labels, Gauge>,
    receipts: Family<Labels, Counter>,
    retries: Counter,
    settlement_rounds: Family<Labels, Counter>,
    settlement_batches: Family<Labels, Counter>,
    unbatched: Gauge,
    settled_at: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("cloister_router");
        let requests = Family::<Labels, Counter>::default();
        registry.register(
            "requests",
            "API requests by route and HTTP status",
            requests.clone(),
        );
        let latency = HistogramFamily::new_with_constructor(latency_histogram);
        registry.register(
            "request_duration_seconds",
            "Time from request to the end of the answer, by route",
            latency.clone(),
        );
        let ttft = HistogramFamily::new_with_constructor(latency_histogram);
        registry.register(
            "time_to_first_token_seconds",
            "Time from request to the first answer byte, by route",
            ttft.clone(),
        );
        let tokens = Family::<Labels, Counter>::default();
        registry.register(
            "tokens",
            "Tokens served, from verified receipts, by kind and model",
            tokens.clone(),
        );
        let attestations = Family::<Labels, Counter>::default();
        registry.register(
            "attestations",
            "Node attestations by result and reason code",
            attestations.clone(),
        );
        let nodes = Family::<Labels, Gauge>::default();
        registry.register("nodes", "Nodes by state", nodes.clone());
        let receipts = Family::<Labels, Counter>::default();
        registry.register(
            "receipts",
            "Receipts by outcome (charged, duplicate, refused)",
            receipts.clone(),
        );
        let retries = Counter::default();
        registry.register(
            "retries",
            "Requests re-sealed to another node after a failure before the first byte",
            retries.clone(),
        );
        let settlement_rounds = Family::<Labels, Counter>::default();
        registry.register(
            "settlement_rounds",
            "Settlement rounds by result (ok, retryable, failed, not_leader)",
            settlement_rounds.clone(),
        );
        let settlement_batches = Family::<Labels, Counter>::default();
        registry.register(
            "settlement_batches",
            "Settlement batches by event (written, confirmed, abandoned, finalized)",
            settlement_batches.clone(),
        );
        let unbatched = Gauge::default();
        registry.register(
            "settlement_unbatched_receipts",
            "Receipts in no settlement batch yet (settlement lag, in receipts)",
            unbatched.clone(),
        );
        let settled_at = Gauge::default();
        registry.register(
            "settlement_last_round_ok_timestamp_seconds",
            "Unix time of the last settlement round that completed (settlement lag: now minus this)",
            settled_at.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            ttft,
            tokens,
            attestations,
            nodes,
            receipts,
            retries,
            settlement_rounds,
            settlement_batches,
            unbatched,
            settled_at,
        }
    }

    /// One settlement round: its result, the batch events it caused, the
    /// receipts still in no batch, and the time when it completed.
    pub fn settlement_round(
        &self,
        result: &'static str,
        batches: &[(&'static str, usize)],
        unbatched: Option<i64>,
        completed_at: Option<i64>,
    ) {
        self.settlement_rounds
            .get_or_create(&vec![("result", result.to_owned())])
            .inc();
        for (event, count) in batches {
            self.settlement_batches
                .get_or_create(&vec![("event", (*event).to_owned())])
                .inc_by(u64::try_from(*count).unwrap_or(0));
        }
        if let Some(n) = unbatched {
            self.unbatched.set(n);
        }
        if let Some(t) = completed_at {
            self.settled_at.set(t);
        }
    }

    /// A finished API request.
    pub fn request(&self, route: &'static str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&vec![
                ("route", route.to_owned()),
                ("status", status.to_string()),
            ])
            .inc();
        self.latency
            .get_or_create(&vec![("route", route.to_owned())])
            .observe(seconds);
    }

    /// Time to the first answer byte.
    pub fn first_token(&self, route: &'static str, seconds: f64) {
        self.ttft
            .get_or_create(&vec![("route", route.to_owned())])
            .observe(seconds);
    }

    /// Tokens from a verified receipt.
    pub fn tokens(&self, model: &str, prompt: u64, completion: u64) {
        self.tokens
            .get_or_create(&vec![
                ("kind", "prompt".into()),
                ("model", model.to_owned()),
            ])
            .inc_by(prompt);
        self.tokens
            .get_or_create(&vec![
                ("kind", "completion".into()),
                ("model", model.to_owned()),
            ])
            .inc_by(completion);
    }

    /// An attestation result; `reason` is a reason code ("" when passed).
    pub fn attestation(&self, passed: bool, reason: &str) {
        let result = if passed { "pass" } else { "fail" };
        self.attestations
            .get_or_create(&vec![
                ("result", result.into()),
                ("reason", reason.to_owned()),
            ])
            .inc();
    }

    /// A receipt outcome.
    pub fn receipt(&self, outcome: &'static str) {
        self.receipts
            .get_or_create(&vec![("outcome", outcome.to_owned())])
            .inc();
    }

    /// A retry on another node.
    pub fn retry(&self) {
        self.retries.inc();
    }

    /// Sets the node gauges (called before each scrape).
    pub fn set_nodes(&self, counts: &[(&'static str, i64)]) {
        for (state, count) in counts {
            self.nodes
                .get_or_create(&vec![("state", (*state).to_owned())])
                .set(*count);
        }
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::new();
        m.request("chat", 200, 0.25);
        m.attestation(false, "measurement_not_allowed");
        m.set_nodes(&[("serving", 1), ("refused", 1)]);
        let text = m.render();
        assert!(
            text.contains("cloister_router_requests_total{route=\"chat\",status=\"200\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("reason=\"measurement_not_allowed\""),
            "{text}"
        );
        assert!(
            text.contains("cloister_router_nodes{state=\"refused\"} 1"),
            "{text}"
        );
        assert!(text.contains("# EOF"));
    }
}
