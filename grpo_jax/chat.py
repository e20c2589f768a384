"""Nemotron-Nano-v2 chat format: rendering, trajectory pieces, tokenizer loading, tool-call parsing.

Pure Python (no JAX). The format is the `NVIDIA-Nemotron-Nano-9B-v2` chat template as published on
the model card, with the two edits of NeMo RL's workplace-assistant recipe:

* reasoning is OFF unless asked for (`enable_thinking=False` is the default; the template's
  `namespace(enable_thinking=true)` becomes false), and
* a trailing assistant message is rendered like every other past assistant turn (the stock template
  pulls it out and re-emits it after a fresh `<think>` prefix; the recipe deletes that block).

Rendered text, piece by piece::

    <SPECIAL_10>System\\n{system}[\\n\\n if system and tools][tool block if tools]\\n
    <SPECIAL_11>User\\n{user}\\n
    <SPECIAL_11>Assistant\\n{content after </think>}[\\n\\n if content and calls][<TOOLCALL>[...]</TOOLCALL>]\\n<SPECIAL_12>\\n
    <SPECIAL_11>User\\n<TOOL_RESPONSE>[{r1}, {r2}]</TOOL_RESPONSE>\\n          (consecutive tool messages)
    <SPECIAL_11>Assistant\\n<think></think>                                      (generation prompt, reasoning off)
    <SPECIAL_11>Assistant\\n<think>\\n                                            (generation prompt, reasoning on)

Reasoning switch: every system/user message whose content contains `/think` turns reasoning on, else
one containing `/no_think` turns it off; the last such message wins (inside ONE message `/think`
beats `/no_think`, as in the template's if/elif). Both are plain substring tests, so `/thinking` counts
as `/think` and is mangled to `ing` by the removal -- the real template does the same.

Tool-call arguments (decision, matching the real template): a `str` `arguments` value is emitted raw
(it is taken to be JSON text already, as in the OpenAI wire format); anything else goes through
transformers' `tojson`, i.e. `json.dumps(value, ensure_ascii=False)` with the default `", "`/`": "`
separators and insertion order -- exactly what the vLLM `nemotron_json` parser does when it turns a
parsed `arguments` dict back into a string. The call's `name` is spliced in raw, unescaped (template).
Tool responses: each tool message's `content` string is inserted raw inside `[...]`, joined by
`", "`. Callers pass JSON text (NeMo Gym's tool outputs are JSON text), so the list reads as JSON.

No re-tokenisation. A rollout's text is built as

    render(initial, add_generation_prompt=True) + G1 + END_OF_TURN
        + tool_response_continuation(responses_1) + G2 + END_OF_TURN + ...

where Gi is the sampled text and the tokens of Gi are the sampler's own. This equals
`render(transcript)` (transcript = initial + assistant_message_from_generation(Gi + END_OF_TURN) +
tool messages ..., no generation prompt) exactly, with these exceptions only:

1. Reasoning markers: each generation prompt ends with `<think></think>` (off) or `<think>\\n` (on),
   and the model's reasoning runs up to `</think>`. A past assistant turn is re-rendered from the text
   after `</think>` only, so `<think></think>` (off) or `<think>\\n...</think>` plus the whitespace
   after it (on) appear in the trajectory but not in the re-render.
2. The final newline: a past turn ends `\\n<SPECIAL_12>\\n`; the trajectory stops at the sampled
   `<SPECIAL_12>`, and the `\\n` only arrives as the first character of the next continuation.
3. Whitespace at the ends of a turn: the re-render strips the turn's text and closes it with exactly
   `\\n<SPECIAL_12>\\n`. A turn that starts with whitespace, does not end with exactly one `\\n`
   before its end-of-turn token, stopped on `</s>` or the length limit, or holds a second `</think>`
   re-renders differently. A transcript that stores the PARSED calls instead of the sampled text
   differs wherever the model's spacing or JSON was not canonical (`tool_call_json` re-serialises,
   with `\\n\\n` before `<TOOLCALL>`); `assistant_message_from_generation` keeps the model's bytes.
4. Tokens: even where the TEXT is identical, tokenising the re-rendered text need not give the
   sampled ids (the sampler may pick any segmentation, e.g. `he`+`llo`). Tokenising the appended
   pieces separately is exact wherever a piece boundary touches an added token: the continuation
   starts right after the sampled `<SPECIAL_12>` and ends with `</think>` (reasoning off) or with
   `\\n` after `<think>` (reasoning on -- a plain-text boundary, so there the sampled tokens and a
   re-tokenisation can differ). With our built tokenizer `</think>` is one added token; whether it
   is one in the real Nemotron vocabulary is unverified (if not, that boundary is plain text too).
"""
from __future__ import annotations

