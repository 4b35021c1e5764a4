"""Runs one PyPI steering library inside its own virtual environment, for benchmarks/peers.py.

Not part of the `steering` package and never imports it: it needs only the standard library,
torch, transformers and the library under test, which `benchmarks/peers.py` installs into
`benchmarks/.venvs/<library>/` (steering-vectors needs transformers < 5, repeng numpy < 2).

It loads the same converted weights folder the main benchmark uses (fp32, CPU, the same thread
count), steers it with the library's own API, then answers commands on stdin, one per line,
with one JSON object per line on stdout:

- `steered`: one timed greedy `generate` with the library's steering applied for this call;
- `plain`: one timed greedy `generate` without steering (this environment's own reference);
- `quit`: exit.

Each answer is `{"mode", "seconds", "cpu_seconds", "ids"}` (wall and process CPU time of the
call; ids: the generated tokens only), or `{"error"}`.
The prompt is given as token ids, computed once by the main benchmark, so tokenisation cannot
differ between environments; this runner loads no tokenizer.

Steering semantics (made equal to the main benchmark's `h + s*u` at every position of layer
`--layer`'s output, prompt and generated tokens alike):

- steering-vectors: `SteeringVector({layer: u}, "decoder_block").apply(model, multiplier=s,
  min_token_index=0)` around each call. Its hook adds `multiplier * u` to the positions
  `min_token_index:` *of each forward pass* (not absolute positions), so only 0 means "every
  position" once cached decoding feeds one token at a time.
- repeng: `ControlModel(model, [layer])` once, then `set_control(ControlVector("llama", {layer:
  u}), coeff=s)` before and `reset()` after each call. Its module adds `coeff * u` times a
  padding mask computed from `position_ids` (1 everywhere for an unpadded prompt, and for each
  cached decode step), so it also steers every position.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def _protocol_stream():
    """The real stdout for answers; everything else (warnings, progress bars) goes to stderr."""
    out = sys.stdout
    sys.stdout = sys.stderr
    return out


def installed_version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def load_model(folder: str, threads: int):
    """The converted folder, loaded with this environment's transformers (4.x here).

    A config saved by transformers 5 keeps RoPE's base under `rope_parameters`; transformers 4
    reads `rope_theta` and would silently fall back to 10000, so it is copied across.
    """
    import torch
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.set_num_threads(threads)
    config = AutoConfig.from_pretrained(folder)
    notes = []
    rope = getattr(config, "rope_parameters", None)
    if int(transformers.__version__.split(".")[0]) < 5 and isinstance(rope, dict) and "rope_theta" in rope:
        if rope.get("rope_type", "default") != "default":
            raise SystemExit(f"rope_type {rope.get('rope_type')!r} is not handled by this runner")
        config.rope_theta = float(rope["rope_theta"])
        notes.append(f"rope_theta={config.rope_theta} copied from transformers 5's rope_parameters")
    dtype_kw = "dtype" if tuple(int(p) for p in transformers.__version__.split(".")[:2]) >= (4, 56) else "torch_dtype"
    model = AutoModelForCausalLM.from_pretrained(folder, config=config, **{dtype_kw: torch.float32})
    model.eval()
    model.requires_grad_(False)
    return model, notes


class Runner:
    def __init__(self, args):
        import torch

        self.torch = torch
        self.model, self.notes = load_model(args.model, args.threads)
        self.ids = torch.tensor([json.loads(open(args.ids).read())], dtype=torch.long)  # (1, T)
        u = torch.load(args.vector, weights_only=True).float()  # (d,) unit direction
        self.layer, self.strength, self.tokens = args.layer, float(args.strength), args.tokens
        self.library = args.library
        if self.library == "steering-vectors":
            from steering_vectors import SteeringVector

            self.vector = SteeringVector(layer_activations={self.layer: u}, layer_type="decoder_block")
            self.generate_model = self.model
        elif self.library == "repeng":
            from repeng import ControlModel, ControlVector

            self.vector = ControlVector(model_type=self.model.config.model_type, directions={self.layer: u.numpy()})
            self.generate_model = ControlModel(self.model, [self.layer])  # wraps layer `layer` once
        else:
            raise SystemExit(f"unknown library {self.library!r}")

    def versions(self) -> dict:
        names = ["torch", "transformers", "numpy", self.library]
        return {name: installed_version(name) for name in names} | {"python": sys.version.split()[0]}

    def _generate(self):
        eos = self.model.generation_config.eos_token_id
        with self.torch.inference_mode():
            return self.generate_model.generate(
                input_ids=self.ids, attention_mask=self.torch.ones_like(self.ids),
                max_new_tokens=self.tokens, min_new_tokens=self.tokens, do_sample=False,
                repetition_penalty=1.0, pad_token_id=eos[0] if isinstance(eos, list) else eos,
            )

    def run(self, mode: str):
        started, cpu_started = time.perf_counter(), time.process_time()
        if mode == "plain":
            if self.library == "repeng":
                self.generate_model.reset()
            out = self._generate()
        elif self.library == "steering-vectors":
            with self.vector.apply(self.model, multiplier=self.strength, min_token_index=0):
                out = self._generate()
        else:
            self.generate_model.set_control(self.vector, coeff=self.strength)
            try:
                out = self._generate()
            finally:
                self.generate_model.reset()
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
        return {"mode": mode, "seconds": seconds, "cpu_seconds": cpu_seconds, "ids": out[0, self.ids.shape[1]:].tolist()}


def main() -> int:
    out = _protocol_stream()

    def say(obj) -> None:
        out.write(json.dumps(obj) + "\n")
        out.flush()

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", required=True, choices=["steering-vectors", "repeng"])
    parser.add_argument("--model", required=True, help="converted transformers folder")
    parser.add_argument("--vector", required=True, help=".pt file holding the unit direction (d,)")
    parser.add_argument("--ids", required=True, help="JSON file with the prompt's token ids")
    parser.add_argument("--layer", type=int, required=True)
    parser.add_argument("--strength", type=float, required=True)
    parser.add_argument("--tokens", type=int, required=True)
    parser.add_argument("--threads", type=int, required=True)
    args = parser.parse_args()
    try:
        runner = Runner(args)
    except BaseException as exc:  # reported to the main benchmark, which records it
        say({"error": f"{type(exc).__name__}: {exc}"})
        return 1
    say({"ready": True, "versions": runner.versions(), "notes": runner.notes, "threads": runner.torch.get_num_threads()})
    for line in sys.stdin:
        command = line.strip()
        if command == "quit":
            break
        try:
            say(runner.run(command) if command in ("steered", "plain") else {"error": f"unknown command {command!r}"})
        except Exception as exc:
            say({"error": f"{type(exc).__name__}: {exc}"})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
