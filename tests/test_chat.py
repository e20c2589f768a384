"""Chat rendering, trajectory pieces and tool-call parsing (grpo_jax.chat); pure Python, no tokenizer."""
import json
import re

import pytest
from hypothesis import assume, given, settings, strategies as st

from grpo_jax import chat
from grpo_jax.chat import ToolCallErrorKind as Kind
from grpo_jax.envs.base import ToolCall

TOOL_BLOCK_TAIL = (
    "]</AVAILABLE_TOOLS>\n\nIf you decide to call any tool(s), use the following format:\n"
    '<TOOLCALL>[{{"name": "tool_name1", "arguments": "tool_args1"}}, {{"name": "tool_name2", "arguments": '
    '"tool_args2"}}]</TOOLCALL>\n\nThe user will execute tool-calls and return responses from tool(s) in this '
    'format:\n<TOOL_RESPONSE>[{{"tool_response1"}}, {{"tool_response2"}}]</TOOL_RESPONSE>\n\nBased on the tool '
    "responses, you can call additional tools if needed, correct tool calls if any errors are found, or just "
    "respond to the user."
)
# NeMo Gym's Responses-API tool (flat) and a chat-completions tool (nested under "function").
FLAT_TOOL = {"type": "function", "name": "email_send_email", "description": "Sends an email.",
             "parameters": {"type": "object", "properties": {"recipient": {"type": "string"}},
                            "required": ["recipient"], "additionalProperties": False}, "strict": False}
NESTED_TOOL = {"type": "function", "function": {"name": "calc", "parameters": {"type": "object"}}}
TOOLS = [FLAT_TOOL, NESTED_TOOL]


# --- Rendering: the reference examples (nemotron_h.md §12) byte for byte ---------------------------------

def test_reference_example_hello_without_system_reasoning_on():
    text = chat.render([{"role": "user", "content": "Hello"}], add_generation_prompt=True, enable_thinking=True)
    assert text == "<SPECIAL_10>System\n\n<SPECIAL_11>User\nHello\n<SPECIAL_11>Assistant\n<think>\n"


def test_reference_example_no_think_in_system():
    messages = [{"role": "system", "content": "You are helpful. /no_think"}, {"role": "user", "content": "Hi"}]
    expected = "<SPECIAL_10>System\nYou are helpful.\n<SPECIAL_11>User\nHi\n<SPECIAL_11>Assistant\n<think></think>"
    # /no_think wins over an explicit default of True.
    assert chat.render(messages, add_generation_prompt=True, enable_thinking=True) == expected
    assert chat.render(messages, add_generation_prompt=True) == expected


def test_reference_example_tool_round_trip():
    messages = [
        {"role": "user", "content": "Add"},
        {"role": "assistant", "content": None,
         "tool_calls": [{"type": "function", "function": {"name": "calc", "arguments": {"a": 1}}}]},
        {"role": "tool", "content": '{"result": 1}'},
        {"role": "tool", "content": '{"result": 2}'},
    ]
    text = chat.render(messages, add_generation_prompt=True, enable_thinking=True)
    assert text == ("<SPECIAL_10>System\n\n<SPECIAL_11>User\nAdd\n"
                    '<SPECIAL_11>Assistant\n<TOOLCALL>[{"name": "calc", "arguments": {"a": 1}}]</TOOLCALL>\n'
                    "<SPECIAL_12>\n"
                    '<SPECIAL_11>User\n<TOOL_RESPONSE>[{"result": 1}, {"result": 2}]</TOOL_RESPONSE>\n'
                    "<SPECIAL_11>Assistant\n<think>\n")


# --- Rendering: turn by turn ------------------------------------------------------------------------------

def test_system_and_user_reasoning_off_by_default():
    messages = [{"role": "system", "content": "  Be brief.  "}, {"role": "user", "content": "  What time is it? "}]
    assert chat.render(messages) == "<SPECIAL_10>System\nBe brief.\n<SPECIAL_11>User\nWhat time is it?\n"
    assert chat.render(messages, add_generation_prompt=True) == (
        "<SPECIAL_10>System\nBe brief.\n<SPECIAL_11>User\nWhat time is it?\n<SPECIAL_11>Assistant\n<think></think>")
    assert chat.render(messages, add_generation_prompt=True, enable_thinking=True).endswith(
        "<SPECIAL_11>Assistant\n<think>\n")