import dataclasses
import enum
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# --- Format constants -------------------------------------------------------------------------------

SYSTEM_HEADER = "<SPECIAL_10>System\n"
USER_HEADER = "<SPECIAL_11>User\n"
ASSISTANT_HEADER = "<SPECIAL_11>Assistant\n"
END_OF_TURN = "<SPECIAL_12>"
BOS_TOKEN = "<s>"
EOS_TOKEN = "</s>"
# The sampler stops on either; the chat format's own end of turn is <SPECIAL_12>.
STOP_TOKENS = (END_OF_TURN, EOS_TOKEN)
# Tokens that must be single tokens in any tokenizer used with this format.
CHAT_SPECIAL_TOKENS = ("<SPECIAL_10>", "<SPECIAL_11>", END_OF_TURN, BOS_TOKEN, EOS_TOKEN)

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
TOOLCALL_OPEN, TOOLCALL_CLOSE = "<TOOLCALL>", "</TOOLCALL>"
TOOL_RESPONSE_OPEN, TOOL_RESPONSE_CLOSE = "<TOOL_RESPONSE>", "</TOOL_RESPONSE>"
AVAILABLE_TOOLS_OPEN, AVAILABLE_TOOLS_CLOSE = "<AVAILABLE_TOOLS>", "</AVAILABLE_TOOLS>"
MARKUP_STRINGS = (TOOLCALL_OPEN, TOOLCALL_CLOSE, TOOL_RESPONSE_OPEN, TOOL_RESPONSE_CLOSE,
                  AVAILABLE_TOOLS_OPEN, AVAILABLE_TOOLS_CLOSE, THINK_OPEN, THINK_CLOSE)

THINK_SWITCH, NO_THINK_SWITCH = "/think", "/no_think"
REASONING_ON_PREFIX = THINK_OPEN + "\n"
REASONING_OFF_PREFIX = THINK_OPEN + THINK_CLOSE
# The template's tail of every past assistant turn: the model samples "\n<SPECIAL_12>", the final
# "\n" is glue that the rollout appends with the next turn.
ASSISTANT_TURN_END = "\n" + END_OF_TURN + "\n"
GLUE_AFTER_END_OF_TURN = "\n"

TOOLS_BLOCK_INTRO = "You can use the following tools to assist the user if required:\n" + AVAILABLE_TOOLS_OPEN + "["
# The doubled braces are literal text in the real template (it is a Jinja string, not a format string).
TOOLS_BLOCK_OUTRO = (
    "]" + AVAILABLE_TOOLS_CLOSE + "\n\n"
    "If you decide to call any tool(s), use the following format:\n"
    '<TOOLCALL>[{{"name": "tool_name1", "arguments": "tool_args1"}}, '
    '{{"name": "tool_name2", "arguments": "tool_args2"}}]</TOOLCALL>\n\n'
    "The user will execute tool-calls and return responses from tool(s) in this format:\n"
    '<TOOL_RESPONSE>[{{"tool_response1"}}, {{"tool_response2"}}]</TOOL_RESPONSE>\n\n'
    "Based on the tool responses, you can call additional tools if needed, correct tool calls if any "
    "errors are found, or just respond to the user."
)

ROLES = ("system", "user", "assistant", "tool")


def _json(value: Any) -> str:
    """transformers' `tojson` filter: no HTML escaping, no key sorting, non-ASCII kept."""
    return json.dumps(value, ensure_ascii=False)


# --- Rendering -----------------------------------------------------------------------------------------

def _check_content(message: Mapping[str, Any], index: int) -> None:
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        raise ValueError(f"message {index} ({message.get('role')!r}) has content of type "
                         f"{type(content).__name__}; expected a string or None")


def _checked_messages(messages: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence) or not messages:
        raise ValueError(f"messages must be a non-empty list of dicts, got {messages!r:.200}")
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise ValueError(f"message {index} is a {type(message).__name__}, expected a dict")
        role = message.get("role")
        if role not in ROLES:
            raise ValueError(f"message {index} has role {role!r}; expected one of {ROLES}")
        if role == "system" and index != 0:
            raise ValueError(f"message {index} is a system message; only the first message may be one")
        _check_content(message, index)
    return list(messages)


