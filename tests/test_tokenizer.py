"""The trained chat tokenizer (grpo_jax.tokenizer): HF loading offline, ids, template parity, token exactness."""
import json
import pathlib
import subprocess
import sys

import pytest

from grpo_jax import chat
from grpo_jax.envs.base import ToolCall
from grpo_jax.tokenizer import MARKUP_TOKENS, PAD_TOKEN, RESERVED_SPECIAL_TOKENS, build_tokenizer

VOCAB_SIZE = 600
TOOLS = [
    {"type": "function", "name": "email_send_email", "description": "Sends an email to a recipient.",
     "parameters": {"type": "object", "properties": {"recipient": {"type": "string"}, "body": {"type": "string"}},
                    "required": ["recipient", "body"], "additionalProperties": False}, "strict": False},
    {"type": "function", "function": {"name": "calendar_create_event", "description": "Créé un événement.",
                                      "parameters": {"type": "object", "properties": {"duration": {"type": "integer"}}}}},
]


def synthetic_corpus() -> list[str]:
    """Deterministic workplace-flavoured text, rendered chats included (markup, digits, newlines)."""
    names = ["alice", "bo", "chen", "dana", "emeka"]
    texts = []
    for i in range(120):
        name = names[i % len(names)]
        day = 1 + i % 28
        texts.append(f"Send an email to {name}@atlas.com about the meeting on 2023-11-{day:02d} at {9 + i % 8}:30.\n\n")
        texts.append(f"Event {i:08d} lasts {15 * (1 + i % 6)} minutes; the customer status is Qualified.\n")
        messages = [{"role": "system", "content": "You are a workplace assistant. Today is 2023-11-30."},
                    {"role": "user", "content": f"Email {name} the report"},
                    {"role": "assistant", "content": "", "tool_calls": [
                        {"name": "email_send_email", "arguments": {"recipient": f"{name}@atlas.com", "body": "report"}}]},
                    {"role": "tool", "content": '{"output": "Email sent successfully."}'},
                    {"role": "assistant", "content": f"Done, {name} has the report."}]
        texts.append(chat.render(messages, TOOLS if i % 10 == 0 else None, add_generation_prompt=True))
    return texts


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> pathlib.Path:
    return build_tokenizer(synthetic_corpus(), VOCAB_SIZE, tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir):
    return chat.load_tokenizer(tokenizer_dir)


def test_files_and_config(tokenizer_dir):
    assert sorted(p.name for p in tokenizer_dir.iterdir()) == ["tokenizer.json", "tokenizer_config.json"]
    config = json.loads((tokenizer_dir / "tokenizer_config.json").read_text())
    assert config["chat_template"] == chat.JINJA_CHAT_TEMPLATE
    assert (config["eos_token"], config["bos_token"], config["pad_token"]) == ("<SPECIAL_12>", "<s>", PAD_TOKEN)


def test_loads_offline_with_auto_tokenizer(tokenizer_dir, tokenizer):
    from transformers import AutoTokenizer

    direct = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    assert direct.get_vocab() == tokenizer.get_vocab()
    assert len(tokenizer) <= VOCAB_SIZE
    assert (tokenizer.eos_token, tokenizer.bos_token, tokenizer.pad_token) == ("<SPECIAL_12>", "<s>", PAD_TOKEN)
    assert (tokenizer.eos_token_id, tokenizer.bos_token_id, tokenizer.pad_token_id) == (12, 1, 3)
    # No BOS or EOS is added on plain encoding; the chat template emits none either.
    assert tokenizer("hello")["input_ids"] == chat.encode_piece(tokenizer, "hello")
    assert tokenizer.convert_ids_to_tokens(chat.encode_piece(tokenizer, "hello"))[0] != "<s>"