@pytest.mark.parametrize("system, user, default, expected", [
    ("/think", "q", False, True),
    ("/no_think", "q", True, False),
    ("/no_think", "q /think", False, True),     # the later message wins
    ("/think", "q /no_think", True, False),
    ("", "/no_think and /think", False, True),  # inside one message /think beats /no_think (template if/elif)
    ("", "see docs/thinking", False, True),     # substring test, as in the real template
    ("", "plain", True, True),
    ("", "plain", False, False),
])
def test_reasoning_switch(system, user, default, expected):
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    assert chat.reasoning_enabled(messages, default) is expected
    prompt = chat.render(messages, add_generation_prompt=True, enable_thinking=default)
    assert prompt.endswith(chat.generation_prompt(expected))


def test_switches_are_removed_from_system_and_user_but_not_assistant_text():
    messages = [{"role": "system", "content": "/think Be kind"}, {"role": "user", "content": "see docs/thinking"},
                {"role": "assistant", "content": "I said /think"}]
    assert chat.render(messages) == ("<SPECIAL_10>System\nBe kind\n<SPECIAL_11>User\nsee docsing\n"
                                     "<SPECIAL_11>Assistant\nI said /think\n<SPECIAL_12>\n")


def test_tool_block_with_and_without_system_content():
    schema_json = json.dumps(FLAT_TOOL, ensure_ascii=False) + ", " + json.dumps(NESTED_TOOL["function"])
    block = "You can use the following tools to assist the user if required:\n<AVAILABLE_TOOLS>[" + schema_json
    with_system = chat.render([{"role": "system", "content": "Sys"}, {"role": "user", "content": "u"}], TOOLS)
    assert with_system == "<SPECIAL_10>System\nSys\n\n" + block + TOOL_BLOCK_TAIL + "\n<SPECIAL_11>User\nu\n"
    without_system = chat.render([{"role": "user", "content": "u"}], TOOLS)
    assert without_system == "<SPECIAL_10>System\n" + block + TOOL_BLOCK_TAIL + "\n<SPECIAL_11>User\nu\n"
    # An empty tool list is no tool block, as in the template's `if tools`.
    assert chat.render([{"role": "user", "content": "u"}], []) == "<SPECIAL_10>System\n\n<SPECIAL_11>User\nu\n"


def test_assistant_turn_with_two_tool_calls_and_content():
    calls = [{"type": "function", "function": {"name": "calc", "arguments": {"a": 1, "text": "héllo"}}},
             {"name": "email_send_email", "arguments": '{"recipient":"b@x.com"}'},  # flat; string kept raw
             ToolCall(name="calc", arguments={"n": [1, 2]})]
    messages = [{"role": "user", "content": "go"},
                {"role": "assistant", "content": "<think>plan</think>\n\n Doing it. ", "tool_calls": calls}]
    assert chat.render(messages).endswith(
        '<SPECIAL_11>Assistant\nDoing it.\n\n<TOOLCALL>[{"name": "calc", "arguments": {"a": 1, "text": "héllo"}}, '
        '{"name": "email_send_email", "arguments": {"recipient":"b@x.com"}}, '
        '{"name": "calc", "arguments": {"n": [1, 2]}}]</TOOLCALL>\n<SPECIAL_12>\n')


def test_tool_responses_merge_only_when_consecutive():
    messages = [{"role": "user", "content": "u"},
                {"role": "assistant", "content": "", "tool_calls": [{"name": "f", "arguments": {}}]},
                {"role": "tool", "content": "r1"}, {"role": "tool", "content": "r2"},
                {"role": "assistant", "content": "", "tool_calls": [{"name": "f", "arguments": {}}]},
                {"role": "tool", "content": "r3"}]
    text = chat.render(messages)
    assert "<SPECIAL_11>User\n<TOOL_RESPONSE>[r1, r2]</TOOL_RESPONSE>\n<SPECIAL_11>Assistant\n" in text
    assert text.endswith("<SPECIAL_12>\n<SPECIAL_11>User\n<TOOL_RESPONSE>[r3]</TOOL_RESPONSE>\n")