def reasoning_enabled(messages: Sequence[Mapping[str, Any]], default: bool = False) -> bool:
    """The effective reasoning mode: the last system/user `/think` or `/no_think` wins, else `default`.

    Tool messages never switch it, so it is constant over an episode: pass the result to
    `generation_prompt` / `tool_response_continuation` for every later turn.
    """
    enabled = bool(default)
    for message in messages:
        content = message.get("content")
        if message.get("role") in ("system", "user") and isinstance(content, str):
            if THINK_SWITCH in content:
                enabled = True
            elif NO_THINK_SWITCH in content:
                enabled = False
    return enabled


def _without_switches(text: str) -> str:
    # Same order as the template: "/think" first, then "/no_think".
    return text.replace(THINK_SWITCH, "").replace(NO_THINK_SWITCH, "").strip()


def _tool_schema(tool: Mapping[str, Any]) -> Any:
    # Chat-completions tools nest the schema under "function"; NeMo Gym's Responses-API tools are flat.
    if not isinstance(tool, Mapping):
        raise ValueError(f"tool {tool!r:.200} is a {type(tool).__name__}; expected a JSON schema dict")
    return tool["function"] if "function" in tool else tool


def system_turn(system_content: str = "", tools: Sequence[Mapping[str, Any]] | None = None) -> str:
    """The system turn, always present: header, content without switches, optional tool block, `\\n`."""
    content = _without_switches(system_content)
    text = SYSTEM_HEADER + content
    if tools:
        if content:
            text += "\n\n"
        text += TOOLS_BLOCK_INTRO + ", ".join(_json(_tool_schema(tool)) for tool in tools) + TOOLS_BLOCK_OUTRO
    return text + "\n"


def user_turn(content: str) -> str:
    return USER_HEADER + _without_switches(content) + "\n"


def _call_name_and_arguments(call: Any) -> tuple[str, Any]:
    if isinstance(call, Mapping):
        function = call["function"] if "function" in call else call
        if "name" not in function or "arguments" not in function:
            raise ValueError(f"tool call {call!r:.200} needs 'name' and 'arguments'")
        name, arguments = function["name"], function["arguments"]
    elif hasattr(call, "name") and hasattr(call, "arguments"):  # e.g. grpo_jax.envs.base.ToolCall
        name, arguments = call.name, call.arguments
    else:
        raise ValueError(f"tool call {call!r:.200} is neither a dict nor an object with name/arguments")
    if not isinstance(name, str):
        raise ValueError(f"tool call name {name!r} is not a string")
    return name, arguments


def tool_call_json(call: Any) -> str:
    """One call as the template writes it: `{"name": "<raw name>", "arguments": <raw str or tojson>}`."""
    name, arguments = _call_name_and_arguments(call)
    arguments_text = arguments if isinstance(arguments, str) else _json(arguments)
    return '{"name": "' + name + '", "arguments": ' + arguments_text + "}"


def _assistant_body(content: str | None, tool_calls: Sequence[Any] | None) -> str:
    text = content or ""
    if THINK_CLOSE in text:
        # split(...)[1] as in the template: text after a second </think> is dropped too.
        text = text.split(THINK_CLOSE)[1]
    text = text.strip()
    if tool_calls:
        if text:
            text += "\n\n"
        text += TOOLCALL_OPEN + "[" + ", ".join(tool_call_json(call) for call in tool_calls) + "]" + TOOLCALL_CLOSE
    return text


def assistant_turn(content: str | None, tool_calls: Sequence[Any] | None = None) -> str:
    """A past assistant turn: the text after the first `</think>` (stripped), calls, `\\n<SPECIAL_12>\\n`."""
    return ASSISTANT_HEADER + _assistant_body(content, tool_calls) + ASSISTANT_TURN_END


def assistant_generation(content: str | None, tool_calls: Sequence[Any] | None = None) -> str:
    """What a model should generate after the generation prompt for this turn, end-of-turn included.

    It is the canonical form: appended to a trajectory it re-renders exactly as `assistant_turn`
    (the turn's text, `\\n`, then `<SPECIAL_12>`; the final `\\n` arrives with the next piece).
    Expert trajectories for supervised warm starts are written in this form.
    """
    return _assistant_body(content, tool_calls) + ASSISTANT_TURN_END[:-1]


def _tool_response_block(responses: Sequence[str]) -> str:
    return USER_HEADER + TOOL_RESPONSE_OPEN + "[" + ", ".join(responses) + "]" + TOOL_RESPONSE_CLOSE + "\n"


def generation_prompt(enable_thinking: bool = False) -> str:
    """`<SPECIAL_11>Assistant\\n` plus `<think>\\n` (reasoning on) or `<think></think>` (off)."""
    return ASSISTANT_HEADER + (REASONING_ON_PREFIX if enable_thinking else REASONING_OFF_PREFIX)


