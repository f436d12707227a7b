"""Benchmark: personal-information detection over a table, against Presidio.

    python benchmarks/detect.py [--quick]

Figures, one JSON line each:

- ``detect_rows_per_s``: ``yuanjian.privacy.detect.scan_table`` over 1,000,000 rows x 8
  columns of mixed generated personal data (100,000 with ``--quick``), every row scanned, one
  timed run after a small warm-up. Baseline: Presidio (presidio-analyzer with the no-op NLP
  engine, so no model is loaded and no NER runs, and one PatternRecognizer per label with the
  same regular expressions and the same check-digit validation in ``validate_result``) over
  the first 2,000 rows (1,000 with ``--quick``), one ``analyze`` call per cell, as a
  per-row rate. Presidio runs in its own virtual environment (``.venv-baselines``), in a
  subprocess of this script, because it pulls spaCy and its own pins.
- ``column_label_accuracy`` and ``cell_precision_<label>`` / ``cell_recall_<label>`` for
  cn_resident_id, cn_uscc, cn_mobile, bank_card and email on the generated labelled set
  (``tests/privacy/labeled.py``), each with its target.

The baseline venv is made with:

    python3.11 -m venv .venv-baselines
    .venv-baselines/bin/pip install presidio-analyzer==2.2.366
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BASELINE_PYTHON = ROOT / ".venv-baselines" / "bin" / "python"
QUALITY_LABELS = ("cn_resident_id", "cn_uscc", "cn_mobile", "bank_card", "email")


def _emit(figure: str, value: float | None, unit: str, **extra: Any) -> None:
    line = {"figure": figure, "value": value, "unit": unit}
    line.setdefault("baseline", None)
    line.setdefault("baseline_value", None)
    line.setdefault("ratio", None)
    line.update(extra)
    print(json.dumps(line, ensure_ascii=False), flush=True)


# ---------------------------------------------------------------- Presidio worker
# Runs inside the baseline venv: standard library, presidio and phonenumbers only.


def _presidio_worker(path: str) -> None:
    import re as std_re
    from collections import Counter

    import regex
    from presidio_analyzer import AnalyzerEngine, Pattern, PatternRecognizer, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NoOpNlpEngine

    job = json.loads(Path(path).read_text(encoding="utf-8"))
    sep = std_re.compile(r"[\s\-()（）]")
    mobile = std_re.compile(job["mobile_pattern"])
    landline = std_re.compile(job["landline_pattern"])
    provinces = set(job["provinces"])
    alphabet = "0123456789ABCDEFGHJKLMNPQRTUWXY"

    def rid_ok(s: str) -> bool:
        s = s.upper()
        if len(s) != 18 or not s[:17].isdigit() or int(s[:2]) not in provinces:
            return False
        total = sum(int(c) * (2 ** (17 - i) % 11) for i, c in enumerate(s[:17]))
        if "0123456789X"[(1 - total) % 11] != s[17]:
            return False
        y, m, d = int(s[6:10]), int(s[10:12]), int(s[12:14])
        dim = [31, 29 if (y % 4 == 0 and y % 100 != 0) or y % 400 == 0 else 28, 31, 30, 31]
        dim += [30, 31, 31, 30, 31, 30, 31]
        return y >= 1900 and 1 <= m <= 12 and 1 <= d <= dim[m - 1] and s[6:14] <= job["today"]

    def uscc_ok(s: str) -> bool:
        if len(s) != 18 or any(c not in alphabet for c in s):
            return False
        total = sum(alphabet.index(c) * (3**i % 31) for i, c in enumerate(s[:17]))
        return alphabet[(31 - total % 31) % 31] == s[17]

    def luhn_ok(s: str) -> bool:
        digits = sep.sub("", s)
        if not 16 <= len(digits) <= 19 or not digits.isdigit():
            return False
        total = 0
        for i, c in enumerate(reversed(digits)):
            d = int(c) * (2 if i % 2 else 1)
            total += d - 9 if d > 9 else d
        return total % 10 == 0

    validators = {
        "cn_resident_id": rid_ok,
        "cn_uscc": uscc_ok,
        "bank_card": luhn_ok,
        "cn_mobile": lambda s: bool(mobile.match(sep.sub("", s))),
        "cn_landline": lambda s: bool(landline.match(sep.sub("", s))),
    }

    class Checked(PatternRecognizer):
        def __init__(self, label: str, pattern: str) -> None:
            super().__init__(
                supported_entity=label,
                patterns=[Pattern(label, pattern, 0.5)],
                supported_language="zh",
                global_regex_flags=regex.DOTALL | regex.MULTILINE | regex.ASCII,
            )
            self._check = validators.get(label)

        def validate_result(self, pattern_text: str) -> bool | None:
            return None if self._check is None else self._check(pattern_text)

    registry = RecognizerRegistry(supported_languages=["zh"])
    for label, pattern in job["patterns"].items():
        registry.add_recognizer(Checked(label, pattern))
    engine = NoOpNlpEngine(models=[{"lang_code": "zh", "model_name": "none"}])
    analyzer = AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=["zh"])

    columns: dict[str, list[str | None]] = job["columns"]
    rows = len(next(iter(columns.values())))
    analyzer.analyze(text="热身 13812345678", language="zh")  # warm-up, compiles patterns
    labels: dict[str, str] = {}
    started = time.perf_counter()
    for name, values in columns.items():
        votes: Counter[str] = Counter()
        present = 0
        for value in values:
            if value is None:
                continue
            present += 1
            results = analyzer.analyze(text=value, language="zh")
            if not results:
                continue
            best = max(results, key=lambda r: (r.score, r.end - r.start))
            whole = best.end - best.start >= 0.8 * len(value)
            votes[best.entity_type if whole else "free_text_with_pii"] += 1
        top = votes.most_common(1)
        labels[name] = top[0][0] if top and top[0][1] >= 0.5 * max(1, present) else "none"
    seconds = time.perf_counter() - started
    print(json.dumps({"rows": rows, "seconds": seconds, "labels": labels}))


# ---------------------------------------------------------------- main


def _run_presidio(table: Any, rows: int, python: Path) -> dict[str, Any]:
    from phonenumbers import PhoneMetadata

    from yuanjian.privacy import checksums, detect

    subset = table.slice(0, rows)
    cn = PhoneMetadata.metadata_for_region("CN")
    patterns = dict(detect.ENTITY_REGEXES)
    # The column-level patterns the detector uses for what has no entity regex.
    patterns["person_name"] = rf"^[{detect._SURNAME_CLASS}][{detect._HAN}]{{1,3}}$"
    patterns["address"] = f"^.*{detect._ADDRESS_RE}.*$"
    patterns["date_of_birth"] = detect._DATE_RE
    job = {
        "columns": {name: subset.column(name).to_pylist() for name in subset.column_names},
        "patterns": patterns,
        "mobile_pattern": rf"^(?:(?:\+|00)?86)?(?:{cn.mobile.national_number_pattern})$",
        "landline_pattern": rf"^(?:(?:\+|00)?86|0)(?:{cn.fixed_line.national_number_pattern})$",
        "provinces": sorted(checksums._PROVINCES),
        "today": time.strftime("%Y%m%d"),
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, encoding="utf-8") as fh:
        json.dump(job, fh, ensure_ascii=False)
        path = fh.name
    try:
        proc = subprocess.run(
            [str(python), str(Path(__file__).resolve()), "--presidio-worker", path],
            capture_output=True,
            text=True,
            timeout=1800,
            env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
        )
    finally:
        os.unlink(path)
    if proc.returncode != 0:
        raise RuntimeError(f"presidio worker failed: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 rows, finishes in a minute")
    parser.add_argument("--rows", type=int, help="rows to scan (default 1,000,000)")
    parser.add_argument("--presidio-rows", type=int, help="rows for Presidio (default 2,000)")
    parser.add_argument("--baseline-python", type=Path, default=BASELINE_PYTHON)
    parser.add_argument("--presidio-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.presidio_worker:
        _presidio_worker(args.presidio_worker)
        return 0

    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "src"))
    from tests.privacy import labeled

    from yuanjian.privacy.detect import scan_table

    rows = args.rows or (100_000 if args.quick else 1_000_000)
    presidio_rows = args.presidio_rows or (1_000 if args.quick else 2_000)
    table, expected = labeled.bulk_table(rows, seed=7, pool=5_000 if args.quick else 20_000)

    scan_table(table.slice(0, 5_000))  # warm-up: imports, regex compilation
    started = time.perf_counter()
    findings = scan_table(table)
    seconds = time.perf_counter() - started
    ours = rows / seconds
    wrong = {k: f.label for k, f in findings.items() if f.label != expected[k]}

    try:
        presidio = _run_presidio(table, presidio_rows, args.baseline_python)
        theirs = presidio["rows"] / presidio["seconds"]
        presidio_wrong = {k: v for k, v in presidio["labels"].items() if v != expected[k]}
        _emit(
            "detect_rows_per_s",
            round(ours),
            "rows/s",
            baseline="presidio",
            baseline_value=round(theirs, 1),
            ratio=round(ours / theirs, 1),
            target_ratio=100,
            rows=rows,
            columns=table.num_columns,
            seconds=round(seconds, 3),
            baseline_rows=presidio["rows"],
            baseline_seconds=round(presidio["seconds"], 3),
            wrong_labels=wrong,
            baseline_wrong_labels=presidio_wrong,
        )
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
        _emit(
            "detect_rows_per_s",
            round(ours),
            "rows/s",
            baseline="presidio",
            rows=rows,
            seconds=round(seconds, 3),
            wrong_labels=wrong,
            error=f"baseline not measured: {exc}",
        )

    quality_rows = 300 if args.quick else 1_000
    evaluation = labeled.evaluate(labeled.labeled_columns(seed=20250101, rows=quality_rows))
    _emit(
        "column_label_accuracy",
        round(evaluation.accuracy, 4),
        "fraction",
        target=0.99,
        columns=evaluation.columns,
        misses=[list(m) for m in evaluation.misses],
    )
    for label in QUALITY_LABELS:
        for kind, value in (
            ("precision", evaluation.precision(label)),
            ("recall", evaluation.recall(label)),
        ):
            _emit(
                f"cell_{kind}_{label}",
                round(value, 4),
                "fraction",
                target=0.99,
                cells=evaluation.true_pos.get(label, 0)
                + evaluation.false_neg.get(label, 0)
                + evaluation.false_pos.get(label, 0),
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
