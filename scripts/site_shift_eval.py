"""Site-shift table and OOD fit for a model folder (model.keras + metadata.json), without Django.

    nice -n 15 .venv/bin/python scripts/site_shift_eval.py models/<folder> ../shared/data/all-leukemia \
        [--cache var/site-cache] [--write-metadata]

Prints the leave-one-family-out table (ml.site_shifts) and the OOD flag rates; with
--write-metadata stores the fitted OOD parameters under "ood" in the folder's metadata.json
(model.keras is not touched, so its sha256 stays right). manage.py model_report does the same for a
registered version.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("folder")
    parser.add_argument("data")
    parser.add_argument("--cache", default="var/site-cache")
    parser.add_argument("--confidence-threshold", type=float, default=0.6)
    parser.add_argument("--write-metadata", action="store_true")
    parser.add_argument("--json", metavar="FILE", help="also save the summary as JSON")
    args = parser.parse_args()

    from ml import artifacts, site_report, site_shifts
    from ml.dataset import load_arrays, scan_dataset
    from ml.splits import from_record

    folder = Path(args.folder)
    metadata = artifacts.read_json(folder / "metadata.json")
    model_path = folder / metadata.get("model_file", "model.keras")
    model = artifacts.load_model_verified(model_path, metadata["sha256"])
    root = Path(args.data)
    root = root / "original" if (root / "original").is_dir() else root
    split = from_record(metadata["split"], scan_dataset(root, require_all_classes=False))
    size = int(metadata["input_size"])
    parts = {
        "train": load_arrays(split.train, size),
        "val": load_arrays(split.val, size),
        "test": load_arrays(split.test, 224),
    }
    params, summary = site_report.build(
        model,
        metadata.get("train_config") or {},
        parts,
        input_size=size,
        confidence_threshold=args.confidence_threshold,
        cache_dir=Path(args.cache),
        cache_key=metadata["sha256"][:16],
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    print(site_shifts.format_table(summary))
    print(f"confidence only: {summary['confidence_only']}")
    print("per variant:")
    for name, row in summary["variants"].items():
        print(
            f"  {name:<20} {row['family']:<13} {'credited' if row['credited'] else 'trained ':<8} "
            f"acc {row['accuracy']:.2%} drop {row['drop_points']:+.1f} wrong {row['wrong']} flagged {row['wrong_flagged']}"
        )
    print(f"OOD threshold {params['threshold']:.3f}; calibrated {params['calibrated_on']}")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"summary": summary, "ood": {k: v for k, v in params.items() if k != "arrays"}}, indent=2)
        )
    if args.write_metadata:
        metadata["ood"] = params
        metadata["site_shifts"] = summary
        artifacts.write_metadata(folder / "metadata.json", metadata)
        print(f"wrote ood ({params['digest'][:12]}) into {folder / 'metadata.json'}")


if __name__ == "__main__":
    main()
