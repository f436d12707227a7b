"""Tests for yuanjian.audit.note: C2SP signed notes, checkpoints and cosignatures.

Published vectors: golang.org/x/mod/sumdb/note note_test.go (PeterNeumann / EnochRoot keys and
signatures), a sum.golang.org signed tree head with its well-known verifier key, the examples in
the C2SP signed-note and tlog-cosignature specifications, and verifier keys and a cosignature
from transparency-dev/formats note/note_cosigv1_test.go.
"""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from yuanjian.audit import note as n
from yuanjian.audit.note import (
    ALG_COSIGNATURE_V1,
    ALG_ED25519,
    Checkpoint,
    NoteError,
    NoteVerificationError,
    Signer,
    Verifier,
)

# golang.org/x/mod/sumdb/note note_test.go
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = (
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotp"
    "RZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLo"
    "x33WWd1RvMc+QQ=\n"
)

# A signed tree head served by sum.golang.org, and the Go checksum database's published key.
SUMDB_VKEY = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"
SUMDB_CHECKPOINT = (
    "go.sum database tree\n49189689\nftjbAOzaupaIvaPo/G+Dk63nxOZ2s1OPOKIaPtXs7S4=\n\n"
    "— sum.golang.org Az3grlKZssqRoMNPpZfKt0TphbbcF+pzXqElURJKRNFKfaUAgqeI5k2AORH0QAhg/ebRwyIqD/"
    "OqP4oLtLnNumvOBAM=\n"
)

# c2sp.org/signed-note and c2sp.org/tlog-cosignature examples.
SPEC_NOTE = (
    "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned è subito sera.\n"
    "\n— quasimodo.example/salvatore NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONrMou"
    "FSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n"
)
SPEC_CHECKPOINT_BODY = (
    "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
)
SPEC_COSIGNED = (
    SPEC_CHECKPOINT_BODY
    + "\n— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Z"
    "hcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
    "— witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2o"
    "yin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n"
)

ROOT = hashlib.sha256(b"root").digest()


# ---------------------------------------------------------------------------------------------
# Keys


def test_go_keys_parse_and_round_trip() -> None:
    signer = Signer.from_skey(PETER_SKEY)
    verifier = Verifier.from_vkey(PETER_VKEY)
    assert signer.verifier() == verifier
    assert signer.key_id == verifier.key_id == 0xC74F20A3
    assert signer.to_skey() == PETER_SKEY
    assert verifier.to_vkey() == PETER_VKEY
    assert "seed" not in repr(signer) and PETER_SKEY[-20:] not in repr(signer)


def test_mangled_verifier_keys_are_rejected() -> None:
    # note_test.go TestNewVerifier: every proper substring and every one-byte increment fails.
    for i in range(len(PETER_VKEY) + 1):
        for j in range(i + 1, len(PETER_VKEY) + 1):
            if (i, j) != (0, len(PETER_VKEY)):
                with pytest.raises(NoteError):
                    Verifier.from_vkey(PETER_VKEY[i:j])
    for i in range(len(PETER_VKEY)):
        mangled = PETER_VKEY[:i] + chr(ord(PETER_VKEY[i]) + 1) + PETER_VKEY[i + 1 :]
        with pytest.raises(NoteError):
            Verifier.from_vkey(mangled)
    # wrong key length and unknown algorithm, each with an adjusted key hash
    for bad in (
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ):
        with pytest.raises(NoteError):
            Verifier.from_vkey(bad)


def test_mangled_signer_keys_are_rejected() -> None:
    for i in range(0, len(PETER_SKEY) + 1, 3):
        for j in range(i + 1, len(PETER_SKEY) + 1, 2):
            if (i, j) != (0, len(PETER_SKEY)):
                with pytest.raises(NoteError):
                    Signer.from_skey(PETER_SKEY[i:j])
    for i in range(len(PETER_SKEY)):
        mangled = PETER_SKEY[:i] + chr(ord(PETER_SKEY[i]) + 1) + PETER_SKEY[i + 1 :]
        with pytest.raises(NoteError):
            Signer.from_skey(mangled)


