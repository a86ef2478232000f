"""Hostwright settings, read from the environment.

Without any configuration Hostwright runs embedded: SQLite in ``var/``, a
Celery broker on a redis-server socket in ``var/redis/`` (started by ``rundemo``), mail to the
console. Set
``HOSTING_ENV=production`` and the variables that have no safe default
(``SECRET_KEY``, ``ALLOWED_HOSTS``, ``DATABASE_URL``) become mandatory.
"""

from __future__ import annotations

from pathlib import Path

import environ
from celery.schedules import crontab

from hosting.config import ConfigError, env_bool, env_int, env_list, env_str, hosting_env
from hosting.logging import configure_structlog, logging_config

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("HOSTING_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

HOSTING_ENV = hosting_env()
PRODUCTION = HOSTING_ENV == "production"

if PRODUCTION:
    SECRET_KEY = env_str("SECRET_KEY", hint="set it to a random string of at least 50 characters")
    if len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5:
        raise ConfigError("SECRET_KEY is too weak: use a random string of at least 50 characters")
    ALLOWED_HOSTS = env_list(
        "ALLOWED_HOSTS", hint="set it to the panel's host names, comma-separated"
    )
    _db_url = env_str(
        "DATABASE_URL",
        hint="set it to the PostgreSQL URL, e.g. postgres://user:pass@host:5432/hostwright",
    )
    if not _db_url.startswith(("postgres://", "postgresql://", "pgsql://")):
        raise ConfigError("DATABASE_URL must point at PostgreSQL in production (postgres://...)")
    env_str(
        "CELERY_BROKER_URL",
        hint="set it to the Redis or RabbitMQ URL of the task broker, e.g. redis://host:6379/0",
    )
    env_str(
        "REDIS_URL",
        hint="set it to the Redis URL for the shared cache and rate limits, e.g. redis://host:6379/1",
    )
    if env_bool("DEBUG", False):
        raise ConfigError("DEBUG must be false in production (unset it or set DEBUG=false)")
    DEBUG = False
else:
    SECRET_KEY = env_str("SECRET_KEY", "insecure-development-key-never-use-in-production")
    ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
    DEBUG = env_bool("DEBUG", HOSTING_ENV == "development")

CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "allauth.usersessions",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "accounts",
    "billing",
    "provisioning",
    "support",
    "api",
    "panel",
]

MIDDLEWARE = [
    "hosting.logging.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "allauth.usersessions.middleware.UserSessionsMiddleware",
    "panel.impersonation.ImpersonationGuardMiddleware",
    "accounts.middleware.StaffMFAMiddleware",
]

ROOT_URLCONF = "hosting.urls"
WSGI_APPLICATION = "hosting.wsgi.application"
ASGI_APPLICATION = "hosting.asgi.application"

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
                "hosting.context_processors.branding",
                "panel.context_processors.impersonation",
            ],
        },
    },
]

# Database: DATABASE_URL (PostgreSQL in production and tests), else SQLite in var/.
_env = environ.Env()
if env_str("DATABASE_URL", ""):
    try:
        DATABASES = {"default": _env.db_url("DATABASE_URL")}
    except Exception as exc:  # django-environ raises several kinds on a bad URL
        raise ConfigError(
            f"DATABASE_URL is not a database URL ({exc}): use postgres://user:pass@host:5432/name"
        ) from None
    DATABASES["default"]["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "hostwright.sqlite3",
            "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Cache: Redis when configured (shared by all processes, which login throttling needs).
REDIS_URL = env_str("REDIS_URL", "")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
        }
    }
    # Sessions are read on every signed-in request: from Redis, the database only on a miss
    # (and written to both, so a flushed cache signs nobody out).
    SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 10},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "/"

# django-allauth: e-mail is the login, verification mandatory, failed logins throttled.
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_UNIQUE_EMAIL = True
# A duplicate signup is told that the address is taken: customers asked for a
# clear answer, and the signup rate limit keeps harvesting slow.
ACCOUNT_PREVENT_ENUMERATION = False
ACCOUNT_EMAIL_VERIFICATION = env_str("ACCOUNT_EMAIL_VERIFICATION", "mandatory")
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_CONFIRM_EMAIL_ON_GET = False
ACCOUNT_SIGNUP_FORM_CLASS = "accounts.forms.SignupForm"
ACCOUNT_RATE_LIMITS = {
    # Five failed attempts per account (and per address) within five minutes.
    "login_failed": "10/m/ip,5/5m/key",
    "signup": "20/m/ip",
    "reset_password": "20/m/ip,5/m/key",
}
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[Hostwright] "
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = env_str("MFA_TOTP_ISSUER", "Hostwright")

# E-mail: the console unless an SMTP URL is given.
_email_url = env_str("EMAIL_URL", "")
if _email_url:
    vars().update(_env.email_url("EMAIL_URL"))
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Hostwright <billing@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

