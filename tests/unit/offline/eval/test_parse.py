"""steering/offline/eval/parse.py and the CLI's refusals: a run config resolves to explicit features, pinned
versions and an app config path, round-trips through the run directory's config.yaml, and every bad field is
named with its value and a fix, before any model is loaded."""

import pytest
import yaml

from steering.config import ConfigError, load_config
from steering.offline.eval import __main__ as cli
from steering.offline.eval.parse import load_run_config, parse_run_config
from tests.helpers import ROOT

DEMO = load_config(ROOT / "demo.yaml")


def parse(**data):
    return parse_run_config({"engine": {"config": str(ROOT / "demo.yaml")}, **data}, ROOT)


def test_features_config_takes_the_app_config_s_features_at_their_settings():
    cfg = parse(features="config")
    assert [(f.layer, f.index, f.settings, f.label) for f in cfg.features] == [
        (f.layer, f.index, [(f.mode or DEMO.mode, f.strength)], f.label) for f in DEMO.features]
    assert [f.concept for f in cfg.features][:3] == ["music", "food", "computers"]  # from the labels
    assert (cfg.split, cfg.seeds, cfg.max_new_tokens, cfg.scorer.kind, cfg.scorer.fit_split) == (
        "report@1", (0, 1), 64, "full", "pick@1")


def test_a_feature_runs_at_every_mode_and_strength_and_may_sit_on_any_layer():
    cfg = parse(split="pick2", features=[{"layer": 20, "index": 7, "mode": ["add", "clamp"], "strength": [10, 20],
                                          "concept": "dogs"}, {"layer": 15, "index": 8241, "strength": 40}])
    far, music = cfg.features
    assert far.settings == [("add", 10.0), ("add", 20.0), ("clamp", 10.0), ("clamp", 20.0)] and far.key == "L20:7"
    assert music.settings == [(DEMO.feature_mode(DEMO.features[0]), 40.0)] and music.concept == "music"
    assert cfg.prompts() == list(__import__("steering.offline.eval.splits", fromlist=["split"]).split("pick2").prompts)


def test_params_are_passed_to_the_library_s_feature_spec():
    (f,) = parse(features=[{"layer": 15, "index": 8241, "strength": 30, "params": {"enabled": False}}]).features
    spec = f.spec("add", 30.0)
    assert (spec.enabled, spec.mode, spec.strength, spec.label) == (False, "add", 30.0, "music (instruments)")


def test_the_resolved_config_runs_again_as_it_is(tmp_path):
    cfg = parse(name="again", split="report2@1", seeds=[3], features=[{"layer": 15, "index": 8241, "mode": "clamp",
                                                                          "strength": [20, 25.5], "concept": "music"}],
                engine={"config": str(ROOT / "demo.yaml"), "overrides": {"steer_generated_only": True}})
    folder = tmp_path / "runs" / "again"
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(folder)))
    written = yaml.safe_load((folder / "config.yaml").read_text())
    assert written["engine"]["config"].startswith("..") and written["features"][0]["strength"] == [20.0, 25.5]
    assert load_run_config(folder / "config.yaml") == cfg


def test_a_concept_vector_entry_runs_at_every_setting_and_round_trips(tmp_path):
    cfg = parse(name="cv", features=[{"layer": 20, "vector": {"phrase": "dogs"}, "mode": ["add", "norm_add"],
                                      "strength": [30, 40]},
                                     {"layer": 15, "vector": {"phrase": "the  Eiffel tower", "source": "written", "seed": 2},
                                      "strength": 25, "concept": "paris"}])
    dogs, paris = cfg.features
    assert (dogs.index, dogs.key, dogs.concept, dogs.vector.source, dogs.vector.seed) == (
        None, "L20:cv:dogs:generated", "dogs", "generated", 0)
    assert dogs.settings == [("add", 30.0), ("add", 40.0), ("norm_add", 30.0), ("norm_add", 40.0)]
    assert (paris.vector.phrase, paris.vector.source, paris.vector.seed, paris.settings) == (
        "the Eiffel tower", "written", 2, [("add", 25.0)])  # spaces collapsed; add when mode is left out
    folder = tmp_path / "runs" / "cv"
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(folder)))
    assert load_run_config(folder / "config.yaml") == cfg


