"""Does steering work? Find concept features, then sweep their strength and measure it.

    python -m steering.offline.evaluate find  [demo.yaml] [--concepts ocean,dogs,...]
    python -m steering.offline.evaluate sweep [demo.yaml] [--out benchmarks/steering_eval]

**find** ranks SAE features by the inspector's differential score (`steering.inspection.stats.differential_features`:
mean code on prompts about a concept minus mean code on neutral prompts, at the last prompt token),
shows each candidate's automatic label, and screens the best few by steering 8 neutral prompts and
counting answers that mention the concept and measuring their fluency. It prints candidates; a person
picks the defaults.

**sweep** takes every feature of the config whose label names a concept below and, over
`NEUTRAL_PROMPTS` (40 prompts with no concept in them), generates answers:
- unsteered (once), and with the system prompt "Talk about X in every answer." (the baseline);
- steered with that feature alone, in `add` and `clamp` mode, at each strength of `--strengths`
  (`--strengths config`: once, at the feature's own strength and mode, to check the shipped settings
  on a `--seed` they were not picked on).

Concept inclusion: the share of answers that contain at least one of the concept's keywords
(case-insensitive, whole words; the endings -s, -es, -d, -ed and -ing allowed); the lists are in `CONCEPTS`.
Fluency: the perplexity of the answers under the *unsteered* model, conditioned on the same chat prompt
(without any system prompt about the concept), divided by the perplexity of the unsteered answers.
Also reported, the text-only fluency ratio: the same perplexity ratio with the answers read as plain text
(no prompt), which does not count leaving the prompt's topic as disfluency.
Sampling uses the app's defaults (temperature 0.7, top-p 0.9, repetition penalty 1.1, a fixed `--seed`).
Writes `OUT.json` (every answer), `OUT.md` (tables) and `OUT.png` (plot).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import torch

NEUTRAL_PROMPTS = [
    "Tell me about your weekend.",
    "What is a good way to start the morning?",
    "Can you give me some advice for a job interview?",
    "Write a short story about a lost key.",
    "What do you think about learning a new language?",
    "How can I be more productive at work?",
    "Describe your ideal day.",
    "What is the best way to make new friends?",
    "Give me three tips for saving money.",
    "Write a short poem about time.",
    "What should I do when I feel bored?",
    "Tell me something interesting.",
    "How do I stay motivated?",
    "What makes a good teacher?",
    "Write a short letter to a friend.",
    "Explain why sleep is important.",
    "What is your favourite thing to talk about?",
    "Give me an idea for a birthday present.",
    "How can I improve my writing?",
    "Tell me a fun fact.",
    "What would you do with a free afternoon?",
    "Describe a memorable journey.",
    "Write the opening line of a novel.",
    "What is a hobby I could pick up?",
    "What is a good habit to build?",
    "How do I organise my desk?",
    "Write a short note to a neighbour.",
    "What is the most useful thing you know?",
    "Describe an ordinary Tuesday.",
    "What should I write in a thank-you card?",
    "How do I become more patient?",
    "Tell me about a good book.",
    "What is a good question to ask a stranger?",
    "Describe a quiet evening at home.",
    "How do I plan a busy week?",
    "Write two sentences about a door.",
    "What makes a place feel like home?",
    "Give me a tip for remembering names.",
    "What is a good way to end the day?",
    "What is something people often get wrong?",
]


@dataclass(frozen=True)
class Concept:
    name: str
    keywords: tuple[str, ...]  # whole words; see `mentions` for the endings allowed
    positive: tuple[str, ...]  # prompts about the concept, for the differential ranking
    system: str  # the baseline's system prompt


CONCEPTS: dict[str, Concept] = {c.name: c for c in [
    Concept("ocean", ("ocean", "sea", "wave", "beach", "marine", "coral", "tide", "shore", "coast", "underwater",
                      "seawater", "oceanic", "reef", "sailor", "ship", "whale", "dolphin", "fish", "seaside"),
            ("Tell me about the ocean.", "What lives in the deep sea?", "Describe waves crashing on the beach.",
             "Why is the sea salty?", "I love swimming in the ocean.", "Tell me about coral reefs and marine life.",
             "What causes the tides?", "Describe a walk along the seashore."),
            "Talk about the ocean and the sea in every answer."),
    Concept("dogs", ("dog", "puppy", "puppies", "canine", "bark", "barking", "leash", "breed", "pet", "labrador",
                     "retriever", "terrier", "poodle"),
            ("Tell me about dogs.", "How do I train my puppy?", "What is the best dog breed for a family?",
             "My dog keeps barking at night.", "Why do dogs wag their tails?", "I want to adopt a dog.",
             "What should I feed my puppy?", "Describe a golden retriever."),
            "Talk about dogs in every answer."),
    Concept("cats", ("cat", "kitten", "kitty", "feline", "meow", "purr", "purring", "whiskers"),
            ("Tell me about cats.", "Why do cats purr?", "How do I care for a kitten?", "My cat scratches the sofa.",
             "What do cats eat?", "Describe a fluffy cat sleeping in the sun.", "Why do cats meow?",
             "Are cats good pets?"),
            "Talk about cats in every answer."),
    Concept("space", ("space", "planet", "star", "galaxy", "universe", "astronaut", "moon", "orbit", "rocket",
                      "solar", "cosmos", "cosmic", "nasa", "telescope", "mars", "jupiter", "earth"),
            ("Tell me about outer space.", "How many planets are in the solar system?", "What is a black hole?",
             "Describe the night sky full of stars.", "How do astronauts live in orbit?", "Tell me about galaxies.",
             "What is on the surface of Mars?", "How do rockets reach space?"),
            "Talk about outer space in every answer."),
    Concept("music", ("music", "musical", "song", "sing", "singing", "singer", "melody", "guitar", "piano", "band",
                      "concert", "rhythm", "instrument", "album", "musician", "tune", "lyrics", "orchestra"),
            ("Tell me about music.", "How do I learn to play the guitar?", "What makes a song catchy?",
             "Describe a live concert.", "Who are the greatest composers?", "I love singing in the shower.",
             "What instrument should I learn?", "Tell me about jazz music."),
            "Talk about music in every answer."),
    Concept("food", ("food", "cook", "cooking", "recipe", "dish", "meal", "delicious", "bake", "baking", "bread",
                     "kitchen", "eat", "eating", "flavor", "flavour", "pasta", "cake", "chocolate", "soup", "taste",
                     "ingredient", "ingredients", "chef", "fruit", "vegetable", "cheese", "pizza", "dessert", "breakfast",
                     "lunch", "dinner", "snack", "sandwich", "ice cream", "burger", "salad"),
            ("Tell me about cooking.", "What is a good recipe for dinner?", "How do I bake bread?",
             "Describe a delicious meal.", "What is your favourite food?", "How do I make pasta sauce?",
             "Tell me about chocolate cake.", "What spices go well with chicken?"),
            "Talk about food and cooking in every answer."),
    Concept("paris", ("paris", "france", "french", "eiffel", "parisian", "seine", "louvre"),
            ("Tell me about Paris.", "What should I see in Paris?", "Describe the Eiffel Tower.",
             "What is France famous for?", "I am travelling to Paris next week.", "Tell me about French cuisine.",
             "What is the Louvre?", "Describe a walk along the Seine."),
            "Talk about Paris and France in every answer."),
    Concept("sadness", ("sad", "sadness", "sorrow", "grief", "tears", "cry", "crying", "lonely", "loneliness",
                        "melancholy", "heartbreak", "heartbroken", "despair", "unhappy", "depressed", "gloomy", "mourn",
                        "mourning", "weep", "weeping", "miss"),
            ("I feel so sad today.", "My heart is broken.", "I miss my grandmother who passed away.",
             "Everything feels hopeless and lonely.", "I cried all night.", "Why do I feel so down?",
             "I lost my best friend.", "Describe a feeling of deep sorrow."),
            "Talk about sadness and sorrow in every answer."),
    Concept("weather", ("weather", "rain", "raining", "rainy", "storm", "snow", "snowing", "sunny", "cloud", "cloudy",
                        "wind", "windy", "forecast", "temperature", "thunder", "umbrella", "fog", "climate"),
            ("What is the weather like today?", "Will it rain tomorrow?", "Describe a thunderstorm.",
             "I love snowy winter days.", "What causes wind?", "Tell me about the weather forecast.",
             "Why is the sky cloudy?", "How do hurricanes form?"),
            "Talk about the weather in every answer."),
    Concept("animals", ("animal", "cow", "cattle", "livestock", "farm", "buffalo", "horse", "pig", "sheep", "goat",
                        "dog", "cat", "bird", "wildlife", "creature", "herd", "graze", "grazing", "pet", "zoo",
                        "mammal", "calf", "bull", "chicken", "deer", "wolf", "lion", "elephant"),
            ("Tell me about farm animals.", "What do cows eat?", "Describe a herd of buffalo.", "I love animals.",
             "How do horses sleep?", "What animals live on a farm?", "Tell me about wildlife in Africa.",
             "Why do sheep live in flocks?"),
            "Talk about animals in every answer."),
    Concept("happiness", ("happy", "happiness", "joy", "joyful", "cheerful", "delighted", "smile", "smiling", "laugh",
                          "laughing", "laughter", "glad", "excited", "excitement", "delight", "grin", "celebrate"),
            ("I feel so happy today!", "Tell me about a joyful moment.", "What makes people smile?",
             "I just got great news and I am thrilled.", "Describe pure happiness.", "We laughed all day long.",
             "Why does laughter feel good?", "Describe a cheerful morning."),
            "Talk about happiness and joy in every answer."),
    Concept("forest", ("forest", "tree", "woods", "woodland", "oak", "pine", "leaf", "leaves", "branch", "moss",
                       "jungle", "rainforest", "timber", "bark", "canopy", "trunk"),
            ("Tell me about forests.", "Describe a walk in the woods.", "Why are rainforests important?",
             "What trees grow in a pine forest?", "Describe the forest canopy.", "I love the smell of pine trees.",
             "What animals live in the woods?", "Why do leaves change colour in autumn?"),
            "Talk about forests and trees in every answer."),
    Concept("christmas", ("christmas", "santa", "xmas", "reindeer", "sleigh", "ornament", "mistletoe", "elves", "elf",
                          "gingerbread", "carol", "carols", "stocking", "festive", "chimney", "snowman"),
            ("Tell me about Christmas.", "What does Santa bring children?", "How do I decorate a Christmas tree?",
             "Describe Christmas morning.", "What are traditional Christmas foods?", "Sing me a Christmas carol.",
             "Where do Santa's reindeer live?", "What gifts should I buy for Christmas?"),
            "Talk about Christmas in every answer."),
    Concept("computers", ("computer", "software", "program", "programming", "code", "coding", "algorithm", "python",
                          "developer", "laptop", "keyboard", "hardware", "processor", "database", "internet",
                          "digital", "app"),
            ("Tell me about computers.", "How do I learn programming?", "What is an algorithm?",
             "Explain how a processor works.", "What is the best laptop for coding?", "How does the internet work?",
             "Tell me about Python code.", "What does a software developer do?"),
            "Talk about computers and programming in every answer."),
    Concept("money", ("money", "dollar", "cash", "bank", "finance", "financial", "invest", "investment", "investing",
                      "stock", "budget", "wealth", "rich", "profit", "price", "coin", "currency", "loan", "salary"),
            ("Tell me about money.", "How do I invest in stocks?", "What is a good budget?", "How do banks work?",
             "I want to get rich.", "Explain inflation and prices.", "What is a currency?", "How do loans work?"),
            "Talk about money and finance in every answer."),
    Concept("football", ("football", "soccer", "goal", "match", "team", "player", "league", "stadium", "score",
                         "striker", "coach", "fans", "kick", "referee", "sport", "sports", "game"),
            ("Tell me about football.", "Who is the best soccer player?", "Describe a penalty kick.",
             "How does the World Cup work?", "I love watching football matches.", "What position should I play?",
             "Tell me about the Premier League.", "How do I become a better striker?"),
            "Talk about football in every answer."),
]}


def concept_for(label: str | None) -> Concept | None:
    """The concept a feature label names (first concept name contained in the label, case-insensitive)."""
    text = (label or "").lower()
    for name, c in CONCEPTS.items():
        if re.search(rf"\b{re.escape(name)}\b", text):
            return c
    return None


def mentions(text: str, keywords: Sequence[str]) -> bool:
    """Whether `text` contains one of `keywords` as a whole word, case-insensitive; an ending "s", "es", "d", "ed"
    or "ing" is allowed, so "laughed" counts for "laugh" and "galaxies" needs its own keyword."""
    pattern = r"\b(?:" + "|".join(re.escape(k) for k in keywords) + r")(?:s|es|d|ed|ing)?\b"
    return re.search(pattern, text, flags=re.IGNORECASE) is not None


# ----------------------------------------------------------------------------------------------------------- generation


def generate_answers(engine, prompts: Sequence[str], plan=None, system_prompt: str | None = None,
                     max_new_tokens: int = 48, seed: int = 0, batch_size: int = 16) -> list[list[int]]:
    """Answers (token ids, up to the end-of-turn token) to each prompt, through the serving path.

    Each prompt is one request of the engine's own decoder, with the config's sampling settings and its
    own seed (`seed * 1000 + i` for prompt i), so an answer does not depend on which prompts share its
    batch (up to float rounding), and the figures measure what a visitor gets.
    """
    settings = engine.config.generation
    eos = set(engine.eos_ids())
    out: list[list[int]] = []
    for b in range(0, len(prompts), batch_size):
        requests = [engine.request([{"role": "user", "content": p}], plan,
                                   replace(settings, max_new_tokens=max_new_tokens, seed=seed * 1000 + b + i), system_prompt)
                    for i, p in enumerate(prompts[b : b + batch_size])]
        engine.run_now(requests)
        for r in requests:
            if r.error is not None:
                raise r.error
            ans = []
            for t in r.tokens:
                if t in eos:
                    break
                ans.append(t)
            out.append(ans)
    return out


@torch.inference_mode()
def answer_nll(model, tokenizer, prompts: Sequence[str], answers: Sequence[Sequence[int]], batch_size: int = 12) -> tuple[float, int]:
    """Summed NLL (nats) and token count of `answers` under the plain model, each after its chat prompt."""
    from steering.model.chat_template import encode_chat
    from steering.model.padding import padded

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    total, count = 0.0, 0
    for b in range(0, len(prompts), batch_size):
        rows, spans = [], []
        for p, a in zip(prompts[b : b + batch_size], answers[b : b + batch_size]):
            prompt = encode_chat(tokenizer, [{"role": "user", "content": p}])[0]
            rows.append(torch.cat([prompt, torch.tensor(a, dtype=torch.long)]))
            spans.append((len(prompt), len(a)))
        ids, mask = padded(rows, pad)
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask, use_cache=False).logits.float(), -1)
        for i, (start, n) in enumerate(spans):
            if n == 0:
                continue
            tgt = ids[i, start : start + n]
            total -= float(logp[i, start - 1 : start + n - 1].gather(-1, tgt.unsqueeze(-1)).sum())
            count += n
    return total, count


@torch.inference_mode()
def text_nll(model, tokenizer, texts: Sequence[str], batch_size: int = 16) -> tuple[float, int]:
    """Summed NLL and count of each text's tokens after its first, read as plain text with no prompt."""
    from steering.model.padding import padded

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    rows = [tokenizer(t, add_special_tokens=False, return_tensors="pt")["input_ids"][0] for t in texts]
    rows = [r for r in rows if len(r) > 1]
    total, count = 0.0, 0
    for b in range(0, len(rows), batch_size):
        ids, mask = padded(rows[b : b + batch_size], pad)
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask, use_cache=False).logits.float(), -1)
        nll = -logp[:, :-1].gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)  # (B, T-1)
        valid = mask[:, 1:].bool()
        total += float(nll[valid].sum())
        count += int(valid.sum())
    return total, count


