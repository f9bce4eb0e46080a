"""A fleet measured as a building runs it (``python -m benchmarks fleet``): a PostgreSQL server of its own
(benchmarks.pg_cluster), an admin, and kiosk processes (``python -m edge fleet sync``) each with its own gallery.

- propagation: the admin enrols a person from the desk, then erases them; each online kiosk's time until its
  gallery holds them, then no longer does, read from the gallery file (p50 and p95 over ``rounds`` of each);
- outage: the server is stopped for ``outage_s`` while every kiosk logs decisions and enrols people, then started;
  the decisions and enrolments missing on the server, or there twice, are counted once every kiosk has caught up;
- catch-up: ``catchup_people`` people enrolled while a new replica was off; the time of its first round.

The fleet moves sealed templates and never looks at a face: the templates here are random unit vectors.
"""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.environment import collect_environment
from benchmarks.pg_cluster import LocalPostgres
from benchmarks.results import new_result
from edge.base.errors import UserError
from edge.base.progress import progress_bar
from edge.fleet.admin import FleetAdmin
from edge.fleet.credentials import KioskCredentials
from edge.fleet.sync import FleetSync
from edge.gallery.sqlite import SqliteGallery
from edge.gallery.store import EmbeddingKey

MODEL = EmbeddingKey("benchmark-model", "benchmark-space", "onnx:fp32")
DIM = 128
POLL_S = 0.005


