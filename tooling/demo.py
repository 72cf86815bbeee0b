"""``devconnect demo``: a small world to explore, seeded into the configured stores.

About 200 developers in a handful of cities, a few hundred connections, pending
requests to the two demo logins, conversations with read and unread messages and
one pro member; the content is a pure function of ``--seed``. Written as the
product writes it (as ``loadtest/daytwo.py`` seeds): profiles and requests in bulk
in the shape ``domain.accounts`` and ``domain.connections`` leave them, with one
argon2 hash shared by every demo account; messages through chatd's writer
(``MessageStore``, ``Inbox``: stream positions, summaries, unread counters) and
its read path; the membership by the payments service's own transition of an
order to COMPLETED and its grant. Demo accounts are those on ``DEMO_DOMAIN``; the
second login is written last, so it marks a complete seed: a second run changes
nothing, ``--reset`` (or an interrupted seed) removes them and all that is theirs.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import re
import sys
import time
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bson import ObjectId

from core.cli import SETTINGS_EPILOG
from core.embedded import ProcessRecord
from core.ids import conversation_id, pair_key
from core.mongo import Doc
from core.runtime import Stores
from core.settings import Settings

DEMO_DOMAIN = "demo.devconnect.example"  # RFC 6761 "example": never a real mailbox
DEMO_PASSWORD = "devconnect-demo"
DEFAULT_SEED = 18  # issue #18, "the first hour"
DEFAULT_USERS = 200
MIN_USERS = 30
PLAN_PREFERENCE = ("pro-yearly", "pro-monthly")  # the longest: it outlasts the demo
LOGINS = (0, 1)  # people[0] is the pro member; people[1] is written last
REFUSE_PRODUCTION = (
    "refusing to run with DEVCONNECT_ENV=production: demo accounts share a published password"
)


# -- what the world is made of ------------------------------------------------------------
# Lists are written as "|"-separated text (``_words``): 200 people need long lists.
def _words(text: str) -> list[str]:
    return [word.strip() for word in text.split("|")]


FIRST = _words(
    "Ada|Ben|Chen|Divya|Emeka|Farah|Gabriel|Hana|Ivan|Jia|Kofi|Lena|Mateo|Nadia|Oscar|\
Priya|Quinn|Rosa|Sanjay|Tomás|Uma|Viktor|Wen|Ximena|Yusuf|Zara|Aarav|Bea|Carlos|Dana|Elif|Finn|\
Grace|Hiro|Ines|Jonas|Kavya|Liam|Maya|Noah"
)
LAST = _words(
    "Okafor|Carter|Wei|Nair|Mensah|Haddad|Silva|Kim|Petrov|Zhang|Owusu|Fischer|Rossi|\
Rahman|Lindqvist|Iyer|Murphy|García|Reddy|Novak|Tanaka|Schmidt|Adeyemi|Dubois|Kowalski|Costa|\
Sato|Müller|Hernández|Ito|Ahmed|Berg|Cohen|Das|Eriksen|Fernandes|Gupta|Hughes|Jansen|Kaur"
)
CITIES = _words(
    "Berlin, Germany|Bengaluru, India|London, UK|San Francisco, USA|\
Toronto, Canada|Lagos, Nigeria"
)
COMPANIES = _words(
    "Lumen Labs|Northwind|Quanta Pay|Hexagon Health|Orbital|Fernway|Brightline|\
Kite Robotics|Tidepool Data|Mosaic|Cobalt Systems|Sprocket|Parcel|a stealth startup"
)
# track: (titles, skills); skills case-folded, as domain.models.normalize_skills stores them.
TRACKS = {
    "backend": ("Backend engineer|Senior backend engineer|Platform engineer|API engineer",
                "python|go|postgresql|redis|kafka|docker|grpc|django|fastapi|java"),
    "frontend": ("Frontend engineer|UI engineer|Senior frontend developer|Design engineer",
                 "typescript|javascript|react|next.js|css|vue|svelte|graphql|vite"),
    "mobile": ("Android developer|iOS engineer|Mobile engineer",
               "kotlin|swift|android|ios|flutter|dart|swiftui|react native"),
    "data": ("Data engineer|ML engineer|Data scientist|Analytics engineer",
             "python|sql|pandas|pytorch|spark|airflow|dbt|scikit-learn|numpy"),
    "infra": ("Site reliability engineer|DevOps engineer|Cloud engineer",
              "kubernetes|terraform|aws|gcp|prometheus|grafana|linux|ansible|docker|go"),
    "systems": ("Systems programmer|Embedded engineer|Compiler engineer|Database engineer",
                "rust|c++|c|linux|webassembly|llvm|zig|postgresql"),
    "fullstack": ("Full-stack developer|Software engineer|Founding engineer",
                  "typescript|node.js|react|postgresql|python|docker|graphql|ruby on rails"),
}  # fmt: skip
TOPICS = _words(
    "observability|developer experience|accessibility|performance|type safety|\
testing|open source|distributed systems|data quality|security"
)
BIOS = _words(
    "I build things with {skill} and {other}, and care a lot about {topic}.|\
{topic} nerd. Mostly {skill} these days; slowly learning {other}.|Shipping {skill} in \
production since before it was cool. I co-run the {city} {skill} meetup.|Into {topic} and good \
docs. Happy to review your {other} code or talk about {skill}.|Curious about everything from \
{skill} to {topic}. Open to mentoring and side projects."
)
# A chat: its lines, the two people taking turns, the first one starting.
SCRIPTS = (
    "Hey! Saw you're into {skill} too. How are you finding it?|Loving it so far. The tooling \
got so much better this year.|Same here. Any talks you'd recommend?|A couple from last \
year's conference, I'll dig out the links.",
    "Are you going to the {city} meetup next week?|Planning to! Are you speaking?|A lightning \
talk on {skill}, ten minutes of live coding.|Brave. See you there 🙌",
    "Thanks for reviewing my PR yesterday.|Happy to. The retry logic looked solid.|Want to pair \
on that flaky test on Friday?",
    "We're hiring and I thought of you. Interested in a chat?|Thanks! What's the stack?|Mostly \
{skill} and {other}, remote-friendly, small team.|Sounds interesting. Send me the details?",
    "I'm starting a small {skill} side project. Want to collaborate?|What's it about?|A CLI that \
turns incident timelines into postmortem drafts.|Ha, I need that at work. Count me in.",
    "Quick question: how do you structure your {skill} projects?|Feature folders, small \
modules, tests next to the code.|Makes sense, thanks!",
)
FOLLOW_UPS = ("Also, are you free for a call this week?", "PS: the {skill} docs got a rewrite.")
REQUEST_NOTES = _words(
    "Hi {name}, loved your post on {skill}. Let's connect!|We met at \
the {city} meetup, great chatting about {skill}.|Fellow {skill} fan here 👋|"
)


@dataclass
class Person:
    name: str
    email: str
    headline: str
    bio: str
    skills: list[str]
    location: str
    joined_days_ago: float
    seen_days_ago: float
    id: str = field(default_factory=lambda: str(ObjectId()))


@dataclass
class Chat:
    a: int
    b: int
    lines: list[tuple[int, str]]  # (sender's index in people, text)
    unread_by: int | None = None  # has not read what came after their own last line


@dataclass
class World:
    people: list[Person]
    accepted: list[tuple[int, int, float]] = field(default_factory=list)  # from, to, days ago
    pending: list[tuple[int, int, float, str]] = field(default_factory=list)  # + days ago, note
    chats: list[Chat] = field(default_factory=list)


def demo_email(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return ".".join(ascii_name.lower().split()) + "@" + DEMO_DOMAIN


def _person(rng: random.Random, name: str) -> Person:
    titles, pool = (_words(text) for text in TRACKS[rng.choice(sorted(TRACKS))])
    skills = rng.sample(pool, rng.randint(3, 6))
    location = rng.choice(CITIES)
    bio = rng.choice(BIOS).format(
        skill=skills[0], other=skills[1], topic=rng.choice(TOPICS), city=location.split(",")[0]
    )
    joined = rng.uniform(1, 20) if rng.random() < 0.1 else rng.uniform(20, 700)
    headline = f"{rng.choice(titles)} at {rng.choice(COMPANIES)}"
    seen = rng.uniform(0, 9)
    return Person(name, demo_email(name), headline, bio, skills, location, joined, seen)


def _logins() -> list[Person]:
    return [
        Person("Ada Okafor", demo_email("Ada Okafor"), "Backend engineer at Lumen Labs",
               "Go and Python on the backend, Postgres underneath. I care a lot about "
               "observability; ask me about tracing.",
               ["python", "go", "postgresql", "redis", "kubernetes"], CITIES[0], 400, 0),
        Person("Ben Carter", demo_email("Ben Carter"), "Frontend engineer at Northwind",
               "React and TypeScript all day, accessibility always. Mentoring at the London "
               "frontend meetup.", ["typescript", "react", "graphql", "css", "node.js"],
               CITIES[2], 150, 0.5),
    ]  # fmt: skip


def _affinity(a: Person, b: Person) -> float:
    return 1 + 3 * (a.location == b.location) + 2 * len(set(a.skills) & set(b.skills))


def _connect(rng: random.Random, world: World) -> set[tuple[int, int]]:
    """Accepted connections, mostly between people of one city or with skills in common."""
    people, pairs = world.people, set[tuple[int, int]]()
    others = range(len(LOGINS), len(people))

    def add(i: int, j: int) -> None:
        if i != j and (min(i, j), max(i, j)) not in pairs:
            pairs.add((min(i, j), max(i, j)))
            days = rng.uniform(0.2, min(people[i].joined_days_ago, people[j].joined_days_ago))
            world.accepted.append((i, j, days) if rng.random() < 0.5 else (j, i, days))

    for i in itertools.chain(others, *(itertools.repeat(login, 12) for login in LOGINS)):
        picks = 1 if i in LOGINS else rng.choice((1, 2, 2, 3, 3, 4))
        candidates = rng.sample(others, 25)
        weights = [_affinity(people[i], people[j]) ** 2 for j in candidates]
        for j in rng.choices(candidates, weights, k=picks):
            add(i, j)
    add(*LOGINS)  # the two logins can chat with each other
    return pairs


def _chat(rng: random.Random, world: World, a: int, b: int, unread_by: int | None) -> Chat:
    pa, pb = world.people[a], world.people[b]
    shared = [s for s in pa.skills if s in pb.skills] or pa.skills
    fill = {"skill": shared[0], "other": pb.skills[-1], "city": pa.location.split(",")[0]}
    script = _words(rng.choice(SCRIPTS))
    roles = (a, b)
    if unread_by is not None:  # the last line must be the other one's, unread
        other = b if unread_by == a else a
        roles = (unread_by, other) if len(script) % 2 == 0 else (other, unread_by)
    lines = [(roles[n % 2], text.format(**fill)) for n, text in enumerate(script)]
    if unread_by is not None:
        lines.append((lines[-1][0], rng.choice(FOLLOW_UPS).format(**fill)))
    return Chat(a, b, lines, unread_by)


def plan_world(seed: int, users: int) -> World:
    """The whole world as data, the same for the same seed and size (ids aside)."""
    rng = random.Random(seed)
    logins = _logins()
    names = sorted({f"{f} {s}" for f in FIRST for s in LAST} - {p.name for p in logins})
    world = World(logins + [_person(rng, n) for n in rng.sample(names, users - len(logins))])
    pairs = _connect(rng, world)
    linked = {i: {j for p in pairs if i in p for j in p if j != i} for i in LOGINS}
    for login, incoming in zip(LOGINS, (5, 4), strict=True):
        strangers = [j for j in range(len(LOGINS), users) if j not in linked[login]]
        for j in rng.sample(strangers, incoming):
            host, note = world.people[login], rng.choice(REQUEST_NOTES)
            days = rng.uniform(0, min(7, world.people[j].joined_days_ago))
            first, city = host.name.split()[0], host.location.split(",")[0]
            world.pending.append(
                (j, login, days, note.format(name=first, skill=host.skills[0], city=city))
            )
    asked = {p[0] for p in world.pending}
    sent_to = next(j for j in range(len(LOGINS), users) if j not in linked[0] | asked)
    world.pending.append((LOGINS[0], sent_to, 0.5, "Hi! Would love to swap notes on Postgres."))
    ada, ben = LOGINS
    world.chats.append(_chat(rng, world, ada, ben, unread_by=ben))
    for login, unread, read in ((ada, 3, 3), (ben, 2, 1)):
        partners = sorted(linked[login] - set(LOGINS))[: unread + read]
        for n, partner in enumerate(partners):
            world.chats.append(_chat(rng, world, login, partner, login if n < unread else None))
    among_others = [p for p in sorted(pairs) if not set(p) & set(LOGINS)]
    for a, b in rng.sample(among_others, min(30, len(among_others))):
        world.chats.append(_chat(rng, world, a, b, rng.choice((None, a, b))))
    return world


# -- writing it, with the product's writers ----------------------------------------------
def _user_doc(person: Person, password_hash: str, now: datetime) -> Doc:
    handle = person.email.split("@")[0].replace(".", "")
    # The fields domain.accounts.signup writes, filled in as profile edits would.
    return {
        "_id": ObjectId(person.id), "name": person.name, "email": person.email,
        "passwordHash": password_hash, "skills": person.skills, "headline": person.headline,
        "location": person.location, "bio": person.bio, "avatarUrl": None,
        "links": [f"https://github.com/{handle}"], "prefs": {}, "prefsVersion": 0,
        "createdAt": now - timedelta(days=person.joined_days_ago),
        "lastSeen": now - timedelta(days=person.seen_days_ago),
    }  # fmt: skip


def _request_docs(world: World, now: datetime) -> list[Doc]:
    """As domain.connections.create_request (and answer_request, for accepted) leave them."""
    ids = [p.id for p in world.people]
    rows = [("accepted", *row, "") for row in world.accepted]
    rows += [("pending", *row) for row in world.pending]
    docs: list[Doc] = []
    for status, frm, to, days, note in rows:
        created = now - timedelta(days=days)
        answered = created + timedelta(hours=5) if status == "accepted" else created
        docs.append({
            "fromUserId": ids[frm], "toUserId": ids[to], "status": status, "message": note,
            "createdAt": created, "updatedAt": min(answered, now),
            "pairKey": pair_key(ids[frm], ids[to]),
        })  # fmt: skip
    return docs


async def _write_chats(stores: Stores, world: World) -> int:
    """Every chat through chatd's group commit and inbox, then each reader's read receipt."""
    from chatd.inbox import Inbox
    from chatd.store import MessageStore

    inbox = Inbox(stores.db)
    store = MessageStore(stores.db, inbox, min_interval_s=0.0)
    inbox.start()
    store.start()
    temp_ids = itertools.count(1)
    ids = [p.id for p in world.people]

    async def send(chat: Chat) -> list[tuple[int, ObjectId]]:
        sent = []
        for sender, text in chat.lines:  # one at a time: the conversation keeps its order
            to = chat.b if sender == chat.a else chat.a
            temp = f"demo-{next(temp_ids)}"
            stored = await store.submit(ids[sender], ids[to], temp, text, time.monotonic())
            sent.append((sender, ObjectId(stored.message_id)))
        return sent

    try:
        results = await asyncio.gather(*(send(chat) for chat in world.chats))
        await inbox.flushed()
        for chat, sent in zip(world.chats, results, strict=True):
            conv = conversation_id(ids[chat.a], ids[chat.b])
            for reader in (chat.a, chat.b):
                own = [mid for who, mid in sent if who == reader]
                up_to = (own[-1] if own else None) if reader == chat.unread_by else sent[-1][1]
                if up_to is not None:
                    await inbox.mark_read(ids[reader], conv, up_to)
    finally:
        await store.close()
        await inbox.close()
    return sum(len(sent) for sent in results)


async def _grant_pro(stores: Stores, user_id: str) -> str | None:
    """An order for the plan, settled COMPLETED through the service's one transition."""
    from core.metrics import CollectorRegistry
    from domain.payments.metrics import PaymentMetrics
    from domain.payments.service import COMPLETED, PaymentsService

    service = PaymentsService(
        stores.settings, stores.db, stores.redis, stores.keys, PaymentMetrics(CollectorRegistry())
    )
    plans = [p for p in (service.plans.get(i) for i in PLAN_PREFERENCE) if p] + list(service.plans)
    if not plans:
        return None
    order = service.new_order(user_id, plans[0])
    await service.payments.insert_one(order)
    payload = {"state": COMPLETED, "note": "seeded by devconnect demo"}
    await service.transition(order, COMPLETED, payload, "demo", provider_order_id=f"DEMO-{user_id}")
    return plans[0].id


