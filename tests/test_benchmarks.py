"""The H100 benchmark script runs end to end at tiny sizes on the CPU (`--smoke`): it is run on a
GPU only a few minutes per task, so its breakage must show here first."""
import json
import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_gpu_script_smoke_run_writes_every_section(tmp_path):
    sections = ("ceilings,decode_attention,decode_16,decode_16_deferred,decode_16_fused_in_proj,"
                "decode_model_16,train,grpo,train_cudnn,train_blocks")
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