LANGUAGE_CODE = "en"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
if not PRODUCTION:
    STATIC_ROOT.mkdir(exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
WHITENOISE_AUTOREFRESH = not PRODUCTION
MEDIA_ROOT = VAR_DIR / "media"
MEDIA_URL = "media/"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

# Celery. Without CELERY_BROKER_URL (development, the demo) the broker is a redis-server that
# `manage.py rundemo` starts on a unix socket in var/redis/ (no TCP port). Production sets
# Redis or RabbitMQ.
DEMO_REDIS_DIR = VAR_DIR / "redis"
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", f"redis+socket://{DEMO_REDIS_DIR / 'redis.sock'}")
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", "") or None
CELERY_TASK_ALWAYS_EAGER = False

# Security. Production turns everything on so that `check --deploy` is clean.
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "api.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "EXCEPTION_HANDLER": "api.errors.api_exception_handler",
    "DEFAULT_THROTTLE_RATES": {
        "customer": env_str("API_THROTTLE_CUSTOMER", "600/min"),
        "provisioning_client": env_str("API_THROTTLE_PROVISIONING", "1200/min"),
    },
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Hostwright API",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "REDOC_DIST": "SIDECAR",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "OperationStateEnum": "provisioning.models.Operation.State",
        "ServiceStateEnum": "provisioning.models.Service.State",
    },
    "DESCRIPTION": (
        "Customer API (personal tokens: `Authorization: Bearer hw_...`) and the provisioning "
        "API for outside billing systems (HMAC-SHA256 signed requests; see the README)."
    ),
}

LOGGING = logging_config(json=env_bool("LOG_JSON", PRODUCTION), level=env_str("LOG_LEVEL", "INFO"))
configure_structlog()

HOSTING_BRAND = env_str("HOSTING_BRAND", "Hostwright")
# Prometheus scrapes /metrics with "Authorization: Bearer <METRICS_TOKEN>"; staff can look too.
METRICS_TOKEN = env_str("METRICS_TOKEN", "")
DEFAULT_CURRENCY = env_str("DEFAULT_CURRENCY", "EUR")

# Provisioning engine: the panel's SSH key, retries and the sweeper's patience.
PROVISIONING_SSH_KEY = env_str("PROVISIONING_SSH_KEY", str(VAR_DIR / "ssh" / "id_ed25519"))
# The web processes' own key: nodes let it run only the agent's file and log actions.
PROVISIONING_WEB_SSH_KEY = env_str(
    "PROVISIONING_WEB_SSH_KEY", str(VAR_DIR / "ssh" / "id_ed25519_web")
)
PROVISIONING_USER_PREFIX = env_str("PROVISIONING_USER_PREFIX", "hw")
PROVISIONING_STEP_RETRIES = env_int("PROVISIONING_STEP_RETRIES", 5)
PROVISIONING_RETRY_BACKOFF = env_int("PROVISIONING_RETRY_BACKOFF", 5)  # seconds, doubled per try
PROVISIONING_COMMAND_TIMEOUT = env_int("PROVISIONING_COMMAND_TIMEOUT", 120)
PROVISIONING_STALE_AFTER = env_int("PROVISIONING_STALE_AFTER", 15 * 60)
# An operation still queued (no step ever claimed it) after this many seconds is sent to the
# workers again: nothing ran yet, and a duplicate message finds the step claimed and does
# nothing, so this may be short. The sweeper looks every PROVISIONING_SWEEP_EVERY seconds.
PROVISIONING_QUEUED_STALE_AFTER = env_int(
    "PROVISIONING_QUEUED_STALE_AFTER", 300 if PRODUCTION else 30
)
PROVISIONING_SWEEP_EVERY = env_int("PROVISIONING_SWEEP_EVERY", 60 if PRODUCTION else 20)
PROVISIONING_MAX_RESUMES = env_int("PROVISIONING_MAX_RESUMES", 3)
# Circuit breaker per node: open after this many connection failures in a row, then try
# again after the cool-down (seconds, doubled after each failed probe, at most 15 minutes).
PROVISIONING_BREAKER_FAILURES = env_int("PROVISIONING_BREAKER_FAILURES", 3)
PROVISIONING_BREAKER_COOLDOWN = env_int("PROVISIONING_BREAKER_COOLDOWN", 60)
# Failpoints let the fault tests fail a chosen step; never set in production.
PROVISIONING_FAILPOINTS = env_bool("PROVISIONING_FAILPOINTS", False) and not PRODUCTION
# Certificates: the ACME CA (Let's Encrypt unless set; Pebble's on a test node), the CA
# listener's certificate when it is not publicly trusted, and the panel's account key.
# Outside production the local node's Pebble (test and demo nodes run one) is the default CA.
ACME_DIRECTORY_URL = env_str(
    "ACME_DIRECTORY_URL",
    "https://acme-v02.api.letsencrypt.org/directory"
    if PRODUCTION
    else "https://127.0.0.1:14000/dir",
)
ACME_CA_BUNDLE = env_str("ACME_CA_BUNDLE", "" if PRODUCTION else "/etc/hostwright/pebble/cert.pem")
ACME_EMAIL = env_str("ACME_EMAIL", "")
ACME_ACCOUNT_KEY = env_str("ACME_ACCOUNT_KEY", str(VAR_DIR / "acme" / "account.pem"))
# The nameservers every hosted zone names in its NS records (comma-separated).
DNS_NAMESERVERS = [
    n.strip()
    for n in env_str("DNS_NAMESERVERS", "ns1.hostwright.test,ns2.hostwright.test").split(",")
    if n.strip()
]

