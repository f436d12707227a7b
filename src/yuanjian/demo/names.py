"""Value pools for the synthetic city data generator (`yuanjian.demo.citydata`).

Everything here is generic: common surnames and given-name characters, invented enterprise
trade names, road-name stems, administrative areas of Henan (GB/T 2260 codes) and a selection of
GB/T 4754-2017 industry classes with illustrative economic profiles. No entry names a real person
or a real enterprise. Every string must be encodable in GBK and must not contain a comma, a quote
or a line break, because the CSV writer emits unquoted fields (the tests check both).

The numeric profiles (median revenue, wages, utility use) are plausible orders of magnitude for a
provincial capital, chosen for demos and feature tests; they are not statistics.
"""

from __future__ import annotations

from dataclasses import dataclass

# --- People -------------------------------------------------------------------------------

# (surname, relative frequency); roughly the national ranking, with Henan's common names early.
# fmt: off
SURNAMES: tuple[tuple[str, float], ...] = (
    ("王", 7.2), ("李", 7.0), ("张", 6.9), ("刘", 5.4), ("陈", 4.5), ("杨", 3.1), ("赵", 2.3),
    ("黄", 2.2), ("周", 1.9), ("吴", 1.8), ("徐", 1.6), ("孙", 1.5), ("胡", 1.3), ("朱", 1.3),
    ("高", 1.3), ("林", 1.2), ("何", 1.2), ("郭", 1.6), ("马", 1.4), ("罗", 0.9), ("梁", 0.9),
    ("宋", 1.0), ("郑", 0.8), ("谢", 0.7), ("韩", 0.8), ("唐", 0.6), ("冯", 0.7), ("于", 0.6),
    ("董", 0.7), ("肖", 0.5), ("程", 0.6), ("曹", 0.6), ("袁", 0.5), ("邓", 0.5), ("许", 0.6),
    ("傅", 0.3), ("沈", 0.3), ("曾", 0.3), ("彭", 0.4), ("吕", 0.5), ("苏", 0.4), ("卢", 0.4),
    ("蒋", 0.3), ("蔡", 0.3), ("贾", 0.5), ("丁", 0.4), ("魏", 0.5), ("薛", 0.4), ("叶", 0.3),
    ("阎", 0.3), ("余", 0.3), ("潘", 0.3), ("杜", 0.4), ("戴", 0.2), ("夏", 0.3), ("钟", 0.2),
    ("汪", 0.2), ("田", 0.4), ("任", 0.4), ("姜", 0.3), ("范", 0.4), ("方", 0.2), ("石", 0.3),
    ("姚", 0.3), ("谭", 0.2), ("廖", 0.1), ("邹", 0.2), ("熊", 0.2), ("金", 0.2), ("陆", 0.2),
    ("郝", 0.3), ("孔", 0.2), ("白", 0.3), ("崔", 0.3), ("康", 0.2), ("毛", 0.2), ("邱", 0.2),
    ("秦", 0.2), ("江", 0.2), ("史", 0.3), ("顾", 0.1), ("侯", 0.3), ("邵", 0.2), ("孟", 0.3),
    ("龙", 0.1), ("万", 0.2), ("段", 0.2), ("雷", 0.2), ("钱", 0.1), ("汤", 0.1), ("尹", 0.2),
    ("黎", 0.1), ("易", 0.1), ("常", 0.3), ("武", 0.3), ("乔", 0.2), ("贺", 0.2), ("赖", 0.1),
    ("龚", 0.1), ("文", 0.1), ("申", 0.2), ("牛", 0.2), ("司马", 0.02), ("欧阳", 0.02),
)
# fmt: on

