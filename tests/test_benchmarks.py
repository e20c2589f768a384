"""The H100 benchmark script runs end to end at tiny sizes on the CPU (`--smoke`): it is run on a
GPU only a few minutes per task, so its breakage must show here first."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_gpu_script_smoke_run_writes_every_section(tmp_path):
    sections = ("ceilings,decode_attention,decode_16,decode_16_deferred,decode_16_fused_in_proj,"
                "decode_model_16,profile_decode_64,train,profile_train,grpo,train_cudnn,"
                "train_blocks")
    result = subprocess.run(
        [sys.executable, "benchmarks/gpu_h100.py", "--smoke", "--sections", sections,
         "--budget-s", "600", "--compile-cache", str(tmp_path / "xla")], cwd=REPO,
        capture_output=True, text=True, timeout=900,
        env={**os.environ, "OUT": str(tmp_path), "JAX_PLATFORMS": "cpu"})
    assert result.returncode == 0, result.stderr[-4000:]
    results = json.loads((tmp_path / "gpu_h100.json").read_text())
    assert results["errors"] == {} and results["skipped"] == []
    # The cache was on from the first compilation: the programs are kept (the smoke run's slower
    # ones; a second identical program in this process would already be loaded from there).
    assert results["compile_cache"] == str(tmp_path / "xla") and any((tmp_path / "xla").iterdir())
    assert results["decode_16"]["ms_per_step"] > 0
    assert results["decode_16_deferred"]["ssm_decode_update"] == "deferred"
    assert results["decode_16_deferred"]["tokens"] == results["decode_16"]["tokens"]
    assert results["decode_16_fused_in_proj"]["variant"] == "per_step, in_proj fused"
    assert results["decode_model_only_4"]["full_loop_over_model_only"] > 0
    assert {"mamba", "mamba, bf16 SSD operands", "attention", "mlp", "lm_head + log-probs",
            "ssd_chunked alone (float32)", "ssd_chunked alone (bf16 operands)"
            } == set(results["train_blocks"]["rows"])
    assert sum(results["grpo"]["seconds"].values()) > 0
    # On the CPU the cuDNN section runs its path with the XLA kernel (cuDNN needs a GPU).
    assert results["train_cudnn"]["attention_implementation"] == "xla"
    assert results["train_cudnn"]["step_s"] > 0
    # The profiles read the traces back: per-op device time, summed by category, traces kept.
    for key in ("profile_decode_64", "profile_train"):
        profile = results[key]
        assert profile["top"] and profile["device_ms"] > 0
        assert sum(c["ms"] for c in profile["categories"].values()) == pytest.approx(
            profile["device_ms"])
        assert (tmp_path / f"{key}.xplane.pb").stat().st_size == profile["trace_bytes"]
    assert results["profile_decode_64"]["untraced_ms_per_step"] is None  # decode_64 not run


def test_profile_categories_of_gpu_op_and_kernel_names():
    sys.path.insert(0, str(REPO / "benchmarks"))
    from _profile import category
    assert category("custom-call.12", "nvjet_hsh_128x256_64x4_2x1_v_bz_coopA_TNT") == "matmul"
    assert category("cublas-gemm.3", "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n") == "matmul"
    assert category("gemm_fusion_dot.4", "gemm_fusion_dot_4") == "matmul"
    assert category("loop_convert_fusion.2", "loop_convert_fusion_2") == "other fusion"
    assert category("input_reduce_fusion.7", "input_reduce_fusion_7") == "reduce"
    assert category("dynamic-update-slice.1", "dynamic_update_slice_fusion") == (
        "dynamic-update-slice / scatter / gather")
    assert category("transpose_fusion.1", "transpose_fusion_1") == "copy / transpose"
    assert category("custom-call.5", "cudnn_generated_fort_native_sdpa_sm90") == (
        "attention kernel (cuDNN)")
    assert category("all-reduce.1", "nccl_AllReduce") == "collective"


# A decode-like loop in XLA's HLO text format: each of 16 trips writes one (4, 1) column into a
# (4, 1024) float32 buffer in place (a fused dynamic-update-slice), reads one 64-element row of a
# (1024, 64) table through a slice, and runs a conditional whose branches cost 0 and 32 bytes.
_LOOP_HLO = """HloModule loop

%fused_write (p0: f32[4,1024], p1: f32[4,1], p2: s32[]) -> f32[4,1024] {
  %p0 = f32[4,1024]{1,0} parameter(0)
  %p1 = f32[4,1]{1,0} parameter(1)
  %p2 = s32[] parameter(2)
  %zero = s32[] constant(0)
  %col = f32[4,1]{1,0} multiply(%p1, %p1)
  ROOT %dus = f32[4,1024]{1,0} dynamic-update-slice(%p0, %col, %zero, %p2)
}

