"""The faults, and how one run under load is measured.

A scenario: load starts; after a warm-up the fault is injected; after the fault's duration it is
healed (the part restarted, the broker resumed...); load goes on a little, then stops; pending
submissions are sent until acknowledged; then the run waits for every acknowledged case to be
analysed. From the database it counts:

- submitted: cases the clients got an acknowledgement for (201, or 200 for a replay);
- completed: of those, cases whose every smear has its prediction;
- lost: acknowledged cases missing, or with an image file missing, or with a failed job;
- duplicates: cases no Idempotency-Key points at (a submission stored twice), and keys answered
  with two different cases;
- recovery: from the end of the fault until the last case acknowledged before that end was
  analysed (0 when everything was analysed before the fault ended);
- blocked: requests that took longer than 5 s, and the longest one.
"""

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from reliability.load import BLOCKED_S, Load

TARGET_RECOVERY_S = 30.0


@dataclass
class Fault:
    name: str
    description: str
    inject: callable
    heal: callable = None
    broker_fault: bool = False
    needs: str = ""  # "media_tmpfs": only when the media folder is a small tmpfs


def _noop(stack):
    return None


def _restart_broker_empty_kill(stack):
    stack.broker.kill()


def _restart_broker_empty_start(stack):
    stack.broker.start(empty=True)


def _pg_stop(stack):
    stack.pg.stop()


def _pg_start(stack):
    stack.pg.start()


def _web_restart(stack):
    stack.start_web()
    stack.wait_for_web()


FAULTS = {
    "baseline": Fault("baseline", "no fault: the load alone", _noop),
    "worker_child_kill": Fault(
        "worker_child_kill",
        "SIGKILL a pool child of one worker mid-task (its parent starts another)",
        lambda stack: stack.kill_worker_child(),
    ),
    "worker_kill": Fault(
        "worker_kill",
        "SIGKILL one of the two workers (parent and children) as a node lost; "
        "the other carries on; the lost one is started again after the fault",
        lambda stack: stack.kill_worker(),
        lambda stack: stack.start_worker(0),
    ),
    "broker_pause": Fault(
        "broker_pause",
        "SIGSTOP the broker (accepts connections, answers nothing), then SIGCONT",
        lambda stack: stack.broker.pause(),
        lambda stack: stack.broker.resume(),
        broker_fault=True,
    ),
    "broker_restart_empty": Fault(
        "broker_restart_empty",
        "SIGKILL the broker, start it again empty (every message lost)",
        _restart_broker_empty_kill,
        _restart_broker_empty_start,
        broker_fault=True,
    ),
    "db_restart": Fault(
        "db_restart",
        "PostgreSQL fast shutdown (every connection closed), started again after the fault",
        _pg_stop,
        _pg_start,
    ),
    "web_kill": Fault(
        "web_kill",
        "SIGKILL gunicorn (master and workers) under load, start it again",
        lambda stack: stack.kill_web(),
        _web_restart,
    ),
    "disk_full": Fault(
        "disk_full",
        "fill the media folder (a small tmpfs) to the last byte, then free it",
        lambda stack: stack.fill_media(),
        lambda stack: stack.free_media(),
        needs="media_tmpfs",
    ),
}

SHORT = ["baseline", "worker_child_kill", "worker_kill", "broker_pause"]
FULL = list(FAULTS)


@dataclass
class Timing:
    warmup_s: float = 5.0
    fault_s: float = 15.0
    after_s: float = 10.0
    drain_s: float = 240.0

    @classmethod
    def short(cls):
        return cls(warmup_s=4.0, fault_s=12.0, after_s=6.0, drain_s=180.0)

    @classmethod
    def full(cls):
        return cls(warmup_s=10.0, fault_s=30.0, after_s=30.0, drain_s=300.0)


@dataclass
class Outcome:
    scenario: str
    broker: str
    clients: int
    submitted: int = 0
    completed: int = 0
    lost: int = 0
    duplicates: int = 0
    failed_jobs: int = 0
    unacknowledged: int = 0
    recovery_s: float = None
    blocked: int = 0
    max_request_s: float = 0.0
    attempts: int = 0
    errors_by_kind: dict = field(default_factory=dict)
    skipped: str = ""
    notes: list = field(default_factory=list)

    def meets_targets(self, broker_fault=False):
        problems = []
        if self.skipped:
            return []
        if self.lost:
            problems.append(f"{self.lost} lost")
        if self.duplicates:
            problems.append(f"{self.duplicates} duplicates")
        if self.completed != self.submitted:
            problems.append(f"{self.submitted - self.completed} not completed")
        if self.unacknowledged:
            problems.append(f"{self.unacknowledged} never acknowledged")
        if self.recovery_s is None or self.recovery_s > TARGET_RECOVERY_S:
            problems.append(f"recovery {self.recovery_s} s > {TARGET_RECOVERY_S:.0f} s")
        if broker_fault and self.max_request_s > BLOCKED_S:
            problems.append(f"a request blocked {self.max_request_s:.1f} s by a broker fault")
        return problems

    def line(self):
        if self.skipped:
            return f"{self.scenario:<22} {self.broker:<9} skipped: {self.skipped}"
        recovery = "never" if self.recovery_s is None else f"{self.recovery_s:.1f}"
        return (
            f"{self.scenario:<22} {self.broker:<9} clients={self.clients:<3} submitted={self.submitted:<5} "
            f"completed={self.completed:<5} lost={self.lost} duplicates={self.duplicates} "
            f"failed_jobs={self.failed_jobs} recovery_s={recovery} blocked>5s={self.blocked} "
            f"max_request_s={self.max_request_s:.2f}"
        )

    def as_dict(self):
        return asdict(self)


