"""The email tier's parts against real stores: tokens, templates, the ledger, the due claim,
the task sender, and restd's prefs and unsubscribe endpoints. The worker itself is
exercised end to end in test_workers_email_*.py."""

from __future__ import annotations

import threading
import time

import pytest
import redis
from pymongo import MongoClient

from core.emailprefs import TokenInvalid, UnsubscribeTokens, email_enabled
from core.embedded import free_port
from core.keys import Keys
from core.mongo import DEAD_LETTERS, EMAIL_NOTIFICATIONS, UNSUBSCRIBE_TOKENS
from core.settings import Settings
from core.tasks import TASK_ROUTES, TaskSender
from tests.harness import Services, make_settings
from tests.restd_harness import running_restd
from workers.app import make_celery
from workers.email import EmailUndeliverable, backoff_s
from workers.ledger import Ledger
from workers.mailer import Mailer, MailTemplates, OutgoingMail, SmtpConfig
from workers.sweep import claim_due


def test_backoff_grows_with_jitter_within_bounds() -> None:
    for retries in range(8):
        step = min(60.0, 2.0 * 2**retries)
        waits = [backoff_s(retries, 2.0, 60.0) for _ in range(200)]
        assert all(step / 2 <= w <= step for w in waits)
        assert len(set(waits)) > 1  # jittered


def test_unsubscribe_tokens_verify_and_refuse_tampering() -> None:
    tokens = UnsubscribeTokens("s" * 40, 3600)
    token = tokens.issue("65f0c0ffee0123456789abcd", "messages")
    claims = tokens.verify(token)
    assert (claims.user_id, claims.kind) == ("65f0c0ffee0123456789abcd", "messages")
    assert tokens.issue(claims.user_id, "messages") != token  # a nonce per mail
    body, _, sig = token.rpartition(".")
    # The first character: the last one of a base64 signature carries padding bits,
    # so some changes there decode to the same bytes (a flaky test, not a forgery).
    flipped = ("A" if sig[0] != "A" else "B") + sig[1:]
    for bad in (f"{body}.{flipped}", token[:-3], "nonsense", ""):
        with pytest.raises(TokenInvalid):
            tokens.verify(bad)
    # Another secret, or the same secret for another purpose, does not verify.
    with pytest.raises(TokenInvalid):
        UnsubscribeTokens("t" * 40, 3600).verify(token)
    with pytest.raises(TokenInvalid):
        UnsubscribeTokens("s" * 40, -1).verify(token)  # expired


def test_prefs_default_on_and_only_false_turns_off() -> None:
    assert email_enabled({}, "messages") and email_enabled(None, "payments")
    assert email_enabled({"emailMessages": True, "emailConnections": False}, "messages")
    assert not email_enabled({"emailConnections": False}, "connections")
    assert not email_enabled({"emailConnections": 0}, "connections")
    assert email_enabled({"emailConnections": "0"}, "connections")


def test_mail_has_both_parts_escaped_html_and_rfc8058_headers() -> None:
    mailer = Mailer(
        SmtpConfig("127.0.0.1", 1, 1.0, "DevConnect <no-reply@x.test>"), MailTemplates()
    )
    mail = OutgoingMail(
        to="bob@example.test",
        subject="<Eve> wants to connect",
        template="connection_request",
        context={
            "name": "Bob",
            "app_url": "http://app.test",
            "from_name": "<script>alert(1)</script>",
            "from_headline": "",
            "message": "Hi & <b>bye</b>",
        },
        unsubscribe_url="http://api.test/api/email/unsubscribe?token=abc",
        idempotency_key="connection-request:1",
    )
    msg = mailer.build(mail)
    assert msg["List-Unsubscribe"] == "<http://api.test/api/email/unsubscribe?token=abc>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["Message-ID"] == mail.message_id
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "<script>alert(1)</script> wants to connect" in text
    assert "&lt;script&gt;" in html and "<script>" not in html
    assert "Hi &amp; &lt;b&gt;bye&lt;/b&gt;" in html
    assert "http://api.test/api/email/unsubscribe?token=abc" in text + html


def test_undeliverable_survives_the_pool_pickle() -> None:
    import pickle

    exc = pickle.loads(pickle.dumps(EmailUndeliverable("payments", "451 busy")))
    assert exc.email_kind == "payments" and "451 busy" in str(exc)


def test_ledger_claims_once_takes_over_abandoned_and_dead_letters_once(services: Services) -> None:
    settings = make_settings(services)
    client: MongoClient[dict[str, object]] = MongoClient(services.mongo_url, tz_aware=True)
    db = client[settings.mongo_db]
    try:
        ledger = Ledger(db, lease_s=0.5)
        assert ledger.claim("k1", "u", "messages", "t1").outcome == "mine"
        busy = ledger.claim("k1", "u", "messages", "t2")
        assert busy.outcome == "busy" and 0 < busy.busy_for_s <= 0.5
        time.sleep(0.6)  # the first holder "died": its lease ran out
        again = ledger.claim("k1", "u", "messages", "t2")
        assert again.outcome == "mine" and again.attempts == 2
        ledger.sent("k1", "<id@x>")
        assert ledger.claim("k1", "u", "messages", "t3").outcome == "done"
        # A released claim (transient failure) is taken again at once by the retry.
        assert ledger.claim("k2", "u", "messages", "t1").outcome == "mine"
        ledger.release("k2", "451")
        assert ledger.claim("k2", "u", "messages", "t1").outcome == "mine"
        ledger.fail("k2", "451 always", {"kind": "messages"})
        ledger.fail("k2", "451 always", {"kind": "messages"})  # redelivered final attempt
        assert db[DEAD_LETTERS].count_documents({}) == 1
        assert db[EMAIL_NOTIFICATIONS].find_one({"_id": "k2"})["state"] == "failed"  # type: ignore[index]
        assert ledger.claim("k2", "u", "messages", "t9").outcome == "done"
    finally:
        client.drop_database(settings.mongo_db)
        client.close()


