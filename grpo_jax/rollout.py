"""Batched multi-turn tool-use rollouts with exact token accounting.

P tasks × G generations run as one batch. Each turn, every live episode generates in the same
sampler call; its tool calls run in that episode's own environment copy; the tool responses and
the chat glue are appended to the live cache with the sampler's continuation. No history is ever
re-prefilled and no generated token is ever re-tokenised: a trajectory is exactly

    [prompt][gen 1][tool responses + glue][gen 2] ... [gen K]

and its loss mask is 1 on the generated tokens (end-of-turn token included) and 0 elsewhere.

An episode ends when the model answers without tool calls, after `max_steps` model calls (the
calls of the last one still run, as in NeMo Gym's simple agent), or when it would exceed
`max_total_sequence_length` (it is then scored anyway and flagged as truncated).
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any, Protocol, Sequence

import numpy as np

from grpo_jax import chat
from grpo_jax.envs.base import Environment, Episode
from grpo_jax.sampling import FINISH_STOP, DecodeResult, Sampler

logger = logging.getLogger(__name__)

END_ANSWER = "answer"          # the model answered without calling a tool
END_MAX_STEPS = "max_steps"    # the model used its last allowed call
END_TRUNCATED = "truncated"    # the sequence budget ran out


@dataclasses.dataclass(frozen=True)
class RolloutConfig:
    max_steps: int = 6
    max_total_sequence_length: int = 32768
    max_new_tokens_per_turn: int = 32768
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    enable_thinking: bool = False

    def __post_init__(self):
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.max_total_sequence_length < 2:
            raise ValueError(f"max_total_sequence_length must be >= 2, got {self.max_total_sequence_length}")
        if self.max_new_tokens_per_turn < 1:
            raise ValueError(f"max_new_tokens_per_turn must be >= 1, got {self.max_new_tokens_per_turn}")


@dataclasses.dataclass
class Trajectory:
    """One episode: its exact tokens, what to train on, and what happened."""

    group: int                      # index of its task in the batch; episodes of a task share it
    task: dict
    tokens: list[int]
    loss_mask: list[int]            # 1 on generated tokens
    sampler_logprobs: list[float]   # log-prob of tokens[t] given tokens[:t] where the mask is 1, else 0
    prompt_length: int
    transcript: list[dict]          # readable messages: initial, assistant text, tool responses
    num_turns: int = 0              # model calls
    num_tool_calls: int = 0         # calls that were executed
    num_parse_errors: int = 0       # markup errors reported back to the model
    num_tool_errors: int = 0        # executed calls that failed
    truncated: bool = False
    end_reason: str = ""
    reward: float = 0.0
    info: dict = dataclasses.field(default_factory=dict)
    final_message: str | None = None  # the visible text of the turn that ended the episode

    @property
    def length(self) -> int:
        return len(self.tokens)

    @property
    def num_generated_tokens(self) -> int:
        return int(sum(self.loss_mask))

    def record(self) -> dict:
        """A JSON-ready summary for logs (the transcript included)."""
        return {
            "task_id": self.task.get("id"), "category": self.task.get("category"),
            "family": self.task.get("family"), "group": self.group, "reward": self.reward,
            "turns": self.num_turns, "tool_calls": self.num_tool_calls,
            "parse_errors": self.num_parse_errors, "tool_errors": self.num_tool_errors,
            "truncated": self.truncated, "end_reason": self.end_reason, "length": self.length,
            "generated_tokens": self.num_generated_tokens, "transcript": self.transcript,
            "verifier": {k: v for k, v in self.info.items() if k in ("differing_tables", "family")},
        }


@dataclasses.dataclass
class RolloutBatch:
    trajectories: list[Trajectory]
    num_groups: int
    group_size: int

    def rewards_PG(self) -> np.ndarray:
        """Rewards as (P prompts, G generations), episode p*G+g at [p, g]."""
        rewards = np.array([t.reward for t in self.trajectories], np.float32)
        return rewards.reshape(self.num_groups, self.group_size)

    def arrays(self, length_multiple: int = 1, pad_id: int = 0) -> dict[str, np.ndarray]:
        """Right-padded arrays for the trainer; the length is rounded up to `length_multiple`."""
        longest = max(t.length for t in self.trajectories)
        width = -(-longest // length_multiple) * length_multiple
        batch = len(self.trajectories)
        tokens = np.full((batch, width), pad_id, np.int32)
        loss_mask = np.zeros((batch, width), np.float32)
        logprobs = np.zeros((batch, width), np.float32)
        for row, t in enumerate(self.trajectories):
            tokens[row, :t.length] = t.tokens
            loss_mask[row, :t.length] = t.loss_mask
            logprobs[row, :t.length] = t.sampler_logprobs
        return {
            "tokens_BT": tokens, "loss_mask_BT": loss_mask, "sampler_logprobs_BT": logprobs,
            "lengths_B": np.array([t.length for t in self.trajectories], np.int32),
            "rewards_B": np.array([t.reward for t in self.trajectories], np.float32),
            "groups_B": np.array([t.group for t in self.trajectories], np.int32),
        }


class Policy(Protocol):
    """What the rollout loop needs from a generator: the sampler, or a scripted stand-in."""

    def begin(self, prompts: Sequence[Sequence[int]], copies: int, max_len: int, seed: int) -> None:
        """Starts len(prompts) * copies rows; row p * copies + g continues prompt p."""

    def generate(self, rows: Sequence[int], max_new_tokens: Sequence[int]) -> DecodeResult:
        """Samples a turn for `rows` (results are indexed by row)."""

    def append(self, blocks: dict[int, list[int]]) -> None:
        """Appends a block of tokens to each listed row."""


class SamplerPolicy:
    """The real policy: the jitted sampler over the trainer's parameters."""

    def __init__(self, sampler: Sampler, params, *, temperature: float, top_p: float, top_k: int,
                 stop_ids: Sequence[int]):
        self.sampler, self.params = sampler, params
        self.controls = dict(temperature=temperature, top_p=top_p, top_k=top_k, stop_ids=tuple(stop_ids))
        self.state = None

    def begin(self, prompts, copies, max_len, seed):
        prefilled = self.sampler.prefill(self.params, prompts, max_len, seed=seed)
        index = np.repeat(np.arange(len(prompts)), copies)
        self.state = self.sampler.gather_rows(prefilled, index, seed=seed)

    def generate(self, rows, max_new_tokens):
        budget = np.zeros((self.state.batch_size,), np.int32)
        budget[list(rows)] = max_new_tokens
        self.state, result = self.sampler.decode(self.params, self.state, budget, rows=rows, **self.controls)
        return result

    def append(self, blocks):
        per_row = [blocks.get(row) for row in range(self.state.batch_size)]
        self.state = self.sampler.extend(self.params, self.state, per_row)