def run_scenario(stack, fault, load_images, clients=4, timing=None, log=print, rate=0.35):
    timing = timing or Timing()
    outcome = Outcome(fault.name, stack.broker_kind, clients)
    if fault.needs == "media_tmpfs" and not stack.media_mounted:
        outcome.skipped = "the media folder is not a tmpfs (needs root and mount)"
        return outcome
    wait_idle(stack, timeout_s=timing.drain_s)
    load = Load(stack.base_url, stack.token, stack.patient_ids, load_images, clients=clients, rate=rate).start()
    time.sleep(timing.warmup_s)
    log(f"  {fault.name}: injecting ({fault.description})")
    fault.inject(stack)
    time.sleep(timing.fault_s)
    if fault.heal is not None:
        fault.heal(stack)
    fault_end = time.time()
    log(f"  {fault.name}: healed; load goes on {timing.after_s:.0f} s")
    time.sleep(timing.after_s)
    result = load.finish(timeout_s=timing.drain_s)
    wait_analysed(stack, [s.case_id for s in result.acknowledged], timeout_s=timing.drain_s)
    measure(stack, result, outcome, fault_end)
    return outcome


def wait_idle(stack, timeout_s=240):
    """Until no job is queued or running (the previous scenario's work is done)."""
    deadline = time.monotonic() + timeout_s
    with stack.db() as connection, connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute("SELECT count(*) FROM inference_analysisjob WHERE status IN ('queued', 'running')")
            if cursor.fetchone()[0] == 0:
                return True
            time.sleep(0.5)
    return False


def wait_analysed(stack, case_ids, timeout_s=240):
    deadline = time.monotonic() + timeout_s
    ids = [case_id for case_id in case_ids if case_id]
    if not ids:
        return True
    while time.monotonic() < deadline:
        try:
            with stack.db() as connection, connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM cases_smear s WHERE s.case_id = ANY(%s) AND NOT EXISTS "
                    "(SELECT 1 FROM inference_analysisjob j WHERE j.smear_id = s.id AND j.status IN ('done', 'failed'))",
                    [ids],
                )
                if cursor.fetchone()[0] == 0:
                    return True
        except Exception as exc:  # noqa: BLE001 - the database may still be coming back
            last_error = exc  # noqa: F841 - kept for a debugger; the loop tries again
        time.sleep(0.5)
    return False


def measure(stack, result, outcome, fault_end):
    acknowledged = result.acknowledged
    ids = sorted({s.case_id for s in acknowledged}) or [0]  # [0]: an empty array has no type
    outcome.submitted = len({s.case_id for s in acknowledged})
    outcome.unacknowledged = len(result.unacknowledged)
    outcome.attempts = len(result.attempts)
    outcome.blocked = len(result.blocked())
    outcome.max_request_s = round(result.max_attempt_s(), 2)
    kinds = {}
    for attempt in result.attempts:
        kinds[attempt.outcome] = kinds.get(attempt.outcome, 0) + 1
    outcome.errors_by_kind = kinds
    by_key = {}
    for submission in acknowledged:
        by_key.setdefault(submission.key, set()).add(submission.case_id)
    with stack.db() as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.id, count(DISTINCT s.id), count(DISTINCT p.smear_id), "
            "extract(epoch FROM max(p.created_at)) FROM cases_case c "
            "JOIN cases_smear s ON s.case_id = c.id LEFT JOIN inference_prediction p ON p.smear_id = s.id "
            "WHERE c.id = ANY(%s) GROUP BY c.id",
            [ids],
        )
        rows = {row[0]: row[1:] for row in cursor.fetchall()}
        cursor.execute("SELECT s.case_id, s.image FROM cases_smear s WHERE s.case_id = ANY(%s)", [ids])
        missing_files = {case_id for case_id, name in cursor.fetchall() if not (Path(stack.media) / name).is_file()}
        cursor.execute(
            "SELECT count(*), count(DISTINCT s.case_id) FROM inference_analysisjob j JOIN cases_smear s "
            "ON s.id = j.smear_id WHERE j.status = 'failed' AND s.case_id = ANY(%s)",
            [ids],
        )
        failed_jobs, failed_cases = cursor.fetchone()
        first = min((s.first_sent for s in result.submissions if s.first_sent), default=time.time())
        cursor.execute(
            "SELECT count(*) FROM cases_case c WHERE c.created_at >= to_timestamp(%s) AND NOT EXISTS "
            "(SELECT 1 FROM idempotency_idempotencykey k WHERE k.resource_id = c.id)",
            [first - 1],
        )
        unkeyed = cursor.fetchone()[0]
    acked_ids = sorted({s.case_id for s in acknowledged})
    missing = [case_id for case_id in acked_ids if case_id not in rows]
    outcome.completed = sum(1 for case_id in acked_ids if case_id in rows and rows[case_id][0] == rows[case_id][1])
    outcome.failed_jobs = failed_jobs
    outcome.lost = len(missing) + len(missing_files) + failed_cases
    outcome.duplicates = unkeyed + sum(1 for cases in by_key.values() if len(cases) > 1)
    before_end = [rows[s.case_id] for s in acknowledged if s.acknowledged <= fault_end and s.case_id in rows]
    if any(row[0] != row[1] for row in before_end):
        outcome.recovery_s = None
    else:
        last = max((row[2] for row in before_end if row[2] is not None), default=None)
        outcome.recovery_s = round(max(0.0, float(last) - fault_end), 1) if last is not None else 0.0
    if missing_files:
        outcome.notes.append(f"cases with a missing image file: {sorted(missing_files)[:10]}")
    return outcome
