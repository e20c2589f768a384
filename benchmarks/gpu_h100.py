"""One-run H100 benchmark of grpo_jax: ceilings, decode, prefill, train step, one GRPO step.

    python benchmarks/gpu_h100.py                 # H100 80GB: ~6 minutes, one process
    python benchmarks/gpu_h100.py --smoke         # tiny sizes on CPU, < 2 minutes: proves the script
    OUT=/some/dir python benchmarks/gpu_h100.py   # also writes $OUT/gpu_h100.json (after every section)

The next lent GPU should time what no GPU has run yet (the rest was measured on 2026-11-27,
docs/performance.md) and profile the two programs that miss their targets, in ~6.5 minutes of
the 450 s budget:

    OUT=$OUT python benchmarks/gpu_h100.py --sections ceilings,decode_16,decode_64,\
        decode_16_deferred,decode_64_deferred,profile_decode_64,train,profile_train,train_cudnn,\
        train_blocks --train-blocks mamba,mamba_bf16_ssd --compile-cache /tmp/grpo_jax_xla

(`--compile-cache`: a rerun on the same warm machine loads every program it compiled before instead
of compiling it again: compiles were 152 s of the 216 s of 2026-11-27's first run.)

Imports only jax, flax, optax, numpy and grpo_jax modules built on those (no torch, transformers,
safetensors, orbax). This file holds the run (budget, order, summary) and the ceilings; the
sections live in _gpu_decode.py and _gpu_train.py beside it, their shared sizes and helpers in
_gpu_common.py. Sections, in order (each prints as it finishes; a table closes the run):

1. ceilings: device copy bandwidth (bytes read + written) and the bf16 matmul rate (8192^3),
   measured here, in this run, as the denominators of everything below;
2. decode_attention: one attention layer's decode step over a bf16 9B-shaped KV buffer in three
   formulations (batched matmuls, multiply-and-reduce, block-diagonal matmuls as "auto" picks),
   whole buffer and an attend bucket: which reads the buffer closest to the copy bandwidth;
3. decode (batch 16, 64, 256): the 9B shape with random bf16 parameters made on device, fp32
   Mamba state, through the FULL sampling loop (`Sampler.decode`: T=1 sampling over the 131,072
   vocabulary, log-probs, cache writes, stop checks, one host round trip per chunk). The cache
   holds a synthetic context of `DECODE_CONTEXT` tokens (lengths set, contents zero: the cost of
   a step does not depend on the values). Reported: ms/step, tokens/s and the fraction of the HBM
   roofline = (weights read + Mamba state read and written + KV read) / measured bandwidth;
   decode_16_deferred / decode_64_deferred: the same loop with the Mamba state writes deferred
   to once per decode chunk (`SamplerConfig(ssm_decode_update="deferred")`: each step reads the
   states and writes none), same roofline denominator; decode_16_fused_in_proj (if time is
   left): the same loop with one in_proj matmul per Mamba block (`layers.in_proj_formulation`);
   decode_model_16: the floor under that loop, a scan of bare one-token forwards at batch 16;
   profile_decode_64: one chunk of the batch-64 loop under jax.profiler: device milliseconds per
   step by op category (matmul, reduce, copy / transpose, ...) and the top ops, read back with
   jax.profiler.ProfileData (benchmarks/_profile.py); the trace goes to $OUT;
4. prefill: one 4k and one 16k prompt (batch 1) through `Sampler.prefill` (4k-token pieces);
5. train: Learner.update (forward, backward, AdamW; fp32 master weights and moments, bf16
   compute, full remat) of an 8-block slice of the 9B (9B widths, real block order, with
   embedding and lm_head) at sequence 4096; MFU = (6 N T + attention) / time / measured matmul rate;
   profile_train: one more update of it under the profiler, summarised like profile_decode_64;
6. grpo: one GRPO step on the same model: rollout (cast to bf16, prefill P prompts, G copies,
   decode), log-prob recomputation (Learner.logprobs), update; synthetic rewards;
7. train_cudnn (only if time is left): the train step with cuDNN flash attention
   (`NemotronHConfig(attention_implementation="cudnn")`);
8. train_blocks (only if time is left): where the train step's time goes, block type by block
   type (forward and forward + backward of one Mamba, attention and MLP block, the lm_head with
   the token log-probs, and the SSD scan alone), with the Mamba block and the SSD scan once more
   with bfloat16 contraction operands (`NemotronHConfig.ssd_matmul_dtype`).

Time guard: `--budget-s` (default 450) is the whole run's budget. A section that would not fit
(its estimate plus what the higher-priority sections after it need) is skipped and listed; an
alarm interrupts a section that overruns its allotment at the next Python statement (not inside
an XLA compile). Results so far are printed and written to $OUT whatever happens.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))


# Every section, in the order a run takes them.
SECTIONS = ("ceilings", "decode_attention", "decode_16", "decode_64", "decode_16_deferred",
            "decode_64_deferred", "decode_16_fused_in_proj", "decode_model_16",
            "profile_decode_64", "prefill", "decode_256", "train", "profile_train", "grpo",
            "train_cudnn", "train_blocks")
# Rows of the train_blocks section, by their --train-blocks names.
TRAIN_BLOCK_NAMES = ("mamba", "mamba_bf16_ssd", "attention", "mlp", "lm_head", "ssd", "ssd_bf16")


def _parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes on the CPU backend: checks the script end to end")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="whole-run budget in seconds (default 450; --smoke: 110)")
    parser.add_argument("--sections", default=None,
                        help="comma-separated subset of: " + ",".join(SECTIONS))
    parser.add_argument("--train-layers", type=int, default=None,
                        help="blocks of the train slice (default 8, at most 22)")
    parser.add_argument("--train-blocks", default=",".join(TRAIN_BLOCK_NAMES),
                        help="rows of the train_blocks section (default all of them)")
    parser.add_argument("--compile-cache", default="",
                        help="directory of JAX's persistent compilation cache (default: none)")
    parser.add_argument("--train-remat", default="full",
                        help="remat policy of the train slice (models.config.REMAT_POLICIES or "
                             "'none'; default full)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.train_blocks.split(",")) - set(TRAIN_BLOCK_NAMES))
    if unknown:
        parser.error(f"--train-blocks: unknown rows {unknown}; expected some of "
                     f"{list(TRAIN_BLOCK_NAMES)}")
    return args


if __name__ == "__main__":
    _ARGS = _parse_args()
    if _ARGS.smoke:
        os.environ["JAX_PLATFORMS"] = "cpu"
    else:
        # JAX preallocates 75% of the GPU by default; the 9B decode at batch 256 and the train
        # step need more.
        os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.94")

sys.path.insert(0, HERE)
from _common import block, machine_line, table  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from _gpu_common import FULL, SMOKE, Sizes, model_config, nbytes, random_params, timed  # noqa: E402
from _gpu_decode import (DECODE_VARIANTS, section_decode, section_decode_attention,  # noqa: E402
                         section_decode_model_only, section_prefill, section_profile_decode)
from _gpu_train import (section_grpo, section_profile_train, section_train,  # noqa: E402
                        section_train_blocks, train_setup, with_attention_implementation)
from grpo_jax import compile_log  # noqa: E402

# Seconds each section is expected to take on an H100 (compiles included): ~1.5x what it took on
# the H100 of 2026-11-27 (docs/measurements/h100_2026-11-27/), and whether it may be skipped to
# save the budget for later ones. train and profile_train have 15 s and 5 s more since the
# attention's key-prefix groups (8 attention shapes to compile and autotune instead of 1); prefill
# 15 s more since its pieces attend to buckets of their lengths (3 programs for 16k instead of 1,
# and a warm-up call of the 16k prompt).
ESTIMATE_S = {"ceilings": 10, "decode_attention": 30, "decode_16": 35, "decode_64": 30,
              "decode_16_deferred": 35, "decode_64_deferred": 30, "decode_16_fused_in_proj": 35,
              "decode_model_16": 15, "prefill": 45, "decode_256": 30, "train": 95, "grpo": 40,
              "train_cudnn": 45, "train_blocks": None,  # set in main: rows asked for x per row
              "profile_decode_64": 25, "profile_train": 45}
TRAIN_BLOCK_ROW_S = 35
OPTIONAL = {"decode_16_fused_in_proj", "decode_model_16", "prefill", "decode_256",
            "train_cudnn", "train_blocks", "profile_decode_64", "profile_train"}


class SectionTimeout(Exception):
    pass


class Guard:
    """The run's time budget and per-section alarms."""

    def __init__(self, budget_s: float, scale: float):
        self.start = time.perf_counter()
        self.budget_s = budget_s
        self.scale = scale  # estimates are for the H100; the smoke run scales them down
        self.skipped: list[str] = []

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def remaining(self) -> float:
        return self.budget_s - self.elapsed()

    def fits(self, name: str, later_required: list[str]) -> bool:
        need = (ESTIMATE_S.get(name, 60) + sum(ESTIMATE_S.get(n, 60) for n in later_required))
        return self.remaining() >= need * self.scale

    @contextlib.contextmanager
    def alarm(self, seconds: float):
        """Raises SectionTimeout in the main thread after `seconds` (at a Python statement)."""
        def handler(signum, frame):
            raise SectionTimeout(f"section ran past its {seconds:.0f} s allotment")
        previous = signal.signal(signal.SIGALRM, handler)
        signal.setitimer(signal.ITIMER_REAL, max(1.0, seconds))
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


