"""Learning end to end: a tiny random model in a toy environment (reward 1 when its answer holds a
target letter) goes from chance to >= 0.9 mean reward. Sampler, rollout loop, leave-one-out
advantages, masks, the clipped loss and AdamW all take part, so a wrong sign anywhere fails it."""
import dataclasses

import jax
import numpy as np
import pytest
from flax import nnx

from grpo_jax import chat, grpo, optim
from grpo_jax.envs import EpisodeResult
from grpo_jax.models import NemotronHConfig
from grpo_jax.models.nemotron_h import create_model
from grpo_jax.rollout import RolloutConfig, RolloutEngine
from grpo_jax.sampling import Sampler, SamplerConfig
from grpo_jax.tokenizer import build_tokenizer
from grpo_jax.train_step import Learner, LossConfig, make_update_batch

TARGET = "Z"
PROMPTS, GENERATIONS, MAX_STEPS = 8, 8, 40


class TargetLetterEnvironment:
    """Reward 1 when the model's answer contains the target letter; no tools."""

    name = "target_letter"

    def start(self, task):
        return TargetLetterEpisode()


class TargetLetterEpisode:
    messages = [{"role": "user", "content": "Answer with one capital letter."}]
    tools = []

    def call_tools(self, calls):
        return ['{"error": "no tools here"}' for _ in calls]

    def finish(self, final_message=None):
        return EpisodeResult(float(TARGET in (final_message or "")))


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    letters = " ".join(chr(c) for c in range(ord("A"), ord("Z") + 1))
    out = build_tokenizer([chat.render(TargetLetterEpisode.messages, add_generation_prompt=True) + letters] * 4,
                          300, tmp_path_factory.mktemp("letters"))
    return chat.load_tokenizer(out)


def test_policy_gradient_learns_to_say_the_target(tokenizer):
    config = dataclasses.replace(NemotronHConfig.preset("tiny-test"), vocab_size=len(tokenizer),
                                 time_step_clamp="always")
    graphdef, params = nnx.split(create_model(config, seed=0))
    engine = RolloutEngine(tokenizer, TargetLetterEnvironment(), RolloutConfig(
        max_steps=1, max_total_sequence_length=256, max_new_tokens_per_turn=8, temperature=1.0))
    sampler = Sampler(graphdef, SamplerConfig(decode_chunk=4, cache_multiple=64))
    learner = Learner(graphdef, optim.make_optimizer(lr=3e-3, min_lr=3e-3, max_num_steps=MAX_STEPS),
                      LossConfig(logprob_chunk=64))
    state = learner.init_state(params)
    tasks = [{"id": p} for p in range(PROMPTS)]

    rewards = []
    for step in range(MAX_STEPS):
        batch = engine.run(engine.sampler_policy(sampler, state.params), tasks, GENERATIONS, seed=step)
        rewards.append(float(batch.rewards_PG().mean()))
        if np.mean(rewards[-3:]) >= 0.9 and len(rewards) >= 3:
            break
        advantages_B = np.asarray(grpo.compute_advantages(batch.rewards_PG())).reshape(-1)
        arrays = batch.arrays(length_multiple=16)
        stacked = make_update_batch(arrays["tokens_BT"], arrays["loss_mask_BT"], micro_batch_size=32,
                                    advantages_B=advantages_B, sampler_logprobs_BT=arrays["sampler_logprobs_BT"],
                                    position_multiple=8)
        old_logprobs, _ = learner.logprobs(state.params, stacked["tokens"], stacked["positions"])
        stacked["old_logprobs"] = np.asarray(old_logprobs)
        state, metrics = learner.update(state, stacked)
        # The trainer's own forward reproduces the sampler's log-probs (same weights, fp32).
        assert float(jax.device_get(metrics["token_mult_prob_error"])) < 1.0 + 1e-4

    assert rewards[0] < 0.5, f"the task is too easy to show learning: {rewards}"
    assert np.mean(rewards[-3:]) >= 0.9, f"no learning within {MAX_STEPS} steps: {rewards}"