def test_special_and_markup_tokens_are_single_tokens_with_fixed_ids(tokenizer):
    for token_id, token in enumerate(RESERVED_SPECIAL_TOKENS + MARKUP_TOKENS):
        assert chat.encode_piece(tokenizer, token) == [token_id], token
        assert token_id in chat.encode_piece(tokenizer, "ab" + token + "cd"), token  # also inside text
    assert [chat.encode_piece(tokenizer, t)[0] for t in ("<SPECIAL_10>", "<SPECIAL_11>", "<SPECIAL_12>", "<s>", "</s>")] \
        == [10, 11, 12, 1, 2]
    assert chat.stop_token_ids(tokenizer) == [12, 2]
    # Markup is text (kept when special tokens are skipped); the chat control tokens are special.
    ids = chat.encode_piece(tokenizer, "<SPECIAL_11>Assistant\n<think></think><TOOLCALL>[]</TOOLCALL><SPECIAL_12>")
    assert tokenizer.decode(ids, skip_special_tokens=True) == "Assistant\n<think></think><TOOLCALL>[]</TOOLCALL>"


def test_digits_are_split_one_per_token(tokenizer):
    tokens = tokenizer.convert_ids_to_tokens(chat.encode_piece(tokenizer, "id 00000479 on 2023-11-30"))
    digits = [t for t in tokens if any(c.isdigit() for c in t)]
    assert digits == list("00000479") + list("2023") + list("11") + list("30")


def test_a_word_is_the_same_token_after_a_space_and_inside_a_json_string(tokenizer):
    """Filling an argument from the request is then copying tokens ("Email chen" -> "chen")."""
    in_request = tokenizer.convert_ids_to_tokens(chat.encode_piece(tokenizer, "Email chen the report"))
    in_argument = tokenizer.convert_ids_to_tokens(chat.encode_piece(tokenizer, '{"name": "chen"}'))
    assert "chen" in in_request and "chen" in in_argument
    assert not any(token.endswith("chen") and token != "chen" for token in in_request + in_argument)


def test_decode_round_trips_text(tokenizer):
    text = "Héllo  wörld\n\n\tüñí 💥 <SPECIAL_11>User\n{\"a\": [1, 2]}</TOOLCALL>\n<SPECIAL_12>"
    assert chat.decode_tokens(tokenizer, chat.encode_piece(tokenizer, text)) == text


CONVERSATIONS = [
    [{"role": "user", "content": "Hello"}],
    [{"role": "system", "content": "You are helpful. /no_think"}, {"role": "user", "content": "Hi"}],
    [{"role": "system", "content": "Be exact."}, {"role": "user", "content": "Email bo /think"}],
    [{"role": "system", "content": "Sys"}, {"role": "user", "content": "Email bo and book 30 min"},
     {"role": "assistant", "content": "<think>plan</think>Doing both.", "tool_calls": [
         {"type": "function", "function": {"name": "email_send_email", "arguments": {"recipient": "bo@x.com", "body": "é"}}},
         {"name": "calendar_create_event", "arguments": '{"duration": 30}'}]},
     {"role": "tool", "content": '{"output": "Email sent successfully."}'},
     {"role": "tool", "content": '{"output": "00000300"}'},
     {"role": "assistant", "content": "Both done."},
     {"role": "user", "content": "Thanks"}],
    [{"role": "user", "content": "q"}, {"role": "assistant", "content": None,
                                         "tool_calls": [{"name": "calendar_create_event", "arguments": {}}]},
     {"role": "tool", "content": "Error executing tool"}],
    [{"role": "user", "content": "q"}, {"role": "assistant", "content": "On it.", "tool_calls": [
        ToolCall("email_send_email", {"recipient": "ü@x.com", "body": "a\nb"}), ToolCall("calendar_create_event", "{}")]}],
]


@pytest.mark.parametrize("messages", CONVERSATIONS)
@pytest.mark.parametrize("tools", [None, TOOLS])
@pytest.mark.parametrize("enable_thinking", [False, True])
@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_chat_template_equals_render(tokenizer, messages, tools, enable_thinking, add_generation_prompt):
    hf = tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=add_generation_prompt,
                                       enable_thinking=enable_thinking, tokenize=False)
    assert hf == chat.render(messages, tools, add_generation_prompt=add_generation_prompt,
                             enable_thinking=enable_thinking)


def test_chat_template_default_is_reasoning_off(tokenizer):
    messages = CONVERSATIONS[0]
    assert tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) == \
        chat.render(messages, add_generation_prompt=True)
    assert chat.render(messages, add_generation_prompt=True).endswith("<think></think>")


