"""The worker tier's images/s against the runtime's, one image per call and batched (issue 19).

    .venv/bin/python bench/worker_batching.py                      # shipped model, 64 real images, batch 16
    .venv/bin/python bench/worker_batching.py --images 128 --batch 32 --rounds 3

In one process, interleaved over ``--rounds`` (each round runs every variant once):

- runtime, 1 image/call: ``LoadedModel.analyse`` (the verified serving runtime: TFLite on CPU) on
  prepared images: the model alone, what a worker without batching calls per image;
- runtime, batched: ``inference.batching.BatchedGraph`` on ``--batch`` prepared images per call:
  probabilities and Grad-CAM maps, what a batching worker calls;
- worker tier, 1 image/task: ``inference.worker.run_job`` for each queued job: claim, case moves,
  read from storage, decode and prepare, smear check, model, overlay PNG, heatmap stored, Prediction
  and job rows; no Celery hand-off (``bench/inference_path.py`` measures the broker and the upload);
- worker tier, batched: ``inference.batching.run_jobs`` with TELEDIAG_INFERENCE_BATCH_MAX=``--batch``:
  one call per batch of waiting jobs.

Reported: images/s of each, and for the worker tiers the CPU time of this process per image outside
the model call (process CPU minus the model's wall time; PostgreSQL's own CPU is not in it).

Needs PostgreSQL on 127.0.0.1 (``--db``, default telediag_scale_bench: dropped, created, migrated at
the start and dropped at the end) and the real images (``--data``; synthetic smear-like images
without it).
"""

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DEFAULT_DATA, ROOT, Contention, machine_line, median, write_synthetic_smears  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the one-image worker tier")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="model threads (1: the model's CPU time equals its wall time, so CPU outside it is exact)",
    )
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--db", default="telediag_scale_bench")
    return parser.parse_args(argv)


def admin_sql(args, statement):
    import psycopg2

    connection = psycopg2.connect(f"{args.pg.rstrip('/')}/postgres")
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(statement)
    connection.close()


def image_files(data_dir, count):
    root = Path(data_dir)
    if not root.is_dir():
        root = write_synthetic_smears(Path(tempfile.mkdtemp(prefix="bench-batch-data-")), -(-count // 4), 257)
    pools = [
        sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        for folder in sorted(root.iterdir())
        if folder.is_dir()
    ]
    files, i = [], 0
    while len(files) < count and any(i < len(pool) for pool in pools):
        files += [pool[i] for pool in pools if i < len(pool)]
        i += 1
    return files[:count]


def main(argv=None):
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "telediag.settings",
            "DATABASE_URL": f"{args.pg.rstrip('/')}/{args.db}",
            "TELEDIAG_VAR_DIR": str(work / "var"),
            "MEDIA_ROOT": str(work / "media"),
            "CELERY_BROKER_URL": "memory://",
            "SECRET_KEY": "bench-only-" + uuid.uuid4().hex * 2,
            "DEBUG": "false",
            "TELEDIAG_HTTPS": "false",
            "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "TELEDIAG_TF_INTRA_OP_THREADS": str(args.threads),
            "TELEDIAG_TF_INTER_OP_THREADS": "1",
        }
    )
    admin_sql(args, f'DROP DATABASE IF EXISTS "{args.db}" WITH (FORCE)')
    admin_sql(args, f'CREATE DATABASE "{args.db}"')
    try:
        return run(args, work)
    finally:
        from django.db import connections

        connections.close_all()
        admin_sql(args, f'DROP DATABASE IF EXISTS "{args.db}" WITH (FORCE)')
        shutil.rmtree(work, ignore_errors=True)


