//! From a filtered OpenAI request body to the pieces of plaintext that get
//! sealed: SSE events when streaming, the whole JSON otherwise.
//!
//! Every body first passes the request filter
//! ([`cloister_protocol::request_filter`]: text content only, an explicit
//! allowlist of fields, no URLs, files, tools or web search); then
//! mistral.rs's own OpenAI layer (`mistralrs-server-core`) parses it. Nothing
//! here logs request or response text.

use std::sync::Arc;

use cloister_protocol::request_filter::{ApiKind, FilteredRequest, RequestRejected};
use mistralrs_core::{MistralRs, Response};
use mistralrs_server_core::openai::{ChatCompletionRequest, CompletionRequest};
use serde_json::Value;
use tokio::sync::mpsc;

/// Why a request cannot be served. `client_message` is safe to seal back to
/// the client; `code` is safe to show the router (it carries no text of the
/// request).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InferenceError {
    /// The request filter refused the body (it names the field).
    #[error("{}", .0.message)]
    Refused(RequestRejected),
    /// A filtered body that mistral.rs's request types do not take.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// mistral.rs rejected the request (unknown model, bad parameter, ...).
    #[error("request rejected by the model: {0}")]
    Rejected(String),
    /// The engine failed while generating.
    #[error("the model failed while generating")]
    Engine(String),
}

impl InferenceError {
    /// Stable code for error frames and logs.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Refused(rejected) => rejected.code.as_str(),
            Self::InvalidRequest(_) => "invalid_request",
            Self::Rejected(_) => "rejected",
            Self::Engine(_) => "engine_error",
        }
    }

    /// Whether this is the client's fault (HTTP 400) rather than the node's.
    pub fn is_client_error(&self) -> bool {
        !matches!(self, Self::Engine(_))
    }

    /// The OpenAI-shaped error body sealed back to the client.
    pub fn client_body(&self) -> Value {
        if let Self::Refused(rejected) = self {
            return rejected.openai_error();
        }
        let message = match self {
            Self::Engine(detail) => format!("the model failed while generating: {detail}"),
            other => other.to_string(),
        };
        serde_json::json!({
            "error": {
                "message": message,
                "type": if self.is_client_error() { "invalid_request_error" } else { "server_error" },
                "param": null,
                "code": self.code(),
            }
        })
    }
}

/// Token counts from the tokenizer that ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TokenUsage {
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Generated tokens.
    pub completion_tokens: u64,
}

/// One piece of the response.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    /// Plaintext to seal as one chunk: an SSE event (`data: ...\n\n`) or the
    /// whole JSON response.
    Text(String),
    /// Generation finished; no more pieces.
    Done(TokenUsage),
}

/// Where a generation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the engine.
    Running,
    /// The last stream event came; `data: [DONE]` is next.
    SendDoneEvent,
    /// All text is out; the usage is next.
    SendUsage,
    /// Nothing more.
    Finished,
}

/// A request handed to the engine.
pub struct Generation {
    /// Endpoint kind.
    pub kind: ApiKind,
    /// Whether the client asked for a stream.
    pub stream: bool,
    engine: Arc<MistralRs>,
    rx: mpsc::Receiver<Response>,
    usage: Option<TokenUsage>,
    generated: u64,
    /// The model id responses name (mistral.rs would name the path).
    model_id: String,
    /// The request's token limit.
    max_tokens: u64,
    /// Streams only: what to count when mistral.rs sends no usage (see
    /// [`StreamCount`]). Held in enclave memory only.
    stream_count: Option<StreamCount>,
    phase: Phase,
}

/// The prompt of a stream, as the engine tokenized it.
enum CountPrompt {
    Chat {
        messages: Vec<indexmap::IndexMap<String, mistralrs_core::MessageContent>>,
        tools: Option<Vec<mistralrs_core::Tool>>,
        enable_thinking: Option<bool>,
        reasoning_effort: Option<mistralrs_core::ReasoningEffort>,
    },
    Completion(String),
}

/// mistral.rs 0.8.1 sends no usage on completion streams, and on chat
/// streams only with a final chunk that it skips when the last token does
/// not finish a UTF-8 character. Then the prompt is re-tokenized exactly as
/// the engine did, and the streamed text with the same tokenizer, the count
/// kept between the number of stream events (each carried at least one new
/// token) and `max_tokens`. The completion count can then be off by a
/// token or so (an end token, text that re-tokenizes differently).
struct StreamCount {
    prompt: CountPrompt,
    streamed: String,
}

impl std::fmt::Debug for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generation")
            .field("kind", &self.kind)
            .field("stream", &self.stream)
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

