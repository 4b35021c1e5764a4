"""steering/offline/eval/splits.py and data/splits, data/probes.yaml: versions are checked, included splits
compose in order, and each report split stays apart from the pick splits of its round and every earlier one."""

import pytest

from steering.offline.eval.lexicons import concepts
from steering.offline.eval.splits import DataError, parse_ref, probe_set, split, split_names

REPORTS = [s for s in map(split, split_names()) if s.role == "report"]
PICKS = [s for s in map(split, split_names()) if s.role == "pick"]


def probe_prompts() -> set[str]:
    ps = probe_set()
    return set(ps.neutral_prompts()) | {p for c in concepts().values() for p in ps.prompts(c.probe_subjects)}


def test_every_split_has_a_version_a_role_and_distinct_prompts():
    assert [s.name for s in REPORTS] == ["report", "report2", "report3", "report4", "report5"]
    for s in REPORTS + PICKS:
        assert s.version >= 1 and s.round >= 1 and s.ref == f"{s.name}@{s.version}"
        assert len(set(s.prompts)) == len(s.prompts) >= 24


def test_included_splits_come_first_in_order():
    assert split("pick").prompts[:40] == split("neutral").prompts and len(split("pick").prompts) == 48
    assert split("pick2").prompts == split("pick").prompts + split("report").prompts
    assert split("pick3").prompts == split("pick2").prompts + split("report2").prompts


def test_a_version_is_pinned_or_refused():
    assert split("report2@1") == split("report2")
    assert parse_ref("report2@1") == ("report2", 1) and parse_ref("pick") == ("pick", None)
    with pytest.raises(DataError, match="split 'report2' is at version 1, not 2"):
        split("report2@2")
    with pytest.raises(DataError, match="no split 'report9'; known: neutral, pick, pick2"):
        split("report9")
    with pytest.raises(DataError, match="must be a whole number"):
        split("report2@x")


@pytest.mark.parametrize("report", REPORTS, ids=lambda s: s.name)
def test_each_report_split_is_apart_from_its_round_and_earlier_pick_splits(report):
    seen = {p for s in PICKS if s.round <= report.round for p in s.prompts}
    seen |= {p for s in REPORTS if s.round < report.round for p in s.prompts}
    assert not seen & set(report.prompts)
    assert not probe_prompts() & set(report.prompts)


def test_a_report_split_joins_the_pick_prompts_only_in_a_later_round():
    for pick in PICKS:
        for report in REPORTS:
            if set(report.prompts) <= set(pick.prompts):
                assert pick.round > report.round, (pick.name, report.name)


def test_the_probe_set_splits_its_texts_into_training_and_held_out():
    ps = probe_set()
    assert ps.version == 1 and len(ps.templates) == 6 and ps.heldout_templates == 2
    texts = list(range(len(ps.neutral_prompts())))  # 6 templates x 12 subjects, then 48 instructions
    train, held = ps.split_neutral(texts)
    assert len(train) == 4 * 12 + 32 and len(held) == 2 * 12 + 16 and not set(train) & set(held)
    assert ps.split_texts(list(range(24)), 4) == (list(range(16)), list(range(16, 24)))
    assert not probe_prompts() & {p for s in PICKS for p in s.prompts}
