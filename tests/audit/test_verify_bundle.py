"""Tests for the standalone audit-bundle verifier (src/yuanjian/audit/verify_bundle.py).

Bundles are built here with yuanjian's own Merkle and note modules and rfc8785, then verified by
running the script as a subprocess with this venv's Python, the way a regulator would.
"""

from __future__ import annotations

import ast
import base64
import json
import math
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from yuanjian.audit import merkle as m
from yuanjian.audit import note as n
from yuanjian.audit import verify_bundle as vb

SCRIPT = Path(vb.__file__)
ORIGIN = "yuanjian.example/audit"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def entry(index: int) -> dict[str, Any]:
    """A log entry shaped like the service's, with awkward values for canonical JSON."""
    return {
        "index": index,
        "time": f"2026-12-03T10:{index // 60 % 60:02d}:{index % 60:02d}.000000Z",
        "actor": {"user_id": index % 7, "username": f"用户{index % 5}", "via": "api"},
        "action": ["resource.read", "component.build", "sample.issue"][index % 3],
        "object": {"type": "component", "id": str(1000 + index)},
        "outcome": "allowed" if index % 11 else "denied",
        "detail": {
            "score": index / 8,
            "big": 1e21 * (index % 2),
            "tiny": 1e-7,
            "q": 'a"\\\n\u2028',
        },
    }


@dataclass
class Bundle:
    path: Path
    log: n.Signer
    lines: list[bytes]
    leaves: list[bytes]
    start: int
    end: int
    alg: str

    @property
    def vkey(self) -> str:
        return self.log.verifier().to_vkey()

    def checkpoint(self, size: int, signer: n.Signer | None = None) -> str:
        root = m.root_hash(self.leaves[:size], alg=self.alg)
        return n.Checkpoint(ORIGIN, size, root).sign(signer or self.log)

    def entries_path(self) -> Path:
        return self.path / "entries.jsonl"

    def read_lines(self) -> list[bytes]:
        return self.entries_path().read_bytes().split(b"\n")[:-1]

    def write_lines(self, lines: list[bytes]) -> None:
        self.entries_path().write_bytes(b"".join(line + b"\n" for line in lines))


def make_bundle(
    path: Path,
    *,
    start: int = 37,
    end: int = 100,
    alg: str = "sha256",
    log: n.Signer | None = None,
) -> Bundle:
    log = log or n.Signer.generate(ORIGIN)
    lines = [rfc8785.dumps(entry(i)) for i in range(end)]
    leaves = m.hash_leaves(lines, alg=alg)
    bundle = Bundle(path, log, lines, leaves, start, end, alg)
    path.mkdir(parents=True, exist_ok=True)
    manifest = {
        "format": "yuanjian-audit-bundle/1",
        "origin": ORIGIN,
        "hash": alg,
        "start_size": start,
        "end_size": end,
        "exported_at": "2026-12-03T10:00:00Z",
    }
    (path / "manifest.json").write_text(json.dumps(manifest))
    bundle.write_lines(lines[start:end])
    frontier = m.frontier_after(0, leaves[:start], [], alg=alg)
    (path / "frontier.json").write_text(
        json.dumps({"size": start, "hashes": [b64(h) for h in frontier]})
    )
    if start:
        (path / "checkpoint-start.txt").write_text(bundle.checkpoint(start))
    (path / "checkpoint-end.txt").write_text(bundle.checkpoint(end))
    proof = m.consistency_proof(start, leaves[:end], alg=alg)
    (path / "consistency.json").write_text(
        json.dumps({"old_size": start, "new_size": end, "proof": [b64(h) for h in proof]})
    )
    (path / "verifier.key").write_text(bundle.vkey + "\n")
    return bundle


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def bundle(tmp_path: Path) -> Bundle:
    return make_bundle(tmp_path / "bundle")


# ---------------------------------------------------------------------------------------------
# The happy paths, as a subprocess


def test_valid_bundle_verifies(bundle: Bundle) -> None:
    proc = run(bundle.path, "--key", bundle.vkey)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "VERIFIED: 63 entries" in proc.stdout
    assert "[FAIL]" not in proc.stdout and "WARNING" not in proc.stdout
    for name in ("manifest", "checkpoint_start", "checkpoint_end", "frontier", "entries"):
        assert f"[ OK ] {name}" in proc.stdout
    assert "[ OK ] end_root" in proc.stdout and "[ OK ] consistency" in proc.stdout


