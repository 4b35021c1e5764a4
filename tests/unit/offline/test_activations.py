"""steering.offline.activations on the tiny random Llama and the in-memory tokenizer: windows by hand, layer
residuals against `output_hidden_states`, and the sharded, resumable on-disk cache read back row by row."""

import json

import pytest
import torch

from steering.offline.activations import (
    cache_activations,
    default_cache_dir,
    layer_activations,
    load_cache,
    load_windows,
    windows,
)
from tests.helpers import TINY_WORDS, tiny_tokenizer

LAYER = 2


def _hidden(model, ids, layer=LAYER):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[layer + 1][0]


def test_windows_cut_each_document_and_drop_short_tails():
    docs = [list(range(40)), list(range(100, 110))]
    assert windows(docs, ctx=16, min_len=5) == [list(range(16)), list(range(16, 32)), list(range(32, 40)),
                                               list(range(100, 110))]
    assert windows(docs, ctx=16, min_len=10) == [list(range(16)), list(range(16, 32)), list(range(100, 110))]
    assert windows(docs, ctx=16) == [list(range(16)), list(range(16, 32))]  # min_len 16 by default


def test_layer_activations_equal_each_window_run_alone(tiny_llama):
    wins = [[5, 6, 7, 8, 9, 10], [11, 12, 13]]
    got = layer_activations(tiny_llama, wins, LAYER, pad_id=0)
    assert [h.shape for h in got] == [(6, 32), (3, 32)] and all(h.dtype == torch.float32 for h in got)
    for h, w in zip(got, wins):
        torch.testing.assert_close(h, _hidden(tiny_llama, w), rtol=1e-4, atol=1e-5)


def _docs(n=12):
    return [{"text": " ".join(TINY_WORDS[i % 7:] + TINY_WORDS[: i % 7])} for i in range(n)]


def test_the_cache_holds_every_position_but_the_first_of_each_window(tiny_llama, tmp_path):
    tok = tiny_tokenizer()
    meta = cache_activations(tiny_llama, tok, _docs(), LAYER, tmp_path, ctx=24, batch_size=3, shard_tokens=100,
                             progress=False)
    wins = load_windows(tmp_path)
    expected_wins = windows((tok(d["text"], add_special_tokens=False)["input_ids"] for d in _docs()), 24)
    assert wins == expected_wins
    total = sum(len(w) - 1 for w in wins)
    assert meta == {"layer": LAYER, "ctx": 24, "windows": len(wins), "tokens": total, "shards": meta["shards"], "d": 32,
                    "compute_dtype": "model"}
    assert meta["shards"] == len(list(tmp_path.glob("shard_*.safetensors"))) > 1
    assert json.loads((tmp_path / "meta.json").read_text()) == meta
    data = load_cache(tmp_path)
    assert data["acts"].shape == (total, 32) and data["acts"].dtype == torch.float16
    assert int(data["pos"].min()) == 1
    assert sorted(zip(data["window"].tolist(), data["pos"].tolist())) == [(i, p) for i, w in enumerate(wins) for p in range(1, len(w))]
    alone = {i: _hidden(tiny_llama, w) for i, w in enumerate(wins)}
    for row in range(0, total, 7):
        w, p = int(data["window"][row]), int(data["pos"][row])
        torch.testing.assert_close(data["acts"][row].float(), alone[w][p].half().float(), rtol=2e-3, atol=2e-3)
    assert len(load_cache(tmp_path, max_tokens=10)["acts"]) == 10


def test_a_complete_cache_is_not_recomputed_and_an_interrupted_one_resumes(tiny_llama, tmp_path):
    tok = tiny_tokenizer()
    meta = cache_activations(tiny_llama, tok, _docs(), LAYER, tmp_path, ctx=24, shard_tokens=100, progress=False)
    assert cache_activations(None, None, [], LAYER, tmp_path) == meta  # no model needed: meta.json says it is done
    shards = sorted(tmp_path.glob("shard_*.safetensors"))
    before = {p.name: p.read_bytes() for p in shards}
    kept_mtime = shards[0].stat().st_mtime_ns
    (tmp_path / "meta.json").unlink()
    shards[-1].unlink()  # interrupted while writing the last shard
    assert cache_activations(tiny_llama, tok, [], LAYER, tmp_path, ctx=24, shard_tokens=100, progress=False) == meta
    assert shards[0].stat().st_mtime_ns == kept_mtime  # finished shards are not rewritten
    assert {p.name: p.read_bytes() for p in sorted(tmp_path.glob("shard_*.safetensors"))} == before


