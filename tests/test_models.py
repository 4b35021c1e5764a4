"""Model plumbing on the real converted SmolLM2 and on a tiny random GPT-2."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, GPT2Model

from steering.default_model import EMBEDDED_MODEL, default_model_dir
from steering.models import (
    decoder_layers,
    encode_chat,
    load_model,
    num_layers,
    pick_device,
    pick_dtype,
    render_chat,
    resolve_model_path,
    special_token_ids,
)

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


def test_resolve_model_path() -> None:
    assert resolve_model_path(EMBEDDED_MODEL) == str(default_model_dir())
    assert resolve_model_path("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"


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


def test_pick_device_and_dtype_on_cpu() -> None:
    assert pick_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert pick_device("auto") == torch.device("cpu")
        assert pick_dtype("auto", torch.device("cpu")) == torch.float32
        assert pick_dtype() == torch.float32
        with pytest.raises(ValueError, match="'cuda:1'.*no CUDA"):
            pick_device("cuda:1")
    assert pick_dtype("auto", torch.device("cuda")) == torch.bfloat16
    assert pick_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16
    assert pick_dtype("float16") == torch.float16


@pytest.mark.parametrize("bad", ["tpu", "gpu0", "cuda:x", ""])
def test_bad_device_is_named(bad: str) -> None:
    with pytest.raises(ValueError, match=repr(bad)):
        pick_device(bad)


def test_bad_dtype_is_named() -> None:
    with pytest.raises(ValueError, match="'int8'"):
        pick_dtype("int8", torch.device("cpu"))


def test_decoder_layers_on_tiny_gpt2() -> None:
    config = GPT2Config(n_layer=2, n_embd=32, n_head=2)
    lm = GPT2LMHeadModel(config)
    assert decoder_layers(lm) is lm.transformer.h and num_layers(lm) == 2
    bare = GPT2Model(config)
    assert decoder_layers(bare) is bare.h


def test_decoder_layers_error_is_clear() -> None:
    with pytest.raises(ValueError, match="Linear.*DECODER_LAYER_PATHS"):
        decoder_layers(torch.nn.Linear(2, 2))


def test_model_without_chat_template_chats_as_plain_completion(tmp_path):
    """A tokenizer with no chat template: a notice, a plain transcript, and the answer stops at the next turn."""
    from steering.config import GenerationSettings, parse_config
    from steering.default_model import EMBEDDED_MODEL, ensure_default_model
    from steering.session import Steerer
    from steering.vectors import VectorSet

    model, _ = load_model(EMBEDDED_MODEL, device="cpu")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(ensure_default_model())
    tok.chat_template = None
    notes = []
    steerer = Steerer(parse_config({"model": EMBEDDED_MODEL}), model, tok, VectorSet(EMBEDDED_MODEL, {}), log=notes.append)
    assert steerer.notice and "no chat template" in notes[0]
    text = render_chat(tok, [{"role": "user", "content": "Hi"}])
    assert text == "User: Hi\nAssistant:"
    answer = steerer.chat("What is the capital of France?", settings=GenerationSettings(max_new_tokens=40, temperature=0.0))
    assert answer.strip() and "\nUser:" not in answer.rstrip().removesuffix("User:")
