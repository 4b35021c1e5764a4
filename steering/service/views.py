"""Display-ready data for the app: slider specs, the inspector panel, table rows. Plain Python, no UI library."""

from __future__ import annotations

from dataclasses import dataclass

from steering.keys import FeatureKey
from steering.service.demo import DemoService
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

    @property
    def info(self) -> str:
        return f"layer {self.layer}, feature {self.index} · typical norm of layer {self.layer}: {self.norm:.0f}"


def sliders(service: DemoService, setup: SteeringSetup) -> list[Slider]:
    """A slider per feature of the visitor's setup, configured features first."""
    engine = service.engine
    configured = {f.key for f in engine.features}
    out = []
    for f in service.features_for(setup):
        lo, hi = service.slider_range(f)
        value = setup.strengths.get(f.key, f.strength if f.enabled else None)
        out.append(Slider(
            f.key, f.display_name, f.layer, f.index, lo, hi, f.strength if value is None else value, value is not None,
            setup.mode or engine.config.feature_mode(f), engine.typical_norm(f.layer), f.key not in configured,
        ))
    return out


@dataclass(frozen=True)
class InspectorPanel:
    """The chat tab's inspector after a message: top features, and the top one on every prompt token."""

    table: list[list]  # [index, label, activation]
    bars: dict[str, list]  # {"feature": [...], "activation": [...]}
    tokens: list[tuple[str, float | None]]  # (token text, activation scaled to [-1, 1], None where not shown)
    note: str
    top_index: int | None


def inspector_panel(service: DemoService, message: str, setup: SteeringSetup, steered: bool) -> InspectorPanel:
    """The panel for `message`: position 0 and chat-control tokens are left out of the token view (outliers)."""
    rows = service.inspect(message, setup, steered=steered, n=10)
    if not rows:
        return InspectorPanel([], {"feature": [], "activation": []}, [], "No feature fired on the last token.", None)
    top = rows[0]
    engine = service.engine
    special = {engine.tokenizer.decode([i]) for i in engine.special_ids}
    shown = [(t, 0.0 if i == 0 or t in special else v) for i, (t, v) in enumerate(service.token_activations(message, top["index"]))]
    peak = max((abs(v) for _, v in shown), default=0.0) or 1.0
    note = (f"Layer {engine.inspector_layer}, last prompt token, {'under your steering' if steered else 'unsteered'}. "
            f"Highlighted: feature {top['index']} ({top['label']}) on each token of the prompt "
            "(special tokens and the first position left out).")
    return InspectorPanel(
        table=[[r["index"], r["label"], r["activation"]] for r in rows],
        bars={"feature": [str(r["index"]) for r in rows], "activation": [r["activation"] for r in rows]},
        tokens=[(t, round(v / peak, 3) if v else None) for t, v in shown],
        note=note,
        top_index=top["index"],
    )


def differential_table(rows: list[dict]) -> list[list]:
    return [[r["index"], r["label"], r["score"], r["mean_pos"], r["mean_neg"], r["fire_pos"], r["fire_neg"]] for r in rows]


def concept_table(rows: list[dict]) -> list[list]:
    return [[r["index"], r["label"], r["score"], r["fire_pos"], r["fire_neg"]] for r in rows]


def contexts_text(found: list[str]) -> str:
    if not found:
        return "This SAE ships no top-activating contexts for this feature."
    return "\n".join(f"{i + 1}. {c}" for i, c in enumerate(found))