async def seed(stores: Stores, world: World, now: datetime) -> str:
    from core.auth import PasswordHashing
    from core.mongo import CONNECTION_REQUESTS, USERS

    password_hash = PasswordHashing().hash(DEMO_PASSWORD)  # once, for all: argon2 is slow
    last = world.people[LOGINS[1]]
    first = [p for p in world.people if p is not last]
    await stores.db[USERS].insert_many([_user_doc(p, password_hash, now) for p in first])
    await stores.db[CONNECTION_REQUESTS].insert_many(_request_docs(world, now))
    messages = await _write_chats(stores, world)
    plan = await _grant_pro(stores, world.people[LOGINS[0]].id)
    await stores.db[USERS].insert_one(_user_doc(last, password_hash, now))  # complete
    return (
        f"{len(world.people)} developers, {len(world.accepted)} connections, "
        f"{len(world.pending)} pending requests, {len(world.chats)} conversations "
        f"({messages} messages), 1 pro member ({plan or 'no plan configured: none'})"
    )


async def remove_demo(stores: Stores) -> int:
    """Every demo account and what is theirs; returns how many accounts."""
    from core import migrations, mongo
    from domain.feed.service import FeedService

    db = stores.db
    demo = {"email": {"$regex": re.escape("@" + DEMO_DOMAIN) + "$"}}
    oids = [d["_id"] for d in await db[mongo.USERS].find(demo, {"_id": 1}).to_list()]
    if not oids:
        return 0
    ids = [str(oid) for oid in oids]
    # The completion mark goes first: a removal cut short reads as a seed cut short.
    await db[mongo.USERS].delete_one({"email": demo_email("Ben Carter")})
    outsiders: set[tuple[str, str]] = set()  # (someone else, demo user) who were related
    for mine, theirs in (("fromUserId", "toUserId"), ("toUserId", "fromUserId")):
        async for doc in db[mongo.CONNECTION_REQUESTS].find({mine: {"$in": ids}}):
            if doc[theirs] not in ids:
                outsiders.add((doc[theirs], doc[mine]))
    for collection, fields in (
        (mongo.CONNECTION_REQUESTS, ("fromUserId", "toUserId")),
        (mongo.MESSAGES, ("fromUserId", "toUserId")), (mongo.CONVERSATIONS, ("u0", "u1")),
        (mongo.BLOCKS, ("blockerId", "blockedId")), (mongo.UNREAD_COUNTS, ("_id",)),
        (mongo.READ_MARKS, ("userId",)), (mongo.PAYMENTS, ("userId",)),
        (mongo.REFRESH_TOKENS, ("userId",)), (mongo.FEED_EVENTS, ("userId",)),
    ):  # fmt: skip
        for name in fields:
            await db[collection].delete_many({name: {"$in": ids}})
    await db[mongo.USERS].delete_many({"_id": {"$in": oids}})
    # Cached profile cards and feeds would otherwise show the removed for a while.
    feed = FeedService(stores)
    for user in ids:
        await feed.profile_changed(user)
    for outsider, user in outsiders:
        await feed.relation_changed(outsider, user)
    if outsiders:  # their unread counters counted messages just removed
        await migrations.recount_unread(db)
    return len(oids)