GIVEN_MALE: tuple[str, ...] = tuple(
    dict.fromkeys(
        "伟强磊军勇杰涛斌超明刚平辉鹏华飞鑫波宇浩凯健俊帆帅旭宁龙林阳建亮成东峰文博志晨轩睿哲豪"
        "昊然天晓国海洋振兴永立新春松江庆德学家宏世金贵福生源卫彬锋毅坤瑞祥腾骏泽楠铭航宾"
        "朋钢锐敬彪政清力鸣岩冬广元长喜炎显献"
    )
)
GIVEN_FEMALE: tuple[str, ...] = tuple(
    dict.fromkeys(
        "芳娜敏静丽艳娟霞秀燕玲桂萍红梅琳雪慧婷颖倩洁琴云莉兰凤佳欣怡悦蕾璐瑶雅晶妍萱涵诗梦思"
        "月晓文丹露蓉薇娇媛婉茜琪瑾璇珊莹菲荣素翠英彩香玉春冰爽宁青嘉一子雨心可紫若馨岚"
    )
)

# --- Places --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Area:
    """A county-level area where enterprises register (GB/T 2260 code, current names)."""

    code: str
    district: str  # county-level name, e.g. 金水区
    city: str  # prefecture-level city, e.g. 郑州市
    abbr: str  # short form used in administrative document numbers
    weight: float  # share of enterprises registered here

    @property
    def full_name(self) -> str:
        """City plus district as written in addresses and authority names."""
        if self.district.endswith(("市", "县")) and self.city == "郑州市":
            return self.district
        return self.city + self.district

    @property
    def court(self) -> str:
        """The basic-level people's court of the area."""
        return self.full_name + "人民法院"

    @property
    def court_code(self) -> str:
        """Court code used in case numbers: 豫 + the last four digits of the area code."""
        return "豫" + self.code[2:]

    @property
    def market_authority(self) -> str:
        """The market regulation bureau that registers enterprises in the area."""
        return self.full_name + "市场监督管理局"

    @property
    def tax_authority(self) -> str:
        """The competent tax bureau of the area."""
        return "国家税务总局" + self.full_name + "税务局"


AREAS: tuple[Area, ...] = (
    Area("410102", "中原区", "郑州市", "郑中", 0.105),
    Area("410103", "二七区", "郑州市", "郑二", 0.095),
    Area("410104", "管城回族区", "郑州市", "郑管", 0.085),
    Area("410105", "金水区", "郑州市", "郑金", 0.215),
    Area("410106", "上街区", "郑州市", "郑上", 0.015),
    Area("410108", "惠济区", "郑州市", "郑惠", 0.050),
    Area("410122", "中牟县", "郑州市", "牟", 0.065),
    Area("410181", "巩义市", "郑州市", "巩", 0.040),
    Area("410182", "荥阳市", "郑州市", "荥", 0.040),
    Area("410183", "新密市", "郑州市", "密", 0.035),
    Area("410184", "新郑市", "郑州市", "新郑", 0.060),
    Area("410185", "登封市", "郑州市", "登", 0.030),
    Area("410202", "龙亭区", "开封市", "汴龙", 0.020),
    Area("410305", "涧西区", "洛阳市", "洛涧", 0.025),
    Area("410702", "红旗区", "新乡市", "新红", 0.020),
    Area("410802", "解放区", "焦作市", "焦解", 0.010),
    Area("411002", "魏都区", "许昌市", "许魏", 0.010),
)