def test_cosignature_verifier_keys_from_transparency_dev() -> None:
    # transparency-dev/formats note_cosigv1_test.go TestCoSigV1NewVerifier
    native = Verifier.from_vkey(
        "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2"
    )
    assert native.alg == ALG_COSIGNATURE_V1
    assert native.key_id == 0xDA77ADE7
    plain = Verifier.from_vkey("TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6")
    assert plain.alg == ALG_ED25519
    cosigner = plain.as_cosigner()
    want = hashlib.sha256(b"TEST\n\x04" + plain.public_key).digest()[:4]
    assert cosigner.key_id == int.from_bytes(want, "big") != plain.key_id
    for bad in (
        "bananas.sigstore.dev+12344556",
        "rekor.sigstore.dev+12345678+THIS_IS_NOT_BASE64!",
        "rekor.sigstore.dev+12345678+AwEB",
        "rekor.sigstore.dev+NOT_A_NUMBER+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6",
        "rekor.sigstore.dev+00000000+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6",
    ):
        with pytest.raises(NoteError, match="vkey"):
            Verifier.from_vkey(bad)


def test_generate_key_round_trips() -> None:
    skey, vkey = n.generate_key("yuanjian.example/audit")
    signer = Signer.from_skey(skey)
    assert signer.verifier() == Verifier.from_vkey(vkey)
    assert skey.startswith("PRIVATE+KEY+yuanjian.example/audit+")
    cskey, cvkey = n.generate_key("regulator.example/witness", alg=ALG_COSIGNATURE_V1)
    assert Verifier.from_vkey(cvkey).alg == ALG_COSIGNATURE_V1
    assert Signer.from_skey(cskey).alg == ALG_COSIGNATURE_V1


@pytest.mark.parametrize("name", ["", "a+b", "a b", "tab\there", "nbsp\u00a0x", "ctl\x01"])
def test_invalid_key_names_rejected(name: str) -> None:
    with pytest.raises(NoteError, match="name"):
        Signer.generate(name)


# ---------------------------------------------------------------------------------------------
# Signed notes against the Go vectors


def test_sign_matches_go_vector() -> None:
    signer = Signer.from_skey(PETER_SKEY)
    assert n.sign_note(GO_TEXT, signer) == GO_TEXT + "\n" + PETER_SIG
    # an existing signature by the same key is replaced, others kept
    bad = n.NoteSignature("PeterNeumann", 0xC74F20A3, b"\x00" * 64)
    other = n.parse_note(GO_TEXT + "\n" + ENOCH_SIG).signatures[0]
    assert n.sign_note(n.Note(GO_TEXT, (bad,)), signer) == GO_TEXT + "\n" + PETER_SIG
    assert n.sign_note(n.Note(GO_TEXT, (other,)), signer) == GO_TEXT + "\n" + ENOCH_SIG + PETER_SIG


def test_sign_rejects_bad_input() -> None:
    signer = Signer.from_skey(PETER_SKEY)
    with pytest.raises(NoteError, match="newline"):
        n.sign_note("abc", signer)
    with pytest.raises(NoteError, match="control"):
        n.sign_note("a\rb\n", signer)
    with pytest.raises(NoteError, match="signers"):
        n.sign_note(GO_TEXT)
    with pytest.raises(NoteError, match="name"):
        n.sign_note(n.Note(GO_TEXT, (n.NoteSignature("a+b", 1, b"ABCD"),)), signer)