def unit_vectors(count: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(count, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def wait_until(condition, timeout_s: float, what: str, poll_s: float = POLL_S) -> float:
    """Seconds until ``condition()`` held; raises TimeoutError naming ``what`` after ``timeout_s``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(poll_s)
    return time.monotonic() - started


class FleetLab:
    """A server, its admin and ``kiosks`` kiosk processes in ``folder``; kiosk i is ``door-i``."""

    def __init__(self, folder: Path, kiosks: int):
        self.folder = Path(folder)
        self.server = LocalPostgres()
        self.server.start()
        self.admin = FleetAdmin.init(self.server.admin_url(), self.folder / "admin" / "fleet.key")
        self.kiosks = [f"door-{i}" for i in range(kiosks)]
        self.processes: dict[str, subprocess.Popen] = {}
        for kiosk in self.kiosks:
            self.add(kiosk)

    def add(self, kiosk: str) -> Path:
        """A kiosk's credentials and its empty gallery (its process not started)."""
        self.admin.add_kiosk(kiosk, self.credentials(kiosk))
        SqliteGallery(self.gallery(kiosk), create=True).close()
        return self.gallery(kiosk)

    def credentials(self, kiosk: str) -> Path:
        return self.folder / f"{kiosk}.json"

    def gallery(self, kiosk: str) -> Path:
        return self.folder / f"{kiosk}.db"

    def start(self, kiosk: str) -> None:
        env = {**os.environ, "EDGE_FACE_HOME": str(self.folder / f"home-{kiosk}")}
        log = open(self.folder / f"{kiosk}.log", "ab")
        self.processes[kiosk] = subprocess.Popen(
            [sys.executable, "-m", "edge", "fleet", "sync", "--fleet", str(self.credentials(kiosk)), "--gallery",
             str(self.gallery(kiosk))], env=env, stdout=log, stderr=log)
        log.close()

    def start_all(self, timeout_s: float = 60.0) -> None:
        for kiosk in self.kiosks:
            self.start(kiosk)
        wait_until(lambda: self.seen() >= set(self.kiosks), timeout_s, "every kiosk to report", 0.05)

    def seen(self) -> set[str]:
        return {kiosk for (kiosk,) in self.admin.conn.execute(
            "SELECT id FROM edge_fleet.kiosks WHERE last_seen IS NOT NULL")}

    def kill(self, kiosk: str) -> None:
        process = self.processes.pop(kiosk)
        process.kill()
        process.wait()

    def stop(self, kiosk: str) -> None:
        process = self.processes.pop(kiosk)
        process.terminate()
        process.wait(timeout=30)

    def held(self, kiosk: str) -> dict[str, tuple[str, bool, int]]:
        """fleet id -> (name, suspended, templates) as the kiosk's gallery file holds them now."""
        with sqlite3.connect(f"file:{self.gallery(kiosk)}?mode=ro", uri=True) as db:
            return {fid: (name, bool(suspended), templates) for fid, name, suspended, templates in db.execute(
                "SELECT i.fleet_id, i.name, i.suspended, COUNT(t.id) FROM identities i LEFT JOIN templates t ON "
                "t.identity_id=i.id GROUP BY i.id")}

    def on_server(self) -> dict[str, tuple[str, bool, int]]:
        return {pid: (name, suspended, templates) for pid, name, suspended, templates in self.admin.conn.execute(
            "SELECT p.id, p.name, p.suspended, count(t.id) FROM edge_fleet.people p LEFT JOIN edge_fleet.templates t "
            "ON t.person_id = p.id GROUP BY p.id")}

    def converged(self, kiosks: list[str] | None = None) -> bool:
        """Every kiosk holds what the server holds, and has nothing left to send."""
        server = self.on_server()
        return all(self.held(k) == server and not self.unsent(k) for k in (kiosks or self.kiosks))

    def unsent(self, kiosk: str) -> int:
        """Outbox changes and decisions the kiosk has not sent yet."""
        with sqlite3.connect(f"file:{self.gallery(kiosk)}?mode=ro", uri=True) as db:
            outbox = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
            sent = db.execute("SELECT value FROM meta WHERE key='fleet_events_sent'").fetchone()
            events = db.execute("SELECT COUNT(*) FROM events WHERE id > ?", (int(sent[0]) if sent else 0,)).fetchone()
        return outbox + events[0]

    def outage(self, seconds: float) -> None:
        """The server stopped for ``seconds`` and started again on its port; the admin reconnects."""
        self.admin.close()
        self.server.stop()
        time.sleep(seconds)
        self.server.start()
        self.admin = FleetAdmin(self.server.admin_url(), self.folder / "admin" / "fleet.key")

    def close(self) -> None:
        for kiosk in list(self.processes):
            self.kill(kiosk)
        self.admin.close()
        self.server.remove()


@dataclass(frozen=True)
class FleetOptions:
    folder: Path
    kiosks: int = 3
    rounds: int = 20
    outage_s: float = 30.0
    catchup_people: int = 10_000


def propagation(lab: FleetLab, rounds: int) -> dict[str, list[float]]:
    """Seconds from the admin's commit until each online kiosk holds (enrol) or no longer holds (erase) a person."""
    times: dict[str, list[float]] = {"enrol": [], "erase": []}
    for index in progress_bar(range(rounds), desc="propagation", unit="round"):
        name = f"propagation {index}"
        lab.admin.enrol(name, unit_vectors(2, index), MODEL, ["desk", "desk"], "yes (benchmark)")
        started = time.monotonic()
        person = lab.admin.person_id(name)
        times["enrol"] += _arrivals(lab, lambda k: person in lab.held(k), started, f"{name} to reach every kiosk")
        lab.admin.remove(name)
        started = time.monotonic()
        times["erase"] += _arrivals(lab, lambda k: person not in lab.held(k), started, f"{name} to go everywhere")
    return times


def _arrivals(lab: FleetLab, arrived, started: float, what: str) -> list[float]:
    waiting, seconds = set(lab.kiosks), []
    while waiting:
        for kiosk in sorted(waiting):
            if arrived(kiosk):
                waiting.discard(kiosk)
                seconds.append(time.monotonic() - started)
        if time.monotonic() - started > 60:
            raise TimeoutError(f"{what}: {sorted(waiting)} not within 60 s")
        time.sleep(POLL_S)
    return seconds


def outage(lab: FleetLab, seconds: float) -> dict:
    """The server stopped for ``seconds`` while every kiosk logs and enrols; what reached it, once, afterwards."""
    stop, counts = threading.Event(), {}

    def busy_kiosk(kiosk: str) -> None:
        gallery = SqliteGallery(lab.gallery(kiosk))
        logged = enrolled = 0
        try:
            while not stop.is_set():
                gallery.events.log([{"source": "benchmark", "outcome": "unknown", "reason": "outage benchmark"}])
                logged += 1
                if logged % 20 == 0:
                    gallery.people.enroll(f"{kiosk} outage {enrolled}", unit_vectors(1, logged), MODEL, ["camera"],
                                          consent="yes (benchmark)")
                    enrolled += 1
                stop.wait(0.05)
        finally:
            counts[kiosk] = (logged, enrolled)
            gallery.close()

    threads = [threading.Thread(target=busy_kiosk, args=(k,)) for k in lab.kiosks]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    lab.outage(seconds)
    time.sleep(1.0)
    stop.set()
    for thread in threads:
        thread.join()
    wait_until(lambda: all(not lab.unsent(k) for k in lab.kiosks), 120, "every kiosk to send its backlog", 0.1)
    wait_until(lab.converged, 120, "every replica to converge", 0.1)
    logged = sum(c[0] for c in counts.values())
    received = dict(lab.admin.conn.execute(
        "SELECT kiosk_id, count(DISTINCT local_seq) FROM edge_fleet.events GROUP BY kiosk_id").fetchall())
    rows, distinct = lab.admin.conn.execute(
        "SELECT count(*), count(DISTINCT (kiosk_id, local_seq)) FROM edge_fleet.events").fetchone()
    names = [name for (name,) in lab.admin.conn.execute("SELECT name FROM edge_fleet.people WHERE name LIKE %s",
                                                        ("% outage %",))]
    enrolled = sum(c[1] for c in counts.values())
    return {"outage_s": seconds, "events_logged": logged,
            "events_lost": sum(max(0, counts[k][0] - received.get(k, 0)) for k in lab.kiosks),
            "events_duplicated": rows - distinct, "enrolments_made": enrolled,
            "enrolments_lost": enrolled - len(set(names)), "enrolments_duplicated": len(names) - len(set(names))}


def catchup(lab: FleetLab, people: int) -> dict:
    """``people`` enrolled from the desk (in one transaction) while a new replica was off; its first round's time."""
    for kiosk in list(lab.processes):
        lab.stop(kiosk)
    conn = lab.admin.conn
    with conn.transaction():
        for index in progress_bar(range(people), desc="enrolling for catch-up", unit="person"):
            lab.admin.enrol(f"catch-up {index}", unit_vectors(1, 10_000 + index), MODEL, ["desk"], "yes (benchmark)")
    gallery = lab.add("catch-up")
    replica = FleetSync(KioskCredentials.read(lab.credentials("catch-up")), gallery)
    try:
        started = time.perf_counter()
        state = replica.sync_once()
        seconds = time.perf_counter() - started
    finally:
        replica.close()
    held = lab.held("catch-up")
    if len(held) != len(lab.on_server()):
        raise UserError(f"the new replica holds {len(held)} people after catching up, the server "
                        f"{len(lab.on_server())}")
    return {"catchup_people": people, "catchup_s": round(seconds, 3), "catchup_changes": state.applied}


def run_fleet(options: FleetOptions) -> tuple[str, dict]:
    lab = FleetLab(options.folder, options.kiosks)
    try:
        version = lab.admin.conn.info.server_version
        lab.start_all()
        times = propagation(lab, options.rounds)
        lost = outage(lab, options.outage_s)
        caught = catchup(lab, options.catchup_people)
    finally:
        lab.close()
    p = {kind: np.asarray(values) for kind, values in times.items()}
    board = "host"
    result = new_result(
        "fleet", collect_environment(board, 1), kiosks=options.kiosks, rounds=options.rounds,
        postgres=f"{version // 10000}.{version % 10000}",
        propagation_p50_s={kind: round(float(np.percentile(v, 50)), 4) for kind, v in p.items()},
        propagation_p95_s={kind: round(float(np.percentile(v, 95)), 4) for kind, v in p.items()},
        propagation_s=times, **lost, **caught)
    return board, result


def summary_lines(result: dict) -> list[str]:
    p95 = result["propagation_p95_s"]
    return [f"propagation p95 (every online kiosk): enrol {p95['enrol']:.3f} s, erase {p95['erase']:.3f} s "
            f"(target 5 s)",
            f"catch-up of {result['catchup_people']} people: {result['catchup_s']:.1f} s (target 30 s)",
            f"{result['outage_s']:.0f} s outage: {result['events_logged']} decisions logged, {result['events_lost']} "
            f"lost, {result['events_duplicated']} duplicated; {result['enrolments_made']} enrolments, "
            f"{result['enrolments_lost']} lost, {result['enrolments_duplicated']} duplicated"]
