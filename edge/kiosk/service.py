"""The kiosk's one frame loop: in a thread behind the web page (``edge serve``) or in the foreground (``edge run``).

The loop reads the newest camera frame, runs ``edge.kiosk.stream`` on it, logs each visit's decision, keeps the last
annotated frame as JPEG for the page, counts what ``/metrics`` reports, reloads the gallery when another
connection changed it, prunes the log past its retention, asks the door about each decision, keeps unnamed
visitors, and feeds the systemd watchdog; its sinks (``Sink``) get each frame's step and each batch of decisions
(JSON lines, the annotated video and the run's summary for ``edge run``). A read that times out (the camera
delivers nothing) ends every open visit: none spans an outage, and those cut short open nothing. A finite source
that ends decides the visits still open. Calls from the API that use the models take the same lock as the loop
(the TFLite interpreter is not thread-safe).
"""
from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field

import cv2
import numpy as np

from edge.bundles.signing import Trust
from edge.faces.annotate import draw_tracks
from edge.faces.pipeline import Pipeline
from edge.kiosk.actions import DoorActions
from edge.kiosk.stream import STREAM_STAGES, KioskStream
from edge.kiosk.systemd import Notifier, watched_frames
from edge.sources import open_source
from edge.sources.uri import redact

log = logging.getLogger(__name__)
RECENT_DECISIONS = 20
STAGE_WINDOW = 300           # frames whose stage timings the page and /metrics summarise
GALLERY_CHECK_S = 1.0
PRUNE_EVERY_S = 3600.0


class Sink:
    """Something the loop hands its work to; every method does nothing unless a sink says otherwise."""

    def frame(self, frame, step) -> None:
        """One frame's step (``edge.kiosk.stream.StreamStep``), before its decisions are published."""

    def decisions(self, decisions) -> None:
        """Visit decisions just published (logged, shown, and put to the door)."""

    def close(self) -> None:
        """The loop ended."""


@dataclass
class LoopState:
    frames: int = 0
    frame_times: deque = field(default_factory=lambda: deque(maxlen=STAGE_WINDOW))       # monotonic seconds
    stage_ms: dict = field(default_factory=lambda: {s: deque(maxlen=STAGE_WINDOW) for s in STREAM_STAGES})
    decisions: Counter = field(default_factory=Counter)                                   # outcome -> count
    liveness: Counter = field(default_factory=Counter)                                    # verdict -> count
    recent: deque = field(default_factory=lambda: deque(maxlen=RECENT_DECISIONS))
    latest: tuple | None = None      # (image, display, faces) of the last frame, drawn and encoded when asked
    error: str = ""
    running: bool = False


