"""Everything restd's handlers need, built once per application by ``make_app``.

Handlers receive it through ``initialize`` (STYLE 6); nothing here is global,
so tests build as many independent apps as they like (STYLE 9).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from pymongo.asynchronous.database import AsyncDatabase

from core.auth import PasswordHashing, TokenIssuer
from core.keys import Keys
from core.mongo import Doc
from core.ratelimit import Lockout, LockoutPolicy, Rate, RateLimiter
from core.redis import RedisShards
from core.runtime import Stores
from core.sessions import Authenticator
from core.settings import Settings
from core.tasks import TaskSender
from domain.devices import DeviceTokens
from domain.feed.metrics import FeedMetrics
from domain.feed.service import FeedService
from domain.metrics import RestMetrics
from domain.payments.metrics import PaymentMetrics
from domain.payments.service import PaymentsService


@dataclass(frozen=True)
class Limits:
    login_ip: Rate
    login_email: Rate
    login_email_ip: Rate
    login_device: Rate
    signup_ip: Rate
    user: Rate

    @classmethod
    def from_settings(cls, s: Settings) -> Limits:
        return cls(
            login_ip=Rate(s.rate_login_ip_count, s.rate_login_ip_window_s),
            login_email=Rate(s.rate_login_email_count, s.rate_login_email_window_s),
            login_email_ip=Rate(s.rate_login_email_ip_count, s.rate_login_email_ip_window_s),
            login_device=Rate(s.rate_login_device_count, s.rate_login_device_window_s),
            signup_ip=Rate(s.rate_signup_ip_count, s.rate_signup_ip_window_s),
            user=Rate(s.rate_user_count, s.rate_user_window_s),
        )


@dataclass
class RestContext:
    settings: Settings
    stores: Stores
    issuer: TokenIssuer
    authenticator: Authenticator
    passwords: PasswordHashing
    devices: DeviceTokens
    limiter: RateLimiter
    lockout: Lockout
    limits: Limits
    metrics: RestMetrics
    payments: PaymentsService
    feed: FeedService
    # Queues Celery tasks (email notifications) after domain writes; never raises.
    tasks: TaskSender
    # Proxies whose forwarded-address headers are believed (restd/handlers/base.py).
    trusted_proxies: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = field(
        default_factory=list
    )

    @property
    def body_cap_bytes(self) -> int:
        """The largest body any route takes: the server-wide bound (restd/app.py)."""
        return body_cap_bytes(self.settings)

    @property
    def db(self) -> AsyncDatabase[Doc]:
        return self.stores.db

    @property
    def redis(self) -> RedisShards:
        return self.stores.redis

    @property
    def keys(self) -> Keys:
        return self.stores.keys

    @property
    def bus_origin(self) -> str:
        """Who publishes restd's bus events. Never a chatd node's id, even when both
        processes share DEVCONNECT_NODE_ID: a node drops messages of its own origin
        as echoes, and took restd's events for its own."""
        return f"restd-{self.settings.node_id}" if self.settings.node_id else "restd"

    @classmethod
    def build(cls, stores: Stores, metrics: RestMetrics) -> RestContext:
        s = stores.settings
        issuer = TokenIssuer(s.jwt_secret, s.jwt_access_ttl_s)
        tasks = TaskSender(s)
        return cls(
            settings=s,
            stores=stores,
            issuer=issuer,
            authenticator=Authenticator(issuer, stores.redis, stores.keys),
            passwords=PasswordHashing(s.password_hash_memory_budget_mib, s.password_hash_wait_s),
            devices=DeviceTokens(s.jwt_secret, s.device_cookie_ttl_s),
            limiter=RateLimiter(stores.redis, stores.keys),
            lockout=Lockout(
                stores.redis,
                stores.keys,
                LockoutPolicy(
                    threshold=s.login_lockout_threshold,
                    base_s=s.login_lockout_base_s,
                    max_s=s.login_lockout_max_s,
                    window_s=s.login_failure_window_s,
                ),
            ),
            limits=Limits.from_settings(s),
            metrics=metrics,
            payments=PaymentsService(
                s,
                stores.db,
                stores.redis,
                stores.keys,
                PaymentMetrics(metrics.registry),
                tasks=tasks,
            ),
            feed=FeedService(stores, FeedMetrics(metrics.registry)),
            tasks=tasks,
            trusted_proxies=[ipaddress.ip_network(c, strict=False) for c in s.trusted_proxies],
        )


def body_cap_bytes(s: Settings) -> int:
    return max(s.auth_body_max_bytes, s.json_body_max_bytes, s.phonepe_webhook_body_max_bytes)