def test_unpinned_key_verifies_with_a_warning(bundle: Bundle) -> None:
    proc = run(bundle.path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "WARNING" in proc.stdout and "NOT independently" in proc.stdout


def test_key_from_file_and_json_output(bundle: Bundle, tmp_path: Path) -> None:
    key_file = tmp_path / "log.vkey"
    key_file.write_text(bundle.vkey + "\n")
    proc = run(bundle.path, "--key", key_file, "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] is True and report["exit_code"] == 0
    assert report["key_pinned"] is True and report["warnings"] == []
    assert report["start_size"] == 37 and report["end_size"] == 100
    assert report["end_root"] == b64(m.root_hash(bundle.leaves))
    assert {c["name"] for c in report["checks"]} >= {"manifest", "entries", "end_root", "origin"}


def test_sm3_bundle_from_empty_start_verifies(tmp_path: Path) -> None:
    b = make_bundle(tmp_path / "sm3", start=0, end=45, alg="sm3")
    assert not (b.path / "checkpoint-start.txt").exists()
    proc = run(b.path, "--key", b.vkey)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "hash sm3" in proc.stdout
    # the same bundle claimed as sha256 does not verify
    manifest = json.loads((b.path / "manifest.json").read_text())
    manifest["hash"] = "sha256"
    (b.path / "manifest.json").write_text(json.dumps(manifest))
    res = vb.verify_bundle(b.path, key=b.vkey)
    assert res.exit_code == 1
    assert {c.name for c in res.failures} >= {"end_root"}


# ---------------------------------------------------------------------------------------------
# Tampering, as a subprocess: exit 1 naming what failed


def _edit_entry(b: Bundle) -> None:
    lines = b.read_lines()
    doc = json.loads(lines[5])
    doc["outcome"] = "allowed" if doc["outcome"] == "denied" else "denied"
    lines[5] = rfc8785.dumps(doc)  # still canonical, still the right index
    b.write_lines(lines)


def _non_canonical(b: Bundle) -> None:
    lines = b.read_lines()
    lines[7] = lines[7].replace(b'"index":', b'"index": ', 1)
    b.write_lines(lines)


def _delete_line(b: Bundle) -> None:
    lines = b.read_lines()
    del lines[10]
    b.write_lines(lines)


def _reorder(b: Bundle) -> None:
    lines = b.read_lines()
    lines[20], lines[21] = lines[21], lines[20]
    b.write_lines(lines)


def _append_line(b: Bundle) -> None:
    b.write_lines([*b.read_lines(), rfc8785.dumps(entry(b.end))])


def _swap_end_other_key(b: Bundle) -> None:
    intruder = n.Signer.generate(ORIGIN)
    (b.path / "checkpoint-end.txt").write_text(b.checkpoint(b.end, intruder))


def _swap_end_older(b: Bundle) -> None:
    (b.path / "checkpoint-end.txt").write_text(b.checkpoint(b.end - 1))


def _forge_end_root(b: Bundle) -> None:
    cp = n.Checkpoint(ORIGIN, b.end, m.root_hash(b.leaves[1 : b.end + 1]))
    (b.path / "checkpoint-end.txt").write_text(cp.sign(b.log))


def _break_frontier(b: Bundle) -> None:
    doc = json.loads((b.path / "frontier.json").read_text())
    raw = bytearray(base64.b64decode(doc["hashes"][-1]))
    raw[0] ^= 1
    doc["hashes"][-1] = b64(bytes(raw))
    (b.path / "frontier.json").write_text(json.dumps(doc))


def _drop_frontier_hash(b: Bundle) -> None:
    doc = json.loads((b.path / "frontier.json").read_text())
    doc["hashes"].pop()
    (b.path / "frontier.json").write_text(json.dumps(doc))


def _break_consistency(b: Bundle) -> None:
    doc = json.loads((b.path / "consistency.json").read_text())
    doc["proof"] = doc["proof"][:-1]
    (b.path / "consistency.json").write_text(json.dumps(doc))


def _wrong_origin(b: Bundle) -> None:
    manifest = json.loads((b.path / "manifest.json").read_text())
    manifest["origin"] = "other.example/log"
    (b.path / "manifest.json").write_text(json.dumps(manifest))


def _no_final_newline(b: Bundle) -> None:
    b.entries_path().write_bytes(b.entries_path().read_bytes()[:-1])


def _remove_entries(b: Bundle) -> None:
    b.entries_path().unlink()


TAMPERING = {
    # name: (mutation, failing check, text in the report, first entry index at fault)
    "edit one entry": (_edit_entry, "end_root", "do not reproduce", None),
    "non-canonical line": (_non_canonical, "entries", "not canonical JSON", 37 + 7),
    "delete a line": (_delete_line, "entries", "every index is 1 too high", 37 + 10),
    "reorder two lines": (_reorder, "entries", "index is 58, expected 57", 37 + 20),
    "append a line": (_append_line, "entries", "64 line(s)", 100),
    "end checkpoint by another key": (
        _swap_end_other_key,
        "checkpoint_end",
        "not signed by the log key",
        None,
    ),
    "older end checkpoint": (_swap_end_older, "checkpoint_end", "is for tree size 99", None),
    "end checkpoint with forged root": (_forge_end_root, "end_root", "do not reproduce", None),
    "broken frontier": (_break_frontier, "frontier", "does not equal the start", None),
    "short frontier": (_drop_frontier_hash, "frontier", "frontier hashes", None),
    "truncated consistency proof": (_break_consistency, "consistency", "does not verify", None),
    "wrong origin": (_wrong_origin, "origin", "other.example/log", None),
    "no final newline": (_no_final_newline, "entries", "no trailing newline", 99),
    "entries missing": (_remove_entries, "entries", "entries.jsonl is missing", None),
}


@pytest.mark.parametrize("case", TAMPERING, ids=list(TAMPERING))
def test_tampered_bundle_fails(tmp_path: Path, case: str) -> None:
    mutate, check, text, first_bad = TAMPERING[case]
    b = make_bundle(tmp_path / "bundle")
    mutate(b)
    proc = run(b.path, "--key", b.vkey)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"[FAIL] {check}:" in proc.stdout, proc.stdout
    assert text in proc.stdout, proc.stdout
    assert "FAILED:" in proc.stdout
    if first_bad is not None:
        assert f"first entry at fault: index {first_bad}" in proc.stdout
    else:
        assert "first entry at fault" not in proc.stdout


def test_json_report_names_failures(bundle: Bundle) -> None:
    _delete_line(bundle)
    proc = run(bundle.path, "--key", bundle.vkey, "--json")
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert report["ok"] is False and report["first_bad_index"] == 47
    failed = {c["name"] for c in report["checks"] if not c["ok"]}
    assert failed == {"entries", "end_root"}


# ---------------------------------------------------------------------------------------------
# Usage and unreadable bundles: exit 2


def test_usage_errors_exit_2(bundle: Bundle, tmp_path: Path) -> None:
    assert run().returncode == 2  # argparse: missing BUNDLE_DIR
    proc = run(tmp_path / "nope", "--key", bundle.vkey)
    assert proc.returncode == 2 and "not a directory" in proc.stderr
    proc = run(bundle.path, "--key", "not-a-key")
    assert proc.returncode == 2 and "--key" in proc.stderr
    proc = run(bundle.path, "--key", bundle.vkey, "--previous", tmp_path / "missing.txt")
    assert proc.returncode == 2 and "--previous" in proc.stderr


def test_unreadable_manifest_exits_2(bundle: Bundle) -> None:
    (bundle.path / "manifest.json").write_text("{not json")
    res = vb.verify_bundle(bundle.path, key=bundle.vkey)
    assert res.exit_code == 2 and "manifest.json" in (res.error or "")
    (bundle.path / "manifest.json").unlink()
    proc = run(bundle.path, "--key", bundle.vkey)
    assert proc.returncode == 2 and "manifest.json" in proc.stderr


@pytest.mark.parametrize(
    ("field", "value", "text"),
    [
        ("format", "yuanjian-audit-bundle/2", "format"),
        ("hash", "md5", "hash"),
        ("start_size", -1, "start_size"),
        ("end_size", 10, "larger than end_size"),
        ("start_size", True, "start_size"),
        ("exported_at", "yesterday", "exported_at"),
        ("origin", "", "origin"),
    ],
)
def test_insane_manifest_fails(bundle: Bundle, field: str, value: Any, text: str) -> None:
    manifest = json.loads((bundle.path / "manifest.json").read_text())
    manifest[field] = value
    (bundle.path / "manifest.json").write_text(json.dumps(manifest))
    res = vb.verify_bundle(bundle.path, key=bundle.vkey)
    assert res.exit_code == 1
    assert res.failures[0].name == "manifest" and text in res.failures[0].detail


def test_pinned_key_differs_from_bundle_key(bundle: Bundle) -> None:
    other = n.Signer.generate(ORIGIN)
    res = vb.verify_bundle(bundle.path, key=other.verifier().to_vkey())
    assert res.exit_code == 1
    assert any("differs from the pinned" in w for w in res.warnings)
    assert {c.name for c in res.failures} >= {"checkpoint_start", "checkpoint_end"}


# ---------------------------------------------------------------------------------------------
# --previous: the last checkpoint the regulator accepted


def _prev(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "previous.txt"
    path.write_text(text)
    return path


def test_previous_equal_to_start(bundle: Bundle, tmp_path: Path) -> None:
    prev = _prev(tmp_path, bundle.checkpoint(bundle.start))
    proc = run(bundle.path, "--key", bundle.vkey, "--previous", prev)
    assert proc.returncode == 0, proc.stdout
    assert "[ OK ] previous: the start checkpoint equals" in proc.stdout


def test_previous_older_needs_a_consistency_proof(bundle: Bundle, tmp_path: Path) -> None:
    prev = _prev(tmp_path, bundle.checkpoint(20))
    res = vb.verify_bundle(bundle.path, key=bundle.vkey, previous=prev)
    assert res.exit_code == 1 and "no consistency proof" in res.failures[0].detail
    proof = m.consistency_proof(20, bundle.leaves[: bundle.start])
    doc = {"old_size": 20, "new_size": bundle.start, "proof": [b64(h) for h in proof]}
    (bundle.path / "consistency-previous.json").write_text(json.dumps(doc))
    assert vb.verify_bundle(bundle.path, key=bundle.vkey, previous=prev).ok
    proof_file = tmp_path / "proof.json"
    proof_file.write_text(json.dumps(doc))
    (bundle.path / "consistency-previous.json").unlink()
    proc = run(
        bundle.path, "--key", bundle.vkey, "--previous", prev, "--previous-proof", proof_file
    )
    assert proc.returncode == 0, proc.stdout
    doc["proof"] = [b64(h) for h in proof[:-1]]
    proof_file.write_text(json.dumps(doc))
    res = vb.verify_bundle(bundle.path, key=bundle.vkey, previous=prev, previous_proof=proof_file)
    assert res.exit_code == 1 and "does not verify" in res.failures[0].detail


def test_previous_inside_the_range_is_checked_against_the_entries(
    bundle: Bundle, tmp_path: Path
) -> None:
    prev = _prev(tmp_path, bundle.checkpoint(60))
    assert vb.verify_bundle(bundle.path, key=bundle.vkey, previous=prev).ok
    prev = _prev(tmp_path, bundle.checkpoint(bundle.end))
    assert vb.verify_bundle(bundle.path, key=bundle.vkey, previous=prev).ok


def test_forked_previous_fails(bundle: Bundle, tmp_path: Path) -> None:
    forked = [*bundle.leaves[:59], m.leaf_hash(b"rewritten history")]
    for size, leaves in ((60, forked), (bundle.start, forked[: bundle.start - 1] + forked[-1:])):
        cp = n.Checkpoint(ORIGIN, size, m.root_hash(leaves[:size])).sign(bundle.log)
        res = vb.verify_bundle(bundle.path, key=bundle.vkey, previous=_prev(tmp_path, cp))
        assert res.exit_code == 1
        (fail,) = res.failures
        assert fail.name == "previous" and "forked or rewritten" in fail.detail


def test_previous_newer_or_foreign_fails(bundle: Bundle, tmp_path: Path) -> None:
    newer = n.Checkpoint(ORIGIN, 500, m.leaf_hash(b"x")).sign(bundle.log)
    res = vb.verify_bundle(bundle.path, key=bundle.vkey, previous=_prev(tmp_path, newer))
    assert res.exit_code == 1 and "newer than this bundle" in res.failures[0].detail
    foreign = bundle.checkpoint(bundle.start, n.Signer.generate(ORIGIN))
    res = vb.verify_bundle(bundle.path, key=bundle.vkey, previous=_prev(tmp_path, foreign))
    assert res.exit_code == 1 and "not signed by the log key" in res.failures[0].detail


# ---------------------------------------------------------------------------------------------
# The Python API and the standalone guarantee


def test_python_api_result(bundle: Bundle) -> None:
    res = vb.verify_bundle(str(bundle.path), key=bundle.vkey)
    assert res.ok and res.exit_code == 0 and res.first_bad_index is None
    assert res.origin == ORIGIN and res.hash == "sha256"
    assert "VERIFIED" in res.report()
    _reorder(bundle)
    res = vb.verify_bundle(bundle.path, key=bundle.vkey.encode())
    assert not res.ok and res.first_bad_index == 57
    assert json.loads(json.dumps(res.to_json()))["first_bad_index"] == 57


def test_script_imports_only_stdlib_and_cryptography() -> None:
    tree = ast.parse(SCRIPT.read_text("utf-8"))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative import"
            roots.add((node.module or "").split(".")[0])
    assert "yuanjian" not in roots
    assert roots - set(sys.stdlib_module_names) == {"cryptography"}


def test_script_runs_from_a_copy_outside_the_package(bundle: Bundle, tmp_path: Path) -> None:
    copy = tmp_path / "elsewhere" / "verify_bundle.py"
    copy.parent.mkdir()
    copy.write_bytes(SCRIPT.read_bytes())
    proc = subprocess.run(
        [sys.executable, "-I", str(copy), str(bundle.path), "--key", bundle.vkey],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=copy.parent,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ---------------------------------------------------------------------------------------------
# The duplicated logic agrees with the package's


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(blacklist_categories=("Cs",))),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(st.characters(blacklist_categories=("Cs",))), children, max_size=4
        )
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(value=json_values)
def test_canonical_json_matches_rfc8785(value: Any) -> None:
    canonical = rfc8785.dumps(value)
    assert vb.canonical_json(json.loads(canonical)).encode() == canonical
    assert vb.parse_canonical_line(canonical) == json.loads(canonical)


@settings(max_examples=300, deadline=None)
@given(x=st.floats(allow_nan=False, allow_infinity=False))
def test_es6_number_matches_rfc8785(x: float) -> None:
    assert vb.es6_number(x) == rfc8785.dumps(x).decode()
    assert float(vb.es6_number(x)) == x or (x == 0 and vb.es6_number(x) == "0")


# RFC 8785 Appendix B: IEEE 754 bit patterns and their canonical (ECMAScript) text.
RFC8785_NUMBERS = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "text"), RFC8785_NUMBERS)
def test_es6_number_rfc8785_appendix_b(bits: str, text: str) -> None:
    (value,) = struct.unpack(">d", bytes.fromhex(bits))
    assert vb.es6_number(value) == text
    (parsed,) = vb.parse_canonical_line(f"[{text}]".encode())
    assert float(parsed) == value  # integral text parses as a Python int


