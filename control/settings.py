"""Settings of the Triune control plane, read from the environment (django-environ).

Every setting has a safe production default: DEBUG is off unless ``DEBUG=1``;
the secret key must be given in production (``SECRET_KEY``). The embedded
launcher (``python -m control.launcher up``) fills ``DATABASE_URL``,
``REDIS_URL`` and friends for the embedded PostgreSQL and Redis it starts.
"""

from __future__ import annotations

import warnings
from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote

import environ
from csp.constants import NONE, SELF, UNSAFE_INLINE

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

DEBUG = env.bool("DEBUG", default=False)
# A random key is generated per process only when DEBUG is on; production must set SECRET_KEY.
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if DEBUG or env.bool("TRIUNE_TESTING", default=False):
        SECRET_KEY = "insecure-development-key-" + "x" * 40
    else:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured("SECRET_KEY is not set: export SECRET_KEY=<a long random string>")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

DATA_DIR = Path(env.str("TRIUNE_DATA_DIR", default=str(BASE_DIR / "var")))
STORAGE_URL = env.str("STORAGE_URL", default=(DATA_DIR / "storage").as_uri())
# Where uploads are received and ingested when STORAGE_URL is not a local folder (the finished
# dataset versions are then copied to STORAGE_URL).
TRIUNE_INGEST_DIR = Path(env.str("TRIUNE_INGEST_DIR", default=str(DATA_DIR / "ingest")))
RAY_ADDRESS = env.str("RAY_ADDRESS", default="")
# The Jobs API of the ``local`` compute target: the head ./triune up started, else RAY_ADDRESS.
TRIUNE_RAY_JOBS_URL = env.str("TRIUNE_RAY_JOBS_URL", default=RAY_ADDRESS or "http://127.0.0.1:8265")
# Ray's token authentication of the local head (the file ./triune up writes, or the token itself).
RAY_AUTH_TOKEN_PATH = env.str("RAY_AUTH_TOKEN_PATH", default="")
# What the local head offers, for launch checks (./triune up starts it with these).
TRIUNE_RAY_CPUS = env.float("TRIUNE_RAY_CPUS", default=0.0)
TRIUNE_RAY_GPUS = env.float("TRIUNE_RAY_GPUS", default=0.0)
# Seconds a cancelled job has between SIGTERM and SIGKILL (finish the step, checkpoint, flush).
TRIUNE_JOB_STOP_WAIT_S = env.int("TRIUNE_JOB_STOP_WAIT_S", default=60)
# Seconds a run may stay queued before the reconciler sends its submit task again (its task lost
# with the broker, or held by it after the worker running it was killed).
TRIUNE_RESUBMIT_AFTER_S = env.int("TRIUNE_RESUBMIT_AFTER_S", default=120)
# Seconds between two reconciliations of active runs with Ray's job states (Celery beat).
TRIUNE_RECONCILE_SECONDS = env.float("TRIUNE_RECONCILE_SECONDS", default=5.0)
REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
PUBLIC_URL = env.str("PUBLIC_URL", default="http://127.0.0.1:8000")
# The platform's address as training jobs reach it (a Ray cluster may need another route to it).
TRIUNE_JOB_PLATFORM_URL = env.str("TRIUNE_JOB_PLATFORM_URL", default=PUBLIC_URL)
# Hosts a notification webhook may reach although they resolve to a private or loopback address.
TRIUNE_WEBHOOK_ALLOWED_HOSTS = env.list("TRIUNE_WEBHOOK_ALLOWED_HOSTS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "axes",
    "control.apps.ControlConfig",
    "webui.apps.WebuiConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a login refused for too many failures into its lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "control.urls"
ASGI_APPLICATION = "control.asgi.application"
WSGI_APPLICATION = "control.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "webui.context_processors.projects",
                "webui.context_processors.open_alerts",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/triune")}
# A unix-socket directory arrives URL-quoted in the host part (postgres://user@%2Fpath%2Fto%2Fsocket/db).
DATABASES["default"]["HOST"] = unquote(DATABASES["default"].get("HOST", ""))
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
MIGRATION_MODULES = {"control": "migrations"}

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
    }
}

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # redis-py 8 gives every socket a 5 s read timeout, exactly how long channels_redis blocks
            # waiting for a message: without a longer one, an idle websocket dies after 5 s.
            "hosts": [{"address": REDIS_URL, "socket_timeout": 30}],
            "capacity": 1000,
            "expiry": 30,
            "prefix": env.str("TRIUNE_CHANNEL_PREFIX", default="triune"),
        },
    }
}

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=REDIS_URL)
# The queue tasks are sent to and workers read (deployments sharing a broker keep theirs apart).
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_TASK_DEFAULT_QUEUE", default="celery")

# Alert e-mails: EMAIL_URL (smtp://user:password@host:587, submission://..., consolemail://); by
# default they are written to the worker's log, since no mail server comes embedded.
vars().update(env.email_url("EMAIL_URL", default="consolemail://"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="triune@localhost")
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

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
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(DATA_DIR / "static")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
# STATIC_ROOT exists only after collectstatic; finders serve the files until then.
warnings.filterwarnings("ignore", message="No directory at")

# Login is rate-limited by django-axes: after AXES_FAILURE_LIMIT wrong passwords for one username from
# one address, that pair is refused (429, a page saying when to retry) for the cool-off, even with the
# right password. Failures are counted in the database; a successful login clears them. Bearer tokens
# (API and run-scoped) never go through ``authenticate()``, so the lockout does not touch them.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Upload bounds: request bodies held in memory are small; files stream to disk.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=5 * 1024 * 1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = env.int("FILE_UPLOAD_MAX_MEMORY_SIZE", default=5 * 1024 * 1024)
DATA_UPLOAD_MAX_NUMBER_FIELDS = 2000
# Bounds of dataset uploads (DESIGN.md §8): one file, one chunk of a resumable upload, one image.
TRIUNE_MAX_UPLOAD_BYTES = env.int("TRIUNE_MAX_UPLOAD_BYTES", default=20 * 1024**3)
TRIUNE_MAX_CHUNK_BYTES = env.int("TRIUNE_MAX_CHUNK_BYTES", default=16 * 1024**2)
TRIUNE_MAX_IMAGE_PIXELS = env.int("TRIUNE_MAX_IMAGE_PIXELS", default=50_000_000)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "control.api.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "control.api.pagination.PagePagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "control.api.schema.AutoSchema",
    "EXCEPTION_HANDLER": "control.api.exceptions.exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "control.api.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Triune API",
    "DESCRIPTION": "Data sources, runs, metrics and alerts of the Triune multi-task RL platform.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI and Redoc from the drf-spectacular-sidecar package, served as our own static files.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Two choice sets share the field name "kind": name each after its model.
    "ENUM_NAME_OVERRIDES": {
        "AlertRuleKindEnum": "control.models.alerts.AlertRule.Kind",
        "NotificationChannelKindEnum": "control.models.alerts.NotificationChannel.Kind",
    },
}

# Production hardening; all switched by environment so a plain-HTTP local install still works.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Every response carries a Content-Security-Policy (django-csp): scripts, styles, images and
# connections (websockets included) only from this origin, no inline script, no plugin, no framing.
# Style attributes are allowed (plotly.js sets some on the SVG it draws); <style> elements are not.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "style-src-attr": [UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}
SESSION_COOKIE_HTTPONLY = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.request": {"level": "ERROR"}},
}
