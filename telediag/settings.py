"""Telediag settings.

Everything a deployment changes comes from environment variables (documented in README.md).
With none set, the platform runs on embedded defaults: SQLite, local media and a Celery broker
on the local filesystem, so a fresh machine needs nothing but Python.
"""

from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from core.env import env_bool, env_choice, env_float, env_int, env_list, env_str
from telediag import brokers

BASE_DIR = Path(__file__).resolve().parent.parent
# Writable state of an embedded install: database, media, broker queue, model files.
VAR_DIR = Path(env_str("TELEDIAG_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", False)
DEMO_MODE = env_bool("TELEDIAG_DEMO", False)

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not (DEBUG or DEMO_MODE):
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG and TELEDIAG_DEMO are off.")
    SECRET_KEY = "insecure-development-key-only-for-debug-and-demo-installs-0123456789"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
_behind_proxy = env_bool("TELEDIAG_BEHIND_PROXY", False)
# Reverse proxies in front of Telediag that append to X-Forwarded-For: the client's address is
# the one the outermost of them saw (core.client_ip). 0 ignores the header (clients set it).
TRUSTED_PROXY_COUNT = env_int("TELEDIAG_TRUSTED_PROXIES", 1 if _behind_proxy else 0)
if TRUSTED_PROXY_COUNT < 0:
    raise ImproperlyConfigured("TELEDIAG_TRUSTED_PROXIES must be 0 or more.")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI files served from here: no CDN, and a strict CSP
    "audit",
    "accounts",
    "cases",
    "training",
    "inference",
    "workspace",
    "research",
    "security",
    "axes",
    # Second factor (django-otp): TOTP authenticator apps, and single-use recovery codes.
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "ops",
    "django_prometheus",
    "idempotency",
    "monitoring",
    "reports",
    "notifications",
]

MIDDLEWARE = [
    # First: probes answer before host checks and the HTTPS redirect (orchestrators call them by IP).
    "ops.middleware.HealthProbeMiddleware",
    "ops.middleware.RequestIdMiddleware",
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "security.middleware.NoStoreMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "security.middleware.SessionIdleTimeoutMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "security.middleware.SecondFactorMiddleware",
    "security.middleware.PasswordChangeRequiredMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last: turns a lockout raised by the authentication backend into the lockout page.
    "axes.middleware.AxesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "telediag.urls"
WSGI_APPLICATION = "telediag.wsgi.application"
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

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
                "core.context_processors.demo_mode",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'telediag.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
        conn_health_checks=True,  # a reused connection that broke (database restart) is replaced
    )
}
# The password can come from a secret file (DATABASE_PASSWORD_FILE) instead of the URL.
_database_password = env_str("DATABASE_PASSWORD")
if _database_password:
    DATABASES["default"]["PASSWORD"] = _database_password
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    # Several processes (web, worker) share the file: wait for locks instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# One cache shared by every web process (throttle counters must not be per process): the
# database by default (its table is created by `migrate`), or Redis when TELEDIAG_CACHE_URL is set.
_cache_url = env_str("TELEDIAG_CACHE_URL")
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": _cache_url}
    if _cache_url
    else {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "telediag_cache"}
}

# django-axes checks every login (portal, admin, API token) before the password is even tried.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Login lockout (django-axes), stored in the database so every web process sees the same count;
# keyed by the account and the client's real address together, so an attacker elsewhere cannot
# lock a pathologist out of their own workstation.
AXES_FAILURE_LIMIT = env_int("TELEDIAG_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = env_float("TELEDIAG_LOGIN_LOCKOUT_MINUTES", 15.0) / 60  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_CLIENT_IP_CALLABLE = "core.client_ip.client_ip"
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "security/locked_out.html"
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_VERBOSE = False
# The name authenticator apps show next to the codes.
OTP_TOTP_ISSUER = env_str("TELEDIAG_TOTP_ISSUER", "Telediag")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-gb"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# Static files: Bootstrap is vendored under static/ (hospitals often run offline, no CDN).
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))