%fused_row (p0: f32[1024,64], p1: s32[]) -> f32[1,64] {
  %p0 = f32[1024,64]{1,0} parameter(0)
  %p1 = s32[] parameter(1)
  %zero = s32[] constant(0)
  %row = f32[1,64]{1,0} dynamic-slice(%p0, %p1, %zero), dynamic_slice_sizes={1,64}
  ROOT %neg = f32[1,64]{1,0} negate(%row)
}

%cheap (a: f32[4,1]) -> f32[4,1] {
  ROOT %a = f32[4,1]{1,0} parameter(0)
}

%dear (b: f32[4,1]) -> f32[4,1] {
  %b = f32[4,1]{1,0} parameter(0)
  ROOT %e = f32[4,1]{1,0} exponential(%b)
}

%body (t: (s32[], f32[4,1024], f32[1024,64], f32[4,1])) -> (s32[], f32[4,1024], f32[1024,64], f32[4,1]) {
  %t = (s32[], f32[4,1024]{1,0}, f32[1024,64]{1,0}, f32[4,1]{1,0}) parameter(0)
  %i = s32[] get-tuple-element(%t), index=0
  %buf = f32[4,1024]{1,0} get-tuple-element(%t), index=1
  %table = f32[1024,64]{1,0} get-tuple-element(%t), index=2
  %x = f32[4,1]{1,0} get-tuple-element(%t), index=3
  %new = f32[4,1024]{1,0} fusion(%buf, %x, %i), kind=kLoop, calls=%fused_write, metadata={op_name="jit(f)/while/body/dynamic_update_slice"}
  %row = f32[1,64]{1,0} fusion(%table, %i), kind=kLoop, calls=%fused_row
  %p = pred[] constant(true)
  %y = f32[4,1]{1,0} conditional(%p, %x, %x), true_computation=%cheap, false_computation=%dear
  %one = s32[] constant(1)
  %next = s32[] add(%i, %one)
  ROOT %out = (s32[], f32[4,1024]{1,0}, f32[1024,64]{1,0}, f32[4,1]{1,0}) tuple(%next, %new, %table, %y)
}

%cond (t: (s32[], f32[4,1024], f32[1024,64], f32[4,1])) -> pred[] {
  %t = (s32[], f32[4,1024]{1,0}, f32[1024,64]{1,0}, f32[4,1]{1,0}) parameter(0)
  %i = s32[] get-tuple-element(%t), index=0
  %n = s32[] constant(16)
  ROOT %lt = pred[] compare(%i, %n), direction=LT
}

