"""Bounded load: N clients submitting cases through the API as a careful integrating system does.

Each client starts at most ``rate`` cases per second (default 0.35: 4 clients send about 1.4 cases,
2 images, per second, which one of the suite's two 1-child CPU workers alone keeps up with on a
small shared machine), so that a backlog after a fault is the fault's, not the load's.

Each submission gets its own Idempotency-Key and is sent again with the same key after a timeout,
a connection error or a 5xx/429, until the server acknowledges it (201, or 200 for a replay).
Every attempt's duration is recorded: "blocked" is an attempt that took longer than 5 s.
"""

import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import requests

BLOCKED_S = 5.0


def smear_images(dataset_dir, limit=400, seed=0):
    """(name, bytes) of real smears from the data set, or synthetic PNGs when it is not here."""
    files = sorted(Path(dataset_dir).glob("original/*/*.jpg")) if dataset_dir and Path(dataset_dir).is_dir() else []
    if files:
        random.Random(seed).shuffle(files)
        return [(path.name, path.read_bytes()) for path in files[:limit]]
    import io

    from PIL import Image

    images = []
    for index in range(20):
        buffer = io.BytesIO()
        Image.new("RGB", (224, 224), (150 + index, 60, 120)).save(buffer, format="PNG")
        images.append((f"synthetic-{index}.png", buffer.getvalue()))
    return images


@dataclass
class Submission:
    key: str
    patient: int
    images: list
    case_id: int = None
    first_sent: float = None
    acknowledged: float = None
    attempts: int = 0


@dataclass
class Attempt:
    started: float
    seconds: float
    outcome: str  # "201", "200", "500", "timeout", "connection"...


@dataclass
class LoadResult:
    submissions: list = field(default_factory=list)
    attempts: list = field(default_factory=list)

    @property
    def acknowledged(self):
        return [s for s in self.submissions if s.case_id is not None]

    @property
    def unacknowledged(self):
        return [s for s in self.submissions if s.case_id is None]

    def blocked(self, threshold=BLOCKED_S):
        return [a for a in self.attempts if a.seconds > threshold]

    def max_attempt_s(self):
        return max((a.seconds for a in self.attempts), default=0.0)


class Load:
    def __init__(
        self, base_url, token, patients, images, clients=4, timeout_s=10.0, images_per_case=(1, 2), seed=0, rate=0.35
    ):
        self.base_url, self.token, self.patients, self.images = base_url, token, patients, images
        self.clients, self.timeout_s, self.images_per_case = clients, timeout_s, images_per_case
        self.interval_s = 1.0 / rate if rate else 0.0  # each client starts a case at most this often
        self.random = random.Random(seed)
        self.result = LoadResult()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = []

    def start(self):
        for index in range(self.clients):
            thread = threading.Thread(target=self._client, args=(index,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop_new(self):
        """No new submissions; pending ones are still sent until acknowledged (see finish)."""
        self._stop.set()

    def finish(self, timeout_s=180):
        self.stop_new()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.1, deadline - time.monotonic()))
        return self.result

    def _client(self, index):
        session = requests.Session()
        session.headers["Authorization"] = f"Token {self.token}"
        rng = random.Random(index * 7919 + 1)
        while not self._stop.is_set():
            began = time.monotonic()
            submission = Submission(
                key=str(uuid.uuid4()),
                patient=rng.choice(self.patients),
                images=rng.sample(self.images, rng.randint(*self.images_per_case)),
            )
            with self._lock:
                self.result.submissions.append(submission)
            self._send_until_acknowledged(session, submission)
            self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - began)))

    def _send_until_acknowledged(self, session, submission, give_up_after_s=300):
        submission.first_sent = time.time()
        delay = 0.2
        while time.time() - submission.first_sent < give_up_after_s:
            submission.attempts += 1
            files = [("images", (name, data, "image/jpeg")) for name, data in submission.images]
            started = time.time()
            try:
                answer = session.post(
                    f"{self.base_url}/api/cases/",
                    data={"patient": submission.patient, "clinical_notes": "load"},
                    files=files,
                    timeout=self.timeout_s,
                    headers={"Idempotency-Key": submission.key, "Prefer": "return=minimal"},
                )
                outcome = str(answer.status_code)
            except requests.Timeout:
                answer, outcome = None, "timeout"
            except requests.ConnectionError:
                answer, outcome = None, "connection"
            with self._lock:
                self.result.attempts.append(Attempt(started, time.time() - started, outcome))
            if answer is not None and answer.status_code in (200, 201):
                submission.case_id = answer.json()["id"]
                submission.acknowledged = time.time()
                return
            if answer is not None and 400 <= answer.status_code < 500 and answer.status_code not in (408, 429):
                return  # refused for good (never expected here): counted as unacknowledged
            time.sleep(delay)
            delay = min(delay * 2, 3.0)
