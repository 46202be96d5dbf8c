"""What the training input pipeline costs: images per second of the REAL pipeline vs an ideal feed.

    .venv/bin/python bench/train_pipeline.py                       # all four architectures, 224 px
    .venv/bin/python bench/train_pipeline.py --arch convnet mobilenetv2 --steps 6
    .venv/bin/python bench/train_pipeline.py --arch vgg19 --image-size 112 --steps 2

For each architecture, three ways of training the same architecture for the same steps, timed in
interleaved rounds (so background load hits all of them alike):

  real      what ml.pipeline/train do: images decoded by ``dataset.load_arrays``
            (``prepare_image``, a thread pool), the model built WITH its in-model augmentation,
            compiled as train.py compiles it (Adam, sparse categorical cross-entropy, accuracy,
            jit_compile="auto") and fitted on the uint8 arrays with shuffle=True and class weights.
  aug-feed  the same augmented model fed pre-made float32 batches (a cached tf.data dataset):
            isolates the augmentation from the feeding.
  ideal     the model WITHOUT augmentation, same compile, fed the same pre-made batches: nothing
            but the network's own forward/backward/update.

Decoding happens once per training run in train.py (not once per epoch), so its cost is
amortised over ``--epochs`` (default 30, what `retrain` runs) in the "real" rate; the table also
shows it charged to a single epoch. Validation is left out (it is evaluation, not input).

Overhead of the input pipeline = 1 - real / ideal (target: under 15%). The cost is split into
decode, feed (numpy adapter, shuffling, casting, class weights) and augmentation.

Data: --data (default ../shared/data/all-leukemia/original); synthetic smear-like JPEGs of the
requested size when that folder is absent. No Django needed.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    DEFAULT_DATA,
    Contention,
    machine_line,
    median,
    top_other_processes,
    write_synthetic_smears,
)

ARCHITECTURES = ("convnet", "mobilenetv2", "resnet50", "vgg19")
# Steps per timed epoch: VGG19/ResNet50 take 18 s / 5.5 s per 224-px step on 2 busy CPU cores.
DEFAULT_STEPS = {"convnet": 8, "convnet_bn": 8, "mobilenetv2": 4, "resnet50": 3, "vgg19": 2}
TARGET_OVERHEAD = 0.15


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", nargs="+", default=list(ARCHITECTURES))
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--steps", type=int, help="training steps per timed epoch (default: per architecture)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved timing rounds (median is reported)")
    parser.add_argument("--epochs", type=int, default=30, help="epochs the one-off decoding is amortised over")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="image folder (synthetic when absent)")
    parser.add_argument("--workers", type=int, help="decoding threads (load_arrays default when omitted)")
    parser.add_argument(
        "--augment-breakdown",
        action="store_true",
        help="also time each augmentation layer alone (forward, training=True)",
    )
    parser.add_argument("--json", help="write the results to this JSON file")
    return parser.parse_args(argv)


_scanned = {}


def pick_samples(data_dir, count, image_size):
    """``count`` samples from the data folder, classes interleaved; synthetic when it is absent.

    The folder is scanned once per process (scan_dataset hashes and decodes every file, which a
    training run also does once, before its epochs)."""
    from ml.dataset import scan_dataset

    key = (str(data_dir), image_size)
    if key not in _scanned:
        source, root = "real", Path(data_dir)
        if not root.is_dir():
            root = write_synthetic_smears(
                Path(tempfile.mkdtemp(prefix="bench-train-data-")), max(8, -(-count // 4)), image_size
            )
            source = "synthetic"
        started = time.perf_counter()
        dataset = scan_dataset(root)
        _scanned[key] = (dataset, source, root, time.perf_counter() - started)
    dataset, source, root, scan_s = _scanned[key]
    pools = {}
    for sample in dataset.samples:
        pools.setdefault(sample.label, []).append(sample)
    pools = list(pools.values())
    picked, i = [], 0
    while len(picked) < count and any(i < len(pool) for pool in pools):
        picked.extend(pool[i] for pool in pools if i < len(pool))
        i += 1
    picked = picked[:count]
    while len(picked) < count:  # a small folder: repeat it
        picked += picked[: count - len(picked)]
    return picked, source, root, scan_s, len(dataset)


def compiled(architecture, image_size, augment, seed=42):
    """A model built and compiled exactly as ml.train.train_model does."""
    import keras

    from ml.architectures import build_model
    from ml.train import TrainConfig

    config = TrainConfig(architecture=architecture, image_size=image_size, augment=augment)
    model = build_model(
        architecture,
        image_size=image_size,
        num_classes=config.num_classes,
        augment=augment,
        seed=seed,
        augment_strength=config.augment_strength,
        augment_color=config.augment_color,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=config.jit_compile,
    )
    return model


def premade_dataset(x, y, batch_size):
    import tensorflow as tf

    # Plain in-memory batches: no cache()/prefetch() (with them, some epochs stalled for seconds).
    x32 = tf.constant(x.astype("float32"))
    return tf.data.Dataset.from_tensor_slices((x32, tf.constant(y))).batch(batch_size, drop_remainder=True)


def bench_architecture(architecture, args, log):
    import numpy as np

    from ml.dataset import load_arrays
    from ml.train import class_weights

    steps = args.steps or DEFAULT_STEPS.get(architecture, 4)
    count = steps * args.batch_size
    samples, source, root, scan_s, total = pick_samples(args.data, count, args.image_size)
    log(
        f"\n== {architecture} at {args.image_size} px: {steps} steps x {args.batch_size} images ({source} data, "
        f"{root}; scan of {total} files {scan_s:.1f} s, once per run)"
    )

    x, y = load_arrays(samples, args.image_size, workers=args.workers)  # warm the page cache
    cw = class_weights(y, 4)
    real_model = compiled(architecture, args.image_size, augment=True)
    ideal_model = compiled(architecture, args.image_size, augment=False)
    premade = premade_dataset(x, y, args.batch_size)

    def fit_real(x_arr, y_arr, n_steps=None):
        n = (n_steps or steps) * args.batch_size
        real_model.fit(
            x_arr[:n], y_arr[:n], batch_size=args.batch_size, epochs=1, shuffle=True, class_weight=cw, verbose=0
        )

    log("   warm-up (tracing the train steps)...")
    warm = time.perf_counter()
    fit_real(x, y, 1)
    real_model.fit(premade.take(1), epochs=1, shuffle=False, verbose=0)
    ideal_model.fit(premade.take(1), epochs=1, shuffle=False, verbose=0)
    log(
        f"   warm-up {time.perf_counter() - warm:.1f} s; jit_compile real={real_model.jit_compile} "
        f"ideal={ideal_model.jit_compile}"
    )

    times = {"decode": [], "real_fit": [], "aug_feed": [], "ideal": []}
    cpu = {k: [] for k in times}  # CPU seconds of this process: steadier than wall time under load
    with Contention() as contention:
        for round_index in range(args.rounds):
            order = ["decode", "real_fit", "aug_feed", "ideal"]
            if round_index % 2:
                order.reverse()
            for what in order:
                started, cpu_started = time.perf_counter(), sum(os.times()[:2])
                if what == "decode":
                    x_round, y_round = load_arrays(samples, args.image_size, workers=args.workers)
                elif what == "real_fit":
                    fit_real(x, y)
                elif what == "aug_feed":
                    real_model.fit(premade, epochs=1, shuffle=False, verbose=0)
                else:
                    ideal_model.fit(premade, epochs=1, shuffle=False, verbose=0)
                times[what].append(time.perf_counter() - started)
                cpu[what].append(sum(os.times()[:2]) - cpu_started)
            timings = ", ".join(f"{k} {v[-1]:.2f} s ({cpu[k][-1]:.1f} CPU s)" for k, v in times.items())
            log(f"   round {round_index + 1}: {timings}")
    assert np.array_equal(x_round, x) and np.array_equal(y_round, y)

    med = {k: median(v) for k, v in times.items()}
    cpu_med = {k: median(v) for k, v in cpu.items()}
    cpu_real = cpu_med["real_fit"] + cpu_med["decode"] / args.epochs
    n = count
    decode_amortised = med["decode"] / args.epochs
    real_s = med["real_fit"] + decode_amortised
    real_one_epoch_s = med["real_fit"] + med["decode"]
    result = {
        "architecture": architecture,
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "steps": steps,
        "images": n,
        "data": source,
        "rounds": args.rounds,
        "epochs_amortised": args.epochs,
        "seconds": {k: round(v, 4) for k, v in med.items()},
        "ips": {
            "decode": n / med["decode"],
            "real": n / real_s,
            "real_one_epoch": n / real_one_epoch_s,
            "aug_feed": n / med["aug_feed"],
            "ideal": n / med["ideal"],
        },
        "overhead": 1 - med["ideal"] / real_s,
        "overhead_one_epoch": 1 - med["ideal"] / real_one_epoch_s,
        "share": {  # of the real time per epoch
            "decode": decode_amortised / real_s,
            "feed": (med["real_fit"] - med["aug_feed"]) / real_s,
            "augmentation": (med["aug_feed"] - med["ideal"]) / real_s,
            "network": med["ideal"] / real_s,
        },
        "cpu_seconds": {k: round(v, 4) for k, v in cpu_med.items()},
        "cpu_ms_per_image": {k: v * 1000 / n for k, v in cpu_med.items()},
        "overhead_cpu": 1 - cpu_med["ideal"] / cpu_real,
        "cpu_share": {
            "decode": cpu_med["decode"] / args.epochs / cpu_real,
            "feed": (cpu_med["real_fit"] - cpu_med["aug_feed"]) / cpu_real,
            "augmentation": (cpu_med["aug_feed"] - cpu_med["ideal"]) / cpu_real,
        },
        "contention": contention.result,
        "contention_text": contention.describe(),
    }
    layers = augmentation_breakdown(x[: args.batch_size], args.image_size, per_layer=args.augment_breakdown)
    if args.augment_breakdown:
        result["augmentation_layers_ms_per_image"] = layers
    # The augmentation block timed alone (forward, training=True) is steadier than a difference of
    # two noisy fits: its share of the real time per image is reported too.
    result["augmentation_alone_ms_per_image"] = layers["augmentation"]
    result["augmentation_alone_share"] = layers["augmentation"] / 1000.0 / (real_s / n)
    log(f"   {contention.describe()}")
    import keras

    keras.backend.clear_session()
    return result


def augmentation_breakdown(batch, image_size, per_layer=True):
    """Forward time per image of the augmentation block (and of each of its layers), training=True, ms."""
    import tensorflow as tf

    from ml.augmentation import build_augmentation

    block = build_augmentation(seed=1)
    block.build((None, image_size, image_size, 3))
    x = tf.constant(batch.astype("float32"))
    timings = {}
    for layer in [*(block.augmenters if per_layer else []), block]:
        fn = tf.function(lambda t, layer=layer: layer(t, training=True))
        fn(x)
        values = []
        for _ in range(5):
            started = time.perf_counter()
            fn(x).numpy()
            values.append(time.perf_counter() - started)
        timings[layer.name] = round(median(values) * 1000 / len(batch), 2)
    return timings


def table(results):
    lines = [
        "| architecture | px | images | decode img/s | real img/s | aug-feed img/s | ideal img/s | real/ideal | overhead "
        "(1 epoch) | decode / feed / augment share | augmentation alone: ms/img, share | CPU ms/img real / ideal, "
        "overhead by CPU |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ips, share = r["ips"], r["share"]
        lines.append(
            f"| {r['architecture']} | {r['image_size']} | {r['images']} | {ips['decode']:.0f} | {ips['real']:.1f} | "
            f"{ips['aug_feed']:.1f} | {ips['ideal']:.1f} | {ips['real'] / ips['ideal']:.2f} | "
            f"{r['overhead']:.1%} ({r['overhead_one_epoch']:.1%}) | "
            f"{share['decode']:.1%} / {share['feed']:.1%} / {share['augmentation']:.1%} | "
            f"{r['augmentation_alone_ms_per_image']:.1f}, {r['augmentation_alone_share']:.1%} | "
            f"{r['cpu_ms_per_image']['real_fit']:.0f} / {r['cpu_ms_per_image']['ideal']:.0f}, {r['overhead_cpu']:.1%} |"
        )
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)

    def log(message):
        print(message, flush=True)

    import keras

    log(f"Training input pipeline benchmark: {machine_line()}; Keras {keras.__version__} ({keras.backend.backend()})")
    for share, nice, cmd in top_other_processes():
        log(f"   busy at start: {share:.0%} CPU (nice {nice}): {cmd}")
    results = []
    for architecture in args.arch:
        results.append(bench_architecture(architecture, args, log))
    log("\n" + table(results))
    for r in results:
        verdict = "meets" if r["overhead"] < TARGET_OVERHEAD else "MISSES"
        log(
            f"{r['architecture']}: real/ideal {r['ips']['real'] / r['ips']['ideal']:.2f}, input pipeline overhead "
            f"{r['overhead']:.1%} by wall time ({verdict} the < {TARGET_OVERHEAD:.0%} target), {r['overhead_cpu']:.1%} by "
            f"CPU time (decode {r['cpu_share']['decode']:.1%}, feed {r['cpu_share']['feed']:.1%}, augmentation "
            f"{r['cpu_share']['augmentation']:.1%}); {r['contention_text']}"
        )
        if "augmentation_layers_ms_per_image" in r:
            log(f"   augmentation, ms per image per layer: {r['augmentation_layers_ms_per_image']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine_line(), "results": results}, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