# ----------------------------------------------------------------------------- sections


def section_ceilings(sizes: Sizes, results: dict):
    x = jnp.zeros((sizes.copy_elements,), jnp.float32)
    add = jax.jit(lambda x, c: x + c)
    block(add(x, 1.0))

    def run_copy():
        out = None
        for i in range(sizes.timing_repeats):
            out = add(x, float(i))
        block(out)

    seconds = timed(run_copy, 3) / sizes.timing_repeats
    bandwidth = 2 * x.nbytes / seconds
    del x
    n = sizes.matmul
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.bfloat16)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.bfloat16)
    matmul = jax.jit(lambda a, b: a @ b)
    block(matmul(a, b))

    def run_matmul():
        out = None
        for _ in range(sizes.timing_repeats):
            out = matmul(a, b)
        block(out)

    seconds_mm = timed(run_matmul, 3) / sizes.timing_repeats
    results["ceilings"] = dict(copy_bytes=2 * sizes.copy_elements * 4, copy_s=seconds,
                               bandwidth_Bps=bandwidth, matmul_n=n,
                               matmul_flops_per_s=2 * n ** 3 / seconds_mm)
    print(f"[ceilings] copy {bandwidth / 1e12:.3f} TB/s (read + write of "
          f"{sizes.copy_elements * 4 / 2**30:.2f} GiB), bf16 matmul {n}^3 "
          f"{2 * n ** 3 / seconds_mm / 1e12:.1f} TFLOP/s", flush=True)