# Birth-place codes for resident identity numbers. GB 11643 puts the area code in force where the
# holder was first registered; python-stdnum checks that the code existed in the birth year, so
# each entry carries the years it was valid (inclusive, None = open) as in stdnum's cn/loc data.
# (code, name, first year, last year, weight); weights mix locals with migrants from the province.
BIRTH_AREAS: tuple[tuple[str, str, int | None, int | None, float], ...] = (
    ("410102", "郑州市中原区", 1983, None, 6.0),
    ("410103", "郑州市二七区", 1983, None, 5.0),
    ("410104", "郑州市管城回族区", 1983, None, 4.0),
    ("410105", "郑州市金水区", 1983, None, 8.0),
    ("410106", "郑州市上街区", 1983, None, 1.0),
    ("410108", "郑州市惠济区", 1987, None, 2.0),
    ("410122", "中牟县", 1983, None, 3.0),
    ("410181", "巩义市", 1991, None, 3.0),
    ("410182", "荥阳市", 1994, None, 3.0),
    ("410183", "新密市", 1994, None, 3.0),
    ("410184", "新郑市", 1994, None, 3.0),
    ("410185", "登封市", 1994, None, 3.0),
    ("410120", "郑州市市区", None, 1983, 20.0),
    ("410121", "荥阳县", None, 1994, 3.0),
    ("410123", "新郑县", 1983, 1994, 3.0),
    ("410124", "巩县", 1983, 1991, 3.0),
    ("410125", "登封县", 1983, 1994, 3.0),
    ("410126", "密县", 1983, 1994, 3.0),
    ("412425", "开封地区中牟县", None, 1983, 3.0),
    ("412426", "开封地区新郑县", None, 1983, 3.0),
    ("412427", "开封地区巩县", None, 1983, 3.0),
    ("412428", "开封地区登封县", None, 1983, 3.0),
    ("412429", "开封地区密县", None, 1983, 3.0),
    ("410202", "开封市龙亭区", 1983, None, 2.0),
    ("410302", "洛阳市老城区", 1983, None, 1.0),
    ("410305", "洛阳市涧西区", 1983, None, 2.0),
    ("410702", "新乡市红旗区", 1983, None, 2.0),
    ("410802", "焦作市解放区", 1983, None, 1.0),
    ("411002", "许昌市魏都区", 1986, None, 2.0),
    ("412601", "许昌市", None, 1986, 2.0),
    ("411302", "南阳市宛城区", 1994, None, 2.0),
    ("412901", "南阳市", None, 1994, 2.0),
    ("411402", "商丘市梁园区", 1997, None, 2.0),
    ("412301", "商丘市", None, 1997, 2.0),
    ("411502", "信阳市浉河区", 1998, None, 2.0),
    ("413001", "信阳市", None, 1998, 2.0),
    ("411602", "周口市川汇区", 2000, None, 3.0),
    ("412701", "周口市", None, 2000, 3.0),
    ("411702", "驻马店市驿城区", 2000, None, 2.0),
    ("412801", "驻马店市", None, 2000, 2.0),
)

# Road-name stems; a road is stem + one of ROAD_SUFFIXES.
ROAD_STEMS: tuple[str, ...] = (
    "建设",
    "人民",
    "文化",
    "花园",
    "农业",
    "经三",
    "经五",
    "纬二",
    "纬四",
    "金水",
    "中州",
    "嵩山",
    "桐柏",
    "淮河",
    "陇海",
    "大学",
    "航海",
    "商都",
    "黄河",
    "伏牛",
    "工人",
    "解放",
    "长江",
    "友爱",
    "工业",
    "科学",
    "东风",
    "北环",
    "南环",
    "西环",
    "东明",
    "丰产",
    "未来",
    "政通",
    "顺河",
    "城东",
    "城北",
    "兴华",
    "秦岭",
    "华山",
    "沙口",
    "南阳",
    "杜英",
    "天明",
    "康平",
    "民主",
    "紫荆山",
    "英才",
    "创业",
    "学府",
    "光明",
    "朝阳",
    "振兴",
    "和平",
    "迎宾",
    "永安",
    "新华",
    "青年",
    "红旗",
    "胜利",
)
ROAD_SUFFIXES: tuple[str, ...] = ("路", "路", "路", "街", "大道")
BUILDING_STEMS: tuple[str, ...] = (
    "金色",
    "国际",
    "中原",
    "恒达",
    "世纪",
    "华府",
    "锦江",
    "鑫源",
    "绿地",
    "星河",
    "东方",
    "嘉和",
    "银河",
    "凯旋",
    "紫金",
    "泰和",
    "龙湖",
    "天润",
    "盛世",
    "永和",
    "未来",
    "新天地",
    "万象",
    "宏图",
)
BUILDING_SUFFIXES: tuple[str, ...] = ("大厦", "广场", "中心", "商务楼", "写字楼", "国际")
COMMUNITY_SUFFIXES: tuple[str, ...] = ("小区", "家园", "花园", "苑", "社区", "公寓")