def add_text_only_fluency(result: dict, model, tokenizer) -> dict:
    """Add `text_fluency_ratio` to every run: perplexity of the answers as plain text (no prompt) under the
    unsteered model, over that of the unsteered answers. Unlike `fluency_ratio`, it does not count an answer
    that leaves the prompt's topic as disfluent."""
    def ppl(texts):
        nll, n = text_nll(model, tokenizer, texts)
        return math.exp(nll / max(n, 1))

    base = ppl(result["unsteered"]["answers"])
    result["unsteered"]["text_perplexity"] = base
    for e in result["features"]:
        for r in e["runs"] + [e["system_prompt"]]:
            r["text_fluency_ratio"] = ppl(r["answers"]) / base
    return result


def score(model, tokenizer, prompts, answers, concept: Concept, base_nll: tuple[float, int]) -> dict:
    texts = [tokenizer.decode(a, skip_special_tokens=True) for a in answers]
    nll, n = answer_nll(model, tokenizer, prompts, answers)
    ppl = math.exp(nll / max(n, 1))
    base_ppl = math.exp(base_nll[0] / max(base_nll[1], 1))
    return {"inclusion": sum(mentions(t, concept.keywords) for t in texts) / len(texts), "perplexity": ppl,
            "fluency_ratio": ppl / base_ppl, "mean_tokens": n / len(texts), "answers": texts}


