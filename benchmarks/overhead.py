"""Steering overhead: greedy decode tokens/s steered / unsteered on the embedded SmolLM2.

`python benchmarks/overhead.py` writes benchmarks/results/overhead.json. Every configuration
generates exactly the same number of tokens (min_new_tokens = max_new_tokens) from the same
prompt; the configurations run interleaved, and each figure is the median of the repetitions,
so the ratios come from one run on one machine.

- plain: `model.generate` with no hooks installed at all (the physical limit)
- hooks idle: this library's dispatching hooks installed, no steering active
- add x1: one feature, add mode, layer 15 (a shipped feature)
- clamp x8 / pin x8: 8 features over layers 9, 12, 15, 18 (two per layer). Layer 15 uses shipped
  features; the other layers have no shipped SAE, so they use fixed random unit directions and
  encoder rows (the cost of an edit does not depend on which direction it is).

These five time `model.generate` itself around the hooks (the steering's own cost). Two more arms,
outside the targets, time the serving path every answer takes since the restructure,
`steering.generate.decode.Decoder.run` on the calling thread (as `Engine.run_now` does): the same
`generate`, plus the per-row sampler (`RowSampler`), stops (`RowStops`) and detokenizer (`RowText`):
- served unsteered: a request with no plan;
- served add x1: the add x1 plan as a request.
They stop at end of turn, so their tokens/s is over the tokens each actually generated (recorded).
"""

from __future__ import annotations

import argparse
import json
import platform
import queue
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from steering.config import GenerationSettings, load_config  # noqa: E402
from steering.backends.hooks import HooksRunner  # noqa: E402
from steering.generate.decode import Decoder, Request, RequestSpec  # noqa: E402
from steering.model.chat_template import encode_chat, special_token_ids  # noqa: E402
from steering.model.embedded import EMBEDDED_MODEL  # noqa: E402
from steering.model.loading import load_model  # noqa: E402
from steering.sae import FeatureRule, TopKFeature, open_sae  # noqa: E402
from steering.steer.hooks import attach, detach, steering  # noqa: E402
from steering.steer.plan import Edit, SteeringPlan  # noqa: E402

SHIPPED = ROOT / "saes" / "smollm2-135m-instruct" / "layer_15"
PROMPT = "Tell me about your weekend plans."
DEMO = load_config(ROOT / "demo.yaml")  # its layer-15 features stand in for real ones


def edits_for(mode: str, handle, layers=(9, 12, 15, 18), per_layer=2) -> dict[int, list[Edit]]:
    g = torch.Generator().manual_seed(0)
    shipped = [f.index for f in DEMO.features if f.layer == 15][:2]
    rows = handle.decoder_rows(shipped)
    rules = handle.feature_rules(shipped) if handle.activation != "topk" else None
    sae = handle.load() if rules is None else None
    out: dict[int, list[Edit]] = {}
    for layer in layers:
        out[layer] = []
        for j in range(per_layer):
            if layer == 15:
                d = rows[j]
                act = rules[j].activation if rules else TopKFeature(sae, shipped[j])  # as Engine.plan makes it
            else:
                d = torch.randn(576, generator=g)
                w = torch.randn(576, generator=g) / 24
                act = FeatureRule(0, w, torch.tensor(0.0), torch.zeros(576), torch.tensor(0.0), "jumprelu").activation
            norm = float(d.norm())
            out[layer].append(Edit(mode, d / norm, 20.0, norm, act if mode == "pin" else None))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "overhead.json"))
    args = parser.parse_args(argv)

    model, tok = load_model(EMBEDDED_MODEL, device="cpu", dtype="float32")
    ids = encode_chat(tok, [{"role": "user", "content": PROMPT}])
    handle = open_sae(SHIPPED)
    u = handle.decoder_rows([next(f for f in DEMO.features if f.enabled).index])[0]
    configs = {
        "plain": None,
        "hooks idle": SteeringPlan(),
        "add x1": SteeringPlan({15: [Edit("add", u / u.norm(), 40.0)]}),
        "clamp x8": SteeringPlan(edits_for("clamp", handle)),
        "pin x8": SteeringPlan(edits_for("pin", handle)),
    }
    kwargs = dict(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=args.tokens, min_new_tokens=args.tokens,
                  do_sample=False, pad_token_id=tok.eos_token_id)
    served = {"served unsteered": None, "served add x1": configs["add x1"]}
    settings = GenerationSettings(max_new_tokens=args.tokens, temperature=0.0, repetition_penalty=1.0)
    eos = {tok.eos_token_id} | set(model.generation_config.eos_token_id if isinstance(model.generation_config.eos_token_id, list)
                                    else [model.generation_config.eos_token_id])
    specials = special_token_ids(tok)

    def serve(plan: SteeringPlan | None) -> tuple[float, int]:
        """One request through the serving path on this thread: (seconds, new tokens)."""
        decoder = Decoder(model, tok, HooksRunner(model, attach(model), specials), sorted(i for i in eos if i is not None))
        request = Request(RequestSpec(ids, plan, settings), queue.SimpleQueue())
        started = time.perf_counter()
        decoder.run([request])
        seconds = time.perf_counter() - started
        if request.error is not None:
            raise request.error
        return seconds, len(request.tokens)

    times: dict[str, list[float]] = {name: [] for name in [*configs, *served]}
    served_tokens: dict[str, list[int]] = {name: [] for name in served}
    with torch.inference_mode():
        model.generate(**kwargs)  # warm-up
        serve(None)
        for _ in range(args.reps):
            for name, plan in configs.items():
                if plan is None:
                    detach(model)
                else:
                    attach(model)
                started = time.perf_counter()
                with nullcontext() if plan is None else steering(model, plan):
                    out = model.generate(**kwargs)
                times[name].append(time.perf_counter() - started)
                assert out.shape[1] - ids.shape[1] == args.tokens
            for name, plan in served.items():
                seconds, n = serve(plan)
                times[name].append(seconds / n * args.tokens)  # the time args.tokens tokens take at this speed
                served_tokens[name].append(n)
    tps = {name: args.tokens / statistics.median(t) for name, t in times.items()}
    result = {
        "command": "python benchmarks/overhead.py " + " ".join(argv or sys.argv[1:]),
        "machine": {"cpu_count": torch.get_num_threads(), "platform": platform.platform(), "torch": torch.__version__},
        "tokens": args.tokens, "reps": args.reps,
        "tokens_per_s": {k: round(v, 2) for k, v in tps.items()},
        "ratio_to_plain": {k: round(v / tps["plain"], 4) for k, v in tps.items()},
        "all_tokens_per_s": {k: [round(args.tokens / x, 2) for x in t] for k, t in times.items()},
        "served_new_tokens": served_tokens,
        "targets": {"add x1": 0.97, "clamp x8": 0.95, "pin x8": 0.95},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    for name in times:
        print(f"{name:<16} {tps[name]:7.2f} tok/s   x{tps[name] / tps['plain']:.3f} of plain")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