def test_chat_template_rejects_what_render_rejects(tokenizer):
    from jinja2.exceptions import TemplateError

    for bad in ([{"role": "robot", "content": "x"}],
                [{"role": "user", "content": "x"}, {"role": "system", "content": "y"}]):
        with pytest.raises(ValueError):
            chat.render(bad)
        with pytest.raises(TemplateError):
            tokenizer.apply_chat_template(bad, tokenize=False)


def test_build_is_deterministic(tokenizer_dir, tmp_path):
    again = build_tokenizer(synthetic_corpus(), VOCAB_SIZE, tmp_path / "again")
    # A fresh process has other hash seeds (Python and Rust): the files must still be identical.
    script = ("import sys; from tests.test_tokenizer import synthetic_corpus, VOCAB_SIZE; "
              "from grpo_jax.tokenizer import build_tokenizer; build_tokenizer(synthetic_corpus(), VOCAB_SIZE, sys.argv[1])")
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "other")], check=True,
                   cwd=pathlib.Path(__file__).resolve().parents[1], env={"PYTHONHASHSEED": "123", "PATH": ""})
    for name in ("tokenizer.json", "tokenizer_config.json"):
        reference = (tokenizer_dir / name).read_bytes()
        assert (again / name).read_bytes() == reference
        assert (tmp_path / "other" / name).read_bytes() == reference


def test_build_validates_arguments(tmp_path):
    with pytest.raises(ValueError, match="vocab_size"):
        build_tokenizer(["abc"], 200, tmp_path)
    with pytest.raises(ValueError, match="texts"):
        build_tokenizer(["abc", 5], 400, tmp_path)


def test_markup_tokens_can_be_left_to_bpe(tmp_path):
    tokenizer = chat.load_tokenizer(build_tokenizer(synthetic_corpus()[:30], 400, tmp_path, markup_tokens=False))
    assert len(chat.encode_piece(tokenizer, "<TOOLCALL>")) > 1
    assert chat.encode_piece(tokenizer, "<SPECIAL_12>") == [12]


def test_load_tokenizer_needs_a_local_directory(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        chat.load_tokenizer(tmp_path / "missing")


# --- Token exactness of the trajectory pieces -----------------------------------------------------------------

def test_pieces_tokenise_like_the_whole_at_added_token_boundaries(tokenizer):
    """Reasoning off: every piece boundary touches an added token, so per-piece encoding is exact."""
    initial = CONVERSATIONS[3][:2]
    sampled = ['Booking.\n\n<TOOLCALL>[{"name": "calendar_create_event", "arguments": {"duration": 30}}]</TOOLCALL>\n'
               "<SPECIAL_12>", "Booked for 2023-11-30.\n<SPECIAL_12>"]
    pieces = [chat.render(initial, TOOLS, add_generation_prompt=True), sampled[0],
              chat.tool_response_continuation(['{"output": "00000300"}']), sampled[1]]
    per_piece = [token for piece in pieces for token in chat.encode_piece(tokenizer, piece)]
    assert per_piece == chat.encode_piece(tokenizer, "".join(pieces))
    assert chat.encode_piece(tokenizer, pieces[0])[-1] == MARKUP_TOKENS.index("</think>") + len(RESERVED_SPECIAL_TOKENS)


def test_sampled_ids_need_not_be_the_canonical_tokenisation(tokenizer):
    """Documented exception 4: same text, different ids -- why generated tokens are never re-tokenised."""
    word = " Qualified"
    canonical = chat.encode_piece(tokenizer, word)
    byte_by_byte = [chat.encode_piece(tokenizer, ch)[0] for ch in word]  # a segmentation a sampler may emit
    assert len(canonical) < len(byte_by_byte)
    assert chat.decode_tokens(tokenizer, byte_by_byte) == chat.decode_tokens(tokenizer, canonical) == word


def test_reasoning_on_prompt_boundary_is_plain_text(tokenizer):
    """Documented exception 4: `<think>\\n` ends in plain text, so a continuation can merge across it."""
    prompt = chat.render(CONVERSATIONS[0], add_generation_prompt=True, enable_thinking=True)
    assert prompt.endswith("<think>\n")
    mismatches = [continuation for continuation in ("\n", "\n\n", " ", "\n<SPECIAL_12>")
                  if chat.encode_piece(tokenizer, prompt) + chat.encode_piece(tokenizer, continuation)
                  != chat.encode_piece(tokenizer, prompt + continuation)]
    assert mismatches