# Storage: local media by default, S3 (or any S3-compatible store) when a bucket is named.
# Uploads, heatmaps and model files go to one private bucket; the portal streams them to authorised
# users only, and any URL the storage signs expires after TELEDIAG_S3_URL_EXPIRE_S.
S3_BUCKET = env_str("TELEDIAG_S3_BUCKET")
_s3_options = {
    "bucket_name": S3_BUCKET,
    "endpoint_url": env_str("TELEDIAG_S3_ENDPOINT_URL") or None,
    "region_name": env_str("TELEDIAG_S3_REGION") or None,
    # Empty: boto3's usual chain (AWS_* variables, instance role).
    "access_key": env_str("TELEDIAG_S3_ACCESS_KEY_ID") or None,
    "secret_key": env_str("TELEDIAG_S3_SECRET_ACCESS_KEY") or None,
    "default_acl": None,
    "querystring_auth": True,
    "querystring_expire": env_int("TELEDIAG_S3_URL_EXPIRE_S", 300),
    "signature_version": "s3v4",
    "file_overwrite": False,
}
_extra_storages = {}
if S3_BUCKET:
    _default_storage = {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": _s3_options}
    # Model folders (training.model_store): workers without a shared model volume download from here.
    _extra_storages["models"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {**_s3_options, "location": "models"},
    }
else:
    _default_storage = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
STORAGES = {
    **_extra_storages,
    "default": _default_storage,
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# Uploads. Limits are checked before an image is decoded (decompression bombs).
UPLOAD_MAX_BYTES = env_int("TELEDIAG_UPLOAD_MAX_BYTES", 20 * 1024 * 1024)
UPLOAD_MAX_PIXELS = env_int("TELEDIAG_UPLOAD_MAX_PIXELS", 50_000_000)
UPLOAD_MAX_FILES = env_int("TELEDIAG_UPLOAD_MAX_FILES", 20)
# Memory one image may need to be checked and stored (cases.upload_memory), known before decoding.
UPLOAD_MAX_DECODE_BYTES = env_int("TELEDIAG_UPLOAD_MAX_DECODE_MB", 100) * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
DATA_UPLOAD_MAX_NUMBER_FILES = UPLOAD_MAX_FILES + 5
FILE_UPLOAD_PERMISSIONS = 0o640

# Real data set (tests that need it skip outside CI, and fail in CI when it is missing).
DATASET_DIR = Path(env_str("TELEDIAG_DATASET_DIR", str(BASE_DIR.parent / "shared" / "data" / "all-leukemia")))
# Model files registered by `retrain`, and the default model shipped with the repository.
MODEL_DIR = Path(env_str("TELEDIAG_MODEL_DIR", str(VAR_DIR / "models")))
SHIPPED_MODEL_DIR = BASE_DIR / "models"
LOCAL_WEIGHTS_DIR = env_str("TELEDIAG_LOCAL_WEIGHTS_DIR")
# Commit recorded with each registered model where the checkout has no .git (container images).
GIT_COMMIT = env_str("TELEDIAG_GIT_COMMIT")

# Inference: a case is flagged for attention when its top probability is below this.
ATTENTION_THRESHOLD = env_float("TELEDIAG_ATTENTION_THRESHOLD", 0.6)
# A job queued longer than this is re-enqueued by the sweeper.
INFERENCE_REQUEUE_AFTER_S = env_int("TELEDIAG_INFERENCE_REQUEUE_AFTER_S", 30)
# Starts of one job (a worker that dies mid-analysis costs one) before it is failed with the reason.
INFERENCE_MAX_ATTEMPTS = max(1, env_int("TELEDIAG_INFERENCE_MAX_ATTEMPTS", 3))
# A running job's lease (renewed by its worker every quarter of it); expired, the sweeper requeues it.
INFERENCE_LEASE_S = env_float("TELEDIAG_INFERENCE_LEASE_S", 20.0)
# A worker retries a step this long (backoff) when the database connection breaks (inference.transient).
DB_RETRY_S = env_float("TELEDIAG_DB_RETRY_S", 60.0)

# Celery. No result backend: the database is the source of truth for job state.
CELERY_TASK_SOFT_TIME_LIMIT = env_int("TELEDIAG_TASK_SOFT_TIME_LIMIT", 240)
CELERY_TASK_TIME_LIMIT = env_int("TELEDIAG_TASK_TIME_LIMIT", 300)
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
_broker_dir = VAR_DIR / "broker"
if CELERY_BROKER_URL.startswith("filesystem://"):
    # kombu's filesystem transport expects its folders to exist.
    for _folder in ("queue", "processed", "control"):
        (_broker_dir / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
elif brokers.is_amqp(CELERY_BROKER_URL):
    # RabbitMQ: publisher confirms and quorum queues (telediag.brokers says why).
    CELERY_BROKER_TRANSPORT_OPTIONS = brokers.amqp_transport_options()
    CELERY_TASK_QUEUES = brokers.amqp_task_queues()
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = brokers.redis_transport_options(
        time_limit=CELERY_TASK_TIME_LIMIT,
        socket_timeout=env_float("TELEDIAG_BROKER_SOCKET_TIMEOUT", 10.0),
        connect_timeout=env_float("TELEDIAG_BROKER_CONNECTION_TIMEOUT", 3.0),
    )
CELERY_BROKER_CONNECTION_TIMEOUT = env_float("TELEDIAG_BROKER_CONNECTION_TIMEOUT", 3.0)
# Publishing an analysis job (web requests, the sweeper): every socket operation bounded by this;
# after a failure a process skips the broker for BROKER_PUBLISH_BACKOFF_S (inference.publishing).
BROKER_PUBLISH_TIMEOUT_S = env_float("TELEDIAG_BROKER_PUBLISH_TIMEOUT", 1.0)
BROKER_PUBLISH_BACKOFF_S = env_float("TELEDIAG_BROKER_PUBLISH_BACKOFF_S", 5.0)
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_MAX_TASKS_PER_CHILD = env_int("TELEDIAG_WORKER_MAX_TASKS_PER_CHILD", 500)
# Celery's Django fix-up closes the database connection before and after every task unless told to
# reuse it; connecting anew for every smear took ~8 % of the worker's py-spy samples. With
# this it closes them every N tasks, and each task starts with close_old_connections() (like a
# Django request), which drops a connection older than DATABASE_CONN_MAX_AGE or one that broke.
CELERY_DB_REUSE_MAX = env_int("TELEDIAG_WORKER_DB_REUSE_MAX", 100)
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "inference.*": {"queue": "inference"},
    "training.*": {"queue": "training"},
}
CELERY_TASK_ALWAYS_EAGER = env_bool("TELEDIAG_CELERY_EAGER", False)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# The sweeper re-enqueues analysis left queued (broker down at submission, a lost message).
CELERY_BEAT_SCHEDULE = {
    "inference-sweep": {
        "task": "inference.sweep_analysis",
        "schedule": env_float("TELEDIAG_SWEEP_INTERVAL_S", 10.0),
        "options": {"queue": "default", "expires": env_float("TELEDIAG_SWEEP_INTERVAL_S", 10.0)},
    },
    "idempotency-purge": {
        "task": "idempotency.purge_expired_keys",
        "schedule": 24 * 3600.0,
        "options": {"queue": "default", "expires": 3600.0},
    },
    # Alerts follow each signature; this catches what a failed check after a signature missed.
    "monitoring-evaluate": {
        "task": "monitoring.evaluate_alerts",
        "schedule": env_float("TELEDIAG_MONITORING_INTERVAL_S", 3600.0),
        "options": {"queue": "default", "expires": env_float("TELEDIAG_MONITORING_INTERVAL_S", 3600.0)},
    },
}
# How long an Idempotency-Key's first answer is kept for retries (then the key is forgotten).
IDEMPOTENCY_KEY_RETENTION_DAYS = env_int("TELEDIAG_IDEMPOTENCY_KEY_DAYS", 7)
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# Model versions kept loaded in each worker process.
INFERENCE_MODEL_CACHE_SIZE = env_int("TELEDIAG_INFERENCE_MODEL_CACHE_SIZE", 2)
# How a worker runs a model: TFLite when its export reproduces the Keras model (auto), or always one.
INFERENCE_RUNTIME = env_choice("TELEDIAG_INFERENCE_RUNTIME", "auto", ("auto", "tflite", "keras"))
# Where TFLite exports are cached when the model folder is read-only (default: beside the model file).
INFERENCE_SERVING_CACHE_DIR = env_str("TELEDIAG_SERVING_CACHE_DIR")
# Threads per worker child for the model (0: TensorFlow's default, all cores).
INFERENCE_TF_INTRA_OP_THREADS = env_int("TELEDIAG_TF_INTRA_OP_THREADS", 0)
INFERENCE_TF_INTER_OP_THREADS = env_int("TELEDIAG_TF_INTER_OP_THREADS", 0)
# Micro-batching: a worker takes up to this many waiting smears of one model version into one model
# call (GPU nodes: 8-32). 1: one image per call, the faster choice on CPUs.
INFERENCE_BATCH_MAX = max(1, env_int("TELEDIAG_INFERENCE_BATCH_MAX", 1))

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 25,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core.api_errors.exception_handler",
    # Throttles key on core.client_ip; DRF's own reading of X-Forwarded-For uses the same count.
    "NUM_PROXIES": TRUSTED_PROXY_COUNT,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Telediag API",
    "DESCRIPTION": "Submit blood-smear cases, follow AI analysis and pathologist review.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # Without deep links each operation's path is plain text, not a link inside its toggle button
    # (a nested interactive control for screen readers and keyboards).
    "SWAGGER_UI_SETTINGS": {"deepLinking": False},
    # Two models have a "status": name their enums apart.
    "ENUM_NAME_OVERRIDES": {
        "CaseStatusEnum": "cases.models.Case.Status",
        "AnalysisJobStatusEnum": "inference.models.AnalysisJob.Status",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",  # the default hook, kept
        "core.api_schema.document_unsupported_media_type",
    ],
}

# Content-Security-Policy (django-csp): scripts and styles only from our own static files (no
# inline script or style attribute anywhere), images from here or data: URIs, nothing framed.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

# Security. Off only for DEBUG; a production profile passes `manage.py check --deploy`.
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = env_int("TELEDIAG_SESSION_AGE_S", 8 * 3600)
# A session unused this long is signed out (security.middleware.SessionIdleTimeoutMiddleware).
SESSION_IDLE_TIMEOUT_S = env_int("TELEDIAG_SESSION_IDLE_MINUTES", 30) * 60
_https = env_bool("TELEDIAG_HTTPS", not (DEBUG or DEMO_MODE))
SESSION_COOKIE_SECURE = _https
CSRF_COOKIE_SECURE = _https
SECURE_SSL_REDIRECT = env_bool("TELEDIAG_SSL_REDIRECT", True) and _https
SECURE_HSTS_SECONDS = env_int("TELEDIAG_HSTS_SECONDS", 31536000 if _https else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = _https
SECURE_HSTS_PRELOAD = _https
if _behind_proxy:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Logs: one line per event; "json" for log collectors, with the request, case and task ids.
LOG_FORMAT = env_choice("TELEDIAG_LOG_FORMAT", "plain", ("plain", "json"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "core.log_context.ContextFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s%(context)s"},
        "json": {
            "()": "core.log_context.json_formatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(case_id)s %(task_id)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["context"]}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    # django-axes logs every attempt at INFO; the audit trail records them already.
    "loggers": {"axes": {"level": "WARNING"}},
}
# Celery would replace this configuration with its own format in workers.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# Operations: metrics, worker warm-up and heartbeat (ops/).
# /metrics (Prometheus) answers only with "Authorization: Bearer <token>"; no token: it is off.
METRICS_TOKEN = env_str("TELEDIAG_METRICS_TOKEN")
PROMETHEUS_EXPORT_MIGRATIONS = False
# An inference worker process loads the active model when it starts, not on its first case.
WORKER_WARMUP = env_bool("TELEDIAG_WORKER_WARMUP", True)
# Loading TensorFlow and a model in a fresh worker process takes seconds (Celery's default: 4 s).
CELERY_WORKER_PROC_ALIVE_TIMEOUT = env_float("TELEDIAG_WORKER_START_TIMEOUT_S", 120.0)
# A worker touches this file while it is connected to the broker (container health check).
WORKER_HEARTBEAT_FILE = env_str("TELEDIAG_WORKER_HEARTBEAT_FILE")
WORKER_HEARTBEAT_S = env_float("TELEDIAG_WORKER_HEARTBEAT_S", 10.0)

# Signed reports (reports/): links in e-mails and FHIR bundles use this address of the portal
# (e.g. https://telediag.hospital.example); empty: paths only.
PUBLIC_URL = env_str("TELEDIAG_PUBLIC_URL")
# Push every signed or amended report to a FHIR server (a Bundle POSTed to this URL, e.g.
# https://fhir.hospital.example/fhir/Bundle) from a Celery task; empty: no push.
FHIR_PUSH_URL = env_str("TELEDIAG_FHIR_PUSH_URL")
FHIR_PUSH_TOKEN = env_str("TELEDIAG_FHIR_PUSH_TOKEN")  # sent as "Authorization: Bearer <token>"
FHIR_PUSH_TIMEOUT_S = env_float("TELEDIAG_FHIR_PUSH_TIMEOUT_S", 10.0)
FHIR_PUSH_MAX_RETRIES = env_int("TELEDIAG_FHIR_PUSH_RETRIES", 8)
FHIR_PUSH_RETRY_BACKOFF_S = 30  # then doubling, at most 10 minutes apart

# Notifications (notifications/): in-app always; also e-mailed when this is on and TELEDIAG_EMAIL
# is not off (the e-mail settings below, shared with monitoring alerts).
NOTIFICATION_EMAILS = env_bool("TELEDIAG_NOTIFICATION_EMAILS", False)

# Model monitoring (monitoring/): agreement with pathologists and drift per referring site.
MONITORING_WINDOW_CASES = env_int("TELEDIAG_MONITORING_WINDOW_CASES", 50)
MONITORING_MIN_CASES = env_int("TELEDIAG_MONITORING_MIN_CASES", 20)
MONITORING_DRIFT_ALERT = env_float("TELEDIAG_DRIFT_ALERT", 0.25)
MONITORING_ALERT_EMAILS = env_list("TELEDIAG_ALERT_EMAILS")
if MONITORING_WINDOW_CASES < 1 or not 1 <= MONITORING_MIN_CASES <= MONITORING_WINDOW_CASES:
    raise ImproperlyConfigured("TELEDIAG_MONITORING_MIN_CASES must be 1 to TELEDIAG_MONITORING_WINDOW_CASES.")
if not 0 < MONITORING_DRIFT_ALERT < 1:
    raise ImproperlyConfigured("TELEDIAG_DRIFT_ALERT is a share of images: above 0 and below 1.")
# E-mail: off (alerts only in the portal), smtp, or console (written to the log; trials).
EMAIL_MODE = env_choice("TELEDIAG_EMAIL", "off", ("off", "smtp", "console"))
EMAIL_BACKEND = {
    "smtp": "django.core.mail.backends.smtp.EmailBackend",
    "console": "django.core.mail.backends.console.EmailBackend",
}.get(EMAIL_MODE, "django.core.mail.backends.dummy.EmailBackend")
EMAIL_HOST = env_str("TELEDIAG_EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("TELEDIAG_EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("TELEDIAG_EMAIL_USER")
EMAIL_HOST_PASSWORD = env_str("TELEDIAG_EMAIL_PASSWORD")
EMAIL_USE_TLS = env_bool("TELEDIAG_EMAIL_STARTTLS", False)
EMAIL_TIMEOUT = env_float("TELEDIAG_EMAIL_TIMEOUT_S", 10.0)
DEFAULT_FROM_EMAIL = env_str("TELEDIAG_EMAIL_FROM", "telediag@localhost")
