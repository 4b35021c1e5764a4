"""The web app's service, built from a config: the engine, the SAE's feature information and the caps.

`app.py` calls `open_service` in its `main()`, and the tests call it with their own config; nothing is
built when a module is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from steering.config import DemoConfig
from steering.engine import Engine
from steering.inspection.feature_info import load_feature_info
from steering.service.admission import Admission
from steering.service.demo import DemoService
from steering.service.limits import Limits
from steering.service.recommend import Recommendations


def no_gpu(task: Callable | None = None, **_: Any) -> Callable:
    """Stands in for `spaces.GPU` where there is no ZeroGPU: the function itself."""
    return task if callable(task) else (lambda fn: fn)


def open_service(config: str | Path | DemoConfig, limits: Limits = Limits(), *, zerogpu: bool = False,
                 concurrency: int = 4, batch_window_s: float = 0.015, gpu: Callable = no_gpu,
                 max_queue: int = 64) -> DemoService:
    """The engine (batching up to `concurrency` answers, unless on ZeroGPU where each call is its own process)
    and the service over it. `gpu` is `spaces.GPU` on a Space: the typical-norm forward runs inside it, and
    on ZeroGPU no forward runs here; elsewhere the norms are measured now, not on the first visitor's page.
    `max_queue` chats may wait; the service's busy message tells the next one when to come back."""
    engine = Engine.from_config(config, batching=not zerogpu, batch_window_s=batch_window_s, max_batch=max(concurrency, 1))
    info = load_feature_info(engine.config)
    service = DemoService(engine, limits, info, measure_norms=gpu(duration=30)(engine.norms.measure),
                          admission=Admission(max_queue, workers=concurrency),
                          recommendations=Recommendations(engine, getattr(info, "folders", {}).values()))
    if not zerogpu:
        service.norms(service.features_for(service.defaults()))
    return service
