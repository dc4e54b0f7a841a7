//! A sealed answer as it streams: opened chunk by chunk, and complete only
//! when its receipt verified and the body ended right after it.
//!
//! Every chunk returned is authentic (each is AEAD-sealed under this
//! request's key and numbered), so a router that alters, reorders or
//! splices chunks, or replays an earlier answer, is caught at the first
//! chunk it touches. A router that cuts the answer short is caught at the
//! end: [`Answer::next_chunk`] returns `Ok(None)` only after the last chunk,
//! a receipt that verified against the node's attested signer, this
//! request's hash, the hash of the ciphertext received and the payer, and
//! nothing after it. Until then the text is not complete.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cloister_protocol::{ResponseError, ResponseEvent, ResponseReader, VerifiedReceipt};
use futures::StreamExt as _;
use futures::stream::BoxStream;

use crate::error::ClientError;
use crate::verify::VerifiedNode;

pub(crate) type Body = BoxStream<'static, Result<Bytes, reqwest::Error>>;

/// An answer being read.
pub struct Answer {
    node: Arc<VerifiedNode>,
    reader: Option<ResponseReader>,
    body: Body,
    first: Option<Vec<u8>>,
    receipt: Option<VerifiedReceipt>,
    idle: Duration,
    ended: bool,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answer")
            .field("node", &self.node.id)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

/// A whole answer, verified.
#[derive(Debug, Clone)]
pub struct CompleteAnswer {
    /// The node that answered.
    pub node: Arc<VerifiedNode>,
    /// The plaintext (OpenAI JSON, or SSE for a streamed request).
    pub plaintext: Vec<u8>,
    /// The receipt, verified.
    pub receipt: VerifiedReceipt,
}

/// What reading one step yielded.
enum Step {
    Text(Vec<u8>),
    End,
}

impl Answer {
    pub(crate) fn new(
        node: Arc<VerifiedNode>,
        reader: ResponseReader,
        body: Body,
        idle: Duration,
    ) -> Self {
        Self {
            node,
            reader: Some(reader),
            body,
            first: None,
            receipt: None,
            idle,
            ended: false,
        }
    }

    /// Reads up to the first plaintext (kept for [`next_chunk`](Self::next_chunk))
    /// within `deadline`: failures here may be retried on another node.
    pub(crate) async fn prime(&mut self, deadline: Duration) -> Result<(), ClientError> {
        match tokio::time::timeout(deadline, self.step()).await {
            Err(_) => Err(self.broken("no answer before the first-byte deadline")),
            Ok(Err(e)) => Err(e),
            Ok(Ok(Step::Text(text))) => {
                self.first = Some(text);
                Ok(())
            }
            Ok(Ok(Step::End)) => Ok(()),
        }
    }

    /// The node that answers.
    pub fn node(&self) -> &Arc<VerifiedNode> {
        &self.node
    }

    /// The next piece of plaintext; `Ok(None)` once the answer is complete
    /// and verified (then [`receipt`](Self::receipt) has the receipt).
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, ClientError> {
        if let Some(first) = self.first.take() {
            return Ok(Some(first));
        }
        match self.step().await? {
            Step::Text(text) => Ok(Some(text)),
            Step::End => Ok(None),
        }
    }

    /// The verified receipt, once [`next_chunk`](Self::next_chunk) returned
    /// `Ok(None)`.
    pub fn receipt(&self) -> Option<&VerifiedReceipt> {
        self.ended.then_some(self.receipt.as_ref()).flatten()
    }

    /// Reads the whole answer.
    pub async fn collect(mut self) -> Result<CompleteAnswer, ClientError> {
        let mut plaintext = Vec::new();
        while let Some(chunk) = self.next_chunk().await? {
            plaintext.extend_from_slice(&chunk);
        }
        let receipt = self
            .receipt
            .take()
            .ok_or_else(|| self.tampered(ResponseError::Incomplete))?;
        Ok(CompleteAnswer {
            node: self.node,
            plaintext,
            receipt,
        })
    }

    fn broken(&self, detail: impl Into<String>) -> ClientError {
        ClientError::Broken {
            node: self.node.id.clone(),
            detail: detail.into(),
        }
    }

    fn tampered(&self, source: ResponseError) -> ClientError {
        ClientError::Tampered {
            node: self.node.id.clone(),
            source,
        }
    }

    async fn step(&mut self) -> Result<Step, ClientError> {
        if self.ended {
            return Ok(Step::End);
        }
        loop {
            let Some(reader) = self.reader.as_mut() else {
                return Err(self.broken("the answer failed earlier"));
            };
            match reader.next_event() {
                Ok(Some(ResponseEvent::Plaintext(text))) => return Ok(Step::Text(text)),
                Ok(Some(ResponseEvent::Receipt(receipt))) => self.receipt = Some(*receipt),
                Ok(None) => {}
                Err(ResponseError::Remote(frame)) => {
                    self.reader = None;
                    return Err(self.broken(format!(
                        "the node ended the answer with an error ({}: {})",
                        frame.code, frame.message
                    )));
                }
                Err(e) => {
                    self.reader = None;
                    return Err(self.tampered(e));
                }
            }
            match tokio::time::timeout(self.idle, self.body.next()).await {
                Ok(Some(Ok(bytes))) => {
                    if let Some(reader) = self.reader.as_mut() {
                        reader.push(&bytes);
                    }
                }
                Ok(Some(Err(e))) => {
                    self.reader = None;
                    return Err(self.broken(crate::router_api::transport(&e).to_string()));
                }
                Err(_) => {
                    self.reader = None;
                    return Err(
                        self.broken(format!("nothing arrived for {} s", self.idle.as_secs()))
                    );
                }
                Ok(None) => {
                    // The body ended: complete only with the receipt last
                    // and nothing left over.
                    let reader = self.reader.take();
                    let finished = match reader {
                        Some(reader) => reader.finish(),
                        None => Err(ResponseError::AfterError),
                    };
                    return match finished {
                        Ok(()) if self.receipt.is_some() => {
                            self.ended = true;
                            Ok(Step::End)
                        }
                        Ok(()) => Err(self.tampered(ResponseError::Incomplete)),
                        Err(e) => Err(self.tampered(e)),
                    };
                }
            }
        }
    }
}