# --- Enterprises ---------------------------------------------------------------------------

# Two-character trade names (字号) are built from this pool.
TRADE_CHARS: tuple[str, ...] = tuple(
    dict.fromkeys(
        "华鑫恒通达盛瑞祥宏远泰丰源德信诚嘉合益兴旺隆昌安康宇航博创新锦程中联天正润豪腾飞凯"
        "汇鼎晟辰星耀捷邦瀚海鸿蓝卓越智慧明阳光茂森金银万众宝利夏洲裕禾立方圆本同佳誉尚品"
        "优美锐云峰君悦荣鹏弘毅聚翔图伟业永和顺福泽骏驰"
    )
)

# Enterprise types as written in the registry, with their share and a name-suffix style.
# suffix styles: company, joint_stock, sole, partnership, branch
ENTERPRISE_TYPES: tuple[tuple[str, float, str], ...] = (
    ("有限责任公司（自然人独资）", 0.36, "company"),
    ("有限责任公司（自然人投资或控股）", 0.40, "company"),
    ("有限责任公司（非自然人投资或控股的法人独资）", 0.05, "company"),
    ("股份有限公司（非上市、自然人投资或控股）", 0.03, "joint_stock"),
    ("个人独资企业", 0.08, "sole"),
    ("普通合伙企业", 0.02, "partnership"),
    ("有限责任公司分公司（自然人投资或控股）", 0.06, "branch"),
)

REGISTRY_STATUS: tuple[str, ...] = ("存续", "吊销", "注销")


@dataclass(frozen=True)
class Industry:
    """A GB/T 4754-2017 industry class with an illustrative economic profile."""

    section: str
    code: str
    name: str
    words: tuple[str, ...]  # business words used in enterprise names
    weight: float  # share of enterprises
    revenue: float  # median monthly sales revenue, yuan
    wage: float  # median monthly social-insurance base, yuan
    electricity: float  # median monthly kWh
    water: float  # median monthly m3
    gas: float  # median monthly m3
    capital: float  # median registered capital, 10k yuan (万元)
    vat_rate: float  # statutory VAT rate for a general taxpayer
    margin: float  # pre-tax profit margin
    season: str  # key of SEASONS


