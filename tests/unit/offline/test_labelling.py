"""steering.offline.labelling: merging a fragment into its whole word, the English-word test and the share of
labels that pass it, and the label chooser's order of preference, all on hand-made cases."""

from steering.offline.labelling import (
    choose_label,
    is_word,
    label_is_words,
    punctuation_name,
    whole_word,
    word_share,
)

WORDS = frozenset("struggling lasagna pizza cream ocean sea waves dog puppy applied chief well known full stop comma "
                  "music the a".split())


def test_a_fragment_is_merged_with_the_pieces_that_continue_its_word():
    pieces = [" I", " was", " strugg", "ling", " with", " las", "agna", "."]
    assert whole_word(pieces, 2) == " struggling" and whole_word(pieces, 3) == " struggling"
    assert whole_word(pieces, 6) == " lasagna" and whole_word(pieces, 5) == " lasagna"
    assert whole_word(pieces, 4) == " with"  # a whole token stays itself
    assert whole_word(pieces, 7) == "."  # punctuation never merges
    assert whole_word(["a", "b", "c", "d", "e", "f", "g"], 0, span=2) == "abc"  # at most `span` pieces either side
    assert whole_word(["x", ".", "y"], 2) == "y"


def test_is_word_needs_every_part_in_the_list():
    assert is_word("Ocean", WORDS) and is_word("sea waves", WORDS) and is_word("well-known", WORDS)
    assert not is_word("strugg", WORDS) and not is_word("ezing", WORDS) and not is_word("", WORDS)
    assert not is_word("a", WORDS)  # one letter is not a label word
    assert not is_word("well-knwn", WORDS)


def test_label_word_share_counts_labels_whose_every_part_is_words():
    labels = ["ocean / sea / waves", "→ applied / ezing / chief", "→ dog / puppy", "br", "(dead)", "full stop / comma"]
    assert [label_is_words(x, WORDS) for x in labels] == [True, False, True, False, False, True]
    assert word_share(labels, WORDS) == 3 / 6
    assert word_share([], WORDS) == 0.0


def test_the_label_prefers_english_words_then_dominant_whole_words_then_promoted_then_punctuation():
    weighted = [(" Ocean", 9.0), (" sea", 5.0), (" ocean", 4.0), (",", 3.0), (" waves", 2.0)]
    assert choose_label(weighted, [], WORDS) == "ocean / sea / waves"
    # a whole word outside the list is kept when it carries at least half the top weight
    assert choose_label([(" numpy", 10.0), (" pizza", 6.0), (" kwargs", 4.0)], [], WORDS) == "numpy / pizza"
    # no activating word: promoted word-initial tokens of the list, marked
    assert choose_label([(",", 3.0)], [" strugg", "ezing", " dog", "puppy", " puppy", " dog"], WORDS) == "→ dog / puppy"
    # neither: the punctuation's names
    assert choose_label([(",", 3.0), (".", 1.0)], ["ezing"], WORDS, pieces=[(",", 3.0), (".", 1.0), ("\n", 0.5)]) \
        == "comma / full stop / newline"
    assert choose_label([], [], WORDS) == "(dead)"


def test_punctuation_names():
    assert punctuation_name(",") == "comma" and punctuation_name("\n\n") == "newline" and punctuation_name(" ") == "space"
    assert punctuation_name("<|im_start|>") == "turn start" and punctuation_name("42") == "number"
    assert punctuation_name(" dog") is None


def test_punctuation_that_carries_most_of_the_weight_leads_the_label():
    weighted = [("", 10.0), (" food", 3.0), (" diet", 2.0), (" kwargs", 0.5)]
    pieces = [("\n", 10.0), (" food", 3.0)]
    assert choose_label(weighted, [], WORDS | {"diet"}, pieces) == "newline / food / diet"
    assert choose_label([(" food", 9.0), (",", 1.0)], [], WORDS, [(",", 1.0)]) == "food"
