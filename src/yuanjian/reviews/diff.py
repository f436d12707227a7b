"""Field-level differences between two revisions of a spec, and Art. 19 scope changes.

:func:`diff_revisions` compares two spec documents (JSON-like mappings) and lists what was
added, removed or changed, each at a path the submitter can read and a reviewer can comment on::

    resources[tax_filing].fields[vat].purpose

How a path is built:

* a mapping key is ``.key`` (no dot before the first one);
* a list of mappings that all carry a **natural key** (the first of :data:`NATURAL_KEYS` —
  ``code``, ``name``, ``field``, ``id``, ``key`` — present on every item, with unique string or
  integer values; chosen on each revision alone and the same on both) is matched by that key,
  ``[tax_filing]``; reordering such a list is not a change; if the two revisions identify its
  items differently (a key field added to or dropped from some items) the list changed as a
  whole;
* a list of distinct strings (field names, scenario codes) is a set: ``fields[vat]`` added or
  removed, order not significant;
* any other list of mappings is compared by position, ``[0]``; any other list of scalars as one
  value;
* a segment that is empty or holds ``.``, ``[``, ``]``, ``"`` or whitespace is JSON-quoted:
  ``["a b"]``.

An added or removed item is reported once, at its own path, with the whole item as value.
A change of type (a mapping becoming a list, ``1`` becoming ``true``) is a change of the whole
value. :class:`FieldChange` is JSON-serializable (:meth:`FieldChange.to_dict`) and prints as one
readable line. :func:`document_paths` lists every path of one document, so per-field review
comments can be anchored to (and checked against) the same path syntax.

:func:`scope_changed` answers Art. 19 for product specs: which of ``purpose`` (purpose text or
scenario), ``scope`` (components or fields) and ``period`` differ between an approved spec and a
new one. Whitespace inside text and the order of names do not count as changes.

Hand-written rather than DeepDiff/jsondiff: those report list items by position (or need a
per-call configuration to match by key) and give paths like ``root['resources'][0]``, which a
submitter cannot read and which move when an item is inserted; matching by natural key is the
whole point here, and it is a short recursion.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = [
    "NATURAL_KEYS",
    "SCOPE_KEYS",
    "ChangeKind",
    "FieldChange",
    "diff_revisions",
    "document_paths",
    "quote_segment",
    "scope_changed",
]

#: Keys that identify an item of a list of mappings, in order of preference.
NATURAL_KEYS: tuple[str, ...] = ("code", "name", "field", "id", "key")

#: The top-level keys of a product spec behind each Art. 19 aspect.
SCOPE_KEYS: Mapping[str, tuple[str, ...]] = {
    "purpose": ("purpose", "scenario"),
    "scope": ("components", "resources", "fields", "scope"),
    "period": ("period", "valid_from", "valid_until"),
}

_SAFE_SEGMENT = re.compile(r'^[^.\[\]"\s]+$')

Segment = str | int


class ChangeKind(StrEnum):
    """What happened at a path."""

    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"


def quote_segment(value: Segment) -> str:
    """A path segment as written in a path: bare when plain, JSON-quoted otherwise."""
    text = str(value)
    return text if _SAFE_SEGMENT.match(text) else json.dumps(text, ensure_ascii=False)


def _join(base: str, segment: Segment, *, bracket: bool) -> str:
    """Append a segment: ``[seg]`` for list items, ``.seg`` (or ``["se g"]``) for keys."""
    rendered = quote_segment(segment)
    if bracket or rendered.startswith('"'):
        return f"{base}[{rendered}]"
    return f"{base}.{rendered}" if base else rendered


def _jsonable(value: Any) -> Any:
    """The value with mappings, lists and non-JSON scalars made JSON-serializable."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _short(value: Any) -> str:
    return json.dumps(_jsonable(value), ensure_ascii=False, sort_keys=False)


@dataclass(frozen=True)
class FieldChange:
    """One difference: the path, added/removed/changed, and the old and new values."""

    path: str
    kind: ChangeKind
    old: Any = None
    new: Any = None
    segments: tuple[Segment, ...] = ()

    def __str__(self) -> str:
        if self.kind is ChangeKind.ADDED:
            return f"added {self.path}: {_short(self.new)}"
        if self.kind is ChangeKind.REMOVED:
            return f"removed {self.path}: {_short(self.old)}"
        return f"changed {self.path}: {_short(self.old)} → {_short(self.new)}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable form."""
        return {
            "path": self.path,
            "kind": str(self.kind),
            "old": _jsonable(self.old),
            "new": _jsonable(self.new),
            "segments": list(self.segments),
        }


def _is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes, bytearray))


def _same_scalar(a: Any, b: Any) -> bool:
    # True == 1 and 1 == 1.0 in Python; a spec changing 1 to true has changed.
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if _is_list(a) and _is_list(b):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping) or isinstance(b, Mapping) or _is_list(a) or _is_list(b):
        return False
    return _same_scalar(a, b)


def _key_value_ok(value: Any) -> bool:
    return isinstance(value, (str, int)) and not isinstance(value, bool)


def _natural_key(old: Sequence[Any], new: Sequence[Any]) -> str | None:
    """The natural key matching items of two lists of mappings, or None."""
    if not (old or new) or not all(isinstance(i, Mapping) for i in (*old, *new)):
        return None
    for key in NATURAL_KEYS:
        if not all(key in i and _key_value_ok(i[key]) for i in (*old, *new)):
            continue
        if all(len({i[key] for i in side}) == len(side) for side in (old, new)):
            return key
    return None