# fmt: off
INDUSTRIES: tuple[Industry, ...] = (
    Industry("A", "0141", "蔬菜种植", ("农业开发", "种植", "农业科技"), 0.015,
             90_000, 4_200, 1_500, 400, 10, 100, 0.09, 0.08, "agri"),
    Industry("A", "0311", "牛的饲养", ("养殖", "牧业"), 0.008,
             150_000, 4_200, 4_000, 900, 30, 200, 0.09, 0.07, "agri"),
    Industry("C", "1331", "食用植物油加工", ("粮油", "油脂"), 0.006,
             900_000, 5_000, 60_000, 3_000, 2_500, 500, 0.13, 0.05, "flat"),
    Industry("C", "1432", "速冻食品制造", ("食品", "速冻食品"), 0.01,
             800_000, 5_200, 80_000, 4_000, 3_000, 500, 0.13, 0.06, "retail"),
    Industry("C", "1810", "机织服装制造", ("服饰", "制衣"), 0.01,
             350_000, 4_600, 25_000, 800, 300, 200, 0.13, 0.05, "flat"),
    Industry("C", "2927", "日用塑料制品制造", ("塑料制品", "塑业"), 0.01,
             450_000, 4_800, 60_000, 900, 200, 300, 0.13, 0.06, "flat"),
    Industry("C", "3311", "金属结构制造", ("钢结构", "金属制品"), 0.012,
             700_000, 5_400, 90_000, 1_200, 800, 500, 0.13, 0.06, "construction"),
    Industry("C", "3484", "机械零部件加工", ("机械制造", "机械设备"), 0.015,
             600_000, 5_600, 70_000, 900, 500, 500, 0.13, 0.07, "flat"),
    Industry("C", "3670", "汽车零部件及配件制造", ("汽车配件", "汽车零部件"), 0.008,
             1_200_000, 6_000, 120_000, 1_500, 1_000, 1_000, 0.13, 0.06, "flat"),
    Industry("D", "4430", "热力生产和供应", ("热力", "能源"), 0.002,
             2_000_000, 6_500, 200_000, 20_000, 80_000, 3_000, 0.09, 0.05, "heating"),
    Industry("E", "4710", "住宅房屋建筑", ("建筑工程", "建设工程"), 0.03,
             1_500_000, 5_200, 15_000, 2_500, 100, 2_000, 0.09, 0.05, "construction"),
    Industry("E", "4910", "电气安装", ("电气工程", "机电安装"), 0.015,
             500_000, 5_400, 4_000, 300, 50, 500, 0.09, 0.07, "construction"),
    Industry("E", "5011", "公共建筑装饰和装修", ("装饰工程", "建筑装饰"), 0.035,
             400_000, 5_000, 3_000, 200, 30, 300, 0.09, 0.08, "construction"),
    Industry("F", "5165", "建材批发", ("建材", "建筑材料"), 0.04,
             600_000, 4_500, 3_000, 150, 20, 200, 0.13, 0.04, "construction"),
    Industry("F", "5174", "五金产品批发", ("五金", "五金机电"), 0.03,
             400_000, 4_400, 2_500, 120, 20, 100, 0.13, 0.04, "flat"),
    Industry("F", "5176", "计算机、软件及辅助设备批发", ("电子科技", "数码科技"), 0.03,
             500_000, 5_200, 2_500, 100, 10, 100, 0.13, 0.04, "retail"),
    Industry("F", "5199", "其他未列明批发业", ("商贸", "贸易", "供应链管理"), 0.09,
             450_000, 4_400, 2_000, 100, 10, 100, 0.13, 0.03, "retail"),
    Industry("F", "5211", "百货零售", ("百货", "商业管理"), 0.03,
             300_000, 4_200, 8_000, 300, 50, 50, 0.13, 0.03, "retail"),
    Industry("F", "5212", "超级市场零售", ("超市", "便利店"), 0.025,
             350_000, 4_200, 12_000, 250, 30, 50, 0.13, 0.03, "retail"),
    Industry("F", "5261", "汽车新车零售", ("汽车销售", "汽车服务"), 0.012,
             2_500_000, 5_000, 10_000, 300, 60, 1_000, 0.13, 0.02, "retail"),
    Industry("F", "5292", "互联网零售", ("电子商务", "网络科技"), 0.04,
             250_000, 4_500, 1_500, 60, 5, 100, 0.13, 0.04, "retail"),
    Industry("G", "5431", "普通货物道路运输", ("物流", "运输"), 0.03,
             350_000, 4_800, 3_000, 200, 20, 200, 0.09, 0.05, "flat"),
    Industry("G", "5821", "货物运输代理", ("供应链", "国际货运代理"), 0.012,
             400_000, 5_000, 2_000, 80, 10, 200, 0.06, 0.05, "flat"),
    Industry("H", "6110", "旅游饭店", ("酒店管理", "宾馆"), 0.01,
             300_000, 4_200, 40_000, 3_000, 3_000, 300, 0.06, 0.06, "catering"),
    Industry("H", "6210", "正餐服务", ("餐饮管理", "餐饮服务"), 0.045,
             180_000, 4_000, 8_000, 800, 1_500, 50, 0.06, 0.07, "catering"),
    Industry("H", "6220", "快餐服务", ("餐饮", "快餐"), 0.03,
             120_000, 3_900, 5_000, 500, 900, 30, 0.06, 0.07, "catering"),
    Industry("I", "6513", "应用软件开发", ("软件科技", "信息技术"), 0.04,
             350_000, 8_500, 3_000, 100, 10, 200, 0.06, 0.12, "flat"),
    Industry("I", "6531", "信息系统集成服务", ("智能科技", "信息系统"), 0.025,
             400_000, 8_000, 2_500, 80, 10, 300, 0.06, 0.1, "construction"),
    Industry("I", "6560", "信息技术咨询服务", ("网络科技", "数据科技"), 0.025,
             200_000, 7_500, 1_500, 60, 5, 100, 0.06, 0.12, "flat"),
    Industry("K", "7010", "房地产开发经营", ("置业", "房地产开发"), 0.015,
             3_000_000, 6_500, 10_000, 1_000, 100, 5_000, 0.09, 0.1, "flat"),
    Industry("K", "7020", "物业管理", ("物业服务", "物业管理"), 0.03,
             250_000, 4_000, 20_000, 2_000, 50, 100, 0.06, 0.05, "flat"),
    Industry("K", "7040", "房地产中介服务", ("房产经纪", "置业顾问"), 0.015,
             100_000, 4_200, 1_500, 60, 5, 50, 0.06, 0.08, "flat"),
    Industry("L", "7212", "投资与资产管理", ("投资管理", "资产管理"), 0.02,
             150_000, 7_000, 1_200, 50, 5, 1_000, 0.06, 0.15, "flat"),
    Industry("L", "7259", "其他广告服务", ("广告传媒", "文化传媒"), 0.04,
             150_000, 5_000, 1_200, 50, 5, 100, 0.06, 0.08, "retail"),
    Industry("L", "7263", "劳务派遣服务", ("劳务服务", "人力资源"), 0.03,
             300_000, 4_000, 1_000, 50, 5, 200, 0.06, 0.03, "flat"),
    Industry("M", "7516", "环保技术推广服务", ("环保科技", "环境工程"), 0.02,
             200_000, 6_000, 2_000, 150, 10, 300, 0.06, 0.09, "flat"),
    Industry("M", "7519", "其他技术推广服务", ("科技", "技术服务"), 0.05,
             150_000, 6_000, 1_500, 60, 5, 100, 0.06, 0.1, "flat"),
    Industry("N", "7820", "环境卫生管理", ("环境服务", "保洁服务"), 0.01,
             200_000, 3_900, 2_000, 500, 20, 100, 0.06, 0.05, "flat"),
    Industry("O", "8040", "理发及美容服务", ("美容美发", "美业"), 0.025,
             60_000, 3_900, 2_500, 200, 30, 10, 0.06, 0.1, "retail"),
    Industry("O", "8111", "汽车修理与维护", ("汽车维修", "汽车服务"), 0.02,
             120_000, 4_500, 4_000, 200, 30, 50, 0.13, 0.08, "flat"),
    Industry("P", "8391", "职业技能培训", ("教育咨询", "职业培训"), 0.015,
             100_000, 4_800, 2_000, 150, 10, 50, 0.06, 0.1, "school"),
    Industry("P", "8393", "文化艺术培训", ("文化艺术", "教育科技"), 0.02,
             80_000, 4_500, 1_800, 120, 10, 30, 0.06, 0.1, "school"),
    Industry("Q", "8425", "门诊部（所）", ("医疗管理", "门诊部"), 0.01,
             150_000, 5_500, 5_000, 400, 30, 100, 0.06, 0.1, "flat"),
    Industry("R", "8930", "健身休闲活动", ("体育发展", "健身"), 0.01,
             80_000, 4_200, 6_000, 600, 100, 50, 0.06, 0.08, "school"),
)
# fmt: on

