"""Does test-time adaptation per site (ml.site_adaptation) recover the site-shift losses?

    nice -n 15 .venv/bin/python scripts/site_adaptation_eval.py models/<folder> ../shared/data/all-leukemia

Each variant of ml.site_shifts applied to the held-out test split plays one new site. Printed per
variant: accuracy as the site sends its images, and after mapping the site's pooled CIELAB
statistics (estimated on the same unlabelled images) onto the training split's. No labels are used
by the adaptation; the labels only score it.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("folder")
    parser.add_argument("data")
    parser.add_argument("--mode", default="reinhard", help="ml.site_adaptation.MODES")
    args = parser.parse_args()

    from ml import artifacts, site_adaptation, site_shifts
    from ml.dataset import load_arrays, scan_dataset
    from ml.images import prepare_image
    from ml.splits import from_record

    folder = Path(args.folder)
    metadata = artifacts.read_json(folder / "metadata.json")
    model = artifacts.load_model_verified(folder / metadata.get("model_file", "model.keras"), metadata["sha256"])
    root = Path(args.data)
    root = root / "original" if (root / "original").is_dir() else root
    split = from_record(metadata["split"], scan_dataset(root, require_all_classes=False))
    size = int(metadata["input_size"])
    reference = site_adaptation.lab_statistics(load_arrays(split.train, 224)[0])
    test, y = load_arrays(split.test, 224)

    def accuracy(images):
        prepared = np.stack([prepare_image(image, size) for image in images]).astype(np.float32)
        probabilities = np.concatenate(
            [model.predict_on_batch(prepared[i : i + 64]) for i in range(0, len(prepared), 64)]
        )
        return float(np.mean(np.argmax(probabilities, axis=1) == y))

    print(f"reference (training split) L*a*b* mean {np.round(reference.mean, 2)} std {np.round(reference.std, 2)}")
    print("| site (variant) | family | as sent | adapted | change |")
    print("|---|---|---|---|---|")
    for name in ("plain", *site_shifts.VARIANT_NAMES):
        images = test if name == "plain" else site_shifts.apply(name, test)
        site = site_adaptation.lab_statistics(images)
        adapted = np.stack([site_adaptation.adapt(image, site, reference, args.mode) for image in images])
        before, after = accuracy(images), accuracy(adapted)
        family = "—" if name == "plain" else site_shifts.family_of(name)
        print(f"| {name} | {family} | {before:.2%} | {after:.2%} | {100 * (after - before):+.1f} |", flush=True)


if __name__ == "__main__":
    main()
