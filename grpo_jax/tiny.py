"""The embedded tiny workplace assistant: its tokenizer and its randomly initialised checkpoint.

    python -m grpo_jax.tiny init --out /tmp/tiny-init        # tokenizer + random tiny model
    python launch.py --config=configs/workplace.py:tiny_sft --config.model.path=/tmp/tiny-init \
        --workdir=/tmp/tiny-sft                              # supervised warm start (same trainer)
    cp -r /tmp/tiny-sft/hf_export assets/tiny-workplace       # the shipped checkpoint

Everything here is deterministic: the tokenizer is trained on text the task generator writes
(prompts, expert turns and the tool responses those turns get), and the model is initialised from
a fixed seed, so rebuilding the asset with the documented commands reproduces it.
"""
from __future__ import annotations

import argparse
import pathlib
from typing import Iterator

import ml_collections

from grpo_jax import chat
from grpo_jax.data import TaskStream, validation_tasks
from grpo_jax.envs import ToolCall, make_environment
from grpo_jax.models import NemotronHConfig, save_hf_model
from grpo_jax.models.nemotron_h import create_model
from grpo_jax.tokenizer import build_tokenizer

# The tiny architecture: all three block types, dimensions that keep a GRPO step on two CPU cores
# to seconds.
TINY_ARCHITECTURE = dict(
    hidden_size=128, layer_pattern="M-*M-M*-", num_attention_heads=4, num_key_value_heads=2,
    head_dim=32, intermediate_size=256, mamba_num_heads=4, mamba_head_dim=32, ssm_state_size=32,
    n_groups=1, conv_kernel=4, chunk_size=64, initializer_range=0.02,
)
TINY_VOCAB_SIZE = 2048
TOKENIZER_CORPUS_TASKS = 3000


def trajectory_text(env, task: dict, enable_thinking: bool = False) -> str:
    """The full text of the task's expert trajectory as the rollout would assemble it."""
    episode = env.start(task)
    text = chat.render(episode.messages, episode.tools, add_generation_prompt=True, enable_thinking=enable_thinking)
    for turn in task["expert"]:
        calls = turn.get("tool_calls")
        text += chat.assistant_generation(turn.get("content"), calls)
        if calls:
            responses = episode.call_tools([ToolCall(c["name"], c["arguments"]) for c in calls])
            text += chat.tool_response_continuation(responses, enable_thinking=enable_thinking)
    return text


def corpus(env_config, num_tasks: int, seed: int) -> Iterator[str]:
    """Expert trajectory texts of training and validation tasks (the tokenizer's training text)."""
    env = make_environment(env_config)
    stream = TaskStream(env_config, seed=seed, block_size=env_config.task_block_size)
    for task in stream.take(num_tasks):
        yield trajectory_text(env, task)
    for task in validation_tasks(env_config, num_tasks=max(1, num_tasks // 10), seed=seed):
        yield trajectory_text(env, task)


def model_config(vocab_size: int, tokenizer) -> NemotronHConfig:
    hf = dict(TINY_ARCHITECTURE)
    hf["hybrid_override_pattern"] = hf.pop("layer_pattern")
    hf.update(vocab_size=vocab_size, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
              pad_token_id=tokenizer.pad_token_id)
    return NemotronHConfig.from_hf_config(hf)


def init(out_dir: pathlib.Path, env_config: ml_collections.ConfigDict, *, seed: int = 0,
         corpus_tasks: int = TOKENIZER_CORPUS_TASKS, vocab_size: int = TINY_VOCAB_SIZE) -> pathlib.Path:
    """Writes the tokenizer and a randomly initialised tiny model to `out_dir` (an HF directory)."""
    out_dir = pathlib.Path(out_dir)
    build_tokenizer(corpus(env_config, corpus_tasks, seed), vocab_size, out_dir)
    tokenizer = chat.load_tokenizer(out_dir)
    config = model_config(len(tokenizer), tokenizer)
    save_hf_model(create_model(config, seed=seed), out_dir)
    return out_dir


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    init_parser = sub.add_parser("init", help="tokenizer + randomly initialised tiny model")
    init_parser.add_argument("--out", required=True, type=pathlib.Path)
    init_parser.add_argument("--seed", type=int, default=0)
    init_parser.add_argument("--corpus-tasks", type=int, default=TOKENIZER_CORPUS_TASKS)
    init_parser.add_argument("--vocab-size", type=int, default=TINY_VOCAB_SIZE)
    args = parser.parse_args(argv)
    from configs import workplace
    env_config = workplace.get_config("tiny_sft").env  # the warm start's task mix
    init(args.out, env_config, seed=args.seed, corpus_tasks=args.corpus_tasks, vocab_size=args.vocab_size)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
