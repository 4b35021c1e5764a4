"""The steering evaluation as runs: a run config (YAML) in, a run directory out (`benchmarks/runs/<name>/`).

- `config`, `parse`: the run config's dataclasses and their reader (every bad field named before a model loads);
- `splits`, `lexicons`: prompt splits, the probe set and each concept's word lists, as versioned data files
  under `data/`;
- `answers`: the one answer loop (through the serving path) and the answer stores that make a run resumable;
- `readings`, `grades`, `scorer`: what the unsteered model reads from an answer, the grades' formulas, and the
  two scorers (the AxBench-style grades; the light screen);
- `run`: `Evaluation`, which owns the engine and the scorer of one run; `report`: its table, plot and directory;
- `pick`: the rules that choose a default setting per concept from a screen; `probes`: probe quality per layer.

The command line is `python -m steering.offline.eval` (`__main__`); docs/steering-eval.md explains the scorer."""
