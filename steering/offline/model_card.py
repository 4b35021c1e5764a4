"""The shipped SAE's model card, written from its training record and measured quality."""

from __future__ import annotations

import json
from pathlib import Path


def sink_threshold_of(folder: Path | str) -> float | None:
    """The attention-sink norm threshold the SAE was trained with (cfg.json metadata), or None."""
    cfg = json.loads((Path(folder) / "cfg.json").read_text())
    value = (cfg.get("metadata") or {}).get("sink_norm_threshold")
    return None if value is None else float(value)


def model_card(folder: Path, manifest: dict | None = None) -> str:
    """A model card (markdown) from the folder's cfg.json, training.json, quality.json and a corpus manifest."""
    folder = Path(folder)
    cfg = json.loads((folder / "cfg.json").read_text())
    train = json.loads((folder / "training.json").read_text()) if (folder / "training.json").exists() else {}
    q = json.loads((folder / "quality.json").read_text())
    h, smp, dead = q["heldout"], q.get("sample", {}), q.get("dead", {})
    tc = train.get("config", {})
    posix = folder.resolve().as_posix()
    rel = "saes/" + posix.split("/saes/")[-1] if "/saes/" in posix else posix
    lines = [
        f"# TopK SAE for {cfg['model_name']}, layer {cfg['hook_layer']} (resid_post)",
        "",
        f"A TopK sparse autoencoder with {cfg['d_sae']:,} features and k = {cfg['k']} on the residual stream after "
        f"decoder layer {cfg['hook_layer']} (`{cfg['hook_name']}`) of SmolLM2-135M-Instruct (d = {cfg['d_in']}), "
        "trained by this project with `python -m steering.offline.train`. Format: SAELens-native `cfg.json` + "
        f"`sae_weights.safetensors` ({cfg.get('dtype', 'float16')}), loaded by `steering.sae.registry.load_sae`; "
        "encoding uses the TopK rule itself (no threshold conversion).",
        "",
        "## Quality (held-out text)",
        "",
        "| figure | value | target |",
        "|---|---|---|",
        f"| fraction of variance explained, centred (1 - error / variance) | {h['fve']:.4f} | >= 0.95: "
        f"{'met' if h['fve'] >= 0.95 else 'not met'} |",
        f"| variance explained, uncentred (1 - error / mean square) | {h['fve_uncentered']:.4f} | >= 0.95: "
        f"{'met' if h['fve_uncentered'] >= 0.95 else 'not met'} |",
        f"| loss recovered | {h['loss_recovered']:.4f} | >= 0.97: {'met' if h['loss_recovered'] >= 0.97 else 'not met'} |",
        f"| CE clean -> spliced (increase) | {h['ce_clean']:.3f} -> {h['ce_spliced']:.3f} nats (+{h['ce_increase']:.3f}) | |",
        f"| CE with the residual mean-ablated | {h['ce_mean_ablated']:.3f} nats | |",
        f"| L0 (features active per token) | {h['l0']:.1f} | |",
    ]
    if dead:
        lines.append(f"| dead features (never fire on {dead['tokens']:,} training tokens) | {dead['dead_fraction']:.2%} | < 5% |")
    lines += [
        "",
        f"Measured on {h['tokens']:,} held-out tokens (documents held out of training by a hash of their id) with "
        "`python -m steering.offline.quality`; position 0 of each 256-token window and the rare attention-sink "
        f"positions (residual norm above {sink_threshold_of(folder) or float('nan'):.0f}, 10x the median; "
        f"{h.get('sink_positions_left_out', 0)} of the scored positions here) are neither trained on nor spliced. "
        + (f"On the small shipped sample `heldout_sample.jsonl` ({smp['tokens']:,} tokens, which the tests recompute): "
           f"FVE {smp['fve']:.4f}, loss recovered {smp['loss_recovered']:.4f}, CE {smp['ce_clean']:.3f} -> "
           f"{smp['ce_spliced']:.3f}." if smp else ""),
        "",
        "Definitions " + q["definitions"],
        "",
        "## Training",
        "",
    ]
    profile = (manifest or {}).get("profile")
    corpus_build = f" --profile {profile} --out ~/.cache/steering/corpus-{profile}" if profile and profile != "layer15" else ""
    corpus_arg = f" --corpus ~/.cache/steering/corpus-{profile}" if corpus_build else ""
    if train:
        previous = train.get("initialised_from")
        runs = [previous, train] if previous and "steps" in previous else [train]
        computed = train.get("cache_compute_dtype", "model")
        lines.append(f"- activations: {train['cache_tokens']:,} positions of layer {train['layer']} residuals in "
                     f"windows of {train['ctx']} tokens, cached in fp16"
                     + (f" (the forward pass's matrix products in {computed}, under autocast; the quality figures above "
                        "read float32 residuals)" if computed != "model" else ""))
        for i, run in enumerate(runs):
            rc = run.get("config", {})
            what = f"stage {i + 1}: " if len(runs) > 1 else ""
            start_from = "from a random start" if i == 0 else "starting from stage 1's weights (`--init-from`)"
            lines.append(
                f"- {what}{run['steps']:,} steps of batch {rc.get('batch_size')} ({run['tokens_trained']:,} tokens, "
                f"{run['tokens_trained'] / max(1, run['cache_tokens']):.2f} epochs over the first "
                f"{run['cache_tokens']:,} cached positions), lr {rc.get('lr')}, {start_from}, in "
                f"{run['seconds'] / 60:.0f} min on 2 CPU cores")
        lines += [
            f"- Adam with {tc.get('warmup_steps')} warm-up steps and a linear decay to 0 over the last "
            f"{1 - tc.get('decay_start', 0):.0%} of each stage; unit-norm decoder rows; `W_enc` initialised to "
            "`W_dec^T`, `b_dec` to the data mean; inputs scaled to mean norm sqrt(d) during training (scale "
            f"{train['input_scale']:.3f}, folded into the saved weights)",
            f"- dead features: AuxK loss (coefficient {tc.get('aux_coef'):.4f}, k_aux {tc.get('aux_k')}) on features "
            f"silent for {tc.get('dead_tokens'):,} tokens; {train['dead_fraction_end']:.2%} were silent at the end",
            "",
            "Commands (the first caches every training window's activations):",
            "",
            "```bash",
            f"python -m steering.offline.corpus{corpus_build}",
            f"python -m steering.offline.train --model {cfg['model_name']} --layer {cfg['hook_layer']}{corpus_arg} "
            + (f"--cache-only --shuffle --compute-dtype {computed}" if computed != "model" else f"--out {rel} --cache-only"),
        ]
        for i, run in enumerate(runs):
            rc = run.get("config", {})
            out = f"{rel}-stage1" if i == 0 and len(runs) > 1 else rel
            init = f" --init-from {rel}-stage1" if i == 1 else ""
            lines.append(
                f"python -m steering.offline.train --model {cfg['model_name']} --layer {cfg['hook_layer']}{corpus_arg} --use-cached "
                f"--max-tokens {run['cache_tokens']} --d-sae {cfg['d_sae']} --k {cfg['k']} --epochs {rc.get('epochs')} "
                f"--lr {rc.get('lr')}{init} --out {out}")
        lines += [
            *([f"python -m steering.offline.heldout{corpus_arg} --layer {cfg['hook_layer']}"] if corpus_arg else []),
            f"python -m steering.offline.quality {rel}{corpus_arg}",
            *([f"python -m steering.offline.feature_stats {rel}{corpus_arg}"] if corpus_arg else []),
            f"python -m steering.offline.contexts {rel}{corpus_arg}",
            "```",
            "",
        ]
    if manifest:
        lines += ["## Data", "",
                  f"{manifest['tokens']['train']:,} training tokens were built by `python -m steering.offline.corpus` "
                  f"(cut into windows of {train.get('ctx', 256)} tokens, documents and tails under 16 tokens dropped, position 0 "
                  f"of each window not stored: {train.get('cache_tokens', 0):,} cached positions) "
                  f"and {manifest['tokens']['heldout']:,} held out. Chat-shaped text is rendered through the model's "
                  "chat template (with its default system turn).", "",
                  "| source | package | licence | documents | train tokens |", "|---|---|---|---|---|"]
        for src in manifest["sources"]:
            pkg = f"{src['package']} {src.get('version', '')}".strip()
            lines.append(f"| {src['what']} | {src['registry']}: {pkg} | {src['licence']} | {src['documents']:,} | "
                         f"{src.get('tokens_train', 0):,} |")
        lines += ["", "Attribution: " + " ".join(s["attribution"] for s in manifest["sources"]), ""]
    lines += [
        "## Files",
        "",
        "- `cfg.json`, `sae_weights.safetensors`: the SAE",
        "- `feature_contexts.json.gz`: top-activating contexts and an automatic label for every feature "
        "(`steering.inspection.labels.load_feature_contexts`)",
        "- `quality.json`: the figures above; `training.json`: hyper-parameters and the training curve",
        "- `mean_residual.safetensors`: the mean training residual (for the mean-ablation baseline)",
        "- `heldout_sample.jsonl`: a small held-out sample (MIT / public-domain / PSF / WordNet sources) for the tests",
        "",
        "## Licence",
        "",
        "Apache-2.0, like SmolLM2-135M-Instruct (HuggingFaceTB), whose activations it was trained on. The training "
        "text is not redistributed; part of it (Wikipedia lead sections) is CC BY-SA 4.0, attributed above.",
        "",
    ]
    return "\n".join(lines)
