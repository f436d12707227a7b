#!/usr/bin/env python3
"""Verify a Yuanjian audit-log export bundle or evidence pack, standalone.

This file is copied into every export bundle and run by the regulator on their own machine, so
it must work with nothing but the Python standard library (3.9+) and ``cryptography``. It
therefore duplicates, on purpose, the little Merkle-tree (RFC 9162), signed-note / checkpoint
(C2SP) and canonical-JSON (RFC 8785) logic it needs instead of importing ``yuanjian``; the
Yuanjian test suite checks this copy against the package's own implementation.

Bundle layout (a directory)::

    manifest.json         {"format": "yuanjian-audit-bundle/1", "origin": str,
                           "hash": "sha256" | "sm3", "start_size": int, "end_size": int,
                           "exported_at": ISO-8601 str}
    entries.jsonl         entries start_size .. end_size-1, one per line; each line (without its
                          "\\n") is the RFC 8785 canonical JSON of an object whose integer
                          "index" equals its position, and H(0x00 || line) is its leaf hash
    frontier.json         {"size": start_size, "hashes": [base64, ...]}: the perfect subtrees
                          covering [0, start_size), largest first
    checkpoint-start.txt  signed checkpoint at start_size (absent when start_size == 0)
    checkpoint-end.txt    signed checkpoint at end_size
    consistency.json      {"old_size": start_size, "new_size": end_size, "proof": [base64, ...]}
    verifier.key          the log's verifier key (name+keyid+base64)
    consistency-previous.json  optional: {"old_size": p, "new_size": start_size, "proof": [...]}
                          from the regulator's previously accepted checkpoint of size p

Checks: the manifest is sane; both checkpoints are signed by the log key (``--key``, else the
bundle's own verifier.key with a warning that the key was not independently pinned) and carry the
manifest's origin and sizes; the frontier reproduces the start root; every entry line is
canonical JSON with a dense, in-order index; extending the frontier with the entries' leaf
hashes reproduces the end root exactly; the consistency proof verifies start -> end; with
``--previous`` (the last checkpoint the regulator accepted) the start checkpoint equals it, or is
provably consistent with it (a proof for an older previous checkpoint; the entries themselves
for one inside the bundle's range).

A bundle may also be given as the .zip the platform delivers (files in one top-level folder).

Evidence packs (one component or licence, see "Evidence packs" below) are recognized by their
manifest, or forced with ``--evidence``: every file's SHA-256, the checkpoint signature, every
audit entry's leaf hash and RFC 9162 inclusion proof, and the seal of the records in the log.

Usage: python verify_bundle.py BUNDLE_DIR_OR_ZIP [--key VKEY_OR_FILE] [--previous CHECKPOINT_FILE]
       [--previous-proof PROOF_JSON] [--json]
       python verify_bundle.py PACK.zip [--evidence] [--key VKEY_OR_FILE] [--json]
Exit status: 0 all checks passed, 1 a check failed, 2 bad usage or unreadable bundle.
From Python: ``verify_bundle(path, key=None, previous=None) -> Result``,
``verify_evidence(path, key=None) -> Result``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

__all__ = [
    "Check",
    "Result",
    "canonical_json",
    "es6_number",
    "main",
    "open_checkpoint",
    "parse_canonical_line",
    "parse_vkey",
    "verify_bundle",
    "verify_evidence",
]

BUNDLE_FORMAT = "yuanjian-audit-bundle/1"
MAX_LISTED_PROBLEMS = 10

# ---------------------------------------------------------------------------------------------
# Hashing and the Merkle tree (RFC 9162 section 2.1)


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _sm3_cryptography(data: bytes) -> bytes:
    c = hashes.Hash(hashes.SM3())
    c.update(data)
    return c.finalize()


def _sm3_hashlib(data: bytes) -> bytes:
    h = hashlib.new("sm3")
    h.update(data)
    return h.digest()


def _pick_sm3() -> Callable[[bytes], bytes]:
    # OpenSSL's SM3 through hashlib is faster; not every build has it.
    try:
        if _sm3_hashlib(b"abc") == _sm3_cryptography(b"abc"):
            return _sm3_hashlib
    except ValueError:
        pass
    return _sm3_cryptography


HASHERS: dict[str, Callable[[bytes], bytes]] = {"sha256": _sha256, "sm3": _pick_sm3()}


class _Tree:
    """RFC 9162 hashing with one algorithm."""

    def __init__(self, alg: str) -> None:
        self.h = HASHERS[alg]
        self.empty = self.h(b"")

    def leaf(self, data: bytes) -> bytes:
        return self.h(b"\x00" + data)

    def node(self, left: bytes, right: bytes) -> bytes:
        return self.h(b"\x01" + left + right)

    def push(self, stack: list[bytes], size: int, leaf_hash: bytes) -> None:
        """Append one leaf to the frontier `stack` of a tree of `size` leaves."""
        h = leaf_hash
        k = size
        while k & 1:
            h = self.node(stack.pop(), h)
            k >>= 1
        stack.append(h)

    def root(self, stack: list[bytes]) -> bytes:
        """Root of a tree from its frontier (largest perfect subtree first)."""
        if not stack:
            return self.empty
        h = stack[-1]
        for left in reversed(stack[:-1]):
            h = self.node(left, h)
        return h

    def verify_consistency(
        self, old: int, new: int, old_root: bytes, new_root: bytes, proof: list[bytes]
    ) -> bool:
        """RFC 9162 section 2.1.4.2."""
        if old > new:
            return False
        if old == new:
            return not proof and old_root == new_root and (old > 0 or old_root == self.empty)
        if old == 0:
            return not proof and old_root == self.empty
        if not proof:
            return False
        path = list(proof)
        if old & (old - 1) == 0:
            path.insert(0, old_root)
        fn, sn = old - 1, new - 1
        while fn & 1:
            fn >>= 1
            sn >>= 1
        fr = sr = path[0]
        for c in path[1:]:
            if sn == 0:
                return False
            if fn & 1 or fn == sn:
                fr = self.node(c, fr)
                sr = self.node(c, sr)
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
            else:
                sr = self.node(sr, c)
            fn >>= 1
            sn >>= 1
        return sn == 0 and fr == old_root and sr == new_root

    def verify_inclusion(
        self, index: int, size: int, leaf_hash: bytes, proof: list[bytes], root: bytes
    ) -> bool:
        """RFC 9162 section 2.1.3.2."""
        if index < 0 or index >= size:
            return False
        fn, sn = index, size - 1
        r = leaf_hash
        for p in proof:
            if sn == 0:
                return False
            if fn & 1 or fn == sn:
                r = self.node(p, r)
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
            else:
                r = self.node(r, p)
            fn >>= 1
            sn >>= 1
        return sn == 0 and r == root


def _popcount(n: int) -> int:
    return bin(n).count("1")


# ---------------------------------------------------------------------------------------------
# Strict base64, keys, signed notes and checkpoints (C2SP signed-note, tlog-checkpoint)

_B64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")
_DECIMAL = re.compile(r"(?:0|[1-9][0-9]*)")
_HEX8 = re.compile(r"[0-9a-fA-F]{8}")
_SIG_PREFIX = "\u2014 "


def _b64decode(text: Any, what: str) -> bytes:
    """Padded, canonical standard base64 only."""
    if not isinstance(text, str) or not _B64.fullmatch(text):
        raise ValueError(f"{what}: invalid base64")
    raw = base64.b64decode(text, validate=True)
    if base64.b64encode(raw).decode("ascii") != text:
        raise ValueError(f"{what}: non-canonical base64")
    return raw


def _valid_name(name: str) -> bool:
    return bool(name) and "+" not in name and not any(c.isspace() for c in name)


@dataclass(frozen=True)
class LogKey:
    """An Ed25519 (signature type 0x01) note verifier key."""

    name: str
    key_id: int
    public_key: bytes

    @property
    def text(self) -> str:
        """The key's name+keyid, as in log messages."""
        return f"{self.name}+{self.key_id:08x}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Return True iff signature is this key's Ed25519 signature of message."""
        if len(signature) != 64:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except InvalidSignature:
            return False
        return True


