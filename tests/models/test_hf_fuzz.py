"""Random Nemotron-H shapes against transformers 5.24 (torch, CPU, float32). Slow: ~4 s a shape.

Each seed draws a config: any mix of Mamba / attention / MLP blocks (models without attention or
without Mamba layers included), MQA to MHA, one to four groups, conv kernels 1-4, chunk sizes from
1 to past the sequence, state sizes down to 1. Checked per shape:
- the export's tensors equal the checkpoint's bit for bit, and transformers reloads it to the
  same logits;
- the full forward's logits;
- our prefill + one-token decode against transformers' cached decode (time_step_clamp="prefill";
  a model without attention layers, which transformers 5.24 cannot cache, against its full
  forward with the clamp everywhere);
- the sampler's greedy tokens for ragged prompts with a ragged continuation, against greedy
  decoding by transformers' full forwards (no cache, no pad-token masking), with the Mamba states
  written every decode step and deferred to the end of each decode chunk.
"""
import numpy as np
import pytest

from grpo_jax.models import load_hf_model, save_hf_model
from grpo_jax.sampling import Sampler, SamplerConfig

from tests.models.helpers import (Runner, hf_cached_decode_logits, hf_logits, make_hf_model,
                                  relative_error, safetensors_tensors, save_hf_model_dir)

pytestmark = pytest.mark.slow
TOLERANCE = 1e-5
SEEDS = range(48)


def random_hf_config(rng) -> dict:
    heads = int(rng.choice([1, 2, 3, 4, 6]))
    groups = int(rng.choice([1, 2, 3, 4]))
    return dict(
        vocab_size=int(rng.integers(20, 130)), hidden_size=int(rng.choice([8, 16, 24, 40])),
        hybrid_override_pattern="".join(rng.choice(list("M*-"), int(rng.integers(1, 7)))),
        num_attention_heads=heads,
        num_key_value_heads=int(rng.choice([d for d in range(1, heads + 1) if heads % d == 0])),
        head_dim=int(rng.choice([2, 4, 8, 12])), intermediate_size=int(rng.choice([8, 20, 64])),
        mamba_num_heads=groups * int(rng.integers(1, 4)), n_groups=groups,
        mamba_head_dim=int(rng.choice([2, 4, 6, 8])), ssm_state_size=int(rng.choice([1, 2, 5, 16])),
        conv_kernel=int(rng.integers(1, 5)), chunk_size=int(rng.choice([1, 2, 3, 5, 8, 64])),
        use_conv_bias=bool(rng.integers(2)), time_step_min=float(rng.choice([0.001, 0.05])),
        layer_norm_epsilon=float(rng.choice([1e-5, 1e-6])), initializer_range=0.1)


def hf_greedy(hf_model, prompt, num_tokens: int) -> list[int]:
    sequence = list(prompt)
    for _ in range(num_tokens):
        sequence.append(int(np.argmax(hf_logits(hf_model, [sequence])[0, -1])))
    return sequence[len(prompt):]


@pytest.mark.parametrize("seed", SEEDS)
def test_random_shape_matches_transformers(seed, tmp_path):
    import transformers

    rng = np.random.default_rng(seed)
    hf_config = random_hf_config(rng)
    hf_model = make_hf_model(hf_config, seed=seed)
    path = save_hf_model_dir(hf_model, tmp_path)
    model = load_hf_model(path)  # time_step_clamp="prefill", as transformers runs
    exact = load_hf_model(path, time_step_clamp="always")  # decode equals the full forward
    vocab, has_attention = hf_config["vocab_size"], "*" in hf_config["hybrid_override_pattern"]

    save_hf_model(model, tmp_path / "export")
    exported, original = safetensors_tensors(tmp_path / "export"), safetensors_tensors(tmp_path)
    assert sorted(exported) == sorted(original)
    for name, tensor in original.items():
        assert exported[name].tobytes() == tensor.tobytes(), name

    batch, length = int(rng.integers(1, 4)), int(rng.integers(2, 30))
    ids = rng.integers(0, vocab, (batch, length))
    expected = hf_logits(hf_model, ids)
    assert relative_error(Runner(model).full(ids), expected) <= TOLERANCE
    reloaded = transformers.NemotronHForCausalLM.from_pretrained(tmp_path / "export").eval()
    np.testing.assert_array_equal(hf_logits(reloaded, ids), expected)

    prompt_len = int(rng.integers(1, length))
    runner = Runner(model if has_attention else exact)
    cache = runner.model.init_cache(batch, 32)
    prefill, cache = runner.extend(ids[:, :prompt_len], cache)
    decoded, _ = runner.decode(cache, ids[:, prompt_len:])
    expected = (hf_cached_decode_logits(hf_model, ids, prompt_len) if has_attention
                else hf_logits(hf_model, ids))
    assert relative_error(np.concatenate([prefill, decoded], axis=1), expected) <= TOLERANCE

    def ragged(rows, longest):
        return [rng.integers(0, vocab, int(rng.integers(1, longest))).tolist() for _ in range(rows)]

    rows = int(rng.integers(1, 4))
    prompts, continuations = ragged(rows, 12), ragged(rows, 6)
    num_new = int(rng.integers(1, 10))
    exact_runner = Runner(exact)
    graphdef, params = exact_runner.graphdef, exact_runner.state
    expected = [hf_greedy(hf_model, prompt + continuation, num_new)
                for prompt, continuation in zip(prompts, continuations)]
    for ssm_update in ("per_step", "deferred"):
        sampler = Sampler(graphdef, SamplerConfig(decode_chunk=4, cache_multiple=32,
                                                  ssm_decode_update=ssm_update))
        state = sampler.prefill(params, prompts, max_len=32)
        state = sampler.extend(params, state, continuations)
        _, result = sampler.decode(params, state, num_new, temperature=0.0)
        assert result.tokens[:rows] == expected, f"{ssm_update} decode of {hf_config}"
