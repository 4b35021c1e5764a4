"""A steering server killed (SIGKILL) while visitors chat through `backend: remote` on three servers: no new chat and
no next turn fails; a chat whose answer was cut gets the clear message and its next turn works; the app logs one
line, no traceback; the server, started again, takes its chats back.

Visitors are `DemoService.chat`, what the app's chat calls, with the app's own error handling (`visitor_message`);
the kill comes while one of the victim's answers is streaming to its visitor."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest

from steering.service.demo import DemoService
from steering.service.errors import visitor_message
from steering.backends.routing import AnswerLost, ranked
from tests.integration.servers import remote_engine

TOKENS = 20
OPENINGS = [f"Question {i}: give me a name for a {thing}." for i, thing in
            enumerate(["cat", "boat", "river", "song", "cake", "robot", "garden", "comet", "castle", "bridge", "drum",
                       "lamp"])]


@pytest.fixture
def service(server_pool):
    with remote_engine(server_pool) as engine:
        yield DemoService(engine)


def turn(service: DemoService, history: list[dict], message: str, seed: int,
         shown: dict | None = None) -> tuple[str, BaseException | None]:
    """One turn as the app runs it; `shown[opening]` holds the answer so far while it streams."""
    setup = service.defaults()
    setup = replace(setup, generation=replace(setup.generation, max_new_tokens=TOKENS, seed=seed))
    opening = (history or [{"content": message}])[0]["content"]
    text = ""
    try:
        for update in service.chat(message, history, setup):
            text = update.steered
            if shown is not None:
                shown[opening] = text
        return text, None
    except Exception as exc:  # what the app does with it: shown as visitor_message(exc)
        visitor_message(exc)
        return text, exc
    finally:
        if shown is not None:
            shown.pop(opening, None)


def test_a_killed_server_costs_no_new_chat_or_next_turn(service, server_pool, caplog):
    engine = service.engine
    first_server = lambda opening: ranked(server_pool.urls, engine.request(opening).spec.chat_key)[0]  # noqa: E731
    firsts = [first_server(o) for o in OPENINGS]
    victim = max(range(3), key=lambda i: firsts.count(server_pool.urls[i]))  # the one most chats start on: 4 or more
    on_victim = {o for o, s in zip(OPENINGS, firsts) if s == server_pool.urls[victim]}
    spare = [o for o in (f"Another question {i}: what should I call my {i}th plant?" for i in range(60))
             if first_server(o) == server_pool.urls[victim]][:3]  # new chats that start on the victim
    outcomes: dict[str, list] = {}
    shown: dict[str, str] = {}  # answers streaming now, by opening
    killed = threading.Event()

    def visitor(i: int) -> None:
        opening = OPENINGS[i]
        first, err1 = turn(service, [], opening, seed=i, shown=shown)
        history = [{"role": "user", "content": opening}, {"role": "assistant", "content": first}]
        second, err2 = turn(service, history, "And another one?", seed=100 + i, shown=shown)
        third, err3 = ("", None)
        if err2 is not None:  # its answer was cut: the next turn must work
            third, err3 = turn(service, history + [{"role": "user", "content": "And another one?"},
                                                   {"role": "assistant", "content": second}], "Thanks. One more?", 7)
        outcomes[opening] = [(first, err1), (second, err2), (third, err3)]

    def killer() -> None:  # mid-run: while a visitor sees an answer of the victim's streaming
        deadline = time.time() + 600
        while time.time() < deadline and not any(text and o in on_victim for o, text in list(shown.items())):
            time.sleep(0.01)
        server_pool.kill(victim)
        killed.set()

    with caplog.at_level(logging.WARNING):
        with ThreadPoolExecutor(7) as pool:
            kill = pool.submit(killer)
            list(pool.map(visitor, range(len(OPENINGS))))
            kill.result()
    assert killed.is_set()
    cut = [o for o, turns in outcomes.items() if any(isinstance(e, AnswerLost) for _, e in turns)]
    failed = {o: turns for o, turns in outcomes.items() if any(e is not None and not isinstance(e, AnswerLost)
                                                                for _, e in turns)}
    print(f"{len(outcomes)} chats, {2 * len(outcomes)} turns; answers cut mid-answer: {len(cut)}; other failures: {len(failed)}")
    assert not failed, failed  # no new chat and no next turn failed
    assert cut, "the kill came while an answer of the victim's was streaming: it is cut"
    for opening, [(first, err1), (second, err2), (third, err3)] in outcomes.items():
        assert err1 is not None or first, opening
        if isinstance(err1, AnswerLost):
            assert err2 is None and second, opening  # the turn after a cut answer works
            assert "stopped mid-answer" in visitor_message(err1)
        if isinstance(err2, AnswerLost):
            assert err3 is None and third, opening
    records = [r for r in caplog.records if r.name.startswith("steering")]
    assert all(r.exc_info is None for r in records), "no traceback in the log"
    assert sum("stopped answering" in r.getMessage() for r in records) == 1, [r.getMessage() for r in records]

    # a new chat of the dead server's after the kill: the next server answers it
    assert turn(service, [], spare[0], seed=1)[1] is None
    assert list(engine.backend.decoder.routes)[-1] != server_pool.urls[victim]
    # started again, it takes its chats back (after its time out, one health check)
    server_pool.start(victim)
    server_pool.wait_up(victim)
    served_before = server_pool.info(victim)["served"]["generate"]
    time.sleep(engine.backend.ring.down_s)
    with caplog.at_level(logging.WARNING):
        for opening in spare[1:]:
            assert turn(service, [], opening, seed=2)[1] is None
    assert list(engine.backend.decoder.routes)[-2:] == [server_pool.urls[victim]] * 2
    assert server_pool.info(victim)["served"]["generate"] == served_before + 2
    assert any("answers again" in r.getMessage() for r in caplog.records)