# ----------------------------------------------------------------------------------------------------------- commands


def sweep(config_path: str, out: Path, strengths: Sequence[float] | None, modes: Sequence[str] = ("add", "clamp"),
          max_new_tokens: int = 96, prompts: Sequence[str] = NEUTRAL_PROMPTS, seed: int = 0) -> dict:
    """`strengths=None` runs each feature once, at its own strength and mode from the config: a check of the
    shipped settings (use another `seed` than the one the settings were picked on)."""
    from steering.engine import Engine

    s = Engine.from_config(config_path, device="cpu", dtype="float32")
    model, tok = s.model, s.tokenizer
    t0 = time.time()
    base = generate_answers(s, prompts, max_new_tokens=max_new_tokens, seed=seed)
    base_nll = answer_nll(model, tok, prompts, base)
    base_texts = [tok.decode(a, skip_special_tokens=True) for a in base]
    result = {"prompts": list(prompts), "strengths": "config" if strengths is None else list(strengths),
              "modes": "config" if strengths is None else list(modes), "seed": seed, "max_new_tokens": max_new_tokens,
              "layer_norm": s.typical_norm(s.inspector_layer),
              "unsteered": {"answers": base_texts, "perplexity": math.exp(base_nll[0] / base_nll[1])},
              "features": []}
    for f in s.features:
        concept = concept_for(f.label)
        if concept is None:
            print(f"skipping {f.key} ({f.label}): no concept keywords for its label")
            continue
        entry = {"key": str(f.key), "layer": f.layer, "index": f.index, "label": f.label, "concept": concept.name,
                 "default_strength": f.strength,
                 "unsteered_inclusion": sum(mentions(t, concept.keywords) for t in base_texts) / len(base_texts)}
        sysp = generate_answers(s, prompts, system_prompt=concept.system, max_new_tokens=max_new_tokens,
                                seed=seed)
        entry["system_prompt"] = {"text": concept.system, **score(model, tok, prompts, sysp, concept, base_nll)}
        entry["runs"] = []
        settings = ([(f.mode or s.config.mode, f.strength)] if strengths is None
                    else [(mode, st) for mode in modes for st in strengths])
        for mode, st in settings:
            plan = s.plan({f.key: st}, mode=mode, features=[f])
            ans = generate_answers(s, prompts, plan=plan, max_new_tokens=max_new_tokens, seed=seed)
            r = {"mode": mode, "strength": st, **score(model, tok, prompts, ans, concept, base_nll)}
            entry["runs"].append(r)
            print(f"{f.key} {f.label:>10} {mode:>5} {st:6.1f}: inclusion {r['inclusion']:.2f}  "
                  f"fluency ratio {r['fluency_ratio']:.2f}  ({time.time() - t0:.0f}s)", flush=True)
        ok = [r for r in entry["runs"] if r["inclusion"] >= 0.7 and r["fluency_ratio"] <= 2.0]
        entry["meets_target"] = bool(ok)
        entry["best"] = max(entry["runs"], key=lambda r: (r["fluency_ratio"] <= 2.0, r["inclusion"], -r["fluency_ratio"]))
        result["features"].append(entry)
        print(f"{f.key} {f.label}: system prompt inclusion {entry['system_prompt']['inclusion']:.2f} "
              f"ratio {entry['system_prompt']['fluency_ratio']:.2f}; target met: {entry['meets_target']}", flush=True)
    add_text_only_fluency(result, model, tok)
    result["seconds"] = time.time() - t0
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    out.with_suffix(".md").write_text(markdown_table(result))
    plot(result, out.with_suffix(".png"))
    return result


