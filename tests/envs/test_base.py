"""The environment interface: argument parsing, and a second (toy) environment built on it."""
from __future__ import annotations

import json
import types

import pytest

from grpo_jax.envs import Environment, Episode, EpisodeResult, InvalidArguments, ToolCall, make_environment
from grpo_jax.envs.base import parse_arguments


class TargetEnvironment:
    """A toy environment: the task names a target word; reward 1 if the model says it with `say`."""

    name = "target"

    def start(self, task: dict) -> TargetEpisode:
        return TargetEpisode(task["target"])


class TargetEpisode:
    tools = [{"type": "function", "function": {"name": "say", "parameters": {
        "type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]}}}]

    def __init__(self, target: str):
        self.messages = [{"role": "user", "content": f"Say the word {target!r}."}]
        self.target = target
        self.said: list[str] = []

    def call_tools(self, calls: list[ToolCall]) -> list[str]:
        texts = []
        for call in calls:
            try:
                arguments = parse_arguments(call.arguments)
            except InvalidArguments as error:
                texts.append(error.message)
                continue
            self.said.append(str(arguments.get("word")))
            texts.append("ok")
        return texts

    def finish(self, final_message: str | None = None) -> EpisodeResult:
        return EpisodeResult(float(self.target in self.said), {"said": self.said})


def test_a_second_environment_is_small():
    env = TargetEnvironment()
    assert isinstance(env, Environment)
    episode = env.start({"target": "otter"})
    assert isinstance(episode, Episode)
    assert episode.call_tools([ToolCall("say", '{"word": "otter"}'), ToolCall("say", "{oops")]) == [
        "ok", json.dumps({"error": "Invalid tool call arguments: JSONDecodeError('Expecting property name enclosed "
                                   "in double quotes: line 1 column 2 (char 1)')"})]
    assert episode.finish().reward == 1.0


@pytest.mark.parametrize("arguments, expected", [
    ({"a": 1}, {"a": 1}), ('{"a": 1}', {"a": 1}), ("{}", {}),
])
def test_parse_arguments_accepts_objects(arguments, expected):
    assert parse_arguments(arguments) == expected


@pytest.mark.parametrize("arguments, detail", [
    (None, "could not be parsed"), ("[1, 2]", "got list"), ("not json", "JSONDecodeError"), ('"text"', "got str"),
])
def test_parse_arguments_rejects_the_rest_with_the_message_for_the_model(arguments, detail):
    with pytest.raises(InvalidArguments) as raised:
        parse_arguments(arguments)
    assert detail in raised.value.message
    assert json.loads(raised.value.message)["error"].startswith("Invalid tool call arguments: ")


def test_make_environment_builds_the_workplace_from_the_config():
    config = types.SimpleNamespace(name="workplace", sandbox="generated", sandbox_seed=0, csv_dir="",
                                   now="2023-11-30 23:59:00", tool_names="", tool_schema="full", system_prompt="full")
    env = make_environment(config)
    assert env.name == "workplace_assistant"
    with pytest.raises(ValueError, match="unknown environment"):
        make_environment(types.SimpleNamespace(name="chess"))
