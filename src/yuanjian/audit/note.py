"""C2SP signed notes, tlog-checkpoints and tlog-cosignatures with Ed25519.

* ``c2sp.org/signed-note``: a UTF-8 text ending in a newline, a blank line, then one or more
  lines ``— <key name> <base64(4-byte key id || signature)>``. Ed25519 key id =
  ``SHA-256(name || "\\n" || 0x01 || 32-byte public key)[:4]``. Verifier keys are
  ``name+<8 hex key id>+<base64(0x01 || public key)>``, signer keys
  ``PRIVATE+KEY+name+<8 hex key id>+<base64(0x01 || seed)>`` (golang.org/x/mod/sumdb/note).
* ``c2sp.org/tlog-checkpoint``: the note text is ``origin``, decimal tree size, base64 root
  hash, then optional non-empty extension lines.
* ``c2sp.org/tlog-cosignature`` (Ed25519, signature type 0x04): a witness such as the regulator
  signs ``"cosignature/v1\\ntime <t>\\n" || checkpoint text``; the signature line carries
  ``key id || 8-byte big-endian t || Ed25519 signature`` and the key id is computed with the
  0x04 type byte.

Hand-written because no maintained Python package implements these formats; the only
dependency is ``cryptography`` for Ed25519. Parsing is strict: anything malformed raises
:class:`NoteError` (a ``ValueError``) naming the offending part.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = [
    "ALG_COSIGNATURE_V1",
    "ALG_ED25519",
    "MAX_SIGNATURES",
    "Checkpoint",
    "Note",
    "NoteError",
    "NoteSignature",
    "NoteVerificationError",
    "OpenedNote",
    "Signer",
    "VerifiedSignature",
    "Verifier",
    "add_cosignature",
    "cosignature_message",
    "cosignature_timestamp",
    "generate_key",
    "key_id",
    "open_checkpoint",
    "open_note",
    "parse_note",
    "sign_note",
    "verify_cosignatures",
]

ALG_ED25519 = 0x01
ALG_COSIGNATURE_V1 = 0x04
_ALGS = (ALG_ED25519, ALG_COSIGNATURE_V1)

# golang.org/x/mod/sumdb/note rejects notes with more signatures than this; the C2SP spec asks
# for at least 16.
MAX_SIGNATURES = 100
_MAX_TIMESTAMP = 2**63 - 1
_MAX_TREE_SIZE = 2**64 - 1
_ROOT_SIZE = 32

_SIG_PREFIX = "\u2014 "  # em dash, space
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")
_DECIMAL = re.compile(r"(?:0|[1-9][0-9]*)")
_HEX8 = re.compile(r"[0-9a-fA-F]{8}")


class NoteError(ValueError):
    """A malformed note, checkpoint or key; `field` names the part at fault."""

    def __init__(self, message: str, *, field: str = "note") -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class NoteVerificationError(NoteError):
    """A well-formed note whose signatures do not verify as required."""


# ---------------------------------------------------------------------------------------------
# Small helpers


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64decode(text: str, field: str) -> bytes:
    """Strict standard base64: padded, canonical (re-encodes to the same text)."""
    try:
        raw = binascii.a2b_base64(text.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise NoteError(f"invalid base64 {text[:40]!r}", field=field) from None
    if _b64encode(raw) != text:
        raise NoteError(f"non-canonical base64 {text[:40]!r}", field=field)
    return raw


def _as_text(msg: str | bytes, field: str) -> str:
    if isinstance(msg, bytes | bytearray):
        try:
            return bytes(msg).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NoteError(
                f"not valid UTF-8 ({exc.reason} at byte {exc.start})", field=field
            ) from None
    if isinstance(msg, str):
        try:
            msg.encode("utf-8")
        except UnicodeEncodeError:
            raise NoteError("contains unpaired surrogates", field=field) from None
        return msg
    raise NoteError(f"expected str or bytes, got {type(msg).__name__}", field=field)


def _check_name(name: object, field: str = "name") -> str:
    if not isinstance(name, str) or not name:
        raise NoteError("key name must be a non-empty string", field=field)
    if "+" in name or any(c.isspace() for c in name) or _CONTROL.search(name):
        raise NoteError(
            f"key name {name!r} contains '+', a space or a control character", field=field
        )
    return name


def _check_text(text: str, field: str = "text") -> None:
    if not text.endswith("\n"):
        raise NoteError("note text must end with a newline", field=field)
    m = _CONTROL.search(text)
    if m:
        raise NoteError(f"control character {m.group()!r} at offset {m.start()}", field=field)


def key_id(name: str, alg: int, public_key: bytes) -> int:
    """Return the C2SP key id: SHA-256(name || "\\n" || alg || public_key)[:4] as a uint32."""
    h = hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([alg]) + public_key).digest()
    return int.from_bytes(h[:4], "big")


def cosignature_message(timestamp: int, text: bytes) -> bytes:
    """Return the tlog-cosignature/v1 signed message for a checkpoint text at timestamp."""
    return b"cosignature/v1\ntime %d\n" % timestamp + text


def _check_timestamp(timestamp: object) -> int:
    if (
        not isinstance(timestamp, int)
        or isinstance(timestamp, bool)
        or not 0 <= timestamp <= _MAX_TIMESTAMP
    ):
        raise NoteError(
            f"must be an integer in [0, 2**63 - 1], got {timestamp!r}", field="timestamp"
        )
    return timestamp


# ---------------------------------------------------------------------------------------------
# Keys


@dataclass(frozen=True)
class Verifier:
    """A named Ed25519 public key: alg 0x01 verifies note signatures, 0x04 cosignatures."""

    name: str
    public_key: bytes
    alg: int = ALG_ED25519
    _key: Ed25519PublicKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_name(self.name)
        if not isinstance(self.public_key, bytes) or len(self.public_key) != 32:
            raise NoteError("Ed25519 public key must be 32 bytes", field="public_key")
        if self.alg not in _ALGS:
            raise NoteError(f"unsupported signature type {self.alg!r}", field="alg")
        object.__setattr__(self, "_key", Ed25519PublicKey.from_public_bytes(self.public_key))

    @property
    def key_id(self) -> int:
        """The 32-bit key id of this key."""
        return key_id(self.name, self.alg, self.public_key)

    @classmethod
    def from_vkey(cls, vkey: str) -> Verifier:
        """Parse a verifier key string name+<hex key id>+<base64(alg || public key)>."""
        if not isinstance(vkey, str):
            raise NoteError("verifier key must be a string", field="vkey")
        name, _, rest = vkey.partition("+")
        hex_id, _, key64 = rest.partition("+")
        _check_name(name, "vkey")
        if not _HEX8.fullmatch(hex_id):
            raise NoteError("key id must be 8 hex digits", field="vkey")
        raw = _b64decode(key64, "vkey")
        if len(raw) != 33 or raw[0] not in _ALGS:
            raise NoteError("key must be an Ed25519 (0x01) or cosignature (0x04) key", field="vkey")
        v = cls(name, raw[1:], raw[0])
        if v.key_id != int(hex_id, 16):
            raise NoteError("key id does not match the key", field="vkey")
        return v

    def to_vkey(self) -> str:
        """Serialize as name+<hex key id>+<base64(alg || public key)>."""
        material = _b64encode(bytes([self.alg]) + self.public_key)
        return f"{self.name}+{self.key_id:08x}+{material}"

    def as_cosigner(self) -> Verifier:
        """Return the same key as a tlog-cosignature/v1 (0x04) verifier."""
        return Verifier(self.name, self.public_key, ALG_COSIGNATURE_V1)

    def verify(self, text: bytes, signature: bytes) -> bool:
        """Return True iff signature (without the key id) is valid for the note text."""
        if self.alg == ALG_COSIGNATURE_V1:
            if len(signature) != 72:
                return False
            timestamp = int.from_bytes(signature[:8], "big")
            if timestamp > _MAX_TIMESTAMP:
                return False
            message, sig = cosignature_message(timestamp, text), signature[8:]
        else:
            if len(signature) != 64:
                return False
            message, sig = text, signature
        try:
            self._key.verify(sig, message)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class Signer:
    """A named Ed25519 private key (32-byte seed): alg 0x01 signs notes, 0x04 cosigns."""

    name: str
    seed: bytes = field(repr=False)
    alg: int = ALG_ED25519
    _key: Ed25519PrivateKey = field(init=False, repr=False, compare=False)
    _public: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_name(self.name)
        if not isinstance(self.seed, bytes) or len(self.seed) != 32:
            raise NoteError("Ed25519 seed must be 32 bytes", field="seed")
        if self.alg not in _ALGS:
            raise NoteError(f"unsupported signature type {self.alg!r}", field="alg")
        key = Ed25519PrivateKey.from_private_bytes(self.seed)
        object.__setattr__(self, "_key", key)
        public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        object.__setattr__(self, "_public", public)

    @classmethod
    def generate(cls, name: str, *, alg: int = ALG_ED25519) -> Signer:
        """Return a new random signer named name."""
        seed = Ed25519PrivateKey.generate().private_bytes_raw()
        return cls(name, seed, alg)

    @classmethod
    def from_skey(cls, skey: str) -> Signer:
        """Parse a signer key string PRIVATE+KEY+name+<hex key id>+<base64(alg || seed)>."""
        if not isinstance(skey, str) or not skey.startswith("PRIVATE+KEY+"):
            raise NoteError("signer key must start with PRIVATE+KEY+", field="skey")
        name, _, rest = skey[len("PRIVATE+KEY+") :].partition("+")
        hex_id, _, key64 = rest.partition("+")
        _check_name(name, "skey")
        if not _HEX8.fullmatch(hex_id):
            raise NoteError("key id must be 8 hex digits", field="skey")
        raw = _b64decode(key64, "skey")
        if len(raw) != 33 or raw[0] not in _ALGS:
            raise NoteError("key must be an Ed25519 (0x01) or cosignature (0x04) key", field="skey")
        s = cls(name, raw[1:], raw[0])
        if s.key_id != int(hex_id, 16):
            raise NoteError("key id does not match the key", field="skey")
        return s

    def to_skey(self) -> str:
        """Serialize as PRIVATE+KEY+name+<hex key id>+<base64(alg || seed)>."""
        return (
            f"PRIVATE+KEY+{self.name}+{self.key_id:08x}+{_b64encode(bytes([self.alg]) + self.seed)}"
        )

    @property
    def public_key(self) -> bytes:
        """The 32-byte Ed25519 public key."""
        return self._public

    @property
    def key_id(self) -> int:
        """The 32-bit key id of this key."""
        return key_id(self.name, self.alg, self._public)

    def verifier(self) -> Verifier:
        """Return the matching Verifier."""
        return Verifier(self.name, self._public, self.alg)

    def as_cosigner(self) -> Signer:
        """Return the same key as a tlog-cosignature/v1 (0x04) signer."""
        return Signer(self.name, self.seed, ALG_COSIGNATURE_V1)

    def sign(self, text: bytes, *, timestamp: int | None = None) -> bytes:
        """Sign note text; return the signature bytes that follow the key id on the line."""
        if self.alg == ALG_COSIGNATURE_V1:
            t = int(time.time()) if timestamp is None else _check_timestamp(timestamp)
            return t.to_bytes(8, "big") + self._key.sign(cosignature_message(t, text))
        return self._key.sign(text)


def generate_key(name: str, *, alg: int = ALG_ED25519) -> tuple[str, str]:
    """Generate a key pair named name; return (signer key string, verifier key string)."""
    signer = Signer.generate(name, alg=alg)
    return signer.to_skey(), signer.verifier().to_vkey()


# ---------------------------------------------------------------------------------------------
# Notes


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: key name, 32-bit key id and the signature bytes after the id."""

    name: str
    key_id: int
    signature: bytes

    def line(self) -> str:
        """Return the formatted signature line, newline included."""
        blob = self.key_id.to_bytes(4, "big") + self.signature
        return f"{_SIG_PREFIX}{self.name} {_b64encode(blob)}\n"