def render(messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] | None = None, *,
           add_generation_prompt: bool = False, enable_thinking: bool = False) -> str:
    """The exact Nemotron-Nano-v2 text of a conversation (NeMo RL recipe variant, see module doc).

    `messages` are chat-completions dicts (`role` in system/user/assistant/tool, `content` str or None,
    assistant `tool_calls` as `{"function": {"name", "arguments"}}`, flat `{"name", "arguments"}` or
    ToolCall objects). `tools` are schemas, nested under "function" or flat. `enable_thinking` is the
    reasoning mode when no message carries `/think` or `/no_think`. Raises ValueError on bad input.
    """
    messages = _checked_messages(messages)
    thinking = reasoning_enabled(messages, enable_thinking)
    if messages[0]["role"] == "system":
        parts, rest = [system_turn(messages[0].get("content") or "", tools)], messages[1:]
    else:
        parts, rest = [system_turn("", tools)], messages
    pending_responses: list[str] = []
    for message in rest:
        role = message["role"]
        if role != "tool" and pending_responses:
            parts.append(_tool_response_block(pending_responses))
            pending_responses = []
        if role == "tool":
            pending_responses.append(message.get("content") or "")
        elif role == "user":
            parts.append(user_turn(message.get("content") or ""))
        else:
            parts.append(assistant_turn(message.get("content"), message.get("tool_calls")))
    if pending_responses:
        parts.append(_tool_response_block(pending_responses))
    if add_generation_prompt:
        parts.append(generation_prompt(thinking))
    return "".join(parts)


# --- Trajectory pieces (appended to sampled tokens, never re-tokenising them) ---------------------------

def tool_response_turn(responses: Sequence[str]) -> str:
    """Text appended right after the sampled `<SPECIAL_12>`: the `\\n` glue and the tool-response turn."""
    if isinstance(responses, str) or not responses or not all(isinstance(r, str) for r in responses):
        raise ValueError(f"responses must be a non-empty list of strings, got {responses!r:.200}")
    return GLUE_AFTER_END_OF_TURN + _tool_response_block(responses)


def tool_response_continuation(responses: Sequence[str], *, enable_thinking: bool = False) -> str:
    """Everything between one sampled `<SPECIAL_12>` and the next sampled token: responses + prompt."""
    return tool_response_turn(responses) + generation_prompt(enable_thinking)


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def encodable_text(text: str) -> str:
    """`text` with lone UTF-16 surrogates replaced by U+FFFD, so the tokenizer can encode it.

    A model can write `"\\ud800"` inside its tool-call JSON; json.loads turns that into a lone
    surrogate, which tools and error messages echo back, and which the tokenizer (and a UTF-8
    log file) rejects with an exception. Everything else passes unchanged.
    """
    return _LONE_SURROGATE.sub("\ufffd", text)


def assistant_message_from_generation(generated_text: str) -> dict[str, str]:
    """The transcript message for a sampled turn, keeping the model's own text (tool markup included).

    The content is the sampled text without its end-of-turn token; `render` re-emits it byte for byte
    (modulo the exceptions in the module doc), which re-serialising parsed calls would not guarantee.
    """
    text = generated_text
    for stop in STOP_TOKENS:
        if text.endswith(stop):
            text = text[: -len(stop)]
            break
    return {"role": "assistant", "content": text}


# --- Jinja template for tokenizer_config.json (must render exactly like `render`) ------------------------