def test_open_one_verified_one_unknown() -> None:
    peter, enoch = Verifier.from_vkey(PETER_VKEY), Verifier.from_vkey(ENOCH_VKEY)
    msg = GO_TEXT + "\n" + PETER_SIG + ENOCH_SIG
    opened = n.open_note(msg, [peter])
    assert opened.text == GO_TEXT
    assert [v.verifier for v in opened.verified] == [peter]
    assert [s.name for s in opened.unverified] == ["EnochRoot"]
    assert opened.unverified[0].key_id == 0xAF0CFE78
    both = n.open_note(msg.encode(), [peter, enoch], required=[peter, enoch])
    assert [v.verifier.name for v in both.verified] == ["PeterNeumann", "EnochRoot"]
    assert both.unverified == ()
    with pytest.raises(NoteVerificationError, match="no verifiable signatures"):
        n.open_note(msg, [])


def test_open_rejects_invalid_signature_from_known_key() -> None:
    peter = Verifier.from_vkey(PETER_VKEY)
    broken = PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]
    with pytest.raises(NoteVerificationError, match="invalid signature for key PeterNeumann"):
        n.open_note(GO_TEXT + "\n" + broken, [peter])
    # the same corruption on an unknown key's line is ignored
    enoch_broken = ENOCH_SIG[:60] + "ABCD" + ENOCH_SIG[60:]
    opened = n.open_note(GO_TEXT + "\n" + PETER_SIG + enoch_broken, [peter])
    assert len(opened.unverified) == 1


def test_open_deduplicates_repeated_signatures() -> None:
    peter = Verifier.from_vkey(PETER_VKEY)
    msg = GO_TEXT + "\n" + PETER_SIG + PETER_SIG + ENOCH_SIG + ENOCH_SIG
    opened = n.open_note(msg, [peter])
    assert len(opened.verified) == 1
    assert len(opened.unverified) == 1


def test_too_many_signatures_is_malformed() -> None:
    with pytest.raises(NoteError, match="more than 100"):
        n.parse_note(GO_TEXT + "\n" + PETER_SIG * 101)
    assert len(n.parse_note(GO_TEXT + "\n" + PETER_SIG * 16).signatures) == 16


def test_misnamed_or_misnumbered_signature_is_unknown_not_valid() -> None:
    peter = Verifier.from_vkey(PETER_VKEY)
    renamed = PETER_SIG.replace("PeterNeumann", "CarmenSandiego")
    with pytest.raises(NoteVerificationError):
        n.open_note(GO_TEXT + "\n" + renamed, [peter])
    wrong_id = PETER_SIG.replace("x08g", "xxxx")
    with pytest.raises(NoteVerificationError):
        n.open_note(GO_TEXT + "\n" + wrong_id, [peter])


@pytest.mark.parametrize(
    ("msg", "match"),
    [
        (GO_TEXT, "blank line"),
        (GO_TEXT + "\n", "no signature lines"),
        (GO_TEXT + "\n" + PETER_SIG[:-1], "newline"),
        ("\x01" + GO_TEXT + "\n" + PETER_SIG, "control"),
        (b"\xff" + (GO_TEXT + "\n" + PETER_SIG).encode(), "UTF-8"),
        (
            GO_TEXT
            + "\n— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqf"
            "qdngotpRZb6KE6RyyBwJnAM=\n",
            "base64|name",
        ),
        (GO_TEXT + "\n" + PETER_SIG + "Unexpected line.\n", "em dash"),
        (GO_TEXT + "\n-- PeterNeumann AAAAAAA=\n", "em dash"),
        (GO_TEXT + "\n— PeterNeumann\n", "space"),
        (GO_TEXT + "\n— PeterNeumann x08go/ZJkuBS9UG/===\n", "base64"),
        (GO_TEXT + "\n— PeterNeumann AAAA\n", "shorter"),
        (GO_TEXT + "\n— PeterNeumann QUJDQUJD=\n", "base64"),
        (GO_TEXT + "\n— PeterNeumann QUJDQUJ=\n", "base64"),  # non-canonical trailing bits
        (GO_TEXT + "\n— Peter\u00a0Neumann AAAAAAA=\n", "name"),
        ("text\r\n\n" + PETER_SIG, "control"),
    ],
)
def test_malformed_notes_are_refused(msg: str | bytes, match: str) -> None:
    with pytest.raises(NoteError, match=match):
        n.parse_note(msg)
    with pytest.raises(NoteError):
        n.open_note(msg, [Verifier.from_vkey(PETER_VKEY)])


