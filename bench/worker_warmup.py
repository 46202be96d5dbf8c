"""First image vs later images of a fresh inference worker process, with and without warm-up.

    .venv/bin/python bench/worker_warmup.py                     # the shipped default model
    .venv/bin/python bench/worker_warmup.py --model-dir var/models/NAME --rounds 3

Each round starts fresh Python processes that do what a worker child does (inference.worker:
get_model, sha256-checked load, the verified serving runtime, then LoadedModel.analyse of a
prepared image), once as before (the model is loaded by the first job) and once with the warm-up
of worker_process_init (inference.worker.warm_up's get_model runs before the first job). Printed:
the first image's time as a clinician waits for it, the later images' median, and the start-up
time the warm-up adds to the process (before it takes any job). No database: the model version is
described by its metadata.json.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DEFAULT_DATA, ROOT, Contention, machine_line, median  # noqa: E402

CHILD = r"""
import json, os, sys, time, types
t_start = time.perf_counter()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "telediag.settings")
os.environ.setdefault("TELEDIAG_DEMO", "true")
import django; django.setup()
from inference import worker
from ml.images import prepare_image
model_dir, warm, images = sys.argv[1], sys.argv[2] == "1", sys.argv[3:]
meta = json.load(open(os.path.join(model_dir, "metadata.json")))
version = types.SimpleNamespace(pk=1, name=meta.get("version_name") or "bench", sha256=meta["sha256"],
    file_path=os.path.join(model_dir, "model.keras"), class_names=meta.get("class_names") or [],
    input_size=int(meta["input_size"]))
startup = 0.0
if warm:  # what worker_process_init does before the pool hands the process a job
    t0 = time.perf_counter(); worker.get_model(version); startup = time.perf_counter() - t0
times = []
for path in images:
    t0 = time.perf_counter()
    loaded = worker.get_model(version)   # the job's own call: a cache hit once warm
    data = open(path, "rb").read()
    loaded.analyse(prepare_image(data, loaded.input_size))
    times.append(time.perf_counter() - t0)
print(json.dumps({"startup_s": startup, "first_s": times[0], "later_s": times[1:]}))
"""


def _images(count):
    files = sorted(p for p in DEFAULT_DATA.glob("*/*") if p.suffix.lower() in (".jpg", ".png"))[:count]
    if files:
        return files
    import tempfile

    from _common import write_synthetic_smears

    root = write_synthetic_smears(Path(tempfile.mkdtemp(prefix="bench-warmup-")), 2, 224)
    return sorted(p for p in root.glob("*/*"))[:count]


def run(model_dir, warm, images):
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(model_dir), "1" if warm else "0", *map(str, images)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**__import__("os").environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = next((ROOT / "models").glob("*/metadata.json")).parent
    parser.add_argument("--model-dir", type=Path, default=default, help="folder with model.keras and metadata.json")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--images", type=int, default=6)
    args = parser.parse_args(argv)
    images = _images(args.images)
    results = {False: [], True: []}
    run(args.model_dir, True, images[:1])  # not measured: builds the TFLite export both sides then reuse
    with Contention() as contention:
        for _ in range(args.rounds):
            for warm in (False, True):  # interleaved: background load hits both alike
                results[warm].append(run(args.model_dir, warm, images))
    print(f"model: {args.model_dir.name}; {len(images)} images per process, {args.rounds} rounds")
    print("| worker process | start-up added | first image | later images (median) |")
    print("|---|---|---|---|")
    for warm, label in ((False, "lazy load (before)"), (True, "warm-up at start")):
        rows = results[warm]
        print(
            f"| {label} | {median([r['startup_s'] for r in rows]):.2f} s | {median([r['first_s'] for r in rows]):.2f} s "
            f"| {median([t for r in rows for t in r['later_s']]):.3f} s |"
        )
    print(f"{machine_line()}; {contention.describe()}")


if __name__ == "__main__":
    sys.exit(main())