def test_final_answer_keeps_only_text_after_think():
    messages = [{"role": "user", "content": "q"},
                {"role": "assistant", "content": "<think>\nsecret\n</think>\n\nThe answer is 4.\n"}]
    assert chat.render(messages, add_generation_prompt=False) == (
        "<SPECIAL_10>System\n\n<SPECIAL_11>User\nq\n<SPECIAL_11>Assistant\nThe answer is 4.\n<SPECIAL_12>\n")


@pytest.mark.parametrize("messages, fragment", [
    ([], "non-empty"),
    ([{"role": "robot", "content": "x"}], "role"),
    ([{"role": "user", "content": "x"}, {"role": "system", "content": "y"}], "system"),
    ([{"role": "user", "content": [{"type": "text", "text": "x"}]}], "content"),
    ("hello", "non-empty"),
])
def test_render_rejects_bad_messages(messages, fragment):
    with pytest.raises(ValueError, match=fragment):
        chat.render(messages)


# --- Trajectory pieces: [prompt][sampled][glue][sampled]... versus render(transcript) -----------------------

def _episode(enable_thinking: bool, reasoning: str):
    """A two-call episode as a rollout builds it: pieces appended around canonical sampled text."""
    initial = [{"role": "system", "content": "You help."}, {"role": "user", "content": "Email Bo, then add 2+2."}]
    sampled = [  # the model's text after each generation prompt, end-of-turn token included
        reasoning + 'Sure.\n\n<TOOLCALL>[{"name": "email_send_email", "arguments": {"recipient": "bo@x.com"}}]'
                    "</TOOLCALL>\n" + chat.END_OF_TURN,
        reasoning + '<TOOLCALL>[{"name": "calc", "arguments": {"a": 2, "b": 2}}, {"name": "calc", "arguments": '
                    '{"a": 0}}]</TOOLCALL>\n' + chat.END_OF_TURN,
        reasoning + "Done: 4.\n" + chat.END_OF_TURN,
    ]
    responses = [['"Email sent successfully."'], ['{"result": 4}', '{"result": 0}']]
    trajectory = chat.render(initial, TOOLS, add_generation_prompt=True, enable_thinking=enable_thinking)
    transcript = list(initial)
    for turn, text in enumerate(sampled):
        trajectory += text
        transcript.append(chat.assistant_message_from_generation(text))
        if turn < len(responses):
            trajectory += chat.tool_response_continuation(responses[turn], enable_thinking=enable_thinking)
            transcript += [{"role": "tool", "content": response} for response in responses[turn]]
    return trajectory, transcript


def test_trajectory_equals_render_except_reasoning_marker_reasoning_off():
    trajectory, transcript = _episode(enable_thinking=False, reasoning="")
    rendered = chat.render(transcript, TOOLS)
    # Documented exceptions 1 and 2: the prompt's <think></think> is never re-rendered, and the
    # re-render's final "\n" after <SPECIAL_12> is glue that only arrives with a next turn.
    assert trajectory.count(chat.ASSISTANT_HEADER + "<think></think>") == 3
    assert trajectory.replace(chat.ASSISTANT_HEADER + "<think></think>", chat.ASSISTANT_HEADER) + "\n" == rendered
    assert trajectory != rendered


def test_trajectory_equals_render_except_reasoning_marker_reasoning_on():
    trajectory, transcript = _episode(enable_thinking=True, reasoning="I should call a tool.\n</think>\n\n")
    rendered = chat.render(transcript, TOOLS, enable_thinking=True)
    without_reasoning = re.sub(r"<SPECIAL_11>Assistant\n<think>\n.*?</think>\s*", chat.ASSISTANT_HEADER,
                               trajectory, flags=re.DOTALL)
    assert without_reasoning + "\n" == rendered