# -- the command ------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="devconnect demo",
        description="Seed a small world to explore into the configured stores (by default "
        "the running `make run` stack): developers with profiles, connections, pending "
        "requests, conversations and one pro member; then print two logins to try. "
        "A second run changes nothing. Refused when DEVCONNECT_ENV=production.",
        epilog=SETTINGS_EPILOG,
    )
    add = parser.add_argument
    add("--seed", type=int, default=DEFAULT_SEED, help="random seed (default 18)")
    add("--users", type=int, default=DEFAULT_USERS, help=f"developers (default {DEFAULT_USERS})")
    add("--reset", action="store_true", help=f"remove the @{DEMO_DOMAIN} accounts, seed anew")
    return parser


def stack_settings(settings: Settings) -> Settings | str:
    """The settings with the running stack's stores filled in, or why there are none.

    ``devconnect up`` hands its embedded stores' URLs to its children only, but
    records each child's command line (port included) in ``var/up.json``."""
    state = Path(settings.var_dir) / "up.json"
    found: dict[str, object] = {}
    try:
        children = json.loads(state.read_text()).get("children", [])
    except (OSError, ValueError):
        children = []
    for doc in children:
        record = ProcessRecord.from_json(doc)
        if record.name in ("mongo", "redis") and "--port" in record.argv and record.is_alive():
            port = record.argv[record.argv.index("--port") + 1]
            if record.name == "mongo" and not settings.mongo_url:
                found["mongo_url"] = f"mongodb://127.0.0.1:{port}"
            if record.name == "redis" and not settings.redis_urls:
                found["redis_urls"] = [f"redis://127.0.0.1:{port}/0"]
    resolved = settings.model_copy(update=found) if found else settings
    if resolved.mongo_url and resolved.redis_urls:
        return resolved
    return (
        "no stores: start the stack with `make run` first, or set DEVCONNECT_MONGO_URL and "
        f"DEVCONNECT_REDIS_URLS (no running stack recorded in {state})"
    )