def test_spec_signed_note_example_parses() -> None:
    note = n.parse_note(SPEC_NOTE)
    assert note.text.endswith("ed è subito sera.\n")
    assert "\n\n" in note.text  # the text may contain blank lines; the last one separates
    (sig,) = note.signatures
    assert sig.name == "quasimodo.example/salvatore"
    assert len(sig.signature) == 64
    assert note.format() == SPEC_NOTE


def test_text_ending_in_blank_line_round_trips() -> None:
    signer = Signer.generate("a.example/k")
    msg = n.sign_note("Note\n\n", signer)
    opened = n.open_note(msg, [signer.verifier()])
    assert opened.text == "Note\n\n"


# ---------------------------------------------------------------------------------------------
# Checkpoints


def test_sumdb_checkpoint_verifies() -> None:
    cp, opened = n.open_checkpoint(
        SUMDB_CHECKPOINT, Verifier.from_vkey(SUMDB_VKEY), origin="go.sum database tree"
    )
    assert cp.origin == "go.sum database tree"
    assert cp.size == 49189689
    assert base64.b64encode(cp.root).decode() == "ftjbAOzaupaIvaPo/G+Dk63nxOZ2s1OPOKIaPtXs7S4="
    assert cp.extensions == ()
    assert cp.format() + "\n" + opened.note.signatures[0].line() == SUMDB_CHECKPOINT


def test_tampered_sumdb_checkpoint_fails() -> None:
    key = Verifier.from_vkey(SUMDB_VKEY)
    for tampered in (
        SUMDB_CHECKPOINT.replace("49189689", "49189690"),
        SUMDB_CHECKPOINT.replace("ftjbAOza", "ftjbAOzb"),
        SUMDB_CHECKPOINT.replace("tree\n", "tree!\n", 1),
    ):
        with pytest.raises(NoteVerificationError):
            n.open_checkpoint(tampered, key)
    with pytest.raises(NoteError, match="origin"):
        n.open_checkpoint(SUMDB_CHECKPOINT, key, origin="another.example/log")


@settings(max_examples=50, deadline=None)
@given(
    origin=st.text(
        st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\n"), min_size=1
    ),
    size=st.integers(0, 2**64 - 1),
    root=st.binary(min_size=32, max_size=32),
    extensions=st.lists(
        st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1), max_size=3
    ),
)
def test_checkpoint_round_trip(origin: str, size: int, root: bytes, extensions: list[str]) -> None:
    cp = Checkpoint(origin, size, root, tuple(extensions))
    assert Checkpoint.parse(cp.format()) == cp
    assert Checkpoint.parse(cp.format().encode()) == cp


