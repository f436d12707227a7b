"""Seeded generators of labelled personal data for the detector tests and the benchmark.

Two kinds of generator:

- per-value generators built on Faker zh_CN and ``random.Random`` (names, addresses, mobile
  numbers, resident IDs, e-mails, IP addresses, birth dates), plus our own for what Faker
  lacks: unified social credit codes, UnionPay card numbers, new-energy licence plates,
  passports, Zhengzhou coordinates, landlines and free text with known entity spans. These
  feed :func:`labeled_columns` and :func:`labeled_texts`, the labelled sets.
- numpy generators (``bulk_*``) that make a million rows in a second or two for the
  benchmark. Their check characters are computed here independently of
  ``yuanjian.privacy.checksums`` (weights derived as powers, not copied tables), and the tests
  compare them with stdnum.

Every cell carries a truth label; corrupted identifiers (wrong check character, impossible or
future birth date, unknown province, wrong USCC or Luhn check) are labelled ``none``.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc
from faker import Faker
from faker.providers.person.zh_CN import Provider as _PersonProvider
from faker.providers.phone_number.zh_CN import Provider as _PhoneProvider
from faker.providers.ssn.zh_CN import Provider as _SsnProvider
from stdnum import luhn
from stdnum.cn import ric, uscc

NONE = "none"
# Fixed so that "today" never moves the labels: generated birth dates all precede it.
REFERENCE_DATE = dt.date(2025, 1, 1)

AREA_CODES: tuple[str, ...] = tuple(_SsnProvider.area_codes)
PROVINCE_ABBR = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
PLATE_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I, no O after the authority letter
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
UNIONPAY_BINS = ("622202", "621700", "622848", "621483", "622588", "623058", "620200", "625965")
LANDLINE_AREAS = ("010", "020", "021", "022", "023", "024", "025", "027", "028", "029")
LANDLINE_AREAS += ("0371", "0379", "0372", "0373", "0755", "0571", "0591", "0731", "0851")
ZHENGZHOU = (113.6253, 34.7466)  # lng, lat


@dataclass(frozen=True)
class LabeledColumn:
    """A generated column with its expected column label and per-cell truth."""

    name: str
    values: pa.Array
    label: str
    cell_labels: tuple[str, ...]
    note: str = ""


@dataclass(frozen=True)
class LabeledText:
    """A free-text cell and the entities in it as (label, start, end)."""

    text: str
    entities: tuple[tuple[str, int, int], ...] = field(default_factory=tuple)


def make_faker(seed: int) -> Faker:
    """A seeded zh_CN Faker instance."""
    fake = Faker("zh_CN")
    fake.seed_instance(seed)
    return fake


# ---------------------------------------------------------------- per-value generators


def birth_date(rng: random.Random, lo: int = 1935, hi: int = 2006) -> dt.date:
    start = dt.date(lo, 1, 1).toordinal()
    return dt.date.fromordinal(rng.randint(start, dt.date(hi, 12, 31).toordinal()))


def resident_id(rng: random.Random, born: dt.date | None = None, area: str | None = None) -> str:
    """A valid GB 11643 number: Faker's area codes, check character from stdnum."""
    born = born or birth_date(rng)
    body = (area or rng.choice(AREA_CODES)) + born.strftime("%Y%m%d") + f"{rng.randrange(1000):03d}"
    return body + ric.calc_check_digit(body + "0")


def resident_ids(fake: Faker, rng: random.Random, n: int) -> list[str]:
    """Valid resident IDs, half from Faker's ``ssn`` and half from :func:`resident_id`."""
    return [fake.ssn() if i % 2 else resident_id(rng) for i in range(n)]


def corrupt_resident_id(rng: random.Random, value: str, kind: str | None = None) -> str:
    """An 18-character near-miss of a valid ID: bad check char, date or province."""
    kind = kind or rng.choice(("check", "date", "future", "province"))
    if kind == "check":
        return value[:17] + rng.choice([c for c in "0123456789X" if c != value[17]])
    if kind == "date":  # month 13, day 32 or 30 February, with a correct check character
        bad = rng.choice(("1332", "0230", "0000", "0532"))
        body = value[:10] + bad + value[14:17]
    elif kind == "future":
        body = value[:6] + f"{rng.randint(2031, 2099)}0101" + value[14:17]
    else:
        body = rng.choice(("99", "00", "19", "72")) + value[2:17]
    return body + ric.calc_check_digit(body + "0")


