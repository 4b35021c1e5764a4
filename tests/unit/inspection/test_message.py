"""The visitor's own words: message positions inside the rendered chat, and the rankings over them."""

import torch

from steering.inspection.message import (
    MessageCodes,
    content_positions,
    dense_features,
    message_positions,
    top_at_last_token,
    top_over_message,
    top_per_token,
)
from tests.helpers import tiny_tokenizer


def test_message_positions_are_the_content_of_the_last_user_turn():
    tok = tiny_tokenizer()
    chat = [{"role": "user", "content": "tell me about sea"}, {"role": "assistant", "content": "waves"},
            {"role": "user", "content": "tell me about dog ?"}]
    ids, keep = message_positions(tok, chat)
    assert [tok.decode([ids[i]]).strip() for i in keep] == ["tell", "me", "about", "dog", "?"]
    assert keep[0] > 10, "the first user turn, with the same words, is not the message"
    assert ids[keep[-1] + 1] == tok.convert_tokens_to_ids("<|im_end|>")


def test_message_positions_without_a_template_skip_the_transcript_labels():
    tok = tiny_tokenizer(chat_template=None)
    ids, keep = message_positions(tok, [{"role": "user", "content": "Hi dog"}])
    assert [tok.decode([ids[i]]) for i in keep] == ["Hi", "dog"]


def test_content_positions_leave_out_function_words_and_punctuation():
    assert content_positions(["Tell", " me", " about", " dogs", " and", " their", " pupp", "ies", "."]) == [3, 6, 7]
    assert content_positions(["?", " the"]) == []


def test_rankings_by_hand():
    codes = torch.tensor([  # tokens: " about", " dogs", "."; features 0..3
        [9.0, 0.0, 0.0, 1.0],
        [0.0, 5.0, 2.0, 0.0],
        [0.0, 0.0, 3.0, 4.0],
    ])
    msg = MessageCodes([" about", " dogs", "."], codes)
    assert [(a.index, a.value) for a in top_at_last_token(msg, 2)] == [(3, 4.0), (2, 3.0)]
    over = top_over_message(msg, 3)  # only " dogs" is a word of content: feature 0's 9.0 on " about" does not count
    assert [(a.index, a.value, where) for a, where in over] == [(1, 5.0, 1), (2, 2.0, 1)]
    assert [[a.index for a in row] for row in top_per_token(msg, 2)] == [[0, 3], [1, 2], [3, 2]]
    dense = dense_features(torch.tensor([0.5, 0.001, 0.2, 0.0]), 0.1)
    assert dense.tolist() == [True, False, True, False]
    assert [(a.index, where) for a, where in top_over_message(msg.without(dense), 3)] == [(1, 1)]
    assert dense_features(None, 0.1) is None and msg.without(None) is msg


def test_a_message_of_only_function_words_ranks_over_all_its_tokens():
    msg = MessageCodes([" about", " it"], torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    assert [(a.index, where) for a, where in top_over_message(msg, 2)] == [(1, 1), (0, 0)]
