//! What can go wrong, whose fault it is, and whether trying again can help.

use cloister_protocol::ResponseError;

/// Who caused an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// The caller: bad input, bad key, no balance, unknown model.
    Caller,
    /// The router or the network between.
    Router,
    /// A node: refused evidence, a broken or tampered answer.
    Node,
    /// This client's configuration.
    Config,
}

/// Why a node is not trusted, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRefusal {
    /// The node's id at the router.
    pub node: String,
    /// The model it says it serves, if known.
    pub model: Option<String>,
    /// Every reason (reason codes first, as `cloister verify` prints them).
    pub reasons: Vec<String>,
}

impl std::fmt::Display for NodeRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "node {}: {}", self.node, self.reasons.join("; "))
    }
}

/// A client error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The router could not be reached, or the connection broke.
    #[error("router unreachable: {detail}")]
    Transport {
        /// What happened.
        detail: String,
    },
    /// The router answered with its own error (OpenAI error JSON in `body`).
    #[error("the router answered HTTP {status}: {message}")]
    Router {
        /// HTTP status.
        status: u16,
        /// The error's message.
        message: String,
        /// The body as received (OpenAI error JSON when the router sent one).
        body: Vec<u8>,
        /// `Retry-After` seconds, if given.
        retry_after: Option<u64>,
    },
    /// The node refused the request inside the sealed channel (its error
    /// JSON, opened: the request is at fault, another node would agree).
    #[error("node {node} refused the request (HTTP {status})")]
    NodeRefused {
        /// The node.
        node: String,
        /// HTTP status.
        status: u16,
        /// The node's OpenAI error JSON, opened.
        body: Vec<u8>,
    },
    /// The answer did not verify: altered, truncated, reordered, replayed,
    /// or its receipt is wrong. Text already returned is authentic but the
    /// answer is not complete.
    #[error("the answer from node {node} did not verify: {source}")]
    Tampered {
        /// The node.
        node: String,
        /// What the check found.
        #[source]
        source: ResponseError,
    },
    /// The answer stopped: the stream ended, broke or went silent.
    #[error("the answer from node {node} broke off: {detail}")]
    Broken {
        /// The node.
        node: String,
        /// What happened.
        detail: String,
    },
    /// No node passes the caller's policy (for this model).
    #[error("{}", no_trusted_node(.model.as_deref(), .refusals))]
    NoTrustedNode {
        /// The model asked for, if any.
        model: Option<String>,
        /// Why each node was refused.
        refusals: Vec<NodeRefusal>,
    },
    /// No trusted node serves the model.
    #[error("no trusted node serves model {model:?} (trusted nodes serve: {})", .available.join(", "))]
    UnknownModel {
        /// The model asked for.
        model: String,
        /// Models trusted nodes serve.
        available: Vec<String>,
    },
    /// Every attempt failed before the first byte.
    #[error("every node failed before answering; last: {last}")]
    Exhausted {
        /// The last failure.
        last: Box<ClientError>,
    },
    /// The client is misconfigured, or a request could not be sealed.
    #[error("{0}")]
    Config(String),
}

fn no_trusted_node(model: Option<&str>, refusals: &[NodeRefusal]) -> String {
    let what = match model {
        Some(m) => format!("no node serving {m:?} passes your policy"),
        None => "no node passes your policy".to_owned(),
    };
    if refusals.is_empty() {
        return format!("{what}: the router lists no nodes");
    }
    let reasons: Vec<String> = refusals.iter().map(ToString::to_string).collect();
    format!("{what}: {}", reasons.join(" | "))
}

impl ClientError {
    /// Whose fault it is.
    pub fn fault(&self) -> Fault {
        match self {
            Self::Transport { .. } => Fault::Router,
            Self::Router { status, .. } if *status < 500 && *status != 429 => Fault::Caller,
            Self::Router { .. } => Fault::Router,
            Self::NodeRefused { .. } | Self::UnknownModel { .. } => Fault::Caller,
            Self::Tampered { .. } | Self::Broken { .. } | Self::NoTrustedNode { .. } => Fault::Node,
            Self::Exhausted { last } => last.fault(),
            Self::Config(_) => Fault::Config,
        }
    }

    /// Whether the same request may succeed if sent again (perhaps later).
    pub fn retryable(&self) -> bool {
        match self {
            Self::Transport { .. }
            | Self::Tampered { .. }
            | Self::Broken { .. }
            | Self::NoTrustedNode { .. }
            | Self::Exhausted { .. } => true,
            Self::Router { status, .. } => *status == 429 || *status >= 500,
            Self::NodeRefused { .. } | Self::UnknownModel { .. } | Self::Config(_) => false,
        }
    }
}
