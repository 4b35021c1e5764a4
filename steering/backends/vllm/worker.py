"""Our worker extension for vLLM: each request steered by its own `SteeringPlan`, every mode (add, clamp, pin).

interp-engine's extension already demultiplexes vLLM's flat token batch into requests and hooks
`resid_post` per request; it has no SAE-encoder op (pin), so this subclass registers, per request,
a modifier that runs the project's own edit code (`steer.apply`), the code the transformers backend
runs, on that request's rows. Positions are counted per request and layer as there, so
`steer_special_tokens: false` and `steer_generated_only` mean the same on both backends.
"""

from __future__ import annotations

from interp_engine.address import Address
from interp_engine.vllm_capture import requests as _demux
from interp_engine.vllm_plugin import InterpWorkerExtension

from steering.backends.payload import from_payload


class SteeringWorkerExtension(InterpWorkerExtension):
    """Adds `register_plan` / `unregister_plan` to interp-engine's capture and steering methods."""

    def register_plan(self, req_id: str, payload: dict, prompt_ids: list[int], special_ids: list[int]) -> None:
        import torch

        from steering.steer.apply import RequestEdits

        plan = from_payload(payload, self._open_sae)
        edits = RequestEdits(plan, torch.tensor([prompt_ids]), special_ids)
        demux = _demux._get_demux(self)
        _demux._ensure_patched(self, demux)
        _demux._ensure_dev(self, demux)
        demux.registered.add(req_id)
        mods = demux.steer_mods.setdefault(req_id, {})
        for layer in plan.layers:
            site = Address("resid_post", layer)

            def modify(seg, layer=layer):
                return edits.apply(layer, seg) - seg  # interp-engine adds the delta back

            mods[site] = (modify, set(), len(prompt_ids), True)
            _demux._ensure_hook(self, demux, site)

    def unregister_plan(self, req_id: str) -> None:
        _demux.worker_unregister_steering(self, req_id)

    def _open_sae(self, source: dict):
        cache = self.__dict__.setdefault("_steering_saes", {})
        key = (source["folder"], source["format"], source.get("k"))
        if key not in cache:
            from pathlib import Path

            from steering.sae import open_sae

            cache[key] = open_sae(Path(source["folder"]), source["format"], k=source.get("k")).load()
        return cache[key]