def test_checkpoint_sign_and_open() -> None:
    log = Signer.generate("yuanjian.example/audit")
    cp = Checkpoint("yuanjian.example/audit", 42, ROOT, ("ext one",))
    msg = cp.sign(log)
    got, opened = n.open_checkpoint(msg, log.verifier(), origin="yuanjian.example/audit")
    assert got == cp
    assert opened.signed_by(log.verifier())


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("origin\n12\n", "checkpoint"),
        ("origin\n12\n" + base64.b64encode(ROOT).decode(), "checkpoint"),  # no final newline
        ("\n12\n" + base64.b64encode(ROOT).decode() + "\n", "origin"),
        ("origin\n12a\n" + base64.b64encode(ROOT).decode() + "\n", "size"),
        ("origin\n012\n" + base64.b64encode(ROOT).decode() + "\n", "size"),
        ("origin\n-1\n" + base64.b64encode(ROOT).decode() + "\n", "size"),
        ("origin\n+1\n" + base64.b64encode(ROOT).decode() + "\n", "size"),
        ("origin\n１２\n" + base64.b64encode(ROOT).decode() + "\n", "size"),
        ("origin\n 12\n" + base64.b64encode(ROOT).decode() + "\n", "size"),
        ("origin\n18446744073709551616\n" + base64.b64encode(ROOT).decode() + "\n", "size"),
        ("origin\n12\nnot base64!\n", "root"),
        ("origin\n12\n" + base64.b64encode(ROOT).decode().rstrip("=") + "\n", "root"),
        ("origin\n12\n" + base64.b64encode(ROOT[:31]).decode() + "\n", "root"),
        ("origin\n12\n" + base64.b64encode(ROOT).decode() + "\n\n", "extensions"),
        ("origin\n12\n" + base64.b64encode(ROOT).decode() + "\nx\r\n", "checkpoint"),
    ],
)
def test_malformed_checkpoints_are_refused(body: str, field: str) -> None:
    with pytest.raises(NoteError) as info:
        Checkpoint.parse(body)
    assert info.value.field.startswith(field)


def test_checkpoint_constructor_validates() -> None:
    with pytest.raises(NoteError, match="origin"):
        Checkpoint("", 1, ROOT)
    with pytest.raises(NoteError, match="origin"):
        Checkpoint("a\nb", 1, ROOT)
    with pytest.raises(NoteError, match="size"):
        Checkpoint("o", -1, ROOT)
    with pytest.raises(NoteError, match="size"):
        Checkpoint("o", True, ROOT)  # type: ignore[arg-type]
    with pytest.raises(NoteError, match="root"):
        Checkpoint("o", 1, ROOT[:16])
    with pytest.raises(NoteError, match="extensions"):
        Checkpoint("o", 1, ROOT, ("",))


def test_wrong_key_is_ignored_and_required_key_enforced() -> None:
    log, other = Signer.generate("log.example"), Signer.generate("log.example")
    msg = Checkpoint("log.example", 3, ROOT).sign(other)
    # same name, different key id: unknown, so ignored -> nothing verifies
    with pytest.raises(NoteVerificationError, match="no verifiable"):
        n.open_checkpoint(msg, log.verifier())
    both = n.sign_note(n.parse_note(msg), log)
    opened = n.open_note(both, [log.verifier()])
    assert opened.unverified[0].key_id == other.key_id
    with pytest.raises(NoteVerificationError, match="required key"):
        n.open_note(msg, [other.verifier(), log.verifier()], required=log.verifier())


def test_tampered_signature_byte_fails() -> None:
    log = Signer.generate("log.example")
    msg = Checkpoint("log.example", 3, ROOT).sign(log)
    note = n.parse_note(msg)
    sig = note.signatures[0]
    for i in (0, 31, 63):
        bad = bytearray(sig.signature)
        bad[i] ^= 0x40
        forged = n.Note(note.text, (n.NoteSignature(sig.name, sig.key_id, bytes(bad)),)).format()
        with pytest.raises(NoteVerificationError, match="invalid signature"):
            n.open_checkpoint(forged, log.verifier())


# ---------------------------------------------------------------------------------------------
# Cosignatures


