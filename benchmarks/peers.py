"""Against peers: the same additive steering through this library and four other ways, timed and cross-checked.

`python benchmarks/peers.py [--reps 5] [--tokens 64]` (`--quick` for a short run while developing)
writes benchmarks/results/peers.json.

Same model, vector, layer, prompt and decoding for every approach:
- the embedded SmolLM2-135M-Instruct (the converted fp32 folder in the steering cache), on CPU, at
  this process's torch thread count;
- demo.yaml's feature that is on at start (a feature on layer 15): its unit direction u from
  steering_vectors.pt, added as `h + s*u` (s = its configured strength by default) to the output of
  decoder layer 15 at *every* position, prompt and generated tokens alike. The peers only add, so
  this is add mode whatever mode demo.yaml gives the feature (the cost of an add does not depend
  on the vector);
- the chat-templated prompt's token ids, computed once here with this library's `encode_chat` and
  passed to the other environments as ids, so tokenisation cannot differ;
- greedy decoding, repetition_penalty 1.0, exactly --tokens new tokens: min_new_tokens =
  max_new_tokens, so EOS is masked until the end and every approach generates the same count;
- plain `generate` calls under `torch.inference_mode()`, no streamer (nnsight's excepted: see
  below), each approach's steering set up and removed inside the timed call.

Approaches:
- plain: unsteered `model.generate`, no hooks installed (the physical limit);
- ours: `steering.steer.hooks.steering()` with a plan around `model.generate`, i.e. the persistent
  dispatching hooks the app uses, attached once at load on its own copy of the model;
- per-request hooks: the original project's way, a forward hook registered on
  `model.model.layers[15]` before each call and removed in `finally` (on the plain copy);
- nnsight: this library's nnsight backend (`NNsightRunner.generate`, made once), on its own copy
  of the model, because wrapping a model in nnsight permanently replaces its modules' `forward`.
  It gets the same greedy `generate` arguments as the others (as a `GenerationConfig`, with no
  sampler or stops of ours), and a minimal streamer that collects the ids, which replaces
  nnsight's own;
- steering-vectors and repeng: the PyPI libraries, each in its own virtual environment under
  benchmarks/.venvs/ (steering-vectors needs transformers < 5 and repeng numpy < 2; both get the
  same torch build as this environment). benchmarks/peer_runner.py loads the same weights folder
  there and steers with the library's own API; its docstring gives each library's position
  semantics. The environments are built once and reused while their pinned requirements match; a
  failed build is recorded in the results instead of stopping the benchmark.

Timing: every approach gets one untimed warm-up call, then --reps rounds; each round runs every
approach once, in an order rotated from round to round (the peer runners are long-lived
processes that wait on stdin while others run, so only one generation runs at a time). Each
figure is the median over the rounds, so the ratios come from one run on one machine. The peer
environments run transformers 4.x while this one runs 5.x, so the steering-vectors environment
also times its own plain `generate` ("plain (peer env)"): a peer's speed relative to that
separates its steering overhead from the difference between transformers versions.

Correctness: every approach's greedy ids must equal ours (the first differing position is
reported otherwise), and the steered text must differ from the unsteered one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.peer_runner import installed_version  # noqa: E402  (the runner imports only the stdlib at load)
from steering.config import GenerationSettings, load_config  # noqa: E402
from steering.model.chat_template import encode_chat  # noqa: E402
from steering.model.embedded import EMBEDDED_MODEL, ensure_default_model  # noqa: E402
from steering.model.loading import load_model  # noqa: E402
from steering.steer.hooks import attach, detach, steering  # noqa: E402
from steering.steer.plan import Edit, SteeringPlan  # noqa: E402
from steering.steer.vectors import load_vectors  # noqa: E402

PROMPT = "Tell me about your weekend plans."
VENVS = ROOT / "benchmarks" / ".venvs"
RUNNER = ROOT / "benchmarks" / "peer_runner.py"
MARKER = "peers-venv.json"
PEERS = {
    # name -> pinned requirements (torch is added: this environment's exact build, e.g. 2.13.0+cpu)
    "steering-vectors": ["transformers==4.57.6", "steering-vectors==0.12.2"],
    "repeng": ["transformers==4.57.6", "numpy==1.26.4", "repeng==0.4.0"],
}
IMPORT_NAME = {"steering-vectors": "steering_vectors", "repeng": "repeng"}
PIP_TIMEOUT_S = 1800


def say(msg: str) -> None:
    print(f"[peers] {msg}", flush=True)


# ----------------------------------------------------------------------------- virtual environments


def venv_python(name: str) -> Path:
    return VENVS / name / "bin" / "python"


def requirements(name: str) -> list[str]:
    return [f"torch=={torch.__version__}", *PEERS[name]]


def ensure_venv(name: str, rebuild: bool = False) -> tuple[Path | None, str | None]:
    """(python, None) for a ready environment, building it if needed; (None, why) if it cannot be built."""
    folder, python, wanted = VENVS / name, venv_python(name), requirements(name)
    marker = folder / MARKER
    if not rebuild and python.exists() and marker.exists():
        try:
            if json.loads(marker.read_text()).get("requirements") == wanted:
                check = subprocess.run([str(python), "-c", f"import torch, transformers, {IMPORT_NAME[name]}"],
                                       capture_output=True, text=True, timeout=300)
                if check.returncode == 0:
                    say(f"reusing the {name} environment in {folder.relative_to(ROOT)} ({', '.join(wanted)})")
                    return python, None
        except (OSError, ValueError, subprocess.TimeoutExpired):
            pass
    say(f"building the {name} environment in {folder.relative_to(ROOT)} ({', '.join(wanted)}); once, a few minutes")
    shutil.rmtree(folder, ignore_errors=True)
    VENVS.mkdir(parents=True, exist_ok=True)
    log = VENVS / f"{name}.pip.log"
    steps = [
        [sys.executable, "-m", "venv", str(folder)],
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", *wanted],
        [str(python), "-c", f"import torch, transformers, {IMPORT_NAME[name]}"],
    ]
    started = time.monotonic()
    with open(log, "w") as out:
        for cmd in steps:
            out.write(f"$ {' '.join(cmd)}\n")
            out.flush()
            try:
                done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=PIP_TIMEOUT_S)
            except (OSError, subprocess.TimeoutExpired) as exc:
                return None, f"{' '.join(cmd[:4])}... failed: {exc} (log: {log.relative_to(ROOT)})"
            if done.returncode != 0:
                tail = log.read_text()[-1200:]
                return None, f"`{' '.join(cmd[2:])}` exited {done.returncode} (log: {log.relative_to(ROOT)}):\n{tail}"
    marker.write_text(json.dumps({"requirements": wanted, "built": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, indent=2))
    say(f"built {name} in {time.monotonic() - started:.0f} s")
    return python, None


class PeerProcess:
    """A long-lived benchmarks/peer_runner.py in a peer's environment: one command, one JSON answer."""

    def __init__(self, name: str, python: Path, args: list[str]):
        self.name = name
        self.proc = subprocess.Popen([str(python), str(RUNNER), "--library", name, *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        self.stderr_lines: list[str] = []
        import threading

        threading.Thread(target=self._drain, daemon=True).start()  # keep stderr from filling its pipe
        self.hello = self._read()

    def _drain(self) -> None:
        for line in self.proc.stderr:
            self.stderr_lines.append(line.rstrip())
            del self.stderr_lines[:-40]

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=30)
            tail = "\n".join(self.stderr_lines[-15:])
            return {"error": f"the runner exited with status {self.proc.returncode}:\n{tail}"}
        return json.loads(line)

    def call(self, command: str) -> dict:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()


# ----------------------------------------------------------------------------- in-process approaches


def generate_kwargs(ids: torch.Tensor, tokens: int, pad_id: int) -> dict:
    return dict(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=tokens, min_new_tokens=tokens,
                do_sample=False, repetition_penalty=1.0, pad_token_id=pad_id)


def plain_generate(model, kwargs: dict) -> torch.Tensor:
    with torch.inference_mode():
        return model.generate(**kwargs)


def ours_generate(model, plan: SteeringPlan, kwargs: dict) -> torch.Tensor:
    """The library path the app uses: request-scoped state read by the persistent dispatching hooks."""
    with torch.inference_mode(), steering(model, plan, kwargs["input_ids"]):
        return model.generate(**kwargs)


def per_request_generate(model, layer: int, direction: torch.Tensor, strength: float, kwargs: dict) -> torch.Tensor:
    """The original project's way: register a hook adding s*u to layer `layer`'s output, generate, remove it."""
    delta = strength * direction  # (d,)

    def hook(module, args, output):
        if isinstance(output, tuple):
            return (output[0] + delta, *output[1:])
        return output + delta

    handle = model.model.layers[layer].register_forward_hook(hook)
    try:
        with torch.inference_mode():
            return model.generate(**kwargs)
    finally:
        handle.remove()


class _IdCollector:
    """The smallest streamer: keeps the ids `generate` hands it (the prompt first, then each new token)."""

    def __init__(self):
        self.ids: list[int] = []

    def put(self, value: torch.Tensor) -> None:
        self.ids.extend(value.reshape(-1).tolist())

    def end(self) -> None:
        pass


def nnsight_generate(runner, plan: SteeringPlan, kwargs: dict) -> torch.Tensor:
    """This library's nnsight backend (an `NNsightRunner`), with a collecting streamer in place of nnsight's own."""
    from transformers import GenerationConfig
    from transformers.generation.streamers import BaseStreamer

    from steering.generate.decode import Request

    collector = type("IdCollector", (_IdCollector, BaseStreamer), {})()
    settings = GenerationSettings(max_new_tokens=kwargs["max_new_tokens"], temperature=0.0, repetition_penalty=1.0)
    row = Request(kwargs["input_ids"], plan, settings, queue.SimpleQueue())
    eos = runner.model.generation_config.eos_token_id
    config = GenerationConfig(max_new_tokens=kwargs["max_new_tokens"], min_new_tokens=kwargs["min_new_tokens"],
                              do_sample=False, repetition_penalty=kwargs["repetition_penalty"],
                              pad_token_id=kwargs["pad_token_id"], eos_token_id=eos)
    with torch.inference_mode():
        runner.generate([row], [0], input_ids=kwargs["input_ids"], attention_mask=kwargs["attention_mask"],
                        generation_config=config, streamer=collector)
    return torch.tensor([collector.ids])


# ----------------------------------------------------------------------------- the benchmark


@dataclass
class Approach:
    name: str
    run: Callable[[], tuple[float, float, list[int]]]  # one timed call: (wall s, process CPU s, new token ids)
    environment: str
    semantics: str
    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    ids: list[int] | None = None
    ids_stable: bool = True
    error: str | None = None


def first_difference(a: list[int], b: list[int]) -> int | None:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def in_process(fn: Callable[[], torch.Tensor], prompt_len: int) -> Callable[[], tuple[float, float, list[int]]]:
    def run():
        started, cpu_started = time.perf_counter(), time.process_time()
        out = fn()
        return time.perf_counter() - started, time.process_time() - cpu_started, out[0, prompt_len:].tolist()

    return run


def subprocess_call(peer: PeerProcess, command: str) -> Callable[[], tuple[float, float, list[int]]]:
    def run():
        answer = peer.call(command)
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer["seconds"], answer["cpu_seconds"], answer["ids"]

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64, help="new tokens per generation (default 64)")
    parser.add_argument("--reps", type=int, default=5, help="timed rounds; figures are medians (default 5)")
    parser.add_argument("--strength", type=float, default=None, help="add strength s (default: demo.yaml's)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for every approach (default: torch's, "
                        "one per core)")
    parser.add_argument("--quick", action="store_true", help="development run: 8 tokens, 2 rounds")
    parser.add_argument("--no-venvs", action="store_true", help="skip steering-vectors and repeng")
    parser.add_argument("--rebuild-venvs", action="store_true", help="rebuild the peer environments")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "peers.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.tokens, args.reps = 8, 2

    config = load_config(ROOT / "demo.yaml")
    feature = next(f for f in config.features if f.enabled)
    mode = feature.mode or config.mode
    if mode != "add":
        say(f"demo.yaml's default feature {feature.key} is in {mode} mode; the peers only add, so every approach adds its vector")
    strength = feature.strength if args.strength is None else args.strength
    vector = load_vectors(config.vectors_path()).get(feature.layer, feature.index)
    if vector is None:
        raise SystemExit(f"{config.vectors_path()} lacks {feature.key}: run `python -m steering.cli.extract`")
    layer, u = feature.layer, vector.direction.float()
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()

    peer_python: dict[str, Path | None] = {}
    peer_errors: dict[str, str] = {}
    if not args.no_venvs:
        for name in PEERS:
            peer_python[name], why = ensure_venv(name, args.rebuild_venvs)
            if why:
                peer_errors[name] = f"environment not built: {why}"
                say(f"{name}: {peer_errors[name]}")

    model_dir = ensure_default_model()
    # Three copies of the weights, so each approach finds the model as it would in its own program: no hooks at
    # all (plain, per-request hooks), this library's dispatching hooks attached once (ours), or wrapped by nnsight,
    # which permanently replaces its modules' forward.
    model, tok = load_model(EMBEDDED_MODEL, device="cpu", dtype="float32")
    detach(model)
    ours_model, _ = load_model(EMBEDDED_MODEL, device="cpu", dtype="float32")
    attach(ours_model)
    nn_model, _ = load_model(EMBEDDED_MODEL, device="cpu", dtype="float32")
    from steering.backends.nnsight import NNsightRunner

    nn_runner = NNsightRunner(nn_model, tok)  # wraps the model once, as an engine with backend: nnsight does
    ids = encode_chat(tok, [{"role": "user", "content": PROMPT}])  # (1, T)
    prompt_len = ids.shape[1]
    kwargs = generate_kwargs(ids, args.tokens, tok.eos_token_id)
    plan = SteeringPlan({layer: [Edit("add", u, strength, label=feature.display_name)]})

    approaches = [
        Approach("plain", in_process(lambda: plain_generate(model, kwargs), prompt_len), "main",
                 "no steering, no hooks installed"),
        Approach("ours", in_process(lambda: ours_generate(ours_model, plan, kwargs), prompt_len), "main",
                 "steering.steer.hooks.steering(model, plan) around generate: the persistent dispatching hooks (attached once "
                 "at load, as the app does; its own model instance); add h + s*u at every position"),
        Approach("per-request hooks", in_process(lambda: per_request_generate(model, layer, u, strength, kwargs), prompt_len),
                 "main", f"register_forward_hook on model.model.layers[{layer}] adding s*u to the output at every position, "
                 "removed in finally; per call (the plain model instance, no other hooks)"),
        Approach("nnsight", in_process(lambda: nnsight_generate(nn_runner, plan, kwargs), prompt_len), "main",
                 "steering.backends.nnsight.NNsightRunner.generate: layer output edited inside an nnsight generate "
                 "trace, every step (tracer.iter), same Edit.apply; a separate model instance; an id-collecting streamer "
                 "replaces nnsight's default one"),
    ]
    peers: dict[str, PeerProcess] = {}
    workdir = Path(tempfile.mkdtemp(prefix="peers-"))
    try:
        (workdir / "ids.json").write_text(json.dumps(ids[0].tolist()))
        torch.save(u.contiguous().clone(), workdir / "vector.pt")
        runner_args = ["--model", str(model_dir), "--vector", str(workdir / "vector.pt"), "--ids", str(workdir / "ids.json"),
                       "--layer", str(layer), "--strength", repr(float(strength)), "--tokens", str(args.tokens),
                       "--threads", str(threads)]
        peer_info: dict[str, dict] = {}
        for name, python in peer_python.items():
            if python is None:
                continue
            say(f"starting the {name} runner")
            peer = PeerProcess(name, python, runner_args)
            if "error" in peer.hello:
                peer_errors[name] = f"runner failed to start: {peer.hello['error']}"
                say(f"{name}: {peer_errors[name]}")
                peer.close()
                continue
            peers[name] = peer
            peer_info[name] = peer.hello
        semantics = {
            "steering-vectors": f"SteeringVector({{{layer}: u}}, 'decoder_block').apply(model, multiplier=s, min_token_index=0) "
                                "around each call: adds s*u to positions min_token_index: of each forward pass, so 0 = every "
                                "position (prompt and each cached decode step); in-place on the layer output",
            "repeng": f"ControlModel(model, [{layer}]) once; set_control(ControlVector('llama', {{{layer}: u}}), coeff=s) before "
                      "and reset() after each call: adds coeff*u times a padding mask from position_ids, which is 1 at "
                      "every position of an unpadded prompt and at each decode step",
        }
        for name, peer in peers.items():
            approaches.append(Approach(name, subprocess_call(peer, "steered"), f"venv {name}", semantics[name]))
        if peers:
            ref = "steering-vectors" if "steering-vectors" in peers else next(iter(peers))
            approaches.append(Approach("plain (peer env)", subprocess_call(peers[ref], "plain"), f"venv {ref}",
                                       "no steering, in the peer environment (transformers 4.x): the reference for peer speed"))

        def call(a: Approach) -> tuple[float, float] | None:
            if a.error:
                return None
            try:
                seconds, cpu_seconds, new_ids = a.run()
            except Exception as exc:  # a failing peer is recorded, not fatal
                if not a.environment.startswith("venv"):
                    raise
                a.error = f"{type(exc).__name__}: {exc}"
                say(f"{a.name}: {a.error}")
                return None
            if len(new_ids) != args.tokens:
                a.error = f"generated {len(new_ids)} tokens instead of {args.tokens}"
            if a.ids is None:
                a.ids = new_ids
            elif a.ids != new_ids:
                a.ids_stable = False
            return seconds, cpu_seconds

        say(f"warm-up: one call of each of {len(approaches)} approaches ({args.tokens} tokens, {threads} threads)")
        for a in approaches:
            call(a)
        for r in range(args.reps):
            k = r % len(approaches)
            order = approaches[k:] + approaches[:k]
            for a in order:
                timing = call(a)
                if timing is not None:
                    a.seconds.append(timing[0])
                    a.cpu_seconds.append(timing[1])
            say(f"round {r + 1}/{args.reps}: " + ", ".join(f"{a.name} {args.tokens / a.seconds[-1]:.2f}" for a in approaches
                                                          if a.seconds and not a.error) + " tok/s")
    finally:
        for peer in peers.values():
            peer.close()
        shutil.rmtree(workdir, ignore_errors=True)

    by_name = {a.name: a for a in approaches}
    tps = {a.name: args.tokens / statistics.median(a.seconds) for a in approaches if a.seconds and not a.error}
    cpu_tps = {a.name: args.tokens / statistics.median(a.cpu_seconds) for a in approaches if a.seconds and not a.error}
    ours_ids = by_name["ours"].ids
    plain_ids = by_name["plain"].ids
    steered_names = [a.name for a in approaches if a.name not in ("plain", "plain (peer env)", "ours")]
    results = {}
    for a in approaches:
        entry = {"environment": a.environment, "semantics": a.semantics}
        if a.name in tps:
            entry |= {"tokens_per_s": round(tps[a.name], 3), "ratio_to_ours": round(tps[a.name] / tps["ours"], 4),
                      "ratio_to_plain": round(tps[a.name] / tps["plain"], 4),
                      "seconds": [round(s, 4) for s in a.seconds],
                      "tokens_per_cpu_s": round(cpu_tps[a.name], 3),
                      "cpu_ratio_to_ours": round(cpu_tps[a.name] / cpu_tps["ours"], 4),
                      "cpu_seconds": [round(s, 4) for s in a.cpu_seconds]}
        reference = plain_ids if a.name.startswith("plain") else ours_ids
        if a.ids is not None and reference is not None:
            diff = first_difference(a.ids, reference)
            entry["same_ids_as"] = "plain" if a.name.startswith("plain") else "ours"
            entry["same_ids"] = diff is None
            entry["first_difference"] = diff
            if diff is not None:
                entry["text"] = tok.decode(a.ids)
        entry["ids_stable_across_reps"] = a.ids_stable
        if a.error:
            entry["error"] = a.error
        results[a.name] = entry
    for name, why in peer_errors.items():
        results[name] = {"environment": f"venv {name}", "error": why}
    if "plain (peer env)" in tps:
        for name in peers:
            if name in tps:
                results[name]["ratio_to_plain_peer_env"] = round(tps[name] / tps["plain (peer env)"], 4)
        if "plain" in tps:
            results["plain (peer env)"]["note"] = ("unsteered generate under transformers 4.x, relative to plain (5.x): "
                                                   f"{tps['plain (peer env)'] / tps['plain']:.4f}")

    peer_tps = {n: tps[n] for n in steered_names if n in tps}
    fastest = max(peer_tps, key=peer_tps.get) if peer_tps else None
    same = {n: results[n].get("same_ids", False) for n in steered_names + list(peer_errors)}
    result = {
        "command": "python benchmarks/peers.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpu_count": os.cpu_count(), "torch_threads": threads, "platform": platform.platform(),
                    "device": "cpu", "dtype": "float32", "python": platform.python_version()},
        "versions": {"main": {"torch": torch.__version__, "transformers": installed_version("transformers"), "nnsight": installed_version("nnsight")},
                     **{name: info.get("versions") for name, info in peer_info.items()}},
        "peer_environment_notes": {name: info.get("notes") for name, info in peer_info.items()},
        "setup": {
            "model": EMBEDDED_MODEL, "weights": str(model_dir), "layer": layer, "feature": feature.index,
            "label": feature.label, "mode": "add", "strength": strength, "direction": "unit decoder direction from "
            + str(config.vectors_path().relative_to(ROOT)), "positions": "all (prompt and generated)",
            "prompt": PROMPT, "prompt_tokens": prompt_len, "new_tokens": args.tokens,
            "decoding": "greedy, repetition_penalty 1.0, min_new_tokens = max_new_tokens (EOS masked until the end)",
            "reps": args.reps, "statistic": "median tokens/s over the rounds; order rotated each round",
        },
        "texts": {"unsteered": tok.decode(plain_ids) if plain_ids else None,
                  "steered (ours)": tok.decode(ours_ids) if ours_ids else None,
                  "steering_changes_text": plain_ids != ours_ids},
        "approaches": results,
        "verdict": {
            "fastest_peer": fastest,
            "ours_to_fastest_peer": round(tps["ours"] / peer_tps[fastest], 4) if fastest and "ours" in tps else None,
            "ours_at_least_as_fast_as_every_peer": bool(fastest) and tps.get("ours", 0) >= peer_tps[fastest],
            "same_greedy_ids_as_ours": same,
            "all_same": all(same.values()),
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")

    print()
    print(f"{'approach':<18} {'tok/s':>7} {'x ours':>7} {'x plain':>8} {'tok/cpu-s':>10} {'x ours':>7}  same ids as ours")
    for a in approaches + [Approach(n, None, "", "") for n in peer_errors]:
        entry = results[a.name]
        if "tokens_per_s" in entry:
            same_txt = ("(reference)" if a.name == "ours" else "yes" if entry.get("same_ids") else
                        f"NO, from token {entry.get('first_difference')}")
            if a.name == "plain":
                same_txt = "(unsteered reference)"
            elif a.name.startswith("plain"):
                same_txt = "(unsteered) same ids as plain: " + ("yes" if entry.get("same_ids") else f"NO, from token {entry.get('first_difference')}")
            print(f"{a.name:<18} {entry['tokens_per_s']:7.2f} {entry['ratio_to_ours']:7.3f} {entry['ratio_to_plain']:8.3f} "
                  f"{entry['tokens_per_cpu_s']:10.2f} {entry['cpu_ratio_to_ours']:7.3f}  {same_txt}")
        else:
            print(f"{a.name:<18} failed: {entry.get('error', '').splitlines()[0]}")
    print(f"\nunsteered: {result['texts']['unsteered']!r}\nsteered:   {result['texts']['steered (ours)']!r}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
