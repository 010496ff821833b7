"""The data `make bench-search` searches (bench/search.py): a seeded generator, no Django.

People, rooms and message bodies in a mix of English and Chinese, from small vocabularies, so
the same seed always gives the same million messages. A few rare terms are planted at known
rates; every query of QUERIES is counted while the bodies are made (case-insensitively), per
room, so each search's expected result is known without asking the database.

Change anything that changes the data (the vocabularies, the rates, the rooms, QUERIES) and bump
GENERATOR_VERSION: the cached databases (var/bench-search/) are keyed by it.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

GENERATOR_VERSION = 1
SEED = 1717

SEARCHER = "reader"  # the user who searches: a member of some private rooms and conversations
SEARCHER_PASSWORD = "chatdemo"  # to sign in over HTTP (the other users have no usable password)
USERS = 400  # besides the searcher: bench-0000 ...
BIG_ROOM = "general"  # the room of the "with a room filter" case: the busiest the searcher reads

# Planted: (term, messages per million). Nothing in the vocabularies contains these.
PLANTED = {"鸭嘴兽": 20, "琥珀": 50, "zanzibarite": 10}
# The query mix: (name, q). Counted in every generated body, so results can be checked.
QUERIES = [
    ("zh2 common", "会议"),
    ("zh2 rare", "琥珀"),
    ("zh3 common", "服务器"),
    ("zh3 rare", "鸭嘴兽"),
    ("zh4 phrase", "发布计划"),
    ("en word", "deploy"),
    ("en word, other case", "Kubernetes"),
    ("en substring", "ploym"),
    ("en rare word", "zanzibarite"),
    ("en rare substring", "ibari"),
    ("en 2 letters", "qa"),
    ("mixed", "API 文档"),
    ("nothing", "琉璃猫"),
]

_ZH_WHEN = ["明天", "今天下午", "周五", "下周一", "刚才", "晚上八点", "月底前", "上午", ""]
_ZH_WHO = ["我们", "产品组", "运维", "小王", "大家", "测试团队", "老李", "设计师", "客户", "张经理"]
_ZH_WHAT = [
    "的会议改到三点",
    "要检查服务器日志",
    "在讨论新版本的发布计划",
    "已经把文档更新了",
    "说数据库备份失败了",
    "需要重启服务器",
    "请大家准时参加周会",
    "把测试环境部署好了",
    "觉得这个方案不太好",
    "还在排查内存泄漏",
    "订了会议室",
    "提交了新的需求",
    "发现登录页面有问题",
    "整理了一下会议纪要",
    "要去机场接客户",
    "在准备季度报告",
    "修好了那个缓存的问题",
    "问午饭吃什么",
    "更新了接口文档",
    "把监控告警调低了",
]
_ZH_TAIL = ["。", "！", "，有问题随时说。", "，谢谢！", "吗？", "，辛苦了。", "。收到请回复", ""]
_ZH_SHORT = ["好的", "收到", "谢谢", "没问题", "稍等", "我看一下", "同意", "哈哈", "辛苦了", "明白"]
_MIXED = [
    "PR #{n} 已合并，请更新本地分支",
    "API 文档在 wiki 上，版本 v{n}",
    "CI 又挂了，看一下 build {n}",
    "kubernetes 集群的节点 {n} 重启了",
    "deploy 到 staging 之后再测一下",
    "bug #{n} 复现不了",
]
_EN_OPEN = ["", "Hey, ", "FYI ", "Quick question: ", "Heads up: ", "Sorry, ", "OK so ", "Update: "]
_EN_SENT = [
    "the deploy to staging finished",
    "can someone review the deployment script",
    "the database migration is still running",
    "Kubernetes restarted the worker pods again",
    "lunch is at noon today",
    "the new employee starts on Monday",
    "I moved the meeting to three o'clock",
    "the release notes are in the wiki",
    "tests are green on main",
    "who broke the build",
    "the cache hit rate dropped after the upgrade",
    "please check the error logs on the api server",
    "the customer asked about the invoice",
    "employment contracts are in the shared folder",
    "I'll be out of office tomorrow",
    "the load balancer config needs a review",
    "our QA pass found two regressions",
    "metrics look normal now",
    "the backup job failed last night",
    "let's pair on the search feature",
    "the kubernetes dashboard is slow",
    "the redeploy fixed it",
]
_EN_TAIL = [".", "!", "?", " :)", " thanks.", ", see the ticket.", " before Friday.", " in {n} minutes.", ""]
_EN_SHORT = ["ok", "thanks!", "lgtm", "+1", "on it", "brb", "sounds good", "done", "agreed", "ship it"]


@dataclass
class RoomSpec:
    slug: str
    name: str
    private: bool = False
    direct: bool = False
    archived: bool = False
    members: list[int] = field(default_factory=list)  # user indexes (0 = the searcher) invited
    banned: list[int] = field(default_factory=list)
    messages: int = 0  # filled by the generator: its last seq

    @property
    def searcher_reads(self) -> bool:
        return not self.archived and (not self.private or 0 in self.members) and 0 not in self.banned


@dataclass
class World:
    usernames: list[str]
    rooms: list[RoomSpec]


def _scale(per_million: int, messages: int) -> int:
    return max(1, round(per_million * messages / 1_000_000))


def world(rng: random.Random) -> World:
    """~200 rooms: 150 public (the first is BIG_ROOM, one the searcher is banned from), 30 private
    (the searcher invited to 10), 10 direct conversations (the searcher in 5), 10 archived."""
    usernames = [SEARCHER] + [f"bench-{i:04d}" for i in range(USERS)]
    rooms: list[RoomSpec] = [RoomSpec(BIG_ROOM, "General")]
    rooms += [RoomSpec(f"room-{i:03d}", f"Room {i}") for i in range(1, 150)]
    rooms[7].banned = [0]  # the searcher was banned from one public room
    for i in range(30):
        members = rng.sample(range(1, USERS + 1), 12) + ([0] if i < 10 else [])
        rooms.append(RoomSpec(f"private-{i:02d}", f"Private {i}", private=True, members=members))
    for i in range(10):
        other = rng.randrange(1, USERS + 1)
        members = [0, other] if i < 5 else rng.sample(range(1, USERS + 1), 2)
        rooms.append(RoomSpec(f"dm-bench{i:04d}", "", private=True, direct=True, members=members))
    for i in range(10):
        rooms.append(RoomSpec(f"archived-{i:02d}", f"Archived {i}", archived=True))
    return World(usernames, rooms)


def _body(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.35:
        return rng.choice(_ZH_WHEN) + rng.choice(_ZH_WHO) + rng.choice(_ZH_WHAT) + rng.choice(_ZH_TAIL)
    if kind < 0.45:
        return rng.choice(_ZH_SHORT)
    if kind < 0.55:
        return rng.choice(_MIXED).format(n=rng.randrange(1, 2000))
    if kind < 0.9:
        text = rng.choice(_EN_OPEN) + rng.choice(_EN_SENT) + rng.choice(_EN_TAIL).format(n=rng.randrange(2, 60))
        if rng.random() < 0.3:
            text += " " + rng.choice(_EN_SENT).capitalize() + "."
        return text
    return rng.choice(_EN_SHORT)


def messages(spec: World, count: int, rng: random.Random):
    """Yield (room index, author index, body, deleted) for `count` messages, oldest first. Rooms
    are busy by a Zipf-like law (BIG_ROOM the busiest); about 1 in 200 messages is deleted."""
    order = list(range(1, len(spec.rooms)))
    rng.shuffle(order)
    weights = [0.0] * len(spec.rooms)
    for rank, index in enumerate([0, *order]):
        weights[index] = 1 / (rank + 1) ** 0.9
    rooms = rng.choices(range(len(spec.rooms)), weights=weights, k=count)
    planted: dict[int, str] = {}
    for term, per_million in PLANTED.items():
        for position in rng.sample(range(count), _scale(per_million, count)):
            planted[position] = term  # a later term may take an earlier one's place: counted as made
    for i, room_index in enumerate(rooms):
        room = spec.rooms[room_index]
        author = rng.choice(room.members) if room.private else rng.randrange(len(spec.usernames))
        body = _body(rng)
        if i in planted:
            body = f"{body} {planted[i]}" if rng.random() < 0.5 else f"{planted[i]}{body}"
        yield room_index, author, body, rng.random() < 0.005


class Counts:
    """How many messages (not deleted) match each query, per room."""

    def __init__(self) -> None:
        self.per_query: dict[str, Counter[int]] = {q: Counter() for _, q in QUERIES}
        self.folded = [(q, q.casefold()) for _, q in QUERIES]

    def add(self, room_index: int, body: str, deleted: bool) -> None:
        if deleted:
            return
        text = body.casefold()
        for q, folded in self.folded:
            if folded in text:
                self.per_query[q][room_index] += 1
