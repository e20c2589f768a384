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
         "--budget-s", "600"], cwd=REPO, capture_output=True, text=True, timeout=900,
        env={**os.environ, "OUT": str(tmp_path), "JAX_PLATFORMS": "cpu"})
    assert result.returncode == 0, result.stderr[-4000:]
    results = json.loads((tmp_path / "gpu_h100.json").read_text())
    assert results["errors"] == {} and results["skipped"] == []
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
