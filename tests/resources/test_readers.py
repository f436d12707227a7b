"""Ingestion of files: encodings, delimiters, formats, and every kind of bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from yuanjian.resources.ingest import ingest_to_object
from yuanjian.resources.readers import IngestError, Source

HEADER_ZH = "统一社会信用代码,企业名称,注册资本,成立日期\n"
ROWS_ZH = [
    "91410100MA44XXXX0J,郑州某某科技有限公司,100,2020-01-02",
    "91410100MA44YYYY0K,河南某某商贸有限公司,250,2019-12-31",
    "91410100MA44ZZZZ0L,中原某某物流有限公司,80,2018-06-30",
]


def _csv(tmp_path: Path, name: str, text: str, encoding: str) -> Path:
    p = tmp_path / name
    p.write_bytes(text.encode(encoding))
    return p


def _read(staged) -> pa.Table:
    return pq.read_table(staged.object_path)


@pytest.mark.parametrize("encoding", ["gbk", "gb18030", "utf-8", "utf-8-sig"])
def test_chinese_headers_in_every_encoding(tmp_path: Path, encoding: str) -> None:
    path = _csv(tmp_path, "e.csv", HEADER_ZH + "\n".join(ROWS_ZH) + "\n", encoding)
    staged = ingest_to_object(Source(path=path), data_dir=tmp_path / "data")
    table = _read(staged)
    assert table.column_names == ["统一社会信用代码", "企业名称", "注册资本", "成立日期"]
    assert table.column("企业名称").to_pylist()[0] == "郑州某某科技有限公司"
    assert pa.types.is_integer(table.schema.field("注册资本").type)
    assert pa.types.is_date(table.schema.field("成立日期").type)
    # GBK is read as its superset GB18030 (a GB18030-only character may come later).
    assert staged.encoding == ("gb18030" if encoding == "gbk" else encoding)
    assert staged.rows == 3 and staged.bad_rows == 0


def test_gb18030_only_character_after_the_first_megabyte(tmp_path: Path) -> None:
    """A file that looks like GBK in its first MB but has 䶮 (GB18030 only) later decodes."""
    assert "王䶮".encode("gb18030") and _not_gbk("䶮")
    filler = "\n".join(ROWS_ZH * 10_000) + "\n"  # about 1.5 MB in GB18030, GBK-only
    tail = "91410100MA44QQQQ0Q,王䶮有限公司,10,2021-03-04\n"
    path = _csv(tmp_path, "big.csv", HEADER_ZH + filler + tail, "gb18030")
    size = path.stat().st_size
    assert 1.3e6 < size < 1.8e6
    assert path.read_bytes().find("䶮".encode("gb18030")) > 1 << 20
    staged = ingest_to_object(Source(path=path), data_dir=tmp_path / "data")
    table = _read(staged)
    assert staged.encoding == "gb18030" and staged.bad_rows == 0
    assert table.num_rows == 30_001
    assert table.column("企业名称").to_pylist()[-1] == "王䶮有限公司"


def _not_gbk(ch: str) -> bool:
    try:
        ch.encode("gbk")
    except UnicodeEncodeError:
        return True
    return False


@pytest.mark.parametrize("delim", ["\t", ";", "|"])
def test_delimiter_is_sniffed(tmp_path: Path, delim: str) -> None:
    text = HEADER_ZH.replace(",", delim) + "\n".join(r.replace(",", delim) for r in ROWS_ZH)
    staged = ingest_to_object(
        Source(path=_csv(tmp_path, "d.csv", text + "\n", "utf-8")), data_dir=tmp_path / "data"
    )
    assert staged.delimiter == delim and staged.rows == 3


def test_content_addressed_and_deterministic(tmp_path: Path) -> None:
    path = _csv(tmp_path, "a.csv", HEADER_ZH + "\n".join(ROWS_ZH) + "\n", "utf-8")
    a = ingest_to_object(Source(path=path), data_dir=tmp_path / "data")
    b = ingest_to_object(Source(path=path), data_dir=tmp_path / "data")
    assert a.content_hash == b.content_hash and a.object_path == b.object_path
    assert a.object_path.name == f"{a.content_hash}.parquet"
    assert not list((tmp_path / "data" / "objects" / "tmp").glob("*"))


def test_undecodable_bytes_name_the_row(tmp_path: Path) -> None:
    good = (HEADER_ZH + "\n".join(ROWS_ZH * 40) + "\n").encode("gbk")
    bad = good + "91410100MA44WWWW0M,坏".encode("gbk") + b"\xff\xfe" + b",1,2020-01-01\n"
    path = tmp_path / "bad.csv"
    path.write_bytes(bad)
    with pytest.raises(IngestError) as info:
        ingest_to_object(Source(path=path, encoding="gbk"), data_dir=tmp_path / "data")
    assert info.value.file == "bad.csv" and info.value.row == 121
    assert "cannot be decoded" in info.value.message


def test_invalid_utf8_names_the_row(tmp_path: Path) -> None:
    data = (HEADER_ZH + "\n".join(ROWS_ZH) + "\n").encode("utf-8") + b"x,\xc3\x28,1,2020-01-01\n"
    path = tmp_path / "u.csv"
    path.write_bytes(data)
    with pytest.raises(IngestError) as info:
        ingest_to_object(Source(path=path, encoding="utf-8"), data_dir=tmp_path / "data")
    assert info.value.row == 4


def _dirty(tmp_path: Path, bad_lines: dict[int, str], n: int = 300) -> Path:
    lines = [f"91410100MA4{i:05d}0X,公司{i},{i},2020-01-{1 + i % 28:02d}" for i in range(n)]
    for row, text in bad_lines.items():
        lines[row - 1] = text
    return _csv(tmp_path, "dirty.csv", HEADER_ZH + "\n".join(lines) + "\n", "gbk")


def test_bad_rows_are_quarantined_with_reasons(tmp_path: Path) -> None:
    path = _dirty(
        tmp_path,
        {10: "x,公司,100", 200: "y,公司,abc,2020-01-01", 250: "z,公司,5,2020-02-30"},
        n=400,
    )
    staged = ingest_to_object(Source(path=path), data_dir=tmp_path / "data", max_bad_ratio=0.01)
    assert staged.rows == 397 and staged.bad_rows == 3
    with staged.rejects_path.open(encoding="utf-8") as fh:
        rejects = list(csv.reader(fh))
    assert rejects[0] == ["row", "column", "reason", "raw"]
    assert rejects[1][:3] == ["10", "", "expected 4 fields, found 3"]
    assert rejects[2][:3] == ["200", "注册资本", "value 'abc' is not a valid bigint"]
    assert rejects[3][:3] == ["250", "成立日期", "value '2020-02-30' is not a valid date"]


def test_too_many_bad_rows_reject_the_file_naming_the_first(tmp_path: Path) -> None:
    # Types are inferred from the first 20,000 rows; 1.5% of the file is bad after that.
    bad = {r: f"x,公司,1,2020-13-{1 + r % 28:02d}" for r in range(24001, 24451)}
    path = _dirty(tmp_path, bad, n=30000)
    with pytest.raises(IngestError) as info:
        ingest_to_object(Source(path=path), data_dir=tmp_path / "data")
    assert (info.value.row, info.value.column) == (24001, "成立日期")
    assert "over the limit" in info.value.message
    assert not list((tmp_path / "data" / "objects").rglob("*.parquet"))


def test_reject_policy_refuses_any_bad_row(tmp_path: Path) -> None:
    path = _dirty(tmp_path, {3: "a,公司,1"}, n=500)
    with pytest.raises(IngestError) as info:
        ingest_to_object(Source(path=path), data_dir=tmp_path / "data", bad_row_policy="reject")
    assert info.value.row == 3 and "expected 4 fields" in info.value.message


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"", "empty"),
        (b"a,b,a\n1,2,3\n", "duplicate column name"),
        (b"a,,c\n1,2,3\n", "empty name"),
        (b"a,b\n", "no data"),
    ],
)
def test_structural_problems(tmp_path: Path, content: bytes, needle: str) -> None:
    path = tmp_path / "s.csv"
    path.write_bytes(content)
    with pytest.raises(IngestError) as info:
        ingest_to_object(Source(path=path), data_dir=tmp_path / "data")
    assert needle in info.value.message and "s.csv" in info.value.message


def test_file_over_the_size_limit(tmp_path: Path) -> None:
    path = _csv(tmp_path, "big.csv", HEADER_ZH + "\n".join(ROWS_ZH) + "\n", "utf-8")
    with pytest.raises(IngestError, match="over the limit"):
        ingest_to_object(Source(path=path), data_dir=tmp_path / "data", max_bytes=10)


def test_codes_stay_text(tmp_path: Path) -> None:
    text = (
        "mobile,area_code,card,amount\n13812345678,410102,6222020200112233445,12\n"
        "13912345678,410103,6222020200112233446,13\n"
    )
    table = _read(
        ingest_to_object(
            Source(path=_csv(tmp_path, "c.csv", text, "utf-8")), data_dir=tmp_path / "data"
        )
    )
    assert table.schema.field("mobile").type == pa.string()
    assert table.schema.field("area_code").type == pa.string()
    assert table.schema.field("card").type == pa.string()
    assert pa.types.is_integer(table.schema.field("amount").type)


def test_xlsx(tmp_path: Path) -> None:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.append(["姓名", "金额", "日期"])
    ws.append(["张三", 12.5, "2021-03-04"])
    ws.append(["李四", 7, "2021-03-05"])
    ws.append(["王五", 1, "2021-03-06", "多余"])
    path = tmp_path / "w.xlsx"
    wb.save(path)
    staged = ingest_to_object(Source(path=path), data_dir=tmp_path / "data", max_bad_ratio=0.5)
    table = _read(staged)
    assert table.column("姓名").to_pylist() == ["张三", "李四"]
    assert staged.bad_rows == 1 and staged.first_bad[0].row == 3


def test_jsonl(tmp_path: Path) -> None:
    lines = [
        json.dumps({"code": "a", "n": i, "ok": i % 2 == 0}, ensure_ascii=False) for i in range(50)
    ] + ["{not json", json.dumps({"code": "b", "n": 1, "zz": 2})]
    path = tmp_path / "j.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    staged = ingest_to_object(Source(path=path), data_dir=tmp_path / "data", max_bad_ratio=0.1)
    table = _read(staged)
    assert table.num_rows == 50 and pa.types.is_integer(table.schema.field("n").type)
    assert pa.types.is_boolean(table.schema.field("ok").type)
    assert [b.row for b in staged.first_bad] == [51, 52]
    assert "unexpected field" in staged.first_bad[1].reason


def test_parquet_keeps_types(tmp_path: Path) -> None:
    src = pa.table({"id": ["a", "b"], "v": pa.array([1.5, 2.5]), "d": pa.array([1, 2], pa.int32())})
    path = tmp_path / "p.parquet"
    pq.write_table(src, path)
    table = _read(ingest_to_object(Source(path=path), data_dir=tmp_path / "data"))
    assert table.equals(src)


def test_unknown_suffix(tmp_path: Path) -> None:
    path = tmp_path / "x.doc"
    path.write_bytes(b"x")
    with pytest.raises(IngestError, match="unknown file type"):
        ingest_to_object(Source(path=path), data_dir=tmp_path / "data")
