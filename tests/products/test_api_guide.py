"""The serving section of docs/api.md runs: its curl and Python examples against a live server.

The ``sh`` and ``python`` blocks of the section are executed in order, in one bash process (so
the ``TOKEN`` a block sets is there for the next), against a uvicorn server on a loopback port
serving the published test component. A ``json`` or ``text`` block right after one (only blank
lines between) is what it must print: JSON by shape and values, text line by line; ``"…"``
stands for any text, and a JSON value that is just ``"…"`` for any value. An executable block
without one must print nothing. A doc example that breaks fails this test.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sqlalchemy import select

from tests.components.conftest import approve
from tests.products.conftest import Served, license_product, product_doc, publish_component
from tests.reviews.conftest import Cast, component_doc, uscc
from yuanjian.audit.models import AuditEntry
from yuanjian.config import Settings
from yuanjian.identity import service as identity
from yuanjian.instance import Instance
from yuanjian.products import credentials
from yuanjian.products.serving import STATUS
from yuanjian.reviews import service as reviews
from yuanjian.web.deps import iter_api_routes

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "api.md"
SECTION = "## Component serving API"
EXECUTABLE = ("sh", "python")
OUTPUTS = ("json", "text")
WILDCARD = "…"


# ---------------------------------------------------------------- the guide


@dataclass
class Block:
    """A fenced code block of the guide."""

    lang: str
    text: str
    first: int  # line number of the opening fence (1-based)
    last: int  # line number of the closing fence
    expected: Block | None = None


def section_text() -> tuple[str, int]:
    """The serving section of the guide, and the line number it starts at."""
    lines = GUIDE.read_text(encoding="utf-8").splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == SECTION), None)
    assert start is not None, f"{GUIDE} has no {SECTION!r} section"
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return "\n".join(lines[start:end]), start + 1


def blocks() -> list[Block]:
    """The section's fenced blocks, executable ones paired with the output that follows them."""
    text, offset = section_text()
    lines = text.splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        m = re.match(r"^```(\w*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        close = next((j for j in range(i + 1, len(lines)) if lines[j].rstrip() == "```"), None)
        assert close is not None, f"docs/api.md:{offset + i}: unclosed code block"
        found.append(Block(m.group(1), "\n".join(lines[i + 1 : close]), offset + i, offset + close))
        i = close + 1
    for prev, nxt in itertools.pairwise(found):
        between = lines[prev.last - offset + 1 : nxt.first - offset]
        if prev.lang in EXECUTABLE and nxt.lang in OUTPUTS and not any(s.strip() for s in between):
            prev.expected = nxt
    return found


def test_guide_lists_every_serving_error_code() -> None:
    text, _ = section_text()
    rows = re.findall(r"^\| (\d{3}) \| `(\w+)` \|", text, re.M)
    documented = {code: int(status) for status, code in rows}
    assert documented == STATUS


def test_guide_lists_every_serving_route(app) -> None:
    text, _ = section_text()

    def norm(path: str) -> str:
        return re.sub(r"\{[^}]*\}", "{}", path)

    routes = {
        f"{m} {norm(path)}"
        for path, methods, _ in iter_api_routes(app)
        if path.startswith(("/serve/", "/oauth/"))
        for m in methods
    }
    assert routes, "no serving routes found"
    documented = {
        f"{m} {norm(p)}" for m, p in re.findall(r"^\| `(GET|POST) ([^`\s?]+)", text, re.M)
    }
    assert routes <= documented, routes - documented


# ---------------------------------------------------------------- comparing outputs


def _text_pattern(expected: str) -> re.Pattern[str]:
    parts = [re.escape(p) for p in expected.split(WILDCARD)]
    return re.compile("[^\n]*".join(parts))


def mismatches(expected: Any, actual: Any, where: str = "$") -> list[str]:
    """How an actual JSON value differs from the documented one (empty if it does not)."""
    if expected == WILDCARD:
        return []
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{where}: expected an object, got {actual!r}"]
        out = []
        if set(expected) != set(actual):
            out.append(
                f"{where}: keys missing {sorted(set(expected) - set(actual))}, "
                f"undocumented {sorted(set(actual) - set(expected))}"
            )
        for k in expected.keys() & actual.keys():
            out += mismatches(expected[k], actual[k], f"{where}.{k}")
        return out
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{where}: expected {len(expected)} items, got {actual!r}"]
        return [
            m
            for i, (e, a) in enumerate(zip(expected, actual, strict=True))
            for m in mismatches(e, a, f"{where}[{i}]")
        ]
    if isinstance(expected, str):
        if isinstance(actual, str) and _text_pattern(expected).fullmatch(actual):
            return []
        return [f"{where}: expected {expected!r}, got {actual!r}"]
    if type(expected) is not type(actual) or expected != actual:
        return [f"{where}: expected {expected!r}, got {actual!r}"]
    return []


def output_problems(block: Block, out: str) -> list[str]:
    """How a block's output differs from what the guide shows after it."""
    out = out.strip()
    if block.expected is None:
        return [f"prints {out[:500]!r} but the guide shows no output"] if out else []
    if block.expected.lang == "json":
        try:
            actual = json.loads(out)
        except ValueError:
            return [f"prints {out[:1000]!r}, not JSON"]
        return mismatches(json.loads(block.expected.text), actual)
    if _text_pattern(block.expected.text.strip()).fullmatch(out):
        return []
    return [f"prints {out[:1000]!r}, not\n{block.expected.text}"]


def test_output_comparison_rules() -> None:
    doc = {"a": 1, "b": "yjt.…", "c": [{"d": True}], "e": WILDCARD}
    assert mismatches(doc, {"a": 1, "b": "yjt.x.y", "c": [{"d": True}], "e": {"z": 0}}) == []
    assert mismatches(doc, {"a": 2, "b": "yjt.", "c": [{"d": True}], "e": None})
    assert mismatches(doc, {"a": 1, "b": "x", "c": [{"d": True}], "e": 0})
    assert mismatches(doc, {"a": 1, "b": "yjt.", "c": [{"d": 1}], "e": 0})
    assert mismatches(doc, {"a": 1, "b": "yjt.", "c": [], "e": 0})
    assert mismatches(doc, {"a": 1, "b": "yjt.", "c": [{"d": True}]})
    assert mismatches({"a": 1}, {"a": 1, "extra": 2})
    assert _text_pattern("0 … [x]").fullmatch("0 abc [x]")
    assert not _text_pattern("0 … [x]").fullmatch("0 a\nb [x]")


# ---------------------------------------------------------------- a live server


@pytest.fixture
def approved_spec(instance: Instance, cast: Cast) -> int:
    """The component spec of the shared fixtures, also offered for batch delivery."""
    spec_id = approve(instance, cast, component_doc(delivery_modes=["api", "batch"]))
    with instance.sessions() as s:
        a = reviews.publish_agreement(
            session=s,
            actor=cast.admin,
            kind="development",
            title="数据开发利用协议",
            text="乙方应在平台内开发，不得泄露样本。" * 4,
        )
        reviews.sign_agreement(session=s, actor=cast.dev, kind="development", sha256=a.sha256)
    return spec_id


@pytest.fixture
def served_batch(instance: Instance, cast: Cast, world, approved_spec: int) -> Served:
    """The ``served`` fixture's product, licensed for lookups and batch deliveries."""
    publish_component(instance, cast, approved_spec)
    doc = product_doc(delivery_modes=["api", "batch"])
    bank, spec_id, lic_id = license_product(instance, cast, world, doc)
    with instance.sessions() as s:
        cred, secret = credentials.create_credential(
            session=s, actor=bank, spec_id=spec_id, name="core-banking"
        )
    return Served(cast, bank, spec_id, lic_id, cred.client_id, secret, cred.id)


@pytest.fixture
def live_url(instance: Instance, settings: Settings) -> Iterator[str]:
    """The address of a real uvicorn server of the instance, on a free loopback port."""
    from yuanjian.web.app import create_app

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(settings, instance=instance), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="guide-server", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "the server did not start"
        assert time.monotonic() < deadline, "the server did not start within 30 s"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


def _user_token(instance: Instance, username: str) -> str:
    with instance.sessions() as s:
        user = identity.find_user(s, username)
        _, secret = identity.create_api_token(
            session=s, actor=identity.actor_for(user, via="api"), name="api-guide", days=1
        )
    return secret


def _script(runnable: list[Block]) -> str:
    parts = ["set -euo pipefail"]
    for i, b in enumerate(runnable):
        if b.lang == "python":
            assert "__YJ_GUIDE_PY__" not in b.text
            parts.append(f"\"$YJ_PYTHON\" - <<'__YJ_GUIDE_PY__'\n{b.text}\n__YJ_GUIDE_PY__")
        else:
            parts.append(b.text)
        parts.append(f"printf '\\n@@block {i}@@\\n'; printf '\\n@@block {i}@@\\n' >&2")
    return "\n".join(parts) + "\n"


def _split(stream: str, n: int) -> list[str | None]:
    pieces = re.split(r"\n@@block (\d+)@@\n", stream)
    out: list[str | None] = [None] * n
    for k in range(1, len(pieces) - 1, 2):
        out[int(pieces[k])] = pieces[k - 1]
    return out


@pytest.mark.skipif(
    not (shutil.which("curl") and shutil.which("jq") and shutil.which("bash")),
    reason="the guide's shell examples need bash, curl and jq",
)
def test_serving_examples_run(
    instance: Instance, served_batch: Served, live_url: str, tmp_path: Path
) -> None:
    runnable = [b for b in blocks() if b.lang in EXECUTABLE]
    langs = [b.lang for b in runnable]
    assert langs.count("sh") >= 8 and "python" in langs, langs
    key = uscc(3)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "YJ_PYTHON": sys.executable,
        "YJ_URL": live_url,
        "YJ_TOKEN": _user_token(instance, served_batch.bank.username),
        "SPEC_ID": str(served_batch.spec_id),
        "LICENCE_ID": str(served_batch.licence_id),
        "CLIENT_ID": served_batch.client_id,
        "CLIENT_SECRET": served_batch.client_secret,
        "KEY": key,
    }
    script = tmp_path / "guide.sh"
    script.write_text(_script(runnable), encoding="utf-8")
    run = subprocess.run(
        ["bash", str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    (tmp_path / "guide.out").write_text(run.stdout + "\n--- stderr\n" + run.stderr)
    outs, errs = _split(run.stdout, len(runnable)), _split(run.stderr, len(runnable))
    problems = []
    for b, out, err in zip(runnable, outs, errs, strict=True):
        where = f"docs/api.md:{b.first} ({b.lang})"
        if out is None:
            problems.append(f"{where}: did not finish (exit {run.returncode})")
            break
        if err and err.strip():
            problems.append(f"{where}: wrote to stderr: {err.strip()[:1000]}")
        problems += [f"{where}: {p}" for p in output_problems(b, out)]
    tail = run.stderr.rsplit("@@\n", 1)[-1].strip()
    if run.returncode != 0 and tail:
        problems.append(f"exit {run.returncode}; stderr: {tail[:2000]}")
    assert not problems, "\n".join(problems)

    # The delivered file is the licensed field, its subject hash and the watermark.
    header = (tmp_path / "delivery.csv").read_text(encoding="utf-8").splitlines()[0]
    assert header == '"score_band","subject_hash","record_ref"'
    # The calls of the examples, allowed and refused, were audited; no event holds the raw key.
    with instance.sessions() as s:
        events = list(
            s.scalars(
                select(AuditEntry).where(
                    AuditEntry.action.in_(
                        [
                            "credential.token",
                            "component.call",
                            "delivery.request",
                            "delivery.download",
                        ]
                    )
                )
            )
        )
    assert {(e.action, e.outcome) for e in events} == {
        ("credential.token", "allowed"),
        ("component.call", "allowed"),
        ("component.call", "denied"),
        ("delivery.request", "allowed"),
        ("delivery.download", "allowed"),
        ("delivery.download", "denied"),
    }
    assert all(key not in e.payload for e in events)
