"""Our sampler against transformers' `generate` on the same small model, side by side, on CPU.

    python benchmarks/bench_sampler_cpu.py [--prompt 64] [--new 128] [--prompts 4] [--generations 4]
                                           [--rounds 5] [--decode-chunk 16]
                                           [--decode-chunks-per-call 8]
                                           [--ssm-decode-update per_step|deferred|both]
                                           [--cpu-devices -1]

Both models hold the same random float32 weights (ours is imported from the transformers
checkpoint). The batch is P prompts x G generations (the seed config: 4 x 4 = 16 rows), every
prompt `--prompt` tokens, `--new` new tokens per row with no stop token (so both run the full
length). Rows:

* greedy and T=1 (no top-k / top-p) through `grpo_jax.sampling.generate` on the 16 rows, against
  `model.generate` on the same 16 rows (do_sample False / True, top_k=0, top_p=1);
* the rollout path: prefill the P prompts once, `gather_rows` to P x G, decode at T=1;
* the floor: a jitted `lax.scan` of `--new` one-token model forwards on the same rows, with no
  sampling, stop checks or cache bookkeeping (what the loop costs beyond the model itself),
  compiled with the sampler's decode options.

`--cpu-devices` splits the host into XLA devices as `model.cpu_devices` does for a run (-1: one
per core, a power of two, at most 8); with more than one, our model is placed on a data-parallel
mesh over them, so every path splits its rows over the devices (`generate` finds the mesh from the
parameters). transformers runs as it does, on torch's threads (as many as the cores).

`--ssm-decode-update both` adds greedy and T=1 rows through a second sampler that defers the Mamba
state writes to once per decode chunk (`SamplerConfig.ssm_decode_update`), in the same rounds.

`generate` prefills each distinct prompt once (here 4 prefills for 16 rows); transformers
prefills all 16 rows.

Every path is called once to warm up (our compilations happen there: reported separately as
compile time; transformers gets a short call). Then `--rounds` rounds call every path once each,
ours and transformers' alternating (`_common.interleaved_rounds`): the times are medians over
rounds, and the speed-up is the median of the per-round ratios (with their range), so a drift of
the machine's speed hits both sides of a ratio alike. Tokens/s counts new tokens.
"""
from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (BENCH_HF_CONFIG, interleaved_rounds, machine_line,  # noqa: E402
                     paired_ratios, table)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from flax import nnx  # noqa: E402

