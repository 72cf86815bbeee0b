"""The one settings object: environment variables prefixed ``DEVCONNECT_`` and an optional ``.env``.

Built once by each entry point's ``main()`` and passed down; nothing else reads
``os.environ`` (STYLE 8).
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# A secret that is obviously a development placeholder; production refuses it.
DEV_JWT_SECRET = "dev-only-insecure-jwt-secret-change-me-please-0000"
MIN_PRODUCTION_SECRET_CHARS = 32
# The PhonePe webhook's Authorization is sha256 of "username:password": a short
# password is a guessable header, so production wants at least this many characters.
MIN_WEBHOOK_PASSWORD_CHARS = 16
# Hosts that only this machine can reach; anything else is a public bind.
LOOPBACK_HOST_NAMES = frozenset({"localhost"})
# Origins that only ever mean a developer's own machine.
LOCAL_ORIGIN_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0"})

# Bounds most settings share (PositiveInt is pydantic's, with errors that say ">= 1").
PositiveInt = Annotated[int, Field(ge=1)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]


def is_loopback_host(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``; an empty host means every interface."""
    if host.strip().lower() in LOOPBACK_HOST_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def _split_csv(value: object) -> object:
    """Lists come from the environment as comma-separated text (JSON is accepted too)."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


class PaymentPlan(BaseModel):
    """One paid plan (domain/payments): what it costs in paise and how long it lasts."""

    name: str
    tier: Literal["pro"] = "pro"
    amount_paise: int = Field(ge=100)  # PhonePe refuses less than 100 paise
    currency: Literal["INR"] = "INR"
    duration_days: int = Field(ge=1)


def _default_payment_plans() -> dict[str, PaymentPlan]:
    return {
        "pro-monthly": PaymentPlan(name="Pro, monthly", amount_paise=29_900, duration_days=30),
        "pro-yearly": PaymentPlan(name="Pro, yearly", amount_paise=299_900, duration_days=365),
    }


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DEVCONNECT_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    env: Literal["development", "test", "production"] = "development"

    # Stores. None means "embedded": `devconnect up` and the test harness start
    # nx-27017 / redis-server themselves and pass their URLs down.
    mongo_url: str | None = None
    mongo_db: str = "devconnect"
    redis_urls: Annotated[list[str], NoDecode] = Field(default_factory=list)
    redis_key_prefix: str = "dc:"
    celery_broker_url: str | None = None
    # Connection pools, per process. Bounded on purpose: a burst (a reconnect storm,
    # a mass disconnect) waits for a connection instead of opening hundreds, which
    # pushed the embedded store into connect timeouts and the Redis pool into errors.
    mongo_pool_max: PositiveInt = 32
    mongo_connect_timeout_s: PositiveFloat = 10.0
    redis_pool_max: int = Field(default=64, ge=2)
    redis_pool_timeout_s: PositiveFloat = 10.0

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    mail_from: str = "DevConnect <no-reply@devconnect.local>"

    jwt_secret: str = DEV_JWT_SECRET
    jwt_access_ttl_s: int = Field(default=15 * 60, ge=30, le=24 * 3600)
    jwt_refresh_ttl_s: int = Field(default=30 * 24 * 3600, ge=60)
    # A refresh token presented again within this long of its rotation gets a fresh
    # token of its family instead of revoking it: two tabs (or a retried request)
    # racing on one cookie are not a theft. 30 s is Okta's default grace and covers a
    # slow mobile round trip; 0 turns the grace off. After it, reuse revokes the family.
    refresh_reuse_grace_s: int = Field(default=30, ge=0, le=300)
    cookie_secure: bool = True
    cookie_samesite: Literal["lax", "strict", "none"] = "lax"
    # Web origins for CORS, CSRF and the websocket Origin check. Unset: the web app
    # restd serves itself, http://127.0.0.1:<restd_port> and http://localhost:<restd_port>.
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # The websocket URL the web app connects to (wss://chat.example/ws behind a proxy).
    # Unset: ws://<the page's host>:<chatd_port>/ws, the chatd `make run` starts.
    public_chat_url: str | None = None

    host: str = "127.0.0.1"
    restd_port: int = 8080
    chatd_port: int = 8081
    public_restd_url: str | None = None
    # Prometheus endpoints of restd and chatd, each on its own port bound to `host`,
    # never on the public API or chat port (where every client could read them).
    # Port 0 turns the endpoint off (tests running several nodes at once).
    restd_metrics_port: int = Field(default=9809, ge=0, le=65535)
    chatd_metrics_port: int = Field(default=9810, ge=0, le=65535)
    # Proxies whose X-Forwarded-For / X-Real-IP restd believes (CIDRs, e.g. the
    # ingress controller's range). Empty: the socket's peer is the client, so a
    # client cannot pick its own address and slip past the per-IP limits.
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"

    var_dir: Path = Path("var")

    # chatd
    # Keepalive: every socket is pinged once per interval; one that has not answered
    # (pong or any frame) by the next ping is closed, 1-2 intervals after it went
    # quiet. 0 turns pings off.
    ws_ping_interval_s: NonNegativeFloat = 25.0
    ws_max_frame_bytes: int = 64 * 1024
    ws_compression: bool = False  # permessage-deflate: measured ~20% more CPU and a 4x p99
    max_text_chars: int = 4000
    msg_rate_per_s: float = 20.0
    msg_burst: int = 40
    typing_rate_per_s: float = 2.0
    typing_burst: int = 5
    # Every other client frame has a per-user budget too (per node, in memory).
    read_rate_per_s: PositiveFloat = 10.0
    read_burst: PositiveInt = 30
    sync_rate_per_s: PositiveFloat = 5.0
    sync_burst: PositiveInt = 20
    ping_rate_per_s: PositiveFloat = 2.0
    ping_burst: PositiveInt = 10
    # Sockets one user may hold on a node (one more closes with 4003), and handshakes
    # per user, so a client stuck in a reconnect loop cannot monopolise admission.
    max_sockets_per_user: PositiveInt = 20
    handshake_rate_per_s: PositiveFloat = 2.0
    handshake_burst: PositiveInt = 20
    # Per socket: bytes written but not yet taken by the kernel. Past the shed
    # ratio, typing and presence are dropped; past the maximum, the socket closes (1013).
    out_buffer_max_bytes: int = 1024 * 1024
    out_buffer_shed_ratio: float = 0.5
    # Sockets opened (hello's reads) at once per node; more wait their turn, so a
    # reconnect storm is admitted at the store's pace instead of all at once.
    hello_concurrency: PositiveInt = 32
    # hello waits this long for the user's Redis subscription (then goes on degraded).
    hello_subscribe_timeout_s: PositiveFloat = 2.0
    # How often chatd closes sockets whose token expired without an `auth` renewal.
    token_check_interval_s: PositiveFloat = 5.0
    presence_grace_s: float = 3.0
    presence_ttl_s: float = 30.0
    connection_cache_ttl_s: float = 60.0
    persist_batch_max: int = 200
    # Under load, commits start at most this often, so batches grow (see chatd/store.py).
    persist_min_interval_ms: float = 4.0
    persist_timeout_s: float = 5.0
    stream_heads_in_redis: bool = True  # hello's heads from Redis (chatd/heads.py)
    # Conversation summaries and unread counters are written at most this often, one
    # update per conversation and recipient (chatd/inbox.py); a reader hurries it.
    inbox_flush_interval_ms: float = Field(default=50.0, gt=0, le=5000)
    # Under load (500 messages a second or more since the last flush) the next waits
    # this long instead, so that one update carries more messages per conversation.
    inbox_busy_flush_interval_ms: float = Field(default=1000.0, gt=0, le=5000)
    offline_email_quiet_s: float = 300.0  # before an offline recipient's unread email
    sync_limit_max: int = 500
    drain_timeout_s: float = 10.0
    drain_batches: int = 10
    reconnect_delay_max_ms: int = 5000
    node_id: str | None = None

    # restd: request bodies. Every route streams its body and refuses one past its
    # limit with 413 before buffering it (restd/handlers/base.py). Auth bodies hold
    # a name, an email and a password: 8 KiB fits the longest valid signup even
    # written with JSON \u escapes, and nothing else reaches the unauthenticated
    # routes. Other JSON bodies (a profile with its bio and links) fit 64 KiB.
    auth_body_max_bytes: int = Field(default=8 * 1024, ge=1024)
    json_body_max_bytes: int = Field(default=64 * 1024, ge=1024)
    # PhonePe's callbacks are a few KiB (an order, its attempts): room, not megabytes.
    phonepe_webhook_body_max_bytes: int = Field(default=128 * 1024, ge=1024)
    # A body must arrive whole within this long, or the connection is closed: a
    # client trickling bytes cannot hold a connection and its buffer for ever.
    http_body_timeout_s: PositiveFloat = 20.0

    # restd: password hashing. Each argon2id hash or check takes its memory cost
    # (64 MiB with the library's RFC 9106 profile) for its duration, so at most
    # budget / cost run at once; a login waits this long for a slot, then gets
    # 503 with Retry-After. 256 MiB is 4 at once inside restd's 512 MiB pod limit.
    password_hash_memory_budget_mib: PositiveInt = 256
    password_hash_wait_s: PositiveFloat = 5.0

    # restd: auth cookies and rate limits. A limit is "count per window": at most
    # `*_count` requests in any `*_window_s` seconds (GCRA, core/ratelimit.py).
    access_cookie_name: str = "access_token"
    refresh_cookie_name: str = "refresh_token"
    rate_login_ip_count: PositiveInt = 30
    rate_login_ip_window_s: PositiveInt = 300
    # Per email, for clients without a device cookie of that account: bounds
    # guessing one account from many addresses. A device that signed in before
    # is exempt (its own budget below), so spending this locks no one out.
    rate_login_email_count: PositiveInt = 10
    rate_login_email_window_s: PositiveInt = 300
    # Per (email, client address): one address guessing one account.
    rate_login_email_ip_count: PositiveInt = 10
    rate_login_email_ip_window_s: PositiveInt = 300
    # Per device cookie: a known device's own budget, spent by nobody else.
    rate_login_device_count: PositiveInt = 10
    rate_login_device_window_s: PositiveInt = 300
    # OWASP's device cookie: a signed HttpOnly cookie naming the user, issued at each
    # successful login and sent only to the login route. It lives long, so a device
    # that signed in once keeps signing in while strangers lock the account out.
    device_cookie_name: str = "device_token"
    device_cookie_ttl_s: int = Field(default=180 * 24 * 3600, ge=60)
    rate_signup_ip_count: PositiveInt = 10
    rate_signup_ip_window_s: PositiveInt = 3600
    rate_user_count: PositiveInt = 600
    rate_user_window_s: PositiveInt = 60
    # Failed logins per email (clients without a device cookie) and per device
    # cookie (its own count): from the threshold-th failure within the window the
    # subject is locked for base * 2^(failures - threshold) seconds, capped.
    login_lockout_threshold: PositiveInt = 5
    login_lockout_base_s: PositiveInt = 30
    login_lockout_max_s: PositiveInt = 3600
    login_failure_window_s: PositiveInt = 3600
    # Connection requests: a rejected sender waits this long before asking again.
    connection_request_cooldown_s: int = Field(default=7 * 24 * 3600, ge=0)
    connection_requests_per_day_free: PositiveInt = 20
    connection_requests_per_day_pro: PositiveInt = 100
    # Upper bound on connections read for /api/connections and /api/conversations.
    connections_list_max: PositiveInt = 1000

    # Worker tier: its Prometheus endpoint (workers/metrics.py); port 0 turns it off.
    # In a container set the host to 0.0.0.0 so the scraper can reach it.
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_port: int = Field(default=9808, ge=0, le=65535)

    # Payments (domain/payments, PhonePe Standard Checkout v2). The base URL is the
    # local simulator in development (`python -m tooling.phonepe_simulator`), else
    # https://api-preprod.phonepe.com/apis/pg-sandbox or https://api.phonepe.com/apis/pg.
    phonepe_base_url: str = "http://127.0.0.1:8090"
    # Production's token endpoint has its own host (.../apis/identity-manager); None: the base URL.
    phonepe_oauth_url: str | None = None
    phonepe_client_id: str | None = None
    phonepe_client_secret: str | None = None
    phonepe_client_version: PositiveInt = 1
    phonepe_merchant_id: str | None = None
    # Webhook credentials set on the PhonePe dashboard; unset means every webhook is refused.
    phonepe_webhook_username: str | None = None
    phonepe_webhook_password: str | None = None
    phonepe_timeout_s: PositiveFloat = 5.0
    phonepe_retry_attempts: int = Field(default=3, ge=1, le=10)
    phonepe_retry_backoff_s: float = Field(default=1.0, ge=0)  # doubles per retry
    phonepe_order_expire_s: int = Field(default=1200, ge=300, le=3600)
    phonepe_simulator_port: int = Field(default=8090, ge=1, le=65535)
    # Where the pay page sends the browser back; {orderId} is our order id.
    # Unset: the web app's /payments/{orderId} (``web_url``).
    payment_redirect_url: str | None = None
    payment_plans: dict[str, PaymentPlan] = Field(default_factory=_default_payment_plans)
    rate_payment_create_count: PositiveInt = 10
    rate_payment_create_window_s: PositiveInt = 3600
    # Reconciliation (workers/payments.py): beat runs it every interval; an order is
    # first checked this long after creation, then with doubling gaps up to the maximum,
    # until terminal, or EXPIRED once its expiry plus the grace has passed.
    payments_reconcile_interval_s: PositiveFloat = 10.0
    payments_reconcile_delay_s: NonNegativeFloat = 20.0
    payments_reconcile_backoff_s: NonNegativeFloat = 3.0
    payments_reconcile_backoff_max_s: NonNegativeFloat = 60.0
    payments_reconcile_batch: PositiveInt = 100
    payments_expiry_grace_s: NonNegativeFloat = 120.0

    # Feed ("people you may know", domain/feed). The ranked list is cached per user
    # for the TTL (the design allows 5-30 minutes) and paged from that snapshot.
    feed_cache_ttl_s: int = Field(default=15 * 60, ge=5 * 60, le=30 * 60)
    # Candidates ranked per user, and hop-2 people whose connections are read too
    # (three-hop reach for the walk, true degrees and three-hop paths for the top of
    # the list). Learned ranker vs Adamic-Adar, `recs eval` on 500 held-out users
    # (cap/expand): 2000/100 +50.5%, 2000/300 +51.8%, 1500/300 +54.0%, with fewer
    # cards read; on all 2,000, 2000/100 +48.0% and 1500/300 +50.3% (loadtest/results).
    feed_candidate_cap: int = Field(default=1500, ge=20, le=10000)
    feed_expand_max: int = Field(default=300, ge=0, le=1000)
    feed_skill_pool_max: int = Field(default=200, ge=0, le=2000)
    feed_location_pool_max: int = Field(default=100, ge=0, le=2000)
    feed_newcomer_pool_max: int = Field(default=50, ge=0, le=1000)
    # Connections read per person when building the neighbourhood (bounds a hub's cost).
    feed_neighbours_max: int = Field(default=2000, ge=10, le=100000)
    feed_snapshot_size: int = Field(default=200, ge=20, le=10000)
    feed_page_max: int = Field(default=50, ge=1, le=200)
    # A rejected pair stays out of both users' feeds this long.
    feed_rejected_hide_s: int = Field(default=90 * 24 * 3600, ge=0)
    # Feature weights over the shipped defaults (domain/feed/weights*.py), and weight
    # sets as A/B variants: {"name": {"feature": weight, ...}}; users are hashed into
    # a variant with the salt. Feature names are checked when restd starts.
    feed_weights: dict[str, float] = Field(default_factory=dict)
    feed_variants: dict[str, dict[str, float]] = Field(default={"learned": {}})
    feed_variant_salt: str = "feed-v1"
    feed_precompute_batch: int = Field(default=200, ge=1, le=5000)
    feed_active_days: PositiveFloat = 14.0
    feed_precompute_hour_utc: int = Field(default=3, ge=0, le=23)
    # The learned ranker (domain/feed/training.py, registry.py). Variants may pin a
    # model: {"variant": 3} serves version 3, "weights" always its weight set,
    # "promoted" (the default for a variant not listed) the promoted model, or its
    # weights while none is. restd reads the promoted version at most every check.
    feed_variant_models: dict[str, int | Literal["promoted", "weights"]] = Field(
        default_factory=dict
    )
    feed_model_check_s: float = Field(default=30.0, ge=0.05, le=3600)
    # Nightly training, before the precompute so that it warms with the new model.
    feed_training_hour_utc: int = Field(default=2, ge=0, le=23)
    feed_training_window_days: PositiveFloat = 60.0
    feed_training_max_impressions: int = Field(default=300_000, ge=100)
    # The most recent impressions held out to compare the new model with the served one.
    feed_training_holdout: float = Field(default=0.2, gt=0, lt=1)
    # Below these (useful training queries, positive labels in them) the ranker stays.
    feed_training_min_queries: PositiveInt = 100
    feed_training_min_positives: PositiveInt = 200
    # A new model is promoted only when its held-out NDCG@20 beats the served one's by this.
    feed_training_min_gain: NonNegativeFloat = 0.005
    # Models older than the newest this many keep their metadata but lose their text.
    feed_models_keep: int = Field(default=30, ge=2)

    # Email notifications (workers/email.py). Each SMTP socket operation times out
    # after smtp_timeout_s; a transient failure (4xx, connection error) is retried
    # email_max_retries times, waiting about base * 2^retry (equal jitter, capped),
    # then dead-lettered. A send claim older than the lease counts as abandoned by a
    # dead worker and may be taken over, so keep the lease above one SMTP exchange.
    smtp_timeout_s: PositiveFloat = 10.0
    email_max_retries: int = Field(default=5, ge=0, le=20)
    email_retry_backoff_s: NonNegativeFloat = 10.0
    email_retry_backoff_max_s: NonNegativeFloat = 600.0
    email_send_lease_s: PositiveFloat = 120.0
    # Beat runs the offline-message sweep this often; it claims at most a batch per shard per round.
    email_sweep_interval_s: PositiveFloat = 20.0
    email_sweep_batch: int = Field(default=500, ge=1, le=5000)
    # Unsubscribe links (RFC 8058 one-click, domain/unsubscribe.py) stop working after this.
    unsubscribe_token_max_age_s: int = Field(default=180 * 24 * 3600, ge=60)
    # Where links in mail send people: the web app (None: the first allowed origin).
    public_web_url: str | None = None
    # Redis broker: an unacknowledged task (its worker died) is handed out again after
    # the visibility timeout; abandoned tasks are looked for every restore interval.
    # Keep the timeout above every task's time limit and every retry countdown.
    celery_visibility_timeout_s: PositiveInt = 3600
    celery_restore_interval_s: PositiveInt = 10

    @field_validator("redis_urls", "allowed_origins", "trusted_proxies", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("trusted_proxies")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"{cidr!r} is not an address or CIDR range") from None
        return value

    @model_validator(mode="after")
    def _web_defaults(self) -> Settings:
        # Before the refusals below: production must name its origins, and a derived
        # loopback origin is refused there like a written one.
        if "allowed_origins" not in self.model_fields_set:
            port = self.restd_port
            self.allowed_origins = [f"http://127.0.0.1:{port}", f"http://localhost:{port}"]
        if self.payment_redirect_url is None:
            self.payment_redirect_url = self.web_url + "/payments/{orderId}"
        return self

    @model_validator(mode="after")
    def _public_bind_refusals(self) -> Settings:
        # The development secret is in this repository: whoever reads it forges
        # tokens for any account. Fine on loopback; refused on any address others
        # reach, whatever DEVCONNECT_ENV says (the image's default is development).
        if self.jwt_secret == DEV_JWT_SECRET and not is_loopback_host(self.host):
            raise ValueError(
                f"DEVCONNECT_JWT_SECRET is the public development secret, refused on the "
                f"non-loopback DEVCONNECT_HOST={self.host or '(all interfaces)'}; set a random "
                f"secret of at least {MIN_PRODUCTION_SECRET_CHARS} characters"
            )
        return self

    @model_validator(mode="after")
    def _production_refusals(self) -> Settings:
        if self.env != "production":
            return self
        if self.jwt_secret == DEV_JWT_SECRET or len(self.jwt_secret) < MIN_PRODUCTION_SECRET_CHARS:
            raise ValueError(
                "DEVCONNECT_JWT_SECRET must be a random secret of at least "
                f"{MIN_PRODUCTION_SECRET_CHARS} characters in production"
            )
        if not self.mongo_url:
            raise ValueError("DEVCONNECT_MONGO_URL must be set in production")
        if not self.redis_urls:
            raise ValueError("DEVCONNECT_REDIS_URLS must be set in production")
        if not self.cookie_secure:
            raise ValueError("DEVCONNECT_COOKIE_SECURE must be true in production")
        if self.cookie_samesite == "none":
            raise ValueError("DEVCONNECT_COOKIE_SAMESITE=none is refused in production")
        for origin in self.allowed_origins:
            parts = urlsplit(origin)
            if parts.scheme != "https" or (parts.hostname or "") in LOCAL_ORIGIN_HOSTS:
                raise ValueError(
                    f"DEVCONNECT_ALLOWED_ORIGINS must list https origins of the web app in "
                    f"production, not {origin!r}"
                )
        urls = {
            "PHONEPE_BASE_URL": self.phonepe_base_url,
            "PHONEPE_OAUTH_URL": self.phonepe_oauth_url,
            "PAYMENT_REDIRECT_URL": self.payment_redirect_url,
        }
        for name, url in urls.items():
            if url is not None and urlsplit(url).scheme != "https":
                raise ValueError(f"DEVCONNECT_{name} must be an https URL in production")
        if not self.phonepe_webhook_username:
            raise ValueError("DEVCONNECT_PHONEPE_WEBHOOK_USERNAME must be set in production")
        password = self.phonepe_webhook_password or ""
        if len(password) < MIN_WEBHOOK_PASSWORD_CHARS or password == self.phonepe_webhook_username:
            raise ValueError(
                "DEVCONNECT_PHONEPE_WEBHOOK_PASSWORD must be a random secret of at least "
                f"{MIN_WEBHOOK_PASSWORD_CHARS} characters in production"
            )
        return self

    @property
    def web_url(self) -> str:
        """The web app's base URL, for links in mail and payment returns (no trailing /)."""
        if self.public_web_url:
            return self.public_web_url.rstrip("/")
        return self.allowed_origins[0].rstrip("/") if self.allowed_origins else ""

    @property
    def payment_return_url(self) -> str:
        return self.payment_redirect_url or self.web_url + "/payments/{orderId}"

    @property
    def broker_url(self) -> str:
        """Celery broker: explicit URL, else the first Redis shard."""
        if self.celery_broker_url:
            return self.celery_broker_url
        if not self.redis_urls:
            raise ValueError("no Celery broker: set DEVCONNECT_CELERY_BROKER_URL or REDIS_URLS")
        return self.redis_urls[0]


def load_settings(**overrides: object) -> Settings:
    """Build settings, raising ``SettingsError`` with one line per wrong setting."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            if loc:
                lines.append(f"DEVCONNECT_{loc.upper()}: {msg}")
            else:
                lines.append(msg)
        raise SettingsError("; ".join(lines)) from None


class SettingsError(Exception):
    """A configuration that must not start; the message names the setting."""


def settings_to_env(settings: Settings) -> dict[str, str]:
    """The DEVCONNECT_* variables that make another process build the same settings."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump(mode="json").items():
        if value is None:
            continue
        if isinstance(value, (list, dict)):
            text = json.dumps(value)
        elif isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = str(value)
        env[f"DEVCONNECT_{name.upper()}"] = text
    return env
