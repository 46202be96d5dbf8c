"""Single-image CPU latency of model files, as the model card reports it.

    .venv/bin/python bench/model_latency.py models/*/model.keras var/models/NAME/model.keras ...

For each file: Keras ``predict_on_batch`` on one prepared image (warm, median and p90 of
``--runs``), and the worker's serving runtime (TFLite when its export reproduces the model,
probabilities + Grad-CAM in one pass), file size and parameters. Real images from the data set
when present, else synthetic ones. Prints one markdown row per model and how busy the machine was.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DEFAULT_DATA, Contention, machine_line, median, percentile, write_synthetic_smears  # noqa: E402


def _images(size, count=8):
    from ml.images import prepare_image

    root = DEFAULT_DATA
    if not root.is_dir():
        import tempfile

        root = write_synthetic_smears(Path(tempfile.mkdtemp(prefix="bench-latency-")), 2, size)
    files = sorted(p for p in root.glob("*/*") if p.suffix.lower() in (".jpg", ".png"))[:count]
    import numpy as np

    return np.stack([prepare_image(p.read_bytes(), size) for p in files]).astype("float32")


def _timed(call, images, runs, warmup=3):
    for i in range(warmup):
        call(images[i % len(images)])
    times = []
    for i in range(runs):
        started = time.perf_counter()
        call(images[i % len(images)])
        times.append((time.perf_counter() - started) * 1000.0)
    return median(times), percentile(times, 90)


def measure(path, runs):
    import tempfile

    import numpy as np

    from ml import artifacts, export

    sha256 = artifacts.sha256_file(path)
    model = artifacts.load_model_verified(path, sha256)
    size = int(model.inputs[0].shape[1])
    images = _images(size)
    keras_ms = _timed(lambda image: np.asarray(model.predict_on_batch(image[None])), images, runs)
    serving = export.load_serving(model, path, sha256, cache_dir=tempfile.mkdtemp())
    serving_ms = _timed(serving.analyse, images, runs)
    return {
        "file": str(path),
        "input": size,
        "mb": Path(path).stat().st_size / 1e6,
        "params": int(model.count_params()),
        "keras": keras_ms,
        "runtime": serving.runtime,
        "serving": serving_ms,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help=".keras files")
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args(argv)
    print(f"Model latency: {machine_line()}")
    print("| model | input | size | params | Keras predict_on_batch, median / p90 | serving runtime, median / p90 |")
    print("|---|---|---|---|---|---|")
    with Contention() as contention:
        for path in args.models:
            r = measure(Path(path), args.runs)
            print(
                f"| {r['file']} | {r['input']} px | {r['mb']:.1f} MB | {r['params']:,} | {r['keras'][0]:.1f} / "
                f"{r['keras'][1]:.1f} ms | {r['runtime']}: {r['serving'][0]:.1f} / {r['serving'][1]:.1f} ms |",
                flush=True,
            )
    print(f"Contention: {contention.describe()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
