"""The multi-turn rollout loop: scripted policies with known answers, exact token accounting,
the three ways an episode ends, fuzzed model output, and a real sampler end to end."""
import dataclasses
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from grpo_jax import chat, sft
from grpo_jax.data import TaskStream
from grpo_jax.envs import ToolCall, make_environment
from grpo_jax.rollout import (END_ANSWER, END_MAX_STEPS, END_TRUNCATED, RolloutConfig, RolloutEngine,
                              ScriptedPolicy)


@pytest.fixture(scope="module")
def env(tiny_env_config):
    return make_environment(tiny_env_config)


@pytest.fixture(scope="module")
def tasks(tiny_env_config):
    stream = TaskStream(tiny_env_config, seed=7, block_size=64)
    by_family = {}
    for task in stream.take(64):
        by_family.setdefault(task["family"], task)
    return by_family


def _engine(tokenizer, env, **overrides):
    return RolloutEngine(tokenizer, env, RolloutConfig(**{"max_steps": 3, "max_total_sequence_length": 4096,
                                                          "max_new_tokens_per_turn": 256, **overrides}))


def _turn(tokenizer, content=None, calls=None):
    return chat.encode_piece(tokenizer, chat.assistant_generation(content, calls))


def _search_call(task):
    customer = task["params"]["customer"] if "customer" in task["params"] else "a"
    return {"name": "customer_relationship_manager_search_customers", "arguments": {"customer_name": customer}}


def test_scripted_episodes_call_the_right_tools_and_end_for_each_reason(workplace_tokenizer, env, tasks):
    tok = workplace_tokenizer
    task = tasks["R2"]  # remove a named customer: search, delete, answer
    expert = [_turn(tok, t.get("content"), t.get("tool_calls")) for t in task["expert"]]
    search = _turn(tok, None, [_search_call(task)])
    scripts = [expert, [search, search, search]]
    engine = _engine(tok, env)
    batch = engine.run(ScriptedPolicy(scripts, engine.stop_ids), [task], num_generations=2, seed=0)
    solved, looping = batch.trajectories

    assert (solved.end_reason, solved.reward, solved.num_turns, solved.truncated) == (END_ANSWER, 1.0, 3, False)
    assert [c["name"] for c in solved.info["calls"]] == [c["name"] for t in task["expert"][:2] for c in t["tool_calls"]]
    assert (looping.end_reason, looping.reward, looping.num_turns, looping.num_tool_calls) == (END_MAX_STEPS, 0.0, 3, 3)
    assert [c["name"] for c in looping.info["calls"]] == [_search_call(task)["name"]] * 3

    # Exact token accounting: prompt, then each scripted turn (mask 1) and the responses the same
    # calls get on a fresh episode, with the chat glue (mask 0).
    episode = env.start(task)
    prompt = chat.encode_piece(tok, chat.render(episode.messages, episode.tools, add_generation_prompt=True))
    tokens, mask = list(prompt), [0] * len(prompt)
    for turn_tokens, turn in zip(expert, task["expert"]):
        tokens += turn_tokens
        mask += [1] * len(turn_tokens)
        if turn.get("tool_calls"):
            responses = episode.call_tools([ToolCall(c["name"], c["arguments"]) for c in turn["tool_calls"]])
            glue = chat.encode_piece(tok, chat.tool_response_continuation(responses))
            tokens += glue
            mask += [0] * len(glue)
    assert solved.tokens == tokens and solved.loss_mask == mask
    assert solved.prompt_length == len(prompt)
    assert solved.sampler_logprobs == [0.0] * len(tokens)
    arrays = batch.arrays(length_multiple=64)
    assert arrays["tokens_BT"].shape[1] % 64 == 0
    np.testing.assert_array_equal(arrays["groups_B"], [0, 0])
    np.testing.assert_array_equal(arrays["rewards_B"], [1.0, 0.0])
    np.testing.assert_array_equal(arrays["loss_mask_BT"][0, :len(mask)], mask)
    assert arrays["loss_mask_BT"][0, len(mask):].sum() == 0