@dataclass(frozen=True)
class Note:
    """A note: its text (ending in a newline) and its signature lines."""

    text: str
    signatures: tuple[NoteSignature, ...] = ()

    def format(self) -> str:
        """Return the signed-note serialization (text, blank line, signature lines)."""
        if not self.signatures:
            raise NoteError("a signed note needs at least one signature", field="signatures")
        return self.text + "\n" + "".join(s.line() for s in self.signatures)


def parse_note(msg: str | bytes) -> Note:
    """Parse a signed note without verifying it; raise NoteError if it is malformed."""
    text_all = _as_text(msg, "note")
    if not text_all.endswith("\n"):
        raise NoteError("must end with a newline", field="note")
    m = _CONTROL.search(text_all)
    if m:
        raise NoteError(f"control character {m.group()!r} at offset {m.start()}", field="note")
    split = text_all.rfind("\n\n")
    if split < 0:
        raise NoteError("missing the blank line before the signatures", field="note")
    text, sig_block = text_all[: split + 1], text_all[split + 2 :]
    if not sig_block:
        raise NoteError("no signature lines after the blank line", field="signatures")
    lines = sig_block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"more than {MAX_SIGNATURES} signatures", field="signatures")
    sigs = []
    for n, line in enumerate(lines, 1):
        where = f"signature line {n}"
        if not line.startswith(_SIG_PREFIX):
            raise NoteError("must start with an em dash and a space", field=where)
        name, sep, b64 = line[len(_SIG_PREFIX) :].partition(" ")
        if not sep:
            raise NoteError("missing the space between key name and signature", field=where)
        _check_name(name, where)
        raw = _b64decode(b64, where)
        if len(raw) < 5:
            raise NoteError("signature shorter than a key id plus one byte", field=where)
        sigs.append(NoteSignature(name, int.from_bytes(raw[:4], "big"), raw[4:]))
    return Note(text, tuple(sigs))