_JINJA_SOURCE = r"""
{%- if not messages -%}{{- raise_exception('render needs at least one message') -}}{%- endif -%}
{%- set ns = namespace(thinking=(enable_thinking is defined and enable_thinking)) -%}
{%- for message in messages -%}
  {%- if message['role'] not in ['system', 'user', 'assistant', 'tool'] -%}
    {{- raise_exception('unknown message role: ' + message['role'] | string) -}}
  {%- endif -%}
  {%- if message['role'] == 'system' and not loop.first -%}
    {{- raise_exception('only the first message may be a system message') -}}
  {%- endif -%}
  {%- if message['content'] is defined and message['content'] is not none and message['content'] is not string -%}
    {{- raise_exception('message content must be a string') -}}
  {%- endif -%}
  {%- if message['role'] in ['system', 'user'] and message['content'] is string -%}
    {%- if @THINK_SWITCH@ in message['content'] -%}{%- set ns.thinking = true -%}
    {%- elif @NO_THINK_SWITCH@ in message['content'] -%}{%- set ns.thinking = false -%}
    {%- endif -%}
  {%- endif -%}
{%- endfor -%}
{%- if messages[0]['role'] == 'system' -%}
  {%- set system_content = messages[0]['content'] if messages[0]['content'] is string else '' -%}
  {%- set system_content = system_content.replace(@THINK_SWITCH@, '').replace(@NO_THINK_SWITCH@, '').strip() -%}
  {%- set conversation = messages[1:] -%}
{%- else -%}
  {%- set system_content = '' -%}
  {%- set conversation = messages -%}
{%- endif -%}
{{- @SYSTEM_HEADER@ + system_content -}}
{%- if tools -%}
  {%- if system_content -%}{{- '\n\n' -}}{%- endif -%}
  {{- @TOOLS_BLOCK_INTRO@ -}}
  {%- for tool in tools -%}
    {{- (tool['function'] if 'function' in tool else tool) | tojson -}}
    {%- if not loop.last -%}{{- ', ' -}}{%- endif -%}
  {%- endfor -%}
  {{- @TOOLS_BLOCK_OUTRO@ -}}
{%- endif -%}
{{- '\n' -}}
{%- for message in conversation -%}
  {%- set content = message['content'] if message['content'] is string else '' -%}
  {%- if message['role'] == 'user' -%}
    {{- @USER_HEADER@ + content.replace(@THINK_SWITCH@, '').replace(@NO_THINK_SWITCH@, '').strip() + '\n' -}}
  {%- elif message['role'] == 'tool' -%}
    {%- if loop.first or loop.previtem['role'] != 'tool' -%}
      {{- @USER_HEADER@ + @TOOL_RESPONSE_OPEN@ + '[' -}}
    {%- endif -%}
    {{- content -}}
    {%- if loop.last or loop.nextitem['role'] != 'tool' -%}
      {{- ']' + @TOOL_RESPONSE_CLOSE@ + '\n' -}}
    {%- else -%}
      {{- ', ' -}}
    {%- endif -%}
  {%- else -%}
    {%- if @THINK_CLOSE@ in content -%}{%- set content = content.split(@THINK_CLOSE@)[1] -%}{%- endif -%}
    {%- set content = content.strip() -%}
    {{- @ASSISTANT_HEADER@ + content -}}
    {%- if message['tool_calls'] -%}
      {%- if content -%}{{- '\n\n' -}}{%- endif -%}
      {{- @TOOLCALL_OPEN@ + '[' -}}
      {%- for call in message['tool_calls'] -%}
        {%- set fn = call['function'] if 'function' in call else call -%}
        {{- '{"name": "' + fn['name'] + '", "arguments": ' -}}
        {%- if fn['arguments'] is string -%}{{- fn['arguments'] -}}{%- else -%}{{- fn['arguments'] | tojson -}}{%- endif -%}
        {{- '}' -}}
        {%- if not loop.last -%}{{- ', ' -}}{%- endif -%}
      {%- endfor -%}
      {{- ']' + @TOOLCALL_CLOSE@ -}}
    {%- endif -%}
    {{- @ASSISTANT_TURN_END@ -}}
  {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
  {{- @ASSISTANT_HEADER@ + (@REASONING_ON_PREFIX@ if ns.thinking else @REASONING_OFF_PREFIX@) -}}
{%- endif -%}
"""


def _build_jinja_template() -> str:
    # The constants above are the single source of truth; they enter the template as JSON string
    # literals, which Jinja's string-literal unescaping reads back unchanged (all are ASCII).
    template = _JINJA_SOURCE.strip()
    for name in ("THINK_SWITCH", "NO_THINK_SWITCH", "SYSTEM_HEADER", "TOOLS_BLOCK_INTRO", "TOOLS_BLOCK_OUTRO",
                 "USER_HEADER", "TOOL_RESPONSE_OPEN", "TOOL_RESPONSE_CLOSE", "THINK_CLOSE", "ASSISTANT_HEADER",
                 "TOOLCALL_OPEN", "TOOLCALL_CLOSE", "ASSISTANT_TURN_END", "REASONING_ON_PREFIX",
                 "REASONING_OFF_PREFIX"):
        template = template.replace("@" + name + "@", json.dumps(globals()[name]))
    if "@" in template:
        raise AssertionError("unreplaced placeholder in the chat template")
    return template


JINJA_CHAT_TEMPLATE = _build_jinja_template()


# --- Tokenizer loading and piece-wise encoding ------------------------------------------------------------