def test_prompt_and_glue_are_prefixes_of_the_rendered_transcript():
    trajectory, transcript = _episode(enable_thinking=False, reasoning="")
    initial, after_first_turn = transcript[:2], transcript[:4]
    assert chat.render(initial, TOOLS, add_generation_prompt=True) == \
        chat.render(initial, TOOLS) + chat.generation_prompt(False)
    # Glue after the first end-of-turn token = the rest of that turn's "\n" + the tool-response turn.
    with_assistant = chat.render(transcript[:3], TOOLS)
    assert chat.render(after_first_turn, TOOLS) == with_assistant + chat.tool_response_turn(['"Email sent successfully."'])[1:]
    assert chat.tool_response_turn(["a", "b"]) == "\n<SPECIAL_11>User\n<TOOL_RESPONSE>[a, b]</TOOL_RESPONSE>\n"
    assert chat.tool_response_continuation(["a"]) == chat.tool_response_turn(["a"]) + "<SPECIAL_11>Assistant\n<think></think>"


@pytest.mark.parametrize("sampled", [
    "Done.<SPECIAL_12>",         # no "\n" before the end-of-turn token
    "  Done.\n<SPECIAL_12>",     # leading whitespace
    "Done.\n\n<SPECIAL_12>",     # two newlines
    "Done.\n</s>",               # stopped on </s>
])
def test_non_canonical_sampled_text_re_renders_differently(sampled):
    """Documented exception 3: the template normalises whitespace; the trajectory keeps what was sampled."""
    initial = [{"role": "user", "content": "q"}]
    trajectory = chat.render(initial, add_generation_prompt=True) + sampled
    rendered = chat.render(initial + [chat.assistant_message_from_generation(sampled)])
    assert trajectory.replace("<think></think>", "") + "\n" != rendered


def test_sampled_markup_survives_only_as_raw_text():
    """Keeping the sampled text as content re-renders it verbatim, even non-canonical JSON; storing the
    parsed calls instead re-serialises them canonically (exception 3's last case)."""
    initial = [{"role": "user", "content": "q"}]
    sampled = 'Hi<TOOLCALL>[{"name":"calc","arguments":{"a":1}}]</TOOLCALL>\n<SPECIAL_12>'
    trajectory_view = (chat.render(initial, add_generation_prompt=True) + sampled).replace("<think></think>", "")
    raw = chat.render(initial + [chat.assistant_message_from_generation(sampled)])
    assert trajectory_view + "\n" == raw
    parsed = chat.parse_assistant(sampled)
    structured = chat.render(initial + [{"role": "assistant", "content": parsed.content, "tool_calls": parsed.tool_calls}])
    assert structured.endswith('Hi\n\n<TOOLCALL>[{"name": "calc", "arguments": {"a": 1}}]</TOOLCALL>\n<SPECIAL_12>\n')
    assert structured != raw


def test_tool_response_turn_rejects_empty_or_non_string_responses():
    for bad in ([], "text", [{"result": 1}]):
        with pytest.raises(ValueError):
            chat.tool_response_turn(bad)


# --- Parsing tool calls --------------------------------------------------------------------------------

def kinds(parsed):
    return [error.kind for error in parsed.errors]


def test_parse_plain_answer():
    parsed = chat.parse_assistant("  The answer is 4.\n<SPECIAL_12>")
    assert parsed == chat.ParsedAssistant(content="The answer is 4.", tool_calls=[], errors=[])
    assert not parsed.needs_response