def sign_note(note: Note | str, *signers: Signer, timestamp: int | None = None) -> str:
    """Sign note text (or add signatures to a Note) and return the signed note.

    Existing signatures by the same key (name and key id) are replaced; timestamp is used by
    cosignature (0x04) signers and defaults to now.
    """
    if isinstance(note, str):
        note = Note(note)
    _check_text(_as_text(note.text, "text"))
    if not signers:
        raise NoteError("at least one signer is required", field="signers")
    body = note.text.encode("utf-8")
    fresh = [NoteSignature(s.name, s.key_id, s.sign(body, timestamp=timestamp)) for s in signers]
    replaced = {(s.name, s.key_id) for s in fresh}
    kept = [s for s in note.signatures if (s.name, s.key_id) not in replaced]
    for s in kept:
        _check_name(s.name, "signatures")
    result = Note(note.text, (*kept, *fresh))
    if len(result.signatures) > MAX_SIGNATURES:
        raise NoteError(f"more than {MAX_SIGNATURES} signatures", field="signatures")
    return result.format()


@dataclass(frozen=True)
class VerifiedSignature:
    """A signature that verified: the key, the line, and the cosignature timestamp if any."""

    verifier: Verifier
    signature: NoteSignature
    timestamp: int | None = None


@dataclass(frozen=True)
class OpenedNote:
    """A note whose signatures were checked against known verifiers."""

    note: Note
    verified: tuple[VerifiedSignature, ...]
    unverified: tuple[NoteSignature, ...]

    @property
    def text(self) -> str:
        """The note text (only trustworthy because a known key signed it)."""
        return self.note.text

    def signed_by(self, verifier: Verifier) -> bool:
        """Return True iff verifier's signature on this note verified."""
        return any(v.verifier == verifier for v in self.verified)