# Monthly multipliers, January first.
SEASONS: dict[str, tuple[float, ...]] = {
    "flat": (0.92, 0.80, 1.00, 1.00, 1.00, 1.02, 1.00, 0.98, 1.02, 1.02, 1.04, 1.20),
    "retail": (1.25, 1.10, 0.90, 0.90, 0.95, 1.00, 0.92, 0.92, 0.98, 1.05, 1.15, 1.30),
    "construction": (0.55, 0.45, 0.90, 1.05, 1.10, 1.10, 1.00, 1.00, 1.10, 1.15, 1.20, 1.40),
    "catering": (1.30, 1.15, 0.90, 0.95, 1.00, 0.95, 1.00, 1.00, 0.95, 1.10, 0.90, 1.05),
    "agri": (0.60, 0.50, 0.70, 0.90, 1.20, 1.50, 1.00, 0.90, 1.30, 1.50, 1.00, 0.80),
    "heating": (2.00, 1.80, 1.20, 0.60, 0.40, 0.40, 0.40, 0.40, 0.40, 0.60, 1.30, 1.90),
    "school": (0.70, 0.90, 1.00, 1.00, 1.00, 0.90, 1.40, 1.40, 1.00, 0.90, 0.90, 0.80),
}
# Weather-driven multipliers for utility use, January first.
ELECTRICITY_SEASON: tuple[float, ...] = (
    1.15,
    1.00,
    0.95,
    0.90,
    0.95,
    1.10,
    1.30,
    1.30,
    1.00,
    0.90,
    0.95,
    1.10,
)
WATER_SEASON: tuple[float, ...] = (
    0.85,
    0.80,
    0.90,
    0.95,
    1.05,
    1.15,
    1.25,
    1.25,
    1.05,
    0.95,
    0.90,
    0.85,
)
GAS_SEASON: tuple[float, ...] = (
    1.90,
    1.70,
    1.30,
    0.80,
    0.60,
    0.55,
    0.50,
    0.50,
    0.60,
    0.80,
    1.30,
    1.80,
)