def test_a_token_budget_takes_whole_windows_until_it_is_reached(tiny_llama, tmp_path):
    meta = cache_activations(tiny_llama, tiny_tokenizer(), _docs(), LAYER, tmp_path, ctx=24, max_tokens=40,
                             progress=False)
    sizes = [len(w) - 1 for w in load_windows(tmp_path)]
    assert meta["tokens"] == sum(sizes) and sum(sizes[:-1]) < 40 <= sum(sizes)


def test_default_cache_dir_layout(tmp_path, monkeypatch):
    monkeypatch.setenv("STEERING_CACHE", str(tmp_path))
    folder = default_cache_dir("embedded:smollm2-135m-instruct", 15, tmp_path / "corpus", "train")
    assert folder.parent == tmp_path / "activations" / "embedded_smollm2-135m-instruct" / "layer_15"
    assert folder.name.endswith("_train") and len(folder.name) == len("12345678_train")
    assert default_cache_dir("org/model", 15, tmp_path / "corpus", "train").name == folder.name  # same corpus, same id
    assert default_cache_dir("org/model", 15, tmp_path / "other", "train").name != folder.name


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "1")


def test_several_layers_from_one_pass_equal_each_layer_cached_alone(tiny_llama, tmp_path):
    tok = tiny_tokenizer()
    folders = {1: tmp_path / "l1", 3: tmp_path / "l3"}
    metas = cache_activations(tiny_llama, tok, _docs(), [1, 3], folders, ctx=24, shard_tokens=100, progress=False,
                              shuffle=True)
    assert sorted(metas) == [1, 3] and metas[1]["tokens"] == metas[3]["tokens"] and metas[3]["layer"] == 3
    assert load_windows(folders[1]) == load_windows(folders[3])
    for layer, folder in folders.items():
        alone = cache_activations(tiny_llama, tok, _docs(), layer, tmp_path / f"alone{layer}", ctx=24,
                                  shard_tokens=100, progress=False, shuffle=True)
        assert alone == metas[layer]
        a, b = load_cache(folder), load_cache(tmp_path / f"alone{layer}")
        assert torch.equal(a["window"], b["window"]) and torch.equal(a["pos"], b["pos"])
        torch.testing.assert_close(a["acts"].float(), b["acts"].float(), rtol=2e-3, atol=2e-3)


def test_shuffle_takes_every_window_in_a_seeded_order(tiny_llama, tmp_path):
    tok = tiny_tokenizer()
    cache_activations(tiny_llama, tok, _docs(), LAYER, tmp_path / "plain", ctx=24, progress=False)
    cache_activations(tiny_llama, tok, _docs(), LAYER, tmp_path / "mixed", ctx=24, progress=False, shuffle=True)
    plain, mixed = load_windows(tmp_path / "plain"), load_windows(tmp_path / "mixed")
    assert plain != mixed and sorted(plain) == sorted(mixed)


def test_a_bfloat16_cache_holds_the_autocast_residuals_and_resumes_only_that_way(tiny_llama, tmp_path):
    """`compute_dtype` runs the forward under autocast; the stored rows are that pass's residuals (not float32's,
    which they stay close to), and a cache begun one way refuses to continue the other."""
    tok = tiny_tokenizer()
    meta = cache_activations(tiny_llama, tok, _docs(), LAYER, tmp_path, ctx=24, shard_tokens=100, progress=False,
                             compute_dtype=torch.bfloat16)
    assert meta["compute_dtype"] == "bfloat16"
    assert json.loads((tmp_path / "caching.json").read_text()) == {"compute_dtype": "bfloat16"}
    data, wins = load_cache(tmp_path), load_windows(tmp_path)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = {i: h for i, h in enumerate(layer_activations(tiny_llama, wins, LAYER, pad_id=0))}
    exact = {i: _hidden(tiny_llama, w) for i, w in enumerate(wins)}
    for row in range(0, len(data["acts"]), 5):
        w, p = int(data["window"][row]), int(data["pos"][row])
        torch.testing.assert_close(data["acts"][row].float(), expected[w][p].half().float(), rtol=2e-2, atol=2e-2)
        assert torch.nn.functional.cosine_similarity(data["acts"][row].float(), exact[w][p], dim=0) > 0.99
    (tmp_path / "meta.json").unlink()
    with pytest.raises(ValueError, match="compute_dtype.*bfloat16.*resume it the same way"):
        cache_activations(tiny_llama, tok, _docs(), LAYER, tmp_path, ctx=24, shard_tokens=100, progress=False)