/// Parses a filtered request with mistral.rs's OpenAI layer and submits it
/// to the engine.
pub async fn submit(
    engine: &Arc<MistralRs>,
    model_id: &str,
    request: FilteredRequest,
) -> Result<Generation, InferenceError> {
    let (tx, rx) = mpsc::channel(16);
    let FilteredRequest {
        kind,
        body: json,
        max_tokens,
        ..
    } = request;
    let parsed = match kind {
        ApiKind::Chat => {
            let request: ChatCompletionRequest = serde_json::from_value(json)
                .map_err(|e| InferenceError::InvalidRequest(e.to_string()))?;
            mistralrs_server_core::chat_completion::parse_request(request, engine.clone(), tx).await
        }
        ApiKind::Completion => {
            let request: CompletionRequest = serde_json::from_value(json)
                .map_err(|e| InferenceError::InvalidRequest(e.to_string()))?;
            mistralrs_server_core::completions::parse_request(request, engine.clone(), tx)
        }
    };
    let (request, stream) = parsed.map_err(|e| InferenceError::Rejected(format!("{e:#}")))?;
    let stream_count = match &request {
        mistralrs_core::Request::Normal(normal) if stream => {
            let prompt = match &normal.messages {
                mistralrs_core::RequestMessage::Completion { text, .. } => {
                    Some(CountPrompt::Completion(text.clone()))
                }
                mistralrs_core::RequestMessage::Chat {
                    messages,
                    enable_thinking,
                    reasoning_effort,
                } => Some(CountPrompt::Chat {
                    messages: messages.clone(),
                    tools: normal.tools.clone(),
                    enable_thinking: *enable_thinking,
                    reasoning_effort: *reasoning_effort,
                }),
                _ => None,
            };
            prompt.map(|prompt| StreamCount {
                prompt,
                streamed: String::new(),
            })
        }
        _ => None,
    };
    send_to_engine(engine, request).await?;
    Ok(Generation {
        kind,
        stream,
        engine: engine.clone(),
        rx,
        usage: None,
        generated: 0,
        model_id: model_id.to_owned(),
        max_tokens,
        stream_count,
        phase: Phase::Running,
    })
}

/// Hands a request to the engine's queue.
async fn send_to_engine(
    engine: &MistralRs,
    request: mistralrs_core::Request,
) -> Result<(), InferenceError> {
    let sender = engine
        .get_sender(None)
        .map_err(|e| InferenceError::Engine(e.to_string()))?;
    sender
        .send(request)
        .await
        .map_err(|_| InferenceError::Engine("the engine has stopped".into()))
}

fn usage_of(usage: &mistralrs_core::Usage) -> TokenUsage {
    TokenUsage {
        prompt_tokens: usage.prompt_tokens as u64,
        completion_tokens: usage.completion_tokens as u64,
    }
}

fn sse(json: &impl serde::Serialize) -> Result<String, InferenceError> {
    serde_json::to_string(json)
        .map(|data| format!("data: {data}\n\n"))
        .map_err(|e| InferenceError::Engine(e.to_string()))
}

fn whole(json: &impl serde::Serialize) -> Result<String, InferenceError> {
    serde_json::to_string(json).map_err(|e| InferenceError::Engine(e.to_string()))
}

/// Counts tokens with the tokenizer (and chat template) of the loaded model.
async fn count_tokens(
    engine: &MistralRs,
    text: either::Either<Vec<indexmap::IndexMap<String, mistralrs_core::MessageContent>>, String>,
    tools: Option<Vec<mistralrs_core::Tool>>,
    chat_options: (Option<bool>, Option<mistralrs_core::ReasoningEffort>),
    prompt: bool,
) -> Result<u64, InferenceError> {
    let (tx, mut rx) = mpsc::channel(1);
    let request = mistralrs_core::Request::Tokenize(mistralrs_core::TokenizationRequest {
        text,
        tools,
        add_generation_prompt: prompt,
        add_special_tokens: prompt,
        enable_thinking: chat_options.0,
        reasoning_effort: chat_options.1,
        response: tx,
    });
    send_to_engine(engine, request).await?;
    match rx.recv().await {
        Some(Ok(tokens)) => Ok(tokens.len() as u64),
        Some(Err(e)) => Err(InferenceError::Engine(format!("counting tokens: {e}"))),
        None => Err(InferenceError::Engine(
            "the engine did not count the tokens".into(),
        )),
    }
}