def app_url(settings: Settings) -> str:
    return (settings.public_web_url or f"http://127.0.0.1:{settings.restd_port}").rstrip("/") + "/"


async def _run(settings: Settings, world: World, reset: bool) -> str | None:
    """Seed unless a complete seed is there (or reset); what was seeded, None if nothing."""
    from core.mongo import USERS, ensure_indexes
    from core.runtime import open_stores

    # As chatd opens its client (chatd/app.py): the message writer runs on it.
    stores = open_stores(settings, retryWrites=False)
    try:
        await ensure_indexes(stores.db)  # the unique email index keeps a seed single
        last = world.people[LOGINS[1]].email
        if not reset and await stores.db[USERS].find_one({"email": last}, {"_id": 1}):
            return None
        removed = await remove_demo(stores)
        if removed:
            print(f"demo: removed {removed} earlier demo accounts and what was theirs", flush=True)
        return await seed(stores, world, datetime.now(UTC))
    finally:
        await stores.close()


def main(settings: Settings, argv: list[str]) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.users < MIN_USERS:
        parser.error(f"--users must be at least {MIN_USERS}")
    resolved = REFUSE_PRODUCTION if settings.env == "production" else stack_settings(settings)
    if isinstance(resolved, str):
        print(f"devconnect demo: {resolved}", file=sys.stderr)
        return 2
    world = plan_world(args.seed, args.users)
    started = time.monotonic()
    seeded = asyncio.run(_run(resolved, world, args.reset))
    if seeded is None:
        print(f"demo: already seeded (@{DEMO_DOMAIN}); `--reset` seeds it anew", flush=True)
    else:
        print(f"demo: seeded {seeded} in {time.monotonic() - started:.1f} s", flush=True)
    print(f"demo: open {app_url(resolved)} and sign in as either of:")
    for login in LOGINS:
        person, pro = world.people[login], "pro member, " if login == LOGINS[0] else ""
        incoming = sum(1 for p in world.pending if p[1] == login)
        unread = sum(1 for c in world.chats if c.unread_by == login)
        print(
            f"  {person.email}  /  {DEMO_PASSWORD}    ({person.name}: {pro}{incoming} incoming "
            f"requests, {unread} unread conversations)"
        )
    print(f"demo: every @{DEMO_DOMAIN} developer has that password; the two logins are connected")
    return 0
