//! A hostile router in front of the real one: it forwards everything,
//! records what it sees, and can tamper with the frames of a sealed answer
//! on purpose (alter a chunk, drop the last chunk, reorder chunks, replay an
//! earlier answer, cut the answer short).
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use cloister_protocol::{Frame, FrameDecoder};

/// What the double does to the next sealed answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tamper {
    /// Forward unchanged.
    Honest,
    /// Flip one byte of a ciphertext chunk in the middle.
    AlterChunk,
    /// Drop the last ciphertext chunk (the receipt still follows).
    DropLastChunk,
    /// Swap the second and third ciphertext chunks.
    Reorder,
    /// Answer with the previous sealed answer, byte for byte.
    ReplayPrevious,
    /// Send only the first frame, then end the body.
    CutShort,
}

/// (path, body) of every request forwarded.
type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

#[derive(Clone)]
struct Shared {
    upstream: String,
    http: reqwest::Client,
    tamper: Arc<Mutex<Tamper>>,
    seen: Seen,
    previous: Arc<Mutex<Option<Vec<u8>>>>,
}

/// The double, listening on 127.0.0.1.
pub(crate) struct RouterDouble {
    pub(crate) url: String,
    shared: Shared,
}

impl RouterDouble {
    pub(crate) async fn start(upstream: &str) -> Self {
        let shared = Shared {
            upstream: upstream.to_owned(),
            http: reqwest::Client::new(),
            tamper: Arc::new(Mutex::new(Tamper::Honest)),
            seen: Arc::default(),
            previous: Arc::default(),
        };
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, shared }
    }

    pub(crate) fn set(&self, tamper: Tamper) {
        *self.shared.tamper.lock().unwrap() = tamper;
    }

    /// How many requests had a path starting with `prefix`.
    pub(crate) fn count(&self, prefix: &str) -> usize {
        self.shared
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p.starts_with(prefix))
            .count()
    }

    /// Every request body it forwarded, as received.
    pub(crate) fn bodies(&self) -> Vec<Vec<u8>> {
        self.shared
            .seen
            .lock()
            .unwrap()
            .iter()
            .map(|(_, b)| b.clone())
            .collect()
    }
}

async fn forward(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    shared
        .seen
        .lock()
        .unwrap()
        .push((uri.path().to_owned(), body.to_vec()));
    let mut request = shared
        .http
        .request(method, format!("{}{path}", shared.upstream))
        .body(body);
    for name in [header::AUTHORIZATION, header::CONTENT_TYPE] {
        if let Some(v) = headers.get(&name) {
            request = request.header(name, v.clone());
        }
    }
    if let Some(v) = headers.get("x-cloister-payer") {
        request = request.header("x-cloister-payer", v.clone());
    }
    let upstream = request.send().await.unwrap();
    let status = StatusCode::from_u16(upstream.status().as_u16()).unwrap();
    let content_type = upstream
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let mut bytes = upstream.bytes().await.unwrap().to_vec();
    if uri.path().starts_with("/v1/sealed/") && status.is_success() {
        let tamper = *shared.tamper.lock().unwrap();
        let previous = shared.previous.lock().unwrap().replace(bytes.clone());
        bytes = match tamper {
            Tamper::Honest => bytes,
            Tamper::ReplayPrevious => previous.expect("an earlier answer to replay"),
            other => tamper_frames(&bytes, other),
        };
    }
    (status, [(header::CONTENT_TYPE, content_type)], bytes).into_response()
}

fn tamper_frames(body: &[u8], tamper: Tamper) -> Vec<u8> {
    let mut decoder = FrameDecoder::new();
    decoder.push(body);
    let mut frames = Vec::new();
    while let Some(frame) = decoder.next_frame().unwrap() {
        frames.push(frame);
    }
    let chunks: Vec<usize> = frames
        .iter()
        .enumerate()
        .filter(|(_, f)| matches!(f, Frame::Ciphertext(_)))
        .map(|(i, _)| i)
        .collect();
    assert!(
        chunks.len() >= 3,
        "a long enough answer to tamper with: {} chunks",
        chunks.len()
    );
    match tamper {
        Tamper::AlterChunk => {
            if let Frame::Ciphertext(c) = &mut frames[chunks[chunks.len() / 2]] {
                let at = c.len() / 2;
                c[at] ^= 0x01;
            }
        }
        Tamper::DropLastChunk => {
            frames.remove(*chunks.last().unwrap());
        }
        Tamper::Reorder => frames.swap(chunks[1], chunks[2]),
        Tamper::CutShort => frames.truncate(1),
        Tamper::Honest | Tamper::ReplayPrevious => {}
    }
    frames.iter().flat_map(|f| f.encode().unwrap()).collect()
}

/// A node, a router over it (configured by `tweak`), a router double in
/// front, and a payer key registered to the stack's account: what an
/// end-to-end client test starts from.
pub(crate) struct SealedStack {
    pub(crate) node: super::TestNode,
    pub(crate) stack: super::Stack,
    pub(crate) double: RouterDouble,
    pub(crate) payer: cloister_protocol::PayerKey,
}

impl SealedStack {
    pub(crate) async fn start(
        node_flags: &[&str],
        tweak: impl FnOnce(&mut cloister_router::RouterConfig),
    ) -> Self {
        let node = super::TestNode::start("tiny", node_flags).await;
        let stack = super::Stack::start(super::simulated_policy(), &[node.url()], tweak).await;
        stack.settled(1).await;
        let payer = cloister_protocol::PayerKey::generate();
        stack
            .state
            .ledger
            .register_payer("alice", payer.address())
            .await
            .unwrap();
        let double = RouterDouble::start(&stack.url).await;
        Self {
            node,
            stack,
            double,
            payer,
        }
    }

    /// A client of the double, with the stack's key and payer.
    pub(crate) fn client(
        &self,
        policy: cloister_attestation::Policy,
        api_key: bool,
    ) -> cloister_client::Client {
        let payer = cloister_protocol::PayerKey::from_secret(&self.payer.secret()).unwrap();
        let mut config =
            cloister_client::ClientConfig::new(format!("{}/v1", self.double.url), policy, payer);
        config.api_key = api_key.then(|| self.stack.key.clone());
        cloister_client::Client::new(config).unwrap()
    }
}