def parse_vkey(vkey: str) -> LogKey:
    """Parse name+<hex key id>+<base64(0x01 || public key)>; raise ValueError if malformed."""
    name, _, rest = vkey.partition("+")
    hex_id, _, key64 = rest.partition("+")
    if not _valid_name(name) or not _HEX8.fullmatch(hex_id):
        raise ValueError("verifier key: expected name+<8 hex digits>+<base64 key>")
    raw = _b64decode(key64, "verifier key")
    if len(raw) != 33 or raw[0] != 0x01:
        raise ValueError("verifier key: not an Ed25519 (type 0x01) key")
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + raw).digest()
    kid = int.from_bytes(digest[:4], "big")
    if kid != int(hex_id, 16):
        raise ValueError("verifier key: key id does not match the key")
    return LogKey(name, kid, raw[1:])


def parse_note(data: bytes) -> tuple[str, list[tuple[str, int, bytes]]]:
    """Split a signed note into (text, [(name, key id, signature)]); raise ValueError."""
    try:
        msg = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("not valid UTF-8") from None
    if not msg.endswith("\n"):
        raise ValueError("does not end with a newline")
    if _CONTROL.search(msg):
        raise ValueError("contains a control character")
    split = msg.rfind("\n\n")
    if split < 0:
        raise ValueError("missing the blank line before the signatures")
    text, block = msg[: split + 1], msg[split + 2 :]
    if not block:
        raise ValueError("no signature lines")
    sigs = []
    for n, line in enumerate(block[:-1].split("\n"), 1):
        name, sep, b64 = line[len(_SIG_PREFIX) :].partition(" ")
        if not line.startswith(_SIG_PREFIX) or not sep or not _valid_name(name):
            raise ValueError(f"signature line {n} is malformed")
        raw = _b64decode(b64, f"signature line {n}")
        if len(raw) < 5:
            raise ValueError(f"signature line {n} is too short")
        sigs.append((name, int.from_bytes(raw[:4], "big"), raw[4:]))
    return text, sigs


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint whose log signature verified."""

    origin: str
    size: int
    root: bytes
    other_signatures: int


def parse_checkpoint_text(text: str) -> tuple[str, int, bytes]:
    """Return (origin, size, root) of checkpoint note text; raise ValueError if malformed."""
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise ValueError("checkpoint needs origin, size and root hash lines")
    origin, size_line, root_line = lines[:3]
    if not origin:
        raise ValueError("checkpoint origin line is empty")
    if not _DECIMAL.fullmatch(size_line):
        raise ValueError(f"checkpoint size {size_line[:30]!r} is not a decimal number")
    root = _b64decode(root_line, "checkpoint root hash")
    if len(root) != 32:
        raise ValueError("checkpoint root hash is not 32 bytes")
    if any(not ext for ext in lines[3:]):
        raise ValueError("checkpoint has an empty extension line")
    return origin, int(size_line), root


def open_checkpoint(data: bytes, key: LogKey) -> SignedCheckpoint:
    """Verify a signed checkpoint with the log key; raise ValueError on any problem."""
    text, sigs = parse_note(data)
    body = text.encode("utf-8")
    mine = [s for s in sigs if s[0] == key.name and s[1] == key.key_id]
    if not mine:
        raise ValueError(f"not signed by the log key {key.text}")
    for _, _, sig in mine:
        if not key.verify(body, sig):
            raise ValueError(f"signature by the log key {key.text} does not verify")
    origin, size, root = parse_checkpoint_text(text)
    return SignedCheckpoint(origin, size, root, len(sigs) - len(mine))


# ---------------------------------------------------------------------------------------------
# RFC 8785 canonical JSON

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r"}
_ESCAPES["\t"] = "\\t"
_NEEDS_ESCAPE = re.compile(r'[\x00-\x1f"\\]')


def _escape(match: re.Match) -> str:  # type: ignore[type-arg]
    ch = match.group()
    return _ESCAPES.get(ch) or f"\\u{ord(ch):04x}"


def es6_number(value: float) -> str:
    """ECMAScript Number.prototype.toString of a finite double (RFC 8785 section 3.2.2.3)."""
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError("JSON numbers must be finite")
    if value == 0:
        return "0"
    if value < 0:
        return "-" + es6_number(-value)
    mantissa, _, exp_text = repr(value).partition("e")
    int_part, _, frac_part = mantissa.partition(".")
    all_digits = int_part + frac_part
    digits = all_digits.lstrip("0")
    # value = 0.<digits> * 10**n
    n = len(int_part) + (int(exp_text) if exp_text else 0) - (len(all_digits) - len(digits))
    digits = digits.rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * (-n) + digits
    e = n - 1
    head = digits[0] + ("." + digits[1:] if k > 1 else "")
    return f"{head}e{'+' if e >= 0 else '-'}{abs(e)}"


def canonical_json(value: Any) -> str:
    """Serialize a parsed JSON value as RFC 8785 canonical JSON text."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value) if abs(value) <= 2**53 else es6_number(float(value))
    if isinstance(value, float):
        return es6_number(value)
    if isinstance(value, str):
        return '"' + _NEEDS_ESCAPE.sub(_escape, value) + '"'
    if isinstance(value, list):
        return "[" + ",".join(canonical_json(v) for v in value) + "]"
    if isinstance(value, dict):
        keys = sorted(value, key=lambda s: s.encode("utf-16-be", "surrogatepass"))
        return (
            "{" + ",".join(canonical_json(k) + ":" + canonical_json(value[k]) for k in keys) + "}"
        )
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for k, v in pairs:
        if k in obj:
            raise ValueError(f"duplicate key {k!r}")
        obj[k] = v
    return obj


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_canonical_line(line: bytes) -> Any:
    """Parse one entry line; raise ValueError unless it is RFC 8785 canonical JSON."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("not valid UTF-8") from None
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except ValueError as exc:  # JSONDecodeError is a ValueError
        raise ValueError(f"not valid JSON ({exc})") from None
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    try:
        canonical = canonical_json(value).encode("utf-8")
    except (ValueError, OverflowError, UnicodeEncodeError) as exc:
        raise ValueError(f"not canonical JSON (RFC 8785): {exc}") from None
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    if canonical != line:
        raise ValueError("not canonical JSON (RFC 8785)")
    return value


# ---------------------------------------------------------------------------------------------
# Results


@dataclass
class Check:
    """One named check: status "ok", "fail" or "skip" (not run because of an earlier failure)."""

    name: str
    status: str
    detail: str
    index: int | None = None
    file: str | None = None

    @property
    def ok(self) -> bool:
        """True iff the check passed."""
        return self.status == "ok"


@dataclass
class Result:
    """The outcome of verifying one bundle."""

    path: str
    checks: list[Check] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    origin: str | None = None
    hash: str | None = None
    start_size: int | None = None
    end_size: int | None = None
    end_root: str | None = None
    key: str | None = None
    key_pinned: bool = False
    # "bundle" (an audit export) or "evidence" (an evidence pack).
    kind: str = "bundle"
    subject: str | None = None
    entries_checked: int = 0
    files_checked: int = 0

    @property
    def ok(self) -> bool:
        """True iff the bundle was readable and every check passed."""
        return self.error is None and bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def exit_code(self) -> int:
        """0 verified, 1 a check failed, 2 bad usage or unreadable bundle."""
        if self.error is not None:
            return 2
        return 0 if self.ok else 1

    @property
    def failures(self) -> list[Check]:
        """The checks that failed or could not run."""
        return [c for c in self.checks if not c.ok]

    @property
    def first_bad_index(self) -> int | None:
        """The lowest entry index a failed check could pin the fault on, if any."""
        found = [c.index for c in self.checks if not c.ok and c.index is not None]
        return min(found) if found else None

    @property
    def first_bad_file(self) -> str | None:
        """The first file a failed check names, if any."""
        return next((c.file for c in self.checks if not c.ok and c.file is not None), None)

    def add(
        self,
        name: str,
        status: str,
        detail: str,
        index: int | None = None,
        file: str | None = None,
    ) -> None:
        """Record a check outcome."""
        self.checks.append(Check(name, status, detail, index, file))

    def to_json(self) -> dict[str, Any]:
        """A JSON-serializable summary."""
        out: dict[str, Any] = {
            "bundle": self.path,
            "kind": self.kind,
            "ok": self.ok,
            "exit_code": self.exit_code,
            "error": self.error,
            "origin": self.origin,
            "hash": self.hash,
            "start_size": self.start_size,
            "end_size": self.end_size,
            "end_root": self.end_root,
            "key": self.key,
            "key_pinned": self.key_pinned,
            "first_bad_index": self.first_bad_index,
            "first_bad_file": self.first_bad_file,
            "warnings": list(self.warnings),
            "checks": [
                {
                    "name": c.name,
                    "status": c.status,
                    "ok": c.ok,
                    "detail": c.detail,
                    "index": c.index,
                    "file": c.file,
                }
                for c in self.checks
            ],
        }
        if self.kind == "evidence":
            out["subject"] = self.subject
            out["entries_checked"] = self.entries_checked
            out["files_checked"] = self.files_checked
        return out

    def report(self) -> str:
        """A human-readable report."""
        if self.kind == "evidence":
            return self._evidence_report()
        out = [f"Yuanjian audit bundle: {self.path}"]
        if self.origin is not None:
            out.append(
                f"  log {self.origin!r}, hash {self.hash}, entries [{self.start_size}, "
                f"{self.end_size}), key {self.key or '-'}"
            )
        for w in self.warnings:
            out.append(f"  WARNING: {w}")
        marks = {"ok": "[ OK ]", "fail": "[FAIL]", "skip": "[SKIP]"}
        for c in self.checks:
            out.append(f"  {marks.get(c.status, c.status)} {c.name}: {c.detail}")
        if self.error is not None:
            out.append(f"ERROR: {self.error}")
        elif self.ok:
            count = (self.end_size or 0) - (self.start_size or 0)
            out.append(f"VERIFIED: {count} entries, end root {self.end_root}")
        else:
            failed = ", ".join(c.name for c in self.failures)
            line = f"FAILED: {len(self.failures)} of {len(self.checks)} checks ({failed})"
            if self.first_bad_index is not None:
                line += f"; first entry at fault: index {self.first_bad_index}"
            out.append(line)
        return "\n".join(out)

    def _evidence_report(self) -> str:
        out = [f"Yuanjian evidence pack: {self.path}"]
        if self.origin is not None:
            out.append(
                f"  subject {self.subject or '-'}, log {self.origin!r}, hash {self.hash}, "
                f"checkpoint size {self.end_size}, key {self.key or '-'}"
            )
        for w in self.warnings:
            out.append(f"  WARNING: {w}")
        marks = {"ok": "[ OK ]", "fail": "[FAIL]", "skip": "[SKIP]"}
        for c in self.checks:
            out.append(f"  {marks.get(c.status, c.status)} {c.name}: {c.detail}")
        if self.error is not None:
            out.append(f"ERROR: {self.error}")
        elif self.ok:
            out.append(
                f"VERIFIED: {self.files_checked} files, {self.entries_checked} audit entries "
                f"proved against checkpoint {self.end_size} (root {self.end_root})"
            )
        else:
            failed = ", ".join(c.name for c in self.failures)
            line = f"FAILED: {len(self.failures)} of {len(self.checks)} checks ({failed})"
            if self.first_bad_file is not None:
                line += f"; first file at fault: {self.first_bad_file}"
            if self.first_bad_index is not None:
                line += f"; first entry at fault: index {self.first_bad_index}"
            out.append(line)
        return "\n".join(out)


class _Unreadable(Exception):
    """Bad usage or an unreadable bundle: exit status 2."""


@dataclass
class _Manifest:
    origin: str
    alg: str
    start: int
    end: int


# ---------------------------------------------------------------------------------------------
# The checks


def _is_uint(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _read_arg(value: Any, what: str) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    try:
        return Path(value).read_bytes()
    except (OSError, TypeError) as exc:
        raise _Unreadable(f"{what}: cannot read {value!r}: {exc}") from None


def _load_key_arg(key: Any) -> LogKey:
    text = key
    if isinstance(key, (bytes, bytearray)):
        text = bytes(key).decode("utf-8", "replace")
    elif not isinstance(key, str) or os.path.isfile(key):
        text = _read_arg(key, "--key").decode("utf-8", "replace")
    try:
        return parse_vkey(text.strip())
    except ValueError as exc:
        raise _Unreadable(f"--key: {exc}") from None


def _check_manifest(bundle: Path, res: Result) -> _Manifest | None:
    path = bundle / "manifest.json"
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise _Unreadable(f"manifest.json: cannot read: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise _Unreadable(f"manifest.json: not valid JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise _Unreadable("manifest.json: not a JSON object")
    problems = []
    if manifest.get("format") != BUNDLE_FORMAT:
        problems.append(f"format is {manifest.get('format')!r}, expected {BUNDLE_FORMAT!r}")
    origin = manifest.get("origin")
    if not isinstance(origin, str) or not origin or "\n" in origin:
        problems.append("origin must be a non-empty one-line string")
    alg = manifest.get("hash")
    if alg not in HASHERS:
        problems.append(f"hash {alg!r} is not one of {sorted(HASHERS)}")
    start, end = manifest.get("start_size"), manifest.get("end_size")
    if not _is_uint(start) or not _is_uint(end):
        problems.append("start_size and end_size must be non-negative integers")
    elif start > end:
        problems.append(f"start_size {start} is larger than end_size {end}")
    exported = manifest.get("exported_at")
    try:
        if not isinstance(exported, str):
            raise ValueError
        datetime.fromisoformat(exported[:-1] + "+00:00" if exported.endswith("Z") else exported)
    except ValueError:
        problems.append(f"exported_at {exported!r} is not an ISO-8601 date-time")
    if problems:
        res.add("manifest", "fail", "; ".join(problems))
        return None
    res.origin, res.hash, res.start_size, res.end_size = origin, alg, start, end
    res.add(
        "manifest",
        "ok",
        f"{BUNDLE_FORMAT}, hash {alg}, entries [{start}, {end}), exported {exported}",
    )
    return _Manifest(origin, alg, start, end)


def _choose_key(bundle: Path, pinned: LogKey | None, res: Result) -> LogKey | None:
    bundle_key: LogKey | None = None
    problem = None
    try:
        bundle_key = parse_vkey((bundle / "verifier.key").read_text("utf-8").strip())
    except OSError:
        problem = "verifier.key is missing"
    except (ValueError, UnicodeDecodeError) as exc:
        problem = f"verifier.key: {exc}"
    if pinned is not None:
        res.key, res.key_pinned = pinned.text, True
        if bundle_key is not None and bundle_key != pinned:
            res.warnings.append(
                f"the bundle's verifier.key ({bundle_key.text}) differs from the pinned --key "
                f"({pinned.text}); only the pinned key is trusted"
            )
        res.add("verifier_key", "ok", f"log key {pinned.text}, pinned with --key")
        return pinned
    if bundle_key is None:
        res.add("verifier_key", "fail", f"{problem}, and no --key was given")
        return None
    res.key = bundle_key.text
    res.warnings.append(
        f"the log key {bundle_key.text} was taken from the bundle itself and NOT independently "
        "pinned: pass --key with the key you hold for this log"
    )
    res.add("verifier_key", "ok", f"log key {bundle_key.text}, from the bundle (not pinned)")
    return bundle_key


def _check_checkpoint(
    bundle: Path, filename: str, name: str, key: LogKey, size: int, res: Result
) -> SignedCheckpoint | None:
    try:
        data = (bundle / filename).read_bytes()
    except OSError:
        res.add(name, "fail", f"{filename} is missing or unreadable")
        return None
    try:
        cp = open_checkpoint(data, key)
    except ValueError as exc:
        res.add(name, "fail", f"{filename}: {exc}")
        return None
    if cp.size != size:
        res.add(name, "fail", f"{filename} is for tree size {cp.size}, the manifest says {size}")
        return None
    extra = f"; {cp.other_signatures} other signature(s) ignored" if cp.other_signatures else ""
    root64 = base64.b64encode(cp.root).decode("ascii")
    res.add(name, "ok", f"{filename}: size {cp.size}, root {root64}, signed by {key.text}{extra}")
    return cp


def _decode_hashes(items: Any, what: str) -> list[bytes]:
    if not isinstance(items, list):
        raise ValueError(f"{what} must be a list of base64 hashes")
    out = []
    for n, item in enumerate(items):
        raw = _b64decode(item, f"{what}[{n}]")
        if len(raw) != 32:
            raise ValueError(f"{what}[{n}] is not a 32-byte hash")
        out.append(raw)
    return out


def _check_frontier(
    bundle: Path, m: _Manifest, tree: _Tree, start_root: bytes | None, res: Result
) -> list[bytes] | None:
    try:
        doc = json.loads((bundle / "frontier.json").read_bytes().decode("utf-8"))
    except OSError:
        res.add("frontier", "fail", "frontier.json is missing or unreadable")
        return None
    except ValueError as exc:
        res.add("frontier", "fail", f"frontier.json is not valid JSON: {exc}")
        return None
    try:
        if not isinstance(doc, dict) or doc.get("size") != m.start or not _is_uint(doc.get("size")):
            raise ValueError(f"frontier.json size must be start_size {m.start}")
        frontier = _decode_hashes(doc.get("hashes"), "frontier.json hashes")
        if len(frontier) != _popcount(m.start):
            raise ValueError(
                f"a tree of size {m.start} has {_popcount(m.start)} frontier hashes, "
                f"frontier.json has {len(frontier)}"
            )
    except ValueError as exc:
        res.add("frontier", "fail", str(exc))
        return None
    root = tree.root(frontier)
    if start_root is None:
        res.add("frontier", "skip", "no verified start checkpoint to compare the frontier with")
    elif root != start_root:
        res.add(
            "frontier",
            "fail",
            "the frontier's root does not equal the start checkpoint's root "
            f"({base64.b64encode(root).decode()} != {base64.b64encode(start_root).decode()})",
        )
        return frontier  # still usable to hash the entries; end_root will tell
    else:
        res.add("frontier", "ok", f"{len(frontier)} hash(es) reproduce the start root")
    return frontier


class _IndexRuns:
    """Groups consecutive index mismatches with the same offset into one message.

    Deleting or inserting one entry shifts every later index by the same amount; reporting
    that once ("entries 47-99: every index is 1 too high") is clearer than 53 lines.
    """

    def __init__(self, problems: list[tuple[int, str]]) -> None:
        self.problems = problems
        self.run: list[int] | None = None  # [delta, first position, first line, last position]

    def add(self, position: int, line_no: int, index: int) -> None:
        delta = index - position
        run = self.run
        if run is not None and run[0] == delta and run[3] == position - 1:
            run[3] = position
            return
        self.flush()
        self.run = [delta, position, line_no, position]

    def flush(self) -> None:
        if self.run is None:
            return
        delta, first, line_no, last = self.run
        self.run = None
        if first == last:
            text = (
                f"line {line_no} (entry {first}): index is {first + delta}, expected {first} "
                "(entries must be dense and in order)"
            )
        else:
            way = "high" if delta > 0 else "low"
            cause = "missing" if delta > 0 else "inserted or repeated"
            text = (
                f"lines {line_no}-{line_no + last - first} (entries {first}-{last}): every index "
                f"is {abs(delta)} too {way} (entries {cause} at entry {first})"
            )
        self.problems.append((first, text))


def _check_entries(
    bundle: Path,
    m: _Manifest,
    tree: _Tree,
    frontier: list[bytes] | None,
    want_roots_at: tuple[int, ...],
    res: Result,
) -> tuple[bytes | None, dict[int, bytes]]:
    """Check every entry line; return (root after all lines, {size: root} for want_roots_at)."""
    problems: list[tuple[int, str]] = []
    runs = _IndexRuns(problems)
    stack = list(frontier) if frontier is not None else None
    size = m.start
    roots: dict[int, bytes] = {}
    if stack is not None and m.start in want_roots_at:
        roots[m.start] = tree.root(stack)
    expected_count = m.end - m.start
    count = 0
    try:
        f = open(bundle / "entries.jsonl", "rb")  # noqa: SIM115 - streamed below
    except OSError:
        res.add("entries", "fail", "entries.jsonl is missing or unreadable")
        return None, roots
    with f:
        for raw in f:
            position = m.start + count
            count += 1
            line = raw[:-1] if raw.endswith(b"\n") else raw
            if line is raw:
                problems.append((position, f"line {count}: no trailing newline"))
            if stack is not None:
                tree.push(stack, size, tree.leaf(line))
                size += 1
                if size in want_roots_at:
                    roots[size] = tree.root(stack)
            try:
                doc = parse_canonical_line(line)
                if not isinstance(doc, dict):
                    raise ValueError("not a JSON object")
                idx = doc.get("index")
                if not isinstance(idx, int) or isinstance(idx, bool):
                    raise ValueError('no integer "index" field')
            except ValueError as exc:
                runs.flush()
                problems.append((position, f"line {count} (entry {position}): {exc}"))
                continue
            if idx != position:
                runs.add(position, count, idx)
            else:
                runs.flush()
    runs.flush()
    if count != expected_count:
        at = m.start + min(count, expected_count)
        problems.append(
            (at, f"{count} line(s) for entries [{m.start}, {m.end}), expected {expected_count}")
        )
    if problems:
        problems.sort(key=lambda p: p[0])
        first = problems[0][0]
        shown = [p[1] for p in problems[:MAX_LISTED_PROBLEMS]]
        more = len(problems) - len(shown)
        detail = "; ".join(shown) + (f"; and {more} more problem(s)" if more > 0 else "")
        res.add("entries", "fail", detail, index=first)
    else:
        res.add("entries", "ok", f"{count} canonical entries with dense indexes")
    return (tree.root(stack) if stack is not None else None), roots


def _load_proof(doc: Any, old: int, new: int, what: str) -> list[bytes]:
    if not isinstance(doc, dict):
        raise ValueError(f"{what} must be a JSON object")
    if doc.get("old_size") != old or doc.get("new_size") != new:
        raise ValueError(
            f"{what} is for sizes {doc.get('old_size')!r} -> {doc.get('new_size')!r}, "
            f"expected {old} -> {new}"
        )
    return _decode_hashes(doc.get("proof"), f"{what} proof")


def _check_consistency(
    bundle: Path,
    m: _Manifest,
    tree: _Tree,
    start_root: bytes | None,
    end_root: bytes | None,
    res: Result,
) -> None:
    try:
        doc = json.loads((bundle / "consistency.json").read_bytes().decode("utf-8"))
        proof = _load_proof(doc, m.start, m.end, "consistency.json")
    except OSError:
        res.add("consistency", "fail", "consistency.json is missing or unreadable")
        return
    except ValueError as exc:
        res.add("consistency", "fail", str(exc))
        return
    if start_root is None or end_root is None:
        res.add("consistency", "skip", "needs both verified checkpoints")
    elif tree.verify_consistency(m.start, m.end, start_root, end_root, proof):
        res.add(
            "consistency", "ok", f"proof of {len(proof)} hash(es) verifies {m.start} -> {m.end}"
        )
    else:
        res.add(
            "consistency",
            "fail",
            f"the consistency proof does not verify start ({m.start}) -> end ({m.end})",
        )


def _check_previous(
    prev: SignedCheckpoint | None,
    m: _Manifest,
    tree: _Tree,
    start_root: bytes | None,
    roots: dict[int, bytes],
    proof_doc: Any,
    res: Result,
) -> None:
    if prev is None:
        return
    p = prev.size
    if p == m.start:
        if start_root is None:
            res.add("previous", "skip", "no verified start checkpoint to compare with")
        elif prev.root == start_root:
            res.add("previous", "ok", f"the start checkpoint equals the previous one (size {p})")
        else:
            res.add(
                "previous",
                "fail",
                f"the previous checkpoint and the start checkpoint have the same size {p} but "
                "different roots: the log has been forked or rewritten",
            )
    elif p < m.start:
        if proof_doc is None:
            res.add(
                "previous",
                "fail",
                f"the previous checkpoint (size {p}) is older than the start ({m.start}) and no "
                "consistency proof was supplied (consistency-previous.json or --previous-proof)",
            )
            return
        try:
            proof = _load_proof(proof_doc, p, m.start, "previous consistency proof")
        except ValueError as exc:
            res.add("previous", "fail", str(exc))
            return
        if start_root is None:
            res.add("previous", "skip", "no verified start checkpoint to prove consistency to")
        elif tree.verify_consistency(p, m.start, prev.root, start_root, proof):
            res.add("previous", "ok", f"the start checkpoint is consistent with size {p}")
        else:
            res.add(
                "previous",
                "fail",
                f"the consistency proof from the previous checkpoint (size {p}) to the start "
                f"({m.start}) does not verify: the log has been forked or rewritten",
            )
    elif p <= m.end:
        got = roots.get(p)
        if got is None:
            res.add("previous", "skip", "the entries could not be hashed (frontier unusable)")
        elif got == prev.root:
            res.add("previous", "ok", f"the bundle's entries reproduce the previous root at {p}")
        else:
            res.add(
                "previous",
                "fail",
                f"the bundle's entries do not reproduce the previous checkpoint's root at size "
                f"{p}: the log has been forked or rewritten",
            )
    else:
        res.add(
            "previous",
            "fail",
            f"the previous checkpoint (size {p}) is newer than this bundle's end ({m.end})",
        )


def _run(
    bundle: Path,
    key: Any,
    previous: Any,
    previous_proof: Any,
    res: Result,
) -> None:
    if not bundle.is_dir():
        raise _Unreadable(f"{bundle}: not a directory")
    pinned = _load_key_arg(key) if key is not None else None
    prev_data = _read_arg(previous, "--previous") if previous is not None else None
    proof_doc: Any = None
    if previous_proof is not None:
        try:
            proof_doc = json.loads(_read_arg(previous_proof, "--previous-proof").decode("utf-8"))
        except ValueError as exc:
            raise _Unreadable(f"--previous-proof: not valid JSON: {exc}") from None
    m = _check_manifest(bundle, res)
    if m is None:
        return
    tree = _Tree(m.alg)
    log_key = _choose_key(bundle, pinned, res)
    if log_key is None:
        return
    if log_key.name != m.origin:
        res.warnings.append(
            f"the log key name {log_key.name!r} differs from the origin {m.origin!r}"
        )

    end_cp = _check_checkpoint(bundle, "checkpoint-end.txt", "checkpoint_end", log_key, m.end, res)
    start_cp: SignedCheckpoint | None = None
    start_root: bytes | None = None
    if m.start == 0:
        start_root = tree.empty
        if (bundle / "checkpoint-start.txt").exists():
            start_cp = _check_checkpoint(
                bundle, "checkpoint-start.txt", "checkpoint_start", log_key, 0, res
            )
            if start_cp is not None and start_cp.root != tree.empty:
                res.add("checkpoint_start", "fail", 'an empty tree\'s root must be H("")')
    else:
        start_cp = _check_checkpoint(
            bundle, "checkpoint-start.txt", "checkpoint_start", log_key, m.start, res
        )
        start_root = start_cp.root if start_cp is not None else None

    prev_cp: SignedCheckpoint | None = None
    if prev_data is not None:
        try:
            prev_cp = open_checkpoint(prev_data, log_key)
        except ValueError as exc:
            res.add("previous", "fail", f"previous checkpoint: {exc}")

    wrong = [
        f"{label} has origin {cp.origin!r}"
        for label, cp in (
            ("checkpoint-start", start_cp),
            ("checkpoint-end", end_cp),
            ("previous", prev_cp),
        )
        if cp is not None and cp.origin != m.origin
    ]
    if wrong:
        res.add("origin", "fail", f"manifest origin is {m.origin!r} but " + ", ".join(wrong))
    else:
        res.add("origin", "ok", f"every checkpoint is for {m.origin!r}")

    frontier = _check_frontier(bundle, m, tree, start_root, res)
    want = (prev_cp.size,) if prev_cp is not None and m.start <= prev_cp.size <= m.end else ()
    computed, roots = _check_entries(bundle, m, tree, frontier, want, res)
    end_root = end_cp.root if end_cp is not None else None
    if end_root is not None:
        res.end_root = base64.b64encode(end_root).decode("ascii")
    if computed is None:
        res.add("end_root", "skip", "the entries could not be hashed (frontier unusable)")
    elif end_root is None:
        res.add("end_root", "skip", "no verified end checkpoint to compare with")
    elif computed == end_root:
        res.add("end_root", "ok", "frontier + entries reproduce the end checkpoint's root exactly")
    else:
        res.add(
            "end_root",
            "fail",
            "frontier + entries do not reproduce the end checkpoint's root: entries were "
            "altered, added, removed or reordered",
        )
    _check_consistency(bundle, m, tree, start_root, end_root, res)
    if prev_cp is not None:
        if proof_doc is None and prev_cp.size < m.start:
            try:
                path = bundle / "consistency-previous.json"
                proof_doc = json.loads(path.read_bytes().decode("utf-8"))
            except OSError:
                proof_doc = None
            except ValueError as exc:
                res.add("previous", "fail", f"consistency-previous.json is not valid JSON: {exc}")
                return
        _check_previous(prev_cp, m, tree, start_root, roots, proof_doc, res)


def verify_bundle(
    path: str | os.PathLike[str],
    key: str | bytes | os.PathLike[str] | None = None,
    previous: str | bytes | os.PathLike[str] | None = None,
    previous_proof: str | os.PathLike[str] | None = None,
) -> Result:
    """Verify the bundle (a directory, or a .zip of one) at path; key is a verifier key or a
    file holding one."""
    res = Result(path=str(path))
    try:
        p = Path(path)
        if p.is_file() and zipfile.is_zipfile(p):
            with tempfile.TemporaryDirectory(prefix="yuanjian-bundle-") as tmp:
                _run(_extract(p, Path(tmp)), key, previous, previous_proof, res)
        else:
            _run(p, key, previous, previous_proof, res)
    except _Unreadable as exc:
        res.error = str(exc)
    except Exception as exc:  # a bundle that crashes the verifier is never "verified"
        res.error = f"could not verify the bundle: {type(exc).__name__}: {exc}"
    return res


# ---------------------------------------------------------------------------------------------
# Zip archives (log submissions and evidence packs are downloaded as .zip files)


class _Archive:
    """The files of a .zip or a directory by relative POSIX path, below the one folder that
    holds manifest.json (archives keep their files in one top-level folder)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.zip: zipfile.ZipFile | None = None
        self.root: Path | None = None
        self.prefix = ""
        if path.is_dir():
            self.root = path
            names = [p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()]
        elif path.is_file() and zipfile.is_zipfile(path):
            try:
                self.zip = zipfile.ZipFile(path)
            except (OSError, zipfile.BadZipFile) as exc:
                raise _Unreadable(f"{path}: not a readable zip file: {exc}") from None
            names = []
            for info in self.zip.infolist():
                name = info.filename
                if name.endswith("/"):
                    continue
                if name.startswith("/") or "\\" in name or ".." in name.split("/"):
                    raise _Unreadable(f"{path}: unsafe member name {name!r}")
                if name in names:
                    raise _Unreadable(f"{path}: member {name!r} appears twice")
                names.append(name)
        else:
            raise _Unreadable(f"{path}: neither a directory nor a .zip file")
        if "manifest.json" not in names:
            tops = [
                n[: -len("manifest.json")]
                for n in names
                if re.fullmatch(r"[^/]+/manifest\.json", n)
            ]
            if len(tops) != 1:
                raise _Unreadable(f"{path}: no manifest.json (at the top or in one folder)")
            self.prefix = tops[0]
            outside = [n for n in names if not n.startswith(self.prefix)]
            if outside:
                raise _Unreadable(f"{path}: {outside[0]!r} lies outside the folder {self.prefix!r}")
        self.names = sorted(n[len(self.prefix) :] for n in names)

    def read(self, name: str) -> bytes:
        """The bytes of one file; OSError if absent."""
        if name not in self.names:
            raise FileNotFoundError(name)
        if self.zip is not None:
            try:
                return self.zip.read(self.prefix + name)
            except (zipfile.BadZipFile, ValueError, RuntimeError) as exc:
                raise OSError(f"{name}: unreadable in the zip ({exc})") from None
        assert self.root is not None
        return (self.root / name).read_bytes()

    def sha256(self, name: str) -> str:
        """Hex SHA-256 of one file, streamed."""
        if name not in self.names:
            raise FileNotFoundError(name)
        h = hashlib.sha256()
        try:
            if self.zip is not None:
                fh = self.zip.open(self.prefix + name)
            else:
                assert self.root is not None
                fh = (self.root / name).open("rb")
            with fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        except (zipfile.BadZipFile, ValueError, RuntimeError) as exc:
            raise OSError(f"{name}: unreadable in the zip ({exc})") from None
        return h.hexdigest()

    def close(self) -> None:
        """Close the zip file."""
        if self.zip is not None:
            self.zip.close()