BAD = [
    ({"features": [{"layer": 15, "vector": {"phrase": "dogs"}, "mode": "pin", "strength": 3}]},
     "features[0].mode: must be one of the modes but pin", "write mode: add"),
    ({"features": [{"layer": 15, "vector": {"phrase": "dogs"}}]},
     "features[0].strength: a concept vector's strength must be given", "write strength: 40"),
    ({"features": [{"layer": 15, "index": 3, "vector": {"phrase": "dogs"}, "strength": 3}]},
     "features[0].index: a concept vector entry names no SAE feature", "write either index"),
    ({"features": [{"layer": 15, "vector": {"phrase": "<b>"}, "strength": 3}]},
     "features[0].vector.phrase: concept '<b>': write 1-60 letters", "write phrase: dogs"),
    ({"features": [{"layer": 15, "vector": {"phrase": "dogs", "source": "books"}, "strength": 3}]},
     "features[0].vector.source: must be one of generated, written, got 'books'", "write source: generated"),
    ({"features": [{"layer": 15, "vector": {"phrase": "dogs", "seeds": 1}, "strength": 3}]},
     "features[0].vector.seeds: unknown key. Fix: did you mean 'seed'?", "Valid keys: phrase"),
    ({"features": [{"layer": 15, "vector": {"phrase": "dogs"}, "mode": "angular", "strength": 200}]},
     "features[0].strength: is an angle for mode angular and must lie from 0 to 180 degrees, got 200", "use 0 to 180"),
    ({"features": [{"layer": 15, "vector": {"phrase": "dogs"}, "strength": 3, "params": {"enabled": False}}]},
     "features[0].params: a concept vector entry takes no params", "leave params out"),
    ({"features": [{"layer": 15, "vector": {"phrase": "castles"}, "strength": 3}]},
     "features[0].concept: left out, and the feature has no label to name one", "write concept: one of"),
    ({"split": "report9"}, "split: no split 'report9'; known: neutral, pick", "Fix: name a file"),
    ({"split": "report2@3"}, "split: split 'report2' is at version 1, not 3", "write report2@1"),
    ({"seeds": [0, 0]}, "seeds: has a repeated value, got [0, 0]", "Fix: list each seed once"),
    ({"seeds": "0,1"}, "seeds: expected a non-empty list of whole numbers, got '0,1' (a string)", "write seeds: [0, 1]"),
    ({"max_new_tokens": "64"}, "max_new_tokens: expected a whole number, got '64' (a string)", "without quotes: 64"),
    ({"n_prompts": 40, "split": "report2"}, "n_prompts: is more than the 32 prompts of report2@1, got 40", "n_prompts: 32"),
    ({"scorer": {"kind": "heavy"}}, "scorer.kind: must be one of full, light, got 'heavy'", "write kind: full"),
    ({"scorer": {"fit_split": "report"}}, "scorer.fit_split: is a report split; only a pick split", "never a report"),
    ({"scorer": {"lexicon": 7}}, "scorer.lexicon: no concept has a word list of this version, got 7", "lexicon: 2"),
    ({"scorer": {"probe_layer": -1}}, "scorer.probe_layer: must be >= 0, got -1", "such as 25"),
    ({"scorer": {"probes": 1}}, "scorer.probes: unknown key. Fix: did you mean 'probe_set'?", "Valid keys: kind"),
    ({"pick": {"rule": "best"}}, "pick.rule: must be one of margin, first-round, got 'best'", "write rule: margin"),
    ({"seed": [0]}, "seed: unknown key. Fix: did you mean 'seeds'?", "Valid keys: name"),
    ({"name": "a/b"}, "name: must be a folder name (letters, digits, . _ -), got 'a/b'", "write name: round4"),
    ({"features": []}, "features: expected a non-empty list of features, or config, got []", "write features: config"),
    ({"features": [{"layer": 15, "index": 8241, "mode": "ad"}]}, "features[0].mode: must be one of add, clamp",
     "got 'ad' (a string). Fix: write mode: add"),
    ({"features": [{"layer": 15, "index": 8241, "strength": [30, "x"]}]}, "features[0].strength[1]: expected a number",
     "got 'x'"),
    ({"features": [{"layer": 20, "index": 5}]}, "features[0].strength: L20:5 is not in the app config, so its strength "
     "must be given", "write strength: 30"),
    ({"features": [{"layer": 20, "index": 5, "strength": 3}]}, "features[0].concept: left out, and the feature has no "
     "label to name one", "write concept: one of animals"),
    ({"features": [{"layer": 15, "index": 8241, "concept": "forest"}]}, "features[0].concept: concept 'forest' has no "
     "lexicon version 2; it has 1", "write one of: animals"),
    ({"features": [{"layer": 15, "index": 8241, "params": {"angle": 1}}]}, "features[0].params: the library's "
     "FeatureSpec takes no angle, got {'angle': 1}", "use its fields: condition, enabled, range"),
    ({"features": [{"layer": 15, "index": 8241, "params": {"mode": "add"}}]}, "features[0].params: sets mode, which "
     "the feature entry sets", "as the entry's own fields"),
    ({"features": [{"layer": "15", "index": 8241}]}, "features[0].layer: expected a whole number, got '15'",
     "without quotes: 15"),
    ({"features": [{"layer": 15, "index": 8241, "strength": float("inf")}]}, "features[0].strength: must be a finite "
     "number, got inf", "write a finite number such as 30.0"),
    ({"engine": {"config": "nowhere.yaml"}}, "engine.config (nowhere.yaml): config file not found", "check the path"),
    ({"engine": {"config": str(ROOT / "demo.yaml"), "device": "gpu"}}, "engine.device: must be auto, cpu, cuda",
     "write device: auto"),
    ({"engine": {"config": str(ROOT / "demo.yaml"), "overrides": {"steer_generated_only": "yes"}}},
     "engine.overrides.steer_generated_only: expected true or false, got 'yes'", "Fix: write"),
    ({"engine": {"config": str(ROOT / "demo.yaml"), "overrides": {"temperature": 0.5}}},
     "engine.overrides: temperature: not top-level fields of the app config", "such as steer_generated_only"),
    ({"probes": {"layers": [10], "concepts": ["unicorns"]}}, "probes.concepts[0]: no concept 'unicorns'",
     "name a concept of the scorer's lexicon"),
]


