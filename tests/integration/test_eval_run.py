"""The evaluation as runs, end to end on the real model and the shipped SAE: a tiny run config (two report
prompts, 3-token answers, one feature at two settings) through `python -m steering.offline.eval run` writes a
run directory that a second run resumes without generating anything; a light `pick` screen chooses a setting.
The probes are cut down: three templates (one held out), two neutral subjects, four instructions, two music
subjects, one-token texts."""

import json

import pytest
import torch
import yaml

from dataclasses import replace

from steering.config import load_config
from steering.offline.eval import run as run_module
from steering.offline.eval import scorer as scorer_module
from steering.offline.eval.lexicons import concept
from steering.offline.eval.splits import ProbeSet, probe_set, split
from tests.helpers import ROOT

MUSIC = next(f for f in load_config(ROOT / "demo.yaml").features if f.index == 8241)


@pytest.fixture(scope="module", autouse=True)
def small_probe_set():
    full = probe_set()
    small = ProbeSet(full.version, full.templates[:3], 1, ("a pencil", "a ladder"), full.neutral_instructions[:4], 2)
    patch = pytest.MonkeyPatch()
    patch.setattr(scorer_module, "probe_set", lambda: small)
    patch.setattr(run_module, "concept", lambda name, version: replace(
        concept(name, version), probe_subjects=concept(name, version).probe_subjects[:2]))
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # on a busy 2-core machine, ~10x faster than two threads
    yield
    torch.set_num_threads(before)
    patch.undo()


@pytest.fixture(scope="module")
def engine():
    from steering.engine import Engine

    e = Engine.from_config(str(ROOT / "demo.yaml"), device="cpu", dtype="float32")
    yield e
    e.close()


