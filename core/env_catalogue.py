"""What each environment variable does: the text of the table in docs/operations.md.

``manage.py env_vars`` prints the table from this catalogue and the registry of variables the
settings actually read (core.env.REGISTRY: kind and default). Tests check that every variable
the code reads is described here, that nothing here is stale, and that the documented table is
the printed one. ``default`` is given here only where the code computes it (paths under the
checkout, values that follow DEBUG); otherwise it is the one the code passes.
"""

# name: (default shown, or None for the code's default; what it does[; kind, for variables read outside settings])
CATALOGUE = {
    # Core
    "SECRET_KEY": ("required unless `DEBUG`/`TELEDIAG_DEMO`", "Django secret key (50+ random characters)."),
    "DEBUG": (None, "Never `true` in production: error pages with settings, no HTTPS defaults."),
    "TELEDIAG_DEMO": (
        None,
        "Demo mode (`make run`; `manage.py` on the demo install needs it too): embedded defaults, demo users, "
        "a banner on every page. Never with patient data.",
    ),
    "ALLOWED_HOSTS": (None, "Comma-separated host names the portal answers to."),
    "CSRF_TRUSTED_ORIGINS": (
        None,
        "Origins of forms posted through a proxy, e.g. `https://telediag.hospital.example`.",
    ),
    "TIME_ZONE": (None, "Time zone of dates shown in the portal."),
    "LOG_LEVEL": (None, "Level of the log lines written to standard error."),
    "TELEDIAG_LOG_FORMAT": (None, "`json`: one JSON object per line with request, case and task ids; `plain`: text."),
    # Database and broker
    "DATABASE_URL": ("`sqlite:///var/telediag.sqlite3`", "e.g. `postgres://telediag@db:5432/telediag`."),
    "DATABASE_PASSWORD": ("empty (the URL's)", "Database password, overrides the URL's; use `DATABASE_PASSWORD_FILE`."),
    "DATABASE_CONN_MAX_AGE": (None, "Seconds a database connection is kept (web requests and worker tasks)."),
    "CELERY_BROKER_URL": (
        None,
        "Celery broker, e.g. `redis://redis:6379/0`; `filesystem://` uses folders under `var/broker`.",
    ),
    "TELEDIAG_BROKER_CONNECTION_TIMEOUT": (
        None,
        "Seconds to wait for the broker before a submission records the failure.",
    ),
    "TELEDIAG_BROKER_SOCKET_TIMEOUT": (
        None,
        "Workers' Redis socket timeout (s): a Redis that answers nothing is left, not waited on.",
    ),
    "TELEDIAG_BROKER_PUBLISH_TIMEOUT": (
        None,
        "Seconds each socket operation of a publish may take (connect, send, Redis reply, RabbitMQ confirm).",
    ),
    "TELEDIAG_BROKER_PUBLISH_BACKOFF_S": (
        None,
        "After a failed publish a web process skips the broker this long (s); the sweeper publishes.",
    ),
    "TELEDIAG_CELERY_EAGER": (None, "Run tasks inside the web process (development only)."),
    # Files
    "TELEDIAG_VAR_DIR": (
        "`var/` in the checkout",
        "Writable state of an embedded install: database, media, broker, models.",
    ),
    "MEDIA_ROOT": ("`$TELEDIAG_VAR_DIR/media`", "Local folder of uploaded images and heatmaps (without S3)."),
    "STATIC_ROOT": ("`staticfiles/` in the checkout", "Where `collectstatic` puts the portal's static files."),
    "TELEDIAG_MODEL_DIR": (
        "`$TELEDIAG_VAR_DIR/models`",
        "Registered model files; a shared volume, or a per-node cache with S3.",
    ),
    "TELEDIAG_S3_BUCKET": (None, "Store images, heatmaps and model files in this private S3 bucket (django-storages)."),
    "TELEDIAG_S3_ENDPOINT_URL": (None, "Endpoint of an S3-compatible store (MinIO, Ceph); empty: AWS."),
    "TELEDIAG_S3_REGION": (None, "Region of the bucket."),
    "TELEDIAG_S3_ACCESS_KEY_ID": (None, "S3 access key; empty: boto3's chain (`AWS_*` variables, instance role)."),
    "TELEDIAG_S3_SECRET_ACCESS_KEY": (None, "S3 secret key; use `TELEDIAG_S3_SECRET_ACCESS_KEY_FILE`."),
    "TELEDIAG_S3_URL_EXPIRE_S": (
        None,
        "Lifetime in seconds of any URL the storage signs (the portal streams files itself).",
    ),
    "TELEDIAG_UPLOAD_MAX_BYTES": (None, "Largest accepted image file (bytes)."),
    "TELEDIAG_UPLOAD_MAX_PIXELS": (None, "Largest accepted image (pixels), checked before decoding."),
    "TELEDIAG_UPLOAD_MAX_FILES": (None, "Images per case."),
    # Security
    "TELEDIAG_HTTPS": ("`true` unless `DEBUG`/demo", "Secure cookies, HSTS and the HTTPS redirect."),
    "TELEDIAG_SSL_REDIRECT": (
        None,
        "With `TELEDIAG_HTTPS`: redirect plain HTTP to HTTPS (off when the proxy does it).",
    ),
    "TELEDIAG_HSTS_SECONDS": ("`31536000` with HTTPS, else `0`", "HSTS max-age."),
    "TELEDIAG_BEHIND_PROXY": (None, "Trust `X-Forwarded-Proto` from your reverse proxy."),
    "TELEDIAG_SESSION_AGE_S": (None, "Seconds a portal login lasts."),
    "TELEDIAG_TRUSTED_PROXIES": (
        "`1` behind a proxy, else `0`",
        "Reverse proxies appending to `X-Forwarded-For`; the client address is the one the outermost saw.",
    ),
    "TELEDIAG_CACHE_URL": (
        "empty (a database cache table)",
        "Shared cache of throttle counters, e.g. `redis://redis:6379/1`.",
    ),
    "TELEDIAG_LOGIN_FAILURE_LIMIT": (None, "Failed sign-ins for one account from one address before it is locked."),
    "TELEDIAG_LOGIN_LOCKOUT_MINUTES": (None, "Minutes such a lockout lasts."),
    "TELEDIAG_SESSION_IDLE_MINUTES": (None, "A portal session with no activity this long is signed out."),
    "TELEDIAG_TOTP_ISSUER": (None, "The name authenticator apps show next to Telediag's codes."),
    "TELEDIAG_UPLOAD_MAX_DECODE_MB": (
        None,
        "Memory one image may need to be checked and stored, known before decoding.",
    ),
    "TELEDIAG_METRICS_TOKEN": (None, "Bearer token of `/metrics`; empty: `/metrics` is off (404)."),
    # Analysis and workers
    "TELEDIAG_ATTENTION_THRESHOLD": (None, "A case whose top probability is below this is flagged for attention."),
    "TELEDIAG_INFERENCE_REQUEUE_AFTER_S": (None, "The sweeper re-enqueues analysis queued longer than this (s)."),
    "TELEDIAG_INFERENCE_MAX_ATTEMPTS": (None, "Starts of one analysis before it fails (a crash each time)."),
    "TELEDIAG_TASK_SOFT_TIME_LIMIT": (None, "Seconds before a task is asked to stop (its job fails with the reason)."),
    "TELEDIAG_TASK_TIME_LIMIT": (None, "Seconds before a task's process is killed."),
    "TELEDIAG_SWEEP_INTERVAL_S": (None, "Seconds between two sweeps (Celery beat)."),
    "TELEDIAG_IDEMPOTENCY_KEY_DAYS": (
        None,
        "Days an `Idempotency-Key`'s first answer is kept for retries; a daily beat task forgets older keys.",
    ),
    "TELEDIAG_INFERENCE_LEASE_S": (
        None,
        "Lease of a running analysis job (s), renewed by its worker; expired, the sweeper requeues the job.",
    ),
    "TELEDIAG_DB_RETRY_S": (
        None,
        "How long a worker retries a step (backoff) while the database connection is broken (s).",
    ),
    "TELEDIAG_WORKER_MAX_TASKS_PER_CHILD": (None, "A worker process is replaced after this many tasks."),
    "TELEDIAG_WORKER_DB_REUSE_MAX": (None, "A worker closes its database connection every this many tasks."),
    "TELEDIAG_INFERENCE_MODEL_CACHE_SIZE": (None, "Model versions kept loaded in each worker process."),
    "TELEDIAG_WORKER_WARMUP": (None, "An inference worker process loads the active model when it starts."),
    "TELEDIAG_WORKER_START_TIMEOUT_S": (None, "Seconds a new worker process may take to start (warm-up included)."),
    "TELEDIAG_WORKER_HEARTBEAT_FILE": (
        None,
        "File a worker touches while connected to the broker (container health check).",
    ),
    "TELEDIAG_WORKER_HEARTBEAT_S": (None, "Seconds between two heartbeats."),
    "TELEDIAG_INFERENCE_RUNTIME": (
        "`auto`",
        "`auto` (verified TFLite export, else Keras), `tflite` or `keras`.",
        "auto|tflite|keras",
    ),
    "TELEDIAG_SERVING_CACHE_DIR": (
        "beside the model file",
        "Folder for TFLite exports when the model folder is read-only.",
    ),
    "TELEDIAG_TF_INTRA_OP_THREADS": (None, "Threads of one model call in each worker process; 0: all cores."),
    "TELEDIAG_TF_INTER_OP_THREADS": (None, "Parallel operations of one model call; 0: TensorFlow's default."),
    "TELEDIAG_INFERENCE_BATCH_MAX": (
        None,
        "Most waiting smears a worker classifies in one model call (GPU nodes: 8-32).",
    ),
    # Reports and notifications
    "TELEDIAG_PUBLIC_URL": (
        "empty (paths only)",
        "Address of the portal, e.g. `https://telediag.hospital.example`, for links in e-mails and FHIR bundles.",
    ),
    "TELEDIAG_FHIR_PUSH_URL": (
        "empty (no push)",
        "POST every signed or amended report's FHIR R4 Bundle here, e.g. `https://fhir.hospital.example/fhir/Bundle`.",
    ),
    "TELEDIAG_FHIR_PUSH_TOKEN": (None, "Sent as `Authorization: Bearer <token>` with each push; use `_FILE`."),
    "TELEDIAG_FHIR_PUSH_TIMEOUT_S": (None, "Seconds one push may take before it counts as failed."),
    "TELEDIAG_FHIR_PUSH_RETRIES": (
        None,
        "Retries of a push that failed transiently (timeout, 429, 5xx), 30 s apart and doubling.",
    ),
    "TELEDIAG_NOTIFICATION_EMAILS": (
        None,
        "Also e-mail each notification (case reference and link; no patient data) when `TELEDIAG_EMAIL` is on.",
    ),
    # Model monitoring and e-mail
    "TELEDIAG_MONITORING_WINDOW_CASES": (
        None,
        "Recent agreement and drift of a site: over its last this many signed cases.",
    ),
    "TELEDIAG_MONITORING_MIN_CASES": (
        None,
        "Fewest comparable cases in that window before an agreement or drift alert can be raised.",
    ),
    "TELEDIAG_DRIFT_ALERT": (
        None,
        "Drift alert above this share of a site's recent images outside validated conditions (0-1).",
    ),
    "TELEDIAG_MONITORING_INTERVAL_S": (None, "Seconds between two checks of every site's alerts (Celery beat)."),
    "TELEDIAG_ALERT_EMAILS": (
        "the laboratory's lab admins",
        "Comma-separated addresses that receive monitoring alerts (with `TELEDIAG_EMAIL` on).",
    ),
    "TELEDIAG_EMAIL": (
        None,
        "`off`: alerts only in the portal; `smtp`: e-mail them; `console`: write them to the log.",
    ),
    "TELEDIAG_EMAIL_HOST": (None, "SMTP server."),
    "TELEDIAG_EMAIL_PORT": (None, "SMTP port."),
    "TELEDIAG_EMAIL_USER": (None, "SMTP user name; empty: no login."),
    "TELEDIAG_EMAIL_PASSWORD": (None, "SMTP password; use `TELEDIAG_EMAIL_PASSWORD_FILE`."),
    "TELEDIAG_EMAIL_STARTTLS": (None, "Upgrade the SMTP connection with STARTTLS."),
    "TELEDIAG_EMAIL_TIMEOUT_S": (None, "Seconds an SMTP operation may take before the e-mail is given up (logged)."),
    "TELEDIAG_EMAIL_FROM": (None, "Sender address of Telediag's e-mails."),
    # Training
    "TELEDIAG_DATASET_DIR": ("`../shared/data/all-leukemia`", "Data set of the smoke tests and examples."),
    "TELEDIAG_LOCAL_WEIGHTS_DIR": (None, "Folder with local ImageNet weight files for training."),
    "TELEDIAG_GIT_COMMIT": ("`git rev-parse HEAD`", "Commit recorded with a trained model (images without `.git`)."),
}
