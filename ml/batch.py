"""Several training runs side by side on one machine, all ended and evaluated inside a time slot.

A lent GPU machine comes for minutes and is given back with everything on it, so the runs that
share it must each end with a model evaluated before the slot does:

    python -m ml.batch --data DATA --out DIR --jobs FILE --parallel 6 --seconds 480

Each line of the jobs file is ``NAME [VAR=value ...] ARGUMENTS...``: a run name (letters, digits,
``.``, ``_``, ``-``), optional environment settings for that run (``KERAS_BACKEND=torch``: JAX
trains MobileNetV2 slowly on GPUs, its depthwise convolutions' backward pass being slow) and
ml.pipeline arguments; ``#`` starts a comment. Jobs start in file order while
fewer than ``--parallel`` run and at least ``--min-start`` seconds of the slot are left. Each runs
``python -m ml.pipeline --data DATA --output DIR/NAME --quiet --time-limit T ARGUMENTS``
(output in DIR/NAME.log), where T leaves ``--reserve`` seconds of the slot to evaluate and save
the best epoch reached; one still running when the slot ends is stopped. DIR/summary.json (also
printed) says for each job what happened and, when it finished, its validation and test accuracy.
"""

import argparse
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .artifacts import read_json, write_json_atomically

SUMMARY_FILE = "summary.json"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9._-]+$")
ENV_PATTERN = re.compile(r"^([A-Z_][A-Z0-9_]*)=(.*)$")
RUNNER_ARGUMENTS = ("--data", "--output", "--time-limit", "--quiet")  # set by the runner for every job
PROJECT_ROOT = Path(__file__).resolve().parents[1]
STOP_GRACE_SECONDS = 20


@dataclass
class Job:
    name: str
    args: list
    env: dict = field(default_factory=dict)


def parse_jobs(text):
    """The jobs of a jobs file's ``text`` (module docstring); raises ValueError naming the bad line."""
    jobs, seen = [], set()
    for number, line in enumerate(text.splitlines(), start=1):
        words = shlex.split(line, comments=True)
        if not words:
            continue
        name, args, env = words[0], words[1:], {}
        while args and ENV_PATTERN.match(args[0]):
            key, value = ENV_PATTERN.match(args.pop(0)).groups()
            env[key] = value
        if not NAME_PATTERN.match(name):
            raise ValueError(f"line {number}: run name {name!r} may hold only letters, digits, '.', '_' and '-'")
        if name in seen:
            raise ValueError(f"line {number}: run name {name!r} is used twice")
        taken = [a for a in args if a.split("=")[0] in RUNNER_ARGUMENTS]
        if taken:
            raise ValueError(f"line {number}: {', '.join(taken)} is set by the runner, not per job")
        seen.add(name)
        jobs.append(Job(name, args, env))
    if not jobs:
        raise ValueError("the jobs file names no job")
    return jobs


def _job_result(out_dir, job):
    """What a job's folder says about it: metrics when it finished, else how far training got."""
    folder = out_dir / job.name
    result = {}
    if (folder / "metadata.json").is_file():
        metadata = read_json(folder / "metadata.json")
        metrics = metadata.get("metrics", {})
        result.update(
            {
                "val_accuracy": metrics.get("val", {}).get("accuracy"),
                "test_accuracy": metrics.get("test", {}).get("accuracy"),
                "test_macro_f1": metrics.get("test", {}).get("macro_f1"),
                "epochs_run": metadata.get("epochs_run"),
                "best_epoch": metadata.get("best_epoch"),
                "stopped_early": metadata.get("stopped_early"),
                "stopped_by_time_limit": metadata.get("stopped_by_time_limit"),
                "training_seconds": metadata.get("training_seconds"),
                "model_bytes": (folder / "model.keras").stat().st_size if (folder / "model.keras").is_file() else None,
            }
        )
    elif (folder / "history.json").is_file():
        epochs = read_json(folder / "history.json").get("epochs", [])
        result["epochs_run"] = len(epochs)
        if epochs:
            result["last_val_accuracy"] = epochs[-1].get("val_accuracy")
    return result


