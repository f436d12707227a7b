"""RFC 9162 / RFC 6962 Merkle tree hashing, proofs and the storage-oriented node API.

Definitions (RFC 9162 section 2.1): ``MTH({}) = H("")``, ``MTH({d}) = H(0x00 || d)`` and, for
``n > 1`` with ``k`` the largest power of two below ``n``,
``MTH(D[n]) = H(0x01 || MTH(D[0:k]) || MTH(D[k:n]))``. Indexes are 0-based; inclusion proofs are
RFC 9162 PATH order and consistency proofs SUBPROOF order (deepest node first).

Two ways in:

* The list API (``root_hash``, ``inclusion_proof``, ``consistency_proof``) takes every leaf hash;
  it is the simple, obviously-correct form for tests and small trees.
* The node API is what the database-backed log uses. The log stores, for each leaf it appends,
  the hashes of the *perfect subtrees* that become complete: node ``(level, k)`` is the hash of
  leaves ``[k * 2**level, (k + 1) * 2**level)``. ``append_leaves`` / ``appended_nodes`` compute
  those nodes for a batch in memory from the current *frontier* (the perfect subtrees covering
  ``[0, size)``, one per set bit of ``size``, largest first). Proofs are two-phase: ``plan_*``
  names the O(log n) node keys needed (one ``IN (...)`` query), ``*_from_nodes`` assembles the
  answer; the hash of an incomplete right-hand subtree is folded from its perfect pieces.

Verifiers (``verify_inclusion``, ``verify_consistency``) follow RFC 9162 sections 2.1.3.2 and
2.1.4.2 and return False, never raise, on any bad or malformed proof. Everything takes a
keyword-only ``alg`` ("sha256" default, or "sm3"); an unknown alg raises
:class:`~yuanjian.audit.hashing.UnknownHashAlgorithmError` because it is a configuration error,
not bad proof data. This is hand-written rather than taken from a library because no maintained
Python package offers RFC 9162 proofs over a perfect-subtree node store with SM3 support.
"""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence

from yuanjian.audit.hashing import DEFAULT_ALG, digest_size, get_hasher

__all__ = [
    "MerkleError",
    "MissingNodeError",
    "Node",
    "NodeKey",
    "append_leaves",
    "appended_nodes",
    "consistency_proof",
    "consistency_proof_from_nodes",
    "empty_root",
    "extend_root",
    "frontier_after",
    "frontier_from_nodes",
    "hash_leaves",
    "inclusion_proof",
    "inclusion_proof_from_nodes",
    "leaf_hash",
    "node_hash",
    "plan_consistency",
    "plan_frontier",
    "plan_inclusion",
    "plan_root",
    "root_from_frontier",
    "root_from_nodes",
    "root_hash",
    "subtree_range",
    "verify_consistency",
    "verify_inclusion",
]

NodeKey = tuple[int, int]
Node = tuple[int, int, bytes]
_NodeFn = Callable[[bytes, bytes], bytes]

_sha256 = hashlib.sha256
_LEAF = b"\x00"
_INNER = b"\x01"


