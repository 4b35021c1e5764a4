"""steering.backends.reads on a tiny random Llama: residuals in padded batches against each prompt alone, the
logit lens against `W_U (g * u)` by hand, the paper's `(1 - r / V) * p` by hand, the batched, KV-cached scores
against full forwards steered one at a time, and the same scores asked through the hooks backend."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from steering.backends.hooks import HooksBackend
from steering.backends.reads import logit_lens, output_scores, paper_score, residuals
from steering.inspection import output_score
from steering.inspection.output_score import neutral_prompt_ids
from tests.helpers import tiny_tokenizer

LAYER = 1


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(1)
    config = LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         bos_token_id=0, eos_token_id=2, pad_token_id=0)
    m = LlamaForCausalLM(config).eval()
    m.requires_grad_(False)
    m.model.norm.weight.copy_(torch.rand(32) + 0.5)  # a final-norm weight that is not all ones
    return m


def test_logit_lens_is_the_unembedding_of_the_direction_scaled_by_the_final_norm(model):
    dirs = torch.randn(5, 32)
    W_U, g = model.lm_head.weight, model.model.norm.weight
    for i in range(5):
        logits = [float(sum(W_U[t, j] * g[j] * dirs[i, j] for j in range(32))) for t in range(100)]
        expected = sorted(range(100), key=lambda t: -logits[t])[:4]
        assert logit_lens(model, dirs, 4, batch=2)[i].tolist() == expected


def test_paper_score_by_hand():
    probs = torch.tensor([[0.5, 0.2, 0.2, 0.1], [0.1, 0.2, 0.3, 0.4]])
    tokens = torch.tensor([[1, 3], [0, 1]])
    # row 0: best of tokens 1, 3 is p=0.2, one token (0.5) more probable -> (1 - 1/4) * 0.2
    # row 1: best of tokens 0, 1 is p=0.2, two tokens more probable -> (1 - 2/4) * 0.2
    torch.testing.assert_close(paper_score(probs, tokens), torch.tensor([0.15, 0.1]))
    torch.testing.assert_close(paper_score(probs, torch.tensor([3])), torch.tensor([0.1 * 0.25, 0.4]))


def _steered_probs(model, ids, layer, shift):
    def hook(module, args, output):
        h = output[0] if isinstance(output, tuple) else output
        h = h.clone()
        h[:, -1] += shift
        return (h, *output[1:]) if isinstance(output, tuple) else h

    handle = model.model.layers[layer].register_forward_hook(hook)
    try:
        with torch.no_grad():
            return torch.softmax(model(input_ids=ids.unsqueeze(0)).logits[0, -1].float(), -1)
    finally:
        handle.remove()


def test_batched_cached_scores_equal_full_forwards_steered_one_at_a_time(model):
    tok = tiny_tokenizer()
    prompts = neutral_prompt_ids(tok, texts=("tell me about the sea", "Paris"), chats=("Hi",))
    assert len(prompts) == 3 and len(prompts[1]) == 2
    prompts.append(torch.tensor([7]))  # a one-token prompt: no prefix to cache
    dirs = torch.randn(6, 32) * 3
    s = 4.0
    got = output_scores(model, LAYER, dirs, prompts, s, k=3, batch_size=4, raised=2)
    units = dirs / dirs.norm(dim=1, keepdim=True)
    lens = logit_lens(model, units, 3)
    assert torch.equal(got.tokens, lens)
    for i in range(6):
        score = base = 0.0
        gain = torch.zeros(100)
        for ids in prompts:
            p = _steered_probs(model, ids, LAYER, s * units[i])
            p0 = _steered_probs(model, ids, LAYER, torch.zeros(32))
            score += float(paper_score(p[None], lens[i][None])[0]) / len(prompts)
            base += float(paper_score(p0[None], lens[i][None])[0]) / len(prompts)
            gain += p.log() - p0.log()
        assert got.score[i].item() == pytest.approx(score, rel=1e-4, abs=1e-7)
        assert got.base[i].item() == pytest.approx(base, rel=1e-4, abs=1e-7)
        assert set(got.raised[i].tolist()) == set(gain.topk(2).indices.tolist())
    torch.testing.assert_close(got.gain, got.score - got.base)


def test_shared_tokens_score_every_direction_on_the_same_tokens(model):
    prompts = [torch.tensor([5, 6, 7])]
    dirs = torch.randn(3, 32)
    got = output_scores(model, LAYER, dirs, prompts, 2.0, tokens=torch.tensor([10, 11]))
    assert got.tokens.tolist() == [10, 11] and got.raised is None
    p0 = _steered_probs(model, prompts[0], LAYER, torch.zeros(32))
    torch.testing.assert_close(got.base, paper_score(p0[None], torch.tensor([10, 11])).expand(3), rtol=1e-4, atol=1e-7)
    with pytest.raises(ValueError, match="at least one prompt"):
        output_scores(model, LAYER, dirs, [], 2.0)



def test_residuals_in_padded_batches_equal_each_prompt_alone(model):
    prompts = [[5, 6, 7, 8, 9], [11], [12, 13, 14]]  # different lengths: right-padded batches of two
    got = residuals(model, prompts, LAYER, pad=0, batch_size=2)
    for h, ids in zip(got, prompts):
        with torch.no_grad():
            alone = model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[LAYER + 1][0]
        assert h.shape == (len(ids), 32) and h.dtype == torch.float32
        torch.testing.assert_close(h, alone, rtol=1e-4, atol=1e-5)


def test_the_hooks_backend_answers_the_inspections_output_scores_with_these(model):
    tok = tiny_tokenizer()
    prompts, dirs, tokens = [torch.tensor([5, 6, 7]), torch.tensor([8, 9])], torch.randn(3, 32) * 2, torch.tensor([10, 11])
    expected = output_scores(model, LAYER, dirs, prompts, 3.0, tokens=tokens)
    with HooksBackend(model, tok) as backend:
        got = output_score.output_scores(backend, LAYER, dirs, prompts, 3.0, tokens)
        with pytest.raises(ValueError, match=r"one token list \(k,\) for every direction, got shape \(3, 2\)"):
            output_score.output_scores(backend, LAYER, dirs, prompts, 3.0, tokens.expand(3, 2))
        with pytest.raises(ValueError, match="at least one prompt"):
            output_score.output_scores(backend, LAYER, dirs, [], 3.0, tokens)
    torch.testing.assert_close(got.score, expected.score)
    torch.testing.assert_close(got.base, expected.base)
    assert torch.equal(got.tokens, tokens) and got.raised is None
