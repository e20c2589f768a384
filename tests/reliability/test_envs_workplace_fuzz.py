"""Model output fuzzing: the tool-call parser and all 27 workplace tools under hypothesis.

Whatever the policy writes, the rollout must go on: `chat.parse_assistant` never raises, every
call the parser lets through runs in `Episode.call_tools` and comes back as a string (an error
text for bad input, never an exception), the strings can be tokenised for the next turn, and the
episode can still be scored (reward 0.0 or 1.0).

Everything goes through the rollout's own path (`RolloutEngine._respond`: parsed calls →
`episode.call_tools` → one response per call, parse errors in place). Example counts: the CI tier
runs a few hundred cases (derandomised, so CI is reproducible); the `slow` tier runs more than
10,000 with fresh randomness (`GRPO_FUZZ_EXAMPLES` scales it: examples per tool; the parser and
sequence tests run a proportional number). Run `pytest -m slow --hypothesis-show-statistics
tests/reliability/test_envs_workplace_fuzz.py` to see how many ran.
"""
from __future__ import annotations

import collections
import json
import os

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from configs import workplace
from grpo_jax import chat
from grpo_jax.data import validation_tasks
from grpo_jax.envs import make_environment
from grpo_jax.envs.base import ToolCall
from grpo_jax.envs.workplace import TOOL_NAMES
from grpo_jax.envs.workplace import constants as C
from grpo_jax.envs.workplace.tools import TOOLS, TOOLS_BY_NAME
from grpo_jax.rollout import RolloutEngine

# Examples per tool in the CI tier (27 tools) and in the slow tier; the parser and call-sequence
# tests scale with them.
CI_PER_TOOL = 8
SLOW_PER_TOOL = int(os.environ.get("GRPO_FUZZ_EXAMPLES", "400"))

_COMMON = dict(deadline=None, database=None, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                      HealthCheck.filter_too_much, HealthCheck.large_base_example])
CI = settings(max_examples=CI_PER_TOOL, derandomize=True, **_COMMON)
SLOW = settings(max_examples=SLOW_PER_TOOL, derandomize=False, **_COMMON)


def _scaled(profile: settings, factor: int) -> settings:
    return settings(profile, max_examples=profile.max_examples * factor)


EXAMPLES_RUN: collections.Counter = collections.Counter()  # per test, reported by the slow tier


def _run_and_report(profile: settings, prop, label: str) -> None:
    """Runs a hypothesis property under `profile` and prints how many examples ran (pytest -s)."""
    before = EXAMPLES_RUN[label]
    profile(prop)()
    ran = EXAMPLES_RUN[label] - before
    print(f"\nfuzz examples run: {label}: {ran}")
    assert ran > 0


# --- the world the calls run in -------------------------------------------------------------

ENV_CONFIG = workplace.get_config("default").env   # all 27 tools shown, every task family
TASKS = validation_tasks(ENV_CONFIG, num_tasks=24, seed=0)
ENV = make_environment(ENV_CONFIG)
_SANDBOX = ENV.sandbox_for(TASKS[0])


def _column(table: str, column: str) -> list:
    table = _SANDBOX.tables[table]
    return sorted({v for v in table.column_values(column) if isinstance(v, str)})[:40]


# Real ids and addresses, so that fuzzed writes reach the code behind the "not found" checks.
REAL_VALUES = (_column(C.EMAILS, "email_id") + _column(C.EVENTS, "event_id") + _column(C.TASKS, "task_id")
               + _column(C.CUSTOMERS, "customer_id") + list(_SANDBOX.directory[:20])
               + list(C.STATUSES) + list(C.PRODUCTS) + list(C.CUSTOMER_COLUMNS) + list(C.TASK_COLUMNS)
               + list(C.EVENT_COLUMNS))
ODD_STRINGS = (
    # ids of other formats
    "0", "1", "-1", "00000000", "000000001", "99999999", "0x10", "1e3", " 00000042 ", "CUST-0001",
    "\u0663\u0664", "None", "null", "NaN", "inf", "-inf", "true", "[]", "{}", "1.5",
    # dates in odd formats
    "2023-11-30", "2023-13-45", "2023-02-29", "30/11/2023", "11/30/2023", "2023-11-30T25:61:00",
    "Nov 30 2023", "yesterday", "0000-00-00", "9999-12-31 23:59:59", "2023-11-30 10:00:00+05:00",
    "-1-01-01", "2023-11", "2023", "  ", "",
    # regular expressions that do not compile or backtrack
    "(", "[", "*", "\\", "(?P<", "a{99999}", "(a+)+$", "(.*)*!", "^(\\w+\\s?)*!", ".*", "|",
    # addresses, unicode, control characters
    "a@b", "@", "UPPER@EXAMPLE.COM", "\u0000", "\ud800", "\udfff x", "\U0001F642", "\u202eevil",
    "\u0130stanbul", "stra\u00dfe", "\n\t\r", "'; DROP TABLE customers; --", "<TOOLCALL>", "</TOOLCALL>",
)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30), st.sampled_from(ODD_STRINGS), st.sampled_from(REAL_VALUES),
    st.integers(0, 10**6).map(str),                                   # numbers as strings
    st.builds(lambda s, n: s * n, st.text(min_size=1, max_size=3), st.integers(1_000, 30_000)),  # huge
)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6)
ALL_PARAM_NAMES = sorted({param.name for tool in TOOLS for param in tool.params})