def test_rfc8785_property_sorting_example() -> None:
    # RFC 8785 section 3.2.3: keys sort by their UTF-16 code units.
    doc = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    text = vb.canonical_json(doc)
    order = ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]
    assert (
        text
        == "{"
        + ",".join(
            f"{json.dumps(k, ensure_ascii=False)}:{json.dumps(doc[k])}" for k in order
        ).replace('"\r"', '"\\r"')
        + "}"
    )
    assert text.encode() == rfc8785.dumps(doc)


@pytest.mark.parametrize(
    "line",
    [
        b'{"b":1,"a":2}',  # keys out of order
        b'{"a": 1}',  # whitespace
        b'{"a":1.0}',  # 1.0 is written 1
        b'{"a":1E3}',
        b'{"a":"\\u0041"}',  # needless escape
        b'{"a":"\\/"}',
        b'{"a":1,"a":1}',  # duplicate key
        b'{"a":NaN}',
        b'{"a":1e400}',
        b'{"a":"\\ud800"}',  # lone surrogate
        b"\xff",
        b"",
        b"[" * 100_000 + b"]" * 100_000,  # nested beyond the recursion limit
        b'{"a":12345678901234567890}',  # beyond 2**53: canonical form is 12345678901234567000
    ],
)
def test_non_canonical_lines_rejected(line: bytes) -> None:
    with pytest.raises(ValueError):
        vb.parse_canonical_line(line)


