"""The backends by name (`backend:` in demo.yaml). Adding one is a module with a `Backend` subclass and one
line in `BACKENDS`; a backend defined outside the package (a plugin, a test) calls `register` instead.

Names map to "module:Class" strings, imported only when a config asks for that backend, so vLLM is never
imported unless used, and the config checks a name against this table without loading any backend.
"""

from __future__ import annotations

from importlib import import_module

BACKENDS: dict[str, str] = {
    "hooks": "steering.backends.hooks:HooksBackend",
    "nnsight": "steering.backends.nnsight:NNsightBackend",
    "vllm": "steering.backends.vllm.backend:VLLMBackend",
    "remote": "steering.backends.remote:RemoteBackend",
}


def register(name: str, target: str) -> None:
    """Make `backend: name` load `target` ("module:Class", a `Backend` subclass)."""
    module, _, cls = target.partition(":")
    if not name or not module or not cls:
        raise ValueError(f"register({name!r}, {target!r}): give a name and a target written 'module:Class'")
    if BACKENDS.get(name, target) != target:
        raise ValueError(f"backend {name!r} is already registered as {BACKENDS[name]}; pick another name")
    BACKENDS[name] = target


def backend_class(name: str) -> type:
    """The `Backend` subclass registered as `name` (its module is imported now)."""
    if name not in BACKENDS:
        raise ValueError(f"backend: must be one of {', '.join(BACKENDS)}, got {name!r}. Fix: write backend: hooks")
    module, _, cls = BACKENDS[name].partition(":")
    return getattr(import_module(module), cls)
