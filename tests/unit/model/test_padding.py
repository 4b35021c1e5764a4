"""steering.model.padding.padded against hand-built tensors."""

import torch

from steering.model.padding import padded

ROWS = [[5, 6, 7], [8], [9, 4]]


def test_right_padding_keeps_each_rows_positions():
    ids, mask = padded(ROWS, pad=0)
    assert torch.equal(ids, torch.tensor([[5, 6, 7], [8, 0, 0], [9, 4, 0]]))
    assert torch.equal(mask, torch.tensor([[1, 1, 1], [1, 0, 0], [1, 1, 0]]))
    assert ids.dtype == mask.dtype == torch.long


def test_left_padding_puts_every_last_token_in_the_last_column():
    ids, mask = padded(ROWS, pad=3, left=True)
    assert torch.equal(ids, torch.tensor([[5, 6, 7], [3, 3, 8], [3, 9, 4]]))
    assert torch.equal(mask, torch.tensor([[1, 1, 1], [0, 0, 1], [0, 1, 1]]))


def test_tensor_rows_equal_widths_and_an_empty_row():
    ids, mask = padded([torch.tensor([1, 2]), torch.tensor([3, 4])], pad=0)
    assert torch.equal(ids, torch.tensor([[1, 2], [3, 4]])) and bool(mask.all())
    ids, mask = padded([[1, 2], []], pad=7, left=True)
    assert torch.equal(ids, torch.tensor([[1, 2], [7, 7]])) and torch.equal(mask, torch.tensor([[1, 1], [0, 0]]))
