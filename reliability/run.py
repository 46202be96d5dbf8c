"""The fault suite: ``python -m reliability.run [--short] [--broker redis|rabbitmq|both] [--scenario NAME ...]``.

Starts its own PostgreSQL cluster and broker (a Redis or a RabbitMQ node of its own), the README's
gunicorn, a real Celery worker (the shipped model) and beat, all on loopback; runs each scenario
under load (scenarios.py says how it is measured) and prints one line per scenario. Exit status 1
when a target is missed: 0 lost, 0 duplicates, every case completed, recovery <= 30 s after the
fault ends, no request blocked longer than 5 s by a broker fault. ``--json FILE`` keeps the numbers.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

from reliability import scenarios
from reliability.load import smear_images
from reliability.stack import Stack

DEFAULT_DATASET = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "all-leukemia"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", action="store_true", help="the CI version: fewer scenarios, shorter faults")
    parser.add_argument("--broker", choices=["redis", "rabbitmq", "both"], default="redis")
    parser.add_argument("--scenario", action="append", choices=sorted(scenarios.FAULTS), help="repeatable")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients (4-20)")
    parser.add_argument("--rate", type=float, default=0.35, help="cases per second each client starts at most")
    parser.add_argument("--fault-s", type=float, help="how long each fault lasts")
    parser.add_argument("--media-mb", type=int, default=256, help="media on a tmpfs of this size (root), for disk_full")
    parser.add_argument("--dataset", default=os.environ.get("TELEDIAG_DATASET_DIR", str(DEFAULT_DATASET)))
    parser.add_argument("--json", help="write the outcomes here")
    parser.add_argument("--keep", action="store_true", help="keep the stack's folder (logs, data) afterwards")
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= 50:
        parser.error("--clients: between 1 and 50")

    names = args.scenario or (scenarios.SHORT if args.short else scenarios.FULL)
    timing = scenarios.Timing.short() if args.short else scenarios.Timing.full()
    if args.fault_s:
        timing.fault_s = args.fault_s
    brokers = ["redis", "rabbitmq"] if args.broker == "both" else [args.broker]
    images = smear_images(args.dataset)
    log = lambda message: print(message, flush=True)  # noqa: E731
    log(
        f"fault suite: {len(names)} scenario(s) x {len(brokers)} broker(s), {args.clients} clients, "
        f"{len(images)} images, fault {timing.fault_s:.0f} s"
    )
    outcomes, failures = [], []
    for broker in brokers:
        with Stack(broker=broker, media_mb=args.media_mb, log=log, keep=args.keep) as stack:
            stack.warm_up(images)
            for name in names:
                fault = scenarios.FAULTS[name]
                started = time.monotonic()
                outcome = scenarios.run_scenario(
                    stack, fault, images, clients=args.clients, timing=timing, log=log, rate=args.rate
                )
                outcomes.append(outcome)
                problems = outcome.meets_targets(broker_fault=fault.broker_fault)
                log(outcome.line() + f"  ({time.monotonic() - started:.0f} s)")
                if problems:
                    failures.append(f"{name} on {broker}: {', '.join(problems)}")
                    log(f"  MISSED: {', '.join(problems)}")
    if args.json:
        Path(args.json).write_text(json.dumps([o.as_dict() for o in outcomes], indent=2))
    if failures:
        log("targets missed:\n  " + "\n  ".join(failures))
        return 1
    log("all targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