def uscc_code(rng: random.Random) -> str:
    """A valid unified social credit code; check character from stdnum."""
    authority = rng.choices("159YN", weights=(10, 10, 70, 5, 5))[0]
    category = {"1": "1239", "5": "123", "9": "123", "Y": "1", "N": "123"}[authority]
    body = authority + rng.choice(category) + rng.choice(AREA_CODES)
    body += "".join(rng.choice(USCC_ALPHABET) for _ in range(9))
    return body + uscc.calc_check_digit(body)


def corrupt_uscc(rng: random.Random, value: str) -> str:
    """The same code with a wrong check character."""
    return value[:17] + rng.choice([c for c in USCC_ALPHABET if c != value[17]])


def unionpay_card(rng: random.Random, length: int | None = None) -> str:
    """A Luhn-valid UnionPay card number (62 prefix, 16-19 digits)."""
    length = length or rng.choice((16, 16, 16, 17, 18, 19, 19))
    body = rng.choice(UNIONPAY_BINS)
    body += "".join(rng.choice("0123456789") for _ in range(length - 1 - len(body)))
    return body + luhn.calc_check_digit(body)


def corrupt_card(rng: random.Random, value: str) -> str:
    """The same card number with a wrong last digit."""
    return value[:-1] + rng.choice([c for c in "0123456789" if c != value[-1]])


def mobile(fake: Faker, rng: random.Random, style: str = "plain") -> str:
    """A Faker zh_CN mobile number, optionally formatted."""
    m = fake.phone_number()
    if style == "dash":
        return f"{m[:3]}-{m[3:7]}-{m[7:]}"
    if style == "space":
        return f"{m[:3]} {m[3:7]} {m[7:]}"
    if style == "intl":
        return f"+86 {m}"
    return m


def landline(rng: random.Random, style: str = "dash") -> str:
    """A fixed-line number such as 0371-65432109, valid by the phonenumbers metadata."""
    while True:
        area = rng.choice(LANDLINE_AREAS)
        sub = str(rng.randint(2, 8)) + "".join(rng.choice("0123456789") for _ in range(7))
        parsed = phonenumbers.parse(area + sub, "CN")
        if phonenumbers.number_type(parsed) == phonenumbers.PhoneNumberType.FIXED_LINE:
            break
    if style == "paren":
        return f"({area}){sub}"
    if style == "plain":
        return area + sub
    return f"{area}-{sub}"


def license_plate(rng: random.Random, new_energy: bool | None = None) -> str:
    """A plate such as 京A12345, or a new-energy 豫A·D12345."""
    head = rng.choice(PROVINCE_ABBR) + rng.choice(PLATE_LETTERS)
    if new_energy if new_energy is not None else rng.random() < 0.3:
        tail = rng.choice("DF") + rng.choice(PLATE_LETTERS + "0123456789")
        tail += "".join(rng.choice("0123456789") for _ in range(4))
        return head + rng.choice(("·", "", "")) + tail
    tail = "".join(rng.choice(PLATE_LETTERS + "0123456789" * 3) for _ in range(5))
    return head + tail


def passport(rng: random.Random) -> str:
    """A Chinese passport number: E12345678, EA1234567 or G12345678."""
    kind = rng.random()
    if kind < 0.6:
        return "E" + f"{rng.randrange(10**8):08d}"
    if kind < 0.8:
        return "E" + rng.choice(PLATE_LETTERS) + f"{rng.randrange(10**7):07d}"
    return "G" + f"{rng.randrange(10**8):08d}"


def coordinate(rng: random.Random) -> tuple[float, float]:
    """A (lng, lat) pair within about 20 km of Zhengzhou."""
    return (
        round(ZHENGZHOU[0] + rng.uniform(-0.2, 0.2), 6),
        round(ZHENGZHOU[1] + rng.uniform(-0.15, 0.15), 6),
    )


