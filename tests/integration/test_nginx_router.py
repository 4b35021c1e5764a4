"""The router of docs/serving.md, run: Debian's nginx with `deploy/nginx.conf` as it is (its upstream `server` lines
and `listen` replaced by loopback ones) in front of steering servers, started and stopped here.

Checked: a chat's requests (same `X-Chat-Id`) stay on one server and chats spread; answers stream through it; a
server that refuses connections is retried on the other, so every request is answered; `backend: remote` pointed
at nginx alone chats, each chat on one server."""

from __future__ import annotations

import getpass
import json
import re
import shutil
import socket
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import httpx
import pytest

from tests.helpers import ROOT, free_port
from tests.integration.servers import remote_engine

SITE = ROOT / "deploy" / "nginx.conf"
MAIN = """daemon off;
user {user};
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 256; }}
http {{
    log_format chats '$http_x_chat_id $upstream_addr $status';
    access_log {dir}/access.log chats;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    include {dir}/site.conf;
}}
"""


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if found is None:
        pytest.fail("nginx not found: install Debian's nginx (apt-get install nginx; .ci/run does)")
    return found


def site_for(upstreams: list[str], port: int) -> str:
    """deploy/nginx.conf with its upstream servers and listen port replaced, everything else as shipped."""
    text = SITE.read_text()
    examples = re.findall(r"^\s*server \S+:\d+ (.*);$", text, flags=re.M)
    assert len(examples) == 2, "the shipped file lists two example servers"
    lines = "\n".join(f"    server {u.removeprefix('http://')} {examples[0]};" for u in upstreams)
    text = re.sub(r"(?:^\s*server \S+:\d+ .*;\n)+", lines + "\n", text, count=1, flags=re.M)
    return re.sub(r"listen \d+;", f"listen 127.0.0.1:{port};", text)


class Nginx:
    def __init__(self, upstreams: list[str], folder: Path):
        self.dir, self.port = folder, free_port()
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "site.conf").write_text(site_for(upstreams, self.port))
        # the worker runs as this user, not nginx's default (nobody), so it may write in the test's folder
        (folder / "nginx.conf").write_text(MAIN.format(dir=folder, user=getpass.getuser()))
        check = subprocess.run([nginx_binary(), "-t", "-p", str(folder), "-c", str(folder / "nginx.conf")],
                               capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        self.proc = subprocess.Popen([nginx_binary(), "-p", str(folder), "-c", str(folder / "nginx.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 30
        while True:  # listening is enough: a request through it would reach an upstream and mark a dead one down
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=2).close()
                return
            except OSError:
                assert self.proc.poll() is None and time.time() < deadline, self.proc.stderr.read().decode()
                time.sleep(0.1)

    def access(self) -> list[tuple[str, str, str]]:
        """(chat id, status, the servers tried) per request; the servers are "a, b" when nginx retried."""
        rows = []
        for line in (self.dir / "access.log").read_text().splitlines():
            chat, rest = line.split(" ", 1)
            upstreams, status = rest.rsplit(" ", 1)
            rows.append((chat, status, upstreams))
        return rows

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def nginx(tmp_path):
    started = []

    def start(upstreams: list[str]) -> Nginx:
        started.append(Nginx(upstreams, tmp_path / f"nginx{len(started)}"))
        return started[-1]
    yield start
    for n in started:
        n.stop()


def test_chats_stick_to_one_server_and_spread(nginx, server_pool):
    router = nginx(server_pool.urls[1:])
    seen = defaultdict(set)
    for i in range(12):
        for _ in range(3):
            r = httpx.get(router.url + "/v1/steering/info", headers={**server_pool.headers, "X-Chat-Id": f"chat-{i}"}, timeout=30)
            assert r.status_code == 200
            seen[i].add(r.headers["x-upstream"])
    assert all(len(s) == 1 for s in seen.values()), seen
    assert set().union(*seen.values()) == {u.removeprefix("http://") for u in server_pool.urls[1:]}


def test_answers_stream_through_it(nginx, server_pool):
    router = nginx(server_pool.urls[1:])
    body = {"model": "smollm2", "messages": [{"role": "user", "content": "Count to five."}], "max_tokens": 12,
            "temperature": 0, "stream": True}
    chunks = []
    with httpx.stream("POST", router.url + "/v1/chat/completions", json=body, timeout=120,
                      headers={**server_pool.headers, "X-Chat-Id": "stream"}) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunks.append(json.loads(line[6:]))
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert len(chunks) > 3 and text.strip()
    assert httpx.get(router.url + "/v1/models", timeout=10).status_code == 401  # the key still applies behind it


def test_a_server_that_refuses_is_retried_on_the_other(nginx, server_pool):
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    router = nginx([dead, server_pool.urls[1]])
    live = server_pool.urls[1].removeprefix("http://")
    for i in range(40):  # a consistent hash may give one of two servers a small share: 40 chats reach both
        r = httpx.post(router.url + "/v1/steering/residuals", timeout=60,
                       headers={**server_pool.headers, "X-Chat-Id": f"retry-{i}"},
                       json={"prompts": [[1, 2, 3]], "layer": 15, "steering": None})
        assert r.status_code == 200 and r.headers["x-upstream"].split(", ")[-1] == live
    tried = [line for line in router.access() if line[0].startswith("retry-")]
    assert any(dead.removeprefix("http://") in line[2] for line in tried), f"some requests hashed to the dead server: {tried}"


def test_backend_remote_through_nginx(nginx, server_pool):
    router = nginx(server_pool.urls[1:])
    with remote_engine(server_pool, servers=[router.url]) as engine:
        short = engine.config.generation.__class__(max_new_tokens=6, temperature=0.0)
        for i in range(4):
            opening = f"Name a colour, number {i}."
            first = engine.chat(opening, settings=short)
            engine.chat([{"role": "user", "content": opening}, {"role": "assistant", "content": first},
                         {"role": "user", "content": "Another?"}], settings=short)
    by_chat = defaultdict(set)
    for chat, status, upstream in router.access():
        if chat != "-":
            assert status == "200"
            by_chat[chat].add(upstream)
    assert len(by_chat) == 4 and all(len(u) == 1 for u in by_chat.values()), by_chat