impl Generation {
    /// The next piece, `None` after [`Piece::Done`] or an error. Dropping
    /// the generation cancels it: mistral.rs stops the sequence when it can
    /// no longer deliver tokens.
    pub async fn next(&mut self) -> Option<Result<Piece, InferenceError>> {
        match self.phase {
            Phase::Finished => None,
            Phase::SendDoneEvent => {
                self.phase = Phase::SendUsage;
                Some(Ok(Piece::Text("data: [DONE]\n\n".into())))
            }
            Phase::SendUsage => {
                self.phase = Phase::Finished;
                Some(self.final_usage().await.map(Piece::Done))
            }
            Phase::Running => {
                let piece = self.receive().await;
                if piece.is_err() {
                    self.phase = Phase::Finished;
                }
                Some(piece.map(Piece::Text))
            }
        }
    }

    async fn receive(&mut self) -> Result<String, InferenceError> {
        let Some(response) = self.rx.recv().await else {
            // mistral.rs drops the responder when the sequence ends; a
            // stream can end so without a chunk that says it finished.
            if self.stream && self.generated > 0 {
                self.phase = Phase::SendUsage;
                return Ok("data: [DONE]\n\n".to_owned());
            }
            return Err(InferenceError::Engine(
                "the engine ended the request without an answer".into(),
            ));
        };
        match response {
            Response::Chunk(mut chunk) => {
                if let Some(usage) = &chunk.usage {
                    self.usage = Some(usage_of(usage));
                }
                self.generated += 1;
                if let Some(count) = &mut self.stream_count {
                    for choice in &chunk.choices {
                        count
                            .streamed
                            .push_str(choice.delta.content.as_deref().unwrap_or_default());
                        count.streamed.push_str(
                            choice
                                .delta
                                .reasoning_content
                                .as_deref()
                                .unwrap_or_default(),
                        );
                    }
                }
                chunk.model.clone_from(&self.model_id);
                if chunk.choices.iter().all(|c| c.finish_reason.is_some()) {
                    self.phase = Phase::SendDoneEvent;
                }
                sse(&chunk)
            }
            Response::CompletionChunk(mut chunk) => {
                self.generated += 1;
                if let Some(count) = &mut self.stream_count {
                    for choice in &chunk.choices {
                        count.streamed.push_str(&choice.text);
                    }
                }
                chunk.model.clone_from(&self.model_id);
                if chunk.choices.iter().all(|c| c.finish_reason.is_some()) {
                    self.phase = Phase::SendDoneEvent;
                }
                sse(&chunk)
            }
            Response::Done(mut done) => {
                done.model.clone_from(&self.model_id);
                self.usage = Some(usage_of(&done.usage));
                self.phase = Phase::SendUsage;
                whole(&done)
            }
            Response::CompletionDone(mut done) => {
                done.model.clone_from(&self.model_id);
                self.usage = Some(usage_of(&done.usage));
                self.phase = Phase::SendUsage;
                whole(&done)
            }
            Response::ModelError(message, _) | Response::CompletionModelError(message, _) => {
                Err(InferenceError::Engine(message))
            }
            Response::ValidationError(e) => Err(InferenceError::Rejected(e.to_string())),
            Response::InternalError(e) => Err(InferenceError::Engine(e.to_string())),
            _ => Err(InferenceError::Engine(
                "unexpected response kind from the engine".into(),
            )),
        }
    }

    async fn final_usage(&mut self) -> Result<TokenUsage, InferenceError> {
        if let Some(usage) = self.usage {
            return Ok(usage);
        }
        let Some(count) = self.stream_count.take() else {
            return Err(InferenceError::Engine(
                "the engine reported no token usage".into(),
            ));
        };
        let prompt_tokens = match count.prompt {
            CountPrompt::Completion(text) => {
                count_tokens(
                    &self.engine,
                    either::Either::Right(text),
                    None,
                    (None, None),
                    true,
                )
                .await?
            }
            CountPrompt::Chat {
                messages,
                tools,
                enable_thinking,
                reasoning_effort,
            } => {
                count_tokens(
                    &self.engine,
                    either::Either::Left(messages),
                    tools,
                    (enable_thinking, reasoning_effort),
                    true,
                )
                .await?
            }
        };
        let retokenized = count_tokens(
            &self.engine,
            either::Either::Right(count.streamed),
            None,
            (None, None),
            false,
        )
        .await?;
        let completion_tokens = retokenized.min(self.max_tokens).max(self.generated);
        tracing::debug!("usage counted by re-tokenizing: the stream carried none");
        let usage = TokenUsage {
            prompt_tokens,
            completion_tokens,
        };
        self.usage = Some(usage);
        Ok(usage)
    }

    /// Token usage so far: the engine's count once known, else the number
    /// of stream events received (for logs on cancellation).
    pub fn usage(&self) -> TokenUsage {
        self.usage.unwrap_or(TokenUsage {
            prompt_tokens: 0,
            completion_tokens: self.generated,
        })
    }
}