def test_parse_single_and_multiple_calls_with_content_and_reasoning():
    text = ('plan it</think>\n\nSending now.\n\n<TOOLCALL>[{"name": "email_send_email", "arguments": '
            '{"recipient": "a@b.c"}}, {"name": "calc", "arguments": "{\\"a\\": 1}"}]</TOOLCALL>\n<SPECIAL_12>')
    parsed = chat.parse_assistant(text, TOOLS, thinking=True)
    assert parsed.reasoning == "plan it"
    assert parsed.content == "Sending now."
    assert parsed.tool_calls == [ToolCall("email_send_email", {"recipient": "a@b.c"}),
                                 ToolCall("calc", '{"a": 1}')]  # string arguments stay raw, as in vLLM
    assert parsed.errors == [] and parsed.needs_response
    single = chat.parse_assistant('<TOOLCALL>[{"name": "calc", "arguments": {}}]</TOOLCALL>')
    assert single.tool_calls == [ToolCall("calc", {})] and single.content == ""


def test_parse_inverts_render_of_calls():
    calls = [ToolCall("calc", {"a": 1, "s": "ü \"q\" </x>"}), ToolCall("email_send_email", {"recipient": "z"})]
    turn = chat.assistant_turn("Let me.", calls)
    sampled = turn[len(chat.ASSISTANT_HEADER):-1]  # what the model samples: header and final "\n" excluded
    parsed = chat.parse_assistant(sampled, TOOLS)
    assert parsed.tool_calls == calls and parsed.content == "Let me." and parsed.errors == []


def test_unfinished_reasoning_is_all_reasoning_when_thinking():
    parsed = chat.parse_assistant('hmm <TOOLCALL>[{"name": "calc", "arguments": {}}]</TOOLCALL>', thinking=True)
    assert parsed.tool_calls == [] and parsed.errors == [] and parsed.reasoning.startswith("hmm")


@pytest.mark.parametrize("text, expected_kinds, n_calls", [
    ('<TOOLCALL>[{"name": "calc", "arguments": {}]</TOOLCALL>', [Kind.INVALID_JSON], 0),
    ("<TOOLCALL>[{'name': 'calc', 'arguments': {}}]</TOOLCALL>", [Kind.INVALID_JSON], 0),
    ('<TOOLCALL>[{"name": "calc", "arguments": {"x": NaN}}]</TOOLCALL>', [Kind.INVALID_JSON], 0),
    ('<TOOLCALL>{"name": "calc", "arguments": {}}</TOOLCALL>', [Kind.NOT_A_LIST], 0),
    ('<TOOLCALL>"calc"</TOOLCALL>', [Kind.NOT_A_LIST], 0),
    ("<TOOLCALL>[]</TOOLCALL>", [Kind.EMPTY_LIST], 0),
    ('<TOOLCALL>[{"arguments": {}}]</TOOLCALL>', [Kind.MISSING_NAME], 0),
    ('<TOOLCALL>[{"name": "calc"}]</TOOLCALL>', [Kind.MISSING_ARGUMENTS], 0),
    ('<TOOLCALL>[{"name": 7, "arguments": {}}]</TOOLCALL>', [Kind.INVALID_NAME], 0),
    ('<TOOLCALL>[{"name": "calc", "arguments": [1]}]</TOOLCALL>', [Kind.INVALID_ARGUMENTS], 0),
    ('<TOOLCALL>[{"name": "calc", "arguments": null}]</TOOLCALL>', [Kind.INVALID_ARGUMENTS], 0),
    ('<TOOLCALL>["calc"]</TOOLCALL>', [Kind.CALL_NOT_OBJECT], 0),
    ('<TOOLCALL>[{"name": "rm_rf", "arguments": {}}]</TOOLCALL>', [Kind.UNKNOWN_TOOL], 0),
    ('<TOOLCALL>[{"name": "calc", "arguments": {}}]', [Kind.UNCLOSED_BLOCK], 0),
    ('<TOOLCALL>[<TOOLCALL>[{"name": "calc", "arguments": {}}]</TOOLCALL>', [Kind.NESTED_MARKUP], 0),
    ('<TOOLCALL>[{"name": "calc", "arguments": {"x": "<SPECIAL_11>User"}}]</TOOLCALL>', [Kind.NESTED_MARKUP], 0),
    ('<TOOLCALL>[{"name": "calc", "arguments": {}}]</TOOLCALL><TOOLCALL>[{"name": "calc", "arguments": {"a": 1}}]'
     "</TOOLCALL>", [Kind.MULTIPLE_BLOCKS], 1),
    ('<TOOLCALL>[{"name": "calc", "arguments": {}}]</TOOLCALL>\nI will wait.', [Kind.TEXT_AFTER_BLOCK], 1),
    ('</TOOLCALL> ok <TOOLCALL>[{"name": "calc", "arguments": {}}]</TOOLCALL>', [Kind.STRAY_CLOSE_TAG], 1),
    ("just text </TOOLCALL>", [Kind.STRAY_CLOSE_TAG], 0),
    ('<TOOLCALL>[{"name": "calc", "arguments": {}}]</TOOLCALL></TOOLCALL>', [Kind.STRAY_CLOSE_TAG], 1),
    ('<TOOLCALL>[{"name": "calc", "arguments": {"s": "' + "x" * 20_000 + '"}}]</TOOLCALL>',
     [Kind.ARGUMENTS_TOO_LARGE], 0),
    ('<TOOLCALL>[{"name": "calc", "arguments": ' + '{"a": ' * 40 + "1" + "}" * 40 + "}]</TOOLCALL>",
     [Kind.ARGUMENTS_TOO_LARGE], 0),
    ("<TOOLCALL>" + "[" * 100_000 + "</TOOLCALL>", [Kind.PAYLOAD_TOO_LARGE], 0),
    ("<TOOLCALL>" + "[" * 50_000 + "</TOOLCALL>", [Kind.INVALID_JSON], 0),  # too deep for json: RecursionError
    ('<TOOLCALL>[{"name": "calc", "arguments": {"n": ' + "9" * 5000 + "}}]</TOOLCALL>", [Kind.INVALID_JSON], 0),
])
def test_each_error_kind(text, expected_kinds, n_calls):
    parsed = chat.parse_assistant(text, TOOLS)
    assert kinds(parsed) == expected_kinds
    assert len(parsed.tool_calls) == n_calls
    assert parsed.needs_response
    for error in parsed.errors:
        assert error.message and json.loads(error.as_tool_response()) == {"error": error.message}


