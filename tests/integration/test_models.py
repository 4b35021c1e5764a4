"""Model plumbing on the real converted SmolLM2 (model-free checks: tests/unit/model/)."""

from __future__ import annotations

import copy

import pytest
import torch

from steering.model.chat_template import encode_chat, render_chat, special_token_ids
from steering.model.embedded import EMBEDDED_MODEL
from steering.model.layers import decoder_layers, num_layers
from steering.model.loading import load_model

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM"


@pytest.fixture(scope="session")
def smollm():
    return load_model(EMBEDDED_MODEL, device="cpu")


@pytest.fixture
def tokenizer(smollm):
    return smollm[1]


def test_load_model_is_frozen_on_cpu(smollm) -> None:
    model, tokenizer = smollm
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    assert model.dtype == torch.float32
    assert tokenizer.pad_token is not None


def test_smollm_has_30_layers(smollm) -> None:
    model, _ = smollm
    assert decoder_layers(model) is model.model.layers
    assert num_layers(model) == 30


def test_encode_chat_has_single_bos_and_matches_text(tokenizer) -> None:
    ids = encode_chat(tokenizer, QUESTION)
    assert ids.shape[0] == 1 and ids.dtype == torch.long
    im_start = tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert ids[0, 0].item() == im_start and ids[0, 1].item() != im_start
    assert (ids[0] == im_start).sum().item() == 3  # system, user, assistant prompt
    expected = tokenizer(render_chat(tokenizer, QUESTION), add_special_tokens=False)["input_ids"]
    assert ids[0].tolist() == expected


def test_system_prompt_handling(tokenizer) -> None:
    default = render_chat(tokenizer, QUESTION)
    assert default.startswith(f"<|im_start|>system\n{DEFAULT_SYSTEM}")
    custom = render_chat(tokenizer, QUESTION, system_prompt="Answer in French.")
    assert custom.startswith("<|im_start|>system\nAnswer in French.<|im_end|>\n<|im_start|>user\n")
    assert DEFAULT_SYSTEM not in custom
    empty = render_chat(tokenizer, QUESTION, system_prompt="")
    assert empty.startswith("<|im_start|>system\n<|im_end|>\n") and DEFAULT_SYSTEM not in empty
    assert default.endswith("<|im_start|>assistant\n")
    assert not render_chat(tokenizer, QUESTION, add_generation_prompt=False).endswith("assistant\n")
    with pytest.raises(ValueError, match="not both"):
        render_chat(tokenizer, [{"role": "system", "content": "a"}, *QUESTION], system_prompt="b")


def test_bad_messages_are_named(tokenizer) -> None:
    with pytest.raises(ValueError, match=r"messages\[1\]"):
        render_chat(tokenizer, [*QUESTION, {"role": "bot", "content": "hi"}])


def test_plain_fallback_without_template(tokenizer) -> None:
    plain = copy.deepcopy(tokenizer)
    plain.chat_template = None
    history = [*QUESTION, {"role": "assistant", "content": "Paris."}, {"role": "user", "content": "Sure?"}]
    assert render_chat(plain, QUESTION) == "User: What is the capital of France?\nAssistant:"
    assert render_chat(plain, history, system_prompt="Be brief.") == (
        "System: Be brief.\nUser: What is the capital of France?\nAssistant: Paris.\nUser: Sure?\nAssistant:"
    )
    assert encode_chat(plain, QUESTION).shape[0] == 1


def test_special_token_ids(tokenizer) -> None:
    ids = special_token_ids(tokenizer)
    assert {tokenizer.convert_tokens_to_ids(t) for t in ("<|im_start|>", "<|im_end|>", "<|endoftext|>")} <= ids
    assert tokenizer.convert_tokens_to_ids("Paris") not in ids


def test_greedy_answer_mentions_paris(smollm) -> None:
    model, tokenizer = smollm
    ids = encode_chat(tokenizer, QUESTION, device=model.device)
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def test_model_without_chat_template_chats_as_plain_completion(tmp_path):
    """A tokenizer with no chat template: a notice, a plain transcript, and the answer stops at the next turn."""
    from steering.config import GenerationSettings, parse_config
    from steering.engine import Engine
    from steering.model.embedded import EMBEDDED_MODEL, ensure_default_model
    from steering.steer.vectors import VectorSet

    model, _ = load_model(EMBEDDED_MODEL, device="cpu")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(ensure_default_model())
    tok.chat_template = None
    notes = []
    steerer = Engine.for_model(parse_config({"model": EMBEDDED_MODEL}), model, tok, VectorSet(EMBEDDED_MODEL, {}), log=notes.append)
    assert steerer.notice and "no chat template" in notes[0]
    text = render_chat(tok, [{"role": "user", "content": "Hi"}])
    assert text == "User: Hi\nAssistant:"
    answer = steerer.chat("What is the capital of France?", settings=GenerationSettings(max_new_tokens=40, temperature=0.0))
    assert answer.strip() and "\nUser:" not in answer.rstrip().removesuffix("User:")