def birth_date_text(rng: random.Random, style: str) -> str:
    """A birth date in one of the usual Chinese spellings."""
    d = birth_date(rng)
    if style == "iso":
        return d.isoformat()
    if style == "slash":
        return f"{d.year}/{d.month}/{d.day}"
    if style == "cn":
        return f"{d.year}年{d.month}月{d.day}日"
    return d.strftime("%Y%m%d")


def street_address(fake: Faker) -> str:
    """A Faker zh_CN address without the trailing postcode."""
    return fake.province() + fake.city() + fake.district() + fake.street_address()


# ---------------------------------------------------------------- free text with spans

_CLEAN_SENTENCES = (
    "今天下午三点在二楼会议室召开项目例会。",
    "本月的数据质量检查已经完成，未发现异常。",
    "请各部门于周五前提交年度工作总结。",
    "系统将于今晚进行例行维护，届时暂停服务。",
    "该批次样本数据已按规定完成脱敏处理。",
)


def _compose(parts: list[str | tuple[str, str]]) -> LabeledText:
    text, spans = "", []
    for part in parts:
        if isinstance(part, tuple):
            label, value = part
            spans.append((label, len(text), len(text) + len(value)))
            text += value
        else:
            text += part
    return LabeledText(text, tuple(spans))


def free_text(fake: Faker, rng: random.Random) -> LabeledText:
    """One remark sentence with personal data in it, and the entity spans."""
    name = ("person_name", fake.name())
    templates: list[Callable[[], list[str | tuple[str, str]]]] = [
        lambda: [
            "客户",
            name,
            "，身份证号",
            ("cn_resident_id", resident_id(rng)),
            "，手机",
            ("cn_mobile", mobile(fake, rng)),
            "，已办理开户。",
        ],
        lambda: [
            "联系人：",
            name,
            "，电话：",
            ("cn_landline", landline(rng)),
            "，邮箱：",
            ("email", fake.email()),
            "。",
        ],
        lambda: [
            "申请人",
            name,
            "（护照号",
            ("passport", passport(rng)),
            "），住址：",
            ("address", street_address(fake)),
            "，出生日期",
            ("date_of_birth", birth_date_text(rng, rng.choice(("iso", "cn")))),
            "。",
        ],
        lambda: [
            "企业统一社会信用代码",
            ("cn_uscc", uscc_code(rng)),
            "，法定代表人",
            name,
            "，结算卡号",
            ("bank_card", unionpay_card(rng)),
            "。",
        ],
        lambda: [
            "车辆",
            ("cn_license_plate", license_plate(rng)),
            "于昨日驶入园区，定位",
            ("geo_coordinate", "{:.6f},{:.6f}".format(*coordinate(rng))),
            "，登录IP为",
            ("ip_address", fake.ipv4()),
            "。",
        ],
        lambda: ["持卡人", name, "的手机号是", ("cn_mobile", mobile(fake, rng, "dash")), "。"],
    ]
    return _compose(rng.choice(templates)())


def labeled_texts(seed: int, n: int) -> list[LabeledText]:
    """``n`` texts: four in five carry entities, the rest are clean sentences."""
    fake, rng = make_faker(seed), random.Random(seed)
    return [
        free_text(fake, rng) if rng.random() < 0.8 else LabeledText(rng.choice(_CLEAN_SENTENCES))
        for _ in range(n)
    ]


# ---------------------------------------------------------------- labelled columns


def _column(
    name: str,
    label: str,
    values: list,
    cell_labels: list[str],
    arrow_type: pa.DataType | None = None,
    note: str = "",
) -> LabeledColumn:
    return LabeledColumn(
        name, pa.array(values, type=arrow_type), label, tuple(cell_labels), note or label
    )


def _mixed(
    rng: random.Random,
    rows: int,
    good: Callable[[], object],
    label: str,
    *,
    nulls: float = 0.0,
    bad: Callable[[object], object] | None = None,
    bad_share: float = 0.0,
) -> tuple[list, list[str]]:
    values: list = []
    labels: list[str] = []
    for _ in range(rows):
        r = rng.random()
        if r < nulls:
            values.append(None)
            labels.append(NONE)
        elif bad is not None and r < nulls + bad_share:
            values.append(bad(good()))
            labels.append(NONE)
        else:
            values.append(good())
            labels.append(label)
    return values, labels