def tiny(tmp_path, **over) -> dict:
    data = {"name": "tiny", "engine": {"config": str(ROOT / "demo.yaml")}, "split": "report", "n_prompts": 2,
            "seeds": [0], "max_new_tokens": 3,
            "scorer": {"probe_tokens": 1, "fit_prompts": 2, "fit_seeds": [0], "shared_cache": False},
            "features": [{"layer": 15, "index": 8241, "mode": MUSIC.mode, "strength": [MUSIC.strength, 20]}], **over}
    path = tmp_path / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_run_config_writes_a_run_directory_and_a_second_run_regenerates_nothing(tmp_path, engine):
    from steering.offline.eval.__main__ import main
    from steering.offline.eval.parse import load_run_config
    from steering.offline.eval.run import Evaluation

    out = tmp_path / "runs" / "tiny"
    assert main(["run", str(tiny(tmp_path)), "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {"config.yaml", "results.json", "table.md", "plot.png", "answers"}
    cfg = load_run_config(out / "config.yaml")
    assert cfg == load_run_config(tmp_path / "tiny.yaml")  # the resolved config runs again as it is
    r = json.loads((out / "results.json").read_text())
    assert (r["split"], r["prompts"], r["scorer"], r["lexicon"]) == ("report@1", list(split("report").prompts[:2]),
                                                                     "full", 2)
    (e,) = r["features"]
    assert (e["key"], e["concept"], [(x["mode"], x["strength"]) for x in e["runs"]]) == (
        "L15:8241", "music", [(MUSIC.mode, MUSIC.strength), (MUSIC.mode, 20.0)])
    for cond in e["runs"] + [e["baseline"], e["unsteered"]]:
        assert cond["summary"]["n"] == 2 and 0.0 <= cond["summary"]["score"] <= 2.0
        assert cond["summary"]["fluency_ratio"] > 0
        for row in cond["rows"]:
            assert row["concept"] == row["lexicon"] + row["probe"] and 0 < row["tokens"] <= 3
            assert {row["instruction"], row["fluency"]} <= {0, 1, 2}
    assert r["thresholds"]["t1"] <= r["thresholds"]["t2"] and r["fit"]["answers"] == 2
    assert r["probes"]["music"]["heldout"]["n_pos"] == 1 * 2  # 1 held-out template x 2 subjects
    assert r["probes"]["music"]["heldout"]["n_neg"] == 1 * 2 + 2  # template x subjects, instructions (no i % 3 == 2)
    table = (out / "table.md").read_text()
    assert f"| music (instruments) (L15:8241) [music] | {MUSIC.mode} 20 |" in table and "| system prompt |" in table
    # answers: the fit split's and the report split's unsteered ones, each setting's, the baseline's, the probe texts
    assert r["answers_generated"] == 2 + 2 + 2 * 2 + 2 + (3 * 2 + 3 * 2 + 4)
    stored = sorted(p.name.split("-")[0] for p in (out / "answers").glob("*.json"))
    assert stored == ["L15_8241", "L15_8241", "probe", "system", "unsteered"]

    light = replace(cfg, scorer=replace(cfg.scorer, kind="light"))  # the same answers, graded cheaply
    with Evaluation(light, out, engine=engine) as again:
        second = again.run()
    assert second["answers_generated"] == 0
    assert [[(x["answer"], x["hits"]) for x in c["rows"]] for c in second["features"][0]["runs"]] == [
        [(x["answer"], x["hits"]) for x in c["rows"]] for c in e["runs"]]


def test_a_light_pick_screen_chooses_a_setting_per_concept(tmp_path, engine):
    from steering.offline.eval.parse import load_run_config
    from steering.offline.eval.run import Evaluation

    path = tiny(tmp_path, name="screen", split="pick3", scorer={"kind": "light", "shared_cache": False}, baseline=False,
                features=[{"layer": 15, "index": 8241, "concept": "music", "mode": "add", "strength": [10, 40]}])
    cfg = load_run_config(path, role="pick")
    with Evaluation(cfg, tmp_path / "screen", engine=engine, command="pick") as ev:
        r = ev.run()
    assert (r["scorer"], r["rule"], r["thresholds"]) == ("light", "margin", None)
    pick = r["picked"]["music"]
    assert (pick["key"], pick["n_prompts"]) == ("L15:8241", 2) and pick["strength"] in (10.0, 40.0)
    assert all(set(row) >= {"lexicon", "nll", "tokens", "ppl_ratio"} for row in r["features"][0]["runs"][0]["rows"])
    table = (tmp_path / "screen" / "table.md").read_text()
    assert table.startswith("Light screen: pick3@1 split") and "On pick3@1, a pick split written for round 3 (no report split used)" in table
    assert (tmp_path / "screen" / "plot.png").stat().st_size > 0


def test_a_concept_vector_runs_like_a_feature_and_steers_the_answers(tmp_path, engine):
    from steering.inspection.concept_vector import build_concept_vector
    from steering.offline.eval.parse import load_run_config
    from steering.offline.eval.run import Evaluation

    path = tiny(tmp_path, name="vector", scorer={"kind": "light", "shared_cache": False}, baseline=False,
                max_new_tokens=6, features=[{"layer": 15, "vector": {"phrase": "dogs", "source": "written"},
                                             "mode": "add", "strength": [0, 120]}])
    cfg = load_run_config(path)
    with Evaluation(cfg, tmp_path / "vector", engine=engine) as ev:
        r = ev.run()
        cv = ev.concept_vector(cfg.features[0])
    (e,) = r["features"]
    assert (e["key"], e["concept"], e["kind"]) == ("L15:cv:dogs:written", "dogs", "animal")
    expected = build_concept_vector(engine, "dogs", 15, source="written")
    assert torch.equal(cv.direction, expected.direction) and e["vector"]["positions"] == list(expected.positions)
    off, on = ([row["answer"] for row in run["rows"]] for run in e["runs"])
    assert off == [row["answer"] for row in e["unsteered"]["rows"]]  # add 0 is no edit
    assert on != off  # 120 along the vector (about 0.7 of the layer's norm) changes the answers
    with Evaluation(cfg, tmp_path / "vector", engine=engine) as again:
        assert again.run()["answers_generated"] == 0  # kept under the direction's digest