class RolloutEngine:
    """Runs episodes of an environment with a policy, turn by turn, as one batch."""

    def __init__(self, tokenizer: Any, env: Environment, config: RolloutConfig):
        self.tokenizer, self.env, self.config = tokenizer, env, config
        self.stop_ids = chat.stop_token_ids(tokenizer)
        self._piece_cache: dict[str, list[int]] = {}

    def _encode(self, text: str) -> list[int]:
        # Chat glue repeats across episodes; tool responses mostly do not, so the cache is bounded.
        if len(self._piece_cache) > 4096:
            self._piece_cache.clear()
        if text not in self._piece_cache:
            self._piece_cache[text] = chat.encode_piece(self.tokenizer, text)
        return self._piece_cache[text]

    def sampler_policy(self, sampler: Sampler, params, **overrides) -> SamplerPolicy:
        controls = dict(temperature=self.config.temperature, top_p=self.config.top_p, top_k=self.config.top_k)
        controls.update(overrides)
        return SamplerPolicy(sampler, params, stop_ids=self.stop_ids, **controls)

    def prompt_tokens(self, episode: Episode) -> tuple[list[int], bool]:
        thinking = chat.reasoning_enabled(episode.messages, self.config.enable_thinking)
        text = chat.render(episode.messages, episode.tools, add_generation_prompt=True, enable_thinking=thinking)
        return self._encode(text), thinking

    def run(self, policy: Policy, tasks: Sequence[dict], num_generations: int, seed: int) -> RolloutBatch:
        """Plays `num_generations` episodes of each task; trajectory p*G+g is generation g of task p."""
        cfg = self.config
        if not tasks:
            raise ValueError("run needs at least one task")
        episodes = [self.env.start(task) for task in tasks for _ in range(num_generations)]
        prompts, thinking_of_task = [], []
        for p in range(len(tasks)):
            tokens, thinking = self.prompt_tokens(episodes[p * num_generations])
            if len(tokens) >= cfg.max_total_sequence_length:
                raise ValueError(
                    f"task {tasks[p].get('id')!r}: its prompt has {len(tokens)} tokens, not less than "
                    f"max_total_sequence_length={cfg.max_total_sequence_length}")
            prompts.append(tokens)
            thinking_of_task.append(thinking)
        trajectories = []
        for row, episode in enumerate(episodes):
            p = row // num_generations
            trajectories.append(Trajectory(
                group=p, task=tasks[p], tokens=list(prompts[p]), loss_mask=[0] * len(prompts[p]),
                sampler_logprobs=[0.0] * len(prompts[p]), prompt_length=len(prompts[p]),
                transcript=[dict(m) for m in episode.messages]))

        policy.begin(prompts, num_generations, cfg.max_total_sequence_length, seed)
        live = list(range(len(episodes)))
        for turn in range(1, cfg.max_steps + 1):
            if not live:
                break
            budgets = [min(cfg.max_new_tokens_per_turn, cfg.max_total_sequence_length - trajectories[r].length)
                       for r in live]
            result = policy.generate(live, budgets)
            blocks: dict[int, list[int]] = {}
            for row in live:
                continuation = self._after_turn(
                    trajectories[row], episodes[row], result, row, turn,
                    thinking_of_task[trajectories[row].group])
                if continuation is not None:
                    blocks[row] = continuation
            live = sorted(blocks)
            if live:
                policy.append(blocks)
                for row in live:
                    trajectories[row].tokens += blocks[row]
                    trajectories[row].loss_mask += [0] * len(blocks[row])
                    trajectories[row].sampler_logprobs += [0.0] * len(blocks[row])
        for trajectory, episode in zip(trajectories, episodes):
            outcome = episode.finish(trajectory.final_message)
            trajectory.reward = float(outcome.reward)
            trajectory.info = dict(outcome.info)
            trajectory.num_tool_errors = int(outcome.info.get("num_failed_calls", 0))
        return RolloutBatch(trajectories, num_groups=len(tasks), group_size=num_generations)

    def _after_turn(self, trajectory: Trajectory, episode: Episode, result: DecodeResult, row: int,
                    turn: int, thinking: bool) -> list[int] | None:
        """Records one sampled turn; returns the block to append, or None when the episode ends."""
        cfg = self.config
        generated = result.tokens[row]
        trajectory.tokens += generated
        trajectory.loss_mask += [1] * len(generated)
        trajectory.sampler_logprobs += result.logprobs[row]
        trajectory.num_turns = turn
        text = chat.decode_tokens(self.tokenizer, generated)
        trajectory.transcript.append(chat.assistant_message_from_generation(text))
        # A prompt without a tool list (tool_schema "none") restricts nothing at parse time: the
        # environment itself answers a call to a tool it lacks with an error message.
        parsed = chat.parse_assistant(text, episode.tools or None, thinking=thinking)
        if result.finish_reasons[row] != FINISH_STOP:
            # The turn was cut by the sequence (or per-turn) budget before its end-of-turn token;
            # what it said so far is still scored (answer-scored environments read it).
            trajectory.truncated, trajectory.end_reason = True, END_TRUNCATED
            trajectory.final_message = parsed.content
            return None
        if not parsed.needs_response:
            trajectory.end_reason, trajectory.final_message = END_ANSWER, parsed.content
            return None
        responses = self._respond(episode, parsed)
        trajectory.num_tool_calls += len(parsed.tool_calls)
        trajectory.num_parse_errors += len(parsed.errors)
        trajectory.transcript += [{"role": "tool", "content": text} for text in responses]
        if turn == cfg.max_steps:
            trajectory.end_reason = END_MAX_STEPS
            return None
        block = self._encode(chat.tool_response_continuation(responses, enable_thinking=thinking))
        # The next turn needs room for the block and at least one generated token.
        if trajectory.length + len(block) + 1 > cfg.max_total_sequence_length:
            trajectory.truncated, trajectory.end_reason = True, END_TRUNCATED
            return None
        return block

    @staticmethod
    def _respond(episode: Episode, parsed: chat.ParsedAssistant) -> list[str]:
        """One response per element of the model's call list, in its order, errors included.

        Valid calls run in the environment (in order); an element the parser rejected is answered
        with its error at its own position; errors about the block as a whole come last. Responses
        may echo the model's own text back, so they are made encodable (`chat.encodable_text`).
        """
        outputs = iter(episode.call_tools(list(parsed.tool_calls)) if parsed.tool_calls else [])
        per_call = {e.call_index: e.as_tool_response() for e in parsed.errors if e.call_index is not None}
        block_errors = [e.as_tool_response() for e in parsed.errors if e.call_index is None]
        responses = []
        for index in range(len(parsed.tool_calls) + len(per_call)):
            responses.append(per_call[index] if index in per_call else next(outputs))
        return [chat.encodable_text(text) for text in responses + block_errors]