# ----------------------------------------------------------------------------- the run


def summary_rows(results: dict) -> list[list[str]]:
    rows = []
    c = results.get("ceilings")
    if c:
        rows.append(["copy bandwidth", f"{c['bandwidth_Bps'] / 1e12:.3f} TB/s", "", "ceiling"])
        rows.append([f"bf16 matmul {c['matmul_n']}^3", f"{c['matmul_flops_per_s'] / 1e12:.1f} "
                     "TFLOP/s", "", "ceiling"])
    targets = {16: ("<= 9.6 ms/step, >= 1,650 tok/s", 0.9), 64: (">= 4,000 tok/s", None)}
    for key, r in results.items():
        if key.startswith("decode_model_only"):
            rows.append([f"decode B={r['batch']} model steps only", f"{r['ms_per_step']:.2f} "
                         "ms/step", f"{r['fraction_of_roofline']:.0%} of {r['roofline_ms']:.2f} "
                         "ms roofline", "floor under the loop"])
        elif key.startswith("decode_") and isinstance(r, dict) and "ms_per_step" in r:
            target = targets.get(r["batch"], ("", None))[0]
            rows.append([f"decode B={r['batch']} (9B, full loop, {r['variant']})",
                         f"{r['ms_per_step']:.2f} ms/step, {r['tokens_per_s']:,.0f} tok/s",
                         f"{r['fraction_of_roofline']:.0%} of {r['roofline_ms']:.2f} ms roofline",
                         target])
    for key in ("profile_decode_64", "profile_train"):
        if key in results:
            r = results[key]
            per = "step" if key == "profile_train" else "decode step"
            top, row = next(iter(r["categories"].items()), ("-", dict(share=0.0)))
            rows.append([f"{key} (traced)", f"{r['device_ms']:.2f} ms of device events per "
                         f"{per}, {r['wall_ms_per_step']:.2f} ms wall",
                         f"largest: {top} {row['share']:.0%}", ""])
    if "prefill" in results:
        for n, r in results["prefill"]["lengths"].items():
            rows.append([f"prefill {n} tokens (9B, B=1)", f"{r['tokens_per_s']:,.0f} tok/s",
                         f"MFU {r['mfu']:.0%}", ""])
    for key in ("train", "train_cudnn"):
        if key in results:
            r = results[key]
            rows.append([f"{key} {len(r['pattern'])} layers, remat {r['remat']}, "
                         f"{r['micro_batch']}x{r['micro_batches']}x{r['seq']}",
                         f"{r['step_s']:.2f} s/step, "
                         f"{r['tokens_per_s']:,.0f} tok/s", f"MFU {r['mfu']:.0%}",
                         "MFU >= 60% (remat)"])
    if "grpo" in results:
        r = results["grpo"]
        rows.append(["GRPO step (rollout / logprobs / update)",
                     " / ".join(f"{r['seconds'][k]:.2f}" for k in ("rollout", "logprobs",
                                                                   "update")) + " s",
                     f"total {r['total_s']:.2f} s", ""])
    return rows