def open_note(
    msg: str | bytes | Note,
    verifiers: Iterable[Verifier],
    *,
    required: Verifier | Sequence[Verifier] = (),
) -> OpenedNote:
    """Parse and verify a signed note against known verifiers.

    Signatures from unknown keys are ignored (kept in ``unverified``). A signature from a known
    key that does not verify rejects the whole note, as does a note with no verified signature
    or one missing a signature from a `required` key (NoteVerificationError).
    """
    note = msg if isinstance(msg, Note) else parse_note(msg)
    known: dict[tuple[str, int], list[Verifier]] = {}
    for v in verifiers:
        if not isinstance(v, Verifier):
            raise TypeError(f"verifiers: expected Verifier, got {type(v).__name__}")
        same = known.setdefault((v.name, v.key_id), [])
        if v not in same:
            same.append(v)
    body = note.text.encode("utf-8")
    verified: list[VerifiedSignature] = []
    unverified: list[NoteSignature] = []
    for sig in note.signatures:
        candidates = known.get((sig.name, sig.key_id))
        if not candidates:
            if sig not in unverified:
                unverified.append(sig)
            continue
        if len(candidates) > 1:
            raise NoteVerificationError(
                f"ambiguous key {sig.name}+{sig.key_id:08x}", field="signatures"
            )
        v = candidates[0]
        if not v.verify(body, sig.signature):
            raise NoteVerificationError(
                f"invalid signature for key {sig.name}+{sig.key_id:08x}", field="signatures"
            )
        if any(done.verifier == v for done in verified):
            continue
        ts = int.from_bytes(sig.signature[:8], "big") if v.alg == ALG_COSIGNATURE_V1 else None
        verified.append(VerifiedSignature(v, sig, ts))
    if not verified:
        raise NoteVerificationError("note has no verifiable signatures", field="signatures")
    opened = OpenedNote(note, tuple(verified), tuple(unverified))
    needed = (required,) if isinstance(required, Verifier) else tuple(required)
    for r in needed:
        if not opened.signed_by(r):
            raise NoteVerificationError(
                f"not signed by required key {r.name}+{r.key_id:08x}", field="signatures"
            )
    return opened