from grpo_jax import compile_log, distributed, sharding  # noqa: E402
from grpo_jax.models.cache import cache_shardings  # noqa: E402
from grpo_jax.models import load_hf_model  # noqa: E402
from grpo_jax.sampling import Sampler, SamplerConfig, generate  # noqa: E402
from grpo_jax.xla_options import sampler_compiler_options  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompt", type=int, default=64)
    parser.add_argument("--new", type=int, default=128)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--generations", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5,
                        help="timed rounds; each calls every path once (transformers ~4 s a call)")
    parser.add_argument("--decode-chunk", type=int, default=SamplerConfig().decode_chunk)
    parser.add_argument("--decode-chunks-per-call", type=int,
                        default=SamplerConfig().decode_chunks_per_call,
                        help="chunks one jitted decode call may run (1: a host round trip per chunk)")
    parser.add_argument("--ssm-decode-update", default=SamplerConfig().ssm_decode_update,
                        choices=["per_step", "deferred", "both"],
                        help="the sampler's Mamba state update; both: also time the other one")
    parser.add_argument("--cpu-devices", type=int, default=-1,
                        help="XLA devices of the host (-1: one per core, as model.cpu_devices)")
    args = parser.parse_args()
    batch = args.prompts * args.generations
    devices = distributed.set_cpu_devices(args.cpu_devices)
    if batch % devices:
        parser.error(f"--prompts x --generations = {batch} rows do not split over {devices} devices")
    mesh = sharding.make_mesh(data=devices)

    print(machine_line())
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"transformers {transformers.__version__}")
    print(f"config {BENCH_HF_CONFIG}")
    print(f"batch {args.prompts} prompts x {args.generations} = {batch} rows, prompt {args.prompt} "
          f"tokens, {args.new} new tokens, decode_chunk {args.decode_chunk} (up to "
          f"{args.decode_chunks_per_call} per call), SSM decode update "
          f"{args.ssm_decode_update}, float32, our rows split over {devices} data-parallel "
          f"device(s), median of "
          f"{args.rounds} interleaved rounds after a warm-up call of each path\n")

    torch.manual_seed(0)
    hf = transformers.NemotronHForCausalLM(transformers.NemotronHConfig(**BENCH_HF_CONFIG)).eval()
    with tempfile.TemporaryDirectory() as path:
        hf.save_pretrained(path)
        model = load_hf_model(path, mesh=mesh)
    graphdef, params = nnx.split(model)
    first_update = "per_step" if args.ssm_decode_update == "both" else args.ssm_decode_update
    chunking = dict(decode_chunk=args.decode_chunk,
                    decode_chunks_per_call=args.decode_chunks_per_call)
    sampler = Sampler(graphdef, SamplerConfig(**chunking, batch_multiple=devices,
                                              ssm_decode_update=first_update))

    rng = np.random.default_rng(0)
    distinct = rng.integers(3, BENCH_HF_CONFIG["vocab_size"], (args.prompts, args.prompt))
    rows_np = np.repeat(distinct, args.generations, axis=0)
    rows = rows_np.tolist()
    rows_torch = torch.as_tensor(rows_np)
    new = args.new

    def ours(temperature, sampler=sampler):
        def run():
            return generate(model, rows, new, temperature=temperature, seed=1, sampler=sampler)
        return run

    def ours_rollout():
        with jax.set_mesh(mesh):
            state = sampler.prefill(params, distinct.tolist(), args.prompt + new, seed=1)
            state = sampler.gather_rows(state, np.repeat(np.arange(args.prompts), args.generations),
                                        seed=1)
            return sampler.decode(params, state, new, rows=range(batch), temperature=1.0)

    def theirs(sample: bool):
        extra = dict(do_sample=True, temperature=1.0, top_k=0, top_p=1.0) if sample else dict(
            do_sample=False)

        def run(warmup=False):
            with torch.no_grad():
                return hf.generate(rows_torch, max_new_tokens=4 if warmup else new,
                                   eos_token_id=None, pad_token_id=0, **extra)
        return run

    @functools.partial(jax.jit, compiler_options=sampler_compiler_options(jax.default_backend()))
    def model_steps_only(params, cache, token_B1):
        """The floor under the loop: `new` one-token forwards, no sampling or bookkeeping."""
        step_model = nnx.merge(graphdef, params)
        all_rows_B = jnp.ones((batch,), jnp.int32)

        def step(cache, _):
            hidden_B1D, cache = step_model.forward(token_B1, cache=cache, num_valid_B=all_rows_B)
            # A reduction over the whole vocabulary keeps the full LM head alive (a single logit
            # would let XLA slice the matmul down to one column).
            return cache, jnp.max(step_model.logits(hidden_B1D[:, 0]), axis=-1)
        _, max_logit_NB = jax.lax.scan(step, cache, None, length=new)
        return max_logit_NB

    step_cache = model.init_cache(batch, args.prompt + new)
    step_cache = jax.device_put(step_cache, cache_shardings(step_cache, mesh))
    step_token_B1 = jax.device_put(jnp.zeros((batch, 1), jnp.int32),
                                   sharding.logical_sharding(("batch", None), mesh, (batch, 1)))

    def ours_model_steps():
        with jax.set_mesh(mesh):
            return jax.block_until_ready(model_steps_only(params, step_cache, step_token_B1))

    our_paths = {"greedy": ours(0.0), "T=1": ours(1.0),
                 "rollout: prefill P, gather to PxG, T=1": ours_rollout,
                 "model steps only (scan of forwards, no sampling)": ours_model_steps}
    if args.ssm_decode_update == "both":
        deferred_sampler = Sampler(graphdef, SamplerConfig(**chunking, batch_multiple=devices,
                                                           ssm_decode_update="deferred"))
        our_paths.update({"greedy [deferred SSM writes]": ours(0.0, deferred_sampler),
                          "T=1 [deferred SSM writes]": ours(1.0, deferred_sampler)})
    their_paths = {"greedy": theirs(False), "T=1": theirs(True)}
    compiles_before = compile_log.compile_count()
    compile_seconds, programs = {}, {}
    for name, fn in our_paths.items():
        seen, start = compile_log.compile_count(), time.perf_counter()
        fn()
        compile_seconds[name] = time.perf_counter() - start
        programs[name] = compile_log.compile_count() - seen
    for fn in their_paths.values():
        fn(warmup=True)
    times = interleaved_rounds({**{("ours", k): v for k, v in our_paths.items()},
                                **{("theirs", k): v for k, v in their_paths.items()}}, args.rounds)
    results = []
    for name in our_paths:
        our_times = times[("ours", name)]
        their_name = name.split(" [")[0]  # "greedy [deferred SSM writes]" -> "greedy"
        ratios = (paired_ratios(times[("theirs", their_name)], our_times)
                  if their_name in their_paths else None)
        results.append((name, statistics.median(our_times),
                        compile_seconds[name] - statistics.median(our_times), programs[name],
                        statistics.median(times[("theirs", their_name)]) if ratios else None,
                        ratios))

    greedy = generate(model, rows, new, temperature=0.0, sampler=sampler).tokens
    expected = theirs(False)()[:, args.prompt:].tolist()
    agree = np.mean([a == b for row_a, row_b in zip(greedy, expected) for a, b in zip(row_a, row_b)])

    tokens = batch * new
    print(table(
        ["path", "ours ms", "ours tok/s", "compile s", "programs", "transformers ms",
         "transformers tok/s", "speed-up (median, range of rounds)"],
        [[name, ours_s * 1e3, tokens / ours_s, compile_s, str(compiled),
          "-" if theirs_s is None else f"{theirs_s * 1e3:.1f}",
          "-" if theirs_s is None else f"{tokens / theirs_s:.0f}",
          "-" if ratios is None else
          f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"]
         for name, ours_s, compile_s, compiled, theirs_s, ratios in results]))
    print(f"\ncompilations in this run: {compile_log.compile_count() - compiles_before} "
          f"({compile_log.compile_seconds():.1f} s in XLA backend compiles)")
    print(f"greedy tokens equal to transformers' greedy tokens: {agree:.1%} of {tokens}")


if __name__ == "__main__":
    main()