class KioskService:
    def __init__(self, pipeline: Pipeline, source_uri: str, notifier: Notifier | None = None,
                 door: DoorActions | None = None, retention_days: tuple[float, float] = (7.0, 90.0),
                 source=None, clock=time.monotonic, trust: Trust | None = None, sinks: tuple = (),
                 stream: KioskStream | None = None, max_frames: int = 0, fleet=None, restart=None):
        """``retention_days``: how long decisions that named nobody, and named ones, stay in the log; ``source``:
        an already made frame source for ``source_uri`` (opened by ``start``); ``clock``: the monotonic clock that
        frames' ``arrived_s`` are read in (how old a look is when its door decision is made); ``trust``: who signed
        the bundle (edge.bundles.signing), unsigned when not given; ``sinks``: where each step and decision also goes;
        ``stream``: the kiosk stream (thresholds as the caller chose), the pipeline's own by default;
        ``max_frames``: stop after that many frames (0: when the source ends or the kiosk is stopped); ``fleet``: the
        replica's sync with its fleet's server (edge.fleet.sync.FleetSync), run here in a thread of its own;
        ``restart(why)``: stops the kiosk to be started again, when the fleet's liveness settings change (None: they
        are taken at start only)."""
        self.pipeline = pipeline
        self.trust = trust or Trust(None, None)
        self.clock = clock
        self.retention_days = retention_days
        self._pruned = -PRUNE_EVERY_S
        self.door = door or DoorActions([])
        self.stream = stream or KioskStream(pipeline)
        self.sinks, self.max_frames = sinks, max_frames
        self.source_uri = source_uri
        self.source_name = redact(source_uri)        # what logs, statuses and the event log show
        self.notifier = notifier or Notifier()
        self.models = threading.Lock()
        self.state = LoopState()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._source = source
        self._gallery_version = pipeline.gallery.version() if pipeline.gallery else 0
        self._gallery_checked = 0.0
        self.fleet, self.restart = fleet, restart
        self._fleet_thread: threading.Thread | None = None
        self._liveness_setting = self._fleet_liveness()            # what the kiosk's checks were chosen with
        self._take_fleet_settings()

    def start(self) -> None:
        """Opens the source and runs the loop in a thread (``edge serve``)."""
        self._open()
        self._thread = threading.Thread(target=self._run, name="kiosk loop", daemon=True)
        self._thread.start()

    def run(self) -> bool:
        """Runs the loop here until the source ends, ``max_frames`` or Ctrl+C / SIGTERM (``edge run``); returns
        whether it was interrupted. Errors propagate (a UserError is the command's one line)."""
        self._open()
        interrupted = False
        try:
            self._loop()
        except KeyboardInterrupt:
            interrupted = True
        finally:
            self.stop()
        return interrupted

    def _open(self) -> None:
        if self.fleet is not None:
            self._fleet_thread = threading.Thread(target=self.fleet.run, args=(self._stop,), name="fleet sync",
                                                  daemon=True)
            self._fleet_thread.start()
        if self._source is None:
            self._source = open_source(self.source_uri)
        else:
            self._source.open()
        self.state.running = True
        self.notifier.ready(f"running {self.pipeline.faces.embedder.entry.name} on {self.source_name}")

    def stop(self) -> None:
        """Stops the loop, decides the visits still open (cut short: they open nothing), closes the door actions
        and the sinks."""
        self.notifier.stopping()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._fleet_thread is not None:
            self._fleet_thread.join(timeout=10)
        if self.fleet is not None:
            self.fleet.close()
        if self._source is not None:
            self._source.close()
        with self.models:
            self._publish(self.stream.finish("the kiosk stopped"))
        self.state.running = False
        self.door.close()
        for sink in self.sinks:
            sink.close()

    def healthy(self) -> bool:
        """The loop runs without error and its camera streams: the only state in which a door may open."""
        return self.state.running and not self.state.error and self.camera_status()["state"] == "streaming"

    def fleet_status(self) -> dict | None:
        """The replica's link to its fleet's server (None: a kiosk with a gallery of its own)."""
        return self.fleet.status() if self.fleet is not None else None

    def barred(self, decision) -> str:
        """Why the kiosk bars a named visit: a suspended person; in a fleet, a replica too old to trust, the door's
        access rules, or liveness the fleet requires and this kiosk runs without."""
        templates = self.pipeline.matcher.templates
        if decision.identity in templates.suspended:
            return "suspended"
        if self.fleet is None:
            return ""
        barred = self.fleet.barred(templates.groups.get(decision.identity, frozenset()))
        if not barred and self.fleet.settings().get("require_liveness") and not self.door.require_live:
            return "liveness required"
        return barred

    def _take_fleet_settings(self) -> None:
        """The fleet's door settings and retention, its one place for them, over this kiosk's flags."""
        settings = self.fleet.settings() if self.fleet is not None else {}
        if "door_interval_s" in settings:
            self.door.min_interval_s = settings["door_interval_s"]
        if "max_frame_age_s" in settings:
            self.door.max_frame_age_s = settings["max_frame_age_s"]
        self.retention_days = (settings.get("keep_unknown_days", self.retention_days[0]),
                               settings.get("keep_named_days", self.retention_days[1]))
        if self.restart is not None and self._fleet_liveness() != self._liveness_setting:
            log.warning("the fleet's liveness settings changed: the kiosk restarts to run them")
            self.restart("the fleet's liveness settings changed")

    def _fleet_liveness(self) -> tuple:
        settings = self.fleet.settings() if self.fleet is not None else {}
        return settings.get("liveness"), settings.get("challenge")

    def camera_status(self) -> dict:
        status = getattr(self._source, "status", None)
        if status is None:
            return {"state": "streaming" if self.state.running else "closed", "dropped": 0, "reconnects": 0}
        return vars(status())

    def liveness_status(self) -> dict:
        """The liveness checks that run ("off" without), verdicts so far, and what the page asks of each visit."""
        gate = self.stream.liveness
        with self.models:                  # the visits' state is the loop's: read it between two of its steps
            asking = [{"track": t, "request": request} for t, request in gate.requests().items()] if gate else []
        return {"checks": gate.names if gate is not None else "off", "verdicts": dict(self.state.liveness),
                "asking": asking}

    def fps(self) -> float:
        times = self.state.frame_times
        return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0

    def stage_p50(self) -> dict[str, float]:
        return {stage: float(np.median(values)) if values else 0.0 for stage, values in self.state.stage_ms.items()}

    def _loop(self) -> None:
        for frame in watched_frames(self._source, self.notifier, self._stop):
            self._check_gallery()
            self._prune()
            if frame is None:
                with self.models:
                    self._publish(self.stream.finish("the camera stopped delivering frames"))
                continue
            with self.models:
                step = self.stream.step(frame.image, frame.index, frame.time_s)
            for sink in self.sinks:
                sink.frame(frame, step)
            self._publish(step.decisions, frame)
            self._record(frame, step)
            if self._enough_frames():
                break
        if self._source.ended or self._enough_frames():
            with self.models:                  # the footage ended: its last visits end with it, not cut short
                self._publish(self.stream.finish())

    def _enough_frames(self) -> bool:
        return bool(self.max_frames) and self.state.frames >= self.max_frames

    def _run(self) -> None:
        try:
            self._loop()
        except sqlite3.DatabaseError as err:
            self.gallery_failed(f"{self.pipeline.gallery.path}: {err}")
        except Exception as err:       # noqa: BLE001 - a crashed loop must show on the page and stop the watchdog
            log.exception("the kiosk loop stopped")
            self.state.error = f"{type(err).__name__}: {err}"
        finally:
            self.state.running = False

    def gallery_failed(self, reason: str) -> None:
        """The gallery cannot be read or written (damaged, removed): the kiosk stops deciding (no door opens), says
        why on /health and the page, and creates nothing in its place."""
        if not self.state.error:
            log.error("the gallery failed, the kiosk stops deciding: %s", reason)
            self.state.error = f"the gallery failed, no decisions are made: {reason}"
        self._stop.set()

    def _record(self, frame, step) -> None:
        state = self.state
        state.frames += 1
        state.frame_times.append(time.monotonic())
        for stage, value in step.timings_ms.items():
            state.stage_ms[stage].append(value)
        state.latest = (frame.image, frame.display, step.faces)

    def frame_jpeg(self) -> bytes | None:
        """The last frame with its tracked faces drawn, as JPEG: made when the page asks, not on every frame (an
        encode costs several milliseconds at 1080p). A camera with a display stream (picamera2's main) is shown
        at that resolution, with the boxes found in the detection stream scaled onto it."""
        if self.state.latest is None:
            return None
        image, display, faces = self.state.latest
        shown = image if display is None else display
        scale = (shown.shape[1] / image.shape[1], shown.shape[0] / image.shape[0])
        with self.models:                  # the visits' state is the loop's: read it between two of its steps
            annotated = draw_tracks(shown, faces, self.stream.judge, scale)
        ok, jpeg = cv2.imencode(".jpg", annotated, [cv2.IMWRITE_JPEG_QUALITY, 80])
        return jpeg.tobytes() if ok else None

    def _publish(self, decisions, frame=None) -> None:
        """Counts, shows, logs and keeps ``decisions``, made on ``frame`` (None: made without one, as when the
        camera stopped), and asks the door about each."""
        if not decisions:
            return
        records = [d.record() for d in decisions]
        healthy = self.healthy()
        for decision, record in zip(decisions, records):
            self.state.decisions[record["outcome"]] += not decision.rejudged        # visits, each counted once
            verdict = (record["liveness"] or {}).get("verdict", "off")
            self.state.liveness[verdict] += 1
            if verdict == "attack":
                log.warning("presentation attack: track %d (closest %s, %.4f): %s", decision.track,
                            decision.best_match, decision.score, json.dumps(record["liveness"]["checks"]))
                self.door.alert(decision, self.pipeline.board)
            decision.door = record["door"] = self.door.on_decision(decision, healthy, self.pipeline.board,
                                                                   self._look_age(decision, frame),
                                                                   self.barred(decision)).why
            self.state.recent.appendleft({**record, "time": time.time()})
        self.pipeline.matcher.log(records, self.source_name)
        for sink in self.sinks:
            sink.decisions(decisions)
        if self.pipeline.gallery:
            for decision, record in zip(decisions, records):
                self._keep_visitor(decision, record)

    def _look_age(self, decision, frame) -> float:
        """Seconds since the frame of the decision's newest look arrived: the age of ``frame`` now plus how long
        before it, in the source's own time, that look was taken (infinite without a frame or a look)."""
        if frame is None or decision.look_time_s is None:
            return float("inf")
        return self.clock() - frame.arrived_s + (frame.time_s - decision.look_time_s)

    def _keep_visitor(self, decision, record: dict) -> None:
        """An unnamed visit with looks is kept (sealed) so that a person can name it from the page, and so is a
        presentation attack, whoever it showed (its crop is evidence): both go at the unknown visitors' retention. A
        rejudged decision is kept only when it turned a named visit into an attack (an unnamed one was kept already)."""
        attack = (decision.liveness or {}).get("verdict") == "attack"
        named = decision.outcome == "named"
        keep = (named and attack) if decision.rejudged else (not named or attack)
        if not keep or not decision.evidence:
            return
        crop = None
        if decision.crop is not None:
            ok, jpeg = cv2.imencode(".jpg", decision.crop, [cv2.IMWRITE_JPEG_QUALITY, 90])
            crop = jpeg.tobytes() if ok else None
        self.pipeline.gallery.visitors.add(np.stack(decision.evidence), crop, self.pipeline.faces.key,
                                          {**record, "source": self.source_name})

    def _prune(self) -> None:
        now = time.monotonic()
        if self.pipeline.gallery and now - self._pruned >= PRUNE_EVERY_S:
            self._pruned = now
            gone = self.pipeline.gallery.events.prune(*self.retention_days)
            if gone:
                log.info("retention: %d logged decisions past their time deleted", gone)

    def _check_gallery(self) -> None:
        now = time.monotonic()
        if not self.pipeline.gallery or now - self._gallery_checked < GALLERY_CHECK_S:
            return
        self._gallery_checked = now
        version = self.pipeline.gallery.version()
        if version != self._gallery_version:
            self._gallery_version = version
            with self.models:
                self.stream.reload_gallery()
            self._take_fleet_settings()
            log.info("gallery changed: %d people enrolled", len(self.pipeline.matcher.templates.names))