def run(args, work):
    import django

    sys.path.insert(0, str(ROOT))
    django.setup()
    from datetime import date

    import numpy as np
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.core.management import call_command

    from accounts.models import Organisation, ReferralLink, User
    from cases.models import Patient
    from cases.services import case_submit
    from inference import batching, worker
    from inference.models import AnalysisJob, Prediction
    from ml.images import prepare_image
    from training.default_model import ensure_default_model

    call_command("migrate", verbosity=0, interactive=False)
    (version, *_) = ensure_default_model()
    site = Organisation.objects.create(name="Bench Clinic", kind="referring")
    lab = Organisation.objects.create(name="Bench Laboratory", kind="reading")
    ReferralLink.objects.create(site=site, laboratory=lab)
    clinician = User.objects.create_user("bench_clinician", password=None, organisation=site, role="clinician")
    patient = Patient.objects.create(
        organisation=site,
        mrn="B-1",
        given_name="Bench",
        family_name="Patient",
        sex="F",
        date_of_birth=date(2010, 1, 1),
        created_by=clinician,
    )
    files = image_files(args.data, args.images)
    for path in files:
        case_submit(user=clinician, patient=patient, files=[SimpleUploadedFile(path.name, path.read_bytes())])
    jobs = list(AnalysisJob.objects.order_by("pk").values_list("pk", flat=True))
    loaded = worker.get_model(version)
    graph = batching.batched_graph(loaded)
    if graph is None:
        raise SystemExit("The batched graph did not pass its check for this model: nothing to compare.")
    images = np.stack([prepare_image(path.read_bytes(), loaded.input_size) for path in files])
    print(f"# bench/worker_batching.py — {machine_line()}")
    print(
        f"model {version.name} ({loaded.input_size} px, runtime {loaded.runtime}), {len(files)} images, "
        f"batch {args.batch}, {args.rounds} rounds"
    )

    def reset():
        Prediction.objects.all().delete()
        AnalysisJob.objects.update(status="queued", attempts=0, started_at=None, finished_at=None, task_id="")

    def runtime_single():
        for image in images:
            loaded.analyse(image)
        return len(images), None

    def runtime_batched():
        for start in range(0, len(images), args.batch):
            graph(images[start : start + args.batch].astype(np.float32))
        return len(images), None

    model_cpu = [0.0]

    def timed(call):
        # The process's CPU time inside the model calls (wall time would count waiting on a busy machine).
        def wrapper(*a, **k):
            cpu0 = time.process_time()
            try:
                return call(*a, **k)
            finally:
                model_cpu[0] += time.process_time() - cpu0

        return wrapper

    def tier(batched):
        reset()
        os.environ["TELEDIAG_INFERENCE_BATCH_MAX"] = str(args.batch if batched else 1)
        model_cpu[0] = 0.0
        # Every model call the worker makes: the one-image pass (probabilities, Grad-CAM and the OOD
        # features), the batched graph, and the OOD features' own pass after a batched call.
        plain_analyse, plain_features, plain_graph = loaded.analyse_all, loaded.features, graph._serve
        loaded.analyse_all, loaded.features = timed(plain_analyse), timed(plain_features)
        graph._serve = timed(plain_graph)
        try:
            cpu0 = time.process_time()
            for job_id in jobs:
                if batched:
                    batching.run_jobs([job_id], task_id=f"bench-{job_id}")
                else:
                    worker.run_job(job_id, task_id=f"bench-{job_id}")
            cpu = time.process_time() - cpu0
        finally:
            del loaded.analyse_all, loaded.features  # the instance attributes: the methods again
            graph._serve = plain_graph
        assert Prediction.objects.count() == len(jobs), "every job must end with a prediction"
        return len(jobs), (cpu - model_cpu[0]) / len(jobs) * 1000.0

    if args.profile:
        import cProfile
        import pstats

        tier(False)
        profiler = cProfile.Profile(time.process_time)
        profiler.runcall(tier, False)
        stats = pstats.Stats(profiler)
        stats.sort_stats("tottime").print_stats(30)
        # The project's own functions by cumulative time: where each step of a job goes.
        stats.sort_stats("cumulative").print_stats(
            r"^(?!.*site-packages).*/(inference|ml|training|cases|audit|core)/", 40
        )

    variants = {
        "runtime, 1 image/call": runtime_single,
        f"runtime, batched ({args.batch}/call)": runtime_batched,
        "worker tier, 1 image/task": lambda: tier(False),
        f"worker tier, batched (≤ {args.batch}/call)": lambda: tier(True),
    }
    rates = {name: [] for name in variants}
    outside = {name: [] for name in variants}
    for name, fn in variants.items():  # warm-up (graph tracing, caches)
        fn()
    with Contention() as contention:
        for _ in range(args.rounds):
            for name, fn in variants.items():
                started = time.perf_counter()
                count, cpu_outside = fn()
                rates[name].append(count / (time.perf_counter() - started))
                if cpu_outside is not None:
                    outside[name].append(cpu_outside)
    print()
    print("| variant | images/s (median of rounds) | CPU ms/image outside the model call |")
    print("|---|---|---|")
    for name in variants:
        cpu = f"{median(outside[name]):.1f}" if outside[name] else "—"
        print(f"| {name} | {median(rates[name]):.1f} | {cpu} |")
    single, batched = (
        median(rates["worker tier, 1 image/task"]),
        median(rates[f"worker tier, batched (≤ {args.batch}/call)"]),
    )
    print(
        f"\nworker tier batched / runtime batched: {batched / median(rates[f'runtime, batched ({args.batch}/call)']):.2f}; "
        f"worker batched / worker 1 image: {batched / single:.2f}"
    )
    print(f"({contention.describe()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
