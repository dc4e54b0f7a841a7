//! Loading a model into a mistral.rs engine.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Instant;

use mistralrs_core::{
    AutoDeviceMapParams, DefaultSchedulerMethod, DeviceMapSetting, GGUFLoaderBuilder,
    GGUFSpecificConfig, Loader, MistralRs, MistralRsBuilder, ModelDType, SchedulerConfig,
    TokenSource,
};

use crate::model::{ModelError, ModelFormat, ModelSource};

/// Where the model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum DeviceChoice {
    /// The CPU (default).
    #[default]
    Cpu,
    /// The first CUDA GPU (needs a build with `--features cuda`).
    Cuda,
}

/// Activation / non-quantized weight dtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum DtypeChoice {
    /// F32 on CPU (fastest there: candle's CPU kernels have no fast F16/BF16
    /// matmul), mistral.rs's choice on GPUs.
    #[default]
    Auto,
    /// 32-bit float.
    F32,
    /// bfloat16.
    Bf16,
    /// IEEE half precision.
    F16,
}

/// How to run the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineOptions {
    /// Device.
    pub device: DeviceChoice,
    /// Dtype.
    pub dtype: DtypeChoice,
    /// Most sequences mistral.rs batches at once.
    pub max_batch: NonZeroUsize,
    /// Reuse KV caches across requests with a shared prefix. Off by default:
    /// a cache hit shortens the time to first token, which tells an observer
    /// of timing (the router, the host) that another request shared the
    /// prefix.
    pub prefix_cache: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            device: DeviceChoice::Cpu,
            dtype: DtypeChoice::Auto,
            max_batch: NonZeroUsize::new(8).unwrap_or(NonZeroUsize::MIN),
            prefix_cache: false,
        }
    }
}

fn model_dtype(options: &EngineOptions) -> ModelDType {
    match (options.dtype, options.device) {
        (DtypeChoice::F32, _) | (DtypeChoice::Auto, DeviceChoice::Cpu) => ModelDType::F32,
        (DtypeChoice::Bf16, _) => ModelDType::BF16,
        (DtypeChoice::F16, _) => ModelDType::F16,
        (DtypeChoice::Auto, DeviceChoice::Cuda) => ModelDType::Auto,
    }
}

fn device(choice: DeviceChoice) -> Result<mistralrs::Device, String> {
    match choice {
        DeviceChoice::Cpu => Ok(mistralrs::Device::Cpu),
        DeviceChoice::Cuda => mistralrs::Device::new_cuda(0).map_err(|e| {
            format!("no CUDA device (build with --features cuda on a GPU machine): {e}")
        }),
    }
}

/// Loads the model into a new engine. Blocking work runs off the async
/// runtime; a panic inside mistral.rs (some corrupt files cause one) is
/// caught and reported as [`ModelError::Load`].
pub async fn load(
    source: &ModelSource,
    options: &EngineOptions,
) -> Result<Arc<MistralRs>, ModelError> {
    let started = Instant::now();
    tracing::info!(
        model = %source.id,
        path = %source.location().display(),
        bytes = source.size(),
        device = ?options.device,
        dtype = ?model_dtype(options),
        "loading model"
    );
    let load_error = |message: String| ModelError::Load {
        path: source.location(),
        message,
    };
    let (src, opts) = (source.clone(), options.clone());
    let pipeline = tokio::task::spawn_blocking(move || build_pipeline(&src, &opts))
        .await
        .map_err(|e| load_error(panic_message(e)))?
        .map_err(load_error)?;
    let method = DefaultSchedulerMethod::Fixed(options.max_batch);
    let engine = MistralRsBuilder::new(
        pipeline,
        SchedulerConfig::DefaultScheduler { method },
        false,
        None,
    )
    .with_model_id(source.id.clone())
    .with_no_prefix_cache(!options.prefix_cache)
    .build()
    .await;
    tracing::info!(model = %source.id, seconds = started.elapsed().as_secs_f32(), "model loaded");
    Ok(engine)
}

type Pipeline = Arc<tokio::sync::Mutex<dyn mistralrs_core::Pipeline + Send + Sync>>;

fn build_pipeline(source: &ModelSource, options: &EngineOptions) -> Result<Pipeline, String> {
    let device = device(options.device)?;
    let dtype = model_dtype(options);
    let mapper = DeviceMapSetting::Auto(AutoDeviceMapParams::default_text());
    let loader: Box<dyn Loader> = match &source.format {
        ModelFormat::Gguf { dir, file } => GGUFLoaderBuilder::new(
            None,
            None,
            dir.to_string_lossy().into_owned(),
            vec![file.clone()],
            GGUFSpecificConfig { topology: None },
            false,
            None,
        )
        .build(),
        ModelFormat::Safetensors { dir } => mistralrs_core::NormalLoaderBuilder::new(
            mistralrs_core::NormalSpecificConfig::default(),
            None,
            None,
            Some(dir.to_string_lossy().into_owned()),
            false,
            None,
        )
        .build(None)
        .map_err(|e| e.to_string())?,
    };
    loader
        .load_model_from_hf(
            None,
            TokenSource::None,
            &dtype,
            &device,
            false,
            mapper,
            None,
            None,
        )
        .map_err(|e| format!("{e:#}"))
}

fn panic_message(e: tokio::task::JoinError) -> String {
    if !e.is_panic() {
        return e.to_string();
    }
    let payload = e.into_panic();
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "mistral.rs panicked while loading".to_owned())
}

impl std::fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
        })
    }
}

impl std::fmt::Display for DtypeChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
            Self::F16 => "f16",
        })
    }
}