_MISMATCH = "\x00mismatch"


def _list_key(old: Sequence[Any], new: Sequence[Any]) -> str | None:
    """The natural key both revisions of a list are matched by, None, or ``_MISMATCH``.

    Each side's key is chosen from that side alone (as :func:`document_paths` does), so every
    path the diff reports exists in its document; an empty side takes the other's key.
    """
    ko = _natural_key(old, old) if old else None
    kn = _natural_key(new, new) if new else None
    if not old or not new or ko == kn:
        return ko or kn
    return _MISMATCH


def _name_set(old: Sequence[Any], new: Sequence[Any]) -> bool:
    """Whether both lists are lists of distinct strings (compared as sets)."""
    return all(
        all(isinstance(v, str) for v in side) and len(set(side)) == len(side) for side in (old, new)
    )


def _walk(
    old: Any, new: Any, path: str, segments: tuple[Segment, ...], out: list[FieldChange]
) -> None:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for key in [*old, *(k for k in new if k not in old)]:
            sub = _join(path, key, bracket=False)
            seg = (*segments, str(key))
            if key not in new:
                out.append(FieldChange(sub, ChangeKind.REMOVED, old[key], None, seg))
            elif key not in old:
                out.append(FieldChange(sub, ChangeKind.ADDED, None, new[key], seg))
            else:
                _walk(old[key], new[key], sub, seg, out)
        return
    if _is_list(old) and _is_list(new):
        key = _list_key(old, new)
        if key == _MISMATCH:
            # The items are identified differently in the two revisions (a key field was added
            # to or dropped from some items): no item-level path exists in both, so the list
            # changed as a whole.
            out.append(FieldChange(path, ChangeKind.CHANGED, old, new, segments))
            return
        if key is not None:
            _walk_keyed({i[key]: i for i in old}, {i[key]: i for i in new}, path, segments, out)
            return
        if (old or new) and _name_set(old, new):
            _walk_keyed({v: v for v in old}, {v: v for v in new}, path, segments, out)
            return
        if all(isinstance(i, Mapping) for i in (*old, *new)):
            for i in range(max(len(old), len(new))):
                sub, seg = _join(path, i, bracket=True), (*segments, i)
                if i >= len(new):
                    out.append(FieldChange(sub, ChangeKind.REMOVED, old[i], None, seg))
                elif i >= len(old):
                    out.append(FieldChange(sub, ChangeKind.ADDED, None, new[i], seg))
                else:
                    _walk(old[i], new[i], sub, seg, out)
            return
    if not _same(old, new):
        out.append(FieldChange(path, ChangeKind.CHANGED, old, new, segments))


def _walk_keyed(
    old: Mapping[Any, Any],
    new: Mapping[Any, Any],
    path: str,
    segments: tuple[Segment, ...],
    out: list[FieldChange],
) -> None:
    for key in [*old, *(k for k in new if k not in old)]:
        sub, seg = _join(path, key, bracket=True), (*segments, str(key))
        if key not in new:
            out.append(FieldChange(sub, ChangeKind.REMOVED, old[key], None, seg))
        elif key not in old:
            out.append(FieldChange(sub, ChangeKind.ADDED, None, new[key], seg))
        else:
            _walk(old[key], new[key], sub, seg, out)


def diff_revisions(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[FieldChange]:
    """Every added, removed and changed field between two revisions, in document order."""
    if not isinstance(old, Mapping) or not isinstance(new, Mapping):
        raise TypeError("diff_revisions compares two spec documents (mappings)")
    out: list[FieldChange] = []
    _walk(old, new, "", (), out)
    return out


def document_paths(doc: Mapping[str, Any]) -> set[str]:
    """Every path in one document (containers and leaves), in the syntax of the diff.

    A list's natural key is chosen from this document alone, as the diff chooses it for each
    revision, so every path the diff reports is in this set for its document.
    """
    paths: set[str] = set()

    def visit(value: Any, path: str) -> None:
        if path:
            paths.add(path)
        if isinstance(value, Mapping):
            for key, sub in value.items():
                visit(sub, _join(path, key, bracket=False))
        elif _is_list(value):
            key = _natural_key(value, value)
            if key is not None:
                for item in value:
                    visit(item, _join(path, item[key], bracket=True))
            elif value and _name_set(value, value):
                for item in value:
                    paths.add(_join(path, item, bracket=True))
            elif all(isinstance(i, Mapping) for i in value):
                for i, item in enumerate(value):
                    visit(item, _join(path, i, bracket=True))

    visit(doc, "")
    return paths


def _normalized(value: Any) -> Any:
    """Text with collapsed whitespace; names as a sorted set (for scope comparison)."""
    if isinstance(value, str):
        return " ".join(value.split())
    if isinstance(value, Mapping):
        return {k: _normalized(v) for k, v in value.items()}
    if _is_list(value):
        items = [_normalized(v) for v in value]
        if all(isinstance(v, str) for v in items):
            return sorted(set(items))
        return items
    return value


def scope_changed(
    old_product_spec: Mapping[str, Any],
    new_product_spec: Mapping[str, Any],
    *,
    keys: Mapping[str, Iterable[str]] = SCOPE_KEYS,
) -> set[str]:
    """Which of ``purpose``, ``scope``, ``period`` differ (Art. 19: a change needs review)."""
    changed: set[str] = set()
    for aspect, names in keys.items():
        for name in names:
            before = {name: _normalized(old_product_spec.get(name))}
            after = {name: _normalized(new_product_spec.get(name))}
            if diff_revisions(before, after):
                changed.add(aspect)
                break
    return changed
