"""Detection of personal and sensitive information in tables and free text.

:func:`scan_table` labels every column of an Arrow table with one of :data:`LABELS`; a label
comes from value patterns, check digits and column-name hints in Chinese and English (pinyin
initials too: ``sfzh``, ``sjhm``, ``csrq``). :func:`find_entities` finds entity spans in one
text. :data:`ENTITY_REGEXES` are the RE2-compatible patterns the desensitization engine uses
to redact entities inside text (``pyarrow.compute.replace_substring_regex`` or DuckDB
``regexp_replace(..., 'g')``), to be applied in dict order (resident IDs before cards, cards
before phone numbers).

How a column is scanned, all of it vectorized over the whole column (pyarrow compute kernels,
RE2 regular expressions and numpy over the Arrow buffers; no Python loop over cells):

1. Nulls and blanks are dropped, values trimmed; integer columns are cast to strings so
   numeric phone and card columns are found; floats are geo coordinates only with a name hint;
   date and timestamp columns are dates of birth only with a hint or a plausible birth range.
2. A deterministic stride probe of at most 2,048 values picks the candidate labels; every
   candidate is then checked on all values (or on ``sample_rows`` values when asked), so
   ``match_ratio`` is a full-column figure.
3. Identifiers are validated, not just matched: GB 11643 and GB 32100 check characters, birth
   dates and province prefixes, Luhn for cards (see :mod:`yuanjian.privacy.checksums`). Mobile
   and fixed-line numbers are matched against the national-number patterns of the
   ``phonenumbers`` metadata for CN (kept current by its maintainers), compiled into RE2;
   ``phonenumbers.parse`` plus ``is_valid_number`` runs at 29,000-66,000 values/s (one
   value per call, measured on 1,000,000 numbers), far too slow for a column scan.
4. Names and addresses cannot be pattern-checked: names use a surname list (百家姓 plus the
   common modern surnames), length and shape; addresses use administrative-division and street
   keywords. Column-name hints lower the thresholds and decide between labels.

The surname list, hint vocabulary and thresholds are hand-written: no maintained library
covers Chinese column names or Chinese person names without an NLP model (Presidio's
recognizers are English-centric and need spaCy for names).

Free text: a column whose cells are long and contain entities (by :data:`ENTITY_REGEXES` or
cue words such as 姓名/联系人/住址) is ``free_text_with_pii``. :func:`find_entities` validates
each match with the scalar checks; names, addresses and birth dates in free text are found
only after cue words (姓名：, 联系人, 住址：, 出生日期 …), since there is no NER model.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import unicodedata
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from phonenumbers import PhoneMetadata

from yuanjian.privacy import checksums
from yuanjian.privacy.labels import LABELS, NONE

__all__ = [
    "ENTITY_REGEXES",
    "LABELS",
    "ColumnFinding",
    "DuplicateColumnError",
    "Entity",
    "cell_labels",
    "find_entities",
    "match_cells",
    "name_hints",
    "scan_column",
    "scan_table",
]

# Labels whose every cell can be checked on its own (used by cell_labels).
CELL_LABELS = frozenset(LABELS) - {"free_text_with_pii", NONE}

PROBE_ROWS = 2048


class DuplicateColumnError(ValueError):
    """Two columns of a scanned table share a name, so findings could not be keyed by it."""

    def __init__(self, column: str) -> None:
        super().__init__(f"column {column!r} appears more than once; rename it before scanning")
        self.column = column


@dataclass(frozen=True)
class ColumnFinding:
    """What :func:`scan_column` concluded about one column."""

    label: str
    confidence: float
    match_ratio: float
    column: str = ""
    sample_size: int = 0  # non-null, non-blank values examined
    null_count: int = 0  # null or blank values in the examined rows
    name_hint: tuple[str, ...] = ()  # labels the column name suggests
    hint_used: bool = False  # whether the name hint agreed with the label
    candidates: Mapping[str, float] = field(default_factory=dict)  # label -> match ratio
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Entity:
    """An entity found in free text: ``text[start:end]`` has ``label``."""

    label: str
    start: int
    end: int
    text: str | None = None


# ---------------------------------------------------------------- patterns

_HAN = "\u4e00-\u9fff"
_PLATE_PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
_PLATE_CHARS = "A-HJ-NP-Z0-9"
_PLATE_TAIL = (
    rf"(?:[DF][{_PLATE_CHARS}]\d{{4}}|\d{{5}}[DF]|[{_PLATE_CHARS}]{{5}}"
    rf"|[{_PLATE_CHARS}]{{4}}[挂学警港澳领使])"
)
_PLATE = rf"[{_PLATE_PROVINCES}][A-Z][·•\- ]?"
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
_H4 = "[0-9A-Fa-f]{1,4}"
_IPV6 = (  # longest forms first: leftmost-first alternation must not stop at a prefix
    rf"(?:{_H4}:){{7}}{_H4}"
    rf"|(?:{_H4}:){{1,6}}:{_H4}"
    rf"|(?:{_H4}:){{1,5}}(?::{_H4}){{2}}"
    rf"|(?:{_H4}:){{1,4}}(?::{_H4}){{3}}"
    rf"|(?:{_H4}:){{1,3}}(?::{_H4}){{4}}"
    rf"|(?:{_H4}:){{1,2}}(?::{_H4}){{5}}"
    rf"|{_H4}:(?::{_H4}){{6}}"
    rf"|::(?:{_H4}:){{0,6}}{_H4}"
    rf"|(?:{_H4}:){{1,7}}:"
)
_EMAIL = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
_PASSPORT = r"(?:[EG]\d{8}|E[A-HJ-NP-Z]\d{7}|[DSP]E\d{7})"
_USCC_SHAPE = r"[1-9ANY][1-9]\d{6}[0-9A-HJ-NPQRTUWXY]{10}"
_RID_SHAPE = r"[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx]"

_CN = PhoneMetadata.metadata_for_region("CN")
_MOBILE_NATIONAL = _CN.mobile.national_number_pattern
_FIXED_NATIONAL = _CN.fixed_line.national_number_pattern

#: Unanchored RE2-compatible patterns for entities inside text, in redaction order.
ENTITY_REGEXES: dict[str, str] = {
    "cn_resident_id": rf"\b{_RID_SHAPE}\b",
    "cn_uscc": rf"\b{_USCC_SHAPE}\b",
    "bank_card": r"\b[1-9]\d{3}(?:[ -]?\d{4}){3}(?:[ -]?\d{1,3})?\b",
    "cn_mobile": r"(?:\+86[- ]?|\b)1[3-9]\d(?:[- ]?\d{4}){2}\b",
    "cn_landline": r"(?:\+86[- ]?|\(0?|\b0)(?:10|2\d|[3-9]\d\d)\)?[- ]?[2-9]\d{2,3}[- ]?\d{4}\b",
    "email": rf"\b{_EMAIL}\b",
    "ip_address": rf"\b{_IPV4}\b|\b(?:{_IPV6})",
    "cn_license_plate": rf"{_PLATE}(?:[DF][{_PLATE_CHARS}]\d{{4}}\b|\d{{5}}[DF]\b"
    rf"|[{_PLATE_CHARS}]{{5}}\b|[{_PLATE_CHARS}]{{4}}[挂学警港澳领使])",
    "passport": rf"\b{_PASSPORT}\b",
    "geo_coordinate": r"-?\b\d{1,3}\.\d{4,}\s*[,，]\s*-?\d{1,3}\.\d{4,}\b",
}

# Whole-cell patterns. Phone patterns run on values with separators removed.
_CELL_PATTERNS: dict[str, str] = {
    "cn_mobile": rf"^(?:(?:\+|00)?86)?(?:{_MOBILE_NATIONAL})$",
    "cn_landline": rf"^(?:(?:\+|00)?86|0)(?:{_FIXED_NATIONAL})$",
    "email": rf"^{_EMAIL}$",
    "ip_address": rf"^(?:{_IPV4}|{_IPV6})$",
    "cn_license_plate": rf"^{_PLATE}{_PLATE_TAIL}$",
    "passport": rf"^{_PASSPORT}$",
}
_SEPARATORS = r"[\s\-()（）]"
_DATE_RE = (
    r"^((?:18|19|20)\d\d)(?:[-/.]|年)(\d{1,2})(?:[-/.]|月)(\d{1,2})日?"
    r"(?:[ T]00:00(?::00(?:\.0+)?)?)?$"
)
_COMPACT_DATE_RE = r"^((?:19|20)\d\d)(\d\d)(\d\d)$"
_GEO_PAIR_RE = (
    r"^(?:POINT\s*)?[(\[]?\s*(-?\d{1,3}\.\d{3,})\s*[,，\s]\s*(-?\d{1,3}\.\d{3,})\s*[)\]]?$"
)
_GEO_SINGLE_RE = r"^-?\d{1,3}\.\d{3,}$"


def _words(text: str) -> list[str]:
    return text.split()


# 百家姓 single-character surnames, then common modern surnames it does not list.
_SINGLE_SURNAMES = frozenset(
    "赵钱孙李周吴郑王冯陈褚卫蒋沈韩杨朱秦尤许何吕施张孔曹严华金魏陶姜戚谢邹喻柏水窦章云苏潘葛"
    "奚范彭郎鲁韦昌马苗凤花方俞任袁柳酆鲍史唐费廉岑薛雷贺倪汤滕殷罗毕郝邬安常乐于时傅皮卞齐康"
    "伍余元卜顾孟平黄和穆萧尹姚邵湛汪祁毛禹狄米贝明臧计伏成戴谈宋茅庞熊纪舒屈项祝董梁杜阮蓝闵"
    "席季麻强贾路娄危江童颜郭梅盛林刁钟徐邱骆高夏蔡田樊胡凌霍虞万支柯昝管卢莫经房裘缪干解应宗"
    "丁宣贲邓郁单杭洪包诸左石崔吉钮龚程嵇邢滑裴陆荣翁荀羊於惠甄曲家封芮羿储靳汲邴糜松井段富巫"
    "乌焦巴弓牧隗山谷车侯宓蓬全郗班仰秋仲伊宫宁仇栾暴甘钭厉戎祖武符刘景詹束龙叶幸司韶郜黎蓟薄"
    "印宿白怀蒲邰从鄂索咸籍赖卓蔺屠蒙池乔阴鬱胥能苍双闻莘党翟谭贡劳逄姬申扶堵冉宰郦雍卻璩桑桂"
    "濮牛寿通边扈燕冀郏浦尚农温别庄晏柴瞿阎充慕连茹习宦艾鱼容向古易慎戈廖庾终暨居衡步都耿满弘"
    "匡国文寇广禄阙东欧殳沃利蔚越夔隆师巩厍聂晁勾敖融冷訾辛阚那简饶空曾毋沙乜养鞠须丰巢关蒯相"
    "查后荆红游竺权逯盖益桓公晋楚闫法汝鄢涂钦岳帅缑亢况郈有琴商牟佘佴伯赏墨哈谯笪年爱阳佟言福"
    "付代覃邝冼麦练植区揭兰栗芦鹿亓修隋邸仝仉苟丛苑迟官南谌粟楼盘位海豆朴漆卿初门敬来普辜阿母"
    "赫鲜战玉银宾呼但尉冶斯檀衣信展智奉尧闭由原"
)
_COMPOUND_SURNAMES = frozenset(
    _words(
        "万俟 司马 上官 欧阳 夏侯 诸葛 闻人 东方 赫连 皇甫 尉迟 公羊 澹台 公冶 宗政 "
        "濮阳 淳于 单于 太叔 申屠 公孙 仲孙 轩辕 令狐 钟离 宇文 长孙 慕容 鲜于 闾丘 "
        "司徒 司空 亓官 司寇 子车 颛孙 端木 巫马 公西 漆雕 乐正 壤驷 公良 拓跋 夹谷 "
        "宰父 谷梁 段干 百里 东郭 南门 呼延 羊舌 微生 梁丘 左丘 东门 西门 南宫 第五"
    )
)
_SURNAME_CLASS = "".join(sorted(_SINGLE_SURNAMES))
# Values ending like a place or an organisation are not names even if they start like one.
_NOT_NAME_SUFFIX = "市县区省镇乡村路街局厅处司院校所部委会店厂行园馆站场队社族组"
_MINORITY_NAME_RE = rf"^[{_HAN}]{{1,10}}·[{_HAN}]{{1,12}}$"
_LATIN_NAME_RE = r"^[A-Z][a-z]+(?:[ '\-][A-Z][a-z]+){1,3}$"
_ADDRESS_RE = (
    r"(?:省|自治区|市|州|盟|区|县|旗).*"
    r"(?:路|街|道|巷|弄|号|栋|幢|单元|室|座|楼|村|组|大厦|小区|广场|苑|公寓|花园)"
)
# With an address hint: a street and number without the division (花园路12号院), or a
# Latin-script address starting with a house number (1600 Amphitheatre Parkway, ...).
_HINTED_ADDRESS_RE = (
    r"(?:路|街|道|巷|弄|胡同|里)\d+(?:-\d+)?号"
    r"|^\d{1,6}[A-Za-z]?,?\s+[A-Za-z][A-Za-z0-9 .'#,\-]{3,}$"
)
_NAME_CUES = (
    "姓名|名字|联系人|客户|申请人|持卡人|户主|法定代表人|法人代表|负责人|收件人|收货人|患者|经办人"
)
_ADDRESS_CUES = "住址|地址|住所|家住|居住在|现住|户籍地|通讯地址|收货地址"
_DOB_CUES = "出生日期|出生年月日?|出生于|生于|生日|DOB|[Dd]ate of [Bb]irth|[Bb]orn(?: on)?"
# Cue-word patterns for columns (RE2: no lookaround), matching the start of the entity.
_CUE_PRESENCE = (
    rf"(?:{_NAME_CUES})[:：\s]*[{_SURNAME_CLASS}][{_HAN}]"
    rf"|(?:{_ADDRESS_CUES})[:：\s]*[{_HAN}]{{2,}}(?:省|市|区|县)"
    rf"|(?:出生日期|出生年月|出生于|生于|生日)[:：\s]*(?:19|20)\d\d"
)
_TEXT_PRESENCE = "|".join(f"(?:{p})" for p in ENTITY_REGEXES.values()) + "|" + _CUE_PRESENCE
_TEXTUAL = rf"[{_HAN}].*[{_HAN}]|[A-Za-z]{{2,}}\s+[A-Za-z]{{2,}}"
_FULLWIDTH = r"[０-９Ａ-Ｚａ-ｚ＠．：－]"

# ---------------------------------------------------------------- column-name hints

_PHONE = ("cn_mobile", "cn_landline")
# (labels, Chinese substrings, English tokens or token phrases joined by "_"), first match wins.
_HINT_RULES: tuple[tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]], ...] = (
    (("ip_address",), ("ip地址",), ("ip", "ipv4", "ipv6", "ip_addr", "ipaddr", "ipaddress")),
    (
        ("email",),
        ("邮箱", "邮件", "电子邮"),
        ("email", "e_mail", "mail", "mailbox", "emailaddress"),
    ),
    (
        ("cn_uscc",),
        ("统一社会信用代码", "社会信用代码", "信用代码", "纳税人识别号", "税号"),
        ("uscc", "credit_code", "creditcode", "tyshxydm", "shxydm", "tax_no", "taxno"),
    ),
    (
        ("cn_resident_id", "passport"),
        ("证件号", "证件编号"),
        ("zjhm", "cert_no", "certno", "document_no"),
    ),
    (
        ("cn_resident_id",),
        ("身份证", "身份号码", "公民身份", "居民身份", "id卡"),
        (
            "id_card",
            "idcard",
            "id_no",
            "idno",
            "id_number",
            "idnumber",
            "sfz",
            "sfzh",
            "sfzhm",
            "ssn",
            "citizen_id",
            "resident_id",
            "national_id",
            "identity_card",
            "identity_no",
        ),
    ),
    (
        ("bank_card",),
        ("银行卡", "卡号", "银行账", "账户", "账号"),
        (
            "card_no",
            "cardno",
            "card_number",
            "cardnumber",
            "bank_card",
            "bankcard",
            "yhkh",
            "bank_account",
            "pan",
            "card",
        ),
    ),
    (("passport",), ("护照",), ("passport", "passport_no", "hzhm", "hzh")),
    (
        ("cn_license_plate",),
        ("车牌", "号牌", "车辆牌照"),
        ("plate", "license_plate", "plate_no", "cph", "hphm", "car_no", "vehicle_no"),
    ),
    (
        ("geo_coordinate",),
        ("经度", "纬度", "坐标", "经纬", "定位"),
        (
            "lng",
            "lon",
            "longitude",
            "lat",
            "latitude",
            "coord",
            "coords",
            "coordinate",
            "coordinates",
            "geo",
            "gps",
            "jd",
            "wd",
            "latlng",
            "lnglat",
        ),
    ),
    (
        ("cn_landline",),
        ("座机", "固话", "固定电话", "办公电话", "传真", "单位电话"),
        ("landline", "fax", "office_phone", "office_tel"),
    ),
    (
        ("cn_mobile",),
        ("手机", "移动电话"),
        ("mobile", "cellphone", "cell", "cell_phone", "mobile_phone", "sjh", "sjhm"),
    ),
    (_PHONE, ("电话", "联系方式"), ("phone", "tel", "telephone", "phone_no", "lxdh", "dh")),
    (
        ("date_of_birth",),
        ("出生日期", "出生年月", "生日", "出生时间", "出生年"),
        ("birth", "birthday", "dob", "birthdate", "csrq", "bday", "born", "date_of_birth"),
    ),
    (
        ("address",),
        ("地址", "住址", "住所", "居住地", "户籍", "籍贯", "出生地", "所在地", "通讯地", "门牌"),
        ("address", "addr", "street", "residence", "domicile", "dz", "jtzz", "hjdz", "zzdz"),
    ),
    (
        ("person_name",),
        (
            "姓名",
            "名字",
            "联系人",
            "法定代表人",
            "法人代表",
            "负责人",
            "户主",
            "持卡人",
            "申请人",
            "收件人",
            "收货人",
            "患者",
            "经办人",
            "监护人",
        ),
        (
            "name",
            "full_name",
            "fullname",
            "person",
            "contact",
            "holder",
            "xm",
            "first_name",
            "last_name",
            "surname",
            "given_name",
            "fzr",
            "fddbr",
        ),
    ),
    (
        ("free_text_with_pii",),
        ("备注", "说明", "描述", "内容", "详情", "摘要", "留言", "意见", "记录", "评论", "反馈"),
        (
            "remark",
            "remarks",
            "note",
            "notes",
            "comment",
            "comments",
            "description",
            "desc",
            "memo",
            "text",
            "message",
            "msg",
            "content",
            "detail",
            "details",
            "summary",
        ),
    ),
)
# With these tokens, "name" is not a person's name.
_NOT_PERSON_TOKENS = frozenset(
    _words(
        "company org organization file product table column field dept "
        "department school street city unit enterprise brand item user host bank shop "
        "store project app domain display nick account login screen"
    )
)


def _tokens(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return re.findall(r"[a-z]+|\d+", spaced.lower())


def name_hints(column: str) -> tuple[str, ...]:
    """Labels suggested by a column name (Chinese, English or pinyin initials), or ()."""
    norm = unicodedata.normalize("NFKC", str(column)).strip()
    low = norm.lower()
    tokens = _tokens(norm)
    token_set = set(tokens)
    phrase = "_" + "_".join(tokens) + "_"
    for labels, zh, en in _HINT_RULES:
        if any(z in low for z in zh):
            return labels
        for word in en:
            if ("_" in word and f"_{word}_" in phrase) or word in token_set:
                if labels == ("person_name",) and token_set & _NOT_PERSON_TOKENS:
                    break
                return labels
    return ()


# ---------------------------------------------------------------- per-cell matchers

_STRENGTH = {  # how much a full match says on its own
    "cn_resident_id": 1.0,
    "cn_uscc": 1.0,
    "bank_card": 0.97,
    "cn_mobile": 0.97,
    "cn_landline": 0.9,
    "email": 0.98,
    "ip_address": 0.95,
    "cn_license_plate": 0.95,
    "passport": 0.8,
    "geo_coordinate": 0.85,
    "date_of_birth": 0.7,
    "person_name": 0.8,
    "address": 0.8,
    "free_text_with_pii": 0.8,
}
_MIN_RATIO = {  # (without a name hint, with one)
    "cn_resident_id": (0.5, 0.3),
    "cn_uscc": (0.5, 0.3),
    "bank_card": (0.6, 0.3),  # one random digit string in ten passes Luhn
    "cn_mobile": (0.5, 0.3),
    "cn_landline": (0.5, 0.3),
    "email": (0.5, 0.3),
    "ip_address": (0.5, 0.3),
    "cn_license_plate": (0.5, 0.3),
    "passport": (0.7, 0.3),
    "geo_coordinate": (0.7, 0.3),
    "date_of_birth": (0.8, 0.3),
    "person_name": (0.8, 0.5),
    "address": (0.7, 0.4),
    "free_text_with_pii": (0.05, 0.02),  # a few remarks with PII make the column sensitive
}
_HINT_BONUS = 0.15
_SECONDARY_RATIO = 0.05
# Byte lengths at which a failing value may be a formatted one (e.g. 138-1234-5678).
_FORMATTED_BYTES = {
    "cn_resident_id": (19, 30),
    "cn_uscc": (19, 30),
    "bank_card": (17, 32),
    "cn_mobile": (12, 24),
    "cn_landline": (11, 24),
}
# Shapes of the check-digit labels, to say why a hinted column was not labelled.
_SHAPES = {
    "cn_resident_id": r"^\d{17}[\dX]$",
    "cn_uscc": r"^[0-9A-Z]{18}$",
    "bank_card": r"^\d{15,19}$",
}
_TEXT_MIN_MEAN_CHARS = 12.0
_BIRTH_MIN_SPREAD_DAYS = 10 * 365
_NAME_MIN_DISTINCT = 0.3


def _stride_indices(n: int, k: int) -> np.ndarray:
    """``k`` deterministic, evenly spread row indices out of ``n``."""
    if k >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, k).round().astype(np.int64))


def _np(arr: pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(arr, False).to_numpy(zero_copy_only=False), dtype=bool)


def _regex(values: pa.Array, pattern: str) -> np.ndarray:
    return _np(pc.match_substring_regex(values, pattern))


class _Cells:
    """Non-null, trimmed, non-blank string values of a column, with derived arrays cached."""

    def __init__(self, values: pa.Array, *, today: dt.date, numeric: bool = False) -> None:
        self.values = values
        self.n = len(values)
        self.today = today
        self.numeric = numeric
        self.dates: np.ndarray | None = None  # day ordinals of matched dates, for the gate
        self._matches: dict[tuple[str, bool], np.ndarray] = {}

    @cached_property
    def byte_lengths(self) -> np.ndarray:
        return pc.binary_length(self.values).to_numpy(zero_copy_only=False)

    @cached_property
    def char_lengths(self) -> np.ndarray:
        return pc.utf8_length(self.values).to_numpy(zero_copy_only=False)

    def _formatted(self, label: str, check: Callable[[pa.Array], np.ndarray]) -> np.ndarray:
        """``check`` on the values; values that fail and have room for separators (spaces,
        dashes, parentheses) are checked again without them. Rewriting only those keeps the
        common unformatted column free of a regex rewrite pass."""
        ok = check(self.values)
        lo, hi = _FORMATTED_BYTES[label]
        retry = ~ok & (self.byte_lengths >= lo) & (self.byte_lengths <= hi)
        if not self.numeric and retry.any():
            retry &= ~_np(pc.ascii_is_alnum(self.values))
        if not self.numeric and retry.any():
            idx = np.flatnonzero(retry)
            stripped = pc.replace_substring_regex(self.values.take(pa.array(idx)), _SEPARATORS, "")
            ok[idx] = check(stripped)
        return ok

    @cached_property
    def mean_chars(self) -> float:
        if self.n == 0:
            return 0.0
        return float(pc.mean(pc.utf8_length(self.values)).as_py() or 0.0)

    def match(self, label: str, hinted: bool) -> np.ndarray:
        """Per-value mask of values that are ``label`` on their own (cached)."""
        key = (label, hinted)
        if key not in self._matches:
            self._matches[key] = self._match(label, hinted)
        return self._matches[key]

    def _match(self, label: str, hinted: bool) -> np.ndarray:
        if self.n == 0:
            return np.zeros(0, dtype=bool)
        if label == "cn_resident_id":
            return self._formatted(
                label, lambda v: _np(checksums.resident_id_valid(v, today=self.today))
            )
        if label == "cn_uscc":
            return self._formatted(label, lambda v: _np(checksums.uscc_valid(pc.ascii_upper(v))))
        if label == "bank_card":
            return self._formatted(label, lambda v: _np(checksums.bank_card_valid(v)))
        if label in ("cn_mobile", "cn_landline"):
            return self._formatted(label, lambda v: _regex(v, _CELL_PATTERNS[label]))
        if label in _CELL_PATTERNS:
            return _regex(self.values, _CELL_PATTERNS[label])
        if label == "date_of_birth":
            return self._dates(hinted)
        if label == "geo_coordinate":
            return self._geo(hinted)
        if label == "person_name":
            return self._names(hinted)
        if label == "address":
            # An administrative division, then a street-level word; short, not a sentence.
            mask = (self.char_lengths >= 6) & (self.char_lengths <= 80)
            mask &= _regex(self.values, _ADDRESS_RE)
            for mark in "，。！？；":
                mask &= ~_np(pc.match_substring(self.values, mark))
            if hinted:
                mask |= _regex(self.values, _HINTED_ADDRESS_RE)
            return mask
        if label == "free_text_with_pii":
            # Text, not a lone identifier: at least two Han characters or two Latin words.
            return _regex(self.values, _TEXTUAL) & _regex(self.values, _TEXT_PRESENCE)
        raise KeyError(label)

    def _dates(self, hinted: bool) -> np.ndarray:
        ymd = self._extract_ymd(_DATE_RE)
        if hinted:
            compact = self._extract_ymd(_COMPACT_DATE_RE)
            ymd = np.where(ymd[:, :1] > 0, ymd, compact)
        ok = checksums.birth_date_ok(ymd[:, 0], ymd[:, 1], ymd[:, 2], today=self.today)
        self.dates = _ordinals(ymd[ok])
        return ok

    def _extract_ymd(self, pattern: str) -> np.ndarray:
        # pyarrow's extract_regex wants named groups: name the three capturing groups in order.
        groups = iter(("y", "m", "d"))
        named = re.sub(r"\((?!\?)", lambda _m: f"(?P<{next(groups)}>", pattern)
        parts = pc.extract_regex(self.values, named).flatten()  # nulls where no match
        out = np.zeros((self.n, 3), dtype=np.int64)
        for i, part in enumerate(parts):
            out[:, i] = pc.fill_null(part.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
        return out

    def _geo(self, hinted: bool) -> np.ndarray:
        named = _GEO_PAIR_RE.replace("(-?", "(?P<a>-?", 1).replace("(-?", "(?P<b>-?", 1)
        a, b = (_to_float(part) for part in pc.extract_regex(self.values, named).flatten())
        ok = ((np.abs(a) <= 180) & (np.abs(b) <= 90)) | ((np.abs(a) <= 90) & (np.abs(b) <= 180))
        if hinted:
            single = _regex(self.values, _GEO_SINGLE_RE)
            if single.any():
                x = _to_float(pc.if_else(pa.array(single), self.values, None))
                ok |= single & (np.abs(x) <= 180)
        return ok

    def _names(self, hinted: bool) -> np.ndarray:
        first = pc.utf8_slice_codeunits(self.values, 0, 1)
        first2 = pc.utf8_slice_codeunits(self.values, 0, 2)
        surname = _np(pc.is_in(first, value_set=_SURNAME_SET)) | _np(
            pc.is_in(first2, value_set=_COMPOUND_SET)
        )
        chars = self.char_lengths
        # 2-4 characters of three UTF-8 bytes each (CJK), not ending like a place or company.
        mask = surname & (chars >= 2) & (chars <= 4) & (self.byte_lengths == 3 * chars)
        last = pc.utf8_slice_codeunits(self.values, -1)
        mask &= ~_np(pc.is_in(last, value_set=_NOT_NAME_SUFFIX_SET))
        dotted = _np(pc.match_substring(self.values, "·"))
        if dotted.any():  # minority names such as 阿卜杜拉·买买提
            mask |= dotted & _regex(self.values, _MINORITY_NAME_RE)
        if hinted:
            mask |= _regex(self.values, _LATIN_NAME_RE)
        return mask

    @cached_property
    def distinct_ratio(self) -> float:
        probe = self.values.take(pa.array(_stride_indices(self.n, PROBE_ROWS)))
        return pc.count_distinct(probe).as_py() / max(1, len(probe))


_SURNAME_SET = pa.array(sorted(_SINGLE_SURNAMES))
_NOT_NAME_SUFFIX_SET = pa.array(list(_NOT_NAME_SUFFIX))
_COMPOUND_SET = pa.array(sorted(_COMPOUND_SURNAMES))


def _to_float(arr: pa.Array) -> np.ndarray:
    floats = pc.cast(arr, pa.float64(), safe=False)
    return pc.fill_null(floats, math.inf).to_numpy(zero_copy_only=False)


def _ordinals(ymd: np.ndarray) -> np.ndarray:
    if ymd.size == 0:
        return np.zeros(0, dtype=np.int64)
    dates = (
        (ymd[:, 0] - 1970).astype("datetime64[Y]") + (ymd[:, 1] - 1).astype("timedelta64[M]")
    ).astype("datetime64[D]") + (ymd[:, 2] - 1).astype("timedelta64[D]")
    return dates.astype(np.int64)


def _birth_range_plausible(days: np.ndarray, today: dt.date) -> bool:
    """Dates spread over at least a decade, none in the future: births, not events."""
    if days.size < 5:
        return False
    lo, hi = np.percentile(days, [10, 90])
    today_days = (np.datetime64(today, "D") - np.datetime64("1970-01-01", "D")).astype(np.int64)
    return hi - lo >= _BIRTH_MIN_SPREAD_DAYS and days.max() <= today_days


# ---------------------------------------------------------------- column scan


def _normalize_strings(arr: pa.Array) -> tuple[pa.Array, int]:
    """Trimmed non-blank values and the number of null or blank ones."""
    trimmed = pc.utf8_trim_whitespace(arr)
    keep = pc.and_kleene(pc.is_valid(trimmed), pc.not_equal(pc.binary_length(trimmed), 0))
    kept = pc.filter(trimmed, pc.fill_null(keep, False))
    return kept, len(arr) - len(kept)


def _as_array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        if values.num_chunks == 1:
            return values.chunk(0)
        return values.combine_chunks() if values.num_chunks else pa.array([], type=values.type)
    if not isinstance(values, pa.Array):
        raise TypeError(f"expected a pyarrow Array or ChunkedArray, got {type(values).__name__}")
    return values


_STRING_LABELS = tuple(label for label in LABELS if label != NONE)
_INT_LABELS = ("cn_resident_id", "cn_uscc", "bank_card", "cn_mobile", "date_of_birth")


def scan_column(
    name: str,
    values: pa.Array | pa.ChunkedArray,
    *,
    sample_rows: int | None = None,
    today: dt.date | None = None,
) -> ColumnFinding:
    """Label one column from its values and its name."""
    arr = _as_array(values)
    today = today or dt.date.today()
    hints = name_hints(name)
    total = len(arr)
    if sample_rows is not None:
        if sample_rows <= 0:
            raise ValueError(f"sample_rows must be positive, got {sample_rows}")
        if total > sample_rows:
            arr = arr.take(pa.array(_stride_indices(total, sample_rows)))
    t = arr.type
    if pa.types.is_dictionary(t):
        arr, t = arr.dictionary_decode(), t.value_type
    if pa.types.is_decimal(t):
        arr, t = arr.cast(pa.float64()), pa.float64()
    if pa.types.is_floating(t):
        return _scan_floats(name, arr, hints)
    if pa.types.is_date(t) or pa.types.is_timestamp(t):
        return _scan_dates(name, arr, hints, today)
    if pa.types.is_integer(t):
        return _scan_strings(name, arr.cast(pa.string()), hints, today, _INT_LABELS, numeric=True)
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return _scan_strings(name, arr.cast(pa.string()), hints, today, _STRING_LABELS)
    return ColumnFinding(
        NONE, 1.0, 0.0, name, 0, arr.null_count, hints, notes=(f"type {t} is not scanned",)
    )


def _finding_none(
    name: str, hints: tuple[str, ...], size: int, nulls: int, note: str
) -> ColumnFinding:
    return ColumnFinding(NONE, 0.5 if hints else 1.0, 0.0, name, size, nulls, hints, notes=(note,))


def _decide(
    name: str,
    hints: tuple[str, ...],
    ratios: dict[str, float],
    gates: dict[str, bool],
    size: int,
    nulls: int,
    notes: list[str],
) -> ColumnFinding:
    best, best_score = NONE, 0.0
    for label in LABELS[:-1]:
        ratio = ratios.get(label)
        if ratio is None or not gates.get(label, True):
            continue
        hinted = label in hints
        if ratio < _MIN_RATIO[label][1 if hinted else 0]:
            continue
        score = ratio * _STRENGTH[label] + (_HINT_BONUS if hinted else 0.0)
        if score > best_score:
            best, best_score = label, score
    candidates = {k: round(v, 4) for k, v in ratios.items()}
    if best == NONE:
        partial = max((ratios[k] * _STRENGTH[k] for k in ratios), default=0.0)
        return ColumnFinding(
            NONE,
            round(max(0.5, 1.0 - partial), 4),
            0.0,
            name,
            size,
            nulls,
            hints,
            False,
            candidates,
            tuple(notes),
        )
    confidence = best_score
    if hints and best not in hints:
        confidence -= 0.1  # the name says something else
    return ColumnFinding(
        best,
        round(min(0.99, max(0.05, confidence)), 4),
        round(ratios[best], 6),
        name,
        size,
        nulls,
        hints,
        best in hints,
        candidates,
        tuple(notes),
    )


def _scan_strings(
    name: str,
    arr: pa.Array,
    hints: tuple[str, ...],
    today: dt.date,
    labels: tuple[str, ...],
    *,
    numeric: bool = False,
) -> ColumnFinding:
    values, nulls = (pc.drop_null(arr), arr.null_count) if numeric else _normalize_strings(arr)
    n = len(values)
    if n == 0:
        return _finding_none(name, hints, 0, nulls, "no non-blank values")
    probe_values = (
        values.take(pa.array(_stride_indices(n, PROBE_ROWS))) if n > PROBE_ROWS else values
    )
    if not numeric and _regex(probe_values, _FULLWIDTH).any():
        values = pc.utf8_normalize(values, "NFKC")
        probe_values = pc.utf8_normalize(probe_values, "NFKC")
    probe = _Cells(probe_values, today=today, numeric=numeric)
    full = _Cells(values, today=today, numeric=numeric) if n > PROBE_ROWS else probe
    notes: list[str] = []
    long_text = probe.mean_chars >= _TEXT_MIN_MEAN_CHARS
    candidates: list[str] = []
    for label in labels:
        if label == "free_text_with_pii" and not long_text:
            continue
        hinted = label in hints
        ratio = float(probe.match(label, hinted).mean())
        if ratio >= 0.05 or (hinted and ratio > 0):
            candidates.append(label)
    ratios: dict[str, float] = {}
    gates: dict[str, bool] = {}
    for label in candidates:
        hinted = label in hints
        mask = full.match(label, hinted)
        ratios[label] = float(mask.mean())
        if label == "date_of_birth" and not hinted:
            gates[label] = _birth_range_plausible(
                full.dates if full.dates is not None else np.zeros(0, np.int64), today
            )
            if not gates[label]:
                notes.append("dates do not look like birth dates (range or spread)")
        if label == "person_name" and not hinted:
            gates[label] = full.distinct_ratio >= _NAME_MIN_DISTINCT
    for label in hints:
        shape = _SHAPES.get(label)
        if shape is None or ratios.get(label, 0.0) >= _MIN_RATIO[label][1]:
            continue
        stripped = pc.replace_substring_regex(probe.values, _SEPARATORS, "")
        shaped = float(_regex(pc.ascii_upper(stripped), shape).mean())
        if shaped >= 0.5:
            notes.append(
                f"{shaped:.0%} of values look like {label} but only "
                f"{ratios.get(label, 0.0):.0%} pass its check"
            )
    return _decide(name, hints, ratios, gates, n, nulls, notes)


def _scan_floats(name: str, arr: pa.Array, hints: tuple[str, ...]) -> ColumnFinding:
    values = pc.drop_null(arr).to_numpy(zero_copy_only=False)
    values = values[~np.isnan(values)]
    nulls = len(arr) - len(values)
    if values.size == 0:
        return _finding_none(name, hints, 0, nulls, "no non-null values")
    if "geo_coordinate" not in hints:
        return ColumnFinding(
            NONE, 0.9, 0.0, name, int(values.size), nulls, hints,
            notes=("numbers are not labelled without a name hint",),
        )  # fmt: skip
    ratio = float(((np.abs(values) <= 180) & (values != np.round(values))).mean())
    return _decide(name, hints, {"geo_coordinate": ratio}, {}, int(values.size), nulls, [])


def _scan_dates(name: str, arr: pa.Array, hints: tuple[str, ...], today: dt.date) -> ColumnFinding:
    dates = pc.drop_null(arr.cast(pa.date32()) if not pa.types.is_date32(arr.type) else arr)
    nulls = len(arr) - len(dates)
    if len(dates) == 0:
        return _finding_none(name, hints, 0, nulls, "no non-null values")
    days = dates.cast(pa.int32()).to_numpy(zero_copy_only=False).astype(np.int64)
    today_days = (np.datetime64(today, "D") - np.datetime64("1970-01-01", "D")).astype(np.int64)
    lo = (np.datetime64("1900-01-01", "D") - np.datetime64("1970-01-01", "D")).astype(np.int64)
    ok = (days >= lo) & (days <= today_days)
    hinted = "date_of_birth" in hints
    gates = {} if hinted else {"date_of_birth": _birth_range_plausible(days[ok], today)}
    notes = [] if gates.get("date_of_birth", True) else ["dates do not look like birth dates"]
    return _decide(
        name, hints, {"date_of_birth": float(ok.mean())}, gates, len(dates), nulls, notes
    )


def scan_table(
    table: pa.Table,
    *,
    sample_rows: int | None = None,
    max_workers: int | None = None,
    today: dt.date | None = None,
) -> dict[str, ColumnFinding]:
    """Label every column of ``table``; ``sample_rows`` scans an evenly spread subset."""
    if not isinstance(table, pa.Table):
        raise TypeError(f"expected a pyarrow Table, got {type(table).__name__}")
    seen: set[str] = set()
    for column in table.column_names:
        if column in seen:
            raise DuplicateColumnError(column)
        seen.add(column)
    if sample_rows is not None:
        if sample_rows <= 0:
            raise ValueError(f"sample_rows must be positive, got {sample_rows}")
        if table.num_rows > sample_rows:
            table = table.take(pa.array(_stride_indices(table.num_rows, sample_rows)))
    today = today or dt.date.today()

    def one(i: int) -> ColumnFinding:
        return scan_column(table.column_names[i], table.column(i), today=today)

    workers = max_workers if max_workers is not None else (2 if table.num_rows >= 50_000 else 1)
    if workers > 1 and table.num_columns > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            findings = list(pool.map(one, range(table.num_columns)))
    else:
        findings = [one(i) for i in range(table.num_columns)]
    return dict(zip(table.column_names, findings, strict=True))


def match_cells(
    values: pa.Array | pa.ChunkedArray, label: str, *, today: dt.date | None = None
) -> pa.BooleanArray:
    """Per-cell mask (aligned with ``values``; nulls False) of cells that are ``label``."""
    if label not in CELL_LABELS:
        raise ValueError(f"label {label!r} is not checkable per cell; use one of {CELL_LABELS}")
    arr = _as_array(values)
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if pa.types.is_floating(arr.type) or pa.types.is_decimal(arr.type):
        # Only coordinates are numbers with a fractional part; range-check them as numbers.
        if label != "geo_coordinate":
            return pa.array(np.zeros(len(arr), dtype=bool), type=pa.bool_())
        x = pc.fill_null(arr.cast(pa.float64()), math.inf).to_numpy(zero_copy_only=False)
        return pa.array(np.abs(x) <= 180, type=pa.bool_())
    if pa.types.is_date(arr.type) or pa.types.is_timestamp(arr.type):
        arr = arr.cast(pa.date32())
    arr = arr.cast(pa.string())
    trimmed = pc.utf8_trim_whitespace(arr)
    if pc.any(pc.match_substring_regex(trimmed, _FULLWIDTH)).as_py():
        trimmed = pc.utf8_normalize(trimmed, "NFKC")
    valid = _np(pc.and_kleene(pc.is_valid(trimmed), pc.not_equal(pc.binary_length(trimmed), 0)))
    idx = np.flatnonzero(valid)
    out = np.zeros(len(arr), dtype=bool)
    if idx.size:
        cells = _Cells(trimmed.take(pa.array(idx)), today=today or dt.date.today())
        out[idx] = cells.match(label, hinted=True)
    return pa.array(out, type=pa.bool_())


def cell_labels(
    values: pa.Array | pa.ChunkedArray, finding: ColumnFinding, *, today: dt.date | None = None
) -> pa.StringArray:
    """Per-cell labels in the context of a column finding.

    A cell gets the column label when it passes that label's own check. Another checkable
    label found while scanning (a phone column holding some landlines) labels the cells that
    pass its check and not the column label's, if at least 5 % of the values are such cells:
    below that they are chance matches (one corrupted ID in ten passes the Luhn check).
    Every other cell is ``none``.
    """
    n = len(values)
    out = np.full(n, NONE, dtype=object)
    if finding.label not in CELL_LABELS:
        return pa.array(out, type=pa.string())
    present = max(1, n - _as_array(values).null_count)
    free = np.ones(n, dtype=bool)
    others = [
        k for k, v in sorted(finding.candidates.items(), key=lambda kv: -kv[1])
        if k != finding.label and k in CELL_LABELS and v >= _SECONDARY_RATIO
    ]  # fmt: skip
    for i, label in enumerate([finding.label, *others]):
        mask = _np(match_cells(values, label, today=today)) & free
        if i and mask.sum() < _SECONDARY_RATIO * present:
            continue
        out[mask] = label
        free &= ~mask
    return pa.array(out, type=pa.string())


# ---------------------------------------------------------------- free text

_TEXT_PRIORITY = (
    "cn_resident_id",
    "cn_uscc",
    "bank_card",
    "cn_mobile",
    "cn_landline",
    "passport",
    "email",
    "ip_address",
    "geo_coordinate",
    "cn_license_plate",
    "date_of_birth",
    "person_name",
    "address",
)
_TEXT_RES = {label: re.compile(p, re.ASCII) for label, p in ENTITY_REGEXES.items()}
_PY_MOBILE = re.compile(_CELL_PATTERNS["cn_mobile"], re.ASCII)
_PY_LANDLINE = re.compile(_CELL_PATTERNS["cn_landline"], re.ASCII)
_PY_SEPARATORS = re.compile(_SEPARATORS)
_NAME_STOP = (
    rf"(?=$|[^{_HAN}]|的|电话|手机|联系|身份|证件|住|家住|地址|于|在|是|已|和|与|及|先生|女士|同志)"
)
_COMPOUND_ALT = "|".join(sorted(_COMPOUND_SURNAMES))
_PY_NAME = re.compile(
    rf"(?:{_NAME_CUES})[:：\s]*(?P<v>(?:{_COMPOUND_ALT}|[{_SURNAME_CLASS}])[{_HAN}]{{1,2}}?)"
    + _NAME_STOP
)
_PY_ADDRESS = re.compile(
    rf"(?:{_ADDRESS_CUES})[:：\s]*(?P<v>[{_HAN}0-9A-Za-z#\-·]{{4,80}}?)(?=[，。；;,.!！?？\s)）]|$)"
)
_PY_ADDRESS_SHAPE = re.compile(
    r"(?:省|自治区|市|州|区|县|旗).*(?:路|街|道|巷|弄|号|栋|幢|单元|室|座|楼|村|组)"
)
_PY_DOB = re.compile(
    rf"(?:{_DOB_CUES})[:：\s]*(?P<v>(?P<y>(?:19|20)\d\d)(?:[-/.](?P<m>\d{{1,2}})[-/.](?P<d>\d{{1,2}})"
    r"|年(?P<m2>\d{1,2})月(?P<d2>\d{1,2})日))",
    re.ASCII,
)


def _text_valid(label: str, value: str, today: dt.date) -> bool:
    if label == "cn_resident_id":
        return checksums.is_valid_resident_id(value, today=today)
    if label == "cn_uscc":
        return checksums.is_valid_uscc(value)
    if label == "bank_card":
        digits = _PY_SEPARATORS.sub("", value)
        return 16 <= len(digits) <= 19 and checksums.luhn_ok(digits)
    if label == "cn_mobile":
        return bool(_PY_MOBILE.match(_PY_SEPARATORS.sub("", value)))
    if label == "cn_landline":
        return bool(_PY_LANDLINE.match(_PY_SEPARATORS.sub("", value)))
    if label == "geo_coordinate":
        a, b = (float(x) for x in re.split(r"\s*[,，]\s*", value.strip()))
        return (abs(a) <= 180 and abs(b) <= 90) or (abs(a) <= 90 and abs(b) <= 180)
    return True


def find_entities(text: str, *, today: dt.date | None = None) -> list[Entity]:
    """Entities in ``text`` as (label, start, end) spans, validated and non-overlapping."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    today = today or dt.date.today()
    found: list[tuple[int, int, int, str]] = []  # (priority, start, end, label)
    rank = {label: i for i, label in enumerate(_TEXT_PRIORITY)}
    for label, rx in _TEXT_RES.items():
        for m in rx.finditer(text):
            if _text_valid(label, m.group(0), today):
                found.append((rank[label], m.start(), m.end(), label))
    for m in _PY_NAME.finditer(text):
        found.append((rank["person_name"], m.start("v"), m.end("v"), "person_name"))
    for m in _PY_ADDRESS.finditer(text):
        if _PY_ADDRESS_SHAPE.search(m.group("v")):
            found.append((rank["address"], m.start("v"), m.end("v"), "address"))
    for m in _PY_DOB.finditer(text):
        month, day = m.group("m") or m.group("m2"), m.group("d") or m.group("d2")
        try:
            born = dt.date(int(m.group("y")), int(month), int(day))
        except ValueError:
            continue
        if born <= today:
            found.append((rank["date_of_birth"], m.start("v"), m.end("v"), "date_of_birth"))
    found.sort(key=lambda f: (f[0], f[1] - f[2], f[1]))
    taken: list[tuple[int, int]] = []
    entities: list[Entity] = []
    for _, start, end, label in found:
        if any(start < e and s < end for s, e in taken):
            continue
        taken.append((start, end))
        entities.append(Entity(label, start, end, text[start:end]))
    entities.sort(key=lambda e: (e.start, e.end))
    return entities