def arguments_for(tool_name: str) -> st.SearchStrategy:
    """Every form `ToolCall.arguments` can take, for one tool: mostly dicts keyed by its own
    parameters (plus other tools' and random keys), also JSON text, raw text and None."""
    own = [param.name for param in TOOLS_BY_NAME[tool_name].params] or ALL_PARAM_NAMES
    keys = st.one_of(st.sampled_from(own), st.sampled_from(own), st.sampled_from(ALL_PARAM_NAMES),
                     st.text(max_size=12))
    as_dict = st.dictionaries(keys, json_values, max_size=6)
    complete = st.fixed_dictionaries({name: json_values for name in own})  # every parameter given
    dicts = st.one_of(as_dict, as_dict, complete)
    return st.one_of(
        dicts, dicts,
        dicts.map(lambda d: json.dumps(d, default=str)),                             # JSON text (NaN included)
        st.tuples(dicts.map(lambda d: json.dumps(d, default=str)), st.integers(0, 200)).map(
            lambda t: t[0][:t[1]]),                                                # truncated JSON
        json_values.map(lambda v: json.dumps(v, default=str)),                     # JSON, not an object
        st.text(max_size=60),                                                      # raw text
        st.sampled_from(['{"page": ' + "1" * 5000 + "}", "[" * 50_000 + "]" * 50_000,  # over json's limits
                         '{"page_size": NaN}', '{"page": Infinity}', "\ud800", '{"a": "\\ud800"}']),
        st.none(),
    )


names = st.one_of(st.sampled_from(TOOL_NAMES), st.sampled_from(TOOL_NAMES).map(str.upper),
                  st.sampled_from(TOOL_NAMES).map(lambda n: n + " "), st.text(max_size=40),
                  st.sampled_from(["", "__init__", "world", "lower", "exec", "\ud800"]))
any_call = st.one_of(
    st.sampled_from(TOOL_NAMES).flatmap(lambda n: arguments_for(n).map(lambda a: ToolCall(n, a))),
    st.builds(ToolCall, names, st.one_of(st.dictionaries(st.text(max_size=8), json_values, max_size=3),
                                         st.text(max_size=40), st.none())),
)


# --- checks ------------------------------------------------------------------------------------

def _responses_of(episode, parsed: chat.ParsedAssistant) -> list[str]:
    """The rollout's own path from parsed calls to the texts the model reads next, checked."""
    responses = RolloutEngine._respond(episode, parsed)
    assert len(responses) == len(parsed.tool_calls) + len(parsed.errors)
    for text in responses:
        assert isinstance(text, str) and text
        text.encode("utf-8")  # what the tokenizer and the UTF-8 transcript file need
        body = json.loads(text)
        assert isinstance(body, dict) and set(body) in ({"output"}, {"error"}), text[:200]
    return responses


def _check_finish(episode) -> None:
    result = episode.finish(None)
    assert result.reward in (0.0, 1.0)
    assert isinstance(result.info["differing_tables"], list)


def _run_calls(task_index: int, calls: list[ToolCall]) -> None:
    episode = ENV.start(TASKS[task_index % len(TASKS)])
    _responses_of(episode, chat.ParsedAssistant(content="", tool_calls=calls, errors=[]))
    _check_finish(episode)


# --- every tool, bad arguments -------------------------------------------------------------------

def _tool_property(tool_name):
    @given(arguments=st.lists(arguments_for(tool_name), min_size=1, max_size=3), task_index=st.integers(0, 23))
    def check(arguments, task_index):
        EXAMPLES_RUN[tool_name] += 1
        _run_calls(task_index, [ToolCall(tool_name, a) for a in arguments])
    return check


@pytest.mark.parametrize("tool_name", TOOL_NAMES)
def test_every_tool_turns_bad_arguments_into_error_strings(tool_name):
    assert len(TOOL_NAMES) == 27
    _run_and_report(CI, _tool_property(tool_name), tool_name)


@pytest.mark.slow
@pytest.mark.parametrize("tool_name", TOOL_NAMES)
def test_every_tool_turns_bad_arguments_into_error_strings_at_scale(tool_name):
    _run_and_report(SLOW, _tool_property(tool_name), tool_name)


# --- any names, any call sequences, then scoring -------------------------------------------------

def _sequence_property():
    @given(turns=st.lists(st.lists(any_call, min_size=1, max_size=4), min_size=1, max_size=4),
           task_index=st.integers(0, 23))
    def check(turns, task_index):
        EXAMPLES_RUN["call_sequences"] += 1
        episode = ENV.start(TASKS[task_index])
        for calls in turns:  # one call_tools per model turn, as the rollout does
            _responses_of(episode, chat.ParsedAssistant(content="", tool_calls=calls, errors=[]))
        _check_finish(episode)
    return check


