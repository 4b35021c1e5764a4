"""steering.model.chat_template on a word-level tokenizer built in memory (tests.helpers.tiny_tokenizer):
rendering against the tokenizer's own apply_chat_template and hand-written ChatML, the system-prompt
rules, the plain fallback, and which specials encoding adds. The same checks on the real SmolLM2
tokenizer: tests/integration/test_models.py."""

from __future__ import annotations

import pytest
import torch

from steering.model.chat_template import (
    PLAIN_TURN_STOP,
    encode_chat,
    render_chat,
    special_token_ids,
)
from tests.helpers import NO_SYSTEM_CHATML, TINY_SYSTEM, tiny_tokenizer

QUESTION = [{"role": "user", "content": "What is the capital of France ?"}]
HISTORY = [*QUESTION, {"role": "assistant", "content": "Paris ."}, {"role": "user", "content": "Sure ?"}]


def _turn(role: str, content: str) -> str:
    return f"<|im_start|>{role}\n{content}<|im_end|>\n"


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def plain():
    return tiny_tokenizer(chat_template=None)


@pytest.mark.parametrize("messages", [QUESTION, HISTORY, [{"role": "system", "content": "Be brief ."}, *QUESTION]],
                         ids=["question", "history", "own-system"])
def test_render_is_the_tokenizers_own_template(tok, messages):
    ours = render_chat(tok, messages)
    assert ours == tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    system = [] if messages[0]["role"] == "system" else [_turn("system", TINY_SYSTEM)]
    assert ours == "".join(system + [_turn(m["role"], m["content"]) for m in messages]) + "<|im_start|>assistant\n"
    assert render_chat(tok, messages, add_generation_prompt=False) == ours.removesuffix("<|im_start|>assistant\n")


def test_system_prompt_none_keeps_the_default_and_a_string_replaces_it(tok):
    question = _turn("user", QUESTION[0]["content"]) + "<|im_start|>assistant\n"
    assert render_chat(tok, QUESTION) == _turn("system", TINY_SYSTEM) + question
    assert render_chat(tok, QUESTION, system_prompt="Answer in French .") == _turn("system", "Answer in French .") + question
    assert render_chat(tok, QUESTION, system_prompt="") == _turn("system", "") + question
    with pytest.raises(ValueError, match="not both"):
        render_chat(tok, [{"role": "system", "content": "a"}, *QUESTION], system_prompt="b")


def test_a_template_without_a_system_role_gets_it_folded_into_the_first_user_turn():
    tok = tiny_tokenizer(NO_SYSTEM_CHATML)
    question = QUESTION[0]["content"]
    assert render_chat(tok, QUESTION) == _turn("user", question) + "<|im_start|>assistant\n"
    assert render_chat(tok, QUESTION, system_prompt="Be brief .") == (
        _turn("user", f"Be brief .\n\n{question}") + "<|im_start|>assistant\n")
    assert render_chat(tok, QUESTION, system_prompt="") == render_chat(tok, QUESTION)  # an empty one is dropped
    opening = [{"role": "assistant", "content": "Hi"}, *QUESTION]  # nothing to fold into: the system turn is dropped
    assert render_chat(tok, opening, system_prompt="Be brief .") == (
        _turn("assistant", "Hi") + _turn("user", question) + "<|im_start|>assistant\n")


@pytest.mark.parametrize("messages, match", [
    ([*QUESTION, {"role": "bot", "content": "hi"}], r"messages\[1\]"),
    ([{"role": "user", "content": ["not", "text"]}], r"messages\[0\]"),
    ([*QUESTION, {"role": "system", "content": "late"}], r"messages\[1\]: a system message may only come first"),
])
def test_bad_messages_are_named(tok, messages, match):
    with pytest.raises(ValueError, match=match):
        render_chat(tok, messages)


def test_without_a_template_the_chat_is_a_plain_transcript(plain):
    assert render_chat(plain, QUESTION) == "User: What is the capital of France ?\nAssistant:"
    assert render_chat(plain, HISTORY, system_prompt="Be brief .") == (
        "System: Be brief .\nUser: What is the capital of France ?\nAssistant: Paris .\nUser: Sure ?\nAssistant:")
    assert render_chat(plain, QUESTION, system_prompt="") == render_chat(plain, QUESTION)  # an empty system turn is left out
    assert render_chat(plain, QUESTION, add_generation_prompt=False) == "User: What is the capital of France ?"
    before, after = render_chat(plain, HISTORY).split(PLAIN_TURN_STOP)  # an answer stops where the next user turn starts
    assert before.endswith("Assistant: Paris .") and after == " Sure ?\nAssistant:"


def test_encoding_adds_no_specials_to_a_template_and_the_usual_ones_to_a_transcript(tok, plain):
    ids = encode_chat(tok, QUESTION)
    assert ids.shape[0] == 1 and ids.dtype == torch.long
    assert ids[0].tolist() == tok(render_chat(tok, QUESTION), add_special_tokens=False)["input_ids"]
    im_start, bos = tok.convert_tokens_to_ids("<|im_start|>"), tok.bos_token_id
    assert ids[0, 0].item() == im_start and bos not in ids[0].tolist()  # the BOS the post-processor would add is not there
    assert (ids[0] == im_start).sum().item() == 3  # system, user, assistant prompt
    plain_ids = encode_chat(plain, QUESTION, device="cpu")
    assert plain_ids[0].tolist() == [bos] + plain(render_chat(plain, QUESTION), add_special_tokens=False)["input_ids"]
    assert plain_ids.device == torch.device("cpu")


def test_special_token_ids_are_the_declared_and_added_specials(tok):
    assert special_token_ids(tok) == {tok.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<unk>")}
    assert tok.convert_tokens_to_ids("Paris") not in special_token_ids(tok)