def test_canonical_line_edge_cases_accepted() -> None:
    assert vb.parse_canonical_line(b'{"a":1e+21,"b":1e-7,"c":-0.5}') == {
        "a": 1e21,
        "b": 1e-7,
        "c": -0.5,
    }
    assert vb.parse_canonical_line(b'{"a":12345678901234567000}')["a"] == 12345678901234567000
    assert math.isclose(vb.parse_canonical_line(b"[5e-324]")[0], 5e-324)
    # keys sort by UTF-16 code units: U+1F600 (surrogates D83D..) sorts before U+FB01
    line = '{"\U0001f600":1,"\ufb01":2}'.encode()
    assert vb.parse_canonical_line(line) == {"\U0001f600": 1, "\ufb01": 2}


@settings(max_examples=60, deadline=None)
@given(data=st.data(), new=st.integers(1, 200), alg=st.sampled_from(["sha256", "sm3"]))
def test_duplicated_merkle_logic_agrees(data: st.DataObject, new: int, alg: str) -> None:
    old = data.draw(st.integers(0, new), label="old")
    leaves = [m.leaf_hash(b"%d" % i, alg=alg) for i in range(new)]
    tree = vb._Tree(alg)
    assert tree.leaf(b"5") == m.leaf_hash(b"5", alg=alg)
    stack: list[bytes] = []
    for i, h in enumerate(leaves):
        tree.push(stack, i, h)
    assert stack == m.frontier_after(0, leaves, [], alg=alg)
    assert tree.root(stack) == m.root_hash(leaves, alg=alg)
    proof = m.consistency_proof(old, leaves, alg=alg)
    old_root, new_root = m.root_hash(leaves[:old], alg=alg), m.root_hash(leaves, alg=alg)
    assert tree.verify_consistency(old, new, old_root, new_root, proof)
    other = m.leaf_hash(b"other", alg=alg)
    assert not tree.verify_consistency(old, new, other, new_root, proof)
    if old:  # an empty old tree is consistent with any new root
        assert not tree.verify_consistency(old, new, old_root, other, proof)
    if old not in (0, new):
        assert not tree.verify_consistency(old, new, new_root, old_root, proof)
        assert not tree.verify_consistency(old, new * 2, old_root, new_root, proof)
    for bad in ([*proof, new_root], proof[1:], [new_root, *proof[1:]] if proof else [new_root]):
        assert tree.verify_consistency(old, new, old_root, new_root, bad) is m.verify_consistency(
            old, new, old_root, new_root, bad, alg=alg
        )