def test_any_call_sequence_leaves_an_episode_that_scores():
    _run_and_report(_scaled(CI, 6), _sequence_property(), "call_sequences")


@pytest.mark.slow
def test_any_call_sequence_leaves_an_episode_that_scores_at_scale():
    _run_and_report(_scaled(SLOW, 3), _sequence_property(), "call_sequences")


# --- raw model text through the parser ---------------------------------------------------------

MARKUP = (chat.TOOLCALL_OPEN, chat.TOOLCALL_CLOSE, "<think>", "</think>", chat.END_OF_TURN, chat.EOS_TOKEN,
          "<SPECIAL_10>", "<SPECIAL_11>", chat.TOOL_RESPONSE_OPEN, chat.TOOL_RESPONSE_CLOSE, "[", "]", "{", "}",
          '"', ",", ":", "\\", "\\u", "\\ud800", "null", "NaN", "1" * 5000)
call_objects = st.one_of(
    st.sampled_from(TOOL_NAMES).flatmap(lambda n: st.fixed_dictionaries(
        {"name": st.just(n), "arguments": arguments_for(n)})),
    st.dictionaries(st.sampled_from(["name", "arguments", "type", "id"]), json_values, max_size=3),
    json_values,
)
call_blocks = st.lists(call_objects, max_size=4).map(
    lambda calls: chat.TOOLCALL_OPEN + json.dumps(calls, default=str) + chat.TOOLCALL_CLOSE)
model_texts = st.lists(st.one_of(st.sampled_from(MARKUP), st.text(max_size=30), call_blocks, call_blocks),
                       max_size=6).map("".join)


def _parser_property(tokenizer):
    @given(text=model_texts, thinking=st.booleans(), task_index=st.integers(0, 23))
    def check(text, thinking, task_index):
        EXAMPLES_RUN["model_texts"] += 1
        episode = ENV.start(TASKS[task_index])
        parsed = chat.parse_assistant(text, episode.tools, thinking=thinking)
        assert all(isinstance(c, ToolCall) and isinstance(c.name, str) and c.name in TOOL_NAMES
                   and isinstance(c.arguments, (dict, str)) for c in parsed.tool_calls)
        assert all(isinstance(e.kind, chat.ToolCallErrorKind) and e.message for e in parsed.errors)
        if parsed.needs_response:
            responses = _responses_of(episode, parsed)
            # The next turn's tokens: responses plus chat glue, as the rollout appends them.
            assert chat.encode_piece(tokenizer, chat.tool_response_continuation(responses))
        _check_finish(episode)
    return check


def test_any_model_text_parses_runs_and_tokenises(workplace_tokenizer):
    _run_and_report(_scaled(CI, 20), _parser_property(workplace_tokenizer), "model_texts")


@pytest.mark.slow
def test_any_model_text_parses_runs_and_tokenises_at_scale(workplace_tokenizer):
    _run_and_report(_scaled(SLOW, 5), _parser_property(workplace_tokenizer), "model_texts")


# --- the specific escapes this fuzzing found (kept as plain regression checks) ----------------

@pytest.mark.parametrize("arguments", [
    '{"page": ' + "1" * 5000 + "}",     # json.loads raises ValueError, not JSONDecodeError
    "[" * 100_000 + "]" * 100_000,       # RecursionError
], ids=["int_over_digit_limit", "deep_nesting"])
def test_arguments_json_beyond_pythons_limits_is_an_error_text(arguments):
    episode = ENV.start(TASKS[0])
    (text,) = episode.call_tools([ToolCall("email_search_emails", arguments)])
    assert json.loads(text)["error"].startswith("Invalid tool call arguments: ")
    _check_finish(episode)


def test_lone_surrogates_from_json_escapes_reach_the_model_as_encodable_text(workplace_tokenizer):
    text = '<TOOLCALL>[{"name": "email_search_emails", "arguments": {"query": "\\ud800"}}, ' \
           '{"name": "no_such_\\udfff", "arguments": {}}]</TOOLCALL>'
    episode = ENV.start(TASKS[0])
    parsed = chat.parse_assistant(text, episode.tools)
    assert parsed.tool_calls[0].arguments == {"query": "\ud800"}  # json.loads makes a lone surrogate
    responses = _responses_of(episode, parsed)
    assert "\ufffd" in responses[1]  # the unknown name is echoed, with U+FFFD for the surrogate
    assert chat.encode_piece(workplace_tokenizer, chat.tool_response_continuation(responses))


@pytest.mark.parametrize("pattern", ["(.*)*!", "^(\\w+\\s?)*!", "(a+)+$", "(.*a){12}"])
def test_exponential_regex_search_is_refused_not_run(pattern):
    # Without the guard in tools/common.py, "(.*)*!" over the calendar's event names ran for
    # minutes: one such sampled query would stall a whole rollout batch.
    episode = ENV.start(TASKS[0])
    (text,) = episode.call_tools([ToolCall("calendar_search_events", {"query": pattern})])
    assert "repeats a repetition" in json.loads(text)["output"]
