"""Console chat: `python -m steering.cli.console [demo.yaml]` streams steered answers, multi-turn.

Commands start with `/`; `/help` lists them. Ctrl-C while an answer streams stops it; Ctrl-C or
Ctrl-D at the prompt quits.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from typing import Callable, TextIO

from steering.config import MODES, ConfigError
from steering.engine import Engine
from steering.inspection.stats import format_ranking

HELP = """commands:
  /features                 list features with their current strengths
  /set FEATURE STRENGTH     set a strength (FEATURE: number from /features, key like L15:123, or label)
  /off FEATURE              switch a feature off (in clamp and pin mode, strength 0 is a real edit)
  /add LAYER INDEX [S]      steer with another SAE feature (read from the SAE)
  /mode add|clamp|pin|own   steering mode for every feature (own: each feature's configured mode)
  /defaults                 strengths back to the config's values
  /temp T  /tokens N  /seed N   generation settings (temperature 0 is greedy)
  /inspect [TEXT]           strongest SAE features on TEXT (default: your last message)
  /reset                    start a new conversation
  /quit                     leave"""


class Colors:
    def __init__(self, enabled: bool):
        on = enabled
        self.user = "\033[1;36m" if on else ""
        self.bot = "\033[33m" if on else ""
        self.note = "\033[2m" if on else ""
        self.error = "\033[1;31m" if on else ""
        self.reset = "\033[0m" if on else ""


class ChatConsole:
    """The console's state and commands, separate from I/O so tests can drive it."""

    def __init__(self, steerer: Engine, out: TextIO = sys.stdout, colors: Colors | None = None):
        self.steerer, self.out = steerer, out
        self.c = colors or Colors(False)
        self.history: list[dict[str, str]] = []
        self.strengths = steerer.default_strengths()
        self.mode: str | None = None
        self.settings = steerer.config.generation

    def say(self, text: str, color: str = "") -> None:
        self.out.write(f"{color}{text}{self.c.reset if color else ''}\n")
        self.out.flush()

    def features_text(self) -> str:
        if not self.steerer.features:
            return "no features configured: add one with /add LAYER INDEX, or list them in demo.yaml"
        rows = []
        for i, f in enumerate(self.steerer.features):
            mode = self.mode or self.steerer.config.feature_mode(f)
            rng = f" range {f.range[0]:g}..{f.range[1]:g}" if f.range else ""
            value = self.strengths[f.key]
            state = "off" if value is None else f"strength {value:g} ({mode})"
            rows.append(f"  [{i}] {f.display_name:<28} {f.key:<12} {state}{rng}")
        return "\n".join(rows)

    def handle_command(self, line: str) -> bool:
        """Run one `/command`; False means quit."""
        parts = line[1:].split()
        name, args = (parts[0].lower(), parts[1:]) if parts else ("help", [])
        try:
            if name in ("quit", "exit", "q"):
                return False
            if name == "help":
                self.say(HELP, self.c.note)
            elif name == "features":
                self.say(self.features_text(), self.c.note)
            elif name == "set":
                self._set(args)
            elif name == "off":
                self._off(args)
            elif name == "add":
                self._add(args)
            elif name == "mode":
                self._mode(args)
            elif name == "defaults":
                self.strengths = self.steerer.default_strengths()
                self.say("strengths reset to the config's values", self.c.note)
            elif name == "reset":
                self.history.clear()
                self.say("new conversation", self.c.note)
            elif name in ("temp", "tokens", "seed"):
                self._setting(name, args)
            elif name == "inspect":
                self._inspect(" ".join(args))
            else:
                self.say(f"unknown command /{name}; /help lists the commands", self.c.error)
        except (ValueError, KeyError, IndexError, ConfigError) as exc:
            self.say(f"{exc}".strip("'\""), self.c.error)
        return True

    def _set(self, args: list[str]) -> None:
        if len(args) != 2:
            raise ValueError("usage: /set FEATURE STRENGTH, e.g. /set 0 40")
        key = int(args[0]) if args[0].isdigit() else args[0]
        f = self.steerer.feature(key)
        value = float(args[1])
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("the strength must be a finite number")
        self.strengths[f.key] = value
        self.say(f"{f.display_name}: strength {value:g}", self.c.note)

    def _off(self, args: list[str]) -> None:
        if len(args) != 1:
            raise ValueError("usage: /off FEATURE")
        f = self.steerer.feature(int(args[0]) if args[0].isdigit() else args[0])
        self.strengths[f.key] = None
        self.say(f"{f.display_name}: off", self.c.note)

    def _add(self, args: list[str]) -> None:
        if len(args) not in (2, 3):
            raise ValueError("usage: /add LAYER INDEX [STRENGTH]")
        f = self.steerer.add_feature(int(args[0]), int(args[1]), float(args[2]) if len(args) == 3 else 0.0)
        self.strengths.setdefault(f.key, f.strength)
        self.say(f"added {f.display_name} ({f.key})", self.c.note)

    def _mode(self, args: list[str]) -> None:
        if len(args) != 1 or args[0] not in (*MODES, "own"):
            raise ValueError(f"usage: /mode {'|'.join(MODES)}|own")
        self.mode = None if args[0] == "own" else args[0]
        self.say(f"mode: {args[0]}", self.c.note)

    def _setting(self, name: str, args: list[str]) -> None:
        if len(args) != 1:
            raise ValueError(f"usage: /{name} VALUE")
        field, cast = {"temp": ("temperature", float), "tokens": ("max_new_tokens", int), "seed": ("seed", int)}[name]
        self.settings = replace(self.settings, **{field: cast(args[0])})
        self.say(f"{field} = {args[0]}", self.c.note)

    def _inspect(self, text: str) -> None:
        text = text or next((m["content"] for m in reversed(self.history) if m["role"] == "user"), "")
        if not text:
            raise ValueError("usage: /inspect TEXT (or send a message first)")
        rows = self.steerer.inspect(text)
        self.say(format_ranking(rows), self.c.note)

    def reply(self, text: str, write: Callable[[str], None] | None = None) -> str:
        """Send a user message and stream the answer; a stopped answer is kept as far as it got."""
        write = write or (lambda piece: (self.out.write(piece), self.out.flush()))
        self.history.append({"role": "user", "content": text})
        generation = self.steerer.stream(self.history, strengths=self.strengths, mode=self.mode, settings=self.settings)
        pieces: list[str] = []
        try:
            for piece in generation:
                pieces.append(piece)
                write(piece)
        except KeyboardInterrupt:
            generation.stop()
            pieces.append(" [stopped]")
            write(" [stopped]")
        finally:
            generation.stop()
        answer = "".join(pieces)
        self.history.append({"role": "assistant", "content": answer})
        return answer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m steering.cli.console", description="Chat with a steered model in the console.")
    parser.add_argument("config", nargs="?", default="demo.yaml", help="demo config (default: demo.yaml)")
    parser.add_argument("--device", help="override the config's device (cpu, cuda, ...)")
    parser.add_argument("--no-color", action="store_true", help="plain output")
    args = parser.parse_args(argv)
    colors = Colors(not args.no_color and sys.stdout.isatty() and "NO_COLOR" not in os.environ)
    try:
        steerer = Engine.from_config(args.config, **({"device": args.device} if args.device else {}))
    except (ConfigError, FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"{colors.error}cannot start: {exc}{colors.reset}", file=sys.stderr)
        return 2
    console = ChatConsole(steerer, colors=colors)
    console.say(f"model: {steerer.config.model}   /help for commands", colors.note)
    console.say(console.features_text(), colors.note)
    while True:
        try:
            line = input(f"{colors.user}you> {colors.reset}").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        if not line:
            continue
        if line.startswith("/"):
            if not console.handle_command(line):
                return 0
            continue
        sys.stdout.write(f"{colors.bot}bot> ")
        console.reply(line)
        sys.stdout.write(f"{colors.reset}\n")


if __name__ == "__main__":
    raise SystemExit(main())
