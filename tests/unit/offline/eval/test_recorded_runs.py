"""benchmarks/runs/: every run directory holds its results and a table; each run recorded before run directories
existed says its config was reconstructed, and every one of its concept-inclusion figures recounts exactly from
the stored answers with the split and the word-list version its config names (so the data files keep the old
figures reproducible)."""

import json

import pytest
import yaml

from steering.offline.eval.lexicons import concept, matches
from steering.offline.eval.parse import load_run_config
from steering.offline.eval.splits import split
from tests.helpers import ROOT

RUNS = sorted(p for p in (ROOT / "benchmarks" / "runs").iterdir() if p.is_dir())
RECORDED = [p for p in RUNS if (p / "config.yaml").is_file()
            and "reconstructed" in yaml.safe_load((p / "config.yaml").read_text())]
FILES = {"config.yaml", "results.json", "table.md", "plot.png", "answers"}


def load(run):
    return yaml.safe_load((run / "config.yaml").read_text()), json.loads((run / "results.json").read_text())


def share(answers, words) -> float:
    return sum(bool(matches(a, words)) for a in answers) / len(answers)


def test_every_run_directory_holds_its_results_and_a_table():
    for run in RUNS:
        assert (run / "results.json").is_file() and list(run.glob("*.md")), run.name


def test_the_recorded_runs_hold_their_config_results_and_table_and_nothing_else():
    assert len(RECORDED) == 18  # the runs made before run directories existed, moved here unchanged
    for run in RECORDED:
        names = {p.name for p in run.iterdir()}
        assert {"config.yaml", "results.json", "table.md"} <= names <= FILES, run.name


@pytest.mark.parametrize("run", RECORDED, ids=lambda p: p.name)
def test_a_recorded_run_recounts_from_the_words_its_config_names(run):
    raw, result = load(run)
    assert raw["name"] == run.name and "written after the run from results.json" in raw["reconstructed"]
    if "command" in raw:  # the keyword sweep and the rank report: a record of the command, not a run config
        _recount_keyword_run(raw, result)
        return
    cfg = load_run_config(run / "config.yaml")
    if cfg.probes is not None:
        assert list(result) == cfg.probes["concepts"]
        assert all([int(k) for k in per] == cfg.probes["layers"] for per in result.values())
    elif "runs" in result:
        _recount_screen(cfg, result)
    else:
        _recount_report(cfg, result)


def _recount_report(cfg, result):
    assert result["prompts"] == cfg.prompts() and result["seeds"] == list(cfg.seeds)
    assert result["max_new_tokens"] == cfg.max_new_tokens and result["probe_layer"] == cfg.scorer.probe_layer
    assert [(e["key"], e["concept"], [(r["mode"], r["strength"]) for r in e["runs"]]) for e in result["features"]] == [
        (f.key, f.concept, f.settings) for f in cfg.features]
    for e in result["features"]:
        words = concept(e["concept"], cfg.scorer.lexicon).words
        for cond in e["runs"] + [e["baseline"], e["unsteered"]]:
            assert len(cond["rows"]) == len(result["prompts"]) * len(result["seeds"])
            for row in cond["rows"]:
                assert row["hits"] == matches(row["answer"], words) and row["lexicon"] == int(bool(row["hits"]))
            assert cond["summary"]["lexicon"] == pytest.approx(sum(r["lexicon"] for r in cond["rows"]) / len(cond["rows"]))


def _recount_screen(cfg, result):
    assert split(result["split"]).ref == cfg.split
    settings = {(f.concept, f.key, m, s) for f in cfg.features for m, s in f.settings}
    assert {(r["concept"], r["key"], r["mode"], r["strength"]) for r in result["runs"]} == settings
    n = len(cfg.prompts())
    for r in result["runs"]:
        assert (r["n_prompts"], r["seed"], len(r["answers"])) == (n, cfg.seeds[0], n)
        assert r["inclusion"] == pytest.approx(share(r["answers"], concept(r["concept"], cfg.scorer.lexicon).words))


def _recount_keyword_run(raw, result):
    prompts = list(split(raw["split"]).prompts)[: raw["n_prompts"]]
    assert result["prompts"] == prompts and result["seed"] == raw["seed"]
    assert result["max_new_tokens"] == raw["max_new_tokens"]
    base = result.get("unsteered", {}).get("answers") or result.get("unsteered_answers")
    if "features" in result:  # the sweep
        for e in result["features"]:
            words = concept(e["concept"], raw["lexicon"]).words
            assert e["unsteered_inclusion"] == pytest.approx(share(base, words))
            for r in e["runs"] + [e["system_prompt"]]:
                assert r["inclusion"] == pytest.approx(share(r["answers"], words))
        return
    for name, c in result["concepts"].items():  # the rank report
        words = concept(name, raw["lexicon"]).words
        assert c["unsteered_inclusion"] == pytest.approx(share(base, words))
        for f in c["features"].values():
            for r in f["runs"]:
                assert r["inclusion"] == pytest.approx(share(r["answers"], words))
