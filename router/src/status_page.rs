//! The status page at `/`: server-rendered HTML, no script, no build step.
//! Nodes (platform, TCB status, measurements, model, last verification,
//! state, breaker, health) and recent receipts (no accounts, no payers, no
//! text: only what the public attestation log and receipts already say).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use crate::ledger::ReceiptRow;
use crate::nodes::{Attested, Node, NodeStatus};

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn ago(now: i64, at: i64) -> String {
    let secs = now.saturating_sub(at).max(0);
    match secs {
        0..=119 => format!("{secs} s ago"),
        120..=7199 => format!("{} min ago", secs / 60),
        _ => format!("{} h ago", secs / 3600),
    }
}

fn measurements(a: &Attested) -> String {
    let mut out = String::new();
    for (name, value) in &a.measurements {
        let short = value.get(..16).unwrap_or(value);
        let _ = write!(
            out,
            "<div><span class=k>{}</span> <code title=\"{}\">{}…</code></div>",
            escape(name),
            escape(value),
            escape(short)
        );
    }
    if out.is_empty() {
        out.push('—');
    }
    out
}

fn node_row(out: &mut String, node: &Arc<Node>, now: i64) {
    let status = node.status();
    let health = node.health();
    let breaker = health.breaker(Instant::now()).as_str();
    let (attested, detail, verified) = match &status {
        NodeStatus::Serving(a) => (Some(a.clone()), String::new(), Some(a.verified_at)),
        NodeStatus::Refused {
            at,
            reasons,
            attested,
        } => (attested.clone(), reasons.join("; "), Some(*at)),
        NodeStatus::Unreachable { at, error } => (None, error.clone(), Some(*at)),
        NodeStatus::Pending => (None, "waiting for the first challenge".into(), None),
    };
    let cell = |a: &Option<Arc<Attested>>, f: &dyn Fn(&Attested) -> String| {
        a.as_deref().map_or_else(|| "—".to_owned(), f)
    };
    let _ = write!(
        out,
        "<tr class=\"node {state}\" data-node=\"{id}\"><td><code>{id}</code><div class=k>{url}</div></td>\
         <td><span class=\"state {state}\">{state}</span>{detail}</td>\
         <td>{model}</td><td>{platform}</td><td>{tcb}</td><td>{meas}</td>\
         <td>{verified}</td><td>{outstanding}</td><td>{breaker}</td><td>{score:.2}</td><td>{price}</td></tr>",
        id = escape(&node.id),
        url = escape(&node.url),
        state = status.name(),
        detail = if detail.is_empty() {
            String::new()
        } else {
            format!("<div class=reason>{}</div>", escape(&detail))
        },
        model = cell(&attested, &|a| escape(&a.model)),
        platform = cell(&attested, &|a| escape(&a.platform)),
        tcb = cell(&attested, &|a| escape(
            a.tcb_status.as_deref().unwrap_or("—")
        )),
        meas = cell(&attested, &measurements),
        verified = verified.map_or_else(|| "never".to_owned(), |at| ago(now, at)),
        outstanding = node.outstanding(),
        score = health.score(),
        price = cell(&attested, &|a| format!(
            "{} / {}",
            a.prompt_price, a.completion_price
        )),
    );
}

/// The whole page.
pub fn render(nodes: &[Arc<Node>], receipts: &[ReceiptRow], now: i64) -> String {
    let mut out = String::from(
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
         <meta name=viewport content=\"width=device-width,initial-scale=1\">\
         <title>Cloister router</title><style>\
         body{font:14px/1.4 system-ui,sans-serif;margin:2rem;color:#1b1b1b}\
         table{border-collapse:collapse;width:100%;margin-bottom:2rem}\
         th,td{border-bottom:1px solid #ddd;padding:.4rem .5rem;text-align:left;vertical-align:top}\
         th{background:#f4f4f4}.k{color:#666;font-size:12px}.reason{color:#a40000;font-size:12px}\
         .state{font-weight:600}.serving{color:#0a6b2b}.refused,.unreachable{color:#a40000}.pending{color:#8a6d00}\
         code{font-size:12px}</style></head><body><h1>Cloister router</h1>\
         <p>Nodes get traffic only while their latest attestation passes this router's policy. \
         The full history is at <a href=\"/v1/attestation/log\">/v1/attestation/log</a>; \
         current bundles at <a href=\"/v1/attestation\">/v1/attestation</a>.</p>",
    );
    let serving = nodes.iter().filter(|n| n.serving().is_some()).count();
    let _ = write!(
        out,
        "<h2>Nodes <span class=k>({serving} serving of {})</span></h2>\
         <table id=nodes><tr><th>node</th><th>state</th><th>model</th><th>platform</th><th>TCB</th>\
         <th>measurements</th><th>last verification</th><th>in flight</th><th>breaker</th><th>health</th>\
         <th>price (prompt / completion per token)</th></tr>",
        nodes.len()
    );
    if nodes.is_empty() {
        out.push_str("<tr><td colspan=11>No nodes yet: add them in the config or let providers join.</td></tr>");
    }
    for node in nodes {
        node_row(&mut out, node, now);
    }
    out.push_str(
        "</table><h2>Recent receipts</h2><table id=receipts><tr><th>when</th><th>node</th><th>model</th>\
         <th>prompt tokens</th><th>completion tokens</th><th>charge</th><th>receipt</th></tr>",
    );
    if receipts.is_empty() {
        out.push_str("<tr><td colspan=7>No receipts yet.</td></tr>");
    }
    for r in receipts {
        let _ = write!(
            out,
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}…</code></td></tr>",
            ago(now, r.received_at),
            escape(&r.node_id),
            escape(&r.model),
            r.prompt_tokens,
            r.completion_tokens,
            r.charge,
            escape(r.digest.to_string().get(..18).unwrap_or_default()),
        );
    }
    out.push_str("</table></body></html>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<b a=\"x\">&'"),
            "&lt;b a=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