def test_episodes_are_truncated_by_the_sequence_budget(workplace_tokenizer, env, tasks):
    tok = workplace_tokenizer
    task = tasks["R2"]
    prompt_length = len(_engine(tok, env).prompt_tokens(env.start(task))[0])
    search = _turn(tok, None, [_search_call(task)])
    rambling = chat.encode_piece(tok, "lorem ipsum " * 40)  # no end-of-turn token within the budget
    engine = _engine(tok, env, max_total_sequence_length=prompt_length + len(search) + 8)
    batch = engine.run(ScriptedPolicy([[rambling], [search, search]], engine.stop_ids), [task], 2, seed=0)
    cut, no_room = batch.trajectories
    # Cut mid-turn: the budget ran out before the end-of-turn token; the turn is kept and trained on.
    assert (cut.end_reason, cut.truncated, cut.length) == (END_TRUNCATED, True, prompt_length + len(search) + 8)
    assert cut.loss_mask[prompt_length:] == [1] * (len(search) + 8)
    # The search ran, but its response does not fit: ended, scored anyway.
    assert (no_room.end_reason, no_room.truncated, no_room.num_tool_calls) == (END_TRUNCATED, True, 1)
    assert no_room.length == prompt_length + len(search)
    assert no_room.reward == 0.0 and no_room.info["num_calls"] == 1


def test_groups_and_rows_map_to_tasks(workplace_tokenizer, env, tasks):
    tok = workplace_tokenizer
    chosen = [tasks["E3"], tasks["R1"]]
    scripts = [[_turn(tok, t.get("content"), t.get("tool_calls")) for t in task["expert"]]
               for task in chosen for _ in range(3)]
    engine = _engine(tok, env)
    policy = ScriptedPolicy(scripts, engine.stop_ids)
    batch = engine.run(policy, chosen, num_generations=3, seed=0)
    assert [t.group for t in batch.trajectories] == [0, 0, 0, 1, 1, 1]
    assert [t.task["id"] for t in batch.trajectories] == [chosen[0]["id"]] * 3 + [chosen[1]["id"]] * 3
    assert batch.rewards_PG().tolist() == [[1.0] * 3, [1.0] * 3]
    assert len(policy.prompts) == 2  # one prefill per task, shared by its generations


def test_trajectory_tokens_equal_the_tokenised_transcript_where_the_format_allows(workplace_tokenizer, env, tasks):
    """decode(tokens) equals render(transcript) up to the documented differences (chat.py module
    doc): the `<think></think>` of each generation prompt and the final newline; and the tokens
    are exactly the tokenisation of their own text (no re-tokenisation drift at piece seams)."""
    tok = workplace_tokenizer
    engine = _engine(tok, env)
    for family in ("E3", "R4", "C11"):
        task = tasks[family]
        batch = sft.expert_batch(engine, [task])
        trajectory = batch.trajectories[0]
        text = chat.decode_tokens(tok, trajectory.tokens)
        rendered = chat.render(trajectory.transcript, env.start(task).tools)
        generation_prompt = chat.generation_prompt(enable_thinking=False)
        assert text.replace(generation_prompt, chat.ASSISTANT_HEADER) + "\n" == rendered
        assert chat.encode_piece(tok, text) == trajectory.tokens


def test_expert_replays_score_one_for_every_tiny_family(workplace_tokenizer, env, tasks):
    batch = sft.expert_batch(_engine(workplace_tokenizer, env), list(tasks.values()))
    assert [t.reward for t in batch.trajectories] == [1.0] * len(tasks)
    assert all(t.end_reason == END_ANSWER and t.num_parse_errors == 0 for t in batch.trajectories)
    # An expert cut short (here by the sequence budget) is refused, not trained on.
    with pytest.raises(ValueError, match="expert trajectory of task .* scored 0.0"):
        sft.expert_batch(_engine(workplace_tokenizer, env, max_total_sequence_length=150), [tasks["E3"]])