@pytest.mark.parametrize("data,message,fix", BAD, ids=lambda v: str(v)[:40])
def test_a_bad_field_is_named_with_its_value_and_a_fix(data, message, fix):
    with pytest.raises(ConfigError) as e:
        parse(**{"features": "config", **data})
    (line,) = [p for p in e.value.problems if p.startswith(message.split(":")[0] + ":")]
    assert line.startswith(message) and fix in line, line


def test_every_problem_is_listed_at_once():
    with pytest.raises(ConfigError) as e:
        parse(split="report9", seeds=[], features=[{"layer": 15, "index": 8241, "mode": "ad"}])
    assert [p.split(":")[0] for p in e.value.problems] == ["split", "seeds", "features[0].mode"]
    assert str(e.value).startswith("3 problems in the config:")


def test_a_missing_or_malformed_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="no run config at .*nothing.yaml. Fix: check the path"):
        load_run_config(tmp_path / "nothing.yaml")
    (tmp_path / "bad.yaml").write_text("features: [\n")
    with pytest.raises(ConfigError, match="bad.yaml: malformed YAML at line 2, column 1: .*Fix: correct the YAML syntax"):
        load_run_config(tmp_path / "bad.yaml")


def write(tmp_path, **data):
    path = tmp_path / "screen.yaml"
    path.write_text(yaml.safe_dump({"engine": {"config": str(ROOT / "demo.yaml")}, "features": "config", **data}))
    return path


@pytest.fixture
def no_engine(monkeypatch):
    """Fails the test if a model is loaded."""
    from steering.engine import Engine

    def refuse(*a, **k):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(Engine, "from_config", refuse)


def test_pick_refuses_a_report_split_before_loading_anything(tmp_path, capsys, no_engine):
    assert cli.main(["pick", str(write(tmp_path, split="report2"))]) == 2
    err = capsys.readouterr().err
    assert "split: is a report split; only a pick split may be used here, got 'report2'" in err
    assert "Fix: use a pick split (pick, pick2, pick3...), never a report split" in err and "Traceback" not in err


def test_a_recorded_run_is_never_overwritten(tmp_path, capsys, no_engine):
    out = tmp_path / "old"
    out.mkdir()
    (out / "config.yaml").write_text("reconstructed: from results.json\n")
    assert cli.main(["run", str(write(tmp_path)), "--out", str(out)]) == 2
    assert "holds a recorded run whose figures are kept as they are" in capsys.readouterr().err


def test_check_prints_the_resolved_config_without_loading_a_model(tmp_path, capsys, no_engine):
    assert cli.main(["check", str(write(tmp_path, split="pick3", seeds=[0]))]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["split"] == "pick3@1" and printed["name"] == "screen" and len(printed["features"]) == len(DEMO.features)
    assert cli.main(["probes", str(write(tmp_path))]) == 2
    assert "probes: missing. Fix: add probes:" in capsys.readouterr().err
