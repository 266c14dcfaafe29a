"""LLMHive settings, read from the environment with defaults that work on a laptop."""

import os
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF, UNSAFE_HASHES, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
# Local state (the SQLite test database, the printed admin login, collected static files).
VAR_DIR = Path(os.environ.get("LLMHIVE_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
# Knobs renamed so that the project's own all share the LLMHIVE_ prefix (and one stale-catalog
# setting serves the dashboard and /health alike). Setting an old name is an error, not a no-op.
RENAMED = {
    "DATABASE_CONN_MAX_AGE": "LLMHIVE_DATABASE_CONN_MAX_AGE",
    "LOG_LEVEL": "LLMHIVE_LOG_LEVEL",
    "STATIC_ROOT": "LLMHIVE_STATIC_ROOT",
    "LLMHIVE_CATALOG_STALE_GRACE_HOURS": "LLMHIVE_CATALOG_GRACE_MINUTES",
    "LLMHIVE_HEALTH_CATALOG_GRACE_MINUTES": "LLMHIVE_CATALOG_GRACE_MINUTES",
}


class SettingError(ImproperlyConfigured):
    """A setting from the environment that cannot be used: the process refuses to start."""


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    return None if value is None or value.strip() == "" else value.strip()


def envbool(name: str, default: bool) -> bool:
    value = _raw(name)
    if value is None:
        return default
    if value.lower() in TRUE_WORDS:
        return True
    if value.lower() in FALSE_WORDS:
        return False
    raise SettingError(f"{name}={value!r} is not a boolean: use one of {', '.join(TRUE_WORDS + FALSE_WORDS)}")


def _number(name: str, default, kind):
    value = _raw(name)
    if value is None:
        return default
    try:
        return kind(value)
    except ValueError:
        raise SettingError(f"{name}={value!r} is not {'a whole number' if kind is int else 'a number'}") from None


def envint(name: str, default: int) -> int:
    return _number(name, default, int)


def envfloat(name: str, default: float) -> float:
    return _number(name, default, float)


def envdecimal(name: str, default: str) -> Decimal:
    value = _raw(name) or default
    try:
        return Decimal(value)
    except InvalidOperation:
        raise SettingError(f"{name}={value!r} is not a decimal number") from None


def envlist(name: str, default: list[str]) -> list[str]:
    value = _raw(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


for _old, _new in RENAMED.items():
    if _old in os.environ:
        raise SettingError(f"{_old} is no longer read: set {_new} instead")


DEBUG = envbool("DEBUG", True)
# The development key is public (it is in this file): good for a laptop with DEBUG on, never
# for a server. With DEBUG off the process refuses to start without a key of its own.
DEVELOPMENT_SECRET_KEY = "django-insecure-llmhive-local-development-key-change-me"
SECRET_KEY = _raw("SECRET_KEY") or ""
if not SECRET_KEY:
    if not DEBUG:
        raise SettingError("SECRET_KEY is not set and DEBUG is off: set SECRET_KEY to 50+ random characters")
    SECRET_KEY = DEVELOPMENT_SECRET_KEY
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", [])

# HTTPS in production (DEBUG off): secure cookies, HSTS and a redirect, so `check --deploy` is
# clean. Behind a TLS-terminating proxy set SECURE_PROXY_SSL_HEADER=HTTP_X_FORWARDED_PROTO; on a
# plain-HTTP private network set LLMHIVE_HTTPS=false.
LLMHIVE_HTTPS = envbool("LLMHIVE_HTTPS", not DEBUG)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = LLMHIVE_HTTPS
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", LLMHIVE_HTTPS)
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 31_536_000 if LLMHIVE_HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", LLMHIVE_HTTPS)
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", LLMHIVE_HTTPS)
if os.environ.get("SECURE_PROXY_SSL_HEADER"):
    SECURE_PROXY_SSL_HEADER = (os.environ["SECURE_PROXY_SSL_HEADER"], "https")
# The health endpoint answers load balancers over plain HTTP inside the network.
SECURE_REDIRECT_EXEMPT = [r"^api/v1/health$"]

INSTALLED_APPS = [
    "llmhive_site.apps.LLMHiveAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "axes",
    # Listed so /api/docs renders Swagger UI from ninja's bundled static files, not a CDN.
    "ninja",
    "django_q",
    "llmhive_site.apps.LLMHiveSiteConfig",
    "import_export",
    "core",
    "catalog",
    "costs",
    "health",
    "routing",
]

MIDDLEWARE = [
    # Before SecurityMiddleware's redirect: an API call over plain HTTP is refused, not redirected.
    "core.middleware.ApiHttpsRequiredMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Under /api/: unstorable input refused (422), bodies over the limit (413), errors as JSON.
    "core.middleware.ApiMiddleware",
    # The site's own (the admin, the dashboard, /api/docs): CSP, sessions, auth and messages are
    # skipped for the JSON API under /api/v1/ (core.middleware.site_only); CSRF and clickjacking
    # stay as `check --deploy` looks for them (both cost an API call next to nothing).
    "core.middleware.CSPMiddleware",
    "core.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "core.middleware.AuthenticationMiddleware",
    "core.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into the lock-out page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "llmhive_site.urls"

# The largest request body accepted (bytes): larger is a 413 before it is read. A full usage batch
# of 1,000 events is about 0.5 MB; the default is Django's 2.5 MiB.
DATA_UPLOAD_MAX_MEMORY_SIZE = envint("LLMHIVE_MAX_BODY_BYTES", 2_621_440)
WSGI_APPLICATION = "llmhive_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# SQLite in the project folder unless DATABASE_URL says otherwise (PostgreSQL in CI and
# production). The SQLite test database is a file so that a real qcluster subprocess started
# by the tests can see it.
DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=envint("LLMHIVE_DATABASE_CONN_MAX_AGE", 60),
        # A kept connection is checked (SELECT 1) at its first use in each request, and replaced
        # when it broke meanwhile: with several threads per worker (gunicorn.conf.py), each
        # thread's connection outlives a database cut unused, and its first query after the
        # database returns would fail and put the worker back in degraded mode.
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        # Several processes (web, qcluster) share the file: wait for locks instead of failing.
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # One file per test session (pytest-xdist workers or two checkouts never share one).
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-db-{os.getpid()}.sqlite3")}
elif DATABASES["default"]["ENGINE"].startswith("django.db.backends.postgresql"):
    # An unreachable database host must not hold a request for the kernel's TCP timeout (minutes):
    # libpq gives up after this many seconds (2 is its least) and the request answers 503, or from
    # memory in degraded mode (docs/ops/degraded-mode.md). A connect_timeout in DATABASE_URL wins.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
        "connect_timeout", envint("LLMHIVE_DATABASE_CONNECT_TIMEOUT", 2)
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# django-axes first: it refuses a locked-out login before the password is even checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

# Admin login throttling (django-axes): after LLMHIVE_LOGIN_FAILURE_LIMIT wrong passwords for one
# username from one address, that pair is locked out for LLMHIVE_LOGIN_COOLOFF_MINUTES (another
# user, or the same user elsewhere, is unaffected). Unlock early: `manage.py axes_reset_username
# NAME` (docs/ops/deploying.md).
AXES_FAILURE_LIMIT = envint("LLMHIVE_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=envint("LLMHIVE_LOGIN_COOLOFF_MINUTES", 30))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "admin/locked_out.html"
AXES_VERBOSE = False  # no "AXES: BEGIN" banner on every manage.py command
# Behind a proxy every client has the proxy's address: name the header the proxy sets to the
# client's own (e.g. HTTP_X_REAL_IP), or one attacker locks a username out for everyone.
LLMHIVE_CLIENT_IP_HEADER = _raw("LLMHIVE_CLIENT_IP_HEADER") or ""
AXES_CLIENT_IP_CALLABLE = "core.middleware.client_ip"

# Flash messages live in the session (server side), not a cookie: a new API key's secret is
# shown once in a message and must not travel in a signed-but-readable cookie.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

# Content-Security-Policy (django-csp): our own origin only, no inline script (the admin, the
# dashboard, /api/docs). Inline style attributes remain allowed: the admin and Swagger UI set
# them, and they cannot run code. One exception by hash: django-import-export's export page has
# an inline handler, `onSelectToggleChange(event)` ("Select all"); only that exact text may run.
EXPORT_SELECT_ALL_HANDLER = "'sha256-wid4zL8fR53ZYy1ljOepzR77Dn6vWUUxuNnnWWBP3I8='"
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, UNSAFE_HASHES, EXPORT_SELECT_ALL_HANDLER],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "font-src": [SELF, "data:"],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(_raw("LLMHIVE_STATIC_ROOT") or VAR_DIR / "static")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": _raw("LLMHIVE_LOG_LEVEL") or "INFO"},
    "loggers": {"httpx": {"level": "WARNING"}, "httpcore": {"level": "WARNING"}},
}

# --- OpenRouter -----------------------------------------------------------------------------
OPENROUTER_BASE_URL = os.environ.get("OPENROUTER_BASE_URL", "https://openrouter.ai/api/v1")
# Optional: the catalog needs no key; health pings and /key do.
OPENROUTER_API_KEY = os.environ.get("OPENROUTER_API_KEY", "")
LLMHIVE_OPENROUTER_TIMEOUT = envfloat("LLMHIVE_OPENROUTER_TIMEOUT", 20.0)
LLMHIVE_OPENROUTER_MAX_RETRIES = envint("LLMHIVE_OPENROUTER_MAX_RETRIES", 3)
# A call's total time, retries and pauses included (the timeout above bounds each wait for a
# byte; a server sending a byte a second would pass it for ever), and its answer's largest size.
LLMHIVE_OPENROUTER_DEADLINE = envfloat("LLMHIVE_OPENROUTER_DEADLINE", 60.0)
LLMHIVE_OPENROUTER_MAX_RESPONSE_BYTES = envint("LLMHIVE_OPENROUTER_MAX_RESPONSE_BYTES", 32 * 1024 * 1024)

# --- Catalog ---------------------------------------------------------------------------------
# A sync that would mark more than this fraction of the active models missing is refused.
LLMHIVE_SYNC_MAX_MISSING_FRACTION = envfloat("LLMHIVE_SYNC_MAX_MISSING_FRACTION", 0.2)
LLMHIVE_SYNC_INTERVAL_HOURS = envint("LLMHIVE_SYNC_INTERVAL_HOURS", 6)
# The catalog counts as stale (the dashboard says so, GET /health says `degraded`) when its last
# good sync is older than the sync interval plus this.
LLMHIVE_CATALOG_GRACE_MINUTES = envint("LLMHIVE_CATALOG_GRACE_MINUTES", 60)
# A whole sync's time until its list is fetched: under the task timeout (Q_CLUSTER's 600 s), so
# that a slow sync fails with a clear error rather than being killed.
LLMHIVE_SYNC_DEADLINE_SECONDS = envfloat("LLMHIVE_SYNC_DEADLINE_SECONDS", 300.0)
# A run whose lock has not been refreshed (a heartbeat at each step) for this long is presumed
# dead (a killed worker on another host) and may be taken over; on the same host a holder whose
# process is gone is recognised at once (core.locks).
LLMHIVE_SYNC_LOCK_SECONDS = envint("LLMHIVE_SYNC_LOCK_SECONDS", 900)
LLMHIVE_RESEARCH_ENDPOINTS_LIMIT = envint("LLMHIVE_RESEARCH_ENDPOINTS_LIMIT", 40)
LLMHIVE_MODEL_EXPIRY_WARNING_DAYS = envint("LLMHIVE_MODEL_EXPIRY_WARNING_DAYS", 14)

# Used only when OpenRouter cannot be reached and the catalog holds no models.
BOOTSTRAP_FALLBACK_MODELS = envlist(
    "LLMHIVE_BOOTSTRAP_FALLBACK_MODELS",
    ["openai/gpt-4o", "anthropic/claude-sonnet-4", "openai/gpt-4o-mini"],
)

# --- Health ----------------------------------------------------------------------------------
LLMHIVE_HEALTH_PING_DAILY_CAP_USD = envdecimal("LLMHIVE_HEALTH_PING_DAILY_CAP_USD", "0.50")
# How many models a health run checks by default, how many at once, and each call's timeout.
LLMHIVE_HEALTH_TOP = envint("LLMHIVE_HEALTH_TOP", 20)
LLMHIVE_HEALTH_CONCURRENCY = envint("LLMHIVE_HEALTH_CONCURRENCY", 10)
LLMHIVE_HEALTH_TIMEOUT_SECONDS = envfloat("LLMHIVE_HEALTH_TIMEOUT_SECONDS", 15.0)
# Failed checks in a row before a model_unhealthy alert; reliability under which the dashboard
# lists a model as unhealthy.
LLMHIVE_HEALTH_FAILURES_BEFORE_ALERT = envint("LLMHIVE_HEALTH_FAILURES_BEFORE_ALERT", 3)
LLMHIVE_UNHEALTHY_RELIABILITY = envfloat("LLMHIVE_UNHEALTHY_RELIABILITY", 0.5)
# Reliability is a mean of a model's check results in which a check's weight halves every this
# many checks (hourly checks: half a day).
LLMHIVE_HEALTH_RELIABILITY_HALF_LIFE = envfloat("LLMHIVE_HEALTH_RELIABILITY_HALF_LIFE", 12.0)

# --- Alert deliveries (core.tasks) -----------------------------------------------------------
# Attempts per delivery; the wait before retry n is RETRY_SECONDS × BACKOFF^(n − 1) (60 s, 4 min,
# 16 min, 64 min by default), then the delivery is logged as failed.
LLMHIVE_ALERT_MAX_ATTEMPTS = envint("LLMHIVE_ALERT_MAX_ATTEMPTS", 5)
LLMHIVE_ALERT_RETRY_SECONDS = envfloat("LLMHIVE_ALERT_RETRY_SECONDS", 60.0)
LLMHIVE_ALERT_RETRY_BACKOFF = envfloat("LLMHIVE_ALERT_RETRY_BACKOFF", 4.0)
LLMHIVE_ALERT_WEBHOOK_TIMEOUT_SECONDS = envfloat("LLMHIVE_ALERT_WEBHOOK_TIMEOUT_SECONDS", 10.0)
# The sender of alert e-mails; empty: Django's DEFAULT_FROM_EMAIL. The mail server is Django's
# EMAIL_* settings, read from the environment below.
LLMHIVE_ALERT_EMAIL_FROM = os.environ.get("LLMHIVE_ALERT_EMAIL_FROM", "")

# The mail server alert e-mails go through (Django's own settings, from the environment; the
# defaults are Django's: SMTP on localhost:25, no login).
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = envint("EMAIL_PORT", 25)
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = envbool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = envint("EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "llmhive@localhost")


# --- Task queue (django-q2) ------------------------------------------------------------------
LLMHIVE_REDIS_URL = os.environ.get("LLMHIVE_REDIS_URL", "")
Q_CLUSTER = {
    "name": os.environ.get("LLMHIVE_Q_NAME", "llmhive"),
    "workers": envint("LLMHIVE_Q_WORKERS", 2),
    "timeout": 600,
    # retry must exceed timeout, or a slow task is handed to a second worker while it runs.
    "retry": 900,
    "max_attempts": 2,
    "catch_up": False,
    "save_limit": 500,
    "poll": envfloat("LLMHIVE_Q_POLL", 1.0),
    # The scheduler runs when the guard loop has counted 30 s; a cycle of 30 makes it run at
    # start-up, which the tests use to see a schedule fire without waiting.
    "guard_cycle": envfloat("LLMHIVE_Q_GUARD_CYCLE", 0.5),
    "label": "Task queue",
}
if LLMHIVE_REDIS_URL:
    Q_CLUSTER["redis"] = LLMHIVE_REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# A cache every process of this deployment shares: django-q2 keeps its cluster statistics there,
# which is how GET /health knows whether a worker is alive. Redis when configured; otherwise
# files under VAR_DIR (one machine, no extra service).
if LLMHIVE_REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": LLMHIVE_REDIS_URL}}
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }

# --- Routing ---------------------------------------------------------------------------------
# Serving processes move what lives as long as they do (Django, the modules, the first routing
# snapshot) out of the cyclic garbage collector's scans (core.heap): full collections of 56-285 ms
# in busy route workers took 10-30 ms after. Off: the collector scans everything, as Python does.
LLMHIVE_GC_FREEZE = envbool("LLMHIVE_GC_FREEZE", True)
# Each gunicorn worker builds its routing snapshot as it starts (llmhive_site.workers.ready), so
# that no request waits for it (40 ms at 349 models, 230-290 ms at 3,490) and a worker that has
# answered no /route yet still routes from memory while the database is away. Off for a pool that
# only takes usage (docs/ops/deploying.md): it then holds no snapshot and rebuilds none after its
# batches.
LLMHIVE_ROUTING_PREWARM = envbool("LLMHIVE_ROUTING_PREWARM", True)
# How often each process checks whether the data behind its routing snapshot and API key cache
# changed (one query per interval per process; decisions in between make none).
LLMHIVE_SNAPSHOT_CHECK_SECONDS = envfloat("LLMHIVE_SNAPSHOT_CHECK_SECONDS", 0.5)
# Seeds the draws of exploration and of half-open cooldowns, for repeatable tests and simulations
# (unset in production: each process draws its own).
LLMHIVE_ROUTING_SEED = envint("LLMHIVE_ROUTING_SEED", None)
# The admin's "Evaluate routing" page replays at most this many events (the most recent), so it
# answers in seconds; manage.py evaluate_routing has no ceiling.
LLMHIVE_EVALUATION_MAX_EVENTS = envint("LLMHIVE_EVALUATION_MAX_EVENTS", 20_000)
# Outcomes and spend reported to other processes move with every usage batch: each worker takes
# them in (the rows changed since its last look, and the budget aggregate) at most this often,
# so a steady flow of usage does not keep it refreshing. Its own batches (read in the background
# as soon as each is answered), cooldowns, health and catalog or role changes are seen as before
# (LLMHIVE_SNAPSHOT_CHECK_SECONDS).
LLMHIVE_OUTCOMES_CHECK_SECONDS = envfloat("LLMHIVE_OUTCOMES_CHECK_SECONDS", 2.0)
# New outcomes are read row by row. Where a worker cannot ask the database which rows committed
# since its last look (SQLite; inside a transaction), it re-reads the memory rows written since
# the last one, less this margin (a batch's rows are stamped before it commits; on several
# hosts, add the clock skew between them).
LLMHIVE_STATS_REFRESH_LAG_SECONDS = envfloat("LLMHIVE_STATS_REFRESH_LAG_SECONDS", 5.0)
# Budget state is reloaded as soon as spend or budgets change (the data versions, checked every
# LLMHIVE_SNAPSHOT_CHECK_SECONDS); this TTL is only a safety net: the longest a worker keeps
# its budget state when no version seems to move (default 60 s).
LLMHIVE_BUDGET_STATE_TTL_SECONDS = envfloat("LLMHIVE_BUDGET_STATE_TTL_SECONDS", 60.0)
# Budget forecasts (costs.forecast): the burn rate is the mean daily spend of a budget's scope
# over this many complete UTC days plus today so far; a `budget_forecast` alert is raised when a
# budget is forecast to run out within the lead time (a budget may set its own).
LLMHIVE_BUDGET_FORECAST_DAYS = envint("LLMHIVE_BUDGET_FORECAST_DAYS", 7)
LLMHIVE_BUDGET_FORECAST_LEAD_HOURS = envint("LLMHIVE_BUDGET_FORECAST_LEAD_HOURS", 72)
if LLMHIVE_BUDGET_FORECAST_DAYS < 1 or LLMHIVE_BUDGET_FORECAST_LEAD_HOURS < 0:
    raise SettingError(
        "LLMHIVE_BUDGET_FORECAST_DAYS must be 1 or more and LLMHIVE_BUDGET_FORECAST_LEAD_HOURS 0 or more"
    )
# Cooldowns (routing.cooldowns): this many retryable failures of a model (rate_limited,
# provider_error, timeout) reported within the window leave it out for LLMHIVE_COOLDOWN_SECONDS,
# doubling on each trip in a row up to the max; past that, this share of decisions may try it
# (half-open) until a success closes it or a failure reopens it. A role may override each.
LLMHIVE_COOLDOWN_FAILURES = envint("LLMHIVE_COOLDOWN_FAILURES", 3)
LLMHIVE_COOLDOWN_WINDOW_SECONDS = envint("LLMHIVE_COOLDOWN_WINDOW_SECONDS", 60)
LLMHIVE_COOLDOWN_SECONDS = envint("LLMHIVE_COOLDOWN_SECONDS", 30)
LLMHIVE_COOLDOWN_MAX_SECONDS = envint("LLMHIVE_COOLDOWN_MAX_SECONDS", 600)
LLMHIVE_COOLDOWN_HALF_OPEN_SHARE = envfloat("LLMHIVE_COOLDOWN_HALF_OPEN_SHARE", 0.1)

# --- Usage ---------------------------------------------------------------------------------------
# The oldest usage event accepted, in days before now (older is a 422; default two years): late
# reports and a backfill are fine, a timestamp from year 1 is a bug. Events ahead of the server's
# clock by more than five minutes are refused too.
LLMHIVE_USAGE_MAX_AGE_DAYS = envint("LLMHIVE_USAGE_MAX_AGE_DAYS", 730)

# --- Reconciliation with OpenRouter's generation records (costs.reconcile) ------------------------
# An event's cost matches OpenRouter's when they differ by at most the larger of these: an
# absolute amount in USD and a share of the ledger's cost. Anything more is drift.
LLMHIVE_RECONCILE_TOLERANCE_USD = envdecimal("LLMHIVE_RECONCILE_TOLERANCE_USD", "0.000001")
LLMHIVE_RECONCILE_TOLERANCE_RELATIVE = envdecimal("LLMHIVE_RECONCILE_TOLERANCE_RELATIVE", "0.01")
# Generations asked about per run (the hourly task, or `manage.py reconcile_costs` without --limit).
LLMHIVE_RECONCILE_LIMIT = envint("LLMHIVE_RECONCILE_LIMIT", 500)
# A generation OpenRouter still answers 404 for after this many runs is settled as not found.
LLMHIVE_RECONCILE_MAX_ATTEMPTS = envint("LLMHIVE_RECONCILE_MAX_ATTEMPTS", 5)
# Events older than this are not asked about unless a run names an earlier --since.
LLMHIVE_RECONCILE_MAX_AGE_DAYS = envint("LLMHIVE_RECONCILE_MAX_AGE_DAYS", 30)

# --- Exports -------------------------------------------------------------------------------------
# The admin's export needs the model's `export_*` permission (Finance has it). Formula escaping
# is done by costs.csvsafe for every risky first character, not only the '=' the library knows.
IMPORT_EXPORT_EXPORT_PERMISSION_CODE = "export"
IMPORT_EXPORT_ESCAPE_FORMULAE_ON_EXPORT = False
