#!/usr/bin/env python3
"""llama.cpp (through llama-cpp-python) on the same GGUF, prompt and greedy
settings as enclave-app/examples/bench_sealed.rs; prints JSON with the same
fields (medians over rounds) for scripts/bench-enclave.sh.

usage: bench_llama_cpp.py MODEL.gguf --rounds N --max-tokens N [--threads 2]
       bench_llama_cpp.py MODEL.gguf --requantize OUT.gguf --ftype Q4_0|Q8_0
         (writes a copy in another GGUF quantization with llama.cpp's own
          quantizer, to compare formats; see BENCHMARKS.md)
"""
import argparse
import ctypes
import json
import statistics
import time

from llama_cpp import Llama

# Keep in step with PROMPT in enclave-app/examples/bench_sealed.rs.
PROMPT = "Write a long, detailed story about a lighthouse keeper who finds a message in a bottle."


def one_round(llm, max_tokens, completion_tokens, prompt_tokens):
    # No KV reuse between rounds: mistral.rs runs without a prefix cache.
    llm.reset()
    started = time.perf_counter()
    first = last = None
    for chunk in llm.create_chat_completion(
        messages=[{"role": "user", "content": PROMPT}],
        max_tokens=max_tokens,
        temperature=0.0,
        stream=True,
    ):
        if chunk["choices"][0]["delta"].get("content"):
            now = time.perf_counter() - started
            first = now if first is None else first
            last = now
    decode = max(last - first, 1e-9)
    return {
        "ttft_s": first,
        "prompt_tok_s": prompt_tokens / first,
        "decode_tok_s": (completion_tokens - 1) / decode,
    }


FTYPES = {"Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q4_K_M": 15}


def requantize(src, dst, ftype):
    import llama_cpp
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPES[ftype]
    params.allow_requantize = True
    params.nthread = 2
    if llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params)) != 0:
        raise SystemExit(f"llama.cpp could not requantize {src} to {ftype}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--requantize", metavar="OUT")
    parser.add_argument("--ftype", choices=sorted(FTYPES), default="Q4_0")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.requantize:
        requantize(args.model, args.requantize, args.ftype)
        return

    llm = Llama(model_path=args.model, n_threads=args.threads, n_threads_batch=args.threads,
                n_ctx=2048, verbose=False)
    # Greedy: every round generates the same tokens; one whole answer gives
    # the counts, the streamed rounds the timings.
    llm.reset()
    warm = llm.create_chat_completion(
        messages=[{"role": "user", "content": PROMPT}],
        max_tokens=args.max_tokens,
        temperature=0.0,
    )
    usage = warm["usage"]
    rounds = [one_round(llm, args.max_tokens, usage["completion_tokens"], usage["prompt_tokens"])
              for _ in range(args.rounds)]
    result = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    result.update(prompt_tokens=usage["prompt_tokens"], completion_tokens=usage["completion_tokens"],
                  rounds=args.rounds, threads=args.threads)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
