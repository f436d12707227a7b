"""Tests for yuanjian.audit.merkle and yuanjian.audit.hashing.

Known-answer vectors are the published RFC 6962 8-leaf set of transparency-dev/merkle
(testonly/constants.go: LeafInputs, NodeHashes, RootHashes, CompactTrees;
testonly/reference_test.go and proof/verify_test.go: inclusion and consistency proofs), the same
set Certificate Transparency and Trillian use. Property tests compare against a naive recursive
implementation written straight from RFC 9162 section 2.1.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from collections.abc import Callable, Mapping

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from yuanjian.audit import hashing
from yuanjian.audit import merkle as m

# ---------------------------------------------------------------------------------------------
# Published vectors (transparency-dev/merkle)

LEAF_INPUTS = [
    bytes.fromhex(h)
    for h in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]

NODE_HASHES = [
    [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
        "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
        "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
        "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
    ],
    [
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    ],
    [
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    ["5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"],
]

ROOT_HASHES = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]

# CompactTrees(): the frontier for every size 0..8, as (level, k) into NODE_HASHES.
COMPACT_TREES = [
    [],
    [(0, 0)],
    [(1, 0)],
    [(1, 0), (0, 2)],
    [(2, 0)],
    [(2, 0), (0, 4)],
    [(2, 0), (1, 2)],
    [(2, 0), (1, 2), (0, 6)],
    [(3, 0)],
]

# (index, size, proof): 0-based, from reference_test.go TestRefInclusionProof and
# verify_test.go inclusionProofs (which are 1-based there).
INCLUSION_VECTORS = [
    (0, 1, []),
    (0, 2, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"]),
    (1, 2, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]

# (old_size, new_size, proof) from reference_test.go and verify_test.go consistencyProofs.
CONSISTENCY_VECTORS = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]

# sha256SomeHash from verify_test.go: a 32-byte value that is no node of the test tree.
SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")
EMPTY = bytes.fromhex(ROOT_HASHES[0])


def _hx(items: list[str]) -> list[bytes]:
    return [bytes.fromhex(h) for h in items]


LEAF_HASHES = [m.leaf_hash(d) for d in LEAF_INPUTS]
ROOTS = _hx(ROOT_HASHES)


# ---------------------------------------------------------------------------------------------
# Naive reference straight from RFC 9162 section 2.1 (recursive MTH, PATH, PROOF/SUBPROOF)

Mth = Callable[[int, int], bytes]


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    k = 1
    while k << 1 < n:
        k <<= 1
    return k


def list_mth(leaves: list[bytes], alg: str = "sha256") -> Mth:
    """MTH(D[a:b]) over a list of leaf hashes, by the recursive definition."""

    def mth(a: int, b: int) -> bytes:
        n = b - a
        if n == 0:
            return hashing.digest(alg, b"")
        if n == 1:
            return leaves[a]
        k = _split(n)
        return hashing.digest(alg, b"\x01" + mth(a, a + k) + mth(a + k, b))

    return mth


def ref_path(mth: Mth, m_: int, a: int, b: int) -> list[bytes]:
    """PATH(m, D[a:b]) from RFC 9162 section 2.1.3.1 (m relative to a)."""
    n = b - a
    if n == 1:
        return []
    k = _split(n)
    if m_ < k:
        return [*ref_path(mth, m_, a, a + k), mth(a + k, b)]
    return [*ref_path(mth, m_ - k, a + k, b), mth(a, a + k)]


def ref_subproof(mth: Mth, m_: int, a: int, b: int, complete: bool) -> list[bytes]:
    """SUBPROOF(m, D[a:b], b) from RFC 9162 section 2.1.4.1."""
    n = b - a
    if m_ == n:
        return [] if complete else [mth(a, b)]
    k = _split(n)
    if m_ <= k:
        return [*ref_subproof(mth, m_, a, a + k, complete), mth(a + k, b)]
    return [*ref_subproof(mth, m_ - k, a + k, b, False), mth(a, a + k)]


def ref_consistency(mth: Mth, old: int, new: int) -> list[bytes]:
    """PROOF(m, D[n]); empty for m == 0 or m == n."""
    if old in (0, new):
        return []
    return ref_subproof(mth, old, 0, new, True)


def make_leaves(n: int, seed: int = 0, alg: str = "sha256") -> list[bytes]:
    return [m.leaf_hash(b"%d:%d" % (seed, i), alg=alg) for i in range(n)]


# ---------------------------------------------------------------------------------------------
# Corruption probes (after verify_test.go corruptInclusionProof / corruptConsistencyProof)


def inclusion_probes(
    leaf: bytes, index: int, size: int, proof: list[bytes], root: bytes, bit: int = 3
) -> list[tuple[str, tuple]]:
    probes: list[tuple[str, tuple]] = [
        ("index + 1", (leaf, index + 1, size, proof, root)),
        ("size * 2", (leaf, index, size * 2, proof, root)),
        ("wrong leaf", (SOME_HASH, index, size, proof, root)),
        ("empty root", (leaf, index, size, proof, EMPTY)),
        ("random root", (leaf, index, size, proof, SOME_HASH)),
        ("trailing garbage", (leaf, index, size, [*proof, b""], root)),
        ("trailing root", (leaf, index, size, [*proof, root], root)),
        ("preceding garbage", (leaf, index, size, [b"", *proof], root)),
        ("preceding root", (leaf, index, size, [root, *proof], root)),
        ("trailing hash", (leaf, index, size, [*proof, SOME_HASH], root)),
    ]
    if index > 0:
        probes.append(("index - 1", (leaf, index - 1, size, proof, root)))
    if index ^ 2 < size:
        probes.append(("index ^ 2", (leaf, index ^ 2, size, proof, root)))
    if index < size // 2:
        probes.append(("size / 2", (leaf, index, size // 2, proof, root)))
    for i in range(len(proof)):
        bad = list(proof)
        flipped = bytearray(bad[i])
        flipped[(bit // 8) % len(flipped)] ^= 1 << (bit % 8)
        bad[i] = bytes(flipped)
        probes.append((f"flip proof[{i}]", (leaf, index, size, bad, root)))
    if proof:
        probes.append(("removed last", (leaf, index, size, proof[:-1], root)))
        probes.append(("removed first", (leaf, index, size, proof[1:], root)))
    if len(proof) > 1:
        probes.append(("inserted", (leaf, index, size, [proof[0], SOME_HASH, *proof[1:]], root)))
    return probes


def consistency_probes(
    old: int, new: int, old_root: bytes, new_root: bytes, proof: list[bytes], bit: int = 4
) -> list[tuple[str, tuple]]:
    probes: list[tuple[str, tuple]] = [
        ("old - 1", (old - 1, new, old_root, new_root, proof)),
        ("old + 1", (old + 1, new, old_root, new_root, proof)),
        ("new * 2", (old, new * 2, old_root, new_root, proof)),
        ("wrong old root", (old, new, SOME_HASH, new_root, proof)),
        ("wrong new root", (old, new, old_root, SOME_HASH, proof)),
        ("swapped roots", (old, new, new_root, old_root, proof)),
        ("empty proof", (old, new, old_root, new_root, [])),
        ("trailing garbage", (old, new, old_root, new_root, [*proof, b""])),
        ("trailing old root", (old, new, old_root, new_root, [*proof, old_root])),
        ("trailing new root", (old, new, old_root, new_root, [*proof, new_root])),
        ("preceding garbage", (old, new, old_root, new_root, [b"", *proof])),
        ("preceding old root", (old, new, old_root, new_root, [old_root, *proof])),
        ("preceding new root", (old, new, old_root, new_root, [new_root, *proof])),
        ("preceding proof[0]", (old, new, old_root, new_root, [proof[0], *proof])),
        ("truncated", (old, new, old_root, new_root, proof[:-1])),
    ]
    if old ^ 2 not in (old, 0) and old ^ 2 < new:
        probes.append(("old ^ 2", (old ^ 2, new, old_root, new_root, proof)))
    if new // 2 > old:
        probes.append(("new / 2", (old, new // 2, old_root, new_root, proof)))
    for i in range(len(proof)):
        bad = list(proof)
        flipped = bytearray(bad[i])
        flipped[(bit // 8) % len(flipped)] ^= 1 << (bit % 8)
        bad[i] = bytes(flipped)
        probes.append((f"flip proof[{i}]", (old, new, old_root, new_root, bad)))
    return probes


# ---------------------------------------------------------------------------------------------
# Known-answer tests


def test_leaf_and_node_hash_match_published_node_hashes() -> None:
    level0 = _hx(NODE_HASHES[0])
    assert level0 == LEAF_HASHES
    level1 = _hx(NODE_HASHES[1])
    assert [m.node_hash(level0[2 * i], level0[2 * i + 1]) for i in range(4)] == level1


@pytest.mark.parametrize("size", range(9))
def test_root_hash_published_vectors(size: int) -> None:
    assert m.root_hash(LEAF_HASHES[:size]) == ROOTS[size]
    assert m.root_from_frontier(m.frontier_after(0, LEAF_HASHES[:size], []), size) == ROOTS[size]


def test_empty_tree_root_is_hash_of_empty_string() -> None:
    assert m.root_hash([]) == m.empty_root() == hashlib.sha256(b"").digest() == EMPTY


@pytest.mark.parametrize("size", range(9))
def test_frontier_matches_published_compact_trees(size: int) -> None:
    want = [bytes.fromhex(NODE_HASHES[lv][k]) for lv, k in COMPACT_TREES[size]]
    assert m.frontier_after(0, LEAF_HASHES[:size], []) == want
    assert m.plan_frontier(size) == COMPACT_TREES[size]


def test_appended_nodes_are_the_published_node_hashes() -> None:
    nodes = m.appended_nodes(0, LEAF_HASHES, [])
    want = {
        (lv, k, bytes.fromhex(h)) for lv, row in enumerate(NODE_HASHES) for k, h in enumerate(row)
    }
    assert set(nodes) == want
    assert len(nodes) == len(want)


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION_VECTORS)
def test_inclusion_proof_published_vectors(index: int, size: int, proof: list[str]) -> None:
    want = _hx(proof)
    leaves = LEAF_HASHES[:size]
    assert m.inclusion_proof(index, leaves) == want
    nodes = m.appended_nodes(0, leaves, [])
    table = {(lv, k): h for lv, k, h in nodes}
    assert m.inclusion_proof_from_nodes(index, size, table) == want
    root = ROOTS[size]
    assert m.verify_inclusion(LEAF_HASHES[index], index, size, want, root)
    for desc, args in inclusion_probes(LEAF_HASHES[index], index, size, want, root):
        assert not m.verify_inclusion(*args), desc


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY_VECTORS)
def test_consistency_proof_published_vectors(old: int, new: int, proof: list[str]) -> None:
    want = _hx(proof)
    assert m.consistency_proof(old, LEAF_HASHES[:new]) == want
    table = {(lv, k): h for lv, k, h in m.appended_nodes(0, LEAF_HASHES[:new], [])}
    assert m.consistency_proof_from_nodes(old, new, table) == want
    assert m.verify_consistency(old, new, ROOTS[old], ROOTS[new], want)
    if want:
        for desc, args in consistency_probes(old, new, ROOTS[old], ROOTS[new], want):
            assert not m.verify_consistency(*args), desc


def test_verify_inclusion_single_entry_table() -> None:
    # verify_test.go TestVerifyInclusionSingleEntry
    h = m.leaf_hash(b"data")
    assert m.verify_inclusion(h, 0, 1, [], h)
    assert not m.verify_inclusion(b"", 0, 1, [], h)
    assert not m.verify_inclusion(h, 0, 1, [], b"")
    assert not m.verify_inclusion(b"", 0, 1, [], b"")


@pytest.mark.parametrize(("index", "size"), [(0, 0), (0, 1), (1, 0), (2, 1)])
def test_verify_inclusion_rejects_invalid_leaf_or_root(index: int, size: int) -> None:
    # verify_test.go TestVerifyInclusion probes
    assert not m.verify_inclusion(SOME_HASH, index, size, [], b"")
    assert not m.verify_inclusion(b"", index, size, [], EMPTY)
    assert not m.verify_inclusion(SOME_HASH, index, size, [], EMPTY)


@pytest.mark.parametrize(
    ("old", "new", "old_root", "new_root", "proof", "ok"),
    [
        # verify_test.go TestVerifyConsistency, with 32-byte stand-ins for "don't care" roots.
        (0, 0, SOME_HASH, ROOTS[1], [], False),
        (1, 1, SOME_HASH, ROOTS[1], [], False),
        (0, 0, EMPTY, EMPTY, [], True),
        (1, 1, ROOTS[1], ROOTS[1], [], True),
        (1, 0, ROOTS[1], EMPTY, [], False),
        (2, 1, ROOTS[2], ROOTS[1], [], False),
        (1, 2, ROOTS[1], ROOTS[2], [], False),
        (0, 0, EMPTY, SOME_HASH, [], False),
        (1, 1, EMPTY, SOME_HASH, [], False),
        (0, 0, EMPTY, EMPTY, [EMPTY], False),
        (0, 1, EMPTY, EMPTY, [EMPTY], False),
        (1, 1, EMPTY, EMPTY, [EMPTY], False),
        # Go accepts any old root for an empty old tree; we insist it is H("").
        (0, 1, EMPTY, ROOTS[1], [], True),
        (0, 1, SOME_HASH, ROOTS[1], [], False),
    ],
)
def test_verify_consistency_edge_table(
    old: int, new: int, old_root: bytes, new_root: bytes, proof: list[bytes], ok: bool
) -> None:
    assert m.verify_consistency(old, new, old_root, new_root, proof) is ok


# ---------------------------------------------------------------------------------------------
# Properties against the RFC 9162 reference


@settings(max_examples=60, deadline=None)
@given(size=st.integers(0, 300), seed=st.integers(0, 2**16))
def test_root_hash_matches_reference(size: int, seed: int) -> None:
    leaves = make_leaves(size, seed)
    ref = list_mth(leaves)(0, size)
    assert m.root_hash(leaves) == ref
    assert m.extend_root([], 0, leaves) == ref
    table = {(lv, k): h for lv, k, h in m.appended_nodes(0, leaves, [])}
    assert m.root_from_nodes(size, table) == ref


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), size=st.integers(1, 300), seed=st.integers(0, 2**16))
def test_inclusion_matches_reference_and_rejects_corruption(
    data: st.DataObject, size: int, seed: int
) -> None:
    index = data.draw(st.integers(0, size - 1), label="index")
    bit = data.draw(st.integers(0, 255), label="bit")
    leaves = make_leaves(size, seed)
    mth = list_mth(leaves)
    root = mth(0, size)
    proof = m.inclusion_proof(index, leaves)
    assert proof == ref_path(mth, index, 0, size)
    assert m.verify_inclusion(leaves[index], index, size, proof, root)
    for desc, args in inclusion_probes(leaves[index], index, size, proof, root, bit):
        assert m.verify_inclusion(*args) is False, desc


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), new=st.integers(2, 300), seed=st.integers(0, 2**16))
def test_consistency_matches_reference_and_rejects_corruption(
    data: st.DataObject, new: int, seed: int
) -> None:
    old = data.draw(st.integers(1, new - 1), label="old")
    bit = data.draw(st.integers(0, 255), label="bit")
    leaves = make_leaves(new, seed)
    mth = list_mth(leaves)
    proof = m.consistency_proof(old, leaves)
    assert proof == ref_consistency(mth, old, new)
    old_root, new_root = mth(0, old), mth(0, new)
    assert m.verify_consistency(old, new, old_root, new_root, proof)
    for desc, args in consistency_probes(old, new, old_root, new_root, proof, bit):
        assert m.verify_consistency(*args) is False, desc


@pytest.mark.parametrize("size", [1, 2, 3, 7, 8, 64, 100])
def test_trivial_consistency_proofs(size: int) -> None:
    leaves = make_leaves(size)
    root = m.root_hash(leaves)
    assert m.consistency_proof(size, leaves) == []
    assert m.consistency_proof(0, leaves) == []
    assert m.verify_consistency(size, size, root, root, [])
    assert m.verify_consistency(0, size, EMPTY, root, [])


GARBAGE = [None, "abc", 1.5, True, -1, b"", b"x" * 31, b"x" * 33, [b"x"], object(), {1: 2}]


@pytest.mark.parametrize("junk", GARBAGE, ids=lambda j: type(j).__name__ + repr(j)[:10])
def test_verifiers_never_raise_on_garbage(junk: object) -> None:
    leaves = make_leaves(11)
    root = m.root_hash(leaves)
    proof = m.inclusion_proof(3, leaves)
    cproof = m.consistency_proof(5, leaves)
    old_root = m.root_hash(leaves[:5])
    inc_cases = [
        (junk, 3, 11, proof, root),
        (leaves[3], junk, 11, proof, root),
        (leaves[3], 3, junk, proof, root),
        (leaves[3], 3, 11, junk, root),
        (leaves[3], 3, 11, [*proof[:-1], junk], root),
        (leaves[3], 3, 11, proof, junk),
    ]
    for args in inc_cases:
        assert m.verify_inclusion(*args) is False  # type: ignore[arg-type]
    con_cases = [
        (junk, 11, old_root, root, cproof),
        (5, junk, old_root, root, cproof),
        (5, 11, junk, root, cproof),
        (5, 11, old_root, junk, cproof),
        (5, 11, old_root, root, junk),
        (5, 11, old_root, root, [junk, *cproof[1:]]),
    ]
    for args in con_cases:
        assert m.verify_consistency(*args) is False  # type: ignore[arg-type]


def test_verifiers_accept_tuples_and_bytearrays() -> None:
    leaves = make_leaves(6)
    root = m.root_hash(leaves)
    proof = tuple(bytearray(p) for p in m.inclusion_proof(4, leaves))
    assert m.verify_inclusion(bytearray(leaves[4]), 4, 6, proof, bytearray(root))


def test_verifiers_reject_huge_sizes_and_long_proofs() -> None:
    leaves = make_leaves(5)
    root = m.root_hash(leaves)
    assert not m.verify_inclusion(leaves[0], 0, 2**200, [SOME_HASH] * 300, root)
    assert not m.verify_consistency(1, 2**200, leaves[0], root, [SOME_HASH] * 300)


# ---------------------------------------------------------------------------------------------
# Node API: appending and two-phase proofs


def _complete_at(size: int) -> Callable[[tuple[int, int]], bool]:
    return lambda key: (key[1] + 1) << key[0] <= size


def test_node_api_agrees_with_list_api_exhaustively_to_70() -> None:
    n = 70
    leaves = make_leaves(n, seed=7)
    table = {(lv, k): h for lv, k, h in m.appended_nodes(0, leaves, [])}
    for size in range(n + 1):
        complete = _complete_at(size)
        keys = m.plan_root(size)
        assert all(complete(k) for k in keys)
        assert m.root_from_nodes(size, {k: table[k] for k in keys}) == m.root_hash(leaves[:size])
        frontier = m.frontier_from_nodes(size, {k: table[k] for k in m.plan_frontier(size)})
        assert frontier == m.frontier_after(0, leaves[:size], [])
        for index in range(size):
            keys = m.plan_inclusion(index, size)
            assert all(complete(k) for k in keys), (index, size)
            assert len(keys) == len(set(keys))
            got = m.inclusion_proof_from_nodes(index, size, {k: table[k] for k in keys})
            assert got == m.inclusion_proof(index, leaves[:size]), (index, size)
        for old in range(size + 1):
            keys = m.plan_consistency(old, size)
            assert all(complete(k) for k in keys), (old, size)
            got = m.consistency_proof_from_nodes(old, size, {k: table[k] for k in keys})
            assert got == m.consistency_proof(old, leaves[:size]), (old, size)


class PeriodicTree(Mapping[tuple[int, int], bytes]):
    """Perfect-subtree oracle for an arbitrarily large tree whose leaves repeat every 2**P.

    Subtrees at level >= P are all equal per level, so any node is computed in O(P + level)
    hashes and the tree is a genuine RFC 9162 tree of its leaves. Only nodes complete in a tree
    of `size` leaves exist, so asking for an incomplete one is a KeyError.
    """

    P = 5

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.leaves = make_leaves(1 << self.P, seed)
        self.levels = [m.root_hash(self.leaves)]  # levels[i]: any subtree at level P + i
        self.requested: list[tuple[int, int]] = []

    def __getitem__(self, key: tuple[int, int]) -> bytes:
        level, k = key
        if level < 0 or k < 0 or (k + 1) << level > self.size:
            raise KeyError(key)
        self.requested.append(key)
        if level < self.P:
            start = (k << level) % (1 << self.P)
            return m.root_hash(self.leaves[start : start + (1 << level)])
        while len(self.levels) <= level - self.P:
            top = self.levels[-1]
            self.levels.append(m.node_hash(top, top))
        return self.levels[level - self.P]

    def leaf(self, index: int) -> bytes:
        return self.leaves[index % (1 << self.P)]

    def mth(self, a: int, b: int) -> bytes:
        """MTH(D[a:b]) by the RFC recursion, using the oracle for perfect aligned ranges."""
        n = b - a
        if n & (n - 1) == 0 and a % n == 0:
            return self[(n.bit_length() - 1, a // n)]
        k = _split(n)
        return m.node_hash(self.mth(a, a + k), self.mth(a + k, b))

    def __iter__(self):  # pragma: no cover - Mapping protocol only
        raise NotImplementedError

    def __len__(self) -> int:  # pragma: no cover - Mapping protocol only
        raise NotImplementedError


@settings(max_examples=60, deadline=None)
@given(data=st.data(), size=st.integers(2, 2**62), seed=st.integers(0, 100))
def test_node_api_at_large_sizes_uses_log_n_keys(data: st.DataObject, size: int, seed: int) -> None:
    index = data.draw(st.integers(0, size - 1), label="index")
    old = data.draw(st.integers(1, size - 1), label="old")
    tree = PeriodicTree(size, seed)
    bits = size.bit_length()

    root_keys = m.plan_root(size)
    assert len(root_keys) <= bits
    root = m.root_from_nodes(size, {k: tree[k] for k in root_keys})
    assert root == tree.mth(0, size)

    keys = m.plan_inclusion(index, size)
    assert len(keys) <= 2 * bits
    proof = m.inclusion_proof_from_nodes(index, size, {k: tree[k] for k in keys})
    assert proof == ref_path(tree.mth, index, 0, size)
    assert m.verify_inclusion(tree.leaf(index), index, size, proof, root)
    assert not m.verify_inclusion(tree.leaf(index), index, size * 2, proof, root)

    keys = m.plan_consistency(old, size)
    assert len(keys) <= 2 * bits + 1
    cproof = m.consistency_proof_from_nodes(old, size, {k: tree[k] for k in keys})
    assert cproof == ref_consistency(tree.mth, old, size)
    old_root = m.root_from_nodes(old, {k: tree[k] for k in m.plan_root(old)})
    assert m.verify_consistency(old, size, old_root, root, cproof)
    flipped = [bytes([cproof[0][0] ^ 1]) + cproof[0][1:], *cproof[1:]]
    assert not m.verify_consistency(old, size, old_root, root, flipped)

    frontier = m.frontier_from_nodes(size, {k: tree[k] for k in m.plan_frontier(size)})
    assert m.root_from_frontier(frontier, size) == root


def test_large_size_inclusion_needs_few_keys() -> None:
    size = 2**62 + 2**40 + 12345
    tree = PeriodicTree(size, 1)
    keys = m.plan_inclusion(size - 1, size)
    proof = m.inclusion_proof_from_nodes(size - 1, size, {k: tree[k] for k in keys})
    root = m.root_from_nodes(size, {k: tree[k] for k in m.plan_root(size)})
    assert m.verify_inclusion(tree.leaf(size - 1), size - 1, size, proof, root)
    assert len(keys) <= 2 * 63


def test_missing_node_is_reported_with_its_key() -> None:
    leaves = make_leaves(10)
    table = {(lv, k): h for lv, k, h in m.appended_nodes(0, leaves, [])}
    keys = m.plan_inclusion(2, 10)
    del table[keys[-1]]
    with pytest.raises(m.MissingNodeError) as info:
        m.inclusion_proof_from_nodes(2, 10, table)
    assert info.value.key == keys[-1]
    assert "nodes" in str(info.value)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 200),
    cuts=st.lists(st.integers(0, 200), max_size=8),
    seed=st.integers(0, 1000),
)
def test_appended_nodes_batch_splits_equal_one_by_one(n: int, cuts: list[int], seed: int) -> None:
    leaves = make_leaves(n, seed)
    one_by_one: list[m.Node] = []
    frontier: list[bytes] = []
    for i, h in enumerate(leaves):
        one_by_one += m.appended_nodes(i, [h], frontier)
        frontier = m.frontier_after(i, [h], frontier)
    bounds = sorted({0, n, *(c for c in cuts if c <= n)})
    batched: list[m.Node] = []
    frontier2: list[bytes] = []
    for a, b in itertools.pairwise(bounds):
        nodes, new_frontier = m.append_leaves(a, leaves[a:b], frontier2)
        assert m.frontier_after(a, leaves[a:b], frontier2) == new_frontier
        assert m.extend_root(frontier2, a, leaves[a:b]) == m.root_hash(leaves[:b])
        batched += nodes
        frontier2 = new_frontier
    assert batched == one_by_one
    assert frontier2 == frontier == m.frontier_after(0, leaves, [])
    # Every node is a perfect subtree complete at size n, with the right hash, and all are there.
    want = {(lv, k) for lv in range(max(n, 1).bit_length()) for k in range(n >> lv)}
    assert {(lv, k) for lv, k, _ in batched} == want
    mth = list_mth(leaves)
    for lv, k, h in batched:
        if lv <= 3:  # spot-check hashes without quadratic cost
            assert h == mth(k << lv, (k + 1) << lv)


def test_appended_nodes_continues_from_a_frontier() -> None:
    leaves = make_leaves(13)
    frontier = m.frontier_after(0, leaves[:6], [])
    nodes = m.appended_nodes(6, leaves[6:], frontier)
    assert nodes[0] == (0, 6, leaves[6])
    assert (1, 3, m.node_hash(leaves[6], leaves[7])) in nodes
    assert (3, 0, m.root_hash(leaves[:8])) in nodes
    assert not any(lv == 3 and k == 1 for lv, k, _ in nodes)  # leaves 8..15 are incomplete


# ---------------------------------------------------------------------------------------------
# Argument errors


def test_producer_argument_errors_name_the_field() -> None:
    leaves = make_leaves(4)
    with pytest.raises(m.MerkleError, match="index"):
        m.inclusion_proof(4, leaves)
    with pytest.raises(m.MerkleError, match="index"):
        m.plan_inclusion(-1, 4)
    with pytest.raises(m.MerkleError, match="size"):
        m.plan_root(True)  # type: ignore[arg-type]
    with pytest.raises(m.MerkleError, match="old_size"):
        m.plan_consistency(5, 4)
    with pytest.raises(m.MerkleError, match="new_size"):
        m.plan_consistency(1, "4")  # type: ignore[arg-type]
    with pytest.raises(m.MerkleError, match="frontier"):
        m.appended_nodes(3, leaves, [leaves[0]])
    with pytest.raises(m.MerkleError, match="frontier"):
        m.root_from_frontier([], 1)
    with pytest.raises(ValueError, match="start_index"):
        m.frontier_after(-2, leaves, [])


# ---------------------------------------------------------------------------------------------
# Hash algorithms (SM3)


def test_sm3_published_vectors() -> None:
    # GB/T 32905-2016 Appendix A examples 1 and 2.
    abc = "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    abcd16 = "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
    for fn in (hashing.get_hasher("sm3"), hashing._sm3_cryptography):
        assert fn(b"abc").hex() == abc
        assert fn(b"abcd" * 16).hex() == abcd16


def test_hashing_api() -> None:
    assert hashing.digest("sha256", b"abc") == hashlib.sha256(b"abc").digest()
    assert hashing.digest_size("sm3") == hashing.digest_size() == 32
    assert hashing.check_alg("sm3") == "sm3"
    for bad in ("SHA256", "md5", "", None):
        with pytest.raises(hashing.UnknownHashAlgorithmError) as info:
            hashing.get_hasher(bad)  # type: ignore[arg-type]
        assert repr(bad) in str(info.value)
        assert isinstance(info.value, ValueError)


def test_unknown_alg_raises_naming_it() -> None:
    with pytest.raises(ValueError, match="'blake3'"):
        m.leaf_hash(b"x", alg="blake3")
    with pytest.raises(ValueError, match="'blake3'"):
        m.root_hash(make_leaves(3), alg="blake3")
    with pytest.raises(ValueError, match="'blake3'"):
        m.verify_inclusion(SOME_HASH, 0, 1, [], SOME_HASH, alg="blake3")


@settings(max_examples=25, deadline=None)
@given(data=st.data(), size=st.integers(1, 150), seed=st.integers(0, 1000))
def test_sm3_trees_work_and_differ_from_sha256(data: st.DataObject, size: int, seed: int) -> None:
    index = data.draw(st.integers(0, size - 1), label="index")
    old = data.draw(st.integers(0, size), label="old")
    leaves = make_leaves(size, seed, alg="sm3")
    assert leaves[0] == hashing.digest("sm3", b"\x00" + b"%d:0" % seed)
    assert leaves[0] != m.leaf_hash(b"%d:0" % seed)
    mth = list_mth(leaves, "sm3")
    root = m.root_hash(leaves, alg="sm3")
    assert root == mth(0, size) == m.extend_root([], 0, leaves, alg="sm3")
    assert root != m.root_hash(make_leaves(size, seed))  # same data under SHA-256
    proof = m.inclusion_proof(index, leaves, alg="sm3")
    assert proof == ref_path(mth, index, 0, size)
    assert m.verify_inclusion(leaves[index], index, size, proof, root, alg="sm3")
    assume(size > 1)
    assert not m.verify_inclusion(leaves[index], index, size, proof, root)  # sha256 fails
    cproof = m.consistency_proof(old, leaves, alg="sm3")
    assert cproof == ref_consistency(mth, old, size)
    old_root = mth(0, old)
    assert m.verify_consistency(old, size, old_root, root, cproof, alg="sm3")
    table = {(lv, k): h for lv, k, h in m.appended_nodes(0, leaves, [], alg="sm3")}
    assert m.inclusion_proof_from_nodes(index, size, table, alg="sm3") == proof
    assert m.consistency_proof_from_nodes(old, size, table, alg="sm3") == cproof
    assert m.root_from_nodes(size, table, alg="sm3") == root


def test_sm3_empty_root_and_node_hash() -> None:
    assert m.empty_root(alg="sm3") == hashing.digest("sm3", b"")
    a, b = SOME_HASH, EMPTY
    assert m.node_hash(a, b, alg="sm3") == hashing.digest("sm3", b"\x01" + a + b)
    assert m.hash_leaves([b"a", b"b"], alg="sm3") == [
        m.leaf_hash(b"a", alg="sm3"),
        m.leaf_hash(b"b", alg="sm3"),
    ]


def test_random_mutations_of_a_big_proof() -> None:
    rng = random.Random(5)
    leaves = make_leaves(1000, seed=3)
    root = m.root_hash(leaves)
    for _ in range(20):
        index = rng.randrange(1000)
        proof = m.inclusion_proof(index, leaves)
        i = rng.randrange(len(proof))
        flipped = bytearray(proof[i])
        flipped[rng.randrange(32)] ^= 1 << rng.randrange(8)
        bad = [*proof[:i], bytes(flipped), *proof[i + 1 :]]
        assert m.verify_inclusion(leaves[index], index, 1000, proof, root)
        assert not m.verify_inclusion(leaves[index], index, 1000, bad, root)