def labeled_columns(seed: int = 20250101, rows: int = 300) -> list[LabeledColumn]:
    """The labelled column set: every label under Chinese, English and neutral names, with
    nulls, corrupted identifiers, numeric types and decoys that must come out ``none``."""
    fake, rng = make_faker(seed), random.Random(seed)
    cols: list[LabeledColumn] = []

    def add(
        name: str,
        label: str,
        good: Callable[[], object],
        *,
        nulls: float = 0.0,
        bad: Callable[[object], object] | None = None,
        bad_share: float = 0.0,
        arrow_type: pa.DataType | None = None,
    ) -> None:
        values, labels = _mixed(rng, rows, good, label, nulls=nulls, bad=bad, bad_share=bad_share)
        cols.append(_column(name, label, values, labels, arrow_type))

    def add_none(
        name: str,
        good: Callable[[], object],
        note: str,
        *,
        arrow_type: pa.DataType | None = None,
    ) -> None:
        values = [good() for _ in range(rows)]
        cols.append(_column(name, NONE, values, [NONE] * rows, arrow_type, note))

    def add_mix(name: str, label: str, parts: list[tuple[str, Callable[[], object], float]]):
        """A column mixing several kinds of cell; ``label`` is the expected majority label."""
        values: list[object] = []
        labels: list[str] = []
        for _ in range(rows):
            kind, make, _w = rng.choices(parts, weights=[w for *_, w in parts])[0]
            values.append(make())
            labels.append(kind)
        cols.append(_column(name, label, values, labels, note=f"mixed {label}"))

    rid = lambda: resident_id(rng)  # noqa: E731
    bad_rid = lambda v: corrupt_resident_id(rng, v)  # noqa: E731
    # Resident IDs
    add("身份证号", "cn_resident_id", fake.ssn)
    add("公民身份号码", "cn_resident_id", rid, nulls=0.1)
    add("id_card_no", "cn_resident_id", rid, bad=bad_rid, bad_share=0.05)
    add("col_a", "cn_resident_id", rid, bad=bad_rid, bad_share=0.03)
    add("zjhm", "cn_resident_id", lambda: rid().lower(), nulls=0.2)
    for kind in ("check", "date", "future", "province"):
        add_none(
            f"身份证号_{kind}", lambda k=kind: corrupt_resident_id(rng, rid(), k), f"bad {kind}"
        )
    # Unified social credit codes
    code = lambda: uscc_code(rng)  # noqa: E731
    add("统一社会信用代码", "cn_uscc", code)
    add(
        "credit_code",
        "cn_uscc",
        code,
        nulls=0.15,
        bad=lambda v: corrupt_uscc(rng, v),
        bad_share=0.05,
    )
    add("org_ref", "cn_uscc", code, bad=lambda v: corrupt_uscc(rng, v), bad_share=0.02)
    add_none("纳税人识别号", lambda: corrupt_uscc(rng, code()), "uscc with bad check chars")
    # Bank cards
    card = lambda: unionpay_card(rng)  # noqa: E731
    add("银行卡号", "bank_card", card)
    add("card_no", "bank_card", card, nulls=0.1, bad=lambda v: corrupt_card(rng, v), bad_share=0.04)
    add("col_b", "bank_card", card)
    add("账户", "bank_card", lambda: int(unionpay_card(rng, rng.choice((16, 17, 18, 19)))))
    add_none("卡号_bad", lambda: corrupt_card(rng, card()), "cards with bad Luhn digits")
    add_none(
        "order_no", lambda: str(rng.randrange(10**15, 10**16)), "random 16-digit order numbers"
    )
    # Mobile and landline numbers
    add("手机号码", "cn_mobile", lambda: mobile(fake, rng))
    add("mobile", "cn_mobile", lambda: mobile(fake, rng, "dash"), nulls=0.1)
    add("联系电话", "cn_mobile", lambda: mobile(fake, rng, rng.choice(("plain", "space", "intl"))))
    add("col_c", "cn_mobile", lambda: mobile(fake, rng))
    add("phone", "cn_mobile", lambda: int(fake.phone_number()), arrow_type=pa.int64())
    add("sjhm", "cn_mobile", lambda: mobile(fake, rng), nulls=0.3)
    add("办公电话", "cn_landline", lambda: landline(rng))
    add("tel", "cn_landline", lambda: landline(rng, rng.choice(("dash", "paren", "plain"))))
    add("col_d", "cn_landline", lambda: landline(rng))
    add_mix(
        "联系方式",
        "cn_mobile",
        [
            ("cn_mobile", lambda: mobile(fake, rng), 0.7),
            ("cn_landline", lambda: landline(rng), 0.3),
        ],
    )
    add_mix(
        "证件号码",
        "cn_resident_id",
        [
            ("cn_resident_id", rid, 0.75),
            ("passport", lambda: passport(rng), 0.2),
            (NONE, lambda: corrupt_resident_id(rng, rid()), 0.05),
        ],
    )
    # Email and IP addresses
    add("邮箱", "email", fake.email)
    add("email_address", "email", fake.free_email, nulls=0.1)
    add("col_e", "email", fake.company_email)
    add("登录IP", "ip_address", fake.ipv4)
    add("client_ip", "ip_address", fake.ipv6)
    add("col_f", "ip_address", lambda: fake.ipv4() if rng.random() < 0.7 else fake.ipv6())
    # Plates and passports
    add("车牌号", "cn_license_plate", lambda: license_plate(rng))
    add("plate_no", "cn_license_plate", fake.license_plate, nulls=0.1)
    add("col_g", "cn_license_plate", lambda: license_plate(rng, new_energy=True))
    add("护照号码", "passport", lambda: passport(rng))
    add("passport_no", "passport", lambda: passport(rng), nulls=0.1)
    add("col_h", "passport", lambda: passport(rng))
    # Names
    add("姓名", "person_name", fake.name)
    add("法定代表人", "person_name", fake.name, nulls=0.1)
    add("customer_name", "person_name", fake.name)
    add("col_i", "person_name", fake.name)
    add("联系人", "person_name", fake.name, nulls=0.2)
    # Addresses
    add("地址", "address", fake.address)
    add("住所", "address", lambda: street_address(fake))
    add("home_address", "address", fake.address, nulls=0.1)
    add("col_j", "address", fake.address)
    # Dates of birth
    add("出生日期", "date_of_birth", lambda: birth_date_text(rng, "iso"))
    add("birth_date", "date_of_birth", lambda: birth_date_text(rng, "slash"), nulls=0.1)
    add("生日", "date_of_birth", lambda: birth_date_text(rng, "cn"))
    add("csrq", "date_of_birth", lambda: birth_date_text(rng, "compact"))
    add("dob", "date_of_birth", lambda: birth_date(rng), arrow_type=pa.date32())
    add("col_k", "date_of_birth", lambda: birth_date(rng), arrow_type=pa.date32())
    add("col_l", "date_of_birth", lambda: birth_date_text(rng, "iso"))
    # Coordinates
    add("经度", "geo_coordinate", lambda: coordinate(rng)[0], arrow_type=pa.float64())
    add("lat", "geo_coordinate", lambda: coordinate(rng)[1], arrow_type=pa.float64())
    add("坐标", "geo_coordinate", lambda: "{:.6f},{:.6f}".format(*coordinate(rng)))
    add("col_m", "geo_coordinate", lambda: "{:.6f}, {:.6f}".format(*coordinate(rng)))
    add("lng", "geo_coordinate", lambda: f"{coordinate(rng)[0]:.6f}")
    # Free text
    texts = lambda: free_text(fake, rng).text  # noqa: E731
    add("备注", "free_text_with_pii", texts)
    add("remark", "free_text_with_pii", texts, nulls=0.2)
    add(
        "col_n",
        "free_text_with_pii",
        lambda: texts() if rng.random() < 0.6 else rng.choice(_CLEAN_SENTENCES),
    )
    for i in (-1, -2, -3):  # entities live inside the text: no whole-cell truth
        c = cols[i]
        cols[i] = LabeledColumn(c.name, c.values, c.label, (NONE,) * rows, c.note)
    # Decoys: nothing personal here
    add_none("单位名称", fake.company, "company names")
    add_none("描述", lambda: fake.sentence(), "Faker sentences")
    add_none("说明", lambda: rng.choice(_CLEAN_SENTENCES), "clean remarks")
    add_none("职务", fake.job, "job titles")
    add_none("民族", lambda: rng.choice(("汉族", "回族", "满族", "壮族")), "ethnicity")
    add_none("性别", lambda: rng.choice(("男", "女")), "sex")
    add_none(
        "城市", lambda: rng.choice(("郑州市", "洛阳市", "开封市", "许昌市", "周口市")), "cities"
    )
    add_none("age", lambda: rng.randint(18, 90), "ages", arrow_type=pa.int64())
    add_none("amount", lambda: round(rng.uniform(1, 1e5), 2), "amounts", arrow_type=pa.float64())
    add_none("col_o", lambda: round(rng.uniform(100, 130), 4), "floats in lng range, no hint")
    add_none("serial", lambda: "".join(rng.choice("0123456789") for _ in range(18)), "18 digits")
    add_none("sku", lambda: f"SKU-{rng.randrange(10**6):06d}", "product codes")
    add_none("uuid", fake.uuid4, "UUIDs")
    add_none("url", fake.url, "URLs")
    add_none(
        "created_at",
        lambda: dt.date(2024, 1, 1) + dt.timedelta(days=rng.randrange(365)),
        "event dates",
        arrow_type=pa.date32(),
    )
    add_none(
        "updated",
        lambda: (dt.date(2023, 6, 1) + dt.timedelta(days=rng.randrange(500))).isoformat(),
        "event date strings",
    )
    add_none("status", lambda: rng.choice(("已审核", "待审核", "已驳回")), "status words")
    add_none("flag", lambda: rng.random() < 0.5, "booleans", arrow_type=pa.bool_())
    add_none("empty_身份证号", lambda: None, "all null", arrow_type=pa.string())
    add_none("blank", lambda: "", "empty strings")
    return cols


