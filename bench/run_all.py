"""Run every benchmark with its defaults (``make bench``); each prints its own table.

.venv/bin/python bench/run_all.py            # both (the training one takes ~30 min on 2 cores)
.venv/bin/python bench/run_all.py inference  # only bench/inference_path.py
"""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = {"training": "train_pipeline.py", "inference": "inference_path.py"}
# bench/model_latency.py takes model files as arguments, so it is run by hand (see bench/README.md).


def main(argv=None):
    names = (argv if argv is not None else sys.argv[1:]) or list(BENCHMARKS)
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}", file=sys.stderr)
        return 2
    status = 0
    for name in names:
        print(f"\n##### {name}: bench/{BENCHMARKS[name]}", flush=True)
        status |= subprocess.call([sys.executable, str(HERE / BENCHMARKS[name])], cwd=HERE.parent)
    return status


if __name__ == "__main__":
    sys.exit(main())