def write_json(results: dict):
    out = os.environ.get("OUT")
    if out:
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "gpu_h100.json"), "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1, default=str)


def main(args) -> dict:
    sizes = SMOKE if args.smoke else FULL
    budget = args.budget_s or (110.0 if args.smoke else 450.0)
    guard = Guard(budget, scale=0.12 if args.smoke else 1.0)
    wanted = list(SECTIONS) if not args.sections else [
        s for s in SECTIONS if s in args.sections.split(",")]
    ESTIMATE_S["train_blocks"] = TRAIN_BLOCK_ROW_S * len(args.train_blocks.split(","))
    compile_log.install()
    results = {"machine": machine_line(), "mode": "smoke" if args.smoke else "full",
               "budget_s": budget, "errors": {},
               "compile_cache": compile_log.use_persistent_cache(args.compile_cache)}
    print(results["machine"], flush=True)
    print(f"budget {budget:.0f} s; sections {wanted}", flush=True)
    if not args.smoke and jax.devices()[0].platform != "gpu":
        print("WARNING: no GPU found; use --smoke on CPU", flush=True)
    names_batches = {f"decode_{b_full}": b for b_full, b in zip(FULL.decode_batches,
                                                                 sizes.decode_batches)}
    nine_b: dict = {}
    train: dict = {}

    def ensure_nine_b():
        if not nine_b:
            config = model_config(sizes, param_dtype=jnp.bfloat16, compute_dtype=jnp.bfloat16)
            start = time.perf_counter()
            nine_b["config"] = config
            nine_b["graphdef"], nine_b["params"] = random_params(config)
            results["model_9b_init_s"] = time.perf_counter() - start
            print(f"[model] {config.num_layers} layers, {nbytes(nine_b['params']) / 1e9:.2f} GB "
                  f"of {config.param_dtype.name} parameters, made in "
                  f"{results['model_9b_init_s']:.1f} s", flush=True)

    def ensure_train():
        if not train:
            nine_b.clear()  # frees the 9B parameters before the train model needs the memory
            config, graphdef, params, optimizer = train_setup(sizes, args.train_layers, args.train_remat)
            train.update(config=config, graphdef=graphdef, params=params, optimizer=optimizer)

    for i, name in enumerate(wanted):
        later_required = [n for n in wanted[i + 1:] if n not in OPTIONAL]
        if name in OPTIONAL and not guard.fits(name, later_required):
            guard.skipped.append(name)
            print(f"[{name}] skipped: {guard.remaining():.0f} s left of the budget", flush=True)
            continue
        if name != "ceilings" and "ceilings" not in results:
            results["errors"][name] = "needs the ceilings section"
            continue
        allotment = max(guard.remaining() - sum(ESTIMATE_S[n] * guard.scale
                                                for n in later_required), 30.0)
        start = time.perf_counter()
        try:
            with guard.alarm(allotment):
                if name == "ceilings":
                    section_ceilings(sizes, results)
                elif name == "decode_attention":
                    section_decode_attention(sizes, results)
                elif name.startswith("decode_") or name == "prefill":
                    ensure_nine_b()
                    if name == "decode_model_16":
                        section_decode_model_only(sizes, results, nine_b, sizes.decode_batches[0],
                                                  "decode_16")
                    elif name == "prefill":
                        section_prefill(sizes, results, nine_b)
                    else:
                        suffix = next(v for v in sorted(DECODE_VARIANTS, key=len, reverse=True)
                                      if name.endswith(v))
                        ssm_update, in_proj = DECODE_VARIANTS[suffix]
                        section_decode(sizes, results, nine_b,
                                       names_batches[name[:len(name) - len(suffix)]], name,
                                       ssm_update=ssm_update, in_proj=in_proj)
                elif name == "profile_decode_64":
                    ensure_nine_b()
                    section_profile_decode(sizes, results, nine_b, names_batches["decode_64"],
                                           name, "decode_64")
                elif name == "train":
                    ensure_train()
                    section_train(sizes, results, train)
                elif name == "profile_train":
                    ensure_train()
                    if "learner" not in train:
                        section_train(sizes, results, train)
                    section_profile_train(sizes, results, train)
                elif name == "grpo":
                    ensure_train()
                    if "learner" not in train:
                        section_train(sizes, results, train)
                    section_grpo(sizes, results, train)
                elif name == "train_blocks":
                    nine_b.clear()
                    train.clear()
                    section_train_blocks(sizes, results, args.train_blocks)
                elif name == "train_cudnn":
                    ensure_train()
                    # cuDNN needs a GPU: the smoke run takes the same path with the XLA kernel.
                    view = with_attention_implementation(train, "xla" if args.smoke else "cudnn")
                    # The view's run takes over the master weights (its update donates them).
                    train.pop("params", None)
                    train.pop("state_after", None)
                    section_train(sizes, results, view, key="train_cudnn")
                    results["train_cudnn"]["attention_implementation"] = (
                        view["config"].attention_implementation)
                    train.update(learner=view["learner"], state_after=view["state_after"])
        except Exception as e:  # noqa: BLE001 - a failed section must not lose the others
            results["errors"][name] = f"{type(e).__name__}: {e}"
            print(f"[{name}] FAILED after {time.perf_counter() - start:.0f} s: "
                  f"{type(e).__name__}: {str(e)[:500]}", flush=True)
            if not isinstance(e, SectionTimeout):
                traceback.print_exc(limit=4)
        results.setdefault("section_s", {})[name] = time.perf_counter() - start
        results["compilations"] = compile_log.compile_count()
        results["compile_s"] = compile_log.compile_seconds()
        results["compile_cache_hits"] = compile_log.cache_hits()
        write_json(results)

    results["skipped"] = guard.skipped
    results["total_s"] = guard.elapsed()
    write_json(results)
    print("\n" + table(["measure", "result", "vs ceiling", "target"], summary_rows(results)))
    print(f"\n{results['compilations']} XLA compilations ({results['compile_s']:.0f} s, "
          f"{results['compile_cache_hits']} of them loaded from the compilation cache); total "
          f"{results['total_s']:.0f} s; skipped {guard.skipped or 'none'}; errors "
          f"{list(results['errors']) or 'none'}")
    return results


if __name__ == "__main__":
    main(_ARGS)
