//! Test and benchmark support: a tiny random-weight Llama that
//! mistral.rs loads in a fraction of a second, so tests exercise the real
//! engine without a real model.
//!
//! Hidden size 64, 2 layers, 4 attention heads (2 KV heads), a byte-level
//! BPE tokenizer of 256 byte tokens plus `<s>`, `</s>` and `<unk>`, F32
//! safetensors of about 0.6 MB, and a minimal chat template. Its output is
//! random bytes; with greedy sampling it is deterministic and usually runs
//! to `max_tokens`.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::json;

const HIDDEN: usize = 64;
const INTERMEDIATE: usize = 128;
const LAYERS: usize = 2;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const VOCAB: usize = 259;

/// GPT-2's byte-to-unicode table: the printable form of each byte that
/// byte-level BPE vocabularies use.
fn byte_to_unicode() -> Vec<char> {
    let printable = |b: u32| {
        (33..=126).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b)
    };
    let mut extra = 0;
    (0u32..256)
        .map(|byte| {
            let code = if printable(byte) {
                byte
            } else {
                extra += 1;
                255 + extra
            };
            char::from_u32(code).unwrap_or('?')
        })
        .collect()
}

fn tokenizer_json() -> serde_json::Value {
    let vocab: BTreeMap<String, usize> = byte_to_unicode()
        .into_iter()
        .enumerate()
        .map(|(id, c)| (c.to_string(), id))
        .chain([
            ("<s>".into(), 256),
            ("</s>".into(), 257),
            ("<unk>".into(), 258),
        ])
        .collect();
    let special = |id: usize, content: &str| {
        json!({"id": id, "content": content, "single_word": false, "lstrip": false,
               "rstrip": false, "normalized": false, "special": true})
    };
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [special(256, "<s>"), special(257, "</s>"), special(258, "<unk>")],
        "normalizer": null,
        "pre_tokenizer": byte_level,
        "post_processor": null,
        "decoder": byte_level,
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
                  "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": []},
    })
}

/// A small deterministic PRNG (xorshift) for the weights.
struct Weights(u64);

impl Weights {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        // Uniform in [-0.05, 0.05).
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1
    }

    fn tensor(&mut self, len: usize) -> Vec<u8> {
        (0..len).flat_map(|_| self.next().to_le_bytes()).collect()
    }
}

fn ones(len: usize) -> Vec<u8> {
    (0..len).flat_map(|_| 1.0f32.to_le_bytes()).collect()
}

/// Writes `config.json`, `tokenizer.json`, `tokenizer_config.json` and
/// `model.safetensors` into `dir`.
pub fn write_tiny_llama(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let config = json!({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": HIDDEN, "intermediate_size": INTERMEDIATE,
        "num_hidden_layers": LAYERS, "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS,
        "vocab_size": VOCAB, "max_position_embeddings": 512, "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0, "tie_word_embeddings": false, "hidden_act": "silu",
        "bos_token_id": 256, "eos_token_id": 257, "torch_dtype": "float32",
    });
    let tokenizer_config = json!({
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "model_max_length": 512,
        "chat_template": "{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}{% if add_generation_prompt %}<s>assistant\n{% endif %}",
    });
    std::fs::write(dir.join("config.json"), config.to_string())?;
    std::fs::write(dir.join("tokenizer.json"), tokenizer_json().to_string())?;
    std::fs::write(
        dir.join("tokenizer_config.json"),
        tokenizer_config.to_string(),
    )?;

    let head_dim = HIDDEN / HEADS;
    let kv = KV_HEADS * head_dim;
    let mut rng = Weights(0x9E37_79B9_7F4A_7C15);
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = vec![
        (
            "model.embed_tokens.weight".into(),
            vec![VOCAB, HIDDEN],
            rng.tensor(VOCAB * HIDDEN),
        ),
        ("model.norm.weight".into(), vec![HIDDEN], ones(HIDDEN)),
        (
            "lm_head.weight".into(),
            vec![VOCAB, HIDDEN],
            rng.tensor(VOCAB * HIDDEN),
        ),
    ];
    for layer in 0..LAYERS {
        let p = format!("model.layers.{layer}");
        let shapes = [
            ("self_attn.q_proj.weight", vec![HIDDEN, HIDDEN]),
            ("self_attn.k_proj.weight", vec![kv, HIDDEN]),
            ("self_attn.v_proj.weight", vec![kv, HIDDEN]),
            ("self_attn.o_proj.weight", vec![HIDDEN, HIDDEN]),
            ("mlp.gate_proj.weight", vec![INTERMEDIATE, HIDDEN]),
            ("mlp.up_proj.weight", vec![INTERMEDIATE, HIDDEN]),
            ("mlp.down_proj.weight", vec![HIDDEN, INTERMEDIATE]),
        ];
        for (name, shape) in shapes {
            let len = shape.iter().product();
            tensors.push((format!("{p}.{name}"), shape, rng.tensor(len)));
        }
        tensors.push((
            format!("{p}.input_layernorm.weight"),
            vec![HIDDEN],
            ones(HIDDEN),
        ));
        tensors.push((
            format!("{p}.post_attention_layernorm.weight"),
            vec![HIDDEN],
            ones(HIDDEN),
        ));
    }
    let views = tensors
        .iter()
        .map(|(name, shape, data)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                .map(|view| (name.clone(), view))
                .map_err(std::io::Error::other)
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors"))
        .map_err(std::io::Error::other)
}