class MerkleError(ValueError):
    """Bad arguments to a Merkle producer function (index/size out of range, bad frontier)."""

    def __init__(self, message: str, *, field: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class MissingNodeError(MerkleError):
    """A node needed to assemble a result is absent from the supplied mapping."""

    def __init__(self, key: NodeKey) -> None:
        self.key = key
        super().__init__(f"node (level={key[0]}, k={key[1]}) not supplied", field="nodes")


# ---------------------------------------------------------------------------------------------
# Hashing primitives


def _sha256_node(left: bytes, right: bytes) -> bytes:
    return _sha256(_INNER + left + right).digest()


def _node_fn(alg: str) -> _NodeFn:
    if alg == "sha256":
        return _sha256_node
    h = get_hasher(alg)

    def _node(left: bytes, right: bytes) -> bytes:
        return h(_INNER + left + right)

    return _node


def leaf_hash(data: bytes, *, alg: str = DEFAULT_ALG) -> bytes:
    """Return the RFC 9162 leaf hash H(0x00 || data)."""
    if alg == "sha256":
        return _sha256(_LEAF + data).digest()
    return get_hasher(alg)(_LEAF + data)


def node_hash(left: bytes, right: bytes, *, alg: str = DEFAULT_ALG) -> bytes:
    """Return the RFC 9162 interior node hash H(0x01 || left || right)."""
    if alg == "sha256":
        return _sha256(_INNER + left + right).digest()
    return get_hasher(alg)(_INNER + left + right)


def hash_leaves(items: Iterable[bytes], *, alg: str = DEFAULT_ALG) -> list[bytes]:
    """Return the leaf hash of every item, in order (batch form of leaf_hash)."""
    if alg == "sha256":
        return [_sha256(_LEAF + d).digest() for d in items]
    h = get_hasher(alg)
    return [h(_LEAF + d) for d in items]


def empty_root(*, alg: str = DEFAULT_ALG) -> bytes:
    """Return the root hash of the empty tree, H("")."""
    return get_hasher(alg)(b"")


# ---------------------------------------------------------------------------------------------
# Argument checks


def _uint(value: object, field: str) -> int:
    if isinstance(value, bool):
        raise MerkleError(f"must be an integer, not {value!r}", field=field)
    try:
        n = operator.index(value)  # type: ignore[call-overload]
    except TypeError:
        raise MerkleError(f"must be an integer, not {type(value).__name__}", field=field) from None
    if n < 0:
        raise MerkleError(f"must be >= 0, got {n}", field=field)
    return n


def _check_frontier(frontier: Sequence[bytes], size: int) -> list[bytes]:
    stack = list(frontier)
    if len(stack) != size.bit_count():
        raise MerkleError(
            f"a tree of size {size} has {size.bit_count()} frontier hashes, got {len(stack)}",
            field="frontier",
        )
    return stack


def subtree_range(level: int, k: int) -> tuple[int, int]:
    """Return the half-open leaf range [start, end) covered by perfect subtree (level, k)."""
    return k << level, (k + 1) << level


# ---------------------------------------------------------------------------------------------
# Layouts: which perfect subtrees make up each element of a result


def _decompose(start: int, count: int) -> list[NodeKey]:
    """Perfect subtrees covering [start, start + count), largest first.

    Valid when start is a multiple of the largest power of two in count, which holds for
    [0, size) and for every right-border range used below.
    """
    keys: list[NodeKey] = []
    pos = start
    for level in range(count.bit_length() - 1, -1, -1):
        if (count >> level) & 1:
            keys.append((level, pos >> level))
            pos += 1 << level
    return keys


def _path_layout(index: int, size: int, base: int) -> list[list[NodeKey]]:
    """Groups of keys for the RFC 9162 PATH of node (base, index) in the tree of `size` leaves.

    Each group folds (right to left) to one proof element. Only the sibling at the top of the
    "inner" part can be an incomplete subtree; every other element is a single perfect node.
    """
    last = (size - 1) >> base
    inner = (index ^ last).bit_length()
    groups: list[list[NodeKey]] = [[(base + lv, (index >> lv) ^ 1)] for lv in range(inner - 1)]
    if inner:
        level = base + inner - 1
        start = ((index >> (inner - 1)) ^ 1) << level
        groups.append(_decompose(start, min(size, start + (1 << level)) - start))
    rest = index >> inner
    lv = inner
    while rest:
        if rest & 1:
            groups.append([(base + lv, (index >> lv) ^ 1)])
        rest >>= 1
        lv += 1
    return groups


def _inclusion_layout(index: object, size: object) -> list[list[NodeKey]]:
    i = _uint(index, "index")
    n = _uint(size, "size")
    if i >= n:
        raise MerkleError(f"{i} is not a leaf of a tree of size {n}", field="index")
    return _path_layout(i, n, 0)


def _consistency_layout(old_size: object, new_size: object) -> list[list[NodeKey]]:
    old = _uint(old_size, "old_size")
    new = _uint(new_size, "new_size")
    if old > new:
        raise MerkleError(f"{old} is larger than new_size {new}", field="old_size")
    if old == 0 or old == new:
        return []
    # The largest perfect subtree ending at `old`: its path to the new root is the proof,
    # preceded by the subtree itself unless old is a power of two (the verifier has it as
    # old_root already).
    level = (old & -old).bit_length() - 1
    index = (old - 1) >> level
    groups = _path_layout(index, new, level)
    if index:
        groups.insert(0, [(level, index)])
    return groups


def _flatten(groups: list[list[NodeKey]]) -> list[NodeKey]:
    return [key for group in groups for key in group]


def plan_root(size: int) -> list[NodeKey]:
    """Return the (level, k) keys whose hashes determine the root of the tree of `size` leaves."""
    return _decompose(0, _uint(size, "size"))


def plan_frontier(size: int) -> list[NodeKey]:
    """Return the (level, k) keys of the frontier of a tree of `size` leaves, largest first."""
    return _decompose(0, _uint(size, "size"))


def plan_inclusion(index: int, size: int) -> list[NodeKey]:
    """Return the (level, k) keys needed to build the inclusion proof of leaf index in size."""
    return _flatten(_inclusion_layout(index, size))


def plan_consistency(old_size: int, new_size: int) -> list[NodeKey]:
    """Return the (level, k) keys needed to build the consistency proof old_size -> new_size."""
    return _flatten(_consistency_layout(old_size, new_size))


# ---------------------------------------------------------------------------------------------
# Assembly from a node mapping


def _fetch(nodes: Mapping[NodeKey, bytes], key: NodeKey) -> bytes:
    try:
        return nodes[key]
    except KeyError:
        raise MissingNodeError(key) from None


def _fold(group: list[NodeKey], nodes: Mapping[NodeKey, bytes], node: _NodeFn) -> bytes:
    h = _fetch(nodes, group[-1])
    for key in reversed(group[:-1]):
        h = node(_fetch(nodes, key), h)
    return h


def root_from_nodes(size: int, nodes: Mapping[NodeKey, bytes], *, alg: str = DEFAULT_ALG) -> bytes:
    """Return the root of the tree of `size` leaves from the nodes named by plan_root(size)."""
    keys = plan_root(size)
    if not keys:
        return empty_root(alg=alg)
    return _fold(keys, nodes, _node_fn(alg))


def frontier_from_nodes(size: int, nodes: Mapping[NodeKey, bytes]) -> list[bytes]:
    """Return the frontier of the tree of `size` leaves from the nodes named by plan_frontier."""
    return [_fetch(nodes, key) for key in plan_frontier(size)]


def inclusion_proof_from_nodes(
    index: int, size: int, nodes: Mapping[NodeKey, bytes], *, alg: str = DEFAULT_ALG
) -> list[bytes]:
    """Return the inclusion proof of leaf index in size from the nodes named by plan_inclusion."""
    node = _node_fn(alg)
    return [_fold(group, nodes, node) for group in _inclusion_layout(index, size)]


def consistency_proof_from_nodes(
    old_size: int, new_size: int, nodes: Mapping[NodeKey, bytes], *, alg: str = DEFAULT_ALG
) -> list[bytes]:
    """Return the consistency proof old_size -> new_size from the nodes of plan_consistency."""
    node = _node_fn(alg)
    return [_fold(group, nodes, node) for group in _consistency_layout(old_size, new_size)]


# ---------------------------------------------------------------------------------------------
# List API


def _reduce(hashes: list[bytes], node: _NodeFn) -> bytes:
    """Root of a non-empty list of leaf hashes, pairing level by level.

    Promoting the odd node at the end of each level unchanged yields exactly the RFC 9162
    left-balanced tree.
    """
    while len(hashes) > 1:
        paired = [node(hashes[i], hashes[i + 1]) for i in range(0, len(hashes) - 1, 2)]
        if len(hashes) & 1:
            paired.append(hashes[-1])
        hashes = paired
    return hashes[0]


def _list_nodes(
    leaf_hashes: Sequence[bytes], keys: list[NodeKey], node: _NodeFn
) -> dict[NodeKey, bytes]:
    return {
        (level, k): _reduce(list(leaf_hashes[k << level : (k + 1) << level]), node)
        for level, k in keys
    }


def root_hash(leaf_hashes: Sequence[bytes], *, alg: str = DEFAULT_ALG) -> bytes:
    """Return the Merkle tree hash of the given leaf hashes (empty tree: H(""))."""
    if not leaf_hashes:
        return empty_root(alg=alg)
    return _reduce(list(leaf_hashes), _node_fn(alg))


def inclusion_proof(
    index: int, leaf_hashes: Sequence[bytes], *, alg: str = DEFAULT_ALG
) -> list[bytes]:
    """Return the RFC 9162 inclusion proof (PATH) of leaf index in the tree of leaf_hashes."""
    groups = _inclusion_layout(index, len(leaf_hashes))
    node = _node_fn(alg)
    nodes = _list_nodes(leaf_hashes, _flatten(groups), node)
    return [_fold(group, nodes, node) for group in groups]


def consistency_proof(
    old_size: int, leaf_hashes: Sequence[bytes], *, alg: str = DEFAULT_ALG
) -> list[bytes]:
    """Return the RFC 9162 consistency proof from old_size to the tree of leaf_hashes."""
    groups = _consistency_layout(old_size, len(leaf_hashes))
    node = _node_fn(alg)
    nodes = _list_nodes(leaf_hashes, _flatten(groups), node)
    return [_fold(group, nodes, node) for group in groups]


# ---------------------------------------------------------------------------------------------
# Appending (compact ranges)


def append_leaves(
    start_index: int,
    leaf_hashes: Iterable[bytes],
    frontier: Sequence[bytes],
    *,
    alg: str = DEFAULT_ALG,
) -> tuple[list[Node], list[bytes]]:
    """Append leaves to a tree known by its frontier; return (completed nodes, new frontier).

    Completed nodes are (level, k, hash) in the order they complete, level 0 being the leaves.
    """
    i = _uint(start_index, "start_index")
    stack = _check_frontier(frontier, i)
    out: list[Node] = []
    emit = out.append
    push = stack.append
    pop = stack.pop
    if alg == "sha256":
        sha = _sha256
        inner = _INNER
        for h in leaf_hashes:
            emit((0, i, h))
            level = 0
            k = i
            while k & 1:
                h = sha(inner + pop() + h).digest()
                level += 1
                k >>= 1
                emit((level, k, h))
            push(h)
            i += 1
    else:
        node = _node_fn(alg)
        for h in leaf_hashes:
            emit((0, i, h))
            level = 0
            k = i
            while k & 1:
                h = node(pop(), h)
                level += 1
                k >>= 1
                emit((level, k, h))
            push(h)
            i += 1
    return out, stack


def appended_nodes(
    start_index: int,
    leaf_hashes: Iterable[bytes],
    frontier: Sequence[bytes],
    *,
    alg: str = DEFAULT_ALG,
) -> list[Node]:
    """Return every (level, k, hash) perfect subtree completed by appending leaf_hashes."""
    return append_leaves(start_index, leaf_hashes, frontier, alg=alg)[0]


def _advance(
    start_index: int, leaf_hashes: Iterable[bytes], frontier: Sequence[bytes], alg: str
) -> tuple[list[bytes], int]:
    i = _uint(start_index, "start_index")
    stack = _check_frontier(frontier, i)
    push = stack.append
    pop = stack.pop
    node = _node_fn(alg)
    for h in leaf_hashes:
        k = i
        while k & 1:
            h = node(pop(), h)
            k >>= 1
        push(h)
        i += 1
    return stack, i


def frontier_after(
    start_index: int,
    leaf_hashes: Iterable[bytes],
    frontier: Sequence[bytes],
    *,
    alg: str = DEFAULT_ALG,
) -> list[bytes]:
    """Return the frontier after appending leaf_hashes to the tree of size start_index."""
    return _advance(start_index, leaf_hashes, frontier, alg)[0]


def root_from_frontier(frontier: Sequence[bytes], size: int, *, alg: str = DEFAULT_ALG) -> bytes:
    """Return the root of the tree of `size` leaves from its frontier (largest subtree first)."""
    n = _uint(size, "size")
    stack = _check_frontier(frontier, n)
    if not stack:
        return empty_root(alg=alg)
    node = _node_fn(alg)
    h = stack[-1]
    for left in reversed(stack[:-1]):
        h = node(left, h)
    return h


def extend_root(
    frontier: Sequence[bytes],
    start_size: int,
    new_leaf_hashes: Iterable[bytes],
    *,
    alg: str = DEFAULT_ALG,
) -> bytes:
    """Return the root after appending new_leaf_hashes to a tree known only by its frontier."""
    stack, size = _advance(start_size, new_leaf_hashes, frontier, alg)
    return root_from_frontier(stack, size, alg=alg)


# ---------------------------------------------------------------------------------------------
# Verification (RFC 9162 sections 2.1.3.2 and 2.1.4.2)


def _digest_or_none(value: object, size: int) -> bytes | None:
    if isinstance(value, bytes | bytearray) and len(value) == size:
        return bytes(value)
    return None


def _uint_or_none(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return int(value)
    return None


def verify_inclusion(
    leaf_hash: bytes,
    index: int,
    size: int,
    proof: Sequence[bytes],
    root: bytes,
    *,
    alg: str = DEFAULT_ALG,
) -> bool:
    """Return True iff proof shows leaf_hash at index in the tree of `size` with this root."""
    node = _node_fn(alg)
    n = digest_size(alg)
    try:
        fn = _uint_or_none(index)
        sn = _uint_or_none(size)
        r = _digest_or_none(leaf_hash, n)
        want = _digest_or_none(root, n)
        if fn is None or sn is None or r is None or want is None or fn >= sn:
            return False
        if not isinstance(proof, list | tuple):
            return False
        sn -= 1
        for item in proof:
            p = _digest_or_none(item, n)
            if p is None or sn == 0:
                return False
            if fn & 1 or fn == sn:
                r = node(p, r)
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
            else:
                r = node(r, p)
            fn >>= 1
            sn >>= 1
        return sn == 0 and r == want
    except Exception:  # a verifier reports bad input as "not verified", whatever it is
        return False


def verify_consistency(
    old_size: int,
    new_size: int,
    old_root: bytes,
    new_root: bytes,
    proof: Sequence[bytes],
    *,
    alg: str = DEFAULT_ALG,
) -> bool:
    """Return True iff proof shows the tree (old_size, old_root) is a prefix of (new_size, ...).

    An empty old tree is consistent with anything, but its root must be H("") and its proof
    empty; equal sizes need equal roots and an empty proof.
    """
    node = _node_fn(alg)
    n = digest_size(alg)
    try:
        old = _uint_or_none(old_size)
        new = _uint_or_none(new_size)
        old_r = _digest_or_none(old_root, n)
        new_r = _digest_or_none(new_root, n)
        if old is None or new is None or old_r is None or new_r is None or old > new:
            return False
        if not isinstance(proof, list | tuple):
            return False
        path: list[bytes] = []
        for item in proof:
            p = _digest_or_none(item, n)
            if p is None:
                return False
            path.append(p)
        if old == new:
            return not path and old_r == new_r and (old > 0 or old_r == empty_root(alg=alg))
        if old == 0:
            return not path and old_r == empty_root(alg=alg)
        if not path:
            return False
        if old & (old - 1) == 0:
            path.insert(0, old_r)
        fn = old - 1
        sn = new - 1
        while fn & 1:
            fn >>= 1
            sn >>= 1
        fr = sr = path[0]
        for c in path[1:]:
            if sn == 0:
                return False
            if fn & 1 or fn == sn:
                fr = node(c, fr)
                sr = node(c, sr)
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
            else:
                sr = node(sr, c)
            fn >>= 1
            sn >>= 1
        return sn == 0 and fr == old_r and sr == new_r
    except Exception:  # a verifier reports bad input as "not verified", whatever it is
        return False