def _extract(path: Path, into: Path) -> Path:
    """Unpack a bundle .zip (member names checked) and return the bundle directory."""
    archive = _Archive(path)
    try:
        for name in archive.names:
            target = into / name
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                target.write_bytes(archive.read(name))
            except OSError as exc:
                raise _Unreadable(f"{path}: {exc}") from None
    finally:
        archive.close()
    return into


# ---------------------------------------------------------------------------------------------
# Evidence packs
#
# An evidence pack (.zip, files in one top-level folder) documents one component or licence:
#
#     manifest.json         {"format": "yuanjian-evidence-pack/1", "subject": {"type", "id"},
#                            "origin", "hash", "checkpoint_size", "created_at",
#                            "contents_sha256", "files": [{"path", "sha256", "bytes"}, ...]}
#                           (every other file of the pack, with its SHA-256)
#     contents.json         {"format", "subject", "files": {path: sha256}}: every file outside
#                           audit/; its SHA-256 is sealed in the log by the pack's own
#                           "evidence.create" entry, so records cannot be edited unnoticed even
#                           together with the manifest
#     records/*.json        the objects (specs, reviews, samples' metadata, builds, licences...)
#     audit/entries.jsonl   every audit entry about them, canonical JSON as in the log
#     audit/proofs.json     {"tree_size": N, "proofs": {"<index>": [base64, ...]}}: RFC 9162
#                           inclusion proof of each entry in the tree of size N
#     audit/checkpoint.txt  the log's signed checkpoint of size N
#     audit/verifier.key    the log's verifier key
#
# Checks: the manifest is sane; every file matches its SHA-256 and no file is unlisted; the
# checkpoint is signed by the log key (--key, else audit/verifier.key with a warning); every
# entry is canonical JSON and its leaf hash and inclusion proof reproduce the checkpoint root;
# contents.json matches the manifest and is sealed by a proved "evidence.create" entry.