def test_spec_cosignature_example_framing() -> None:
    note = n.parse_note(SPEC_COSIGNED)
    assert note.text == SPEC_CHECKPOINT_BODY
    witness = note.signatures[1]
    assert witness.name == "witness.example.com/w1"
    assert witness.key_id == 0x8D66CF3F
    assert n.cosignature_timestamp(witness) == 1679315147
    with pytest.raises(NoteError):
        n.cosignature_timestamp(note.signatures[0])  # an ordinary Ed25519 signature
    # the spec's signed-message example, byte for byte
    assert n.cosignature_message(1679315147, SPEC_CHECKPOINT_BODY.encode()) == (
        b"cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\n"
        b"CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    )


def test_transparency_dev_cosignature_timestamp() -> None:
    # note_cosigv1_test.go TestCoSigV1Timestamp
    raw = base64.b64decode(
        "ZGhGuQAAAABm/qTPeyKXD+R2rzyQsxPiP8mXum7qq/iF0u4vanlqJyocWODBt97w9uL+8qT7S5gxEHWWOworDcFiEBYJ"
        "XORmnFBOBA=="
    )
    sig = n.NoteSignature("w", int.from_bytes(raw[:4], "big"), raw[4:])
    assert n.cosignature_timestamp(sig) == 1727964367
    raw = base64.b64decode(
        "eQjRQm6eSKzFoiYalgwCPXu2y3ijtg68is9M46JKxuZB+dRfTmeQeDBoXnvxZx2ugnkyV+MUMLXpWs1hPb/W/4xkNQY="
    )
    with pytest.raises(NoteError):
        n.cosignature_timestamp(n.NoteSignature("w", 0, raw[4:]))


def test_add_and_verify_cosignature() -> None:
    log = Signer.generate("yuanjian.example/audit")
    witness = Signer.generate("regulator.example/witness", alg=ALG_COSIGNATURE_V1)
    cp = Checkpoint("yuanjian.example/audit", 1000, ROOT)
    signed = cp.sign(log)
    cosigned = n.add_cosignature(
        signed, witness, timestamp=1_767_225_600, log_verifier=log.verifier()
    )
    assert cosigned.startswith(signed)  # the log's line is kept, the cosignature appended
    line = cosigned[len(signed) :]
    raw = base64.b64decode(line.split(" ")[2])
    assert raw[:4] == witness.key_id.to_bytes(4, "big")
    assert int.from_bytes(raw[4:12], "big") == 1_767_225_600
    assert len(raw) == 4 + 8 + 64
    assert n.verify_cosignatures(cosigned, [witness.verifier()]) == {
        "regulator.example/witness": 1_767_225_600
    }
    got, opened = n.open_checkpoint(cosigned, log.verifier(), witnesses=[witness.verifier()])
    assert got == cp
    assert opened.signed_by(witness.verifier())
    assert [v.timestamp for v in opened.verified] == [None, 1_767_225_600]
    # deterministic: the same timestamp yields the same line; a new one replaces it
    assert n.add_cosignature(cosigned, witness, timestamp=1_767_225_600) == cosigned
    again = n.add_cosignature(cosigned, witness, timestamp=1_767_225_601)
    assert again.count("regulator.example/witness") == 1
    assert n.verify_cosignatures(again, [witness.verifier()])["regulator.example/witness"] == (
        1_767_225_601
    )


def test_cosignature_key_id_uses_type_0x04() -> None:
    witness = Signer.generate("w.example")  # an ordinary 0x01 key used as a cosigner
    signed = Checkpoint("log", 1, ROOT).sign(Signer.generate("log"))
    cosigned = n.add_cosignature(signed, witness, timestamp=5)
    sig = n.parse_note(cosigned).signatures[-1]
    want = hashlib.sha256(b"w.example\n\x04" + witness.public_key).digest()[:4]
    assert sig.key_id == int.from_bytes(want, "big")
    assert sig.key_id != witness.key_id
    # a 0x01 verifier key for the witness is used in its 0x04 form
    assert n.verify_cosignatures(cosigned, [witness.verifier()]) == {"w.example": 5}
    # but as a plain note verifier it does not match the cosignature line at all
    with pytest.raises(NoteVerificationError):
        n.open_note(cosigned, [witness.verifier()])


def test_cosignature_over_tampered_checkpoint_fails() -> None:
    log = Signer.generate("log")
    witness = Signer.generate("w", alg=ALG_COSIGNATURE_V1)
    cosigned = n.add_cosignature(Checkpoint("log", 7, ROOT).sign(log), witness, timestamp=9)
    note = n.parse_note(cosigned)
    forged = n.Note("log\n8\n" + note.text.split("\n")[2] + "\n", note.signatures).format()
    with pytest.raises(NoteVerificationError, match="invalid signature"):
        n.verify_cosignatures(forged, [witness.verifier()])
    # changing the timestamp inside the signature breaks it too
    w = note.signatures[-1]
    moved = n.NoteSignature(w.name, w.key_id, (10).to_bytes(8, "big") + w.signature[8:])
    forged = n.Note(note.text, (note.signatures[0], moved)).format()
    with pytest.raises(NoteVerificationError):
        n.verify_cosignatures(forged, [witness.verifier()])


def test_cosignature_covers_extension_lines() -> None:
    log = Signer.generate("log")
    witness = Signer.generate("w", alg=ALG_COSIGNATURE_V1)
    cp = Checkpoint("log", 7, ROOT, ("Extendo",))
    cosigned = n.add_cosignature(cp.sign(log), witness, timestamp=9)
    note = n.parse_note(cosigned)
    forged = n.Note(note.text.replace("Extendo", "Extend@"), note.signatures[1:]).format()
    with pytest.raises(NoteVerificationError):
        n.verify_cosignatures(forged, [witness.verifier()])


def test_cosign_refuses_unsigned_or_non_checkpoint_notes() -> None:
    log, intruder = Signer.generate("log"), Signer.generate("log")
    witness = Signer.generate("w", alg=ALG_COSIGNATURE_V1)
    forged = Checkpoint("log", 7, ROOT).sign(intruder)
    with pytest.raises(NoteVerificationError):
        n.add_cosignature(forged, witness, log_verifier=log.verifier())
    with pytest.raises(NoteError):
        n.add_cosignature(n.sign_note("just a note\n", log), witness)
    with pytest.raises(NoteError, match="timestamp"):
        n.add_cosignature(Checkpoint("log", 7, ROOT).sign(log), witness, timestamp=2**63)


def test_verify_cosignatures_quorum_and_unknown_witnesses() -> None:
    log = Signer.generate("log")
    w1 = Signer.generate("w1", alg=ALG_COSIGNATURE_V1)
    w2 = Signer.generate("w2", alg=ALG_COSIGNATURE_V1)
    stranger = Signer.generate("w3", alg=ALG_COSIGNATURE_V1)
    msg = Checkpoint("log", 7, ROOT).sign(log)
    msg = n.add_cosignature(msg, w1, timestamp=1)
    msg = n.add_cosignature(msg, stranger, timestamp=2)
    witnesses = [w1.verifier(), w2.verifier()]
    assert n.verify_cosignatures(msg, witnesses) == {"w1": 1}
    with pytest.raises(NoteVerificationError, match="2 required"):
        n.verify_cosignatures(msg, witnesses, quorum=2)
    with pytest.raises(NoteVerificationError, match="no cosignature"):
        n.verify_cosignatures(msg, [w2.verifier()])
    assert n.verify_cosignatures(msg, [w2.verifier()], quorum=0) == {}
    # a witness cosignature never stands in for the log's own signature
    only_cosigned = n.add_cosignature(Checkpoint("log", 7, ROOT).sign(stranger), w1, timestamp=3)
    with pytest.raises(NoteVerificationError):
        n.open_checkpoint(only_cosigned, log.verifier(), witnesses=[w1.verifier()])


def test_signer_sign_default_timestamp_is_now() -> None:
    import time

    witness = Signer.generate("w", alg=ALG_COSIGNATURE_V1)
    before = int(time.time())
    sig = witness.sign(b"log\n1\n" + base64.b64encode(ROOT) + b"\n")
    assert before <= int.from_bytes(sig[:8], "big") <= int(time.time())
    assert witness.verifier().verify(b"log\n1\n" + base64.b64encode(ROOT) + b"\n", sig)