def _stop(process):
    """SIGTERM the job's process group, then SIGKILL what is left after a grace period."""
    for sig, wait in ((signal.SIGTERM, STOP_GRACE_SECONDS), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_batch(
    jobs,
    data_dir,
    out_dir,
    *,
    seconds,
    parallel=1,
    reserve=90.0,
    min_start=120.0,
    python=None,
    poll_seconds=1.0,
    log=print,
):
    """Run ``jobs`` (list of Job) as the module docstring says; returns (and writes) the summary."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    # JAX takes 75% of the GPU's memory in its first process unless told not to; the others then fail.
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    started = time.monotonic()
    pending = list(jobs)
    running = {}
    summary = {job.name: {"name": job.name, "args": job.args, "env": job.env, "status": "not started"} for job in jobs}

    def elapsed():
        return time.monotonic() - started

    def finish(job, status):
        entry = summary[job.name]
        entry.update(status=status, seconds=round(elapsed() - entry["started_at"], 1), **_job_result(out_dir, job))
        accuracy = entry.get("test_accuracy")
        log(
            f"[{elapsed():6.0f} s] {job.name}: {status}"
            + (
                f", test {accuracy:.2%} (val {entry['val_accuracy']:.2%}), {entry['epochs_run']} epochs"
                if accuracy is not None
                else ""
            )
        )

    while pending or running:
        for name, (job, process) in list(running.items()):
            code = process.poll()
            if code is not None:
                del running[name]
                finish(job, "done" if code == 0 else f"failed (exit status {code}; see {name}.log)")
        left = seconds - elapsed()
        if left <= 0:
            for name, (job, process) in list(running.items()):
                _stop(process)
                finish(job, "stopped at the end of the slot")
            running.clear()
            break
        while pending and len(running) < parallel and left >= min_start:
            job = pending.pop(0)
            limit = max(1.0, left - reserve)
            command = [
                python or sys.executable,
                "-m",
                "ml.pipeline",
                "--data",
                str(data_dir),
                "--output",
                str(out_dir / job.name),
                "--quiet",
                "--time-limit",
                f"{limit:.0f}",
                *job.args,
            ]
            with open(out_dir / f"{job.name}.log", "ab") as output:
                process = subprocess.Popen(
                    command,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    env={**env, **job.env},
                    cwd=PROJECT_ROOT,
                    start_new_session=True,
                )
            running[job.name] = (job, process)
            summary[job.name].update(status="running", started_at=round(elapsed(), 1), time_limit=round(limit))
            settings = "".join(f"{key}={value} " for key, value in job.env.items())
            log(
                f"[{elapsed():6.0f} s] {job.name}: started ({settings}{shlex.join(job.args)}; "
                f"training limit {limit:.0f} s)"
            )
        if not running:
            break  # what is left cannot start in the time that is left
        time.sleep(poll_seconds)

    result = {
        "seconds": round(elapsed(), 1),
        "slot_seconds": seconds,
        "parallel": parallel,
        "jobs": list(summary.values()),
    }
    write_json_atomically(out_dir / SUMMARY_FILE, result)
    return result


def format_summary(result):
    """One line per job: name, status, validation and test accuracy, epochs and seconds."""

    def pct(value):
        return "-" if value is None else f"{value:.2%}"

    lines = [
        f"{len(result['jobs'])} jobs in {result['seconds']:.0f} s of a {result['slot_seconds']:.0f} s slot, "
        f"{result['parallel']} at a time:"
    ]
    for job in result["jobs"]:
        epochs = job.get("epochs_run")
        limited = " (time limit)" if job.get("stopped_by_time_limit") else ""
        lines.append(
            f"  {job['name']:<28} {job['status']:<32} val {pct(job.get('val_accuracy')):>7}  "
            f"test {pct(job.get('test_accuracy')):>7}  epochs {epochs if epochs is not None else '-'}"
            f"{limited}  {job.get('seconds', 0):.0f} s"
        )
    return "\n".join(lines)


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m ml.batch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", required=True, help="jobs file: one 'NAME pipeline-arguments...' per line")
    parser.add_argument("--data", required=True, help="folder with Benign/Early/Pre/Pro sub-folders")
    parser.add_argument("--out", required=True, help="output folder: one sub-folder and one log per job")
    parser.add_argument("--seconds", type=float, required=True, help="the slot: every job has ended by then")
    parser.add_argument("--parallel", type=int, default=1, help="jobs running at once")
    parser.add_argument(
        "--reserve",
        type=float,
        default=90.0,
        help="seconds kept at the end of the slot to evaluate and save (default 90)",
    )
    parser.add_argument(
        "--min-start", type=float, default=120.0, help="start no job with less of the slot left than this (default 120)"
    )
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        jobs = parse_jobs(Path(args.jobs).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"error: {args.jobs}: {exc}", file=sys.stderr)
        return 2
    if args.parallel < 1 or args.seconds <= 0:
        print("error: --parallel must be at least 1 and --seconds positive", file=sys.stderr)
        return 2
    result = run_batch(
        jobs,
        args.data,
        args.out,
        seconds=args.seconds,
        parallel=args.parallel,
        reserve=args.reserve,
        min_start=args.min_start,
    )
    print(format_summary(result))
    return 0 if all(job["status"] == "done" for job in result["jobs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
