"""Our jitted Nemotron-H forward against transformers' on the same small config, on CPU.

    python benchmarks/bench_model_cpu.py [--batch 2] [--length 256] [--runs 5]

Both models hold the same random weights (ours is imported from the transformers checkpoint).
Times are medians of --runs calls after a warm-up call (which includes our compilation). Two
paths: the whole-sequence forward (training / prefill) and one cached decode step.
"""
import argparse
import copy
import os
import platform
import statistics
import sys
import tempfile
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import flax  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from flax import nnx  # noqa: E402

from grpo_jax.models import load_hf_model  # noqa: E402

BENCH_HF_CONFIG = dict(
    vocab_size=4096, hidden_size=256, hybrid_override_pattern="M-M*-M-*M",
    num_attention_heads=8, num_key_value_heads=2, head_dim=32, intermediate_size=1024,
    mamba_num_heads=16, mamba_head_dim=32, ssm_state_size=64, n_groups=2, conv_kernel=4,
    chunk_size=64,
)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def median_seconds(fn, runs: int) -> float:
    fn()  # warm-up (compiles ours)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; torch threads {torch.get_num_threads()}")
    print(f"python {platform.python_version()}, jax {jax.__version__}, flax {flax.__version__}, "
          f"torch {torch.__version__}, transformers {transformers.__version__}")
    print(f"config: {BENCH_HF_CONFIG}")
    print(f"batch {args.batch}, length {args.length}, median of {args.runs} runs, float32\n")

    torch.manual_seed(0)
    hf_model = transformers.NemotronHForCausalLM(
        transformers.NemotronHConfig(**BENCH_HF_CONFIG)).eval()
    with tempfile.TemporaryDirectory() as path:
        hf_model.save_pretrained(path)
        model = load_hf_model(path)
    graphdef, state = nnx.split(model)
    ids = np.random.default_rng(0).integers(0, BENCH_HF_CONFIG["vocab_size"],
                                            (args.batch, args.length))

    @jax.jit
    def forward(state, ids):
        return nnx.merge(graphdef, state)(ids)

    @jax.jit
    def decode_step(state, cache, token_B1):
        model = nnx.merge(graphdef, state)
        hidden, cache = model.forward(token_B1, cache=cache)
        return model.logits(hidden[:, -1]), cache

    ids_jax, ids_torch = jnp.asarray(ids), torch.as_tensor(ids)
    cache = model.init_cache(args.batch, args.length + 1)
    _, cache = jax.jit(lambda s, c, i: nnx.merge(graphdef, s).forward(i, cache=c))(
        state, cache, ids_jax)
    token_jax, token_torch = ids_jax[:, :1], ids_torch[:, :1]
    with torch.no_grad():
        hf_cache = hf_model(ids_torch, use_cache=True).cache

    # transformers' cache is updated in place: every run decodes from a fresh copy of the prompt
    # cache (so all runs sit at the same position), and the copy's time is subtracted.
    def hf_decode():
        hf_model(token_torch, cache=copy.deepcopy(hf_cache), use_cache=True)

    def hf_copy_only():
        copy.deepcopy(hf_cache)

    with torch.no_grad():
        rows = [
            ("forward (B x T tokens)",
             median_seconds(lambda: forward(state, ids_jax).block_until_ready(), args.runs),
             median_seconds(lambda: hf_model(ids_torch).logits, args.runs)),
            ("decode step (B tokens)",
             median_seconds(lambda: decode_step(state, cache, token_jax)[0].block_until_ready(),
                            args.runs),
             median_seconds(hf_decode, args.runs) - median_seconds(hf_copy_only, args.runs)),
        ]
    print(f"{'path':<24} {'ours (ms)':>10} {'transformers (ms)':>18} {'speed-up':>9}")
    for name, ours, theirs in rows:
        print(f"{name:<24} {ours * 1e3:>10.2f} {theirs * 1e3:>18.2f} {theirs / ours:>8.2f}x")


if __name__ == "__main__":
    main()
