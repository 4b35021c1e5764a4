"""steering.serving.wire: a tensor survives the trip as base64 float32 with its shape, whatever its dtype."""

import base64
import json

import torch

from steering.serving.wire import decode_tensor, encode_tensor


def test_round_trip_is_exact_in_float32_and_plain_json():
    t = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(0))
    wire = json.loads(json.dumps(encode_tensor(t)))
    assert wire["shape"] == [3, 4, 5] and len(base64.b64decode(wire["data"])) == 3 * 4 * 5 * 4
    assert torch.equal(decode_tensor(wire), t)


def test_other_dtypes_travel_as_float32_and_the_decoded_tensor_is_writable():
    t = torch.tensor([[1.5, -2.0]], dtype=torch.bfloat16)
    back = decode_tensor(encode_tensor(t))
    assert back.dtype == torch.float32 and torch.equal(back, t.float())
    back += 1  # its own memory, not a view of the request's bytes
    assert back.tolist() == [[2.5, -1.0]]
    assert decode_tensor(encode_tensor(torch.empty(0, 7))).shape == (0, 7)
