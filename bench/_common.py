"""Helpers shared by the benchmarks: CPU contention, statistics, synthetic smear images.

Benchmarks run on machines that do other work (a training run, a browser test...): every result
says how much CPU *other* processes used while it was measured, so numbers taken under different
loads are not compared blindly. Ratios are always measured within one run, both sides interleaved.
"""

import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "all-leukemia" / "original"


def _busy_jiffies():
    """(busy, total) CPU jiffies of the whole machine from /proc/stat; None where there is none."""
    try:
        with open("/proc/stat") as handle:
            fields = [int(v) for v in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def _own_cpu_s():
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class Contention:
    """Measures, over a ``with`` block, the CPU used by this process tree and by everything else.

    ``extra_pids``: processes of the benchmark that are not its children (e.g. a worker it
    started and that is still running): their CPU time counts as the benchmark's, not as others'.
    """

    def __init__(self, extra_pids=()):
        self.extra_pids = list(extra_pids)
        self.result = {}

    @staticmethod
    def _pid_cpu_s(pid):
        """CPU seconds used so far by a process and its descendants (from /proc), exited ones
        included: a reaped child's CPU is in its parent's cutime/cstime (a Celery child replaced
        after its max tasks, a gunicorn worker restarted)."""
        ticks = os.sysconf("SC_CLK_TCK")
        parent, cpu = {}, {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    parts = handle.read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            parent[int(entry)] = int(parts[1])
            cpu[int(entry)] = sum(int(value) for value in parts[11:15]) / ticks  # utime stime cutime cstime
        tree, frontier = set(), [pid]
        while frontier:
            current = frontier.pop()
            if current in tree or current not in cpu:
                continue
            tree.add(current)
            frontier.extend(child for child, ppid in parent.items() if ppid == current)
        return sum(cpu[p] for p in tree)

    def _extra_cpu_s(self):
        return sum(self._pid_cpu_s(pid) for pid in self.extra_pids)

    def __enter__(self):
        self._start = (time.perf_counter(), _busy_jiffies(), _own_cpu_s(), self._extra_cpu_s(), os.getloadavg())
        return self

    def __exit__(self, *exc):
        wall0, jiffies0, own0, extra0, load0 = self._start
        wall = time.perf_counter() - wall0
        jiffies1 = _busy_jiffies()
        own = _own_cpu_s() - own0 + max(0.0, self._extra_cpu_s() - extra0)
        cores = os.cpu_count() or 1
        result = {
            "wall_s": wall,
            "cores": cores,
            "own_cores": own / wall if wall else 0.0,
            "loadavg_start": load0[0],
            "loadavg_end": os.getloadavg()[0],
        }
        if jiffies0 and jiffies1:
            busy = (jiffies1[0] - jiffies0[0]) / max(1, jiffies1[1] - jiffies0[1]) * cores  # cores busy on average
            result["busy_cores"] = busy
            result["other_cores"] = max(0.0, busy - result["own_cores"])
        self.result = result
        return False

    def describe(self):
        r = self.result
        if "other_cores" not in r:
            return f"load average {r.get('loadavg_start', 0):.2f} → {r.get('loadavg_end', 0):.2f}"
        return (
            f"other processes used {r['other_cores']:.2f} of {r['cores']} cores on average "
            f"(this benchmark {r['own_cores']:.2f}; load average {r['loadavg_start']:.2f} → {r['loadavg_end']:.2f})"
        )


def top_other_processes(limit=3):
    """The busiest other processes right now (name and %CPU since they started), for the record."""
    rows = []
    me = os.getpid()
    ticks = os.sysconf("SC_CLK_TCK")
    try:
        with open("/proc/uptime") as handle:
            uptime = float(handle.read().split()[0])
    except OSError:
        return []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                raw = handle.read()
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmd = handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        parts = raw.rsplit(")", 1)[1].split()
        cpu = (int(parts[11]) + int(parts[12])) / ticks
        age = uptime - int(parts[19]) / ticks
        nice = int(parts[16])
        if age > 1 and cpu / age > 0.2:
            rows.append((cpu / age, nice, cmd[:110]))
    return sorted(rows, reverse=True)[:limit]


def machine_line():
    return f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}"


def median(values):
    return statistics.median(values) if values else float("nan")


def percentile(values, q):
    """The q-th percentile (0-100) with linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def write_synthetic_smears(root, per_class, size, seed=0):
    """A data folder <root>/{Benign,Early,Pre,Pro}/IMG-<n>.jpg of smear-like JPEGs; returns root."""
    import numpy as np
    from PIL import Image

    root = Path(root)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    for c, folder in enumerate(("Benign", "Early", "Pre", "Pro")):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = np.array([226, 196, 206], dtype=np.float32) + rng.normal(0, 6, (size, size, 3))
            cy, cx = rng.uniform(0.3, 0.7, 2) * size
            r = (0.12 + 0.03 * c) * size
            nucleus = ((yy - cy) ** 2 + (xx - cx) ** 2) < r * r
            image[nucleus] = np.array([92 + 15 * c, 48, 128], dtype=np.float32) + rng.normal(
                0, 14, (int(nucleus.sum()), 3)
            )
            Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(
                root / folder / f"IMG-{i + 1:04d}.jpg", quality=92
            )
    return root