model_text = st.one_of(
    st.text(max_size=300),
    st.builds(lambda body: chat.TOOLCALL_OPEN + body + chat.TOOLCALL_CLOSE, st.text(max_size=200)),
    st.builds(lambda name, args: chat.TOOLCALL_OPEN + json.dumps([{"name": name, "arguments": args}]) + chat.TOOLCALL_CLOSE,
              st.sampled_from(["customer_relationship_manager_delete_customer", "email_send_email", "nope", ""]),
              st.one_of(st.dictionaries(st.text(max_size=12), st.one_of(st.text(max_size=40), st.integers()), max_size=4),
                        st.text(max_size=30), st.integers())),
    st.builds(lambda a, b: chat.TOOLCALL_OPEN + a + chat.TOOLCALL_OPEN + b, st.text(max_size=50), st.text(max_size=50)),
    st.builds(lambda n: chat.TOOLCALL_OPEN + '[{"name": "email_send_email", "arguments": {"body": "' + "x" * n + '"}}]'
              + chat.TOOLCALL_CLOSE, st.integers(0, 20000)),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(turns=st.lists(model_text, min_size=1, max_size=3))
def test_fuzzed_model_output_never_crashes_the_loop(workplace_tokenizer, env, tasks, turns):
    tok = workplace_tokenizer
    engine = _engine(tok, env, max_total_sequence_length=8192, max_new_tokens_per_turn=8192)
    scripted = [chat.encode_piece(tok, text) + [engine.stop_ids[0]] for text in turns]
    policy = ScriptedPolicy([scripted], engine.stop_ids)
    trajectory = engine.run(policy, [tasks["R2"]], 1, seed=0).trajectories[0]
    assert trajectory.reward in (0.0, 1.0) and trajectory.end_reason in (END_ANSWER, END_MAX_STEPS, END_TRUNCATED)
    # Every malformed call is answered: each error the parser reported reached the model.
    for index, text in enumerate(turns[:trajectory.num_turns]):
        parsed = chat.parse_assistant(chat.decode_tokens(tok, scripted[index])[:-len(chat.END_OF_TURN)],
                                      env.start(tasks["R2"]).tools or None)  # as the rollout parses
        if parsed.errors and index < len(policy.appended):
            appended = chat.decode_tokens(tok, policy.appended[index][0])
            for error in parsed.errors:
                assert error.as_tool_response() in appended


def test_a_tiny_random_model_runs_rollouts_end_to_end(workplace_tokenizer, env, tasks):
    from flax import nnx

    from grpo_jax.models import NemotronHConfig
    from grpo_jax.models.nemotron_h import create_model
    from grpo_jax.sampling import Sampler, SamplerConfig

    config = dataclasses.replace(NemotronHConfig.preset("tiny-test"), vocab_size=len(workplace_tokenizer),
                                 time_step_clamp="always")
    model = create_model(config, seed=0)
    graphdef, params = nnx.split(model)
    engine = _engine(workplace_tokenizer, env, max_steps=2, max_new_tokens_per_turn=12,
                     max_total_sequence_length=2048)
    sampler = Sampler(graphdef, SamplerConfig(decode_chunk=4, cache_multiple=256))
    batch = engine.run(engine.sampler_policy(sampler, params), [tasks["E3"], tasks["R1"]], 2, seed=3)
    assert len(batch.trajectories) == 4 and batch.rewards_PG().shape == (2, 2)
    for trajectory in batch.trajectories:
        generated = [lp for lp, m in zip(trajectory.sampler_logprobs, trajectory.loss_mask) if m]
        assert 1 <= trajectory.num_turns <= 2 and len(generated) == trajectory.num_generated_tokens
        assert all(lp <= 0.0 for lp in generated)