def markdown_table(result: dict) -> str:
    def text(r):
        return f" {r['text_fluency_ratio']:.2f} |" if "text_fluency_ratio" in r else " - |"

    lines = ["| feature | mode | strength | concept inclusion | fluency ratio | text-only fluency ratio |",
             "|---|---|---|---|---|---|"]
    for e in result["features"]:
        name = f"{e['label']} ({e['key']})"
        lines.append(f"| {name} | unsteered | - | {e['unsteered_inclusion']:.0%} | 1.00 | 1.00 |")
        sp = e["system_prompt"]
        lines.append(f"| {name} | system prompt | - | {sp['inclusion']:.0%} | {sp['fluency_ratio']:.2f} |" + text(sp))
        for r in e["runs"]:
            mark = " ✓" if r["inclusion"] >= 0.7 and r["fluency_ratio"] <= 2.0 else ""
            lines.append(f"| {name} | {r['mode']} | {r['strength']:g} | {r['inclusion']:.0%}{mark} | "
                         f"{r['fluency_ratio']:.2f} |" + text(r))
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    feats = result["features"]
    cols = min(3, max(1, len(feats)))
    rows = math.ceil(len(feats) / cols) if feats else 1
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.6 * rows), squeeze=False)
    for ax, e in zip(axes.flat, feats):
        for mode, marker in (("add", "o-"), ("clamp", "s--")):
            runs = [r for r in e["runs"] if r["mode"] == mode]
            if not runs:
                continue
            xs, ys = [r["fluency_ratio"] for r in runs], [r["inclusion"] for r in runs]
            ax.plot(xs, ys, marker, label=mode)
            for r in runs:
                ax.annotate(f"{r['strength']:g}", (r["fluency_ratio"], r["inclusion"]), fontsize=7,
                            textcoords="offset points", xytext=(3, 3))
        sp = e["system_prompt"]
        ax.plot([sp["fluency_ratio"]], [sp["inclusion"]], "*", markersize=13, color="k", label="system prompt")
        ax.plot([1.0], [e["unsteered_inclusion"]], "x", color="gray", label="unsteered")
        ax.axhspan(0.7, 1.02, xmin=0, xmax=1, color="green", alpha=0.06)
        ax.axvline(2.0, color="red", lw=0.8, ls=":")
        ax.axhline(0.7, color="green", lw=0.8, ls=":")
        ax.set_title(f"{e['label']} ({e['key']})", fontsize=10)
        ax.set_xlabel("fluency ratio (perplexity / unsteered)")
        ax.set_ylabel("concept inclusion")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        top = max([r["fluency_ratio"] for r in e["runs"]] + [sp["fluency_ratio"], 2.5])
        ax.set_xlim(0.8, top * 1.25)
        ax.legend(fontsize=7, loc="lower right")
    for ax in list(axes.flat)[len(feats):]:
        ax.axis("off")
    fig.suptitle(f"SAE steering, {len(result['prompts'])} neutral prompts, {result.get('max_new_tokens', '?')}-token answers "
                 "(numbers: strength)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def find(config_path: str, concepts: Sequence[str], n: int = 5, screen: int = 3, strength: float = 40.0,
         sae_folder: str | None = None, chat: bool = False, search: int = 3) -> dict:
    """For each concept: the inspector's differential ranking (concept prompts vs neutral prompts), plus up to
    `search` features whose automatic label names the concept; the first `screen` ranked candidates and the
    label hits are screened by steering 8 neutral prompts (add mode, `strength`), counting concept mentions and
    measuring the fluency ratio as the sweep does.

    With `chat=False` the prompts are read as plain text without their final punctuation, so the last
    token (where the inspector reads codes) is the concept word itself; in the chat template the last token
    is the template's "assistant" line, whose features barely depend on the topic.
    """
    from steering.config import FeatureSpec
    from steering.engine import Engine
    from steering.inspection.labels import load_feature_contexts

    s = Engine.from_config(config_path, device="cpu", dtype="float32")
    layer = s.inspector_layer
    try:
        fc = load_feature_contexts(sae_folder) if sae_folder else None
    except FileNotFoundError:
        fc = None
    screen_prompts = NEUTRAL_PROMPTS[:8]
    base = generate_answers(s, screen_prompts, max_new_tokens=32)
    base_nll = answer_nll(s.model, s.tokenizer, screen_prompts, base)

    def prep(prompts):
        return [p.rstrip(".?!") for p in prompts] if not chat else list(prompts)

    found = {}
    for name in concepts:
        c = CONCEPTS[name]
        ranked = s.differential(prep(c.positive), prep(NEUTRAL_PROMPTS), n=n, chat=chat)
        cands = [(r.index, "differential", r.score) for r in ranked]
        if fc is not None:
            for word in c.keywords[:4]:
                for i in fc.search(word, search):
                    if i not in [x[0] for x in cands]:
                        cands.append((i, f"label:{word}", None))
        rows = []
        for rank, (index, how, ranking_score) in enumerate(cands):
            row = {"index": index, "found_by": how, "score": None if ranking_score is None else round(ranking_score, 3),
                   "label": fc.label(index) if fc else ""}
            if rank < screen or how.startswith("label"):
                spec = FeatureSpec(layer=layer, index=index, strength=strength, label=name)
                plan = s.plan({spec.key: strength}, mode="add", features=[spec])
                ans = generate_answers(s, screen_prompts, plan=plan, max_new_tokens=32)
                scored = score(s.model, s.tokenizer, screen_prompts, ans, c, base_nll)
                row["screen_inclusion"] = scored["inclusion"]
                row["screen_fluency_ratio"] = round(scored["fluency_ratio"], 2)
                row["screen_example"] = scored["answers"][0][:160]
            rows.append(row)
            print(f"{name:>9} L{layer}:{index:<6} {how:>14} score {row['score']} label {row['label']!r:40} "
                  f"screen {row.get('screen_inclusion', '-')} ratio {row.get('screen_fluency_ratio', '-')}  "
                  f"{row.get('screen_example', '')[:80]!r}", flush=True)
        found[name] = rows
    return found


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m steering.offline.evaluate", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pf = sub.add_parser("find", help="rank candidate features for concepts")
    pf.add_argument("config", nargs="?", default="demo.yaml")
    pf.add_argument("--concepts", default=",".join(CONCEPTS))
    pf.add_argument("--n", type=int, default=5)
    pf.add_argument("--screen", type=int, default=3)
    pf.add_argument("--strength", type=float, default=40.0, help="screening strength (add mode)")
    pf.add_argument("--sae-folder", default=None, help="folder with feature_contexts.json.gz, for labels")
    pf.add_argument("--out", type=Path, default=None)
    pf.add_argument("--chat", action="store_true", help="read codes at the chat template's last token")
    pf.add_argument("--search", type=int, default=3, help="label hits per keyword to screen as well")
    ps = sub.add_parser("sweep", help="strength sweep of the config's features")
    ps.add_argument("config", nargs="?", default="demo.yaml")
    ps.add_argument("--out", type=Path, default=Path("benchmarks/steering_eval"))
    ps.add_argument("--strengths", default="30,40,50",
                    help="comma-separated, or 'config': each feature once at its own strength and mode")
    ps.add_argument("--seed", type=int, default=0, help="sampling seed (answers are sampled as in the app)")
    ps.add_argument("--modes", default="add,clamp")
    ps.add_argument("--max-new-tokens", type=int, default=96, help="answer length (the app allows 256)")
    ps.add_argument("--n-prompts", type=int, default=len(NEUTRAL_PROMPTS), help="use the first N neutral prompts")
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.cmd == "find":
        found = find(args.config, args.concepts.split(","), args.n, args.screen, args.strength, args.sae_folder,
                     args.chat, args.search)
        if args.out:
            args.out.write_text(json.dumps(found, indent=2))
    else:
        strengths = None if args.strengths == "config" else [float(x) for x in args.strengths.split(",")]
        r = sweep(args.config, args.out, strengths, args.modes.split(","), args.max_new_tokens,
                  NEUTRAL_PROMPTS[: args.n_prompts], args.seed)
        print(markdown_table(r))


if __name__ == "__main__":
    main()