# Billing. STRIPE_API_BASE points the Stripe SDK at the local stand-in
# (deploy/dev/stripe_standin.py) in tests and the demo; empty means Stripe itself.
STRIPE_SECRET_KEY = env_str("STRIPE_SECRET_KEY", "" if PRODUCTION else "sk_test_standin")
STRIPE_WEBHOOK_SECRET = env_str("STRIPE_WEBHOOK_SECRET", "" if PRODUCTION else "whsec_standin")
STRIPE_API_BASE = env_str("STRIPE_API_BASE", "" if PRODUCTION else "http://127.0.0.1:12111")
# VIES, the EU's VAT id register: its REST API, or the local stand-in
# (deploy/dev/vies_standin.py) in tests and the demo; empty means the European Commission's.
VIES_API_BASE = env_str("VIES_API_BASE", "" if PRODUCTION else "http://127.0.0.1:12112")
VIES_TIMEOUT = env_int("VIES_TIMEOUT", 10)
BILLING_SELLER_COUNTRY = env_str("BILLING_SELLER_COUNTRY", "DE")
BILLING_SELLER = {
    "name": env_str("BILLING_SELLER_NAME", HOSTING_BRAND),
    "address": env_str("BILLING_SELLER_ADDRESS", "Example Street 1, 10115 Berlin, Germany"),
    "tax_id": env_str("BILLING_SELLER_TAX_ID", "DE000000000"),
    "email": env_str("BILLING_SELLER_EMAIL", "billing@localhost"),
}
CELERY_BEAT_SCHEDULE = {
    **globals().get("CELERY_BEAT_SCHEDULE", {}),
    # Hourly at a fixed minute, so a restart never postpones it; a day already done is skipped.
    "billing-daily-run": {
        "task": "billing.daily_run",
        "schedule": crontab(minute=str(env_int("BILLING_RUN_MINUTE", 5))),
    },
    # Paid orders whose hand-over to provisioning failed after payment are retried here.
    "billing-orders-sweep": {"task": "billing.orders_sweep", "schedule": 300},
    "support-autoclose": {"task": "support.autoclose_resolved_tickets", "schedule": 3600},
    # Resume or roll back provisioning operations whose worker stopped moving.
    "provisioning-sweep": {
        "task": "provisioning.operations_sweep",
        "schedule": float(PROVISIONING_SWEEP_EVERY),
    },
    "provisioning-drift-check": {"task": "provisioning.drift_check", "schedule": 3600.0},
    # Disk, memory and traffic of every account, for the panel and the plan's limits.
    "provisioning-usage-collect": {"task": "provisioning.usage_collect", "schedule": 900.0},
    # Certificates within 30 days of expiry, daily; account backups, nightly.
    "provisioning-certificates-renew": {
        "task": "provisioning.certificates_renew",
        "schedule": crontab(minute="20", hour="4"),
    },
    "provisioning-backups-nightly": {
        "task": "provisioning.backups_nightly",
        "schedule": crontab(minute="0", hour=str(env_int("BACKUP_HOUR", 3))),
    },
}
# Account backups: how many each account keeps on its node.
BACKUP_KEEP = env_int("BACKUP_KEEP", 7)
# The port customers' SFTP listens on, on every node (deploy/node/parts/85-sftp.sh).
SFTP_PORT = env_int("SFTP_PORT", 2022)

# Support desk: resolved tickets close after this many days; attachment limits.
SUPPORT_AUTOCLOSE_DAYS = env_int("SUPPORT_AUTOCLOSE_DAYS", 7)
SUPPORT_ATTACHMENT_MAX_BYTES = env_int("SUPPORT_ATTACHMENT_MAX_BYTES", 5 * 1024 * 1024)
SUPPORT_ATTACHMENT_MAX_FILES = env_int("SUPPORT_ATTACHMENT_MAX_FILES", 5)