def test_partially_valid_block_keeps_valid_calls_in_order():
    text = ('<TOOLCALL>[{"name": "calc", "arguments": {"a": 1}}, {"name": "nope", "arguments": {}}, 5, '
            '{"name": "email_send_email", "arguments": {"recipient": "x"}}, {"name": "calc"}]</TOOLCALL>')
    parsed = chat.parse_assistant(text, TOOLS)
    assert parsed.tool_calls == [ToolCall("calc", {"a": 1}), ToolCall("email_send_email", {"recipient": "x"})]
    assert [(e.kind, e.call_index) for e in parsed.errors] == [
        (Kind.UNKNOWN_TOOL, 1), (Kind.CALL_NOT_OBJECT, 2), (Kind.MISSING_ARGUMENTS, 4)]
    assert "Tool call 2" in parsed.errors[0].message and '"nope"' in parsed.errors[0].message


def test_unknown_tools_are_only_checked_when_tools_are_given():
    text = '<TOOLCALL>[{"name": "anything", "arguments": {}}]</TOOLCALL>'
    assert chat.parse_assistant(text).tool_calls == [ToolCall("anything", {})]
    assert kinds(chat.parse_assistant(text, TOOLS)) == [Kind.UNKNOWN_TOOL]


MARKUP_IN_ARGUMENTS = ("</TOOLCALL>", "<TOOLCALL>", "</think>", "<SPECIAL_10>", "<SPECIAL_11>", "<SPECIAL_12>",
                       "<TOOL_RESPONSE>", "</TOOL_RESPONSE>", "<AVAILABLE_TOOLS>", "</AVAILABLE_TOOLS>")