def test_duplicated_note_logic_agrees() -> None:
    vkey = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"
    key = vb.parse_vkey(vkey)
    pkg = n.Verifier.from_vkey(vkey)
    assert (key.name, key.key_id, key.public_key) == (pkg.name, pkg.key_id, pkg.public_key)
    sumdb = (
        "go.sum database tree\n49189689\nftjbAOzaupaIvaPo/G+Dk63nxOZ2s1OPOKIaPtXs7S4=\n\n"
        "— sum.golang.org Az3grlKZssqRoMNPpZfKt0TphbbcF+pzXqElURJKRNFKfaUAgqeI5k2AORH0QAhg/ebRwyIq"
        "D/OqP4oLtLnNumvOBAM=\n"
    )
    cp = vb.open_checkpoint(sumdb.encode(), key)
    assert (cp.origin, cp.size) == ("go.sum database tree", 49189689)
    with pytest.raises(ValueError, match="does not verify"):
        vb.open_checkpoint(sumdb.replace("49189689", "49189680").encode(), key)
    for bad in ("PeterNeumann+c74f20a3+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", vkey[:-1]):
        with pytest.raises(ValueError):
            vb.parse_vkey(bad)
    # cosignature (0x04) keys are witness keys, never the log's key
    with pytest.raises(ValueError, match="0x01"):
        vb.parse_vkey("remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2")
    # a witness cosignature on the end checkpoint is ignored, not a failure
    log = n.Signer.generate(ORIGIN)
    witness = n.Signer.generate("regulator.example/w", alg=n.ALG_COSIGNATURE_V1)
    signed = n.Checkpoint(ORIGIN, 3, m.leaf_hash(b"x")).sign(log)
    cosigned = n.add_cosignature(signed, witness, timestamp=7)
    got = vb.open_checkpoint(cosigned.encode(), vb.parse_vkey(log.verifier().to_vkey()))
    assert got.other_signatures == 1