# ---------------------------------------------------------------- bulk (numpy) generators


def _digits_to_strings(mat: np.ndarray) -> pa.Array:
    """Rows of ASCII bytes (uint8 matrix) as a string array, zero-copy of the buffer."""
    n, width = mat.shape
    data = np.ascontiguousarray(mat, dtype=np.uint8)
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


def _ragged_to_strings(mat: np.ndarray, lengths: np.ndarray) -> pa.Array:
    """Rows of a left-aligned byte matrix cut to ``lengths`` as a string array."""
    keep = np.arange(mat.shape[1])[None, :] < lengths[:, None]
    data = np.ascontiguousarray(mat[keep], dtype=np.uint8)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    return pa.StringArray.from_buffers(len(lengths), pa.py_buffer(offsets), pa.py_buffer(data))


def bulk_resident_ids(
    rng: np.random.Generator, n: int, bad_share: float = 0.0
) -> tuple[pa.Array, np.ndarray]:
    """``n`` resident IDs as a string array, and the validity mask (bad check chars)."""
    areas = np.frombuffer("".join(AREA_CODES).encode(), dtype=np.uint8).reshape(-1, 6)
    mat = np.empty((n, 18), dtype=np.uint8)
    mat[:, :6] = areas[rng.integers(0, len(areas), n)]
    lo, hi = dt.date(1935, 1, 1).toordinal(), dt.date(2006, 12, 31).toordinal()
    dates = np.datetime64("1935-01-01") + rng.integers(0, hi - lo + 1, n).astype("timedelta64[D]")
    year = dates.astype("datetime64[Y]").astype(np.int64) + 1970
    month = (dates.astype("datetime64[M]") - dates.astype("datetime64[Y]")).astype(np.int64) + 1
    day = (dates - dates.astype("datetime64[M]")).astype(np.int64) + 1
    ymd = year * 10000 + month * 100 + day
    for k in range(8):
        mat[:, 13 - k] = 48 + (ymd // 10**k) % 10
    mat[:, 14:17] = rng.integers(48, 58, (n, 3))
    weights = np.array([pow(2, 17 - i, 11) for i in range(17)])
    check = (1 - (mat[:, :17].astype(np.int64) - 48) @ weights) % 11
    valid = rng.random(n) >= bad_share
    check = np.where(valid, check, (check + rng.integers(1, 11, n)) % 11)
    mat[:, 17] = np.frombuffer(b"0123456789X", dtype=np.uint8)[check]
    return _digits_to_strings(mat), valid


def bulk_usccs(
    rng: np.random.Generator, n: int, bad_share: float = 0.0
) -> tuple[pa.Array, np.ndarray]:
    """``n`` unified social credit codes, and the validity mask (bad check chars)."""
    alphabet = np.frombuffer(USCC_ALPHABET.encode(), dtype=np.uint8)
    areas = np.frombuffer("".join(AREA_CODES).encode(), dtype=np.uint8).reshape(-1, 6)
    values = np.empty((n, 18), dtype=np.int64)
    values[:, 0] = np.array([1, 5, 9, 9, 9, 9])[rng.integers(0, 6, n)]
    values[:, 1] = rng.integers(1, 4, n)
    values[:, 2:8] = areas[rng.integers(0, len(areas), n)] - 48
    values[:, 8:17] = rng.integers(0, 31, (n, 9))
    weights = np.array([pow(3, i, 31) for i in range(17)])
    check = (31 - (values[:, :17] @ weights) % 31) % 31
    valid = rng.random(n) >= bad_share
    values[:, 17] = np.where(valid, check, (check + rng.integers(1, 31, n)) % 31)
    return _digits_to_strings(alphabet[values]), valid


def bulk_unionpay_cards(
    rng: np.random.Generator, n: int, bad_share: float = 0.0
) -> tuple[pa.Array, np.ndarray]:
    """``n`` UnionPay card numbers of 16-19 digits, and the validity mask (bad Luhn digit)."""
    lengths = rng.choice(np.array([16, 16, 16, 17, 18, 19, 19]), n)
    bins = np.frombuffer("".join(UNIONPAY_BINS).encode(), dtype=np.uint8).reshape(-1, 6) - 48
    digits = rng.integers(0, 10, (n, 19))
    digits[:, :6] = bins[rng.integers(0, len(bins), n)]
    col = np.arange(19)[None, :]
    body = np.where(col < (lengths - 1)[:, None], digits, 0)
    # Luhn: position from the right of the body, doubled when that distance is even.
    dist = (lengths - 2)[:, None] - col
    doubled = (dist >= 0) & (dist % 2 == 0)
    twice = np.where(body * 2 > 9, body * 2 - 9, body * 2)
    total = np.where(doubled, twice, body).sum(axis=1)
    check = (10 - total % 10) % 10
    valid = rng.random(n) >= bad_share
    check = np.where(valid, check, (check + rng.integers(1, 10, n)) % 10)
    body[np.arange(n), lengths - 1] = check
    return _ragged_to_strings((body + 48).astype(np.uint8), lengths), valid


def bulk_mobiles(rng: np.random.Generator, n: int) -> pa.Array:
    """``n`` mobile numbers with Faker's zh_CN prefixes."""
    prefixes = np.array(_PhoneProvider.phonenumber_prefixes)
    mat = np.empty((n, 11), dtype=np.uint8)
    pre = prefixes[rng.integers(0, len(prefixes), n)]
    mat[:, 0] = 49
    mat[:, 1] = 48 + (pre // 10) % 10
    mat[:, 2] = 48 + pre % 10
    mat[:, 3:] = rng.integers(48, 58, (n, 8))
    return _digits_to_strings(mat)


def bulk_names(rng: np.random.Generator, n: int) -> pa.Array:
    """``n`` Chinese names drawn with Faker zh_CN's surname weights and given names."""
    surnames = list(_PersonProvider.last_names)
    weights = np.array(list(_PersonProvider.last_names.values()), dtype=float)
    given = list(_PersonProvider.first_names)
    s = pa.array(surnames).take(pa.array(rng.choice(len(surnames), n, p=weights / weights.sum())))
    g = pa.array(given).take(pa.array(rng.integers(0, len(given), n)))
    return pc.binary_join_element_wise(s, g, "")


def _pool(values: list[str], rng: np.random.Generator, n: int) -> pa.Array:
    return pa.array(values, type=pa.string()).take(pa.array(rng.integers(0, len(values), n)))


def bulk_table(n: int, seed: int = 7, pool: int = 20_000) -> tuple[pa.Table, dict[str, str]]:
    """``n`` rows x 8 columns of mixed personal data and the expected column labels.

    Identifiers, cards and phone numbers are unique draws; e-mails, addresses and the clean
    sentences come from a pool of ``pool`` Faker values. About 2 % of identifiers and cards
    carry a wrong check character and 1 % of cells are null.
    """
    rng = np.random.default_rng(seed)
    fake = make_faker(seed)
    emails = [fake.email() for _ in range(pool)]
    addresses = [fake.address() for _ in range(pool)]
    sentences = [fake.sentence() for _ in range(min(pool, 2_000))]
    names = bulk_names(rng, n)
    rids, _ = bulk_resident_ids(rng, n, 0.02)
    mobiles = bulk_mobiles(rng, n)
    cards, _ = bulk_unionpay_cards(rng, n, 0.02)
    codes, _ = bulk_usccs(rng, n, 0.02)
    remark = pc.binary_join_element_wise(
        "客户", names, "，身份证号", rids, "，联系电话", mobiles, "。", ""
    )
    remark = pc.if_else(pa.array(rng.random(n) < 0.5), remark, _pool(sentences, rng, n))

    def with_nulls(arr: pa.Array) -> pa.Array:
        return pc.if_else(pa.array(rng.random(n) < 0.01), pa.nulls(n, arr.type), arr)

    columns = {
        "姓名": names,
        "身份证号": rids,
        "手机号码": mobiles,
        "邮箱": _pool(emails, rng, n),
        "家庭住址": _pool(addresses, rng, n),
        "银行卡号": cards,
        "统一社会信用代码": codes,
        "备注": remark,
    }
    labels = {
        "姓名": "person_name",
        "身份证号": "cn_resident_id",
        "手机号码": "cn_mobile",
        "邮箱": "email",
        "家庭住址": "address",
        "银行卡号": "bank_card",
        "统一社会信用代码": "cn_uscc",
        "备注": "free_text_with_pii",
    }
    table = pa.table({k: with_nulls(v) for k, v in columns.items()})
    return table, labels


# ---------------------------------------------------------------- scoring


@dataclass(frozen=True)
class Evaluation:
    """Column label accuracy and cell-level counts of a detector run on labelled columns."""

    columns: int
    correct: int
    misses: tuple[tuple[str, str, str], ...]  # (column, expected, got)
    true_pos: dict[str, int]
    false_pos: dict[str, int]
    false_neg: dict[str, int]

    @property
    def accuracy(self) -> float:
        return self.correct / self.columns if self.columns else 1.0

    def precision(self, label: str) -> float:
        tp, fp = self.true_pos.get(label, 0), self.false_pos.get(label, 0)
        return tp / (tp + fp) if tp + fp else 1.0

    def recall(self, label: str) -> float:
        tp, fn = self.true_pos.get(label, 0), self.false_neg.get(label, 0)
        return tp / (tp + fn) if tp + fn else 1.0


def evaluate(columns: list[LabeledColumn], *, today: dt.date = REFERENCE_DATE) -> Evaluation:
    """Scan each column, compare its label, and compare per-cell labels with the truth."""
    from yuanjian.privacy import detect

    correct = 0
    misses: list[tuple[str, str, str]] = []
    tp: dict[str, int] = {}
    fp: dict[str, int] = {}
    fn: dict[str, int] = {}
    for col in columns:
        finding = detect.scan_column(col.name, col.values, today=today)
        if finding.label == col.label:
            correct += 1
        else:
            misses.append((col.name, col.label, finding.label))
        predicted = detect.cell_labels(col.values, finding, today=today).to_pylist()
        for truth, pred in zip(col.cell_labels, predicted, strict=True):
            if pred == truth:
                if truth != NONE:
                    tp[truth] = tp.get(truth, 0) + 1
                continue
            if pred != NONE:
                fp[pred] = fp.get(pred, 0) + 1
            if truth != NONE:
                fn[truth] = fn.get(truth, 0) + 1
    return Evaluation(len(columns), correct, tuple(misses), tp, fp, fn)