class ScriptedPolicy:
    """A stand-in policy that emits fixed token sequences: `turns[row][k]` is row's k-th turn.

    Used to replay expert trajectories (supervised warm start) and to test the loop. A turn that
    ends with a stop id finishes with "stop"; a turn longer than its budget is cut ("length").
    Every call is recorded (`prompts`, `appended`) for inspection.
    """

    def __init__(self, turns: Sequence[Sequence[Sequence[int]]], stop_ids: Sequence[int]):
        self.turns = [[list(turn) for turn in row] for row in turns]
        self.stop_ids = set(stop_ids)
        self.prompts: list[list[int]] = []
        self.appended: list[dict[int, list[int]]] = []
        self._next_turn: list[int] = []

    def begin(self, prompts, copies, max_len, seed):
        self.prompts = [list(p) for p in prompts]
        rows = len(prompts) * copies
        if len(self.turns) != rows:
            raise ValueError(f"the script has {len(self.turns)} rows, the batch {rows}")
        self._next_turn = [0] * rows

    def generate(self, rows, max_new_tokens):
        size = len(self.turns)
        tokens, logprobs, finish = [[] for _ in range(size)], [[] for _ in range(size)], [None] * size
        for row, budget in zip(rows, max_new_tokens):
            script = self.turns[row]
            turn = script[self._next_turn[row]] if self._next_turn[row] < len(script) else []
            self._next_turn[row] += 1
            tokens[row] = turn[:budget]
            logprobs[row] = [0.0] * len(tokens[row])
            finish[row] = FINISH_STOP if tokens[row] and tokens[row][-1] in self.stop_ids else "length"
        return DecodeResult(tokens=tokens, logprobs=logprobs, finish_reasons=finish,
                            num_steps=max(map(len, tokens), default=0))

    def append(self, blocks):
        self.appended.append({row: list(block) for row, block in blocks.items()})
