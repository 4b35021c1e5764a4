"""Memory soak of the app as visitors use it: `python benchmarks/soak.py [--chats 600] [--tokens 24]`.

Starts `python app.py` on a free loopback port with the shipped demo (`demo.yaml`: the embedded SmolLM2, the
shipped SAE, batching on) and runs chats one after another, in four kinds that take turns:

- `/chat` unsteered (every feature off), then `/inspect` on the message (the named API);
- `/chat` steered (the defaults plus a second feature), a second turn on the first turn's answer;
- the page's own Send with compare on (steered and unsteered in one batch), then the page's inspector panel;
- the page's Send in clamp mode, then the inspector panel under the current steering.

Page events go through gradio_client by their event index, as the browser sends them, each from a new session
(a new visitor). After every chat the app's resident memory (RSS), its threads and its open files are read from
/proc (psutil). Writes `benchmarks/results/soak.json`: the series and the growth over the last 200 chats (the
target: under 10 MiB). Answers are short (`--tokens`, 24 by default) so 600 chats take about 66 minutes on
two shared CPU cores; memory per chat does not depend on the answer's length beyond the KV cache, which is freed.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil
from gradio_client import Client

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers import start_app, stop_app  # noqa: E402  (launched as the app tests launch it)

PROMPTS = [
    "Tell me about your weekend.", "What should I cook tonight?", "Describe the sea in two sentences.",
    "Give me one tip for learning to draw.", "Why is the sky blue?", "Write a short note to a friend.",
    "What is a good name for a dog?", "Explain rain to a child.", "Which instrument should I learn first?",
    "Plan a day in Paris for me, with a museum, a long lunch and a walk by the river in the evening.",
]
KINDS = ("api_unsteered", "api_steered_two_turns", "page_compare", "page_clamp")
MIB = 2**20


def page_events(client: Client) -> tuple[int, list[str], int, list[str]]:
    """The event indexes of the page's answer (after Send's clock stamp) and of the inspector panel that follows
    it, each with its inputs named as `name()` names them (made callable here as the browser calls them: the
    server serves them; gradio_client only hides them from its API listing)."""
    config = client.config
    comps = {c["id"]: c for c in config["components"]}
    deps = config["dependencies"]
    stamp = next(i for i, d in enumerate(deps) if any(_name(comps[t]) == "button:send" for t, _ in d["targets"]))
    answer = next(i for i, d in enumerate(deps) if d.get("trigger_after") == stamp)
    panel = next(i for i, d in enumerate(deps) if d.get("trigger_after") == answer)
    for i in (answer, panel):
        client.endpoints[i].is_valid = True
    return answer, [_name(comps[c]) for c in deps[answer]["inputs"]], panel, [_name(comps[c]) for c in deps[panel]["inputs"]]


def _name(component: dict) -> str:
    props = component.get("props", {})
    return f"{component['type']}:{props.get('elem_id') or props.get('label')}"


def page_values(names: list[str], prompt: str, rng: random.Random, tokens: int, mode: str, compare: bool,
                defaults: list[float], steered_panel: bool) -> list:
    """Each input of a page event, as the page sends it: the settings, the first two sliders on at their
    configured strengths, every slot in `mode`."""
    fixed = {"chatbot:steered-chat": [], "textbox:message": prompt, "textbox:None": prompt, "slider:max_new_tokens": tokens,
             "slider:temperature": 0.7, "slider:top_p": 0.9, "slider:repetition_penalty": 1.1,
             "number:seed": rng.randint(0, 10_000), "number:None": time.time() * 1000, "checkbox:compare": compare,
             "json:None": [], "radio:view": "message", "number:max-density": 1.0,
             "checkbox:Inspect under the current steering": steered_panel}
    values = []
    for name in names:
        kind, _, slot = name.rpartition("-")
        if kind == "slider:strength":
            values.append(defaults[int(slot)] if int(slot) < len(defaults) else 0.0)
        elif kind == "checkbox:on":
            values.append(int(slot) < 2)
        elif kind == "dropdown:mode":
            values.append(mode)
        else:
            values.append(fixed[name])
    return values


def one_chat(kind: str, i: int, url: str, api: Client, rng: random.Random, tokens: int, features: list[str],
             defaults: list[float]) -> str:
    prompt = PROMPTS[i % len(PROMPTS)]
    if kind == "api_unsteered":
        answer = api.predict(prompt, None, {k: None for k in features}, "own", None, tokens, 0.7, 0.9, 1.1,
                             rng.randint(0, 10_000), api_name="/chat")
        api.predict(prompt, 10, "message", None, api_name="/inspect")
        return answer
    if kind == "api_steered_two_turns":
        strengths = {features[0]: defaults[0], features[1]: defaults[1]}
        first = api.predict(prompt, None, strengths, "own", None, tokens, 0.7, 0.9, 1.1, rng.randint(0, 10_000), api_name="/chat")
        history = [{"role": "user", "content": prompt}, {"role": "assistant", "content": first}]
        return api.predict("Say more.", history, strengths, "own", None, tokens, 0.7, 0.9, 1.1, rng.randint(0, 10_000),
                           api_name="/chat")
    page = Client(url, verbose=False)  # a new visitor: a new session with its own page state
    answer_event, answer_names, panel_event, panel_names = page_events(page)
    compare, mode = kind == "page_compare", "add" if kind == "page_compare" else "clamp"
    chat, plain, *_ = page.submit(*page_values(answer_names, prompt, rng, tokens, mode, compare, defaults, False),
                                  fn_index=answer_event).result()
    page.submit(*page_values(panel_names, prompt, rng, tokens, mode, compare, defaults, kind == "page_clamp"),
                fn_index=panel_event).result()
    answer = chat[-1]["content"][0]["text"] if isinstance(chat[-1]["content"], list) else chat[-1]["content"]
    if compare:
        last = plain["value"][-1]["content"] if isinstance(plain, dict) else plain[-1]["content"]
        answer += " | " + (last[0]["text"] if isinstance(last, list) else last)
    return answer


def summary(series: list[dict], last: int) -> dict:
    rss = [s["rss_mib"] for s in series]
    tail = series[-last:]
    xs, ys = [s["chat"] for s in tail], [s["rss_mib"] for s in tail]
    slope = statistics.linear_regression(xs, ys).slope if len(tail) > 1 else 0.0
    return {
        "chats": len(series), "rss_first_mib": rss[0], "rss_last_mib": rss[-1], "rss_max_mib": max(rss),
        f"rss_growth_last_{last}_mib": round(ys[-1] - ys[0], 1),
        f"rss_slope_last_{last}_mib_per_100_chats": round(100 * slope, 2),
        "threads_min": min(s["threads"] for s in series), "threads_max": max(s["threads"] for s in series),
        "threads_last": series[-1]["threads"], "open_files_max": max(s["open_files"] for s in series),
        "seconds_per_chat_median": round(statistics.median(s["seconds"] for s in series), 2),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--chats", type=int, default=600, help="enough to pass the climb while sessions fill up (about 220 chats)")
    p.add_argument("--tokens", type=int, default=24)
    p.add_argument("--config", default=str(ROOT / "demo.yaml"))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "soak.json"))
    p.add_argument("--label", default="", help="a note stored with the results (what was changed)")
    args = p.parse_args()

    import yaml

    config = yaml.safe_load(Path(args.config).read_text())
    features = [f"L{f['layer']}:{f['index']}" for f in config["features"]]
    defaults = [float(f["strength"]) for f in config["features"]]
    proc, url, log_path = start_app(Path(args.config), timeout_s=1800, log_path=Path(tempfile.mkdtemp()) / "app.log")
    rng = random.Random(0)
    series, errors = [], []
    start = time.time()

    def write(done: bool) -> dict:
        """The results so far (every 20 chats, so a stopped run leaves its series), and at the end."""
        result = {"label": args.label, "config": Path(args.config).name, "tokens_per_answer": args.tokens,
                  "kinds": list(KINDS), "finished": done, "errors": errors,
                  "summary": summary(series, min(200, len(series))), "wall_s": round(time.time() - start, 1),
                  "series": series, "app_log_tail": log_path.read_text()[-2000:].replace(f"{ROOT}/", "")}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
        return result

    try:
        app = psutil.Process(proc.pid)
        api = Client(url, verbose=False)
        for i in range(args.chats):
            kind = KINDS[i % len(KINDS)]
            t0 = time.time()
            try:
                answer = one_chat(kind, i, url, api, rng, args.tokens, features, defaults)
                if not answer.strip():
                    errors.append(f"chat {i} ({kind}): empty answer")
            except Exception as exc:  # counted and reported, the soak goes on
                errors.append(f"chat {i} ({kind}): {type(exc).__name__}: {str(exc)[:200]}")
            series.append({"chat": i + 1, "kind": kind, "seconds": round(time.time() - t0, 2),
                           "rss_mib": round(app.memory_info().rss / MIB, 1), "threads": app.num_threads(),
                           "open_files": app.num_fds()})
            if (i + 1) % 20 == 0:
                write(False)
                print(f"chat {i + 1}: RSS {series[-1]['rss_mib']} MiB, {series[-1]['threads']} threads, "
                      f"{len(errors)} errors, {time.time() - start:.0f} s", flush=True)
        result = write(True)
    finally:
        stop_app(proc)
    print(json.dumps(result["summary"], indent=1), f"\nerrors: {len(errors)}", f"\nwritten to {args.out}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
