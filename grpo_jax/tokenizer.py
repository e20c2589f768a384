"""Train a small byte-level BPE tokenizer that speaks the Nemotron-Nano-v2 chat format.

For models trained from scratch on our task text (the real 131072-token Nemotron vocabulary is far
larger than such models need). The result is a Hugging Face tokenizer directory::

    out_dir/tokenizer.json          byte-level BPE, digits split one per token, identifiers
                                    with underscores kept whole as words
    out_dir/tokenizer_config.json   bos <s>, eos <SPECIAL_12>, pad <SPECIAL_3>, no BOS added,
                                    chat_template = chat.JINJA_CHAT_TEMPLATE (renders like chat.render)

Fixed ids (those of the real Nemotron vocabulary where they are known):

    0 <unk>   1 <s>   2 </s>   3..12 <SPECIAL_3>..<SPECIAL_12>   (10, 11, 12 are the chat tokens)
    13..20  <TOOLCALL> </TOOLCALL> <TOOL_RESPONSE> </TOOL_RESPONSE> <AVAILABLE_TOOLS>
            </AVAILABLE_TOOLS> <think> </think>     (with markup_tokens=True, the default)

The markup strings are single, non-special added tokens (decision): a call's framing is one token
for the policy rather than a spelling of `<`, `TOOL`, `CALL`, `>`; sequences get shorter; and the
generation prompt with reasoning off ends in the token `</think>`, so the prompt/continuation
boundary is an added-token boundary and tokenising pieces separately is exact there. They are not
"special", so `decode(..., skip_special_tokens=True)` keeps them (they are text the parser reads).
Whether the real Nemotron tokenizer has them as single tokens is unverified; nothing relies on it.

Deterministic: the same texts (in the same order) and arguments give byte-identical files.
"""
from __future__ import annotations

import json
import os
import pathlib
import re
from collections.abc import Iterable, Iterator

from grpo_jax import chat

PAD_TOKEN = "<SPECIAL_3>"  # unused by the chat format, so padding never collides with real text
# Index == token id. The real Nemotron vocabulary has <unk>, <s>, </s> at 0-2 and the chat tokens
# <SPECIAL_10..12> at 10-12; 3-9 are filled with other reserved tokens so those ids line up.
RESERVED_SPECIAL_TOKENS = ("<unk>", "<s>", "</s>") + tuple(f"<SPECIAL_{k}>" for k in range(3, 13))
MARKUP_TOKENS = chat.MARKUP_STRINGS
_BYTE_ALPHABET_SIZE = 256
# GPT-2's word split with two changes. Underscores join letters into one word: tool and field
# names (`customer_relationship_manager_update_customer`) can then become single tokens, which
# keeps the tool list in a small model's prompt short. And a word never carries the space before
# it: "with Noor" and the argument `"Noor"` then hold the same token, so filling an argument from
# the request is copying a token, not learning a separate "ĠNoor" -> "Noor" map for every name.
WORD_PATTERN = (r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}_]+| ?\p{N}+| ?[^\s\p{L}\p{N}_]+|\s+(?!\S)|\s+""")


def _reserved_pattern(reserved: tuple[str, ...]) -> re.Pattern[str]:
    # Longest first so that no token is matched by a prefix of another.
    return re.compile("|".join(re.escape(token) for token in sorted(reserved, key=len, reverse=True)))


def _training_segments(texts: Iterable[str], reserved: re.Pattern[str]) -> Iterator[str]:
    """The text between reserved tokens: those are added tokens, BPE must not learn to spell them."""
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"texts[{index}] is a {type(text).__name__}, expected str")
        for segment in reserved.split(text):
            if segment:
                yield segment


def build_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: str | os.PathLike, *,
                    markup_tokens: bool = True, min_frequency: int = 2) -> pathlib.Path:
    """Trains the tokenizer on `texts` and writes it to `out_dir` (created if needed); returns the path.

    `vocab_size` bounds the total number of tokens, added tokens included (BPE stops earlier when the
    corpus has no more pairs seen `min_frequency` times). Load the result with `chat.load_tokenizer`.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    added = RESERVED_SPECIAL_TOKENS + (MARKUP_TOKENS if markup_tokens else ())
    smallest = len(added) + _BYTE_ALPHABET_SIZE
    if vocab_size < smallest:
        raise ValueError(f"vocab_size={vocab_size} is below {smallest}: {len(added)} added tokens plus "
                         f"{_BYTE_ALPHABET_SIZE} byte tokens")
    if min_frequency < 1:
        raise ValueError(f"min_frequency={min_frequency}; expected >= 1")

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.Split(Regex(WORD_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    # All added strings are passed as trainer special tokens so they take ids 0..len(added)-1 in order.
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(added),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(_training_segments(texts, _reserved_pattern(added)), trainer=trainer)

    # Markup is text, not control: flip it to non-special (same ids), and keep every added token
    # out of normalisation so it is matched verbatim.
    state = json.loads(tokenizer.to_str())
    for entry in state["added_tokens"]:
        entry["special"] = entry["content"] in RESERVED_SPECIAL_TOKENS
        entry["normalized"] = False
    tokenizer = Tokenizer.from_str(json.dumps(state))
    for token_id, token in enumerate(added):
        if tokenizer.token_to_id(token) != token_id:
            raise AssertionError(f"{token!r} got id {tokenizer.token_to_id(token)}, expected {token_id}")

    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "tokenizer.json").write_text(tokenizer.to_str(pretty=True) + "\n", encoding="utf-8")
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": chat.BOS_TOKEN,
        "eos_token": chat.END_OF_TURN,
        "unk_token": "<unk>",
        "pad_token": PAD_TOKEN,
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_input_names": ["input_ids", "attention_mask"],
        "chat_template": chat.JINJA_CHAT_TEMPLATE,
    }
    (out / "tokenizer_config.json").write_text(
        json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    return out