def load_tokenizer(path: str | os.PathLike) -> Any:
    """A transformers tokenizer from a local directory only (no hub, no remote code).

    Raises ValueError if the directory is missing or a chat special token is not a single token.
    """
    if not os.path.isdir(path):
        raise ValueError(f"tokenizer directory {os.fspath(path)!r} does not exist")
    from transformers import AutoTokenizer  # slow import, only needed here

    tokenizer = AutoTokenizer.from_pretrained(os.fspath(path), local_files_only=True, trust_remote_code=False)
    for token in CHAT_SPECIAL_TOKENS:
        ids = encode_piece(tokenizer, token)
        if len(ids) != 1:
            raise ValueError(f"tokenizer at {os.fspath(path)!r} splits {token!r} into {len(ids)} tokens {ids}; "
                             "the chat format needs it as one token")
    return tokenizer


def encode_piece(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a text piece: no BOS or other added prefix; special tokens in the text stay whole."""
    return list(tokenizer.encode(text, add_special_tokens=False))


def decode_tokens(tokenizer: Any, token_ids: Iterable[int]) -> str:
    """Text of sampled ids with special tokens kept and no clean-up, for the parser and for logs."""
    return tokenizer.decode(list(token_ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)


def stop_token_ids(tokenizer: Any) -> list[int]:
    """Ids the sampler stops on: `<SPECIAL_12>` (end of turn) and `</s>`."""
    return [encode_piece(tokenizer, token)[0] for token in STOP_TOKENS]


# --- Parsing assistant text into tool calls ------------------------------------------------------------------

DEFAULT_MAX_PAYLOAD_CHARS = 65_536    # one <TOOLCALL> block; the workplace tools need a few hundred
DEFAULT_MAX_ARGUMENTS_CHARS = 16_384  # one call's arguments, serialised
DEFAULT_MAX_ARGUMENTS_DEPTH = 16      # nesting of one call's arguments (the workplace tools use 1)
# Chat markup that never belongs inside a tool-call block (role headers, responses, the tool list).
_FORBIDDEN_IN_BLOCK = ("<SPECIAL_10>", "<SPECIAL_11>", END_OF_TURN, TOOL_RESPONSE_OPEN, TOOL_RESPONSE_CLOSE,
                       AVAILABLE_TOOLS_OPEN, AVAILABLE_TOOLS_CLOSE)


class ToolCallErrorKind(enum.StrEnum):
    STRAY_CLOSE_TAG = "stray_close_tag"
    UNCLOSED_BLOCK = "unclosed_block"
    NESTED_MARKUP = "nested_markup"
    MULTIPLE_BLOCKS = "multiple_blocks"
    TEXT_AFTER_BLOCK = "text_after_block"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    INVALID_JSON = "invalid_json"
    NOT_A_LIST = "not_a_list"
    EMPTY_LIST = "empty_list"
    CALL_NOT_OBJECT = "call_not_object"
    MISSING_NAME = "missing_name"
    INVALID_NAME = "invalid_name"
    UNKNOWN_TOOL = "unknown_tool"
    MISSING_ARGUMENTS = "missing_arguments"
    INVALID_ARGUMENTS = "invalid_arguments"
    ARGUMENTS_TOO_LARGE = "arguments_too_large"


@dataclasses.dataclass(frozen=True)
class ToolCallError:
    """One problem with the model's tool-call markup; `message` is written for the model to read.

    `call_index` is the 0-based position in the block's list for per-call errors, else None.
    """
    kind: ToolCallErrorKind
    message: str
    call_index: int | None = None

    def as_tool_response(self) -> str:
        """The error as a tool response string, in NeMo Gym's `{"error": ...}` style."""
        return _json({"error": self.message})


@dataclasses.dataclass(frozen=True)
class ParsedAssistant:
    """An assistant turn split into reasoning, visible content, executable calls and markup errors."""
    content: str
    tool_calls: list  # list[grpo_jax.envs.base.ToolCall], in block order
    errors: list[ToolCallError]
    reasoning: str | None = None

    @property
    def needs_response(self) -> bool:
        """True when the turn asked for tools (validly or not): the episode continues with responses."""
        return bool(self.tool_calls or self.errors)


def tool_names(tools: Iterable[Mapping[str, Any]]) -> frozenset[str]:
    return frozenset(name for tool in tools if isinstance(name := _tool_schema(tool).get("name"), str))


def _json_type(value: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number")


def _reject_constant(constant: str) -> Any:
    raise ValueError(f"{constant} is not valid JSON")


def _depth(value: Any) -> int:
    """Nesting depth of a JSON value, iteratively (no recursion limit to hit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


def _check_call(item: Any, index: int, known_tools: frozenset[str] | None, max_arguments_chars: int,
                max_arguments_depth: int) -> ToolCallError | None:
    position = f"Tool call {index + 1}"

    def error(kind: ToolCallErrorKind, message: str) -> ToolCallError:
        return ToolCallError(kind, message, index)

    if not isinstance(item, dict):
        return error(ToolCallErrorKind.CALL_NOT_OBJECT,
                     f'{position} is a JSON {_json_type(item)}; expected {{"name": ..., "arguments": {{...}}}}.')
    if "name" not in item:
        return error(ToolCallErrorKind.MISSING_NAME, f'{position} has no "name" field.')
    name = item["name"]
    if not isinstance(name, str) or not name.strip():
        return error(ToolCallErrorKind.INVALID_NAME, f'{position} has "name" {_json(name)[:100]}; '
                                                     "expected a tool name string.")
    if known_tools is not None and name not in known_tools:
        return error(ToolCallErrorKind.UNKNOWN_TOOL, f'{position} calls unknown tool "{name[:100]}"; '
                                                     "use one of the tools in <AVAILABLE_TOOLS>.")
    if "arguments" not in item:
        return error(ToolCallErrorKind.MISSING_ARGUMENTS, f'{position} ("{name}") has no "arguments" field; '
                                                          "use {} for a tool without parameters.")
    arguments = item["arguments"]
    if not isinstance(arguments, (dict, str)):
        return error(ToolCallErrorKind.INVALID_ARGUMENTS, f'{position} ("{name}") has "arguments" of type '
                                                          f"{_json_type(arguments)}; expected a JSON object.")
    if isinstance(arguments, dict) and _depth(arguments) > max_arguments_depth:
        return error(ToolCallErrorKind.ARGUMENTS_TOO_LARGE, f'{position} ("{name}") has arguments nested more '
                                                            f"than {max_arguments_depth} levels deep.")
    size = len(arguments) if isinstance(arguments, str) else len(_json(arguments))
    if size > max_arguments_chars:
        return error(ToolCallErrorKind.ARGUMENTS_TOO_LARGE, f'{position} ("{name}") has {size} characters of '
                                                            f"arguments, more than the limit of {max_arguments_chars}.")
    return None


def _parse_block(payload: str, known_tools: frozenset[str] | None, tool_call_type: type, max_payload_chars: int,
                 max_arguments_chars: int, max_arguments_depth: int) -> tuple[list, list[ToolCallError]]:
    if len(payload) > max_payload_chars:
        return [], [ToolCallError(ToolCallErrorKind.PAYLOAD_TOO_LARGE,
                                  f"The <TOOLCALL> block has {len(payload)} characters, more than the limit of "
                                  f"{max_payload_chars}; no tool was called.")]
    try:
        data = json.loads(payload, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        detail = f"{exc.msg} at character {exc.pos}"
    except RecursionError:
        detail = "nested too deeply"
    except ValueError as exc:  # e.g. NaN, or an integer literal over Python's digit limit
        detail = str(exc)[:200]
    else:
        detail = None
    if detail is not None:
        return [], [ToolCallError(ToolCallErrorKind.INVALID_JSON,
                                  f"The <TOOLCALL> block is not valid JSON ({detail}); no tool was called. Expected "
                                  '<TOOLCALL>[{"name": "tool_name", "arguments": {...}}]</TOOLCALL>.')]
    if not isinstance(data, list):
        return [], [ToolCallError(ToolCallErrorKind.NOT_A_LIST,
                                  f"The <TOOLCALL> block holds a JSON {_json_type(data)}; expected a list of calls "
                                  '[{"name": ..., "arguments": {...}}]. No tool was called.')]
    if not data:
        return [], [ToolCallError(ToolCallErrorKind.EMPTY_LIST, "The <TOOLCALL> block holds an empty list; "
                                                                "no tool was called.")]
    calls, errors = [], []
    for index, item in enumerate(data):
        problem = _check_call(item, index, known_tools, max_arguments_chars, max_arguments_depth)
        if problem is None:
            calls.append(tool_call_type(name=item["name"], arguments=item["arguments"]))
        else:
            errors.append(problem)
    return calls, errors


def parse_assistant(text: str, tools: Iterable[Mapping[str, Any]] | None = None, *, thinking: bool = False,
                    max_payload_chars: int = DEFAULT_MAX_PAYLOAD_CHARS,
                    max_arguments_chars: int = DEFAULT_MAX_ARGUMENTS_CHARS,
                    max_arguments_depth: int = DEFAULT_MAX_ARGUMENTS_DEPTH) -> ParsedAssistant:
    """Split sampled assistant text into reasoning, content, tool calls and structured errors.

    Never raises on model output (only on a non-string `text`). Rules:
    - One trailing `<SPECIAL_12>` or `</s>` is dropped. Text up to the first `</think>` is reasoning;
      with `thinking=True` (the prompt opened `<think>`) an unclosed reasoning block is all reasoning.
    - `content` is the stripped text before the first `<TOOLCALL>` (all of it if there is none).
    - Only the FIRST `<TOOLCALL>...</TOOLCALL>` block is executed (as vLLM's `nemotron_json`); later
      blocks, a stray `</TOOLCALL>`, or text after the block are reported but do not cancel it.
    - The block must be a JSON list (stricter than vLLM, which wraps a bare object in brackets). If
      it is unclosed, nests `<TOOLCALL>` or chat markup, is too large or is not valid JSON, no call
      runs. Otherwise each element is judged alone: valid calls are kept in order, each invalid one
      gives an error with its `call_index`. `arguments` must be an object (kept as a dict) or a
      string (kept raw, as vLLM does; the environment decodes it).
    - `tools`, if given, makes calls to other names errors.
    - Chat markup inside argument strings (`</TOOLCALL>`, `<TOOLCALL>`, `</think>`, role and
      response tags) cannot ride in this tag format (vLLM's regex breaks on it too): such a turn
      yields errors, never an altered call. JSON escapes (`\\u003c/think>`) carry those strings.
    """
    if not isinstance(text, str):
        raise ValueError(f"parse_assistant needs a string, got {type(text).__name__}")
    from grpo_jax.envs.base import ToolCall  # late: keeps `chat` importable apart from the env package

    known_tools = tool_names(tools) if tools is not None else None
    body, reasoning = text, None
    for stop in STOP_TOKENS:
        if body.endswith(stop):
            body = body[: -len(stop)]
            break
    if THINK_CLOSE in body:
        reasoning, body = body.split(THINK_CLOSE, 1)
    elif thinking:
        return ParsedAssistant(content="", tool_calls=[], errors=[], reasoning=body)

    errors: list[ToolCallError] = []
    open_at = body.find(TOOLCALL_OPEN)
    before = body if open_at < 0 else body[:open_at]
    if TOOLCALL_CLOSE in before:
        errors.append(ToolCallError(ToolCallErrorKind.STRAY_CLOSE_TAG,
                                    "Found </TOOLCALL> without an opening <TOOLCALL>; it was ignored."))
    content = before.strip()
    if open_at < 0:
        return ParsedAssistant(content=content, tool_calls=[], errors=errors, reasoning=reasoning)

    payload_start = open_at + len(TOOLCALL_OPEN)
    close_at = body.find(TOOLCALL_CLOSE, payload_start)
    if close_at < 0:
        errors.append(ToolCallError(ToolCallErrorKind.UNCLOSED_BLOCK,
                                    "The <TOOLCALL> block is not closed with </TOOLCALL>; no tool was called."))
        return ParsedAssistant(content=content, tool_calls=[], errors=errors, reasoning=reasoning)
    payload, after = body[payload_start:close_at], body[close_at + len(TOOLCALL_CLOSE):]

    calls: list = []
    if TOOLCALL_OPEN in payload or any(marker in payload for marker in _FORBIDDEN_IN_BLOCK):
        errors.append(ToolCallError(ToolCallErrorKind.NESTED_MARKUP,
                                    "The <TOOLCALL> block contains another <TOOLCALL> tag or chat markup; "
                                    "no tool was called."))
    else:
        calls, call_errors = _parse_block(payload, known_tools, ToolCall, max_payload_chars, max_arguments_chars,
                                          max_arguments_depth)
        errors.extend(call_errors)

    if TOOLCALL_OPEN in after:
        errors.append(ToolCallError(ToolCallErrorKind.MULTIPLE_BLOCKS,
                                    "Only the first <TOOLCALL> block is used; put all calls in one list: "
                                    '<TOOLCALL>[{"name": ..., "arguments": {...}}, {...}]</TOOLCALL>.'))
    elif TOOLCALL_CLOSE in after:
        errors.append(ToolCallError(ToolCallErrorKind.STRAY_CLOSE_TAG,
                                    "Found a second </TOOLCALL> without an opening <TOOLCALL>; it was ignored."))
    elif after.strip():
        errors.append(ToolCallError(ToolCallErrorKind.TEXT_AFTER_BLOCK,
                                    "Text after </TOOLCALL> was ignored; end the turn after the tool calls."))
    return ParsedAssistant(content=content, tool_calls=calls, errors=errors, reasoning=reasoning)
