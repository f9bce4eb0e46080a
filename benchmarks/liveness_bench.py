"""Liveness measured on rendered attack clips and live video, at the bundle's thresholds as shipped.

Every clip and every live source runs through the kiosk's own loop (``edge.kiosk.stream`` with the bundle's
liveness checks, as ``edge run`` builds them), and each visit's published verdict is read:

- an attack clip (``python -m benchmarks attacks``: ``<kind>/<name>.mp4``) counts only when the kiosk forms a
  visit from it; it is accepted (an APCER error) when any of its visits is judged ``live``;
- a live visit is every visit of a live source with at least ``MIN_LOOKS`` liveness looks and a face at least
  ``MIN_FACE`` px high; it is rejected (a BPCER error) unless judged ``live`` (``insufficient`` is a rejection).
- ``fused.someone_else`` counts the clips and live visits whose live verdict was refused because a look it rested
  on was not the visit's person (edge.kiosk.stream vouches for them).
- ``fused.without_movement`` counts the clips and live visits judged live with a check that wanted movement not
  live: a still face a texture check was sure of (edge.liveness.gate.fuse).

Every visit is judged as an enrolled person's would be, whoever it names: its decision waits for the verdict and,
gone out insufficient, has the kiosk's second chance (``liveness.retry_s``); its last verdict counts.

Each check is also scored alone, from its own verdict in the same visits. Nothing is fitted here: the thresholds
are the bundle's, and the liveness time per look is the loop's own ``liveness`` stage over the looks it took.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from benchmarks.environment import collect_environment
from benchmarks.results import new_result
from edge.base.errors import UserError
from edge.base.progress import progress_bar
from edge.faces.pipeline import open_pipeline
from edge.kiosk.run_summary import OUTCOMES
from edge.kiosk.stream import KioskStream
from edge.liveness.choose import open_liveness
from edge.runtime.board_profile import bundle_profile
from edge.sources import open_source

MIN_LOOKS = 4
MIN_FACE = 40
ATTACK_KINDS = ("print", "replay", "video_replay")


@dataclass(frozen=True)
class LivenessOptions:
    bundle: Path
    attacks: Path
    live: tuple[str, ...]
    threads: int | None = None
    max_clips: int = 0            # per kind; 0: every clip


@dataclass
class Tally:
    """Per check (and ``fused``): attack clips accepted per kind, live visits rejected."""

    accepted: Counter
    rejected: int = 0

    @classmethod
    def empty(cls) -> "Tally":
        return cls(Counter())


def attack_clips(folder: Path, max_clips: int = 0) -> dict[str, list[Path]]:
    """The rendered clips by kind; a folder holding none is one line."""
    if not folder.is_dir():
        raise UserError(f"--attacks {folder} is not a folder; make one with: python -m benchmarks attacks "
                        f"--images PHOTOS --out {folder}")
    clips = {kind: sorted((folder / kind).glob("*.mp4")) for kind in ATTACK_KINDS}
    clips = {kind: paths[:max_clips] if max_clips else paths for kind, paths in clips.items() if paths}
    if not clips:
        raise UserError(f"--attacks {folder} holds no clips ({', '.join(k + '/*.mp4' for k in ATTACK_KINDS)}); "
                        f"make them with: python -m benchmarks attacks --images PHOTOS --out {folder}")
    return clips


def run_liveness(options: LivenessOptions) -> tuple[str, dict]:
    clips = attack_clips(options.attacks, options.max_clips)
    pipeline = open_pipeline(options.bundle, threads=options.threads, profile=bundle_profile(options.bundle))
    gate = open_liveness(options.bundle, threads=options.threads, profile=bundle_profile(options.bundle))
    if gate is None:
        raise UserError(f"the bundle {options.bundle} runs no liveness check (its board config's liveness.checks is "
                        f"empty and it carries no texture file): nothing to measure")
    names = ["fused", *gate.names]
    attacks, live = {name: Tally.empty() for name in names}, {name: Tally.empty() for name in names}
    counted, no_visit, live_visits, liveness_ms = Counter(), Counter(), 0, 0.0
    stray = {"attack_clips": Counter(), "live_visits": 0}      # live verdicts refused: their looks were someone else's
    still = {"attack_clips": Counter(), "live_visits": 0}      # judged live without the movement a check wanted
    looks_before = gate.looks_taken
    try:
        bar = progress_bar(total=sum(map(len, clips.values())) + len(options.live), desc="liveness", unit="clip")
        for kind, paths in clips.items():
            for path in paths:
                verdicts, spent = _visits(pipeline, gate, str(path))
                liveness_ms += spent
                bar.update()
                if not verdicts:
                    no_visit[kind] += 1
                    continue
                counted[kind] += 1
                stray["attack_clips"][kind] += any(v.get("stray") for v, _ in verdicts)
                still["attack_clips"][kind] += any(_without_movement(v) for v, _ in verdicts)
                for name in names:
                    attacks[name].accepted[kind] += any(_said(v, name) == "live" for v, _ in verdicts)
        for source in options.live:
            verdicts, spent = _visits(pipeline, gate, source)
            liveness_ms += spent
            bar.update()
            judged = [v for v, height in verdicts if v["looks"] >= MIN_LOOKS and height >= MIN_FACE]
            live_visits += len(judged)
            stray["live_visits"] += sum(bool(v.get("stray")) for v in judged)
            still["live_visits"] += sum(_without_movement(v) for v in judged)
            for name in names:
                live[name].rejected += sum(_said(v, name) != "live" for v in judged)
        bar.close()
        looks = gate.looks_taken - looks_before
    finally:
        gate.close()
        pipeline.close()
    result = new_result("liveness", collect_environment(pipeline.board, pipeline.threads, options.bundle),
                        bundle=str(options.bundle),
                        attacks=str(options.attacks), live_sources=list(options.live),
                        checks={name: _rates(attacks[name], live[name], counted, live_visits) for name in names[1:]},
                        fused={**_rates(attacks["fused"], live["fused"], counted, live_visits),
                               "attack_clips": dict(counted), "live_visits": live_visits,
                               "someone_else": {"attack_clips": dict(stray["attack_clips"]),
                                                "live_visits": stray["live_visits"]},
                               "without_movement": {"attack_clips": dict(still["attack_clips"]),
                                                    "live_visits": still["live_visits"]}},
                        clips_without_visit={"counts": dict(no_visit),
                                             "share": round(sum(no_visit.values()) /
                                                            max(sum(no_visit.values()) + sum(counted.values()), 1), 4)},
                        liveness_ms_per_look=round(liveness_ms / max(looks, 1), 3), looks=looks,
                        thresholds=_thresholds(gate))
    return pipeline.board, result


def _visits(pipeline, gate, source: str) -> tuple[list[tuple[dict, float]], float]:
    """(each visit's last published liveness record, its face height) and the ms the liveness stage took; a visit
    judged again after going out insufficient (its second chance, liveness.retry_s) counts with its new verdict."""
    gate.reset()
    stream = KioskStream(pipeline, liveness=gate, door_outcomes=OUTCOMES)     # every visit as an enrolled person's
    decisions, spent = [], 0.0
    with open_source(source) as frames:
        for frame in frames:
            step = stream.step(frame.image, frame.index, frame.time_s)
            decisions += step.decisions
            spent += step.timings_ms["liveness"]
    decisions += stream.finish()
    last = {d.track: (d.liveness, d.box[3] - d.box[1]) for d in decisions}
    return list(last.values()), spent


def _said(verdict: dict, name: str) -> str:
    return verdict["verdict"] if name == "fused" else verdict["checks"].get(name, {}).get("verdict", "insufficient")


def _without_movement(verdict: dict) -> bool:
    """Judged live while a check said otherwise: a check live alone stood in for another's want of movement."""
    return verdict["verdict"] == "live" and any(c["verdict"] != "live" for c in verdict["checks"].values())


def _rates(attacks: Tally, live: Tally, counted: Counter, live_visits: int) -> dict:
    return {"apcer": {kind: round(attacks.accepted[kind] / clips, 4) for kind, clips in counted.items()},
            "bpcer": round(live.rejected / live_visits, 4) if live_visits else None}


def _thresholds(gate) -> dict:
    """Each running check's threshold as it judged (planar's is the board's planar_parallax)."""
    return {check.name: check.threshold for check in gate.checks if getattr(check, "threshold", None) is not None}


def main_summary(result: dict) -> str:
    fused = result["fused"]
    apcer = ", ".join(f"{kind} {rate:.3f} of {fused['attack_clips'][kind]}" for kind, rate in fused["apcer"].items())
    bpcer = "n/a" if fused["bpcer"] is None else f"{fused['bpcer']:.3f}"
    return (f"liveness: APCER {apcer}; BPCER {bpcer} of {fused['live_visits']} live visits; "
            f"{result['liveness_ms_per_look']} ms per look; clips without a visit "
            f"{json.dumps(result['clips_without_visit']['counts'])}")