def test_due_claim_is_atomic_between_concurrent_sweeps(services: Services) -> None:
    settings = make_settings(services)
    keys = Keys(settings.redis_key_prefix)
    client = redis.Redis.from_url(services.redis_urls[0])
    now = time.time()
    users = {f"u{i}": now - 1 for i in range(300)}
    client.zadd(keys.offline_due(), users)
    client.zadd(keys.offline_due(), {"later": now + 3600})
    taken: list[list[str]] = [[], [], []]

    def sweep(i: int) -> None:
        c = redis.Redis.from_url(services.redis_urls[0])
        while batch := claim_due(c, keys, time.time(), 7):
            taken[i].extend(batch)
        c.close()

    threads = [threading.Thread(target=sweep, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everyone = [u for part in taken for u in part]
    assert sorted(everyone) == sorted(users)  # each due user claimed exactly once
    assert client.zrange(keys.offline_due(), 0, -1) == [b"later"]
    client.delete(keys.offline_due())
    client.close()


def test_routes_are_shared_and_cover_every_queue(services: Services) -> None:
    app = make_celery(make_settings(services))
    assert app.conf.task_routes == TASK_ROUTES
    for name in ("workers.email.x", "workers.recs.x", "workers.payments.x"):
        queue = app.amqp.router.route({}, name)["queue"].name
        assert queue == name.split(".")[1]


async def test_sender_with_dead_broker_logs_and_returns(services: Services) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    sender = TaskSender(make_settings(services, celery_broker_url=dead))
    assert await sender.send("workers.email.connection_request", "x") is False
    assert sender.failures == 1
    sender.close()


async def test_connection_request_succeeds_when_the_broker_is_down(services: Services) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    async with running_restd(make_settings(services, celery_broker_url=dead)) as api:
        a, b = await api.signup(), await api.signup()
        sent = await a.http.post("/api/connection-requests", json={"toUserId": b.id})
        assert sent.status_code == 201, sent.text
        answer = await b.http.patch(
            f"/api/connection-requests/{sent.json()['id']}", json={"status": "accepted"}
        )
        assert answer.status_code == 200, answer.text


async def test_patch_me_edits_email_prefs(settings: Settings) -> None:
    async with running_restd(settings) as api:
        a = await api.signup()
        resp = await a.http.patch("/api/me", json={"prefs": {"emailMessages": False}})
        assert resp.status_code == 200, resp.text
        assert resp.json()["prefs"]["emailMessages"] is False
        assert (await a.http.get("/api/me")).json()["prefs"]["emailMessages"] is False
        bad = await a.http.patch("/api/me", json={"prefs": {"emailMessages": {"x": 1}}})
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "validation_failed"


async def test_unsubscribe_endpoint_works_once_and_refuses_forgeries(settings: Settings) -> None:
    async with running_restd(settings) as api:
        a = await api.signup()
        tokens = UnsubscribeTokens(settings.jwt_secret, settings.unsubscribe_token_max_age_s)
        token = tokens.issue(a.id, "connections")
        anon = api.client()
        url = f"/api/email/unsubscribe?token={token}"
        look = await anon.get(url)
        assert look.status_code == 200 and look.json() == {
            "kind": "connections",
            "pref": "emailConnections",
            "used": False,
        }
        page = await anon.get(url, headers={"Accept": "text/html"})
        assert page.status_code == 200 and '<form method="post"' in page.text
        # GET changed nothing.
        assert (await a.http.get("/api/me")).json()["prefs"] == {}
        form = {"List-Unsubscribe": "One-Click"}
        # A one-click POST from a mail provider: no cookie, a foreign or no Origin.
        done = await api.client(origin="https://mail.example").post(url, data=form)
        assert done.status_code == 200, done.text
        assert done.json() == {
            "kind": "connections",
            "pref": "emailConnections",
            "unsubscribed": True,
        }
        assert (await a.http.get("/api/me")).json()["prefs"]["emailConnections"] is False
        again = await anon.post(url, data=form)
        assert again.status_code == 409
        assert again.json()["error"]["code"] == "unsubscribe_token_used"
        assert (await anon.get(url)).json()["used"] is True
        forged = UnsubscribeTokens("x" * 40, 3600).issue(a.id, "messages")
        body, _, sig = tokens.issue(a.id, "messages").rpartition(".")
        tampered = f"{body}.{sig[::-1]}"
        for bad in (forged, tampered, "garbage"):
            resp = await anon.post(f"/api/email/unsubscribe?token={bad}", data=form)
            assert resp.status_code == 400, resp.text
            assert resp.json()["error"]["code"] == "invalid_unsubscribe_token"
        missing = await anon.post("/api/email/unsubscribe", data=form)
        assert missing.status_code == 422
        assert (await a.http.get("/api/me")).json()["prefs"]["emailConnections"] is False
        assert await api.stores.db[UNSUBSCRIBE_TOKENS].count_documents({}) == 1