@pytest.mark.parametrize("marker", MARKUP_IN_ARGUMENTS)
def test_markup_inside_arguments_is_an_error_never_an_altered_call(marker):
    sampled = chat.assistant_turn("", [ToolCall("calc", {"s": marker})])[len(chat.ASSISTANT_HEADER):-1]
    parsed = chat.parse_assistant(sampled, TOOLS)
    assert parsed.tool_calls == [] and parsed.errors
    # JSON escapes carry the same string through the tags.
    escaped = '<TOOLCALL>[{"name": "calc", "arguments": {"s": "\\u003c' + marker[1:] + '"}}]</TOOLCALL>'
    assert chat.parse_assistant(escaped, TOOLS).tool_calls == [ToolCall("calc", {"s": marker})]


def test_parse_rejects_non_string_input():
    with pytest.raises(ValueError):
        chat.parse_assistant(b"<TOOLCALL>")


# --- Property-based fuzzing: parse never raises, always explains --------------------------------------------

FRAGMENTS = st.sampled_from([
    "<TOOLCALL>", "</TOOLCALL>", "<think>", "</think>", "<SPECIAL_11>", "<SPECIAL_12>", "</s>", "<TOOL_RESPONSE>",
    "[", "]", "{", "}", ",", ":", '"', '"name"', '"arguments"', '"calc"', '"email_send_email"', "null", "NaN",
    "1e999", "-0", "9" * 30, " ", "\n", "\\", "\\u00e9", "\\ud800", "é", "💥", "\u2028", "\x00",
])
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)
CALLS = st.lists(st.fixed_dictionaries({"name": st.sampled_from(["calc", "email_send_email"]) | st.text(max_size=12),
                                        "arguments": JSON_VALUES}), max_size=4)


def _block_text(draw_calls, prefix, suffix, wrap):
    payload = json.dumps(draw_calls, ensure_ascii=False) if wrap else json.dumps(draw_calls)[1:-1]
    return prefix + "<TOOLCALL>" + payload + "</TOOLCALL>" + suffix


TEXTS = (st.text(max_size=300)
         | st.lists(FRAGMENTS | st.text(max_size=5), max_size=60).map("".join)
         | st.builds(_block_text, CALLS, st.text(max_size=20), st.sampled_from(["", "\n", "x", "</TOOLCALL>"]),
                     st.booleans())
         | st.builds(lambda n, s: '<TOOLCALL>[{"name": "calc", "arguments": {"s": "' + s * n + '"}}]</TOOLCALL>',
                     st.integers(0, 40_000), st.sampled_from(["x", "é", "💥", "\\n"])))


def _check_parsed(parsed):
    assert isinstance(parsed, chat.ParsedAssistant) and isinstance(parsed.content, str)
    for call in parsed.tool_calls:
        assert isinstance(call, ToolCall) and isinstance(call.name, str) and call.name.strip()
        assert isinstance(call.arguments, (dict, str))
    for error in parsed.errors:
        assert isinstance(error.kind, Kind) and isinstance(error.message, str) and error.message
        assert json.loads(error.as_tool_response())["error"] == error.message
    assert parsed.needs_response == bool(parsed.tool_calls or parsed.errors)


@settings(max_examples=400, deadline=None, database=None)
@given(text=TEXTS, with_tools=st.booleans(), thinking=st.booleans())
def test_parse_never_raises(text, with_tools, thinking):
    _check_parsed(chat.parse_assistant(text, TOOLS if with_tools else None, thinking=thinking))


@settings(max_examples=100, deadline=None, database=None)
@given(calls=st.lists(st.builds(ToolCall, st.sampled_from(["calc", "email_send_email"]),
                                st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=4)), min_size=1, max_size=4),
       content=st.text(max_size=40).filter(lambda s: "<" not in s and "/" not in s))
def test_rendered_calls_parse_back(calls, content):
    # Chat markup inside argument strings cannot ride in this tag format (see the test below).
    assume(not any(marker in chat.tool_call_json(call) for call in calls for marker in MARKUP_IN_ARGUMENTS))
    sampled = chat.assistant_turn(content, calls)[len(chat.ASSISTANT_HEADER):-1]  # ends at <SPECIAL_12>
    parsed = chat.parse_assistant(sampled, TOOLS)
    assert parsed.tool_calls == calls and parsed.errors == [] and parsed.content == content.strip()