# ---------------------------------------------------------------------------------------------
# Checkpoints


@dataclass(frozen=True)
class Checkpoint:
    """A tlog-checkpoint body: origin, tree size, 32-byte root hash, extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.origin, str) or not self.origin:
            raise NoteError("must be a non-empty string", field="origin")
        if "\n" in self.origin or _CONTROL.search(self.origin):
            raise NoteError("must be one line without control characters", field="origin")
        if (
            not isinstance(self.size, int)
            or isinstance(self.size, bool)
            or not 0 <= self.size <= _MAX_TREE_SIZE
        ):
            raise NoteError(
                f"must be an integer in [0, 2**64 - 1], got {self.size!r}", field="size"
            )
        if not isinstance(self.root, bytes) or len(self.root) != _ROOT_SIZE:
            raise NoteError(f"must be {_ROOT_SIZE} bytes", field="root")
        exts = tuple(self.extensions)
        for n, ext in enumerate(exts):
            if not isinstance(ext, str) or not ext or "\n" in ext or _CONTROL.search(ext):
                raise NoteError("must be a non-empty line", field=f"extensions[{n}]")
        object.__setattr__(self, "extensions", exts)

    def format(self) -> str:
        """Return the checkpoint note text."""
        head = f"{self.origin}\n{self.size}\n{_b64encode(self.root)}\n"
        return head + "".join(f"{ext}\n" for ext in self.extensions)

    @classmethod
    def parse(cls, text: str | bytes) -> Checkpoint:
        """Parse checkpoint note text (not a signed note: see open_checkpoint)."""
        body = _as_text(text, "checkpoint")
        if not body.endswith("\n"):
            raise NoteError("must end with a newline", field="checkpoint")
        m = _CONTROL.search(body)
        if m:
            raise NoteError(f"control character {m.group()!r}", field="checkpoint")
        lines = body[:-1].split("\n")
        if len(lines) < 3:
            raise NoteError("needs origin, size and root hash lines", field="checkpoint")
        origin, size_line, root_line, *exts = lines
        if not origin:
            raise NoteError("empty origin line", field="origin")
        if not _DECIMAL.fullmatch(size_line):
            raise NoteError(f"not a decimal tree size: {size_line[:40]!r}", field="size")
        size = int(size_line)
        if size > _MAX_TREE_SIZE:
            raise NoteError("tree size exceeds 2**64 - 1", field="size")
        root = _b64decode(root_line, "root")
        if len(root) != _ROOT_SIZE:
            raise NoteError(f"root hash must be {_ROOT_SIZE} bytes, got {len(root)}", field="root")
        for n, ext in enumerate(exts):
            if not ext:
                raise NoteError("empty extension line", field=f"extensions[{n}]")
        return cls(origin, size, root, tuple(exts))

    def sign(self, *signers: Signer) -> str:
        """Return this checkpoint as a note signed by signers."""
        return sign_note(self.format(), *signers)


def open_checkpoint(
    msg: str | bytes,
    log_verifier: Verifier,
    *,
    origin: str | None = None,
    witnesses: Sequence[Verifier] = (),
) -> tuple[Checkpoint, OpenedNote]:
    """Verify a signed checkpoint by the log key (and optional witnesses); return it parsed.

    Raises NoteVerificationError without the log's signature, NoteError on a malformed body or
    an origin other than the one given.
    """
    cosigners = [w if w.alg == ALG_COSIGNATURE_V1 else w.as_cosigner() for w in witnesses]
    opened = open_note(msg, [log_verifier, *cosigners], required=log_verifier)
    checkpoint = Checkpoint.parse(opened.text)
    if origin is not None and checkpoint.origin != origin:
        raise NoteError(
            f"checkpoint origin {checkpoint.origin!r} is not the expected {origin!r}",
            field="origin",
        )
    return checkpoint, opened


# ---------------------------------------------------------------------------------------------
# Cosignatures


def cosignature_timestamp(signature: NoteSignature) -> int:
    """Return the timestamp carried by a tlog-cosignature/v1 Ed25519 signature line."""
    if len(signature.signature) != 72:
        raise NoteError(
            "not an Ed25519 cosignature (8-byte time + 64-byte signature)", field="signature"
        )
    return int.from_bytes(signature.signature[:8], "big")


def add_cosignature(
    msg: str | bytes,
    cosigner: Signer,
    *,
    timestamp: int | None = None,
    log_verifier: Verifier | None = None,
) -> str:
    """Add (or replace) a witness's cosignature/v1 on a signed checkpoint and return the note.

    A 0x01 signer key is used as its 0x04 cosigner form. With log_verifier, the log's own
    signature is checked first, so a witness never cosigns an unsigned checkpoint.
    """
    note = parse_note(msg)
    if log_verifier is not None:
        open_note(note, [log_verifier], required=log_verifier)
    Checkpoint.parse(note.text)
    if cosigner.alg != ALG_COSIGNATURE_V1:
        cosigner = cosigner.as_cosigner()
    return sign_note(note, cosigner, timestamp=timestamp)


def verify_cosignatures(
    msg: str | bytes, witnesses: Sequence[Verifier], *, quorum: int = 1
) -> dict[str, int]:
    """Return {witness name: timestamp} for the witnesses whose cosignature verifies.

    Witness keys given as 0x01 are used in their 0x04 form. Raises NoteVerificationError if a
    known witness's cosignature is invalid or fewer than `quorum` witnesses cosigned.
    """
    note = parse_note(msg)
    Checkpoint.parse(note.text)
    cosigners = [w if w.alg == ALG_COSIGNATURE_V1 else w.as_cosigner() for w in witnesses]
    keys = {(c.name, c.key_id) for c in cosigners}
    if not any((s.name, s.key_id) in keys for s in note.signatures):
        if quorum > 0:
            raise NoteVerificationError("no cosignature from a known witness", field="signatures")
        return {}
    opened = open_note(note, cosigners)
    found = {v.verifier.name: cosignature_timestamp(v.signature) for v in opened.verified}
    if len(found) < quorum:
        raise NoteVerificationError(
            f"{len(found)} witness cosignature(s), {quorum} required", field="signatures"
        )
    return found