# --- Courts and credit ---------------------------------------------------------------------

CIVIL_CAUSES: tuple[str, ...] = (
    "买卖合同纠纷",
    "借款合同纠纷",
    "民间借贷纠纷",
    "房屋租赁合同纠纷",
    "劳动争议",
    "建设工程施工合同纠纷",
    "服务合同纠纷",
    "承揽合同纠纷",
    "金融借款合同纠纷",
    "运输合同纠纷",
)
PENALTY_REASONS: tuple[str, ...] = (
    "未按规定明码标价",
    "销售不合格产品",
    "虚假宣传",
    "未取得许可从事经营活动",
    "违反消防安全管理规定",
    "超范围经营",
    "未按规定公示即时信息",
    "使用未经检验的特种设备",
    "违反食品安全管理规定",
)
ABNORMAL_REASONS: tuple[str, ...] = (
    "未按规定报送年度报告",
    "通过登记的住所或者经营场所无法联系",
    "未按规定公示即时信息",
)
TAX_VIOLATION_REASONS: tuple[str, ...] = ("欠缴税款且逃避追缴", "虚开增值税专用发票", "偷税")

# Prefixes of UnionPay debit cards issued by large banks (public bank identification numbers).
UNIONPAY_BINS: tuple[str, ...] = (
    "621226",
    "622848",
    "621700",
    "622202",
    "621661",
    "622700",
    "623668",
    "621483",
    "622588",
)
# Mobile number segments (the first three digits) of the three carriers.
MOBILE_PREFIXES: tuple[str, ...] = (
    "130",
    "131",
    "132",
    "133",
    "134",
    "135",
    "136",
    "137",
    "138",
    "139",
    "150",
    "151",
    "152",
    "153",
    "155",
    "156",
    "157",
    "158",
    "159",
    "166",
    "170",
    "173",
    "175",
    "176",
    "177",
    "178",
    "180",
    "181",
    "182",
    "183",
    "184",
    "185",
    "186",
    "187",
    "188",
    "189",
    "191",
    "198",
    "199",
)
