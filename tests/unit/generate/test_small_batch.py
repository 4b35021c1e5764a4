"""The small-batch linear route (steering.generate.small_batch): same products, and untouched lone requests."""

import copy

import torch
import torch.nn.functional as F

from steering.generate.small_batch import (
    small_batch_linear,
    speed_up_small_batches,
    time_shapes,
    undo_small_batches,
)


def test_small_batch_linear_equals_f_linear():
    g = torch.Generator().manual_seed(0)
    for rows, n_in, n_out in ((2, 16, 40), (4, 576, 1536), (8, 33, 7)):
        x = torch.randn(rows, 1, n_in, generator=g)
        w = torch.randn(n_out, n_in, generator=g)
        b = torch.randn(n_out, generator=g)
        got = small_batch_linear(x, w, b)
        assert got.shape == (rows, 1, n_out)
        exact = F.linear(x.double(), w.double(), b.double())
        # float32 rounding only: no further from the exact product than F.linear's own error allows
        limit = 4 * (F.linear(x, w, b).double() - exact).abs().max().item() + 1e-6
        assert (got.double() - exact).abs().max().item() <= limit
        torch.testing.assert_close(small_batch_linear(x, w, None), x @ w.T, rtol=1e-4, atol=1e-4)


def test_patched_model_is_unchanged_alone_and_close_in_small_batches(tiny_llama):
    plain = tiny_llama
    model = copy.deepcopy(tiny_llama)
    assert speed_up_small_batches(model) == speed_up_small_batches(model) > 0  # idempotent
    g = torch.Generator().manual_seed(1)
    with torch.inference_mode():
        for shape in ((1, 9), (1, 1), (4, 1), (4, 9), (12, 1)):
            ids = torch.randint(3, 100, shape, generator=g)
            got, want = model(ids).logits, plain(ids).logits
            if shape[0] == 1 or shape[1] > 1 or shape[0] > 8:
                assert torch.equal(got, want)  # F.linear itself: bit for bit
            else:
                torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    undo_small_batches(model)
    assert all("forward" not in vars(m) for m in model.modules())


def test_timings_are_recorded():
    rows = time_shapes([(64, 32)], [1, 4], reps=2)
    assert [r["rows"] for r in rows] == [1, 4]
    assert all(r["linear_ms"] > 0 and r["w_xT_ms"] > 0 for r in rows)
