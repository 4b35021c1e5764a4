"""steering/offline/eval/answers.py: the one answer loop sends one request per prompt with its own seed and
cuts at the end of turn; the stores keep each answer set by what decides it, so nothing is generated twice."""

import json
from types import SimpleNamespace

import pytest

from steering.config import GenerationSettings
from steering.offline.eval import answers as answers_module
from steering.offline.eval.answers import Answers, AnswerStore, generate, seeds_for


class FakeEngine:
    """Records requests; each answer is [its seed, end of turn, 5]."""

    config = SimpleNamespace(model="m", generation=GenerationSettings())

    def __init__(self):
        self.made, self.batches = [], []

    def eos_ids(self):
        return [9]

    def request(self, messages, plan, settings, system_prompt):
        self.made.append((messages[0]["content"], plan, settings.seed, settings.max_new_tokens, system_prompt))
        return SimpleNamespace(tokens=[settings.seed, 9, 5], error=None)

    def run_now(self, requests):
        self.batches.append(len(requests))


def test_generate_sends_one_request_per_prompt_and_cuts_at_the_end_of_turn():
    e = FakeEngine()
    # the third answer starts with its seed, 9, which is the end-of-turn id: it is empty
    assert generate(e, ["a", "b", "c"], [7, 8, 9], 4, system_prompt="S", batch_size=2) == [[7], [8], []]
    assert e.made == [("a", None, 7, 4, "S"), ("b", None, 8, 4, "S"), ("c", None, 9, 4, "S")]
    assert e.batches == [2, 1]


def test_generate_takes_one_plan_per_row():
    e = FakeEngine()
    generate(e, ["a", "a"], [1, 1], 4, plan=["p", "q"])
    assert [m[1] for m in e.made] == ["p", "q"]


def test_seeds_follow_the_evaluation_convention():
    assert seeds_for(2, 3) == [2000, 2001, 2002]


@pytest.fixture
def counted(monkeypatch):
    calls = []

    def fake(engine, prompts, seeds, max_new_tokens, plan=None, system_prompt=None, batch_size=16):
        calls.append((list(prompts), list(seeds), system_prompt, plan))
        return [[s, max_new_tokens] for s in seeds]

    monkeypatch.setattr(answers_module, "generate", fake)
    return calls


def test_answers_are_kept_per_prompt_and_seed_and_generated_once(tmp_path, counted):
    a = Answers(FakeEngine(), AnswerStore(tmp_path / "run"), AnswerStore(tmp_path / "shared"))
    first = a.get(["a", "b"], 1, 8)
    assert first == [[1000, 8], [1001, 8]] and a.generated == 2
    assert a.get(["a", "b"], 1, 8) == first and len(counted) == 1
    assert a.get(["a", "c"], 1, 8) == [[1000, 8], [1001, 8]]
    assert counted[-1][:2] == (["c"], [1001])  # only the new prompt is generated
    a.get(["a"], 2, 8)
    a.get(["a"], 1, 8, system_prompt="Talk about cats in every answer.", name="system-cats")
    a.get(["a"], 1, 16)
    assert len(counted) == 5
    assert len(list((tmp_path / "shared").glob("answers-*.json"))) == 3  # length and system prompt decide a file


def test_the_shared_store_keeps_the_key_of_the_first_answer_cache(tmp_path, counted):
    a = Answers(FakeEngine(), None, AnswerStore(tmp_path))
    a.get(["a"], 0, 8)
    (path,) = tmp_path.glob("answers-*.json")
    stored = json.loads(path.read_text())
    settings = {**GenerationSettings().__dict__, "max_new_tokens": 8, "seed": None}
    assert stored == {"key": {"model": "m", "settings": settings, "system": None}, "answers": {"0|a": [0, 8]}}


def test_steered_answers_stay_in_the_run_and_are_keyed_by_their_steering(tmp_path, counted):
    a = Answers(FakeEngine(), AnswerStore(tmp_path / "run"), AnswerStore(tmp_path / "shared"))
    add = {"feature": {"layer": 15, "index": 1}, "mode": "add", "strength": 30.0}
    a.get(["a"], 0, 8, plan="P", steering=add, name="L15_1-add-30")
    a.get(["a"], 0, 8, plan="P", steering=add, name="L15_1-add-30")
    a.get(["a"], 0, 8, plan="Q", steering={**add, "strength": 40.0}, name="L15_1-add-40")
    assert [c[3] for c in counted] == ["P", "Q"]
    assert not (tmp_path / "shared").exists()
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "run").glob("*.json")) == ["L15_1", "L15_1"]
    with pytest.raises(ValueError, match="plan and steering together"):
        a.get(["a"], 0, 8, plan="P")


def test_a_rerun_on_the_same_directory_generates_nothing(tmp_path, counted):
    Answers(FakeEngine(), AnswerStore(tmp_path), None).get(["a", "b"], 0, 8)
    again = Answers(FakeEngine(), AnswerStore(tmp_path), None)
    assert again.get(["a", "b"], 0, 8) == [[0, 8], [1, 8]] and again.generated == 0 and len(counted) == 1


def test_answers_found_in_the_shared_store_are_copied_into_the_run(tmp_path, counted):
    Answers(FakeEngine(), None, AnswerStore(tmp_path / "shared")).get(["a"], 0, 8)
    Answers(FakeEngine(), AnswerStore(tmp_path / "run"), AnswerStore(tmp_path / "shared")).get(["a"], 0, 8)
    assert len(counted) == 1
    alone = Answers(FakeEngine(), AnswerStore(tmp_path / "run"), None)
    assert alone.get(["a"], 0, 8) == [[0, 8]] and alone.generated == 0
