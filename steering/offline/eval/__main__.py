"""`python -m steering.offline.eval run | pick | probes | check CONFIG.yaml [--out DIR]`.

- `run`: every feature of the run config at each setting and seed, with the system-prompt baseline and the
  unsteered answers, graded; writes the run directory (default `benchmarks/runs/<name>`). Run it again on the
  same directory to resume: answers already there are not regenerated.
- `pick`: the same on a pick split (a report split is refused before anything loads), plus the pick rule's
  choice per concept (`pick.rule`).
- `probes`: held-out quality of the concept probes at each of `probes.layers`.
- `check`: read the config and print its resolved form (what `config.yaml` of the run will say); loads no model.

A bad config is refused with one message naming each bad field, its value and the fix (exit status 2)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from steering.config.problems import ConfigError
from steering.offline.eval.parse import load_run_config
from steering.offline.eval.report import dump_yaml
from steering.offline.eval.splits import DataError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m steering.offline.eval", description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=("run", "pick", "probes", "check"))
    p.add_argument("config", type=Path, help="the run config (YAML); see steering/offline/eval/config.py")
    p.add_argument("--out", type=Path, default=None, help="the run directory (default: benchmarks/runs/<name>)")
    args = p.parse_args(argv)
    try:
        cfg = load_run_config(args.config, role="pick" if args.command == "pick" else None)
        if args.command == "probes" and cfg.probes is None:
            raise ConfigError("probes: missing. Fix: add probes: {layers: [10, 15, 20, 25], concepts: [music, food]}",
                              source=str(args.config))
    except (ConfigError, DataError) as e:
        print(e, file=sys.stderr)
        return 2
    if args.command == "check":
        print(dump_yaml(cfg.to_dict()), end="")
        return 0
    out = args.out or Path("benchmarks/runs") / cfg.name
    recorded = out / "config.yaml"
    if recorded.is_file() and "reconstructed:" in recorded.read_text(encoding="utf-8"):
        print(f"{out} holds a recorded run whose figures are kept as they are. Fix: pass --out with another folder",
              file=sys.stderr)
        return 2
    return _run(args.command, cfg, out)


def _run(command: str, cfg, out: Path) -> int:
    """The command, once the config is known good (only now are torch and the engine imported)."""
    import torch

    from steering.offline.eval.probes import markdown, probe_quality
    from steering.offline.eval.report import result_markdown, write_run
    from steering.offline.eval.run import Evaluation

    torch.set_num_threads(cfg.engine.threads)

    with Evaluation(cfg, out, command=command) as ev:
        if command == "probes":
            table = probe_quality(ev.scorer, cfg.probes["layers"], cfg.probes["concepts"], cfg.scorer.lexicon)
            write_run(out, cfg, table, markdown(table), plot_fn=None)
            print(markdown(table))
        else:
            result = ev.run()
            print(result_markdown(result))
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