EVIDENCE_FORMAT = "yuanjian-evidence-pack/1"
EVIDENCE_SEAL_ACTION = "evidence.create"
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass
class _PackManifest:
    subject: dict[str, str]
    origin: str
    alg: str
    size: int
    contents_sha256: str
    files: dict[str, str]


def _safe_member(name: Any) -> bool:
    return (
        isinstance(name, str)
        and bool(name)
        and not name.startswith("/")
        and "\\" not in name
        and ".." not in name.split("/")
        and name != "manifest.json"
    )


def _pack_manifest(pack: _Archive, res: Result) -> _PackManifest | None:
    try:
        doc = json.loads(pack.read("manifest.json").decode("utf-8"))
    except OSError as exc:
        raise _Unreadable(f"manifest.json: cannot read: {exc}") from None
    except ValueError as exc:
        raise _Unreadable(f"manifest.json: not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise _Unreadable("manifest.json: not a JSON object")
    problems = []
    if doc.get("format") != EVIDENCE_FORMAT:
        problems.append(f"format is {doc.get('format')!r}, expected {EVIDENCE_FORMAT!r}")
    subject = doc.get("subject")
    if (
        not isinstance(subject, dict)
        or not isinstance(subject.get("type"), str)
        or not isinstance(subject.get("id"), str)
    ):
        problems.append("subject must be an object with string type and id")
        subject = {}
    origin = doc.get("origin")
    if not isinstance(origin, str) or not origin or "\n" in origin:
        problems.append("origin must be a non-empty one-line string")
    alg = doc.get("hash")
    if alg not in HASHERS:
        problems.append(f"hash {alg!r} is not one of {sorted(HASHERS)}")
    size = doc.get("checkpoint_size")
    if not _is_uint(size) or size == 0:
        problems.append("checkpoint_size must be a positive integer")
    contents = doc.get("contents_sha256")
    if not isinstance(contents, str) or not _HEX64.fullmatch(contents):
        problems.append("contents_sha256 must be 64 lowercase hex digits")
    files: dict[str, str] = {}
    items = doc.get("files")
    if not isinstance(items, list):
        problems.append("files must be a list")
        items = []
    for n, item in enumerate(items):
        path = item.get("path") if isinstance(item, dict) else None
        digest = item.get("sha256") if isinstance(item, dict) else None
        if not _safe_member(path):
            problems.append(f"files[{n}]: path {path!r} is not a safe relative path")
        elif path in files:
            problems.append(f"files[{n}]: {path} is listed twice")
        elif not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            problems.append(f"files[{n}] ({path}): sha256 must be 64 lowercase hex digits")
        else:
            files[path] = digest
    if problems:
        res.add("manifest", "fail", "; ".join(problems), file="manifest.json")
        return None
    res.origin, res.hash, res.end_size = origin, alg, size
    res.subject = f"{subject['type']} {subject['id']}"
    res.add(
        "manifest",
        "ok",
        f"{EVIDENCE_FORMAT} for {res.subject}, hash {alg}, {len(files)} files, "
        f"checkpoint size {size}, created {doc.get('created_at')}",
    )
    return _PackManifest(
        {"type": subject["type"], "id": subject["id"]}, origin, alg, size, contents, files
    )


def _check_pack_files(pack: _Archive, m: _PackManifest, res: Result) -> None:
    problems: list[tuple[str, str]] = []
    ok = 0
    for path, want in m.files.items():
        try:
            got = pack.sha256(path)
        except FileNotFoundError:
            problems.append((path, f"{path}: listed in the manifest but missing"))
            continue
        except OSError as exc:
            problems.append((path, f"{path}: {exc}"))
            continue
        if got != want:
            problems.append(
                (path, f"{path}: SHA-256 {got} differs from the manifest's {want} (altered)")
            )
        else:
            ok += 1
    for name in pack.names:
        if name != "manifest.json" and name not in m.files:
            problems.append((name, f"{name}: not listed in the manifest"))
    res.files_checked = ok
    if problems:
        shown = [p[1] for p in problems[:MAX_LISTED_PROBLEMS]]
        more = len(problems) - len(shown)
        detail = "; ".join(shown) + (f"; and {more} more problem(s)" if more > 0 else "")
        res.add("files", "fail", detail, file=problems[0][0])
    else:
        res.add("files", "ok", f"{ok} files match their SHA-256 in the manifest")


def _pick_key(
    found: LogKey | None, problem: str | None, pinned: LogKey | None, where: str, res: Result
) -> LogKey | None:
    if pinned is not None:
        res.key, res.key_pinned = pinned.text, True
        if found is not None and found != pinned:
            res.warnings.append(
                f"the {where} ({found.text}) differs from the pinned --key ({pinned.text}); "
                "only the pinned key is trusted"
            )
        res.add("verifier_key", "ok", f"log key {pinned.text}, pinned with --key")
        return pinned
    if found is None:
        res.add("verifier_key", "fail", f"{problem}, and no --key was given", file=where)
        return None
    res.key = found.text
    res.warnings.append(
        f"the log key {found.text} was taken from the {where} and NOT independently "
        "pinned: pass --key with the key you hold for this log"
    )
    res.add("verifier_key", "ok", f"log key {found.text}, from {where} (not pinned)")
    return found


def _pack_key(pack: _Archive, pinned: LogKey | None, res: Result) -> LogKey | None:
    found: LogKey | None = None
    problem = None
    try:
        found = parse_vkey(pack.read("audit/verifier.key").decode("utf-8").strip())
    except OSError:
        problem = "audit/verifier.key is missing"
    except (ValueError, UnicodeDecodeError) as exc:
        problem = f"audit/verifier.key: {exc}"
    return _pick_key(found, problem, pinned, "audit/verifier.key", res)


def _pack_checkpoint(
    pack: _Archive, m: _PackManifest, key: LogKey, res: Result
) -> SignedCheckpoint | None:
    name = "audit/checkpoint.txt"
    try:
        cp = open_checkpoint(pack.read(name), key)
    except OSError:
        res.add("checkpoint", "fail", f"{name} is missing or unreadable", file=name)
        return None
    except ValueError as exc:
        res.add("checkpoint", "fail", f"{name}: {exc}", file=name)
        return None
    if cp.size != m.size:
        res.add(
            "checkpoint",
            "fail",
            f"{name} is for tree size {cp.size}, the manifest says {m.size}",
            file=name,
        )
        return None
    if cp.origin != m.origin:
        res.add(
            "checkpoint",
            "fail",
            f"{name} has origin {cp.origin!r}, the manifest says {m.origin!r}",
            file=name,
        )
        return None
    root64 = base64.b64encode(cp.root).decode("ascii")
    res.end_root = root64
    res.add("checkpoint", "ok", f"{name}: size {cp.size}, root {root64}, signed by {key.text}")
    return cp


def _check_pack_entries(
    pack: _Archive, m: _PackManifest, tree: _Tree, cp: SignedCheckpoint | None, res: Result
) -> list[tuple[int, dict[str, Any]]]:
    """Check every entry line and its inclusion proof; return the proved entries."""
    name = "audit/entries.jsonl"
    try:
        doc = json.loads(pack.read("audit/proofs.json").decode("utf-8"))
        if not isinstance(doc, dict) or doc.get("tree_size") != m.size:
            raise ValueError(f"tree_size must be the checkpoint size {m.size}")
        raw_proofs = doc.get("proofs")
        if not isinstance(raw_proofs, dict):
            raise ValueError("proofs must be an object keyed by entry index")
        proofs = {k: _decode_hashes(v, f"proofs[{k}]") for k, v in raw_proofs.items()}
    except OSError:
        res.add("entries", "fail", "audit/proofs.json is missing or unreadable", file=name)
        return []
    except ValueError as exc:
        res.add("entries", "fail", f"audit/proofs.json: {exc}", file="audit/proofs.json")
        return []
    try:
        data = pack.read(name)
    except OSError:
        res.add("entries", "fail", f"{name} is missing or unreadable", file=name)
        return []
    problems: list[tuple[int, str]] = []
    proved: list[tuple[int, dict[str, Any]]] = []
    seen: set[str] = set()
    last = -1
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    elif lines:
        problems.append((m.size, f"{name}: no trailing newline"))
    for n, line in enumerate(lines, 1):
        try:
            entry = parse_canonical_line(line)
            if not isinstance(entry, dict):
                raise ValueError("not a JSON object")
            idx = entry.get("index")
            if not isinstance(idx, int) or isinstance(idx, bool) or idx < 0:
                raise ValueError('no integer "index" field')
        except ValueError as exc:
            problems.append((last + 1, f"{name} line {n}: {exc}"))
            continue
        where = f"{name} line {n} (entry {idx})"
        if idx <= last:
            problems.append((idx, f"{where}: indexes must increase (previous {last})"))
            continue
        last = idx
        if idx >= m.size:
            problems.append((idx, f"{where}: beyond the checkpoint's tree size {m.size}"))
            continue
        proof = proofs.get(str(idx))
        seen.add(str(idx))
        if proof is None:
            problems.append((idx, f"{where}: no inclusion proof in audit/proofs.json"))
            continue
        if cp is None:
            continue
        if not tree.verify_inclusion(idx, m.size, tree.leaf(line), proof, cp.root):
            problems.append(
                (
                    idx,
                    f"{where}: the leaf hash and inclusion proof do not reproduce the "
                    "checkpoint's root: the entry was altered or is not in the log",
                )
            )
            continue
        proved.append((idx, entry))
    for k in sorted(set(proofs) - seen):
        problems.append((m.size, f"audit/proofs.json: a proof for entry {k} has no entry line"))
    res.entries_checked = len(proved)
    if problems:
        problems.sort(key=lambda p: p[0])
        shown = [p[1] for p in problems[:MAX_LISTED_PROBLEMS]]
        more = len(problems) - len(shown)
        detail = "; ".join(shown) + (f"; and {more} more problem(s)" if more > 0 else "")
        first = problems[0][0]
        res.add("entries", "fail", detail, index=first if first < m.size else None, file=name)
    elif cp is None:
        res.add("entries", "skip", "no verified checkpoint to prove the entries against")
    else:
        res.add(
            "entries",
            "ok",
            f"{len(proved)} canonical entries; leaf hashes and RFC 9162 inclusion proofs "
            f"reproduce the checkpoint root",
        )
    return proved


def _check_contents(
    pack: _Archive, m: _PackManifest, proved: list[tuple[int, dict[str, Any]]], res: Result
) -> None:
    name = "contents.json"
    try:
        raw = pack.read(name)
        doc = json.loads(raw.decode("utf-8"))
    except OSError:
        res.add("contents", "fail", f"{name} is missing or unreadable", file=name)
        return
    except ValueError as exc:
        res.add("contents", "fail", f"{name} is not valid JSON: {exc}", file=name)
        return
    digest = hashlib.sha256(raw).hexdigest()
    problems = []
    if digest != m.contents_sha256:
        problems.append(f"its SHA-256 {digest} differs from the manifest's contents_sha256")
    files = doc.get("files") if isinstance(doc, dict) else None
    if not isinstance(doc, dict) or doc.get("format") != EVIDENCE_FORMAT:
        problems.append(f"format must be {EVIDENCE_FORMAT!r}")
    elif doc.get("subject") != m.subject:
        problems.append(f"subject {doc.get('subject')!r} differs from the manifest's")
    if not isinstance(files, dict):
        problems.append("files must be an object of path: sha256")
        files = {}
    for path, want in files.items():
        if m.files.get(path) != want:
            problems.append(f"{path}: SHA-256 differs from the manifest's (or not listed)")
    for path in m.files:
        if not path.startswith("audit/") and path != name and path not in files:
            problems.append(f"{path}: not covered by contents.json")
    if problems:
        res.add(
            "contents", "fail", f"{name}: " + "; ".join(problems[:MAX_LISTED_PROBLEMS]), file=name
        )
        return
    seal = next(
        (
            idx
            for idx, e in proved
            if e.get("action") == EVIDENCE_SEAL_ACTION
            and e.get("outcome") == "allowed"
            and e.get("object") == m.subject
            and isinstance(e.get("detail"), dict)
            and e["detail"].get("contents_sha256") == digest
        ),
        None,
    )
    if seal is None:
        res.add(
            "contents",
            "fail",
            f"no proved audit entry ({EVIDENCE_SEAL_ACTION!r} of {m.subject['type']} "
            f"{m.subject['id']}) seals {name} (SHA-256 {digest}): the records are not bound "
            "to the log",
            file=name,
        )
        return
    res.add(
        "contents",
        "ok",
        f"{name} covers {len(files)} files and is sealed by audit entry {seal}",
        index=None,
    )


def _check_calls(pack: _Archive, proved: list[tuple[int, dict[str, Any]]], res: Result) -> None:
    """audit/calls.json (optional) only indexes proved entries, and says what they say."""
    name = "audit/calls.json"
    if name not in pack.names:
        return
    try:
        items = json.loads(pack.read(name).decode("utf-8"))
        if not isinstance(items, list):
            raise ValueError("not a JSON list")
    except (OSError, ValueError) as exc:
        res.add("calls", "fail", f"{name}: {exc}", file=name)
        return
    by_index = dict(proved)
    for n, item in enumerate(items):
        idx = item.get("index") if isinstance(item, dict) else None
        entry = by_index.get(idx) if isinstance(idx, int) else None
        if entry is None:
            res.add("calls", "fail", f"{name}[{n}]: not a proved entry of the pack", file=name)
            return
        same = all(
            item.get(k) == entry.get(k) for k in ("action", "outcome", "detail", "purpose")
        ) and item.get("licence_id") == (entry.get("object") or {}).get("id")
        if not same:
            res.add(
                "calls",
                "fail",
                f"{name}[{n}] differs from audit entry {idx} it names",
                index=idx,
                file=name,
            )
            return
    res.add("calls", "ok", f"{len(items)} call(s) listed, each one a proved entry")


def _run_evidence(path: Path, key: Any, res: Result) -> None:
    pinned = _load_key_arg(key) if key is not None else None
    pack = _Archive(path)
    try:
        m = _pack_manifest(pack, res)
        if m is None:
            return
        tree = _Tree(m.alg)
        _check_pack_files(pack, m, res)
        log_key = _pack_key(pack, pinned, res)
        if log_key is None:
            return
        if log_key.name != m.origin:
            res.warnings.append(
                f"the log key name {log_key.name!r} differs from the origin {m.origin!r}"
            )
        cp = _pack_checkpoint(pack, m, log_key, res)
        proved = _check_pack_entries(pack, m, tree, cp, res)
        _check_contents(pack, m, proved, res)
        _check_calls(pack, proved, res)
    finally:
        pack.close()


def verify_evidence(
    path: str | os.PathLike[str], key: str | bytes | os.PathLike[str] | None = None
) -> Result:
    """Verify the evidence pack (.zip or unpacked directory) at path."""
    res = Result(path=str(path), kind="evidence")
    try:
        _run_evidence(Path(path), key, res)
    except _Unreadable as exc:
        res.error = str(exc)
    except Exception as exc:  # a pack that crashes the verifier is never "verified"
        res.error = f"could not verify the evidence pack: {type(exc).__name__}: {exc}"
    return res


def is_evidence_pack(path: str | os.PathLike[str]) -> bool:
    """True if path is a .zip or directory whose manifest says it is an evidence pack."""
    try:
        pack = _Archive(Path(path))
    except (_Unreadable, OSError):
        return False
    try:
        doc = json.loads(pack.read("manifest.json").decode("utf-8"))
        return isinstance(doc, dict) and doc.get("format") == EVIDENCE_FORMAT
    except (OSError, ValueError):
        return False
    finally:
        pack.close()


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="verify_bundle.py",
        description="Verify a Yuanjian audit-log export bundle or evidence pack "
        "(exit 0 ok, 1 failed, 2 usage).",
    )
    parser.add_argument(
        "bundle", help="the bundle directory or .zip, or an evidence pack (.zip or directory)"
    )
    parser.add_argument("--key", help="the log's verifier key, or a file containing it")
    parser.add_argument(
        "--evidence",
        action="store_true",
        help="verify an evidence pack (the default when the manifest says it is one)",
    )
    parser.add_argument("--previous", help="the last checkpoint you accepted from this log")
    parser.add_argument(
        "--previous-proof", help="consistency proof JSON from --previous to the start checkpoint"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    if args.evidence or is_evidence_pack(args.bundle):
        if args.previous or args.previous_proof:
            parser.error("--previous and --previous-proof apply to audit bundles only")
        res = verify_evidence(args.bundle, args.key)
    else:
        res = verify_bundle(args.bundle, args.key, args.previous, args.previous_proof)
    if args.json:
        for w in res.warnings:
            print(f"warning: {w}", file=sys.stderr)
        print(json.dumps(res.to_json(), ensure_ascii=False, indent=2))
    else:
        print(res.report())
    if res.error is not None:
        print(f"error: {res.error}", file=sys.stderr)
    return res.exit_code


if __name__ == "__main__":
    sys.exit(main())
