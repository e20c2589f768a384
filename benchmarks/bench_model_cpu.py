"""Our jitted Nemotron-H against transformers' on the same small config, on CPU, side by side.

    python benchmarks/bench_model_cpu.py [--shapes 2x256,1x1024] [--runs 5]

Both models hold the same random float32 weights (ours is imported from the transformers
checkpoint). Per shape (batch x length), three paths:

* forward: the whole-sequence forward to float32 logits (training / prefill);
* forward + backward: mean next-token cross-entropy and the gradient of every parameter
  (transformers: `model(ids, labels=ids).loss.backward()`, the same loss), compiled with the
  XLA options the trainer's update uses (`xla_options.update_compiler_options`);
* decode step: one cached token per row after a prompt of `length` tokens.

Times are medians of --runs calls after a warm-up call (which includes our compilation, reported
separately as compile time).
"""
import argparse
import copy
import os
import sys
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import BENCH_HF_CONFIG, first_and_median, machine_line, table  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from flax import nnx  # noqa: E402

from grpo_jax.models import load_hf_model  # noqa: E402
from grpo_jax.xla_options import update_compiler_options  # noqa: E402


def next_token_loss(logits_BTV, ids_BT):
    """Mean cross-entropy of token t+1 given tokens <= t (transformers' `labels=ids` loss)."""
    return optax.softmax_cross_entropy_with_integer_labels(logits_BTV[:, :-1], ids_BT[:, 1:]).mean()


def compare_shape(hf, model, batch: int, length: int, runs: int) -> list[list]:
    graphdef, state = nnx.split(model)
    ids = np.random.default_rng(0).integers(0, BENCH_HF_CONFIG["vocab_size"], (batch, length))
    ids_jax, ids_torch = jnp.asarray(ids), torch.as_tensor(ids)

    forward = jax.jit(lambda state, ids: nnx.merge(graphdef, state)(ids))
    value_and_grad = jax.jit(jax.value_and_grad(
        lambda state, ids: next_token_loss(nnx.merge(graphdef, state)(ids), ids)),
        compiler_options=update_compiler_options(jax.default_backend()))

    @jax.jit
    def decode_step(state, cache, token_B1):
        model = nnx.merge(graphdef, state)
        hidden, cache = model.forward(token_B1, cache=cache)
        return model.logits(hidden[:, -1]), cache

    cache = model.init_cache(batch, length + 1)
    _, cache = jax.jit(lambda s, c, i: nnx.merge(graphdef, s).forward(i, cache=c))(
        state, cache, ids_jax)
    token_jax, token_torch = ids_jax[:, :1], ids_torch[:, :1]
    with torch.no_grad():
        hf_cache = hf(ids_torch, use_cache=True).cache

    def hf_forward():
        with torch.no_grad():
            hf(ids_torch).logits

    def hf_forward_backward():
        hf.zero_grad(set_to_none=True)
        hf(ids_torch, labels=ids_torch).loss.backward()

    # transformers' cache is updated in place: every run decodes from a fresh copy of the prompt
    # cache (so all runs sit at the same position), and the copy's time is subtracted.
    def hf_decode():
        with torch.no_grad():
            hf(token_torch, cache=copy.deepcopy(hf_cache), use_cache=True)

    def hf_copy_only():
        copy.deepcopy(hf_cache)

    measured = [
        ("forward", lambda: forward(state, ids_jax).block_until_ready(), hf_forward),
        ("forward + backward",
         lambda: jax.block_until_ready(value_and_grad(state, ids_jax)), hf_forward_backward),
        ("decode step", lambda: decode_step(state, cache, token_jax)[0].block_until_ready(),
         hf_decode),
    ]
    rows = []
    for name, ours_fn, theirs_fn in measured:
        first, ours = first_and_median(ours_fn, runs)
        theirs = first_and_median(theirs_fn, runs)[1]
        if name == "decode step":
            theirs -= first_and_median(hf_copy_only, runs)[1]
        tokens = batch if name == "decode step" else batch * length
        rows.append([f"{batch}x{length}", name, ours * 1e3, first - ours, tokens / ours,
                     theirs * 1e3, tokens / theirs, f"{theirs / ours:.2f}x"])
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="2x256,1x1024",
                        help="comma-separated BATCHxLENGTH shapes")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]

    print(machine_line())
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"transformers {transformers.__version__}")
    print(f"config {BENCH_HF_CONFIG}")
    print(f"float32, random weights, median of {args.runs} runs after one warm-up\n")

    torch.manual_seed(0)
    hf = transformers.NemotronHForCausalLM(transformers.NemotronHConfig(**BENCH_HF_CONFIG)).eval()
    with tempfile.TemporaryDirectory() as path:
        hf.save_pretrained(path)
        model = load_hf_model(path)
    rows = []
    for batch, length in shapes:
        rows += compare_shape(hf, model, batch, length, args.runs)
    print(table(["B x T", "path", "ours ms", "compile s", "ours tok/s", "transformers ms",
                 "transformers tok/s", "speed-up"], rows, floatfmt="{:.1f}"))


if __name__ == "__main__":
    main()
