"""Display-ready data for the app: slider specs, the inspector panel, table rows. Plain Python, no UI library."""

from __future__ import annotations

import re
from dataclasses import dataclass

from steering.config import MODE_INFO, FeatureSpec
from steering.keys import FeatureKey
from steering.inspection.message import top_per_token
from steering.service.demo import DemoService
from steering.service.inspector import DEFAULT_MAX_DENSITY
from steering.service.setup import SteeringSetup


@dataclass(frozen=True)
class Slider:
    """One strength control, with a range that means something on its layer."""

    key: FeatureKey
    label: str
    layer: int
    index: int
    minimum: float
    maximum: float
    value: float  # shown on the slider (the recommended strength while off)
    enabled: bool
    mode: str
    norm: float
    custom: bool
    concept: str | None = None  # a concept vector's phrase and source (then `key` and `index` mean nothing)

    @property
    def info(self) -> str:
        what = f"concept vector of {self.concept}" if self.concept else f"feature {self.index}"
        return f"layer {self.layer}, {what} · typical norm of layer {self.layer}: {self.norm:.0f}"


def sliders(service: DemoService, setup: SteeringSetup) -> list[Slider]:
    """A slider per feature of the visitor's setup, configured features first."""
    engine = service.engine
    configured = {f.key for f in engine.features}
    out = []
    features = service.features_for(setup)
    norms = service.norms(features)
    for f in features:
        lo, hi = service.slider_range(f, setup.mode)
        value = setup.strengths.get(f.key, f.strength if f.enabled else None)
        out.append(Slider(
            f.key, f.display_name, f.layer, f.index, lo, hi, f.strength if value is None else value, value is not None,
            setup.mode_of(f.key, engine.config.feature_mode(f)).mode, norms[f.layer], f.key not in configured,
        ))
    for c in setup.concepts:
        norm = service.norms([FeatureSpec(layer=c.layer, index=0)])[c.layer]
        lo, hi = MODE_INFO[c.mode].limits or (-round(norm), round(norm))
        out.append(Slider(FeatureKey(c.layer, 0), f"concept: {c.phrase}", c.layer, 0, lo, hi, c.strength, c.enabled,
                          c.mode, norm, True, f"'{c.phrase}' ({c.source} examples)"))
    return out


@dataclass(frozen=True)
class InspectorPanel:
    """The chat tab's inspector after a message: its top features, and what fires on each of its tokens."""

    table: list[list]  # [index, label, activation, token where it peaks]
    bars: dict[str, list]  # {"feature": [...], "activation": [...]}
    tokens: list[tuple[str, float | None]]  # (token text, the top feature's activation scaled to [0, 1], None at 0)
    per_token: list[list[list]]  # for each token: [[index, label, activation], ...], its strongest features
    note: str
    top_index: int | None


def inspector_panel(service: DemoService, message: str, setup: SteeringSetup, steered: bool, view: str = "message",
                    max_density: float | None = DEFAULT_MAX_DENSITY) -> InspectorPanel:
    """The panel for `message`: only the visitor's own tokens (no template or special tokens), dense features
    left out; `view` ranks over the whole message or at its last token (see `DemoService.inspect`)."""
    msg = service.message_codes(message, setup, steered, max_density)
    rows = service.ranked(msg, view, 10)
    layer = service.engine.inspector_layer
    per_token = [[[a.index, service.label(layer, a.index), round(a.value, 3)] for a in tops] for tops in top_per_token(msg, 5)]
    dense = "" if max_density is None else f", features on more than {max_density:.1%} of tokens left out"
    where = "over the words of your message" if view == "message" else "at the last token of your message"
    if not rows:
        return InspectorPanel([], {"feature": [], "activation": []}, [(t, None) for t in msg.tokens], per_token,
                              f"No feature fired {where}{dense}.", None)
    top = rows[0]
    values = msg.codes[:, top["index"]].tolist()
    peak = max(values, default=0.0) or 1.0
    note = (f"Layer {layer}, {'under your steering' if steered else 'unsteered'}: the strongest features {where}{dense}. "
            f"Highlighted: feature {top['index']} ({top['label']}) on each token; click a token for its own top features.")
    return InspectorPanel(
        table=[[r["index"], r["label"], r["activation"], r["token"]] for r in rows],
        bars={"feature": [str(r["index"]) for r in rows], "activation": [r["activation"] for r in rows]},
        tokens=[(t, round(v / peak, 3) if v > 0 else None) for t, v in zip(msg.tokens, values)],
        per_token=per_token,
        note=note,
        top_index=top["index"],
    )


def differential_table(rows: list[dict]) -> list[list]:
    return [[r["index"], r["label"], r["score"], r["mean_pos"], r["mean_neg"], r["fire_pos"], r["fire_neg"]] for r in rows]


def concept_table(rows: list[dict]) -> list[list]:
    return [[r["index"], r["label"], r["score"], r["output"], r["fire_pos"], r["fire_neg"]] for r in rows]


def contexts_text(found: list[str]) -> str:
    if not found:
        return "This SAE ships no top-activating contexts for this feature."
    return "\n".join(f"{i + 1}. {c}" for i, c in enumerate(found))


def feature_card(card: dict) -> tuple[str, dict]:
    """A feature card as Markdown (label, density, output score, the tokens it promotes and raises, top contexts
    with the activating token in bold), and its activation histogram as bars ({"activation", "tokens"})."""
    lines = [f"#### Feature {card['index']}: {card.get('label') or 'no label'}"]
    facts = []
    if card.get("density") is not None:
        facts.append(f"fires on {card['density']:.3%} of held-out tokens")
    if card.get("max_activation") is not None:
        facts.append(f"strongest activation seen {card['max_activation']:g}")
    if card.get("output_score") is not None:
        facts.append(f"output score {card['output_score']:.4f}")
    if facts:
        lines.append("; ".join(facts).capitalize() + ".")
    if "recommended" in card:
        lines.append(f"**Recommended:** {card['recommended']}." if card["recommended"] else
                     "No recommended strength yet: **Calibrate** runs a short sweep (about a minute on a CPU) and keeps it.")
    for title, key in (("Steering raises", "says"), ("Promotes (decoder direction through the unembedding)", "promotes")):
        if card.get(key):
            lines.append(f"**{title}:** " + ", ".join(f"`{t.strip() or repr(t)}`" for t in card[key][:10]))
    if card.get("top_words"):
        lines.append("**Fires on:** " + ", ".join(w for w, _ in card["top_words"][:10]))
    if card.get("contexts"):
        lines.append("**Top-activating contexts:**")
        lines += [f"- …{_ACTIVE.sub(lambda m: f'{m[1]}**{m[2]}**', _markdown(c))}…" for c in card["contexts"]]
    hist = card.get("histogram")
    bars = {"activation": [], "tokens": []}
    if hist:
        edges = hist["edges"]
        bars = {"activation": [f"{lo:.2g}–{hi:.2g}" for lo, hi in zip(edges[:-1], edges[1:])], "tokens": list(hist["counts"])}
    return "\n\n".join(lines), bars


_ACTIVE = re.compile(r"\[\[(\s*)(.*?)\]\]")  # the activating token, its leading space kept outside the bold


def _markdown(text: str) -> str:
    """`text` with Markdown's special characters escaped (the [[ ]] marks are kept) and newlines as spaces."""
    text = text.replace("\n", " ")
    for ch in "\\`*_{}<>#|":
        text = text.replace(ch, "\\" + ch)
    return text