ENTRY %main (buf: f32[4,1024], table: f32[1024,64], x: f32[4,1]) -> f32[4,1024] {
  %buf = f32[4,1024]{1,0} parameter(0)
  %table = f32[1024,64]{1,0} parameter(1)
  %x = f32[4,1]{1,0} parameter(2)
  %zero = s32[] constant(0)
  %init = (s32[], f32[4,1024]{1,0}, f32[1024,64]{1,0}, f32[4,1]{1,0}) tuple(%zero, %buf, %table, %x)
  %loop = (s32[], f32[4,1024]{1,0}, f32[1024,64]{1,0}, f32[4,1]{1,0}) while(%init), condition=%cond, body=%body, backend_config={"known_trip_count":{"n":"16"}}
  %final = f32[4,1024]{1,0} get-tuple-element(%loop), index=1
  ROOT %copy = f32[4,1024]{1,0} copy(%final)
}
"""


def test_traffic_model_charges_slices_in_place_updates_loops_and_conditionals():
    sys.path.insert(0, str(REPO / "benchmarks"))
    from _hlo_traffic import TrafficModel

    model = TrafficModel(_LOOP_HLO)
    charges = {c.name: c for c in model.charges()}
    # In place: the (4, 1) column read (plus the 4-byte index) and written, never the buffer.
    assert (charges["new"].read, charges["new"].written) == (16 * (16 + 4), 16 * 16)
    assert charges["new"].trips == 16 and charges["new"].op_name.endswith("dynamic_update_slice")
    # Through a slice: the 256-byte row, not the 256 KiB table.
    assert (charges["row"].read, charges["row"].written) == (16 * (256 + 4), 16 * 256)
    # The conditional: its cheapest branch (a bare parameter: nothing), and both branches listed.
    assert not any(c.in_conditional for c in charges.values())
    assert model.conditionals == [("y", 0, 16 * 32)]
    assert charges["next"].read == 16 * 8        # scalar add: two s32 operands per trip
    assert (charges["copy"].read, charges["copy"].written, charges["copy"].trips) == (16384, 16384, 1)
    assert set(charges) == {"new", "row", "next", "copy"}  # (the loop's condition is not walked)


def test_traffic_model_on_a_compiled_decode_like_loop():
    """On a real XLA:CPU program (a scan writing one row per step into a 16 MiB carried buffer),
    the model charges the rows, not 16 MiB per step."""
    import jax
    import jax.numpy as jnp
    sys.path.insert(0, str(REPO / "benchmarks"))
    from _hlo_traffic import TrafficModel

    def decode(buf_BSD, x_BD):
        def step(carry, i):
            buf_BSD, x_BD = carry
            x_BD = jnp.tanh(x_BD) + 1.0
            return (jax.lax.dynamic_update_slice_in_dim(buf_BSD, x_BD[:, None], i, axis=1), x_BD), None
        return jax.lax.scan(step, (buf_BSD, x_BD), jnp.arange(32))[0]

    buf = jax.ShapeDtypeStruct((16, 1024, 256), jnp.float32)    # 16 MiB
    x = jax.ShapeDtypeStruct((16, 256), jnp.float32)             # 16 KiB
    hlo = jax.jit(decode, donate_argnums=0).lower(buf, x).compile().as_text()
    charges = TrafficModel(hlo).charges()
    in_loop = [c for c in charges if c.trips == 32]
    assert in_loop, "the scan's body was not found"
    per_step = sum(c.total for c in in_loop) / 32
    assert 2 * 16 * 1024 <= per_step < 16 * 16 * 1024   # a few row-sized passes, no buffer copies


def _needs_cuda_plugin():
    sys.path.insert(0, str(REPO / "benchmarks"))
    from _deviceless import cuda_plugin_installed
    if not cuda_plugin_installed():
        pytest.skip("compiling for an H100 without one needs jax's CUDA plugin "
                    "(pip install 'jax[cuda13]'); not installed here (CI installs none)")


def test_h100_compile_of_the_update_keeps_the_state_sharded_and_updates_it_in_place():
    """XLA:GPU for 8 compile-only H100s (tensor 8): the update returns the state in the donated
    buffers (explicit shardings; left to propagation it came back replicated), and the skip
    guard costs no parameter-sized copies (a lax.cond kept four: 4.0x the parameters' bytes)."""
    _needs_cuda_plugin()
    code = ("import sys; sys.path.insert(0, 'benchmarks'); import json, memory_plan as mp; "
            "print(json.dumps(mp.plan('M-*', 'tensor8', 256, 1, 'full', target='h100')))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    m = json.loads(result.stdout.strip().splitlines()[-1])
    # All but the batch (argument) and the metrics (output), a few KiB, is the state, in place.
    assert m["argument"] - m["alias"] < 2**16 and m["output"] - m["alias"] < 2**16
    params = m["argument"] / 3          # float32 parameters and two Adam moments
    assert m["temp"] < 2 * params


def test_the_traffic_models_decode_chunk_compiles_on_the_host_backend():
    """traffic_h100.py builds the decode program's arguments itself; its H100 test needs jax's
    CUDA plugin, which CI lacks, so the same chunk of a small model is compiled here for the
    host's CPU: a change of the program's signature fails in CI too (it once broke unseen)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import jax
    from flax import nnx
    import traffic_h100
    from grpo_jax import sharding
    from grpo_jax.models import NemotronH, NemotronHConfig

    config = NemotronHConfig.preset("tiny-test")
    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: NemotronH(config, rngs=nnx.Rngs(0))))
    mesh = sharding.make_mesh(devices=jax.devices()[:1])
    params = traffic_h100.on(sharding.state_shardings(abstract, mesh), abstract)
    hlo, _ = traffic_h100.compile_chunk(graphdef, params, mesh, 4, 2, "per_step", {})
    assert "while" in hlo and traffic_h100.TrafficModel(hlo).charges()


def test_h100_decode_traffic_of_the_9b_loop(tmp_path):
    _needs_cuda_plugin()
    out = tmp_path / "traffic.json"
    result = subprocess.run(
        [sys.executable, "benchmarks/traffic_h100.py", "--sections", "decode", "--batches", "16", "--updates",
         "per_step", "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    row = json.loads(out.read_text())["decode B=16,per_step"]
    # The loop moves at least the roofline's bytes, and the model finds them all: the Mamba state
    # and the weights each appear as groups of their own.
    assert 0.5 < row["minimum_over_modeled"] <= 1.0
    assert row["groups"][0]["mb_per_step"] > 1000
