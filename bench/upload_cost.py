"""The web tier's CPU per uploaded image, by the number of images in one upload (issue 19).

    .venv/bin/python bench/upload_cost.py                               # 1, 2 and 4 images per upload
    .venv/bin/python bench/upload_cost.py --per-upload 1 3 --uploads 200 --rounds 5
    .venv/bin/python bench/upload_cost.py --profile --per-upload 1   # also a cProfile of 1-image uploads

In this process, through Django's request handler (``django.test.Client``: no HTTP server, no
socket), with production settings (DEBUG off, PostgreSQL, Redis as the broker): ``POST
/api/cases/``, multipart with token auth and ``Prefer: return=minimal``, the request
``bench/inference_path.py``'s clients send, with real images (synthetic ones without ``--data``)
and the shipped model (``--model-file``) registered as the active version. Each upload creates a
case, its smears and their jobs and publishes the jobs to the broker; nobody consumes them.

Variants (``--per-upload``) are interleaved over ``--rounds``; the request bodies are built before
the clock starts. Reported: CPU ms per upload and per image (this process's CPU time: Django, DRF,
the services, psycopg2 and the publish; PostgreSQL's and Redis's own CPU is not in it, see
``inference_path.py``), median of the rounds, and what one more image in an upload adds.

Needs PostgreSQL and Redis on 127.0.0.1: the database ``--db`` (default telediag_upload_bench) is
dropped and created at the start and dropped at the end; Redis db 13 is flushed.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import inference_path  # noqa: E402 - the path benchmark's environment and world
from _common import DEFAULT_DATA, ROOT, Contention, machine_line, median  # noqa: E402

DEFAULT_MODEL = ROOT / "models" / "mobilenetv2-lab-128-grouped-s1" / "model.keras"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-upload", type=int, nargs="+", default=[1, 2, 4], help="images in one upload")
    parser.add_argument("--uploads", type=int, default=100, help="timed uploads per variant and round")
    parser.add_argument("--warm-up", type=int, default=20, help="untimed uploads per variant first")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model-file", default=str(DEFAULT_MODEL))
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--db", default="telediag_upload_bench")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one-image uploads first")
    return parser.parse_args(argv)


def bodies(images, patient, per_upload, count, offset):
    """``count`` upload bodies of ``per_upload`` images each, taken in turn from ``images``."""
    result = []
    for i in range(count):
        start = offset + i * per_upload
        files = [images[(start + k) % len(images)][:2] for k in range(per_upload)]
        result.append(inference_path.case_submission(patient, files))
    return result


def upload_all(client, token, requests):
    headers = {
        "HTTP_AUTHORIZATION": f"Token {token}",
        "HTTP_ACCEPT": "application/json",
        "HTTP_PREFER": "return=minimal",
    }
    for content_type, body in requests:
        response = client.generic("POST", "/api/cases/", body, content_type=content_type, **headers)
        if response.status_code != 201:
            raise RuntimeError(f"Upload refused ({response.status_code}): {response.content[:300]!r}")


def profile_uploads(client, token, requests):
    """Where a one-image upload's CPU goes: by own time, then the project's code by cumulative time."""
    import cProfile
    import pstats

    profiler = cProfile.Profile(time.process_time)
    profiler.runcall(upload_all, client, token, requests)
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(60)


def main(argv=None):
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-upload-"))
    path_args = inference_path.parse_args(
        ["--db", args.db, "--pg", args.pg, "--redis", args.redis, "--model-file", args.model_file]
    )
    inference_path.prepare_environment(path_args, work, inference_path.Pinning(False))
    os.environ["ALLOWED_HOSTS"] = "testserver"  # the test client's host name
    inference_path.recreate_database(path_args)
    inference_path.empty_broker(args.redis)
    try:
        images, source, _ = inference_path.load_real_images(args.data, 400, 224)
        from ml.artifacts import sha256_file

        world = inference_path.setup_django_world(args.model_file, sha256_file(args.model_file), "mobilenetv2")
        from django.db import connection
        from django.test import Client

        client = Client()
        timed = {n: [] for n in args.per_upload}
        offset = 0
        for n in args.per_upload:
            upload_all(client, world["token"], bodies(images, world["patient"], n, args.warm_up, offset))
            offset += args.warm_up * n
        if args.profile:
            profile_uploads(client, world["token"], bodies(images, world["patient"], 1, args.uploads, offset))
            offset += args.uploads
        with Contention() as contention:
            for _ in range(args.rounds):
                for n in args.per_upload:
                    requests = bodies(images, world["patient"], n, args.uploads, offset)
                    offset += args.uploads * n
                    started = time.process_time()
                    upload_all(client, world["token"], requests)
                    timed[n].append((time.process_time() - started) * 1000 / args.uploads)
        connection.close()
    finally:
        import psycopg2

        admin = psycopg2.connect(f"{args.pg.rstrip('/')}/postgres")
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{args.db}" WITH (FORCE)')
        admin.close()
        inference_path.empty_broker(args.redis)
        shutil.rmtree(work, ignore_errors=True)

    print(f"# bench/upload_cost.py — {machine_line()}")
    print(f"{source} images, {args.uploads} uploads per variant and round, {args.rounds} rounds, interleaved")
    print("| images per upload | CPU ms per upload | CPU ms per image | each round, ms per upload |")
    print("|---|---|---|---|")
    per_upload = {n: median(values) for n, values in timed.items()}
    for n, values in timed.items():
        runs = " / ".join(f"{v:.1f}" for v in values)
        print(f"| {n} | {per_upload[n]:.1f} | {per_upload[n] / n:.1f} | {runs} |")
    counts = sorted(per_upload)
    if len(counts) > 1:
        first, last = counts[0], counts[-1]
        extra = (per_upload[last] - per_upload[first]) / (last - first)
        print(f"one more image in an upload adds {extra:.1f} ms of CPU (from {first} to {last} images)")
    print(f"({contention.describe()})")


if __name__ == "__main__":
    main()
