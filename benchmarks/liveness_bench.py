"""Liveness measured on rendered attack clips and live video, at the bundle's thresholds as shipped.

Every clip and every live source runs through the kiosk's own loop (``edge.kiosk.stream`` with the bundle's
liveness checks, as ``edge run`` builds them), and each visit's published verdict is read:

- an attack clip (``python -m benchmarks attacks``: ``<kind>/<name>.mp4``) counts only when the kiosk forms a
  visit from it; it is accepted (an APCER error) when any of its visits is judged ``live``;
- a live visit is every visit of a live source with at least ``MIN_LOOKS`` liveness looks and a face at least
  ``MIN_FACE`` px high; it is rejected (a BPCER error) unless judged ``live`` (``insufficient`` is a rejection).
  A visit whose verdict settled (live or attack) in fewer looks counts too: the gate takes no look after a verdict
  settles, so without it a visit judged live at once would leave the count, and a quicker check would read as a
  worse one (``fused.live_visits_settled_early`` says how many counted so).
- ``fused.someone_else`` counts the clips and live visits whose live verdict was refused because a look it rested
  on was not the visit's person (edge.kiosk.stream vouches for them).
- ``fused.without_movement`` counts the clips and live visits judged live with a check that wanted movement not
  live: a still face a texture check was sure of; ``fused.near_threshold``, those judged live with planar near its
  threshold and texture sure of every look; ``fused.near_twice``, those judged live with planar near its threshold
  in two pairs of looks that share no look and texture live (edge.liveness.gate.stand_in).
- ``fused.live_sources`` gives each live source's live visits and how many of them the fused verdict refused: one
  video's people can differ from another's (who stands still, who is turned away), and a total hides which. Each
  also gives the source's frame size and rate: the looks are frames apart, so a slower source spaces them further.

Every visit is judged as an enrolled person's would be, whoever it names: its decision waits for the verdict and,
gone out insufficient, has the kiosk's second chance (``liveness.retry_s``); its last verdict counts.

Each check is also scored alone, from its own verdict in the same visits. Nothing is fitted here: the thresholds
are the bundle's, and the liveness time per look is the loop's own ``liveness`` stage over the looks it took.

``--sweep SETTING=V,V`` measures the fused rates again at other values of the board config's ``liveness`` settings
(every combination of those swept), each a whole pass through the kiosk's loop: the trade-off a door's owner
chooses on, reported beside the shipped settings and not chosen from. Each pass counts its own live visits: the
settings change which faces the loop keeps looking at, and so its detections and visits.
"""
from __future__ import annotations

import itertools
import json
from collections import Counter
from dataclasses import dataclass, field, fields
from pathlib import Path

from benchmarks.environment import collect_environment
from benchmarks.results import new_result
from edge.base.errors import UserError
from edge.base.progress import progress_bar
from edge.faces.pipeline import open_pipeline
from edge.kiosk.run_summary import OUTCOMES
from edge.kiosk.stream import KioskStream
from edge.liveness.choose import open_liveness
from edge.liveness.gate import SETTLED
from edge.runtime.board_profile import bundle_profile
from edge.runtime.boards import load_board, with_liveness
from edge.runtime.manifest import read_manifest
from edge.sources import open_source
from edge.sources.base import Frame

MIN_LOOKS = 4
MIN_FACE = 40
ATTACK_KINDS = ("print", "replay", "video_replay")
# The fused result's counts of clips and live visits by what their verdict record says (edge.liveness.gate.Verdict):
# live refused for a look of someone else, and live with a check standing in for another (gate.stand_in), by how
TOLD = {"someone_else": lambda verdict: bool(verdict.get("stray")),
        "without_movement": lambda verdict: verdict.get("stood_in") == "unmoved",
        "near_threshold": lambda verdict: verdict.get("stood_in") == "near",
        "near_twice": lambda verdict: verdict.get("stood_in") == "near_twice"}


@dataclass(frozen=True)
class LivenessOptions:
    bundle: Path
    attacks: Path
    live: tuple[str, ...]
    threads: int | None = None
    max_clips: int = 0            # per kind; 0: every clip
    sweep: tuple[tuple[str, tuple], ...] = ()     # (liveness setting, its values): each combination measured too


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


def sweep_points(sweep: tuple[tuple[str, tuple], ...]) -> list[dict]:
    """Every combination of the swept settings' values, in the order given; none without a sweep."""
    if not sweep:
        return []
    names = [name for name, _ in sweep]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise UserError(f"--sweep names {twice[0]} more than once: give its values in one --sweep {twice[0]}=V,V")
    return [dict(zip(names, values)) for values in itertools.product(*(values for _, values in sweep))]


def run_liveness(options: LivenessOptions) -> tuple[str, dict]:
    clips = attack_clips(options.attacks, options.max_clips)
    for source in options.live:                  # a missing or undecodable video is refused before the clips run
        with open_source(source):
            pass
    board = load_board(read_manifest(options.bundle).board)
    points = sweep_points(options.sweep)
    for point in points:                         # a bad setting is refused before anything runs
        with_liveness(board, point, "--sweep")
    profile = bundle_profile(options.bundle)
    pipeline = open_pipeline(options.bundle, threads=options.threads, profile=profile)
    gate = open_liveness(options.bundle, threads=options.threads, profile=profile)
    if gate is None:
        pipeline.close()
        raise UserError(f"the bundle {options.bundle} runs no liveness check (its board config's liveness.checks is "
                        f"empty and it carries no texture file): nothing to measure")
    bar = progress_bar(total=(sum(map(len, clips.values())) + len(options.live)) * (1 + len(points)),
                       desc="liveness", unit="clip")
    try:
        shipped = _measure(pipeline, gate, clips, options.live, bar)
        swept = []
        for point in points:
            other = open_liveness(options.bundle, threads=options.threads, profile=profile, settings=point)
            try:
                swept.append({"settings": point, **_measure(pipeline, other, clips, options.live, bar).fused()})
            finally:
                other.close()
        bar.close()
    finally:
        gate.close()
        pipeline.close()
    settings = {f.name: getattr(gate.config, f.name) for f in fields(gate.config) if f.name != "checks"}
    result = new_result("liveness", collect_environment(pipeline.board, pipeline.threads, options.bundle),
                        bundle=str(options.bundle),
                        attacks=str(options.attacks), live_sources=list(options.live),
                        checks={name: shipped.rates(name) for name in gate.names},
                        fused=shipped.fused(),
                        clips_without_visit={"counts": dict(shipped.no_visit),
                                             "share": round(sum(shipped.no_visit.values()) /
                                                            max(sum(shipped.no_visit.values()) +
                                                                sum(shipped.counted.values()), 1), 4)},
                        **shipped.ms_per_look(), looks=shipped.looks, thresholds=_thresholds(gate),
                        liveness_settings=settings, sweep=swept)
    return pipeline.board, result


@dataclass
class Measured:
    """One pass over the clips and the live sources with one gate."""

    attacks: dict[str, Tally]            # "fused" and each check -> attack clips accepted
    live: dict[str, Tally]               # the same -> live visits rejected
    counted: Counter = field(default_factory=Counter)         # kind -> clips that formed a visit
    no_visit: Counter = field(default_factory=Counter)        # kind -> clips that formed none
    live_visits: int = 0
    settled_early: int = 0               # live visits counted with fewer than MIN_LOOKS looks: their verdict settled
    told: dict = field(default_factory=lambda: {key: {"attack_clips": Counter(), "live_visits": 0} for key in TOLD})
    by_source: dict = field(default_factory=dict)          # live source -> {"live_visits": N, "rejected": N} (fused)
    liveness_ms: float = 0.0
    looks: int = 0
    check_ms: dict = field(default_factory=dict)           # check -> ms observing and judging its looks took

    def ms_per_look(self) -> dict:
        """The liveness stage's ms per look, each check's share, and the kiosk's own (each look aligned and, when a
        verdict would turn live, the looks embedded to vouch for them)."""
        looks = max(self.looks, 1)
        return {"liveness_ms_per_look": round(self.liveness_ms / looks, 3),
                "liveness_ms_per_look_by_check": {name: round(ms / looks, 3) for name, ms in self.check_ms.items()},
                "liveness_ms_per_look_kiosk": round((self.liveness_ms - sum(self.check_ms.values())) / looks, 3)}

    def rates(self, name: str) -> dict:
        return {"apcer": {kind: round(self.attacks[name].accepted[kind] / clips, 4)
                          for kind, clips in self.counted.items()},
                "bpcer": round(self.live[name].rejected / self.live_visits, 4) if self.live_visits else None}

    def fused(self) -> dict:
        return {**self.rates("fused"), "attack_clips": dict(self.counted), "live_visits": self.live_visits,
                "live_visits_settled_early": self.settled_early,
                **{key: {"attack_clips": dict(counts["attack_clips"]), "live_visits": counts["live_visits"]}
                   for key, counts in self.told.items()},
                "live_sources": self.by_source}


def _measure(pipeline, gate, clips: dict[str, list[Path]], live: tuple[str, ...], bar) -> Measured:
    names = ["fused", *gate.names]
    measured = Measured({name: Tally.empty() for name in names}, {name: Tally.empty() for name in names})
    looks_before, checks_before = gate.looks_taken, Counter(gate.check_s)
    for kind, paths in clips.items():
        for path in paths:
            verdicts, spent, _ = _visits(pipeline, gate, str(path))
            measured.liveness_ms += spent
            bar.update()
            if not verdicts:
                measured.no_visit[kind] += 1
                continue
            measured.counted[kind] += 1
            for key, says in TOLD.items():
                measured.told[key]["attack_clips"][kind] += any(says(v) for v, _ in verdicts)
            for name in names:
                measured.attacks[name].accepted[kind] += any(_said(v, name) == "live" for v, _ in verdicts)
    for source in live:
        verdicts, spent, shape = _visits(pipeline, gate, source)
        measured.liveness_ms += spent
        bar.update()
        judged = [v for v, height in verdicts if is_live_visit(v, height)]
        measured.live_visits += len(judged)
        measured.settled_early += sum(v["looks"] < MIN_LOOKS for v in judged)
        for key, says in TOLD.items():
            measured.told[key]["live_visits"] += sum(says(v) for v in judged)
        refused = {name: sum(_said(v, name) != "live" for v in judged) for name in names}
        for name in names:
            measured.live[name].rejected += refused[name]
        counts = measured.by_source.setdefault(source, {"live_visits": 0, "rejected": 0, **shape})
        counts["live_visits"] += len(judged)
        counts["rejected"] += refused["fused"]
    measured.looks = gate.looks_taken - looks_before
    measured.check_ms = {name: 1000 * (gate.check_s[name] - checks_before[name]) for name in gate.names}
    return measured


def is_live_visit(verdict: dict, height: float) -> bool:
    """Whether a live source's visit (its last liveness record, its face height) is one BPCER counts."""
    return height >= MIN_FACE and (verdict["looks"] >= MIN_LOOKS or verdict["verdict"] in SETTLED)


def _visits(pipeline, gate, source: str) -> tuple[list[tuple[dict, float]], float, dict]:
    """(each visit's last published liveness record, its face height), the ms the liveness stage took, and the
    source's frame size and rate (``_shape``); a visit judged again after going out insufficient (its second chance,
    liveness.retry_s) counts with its new verdict."""
    gate.reset()
    stream = KioskStream(pipeline, liveness=gate, door_outcomes=OUTCOMES)     # every visit as an enrolled person's
    decisions, spent, first, frame = [], 0.0, None, None
    with open_source(source) as frames:
        for frame in frames:
            step = stream.step(frame.image, frame.index, frame.time_s)
            decisions += step.decisions
            spent += step.timings_ms["liveness"]
            first = first or frame
    decisions += stream.finish()
    last = {d.track: (d.liveness, d.box[3] - d.box[1]) for d in decisions}
    return list(last.values()), spent, _shape(first, frame)


def _shape(first: Frame | None, last: Frame | None) -> dict:
    """``{"size": [width, height], "fps": frames a second}`` of a source read whole, from its first and last frames
    (fps from their numbers and times, as the kiosk's looks are spaced by frames: a slower source spaces them further
    apart; None when under two frames)."""
    if first is None:
        return {"size": None, "fps": None}
    span = last.time_s - first.time_s
    return {"size": list(first.image.shape[1::-1]),
            "fps": round((last.index - first.index) / span, 2) if span > 0 else None}


def _said(verdict: dict, name: str) -> str:
    return verdict["verdict"] if name == "fused" else verdict["checks"].get(name, {}).get("verdict", "insufficient")


def _thresholds(gate) -> dict:
    """Each running check's threshold as it judged (planar's is the board's planar_parallax)."""
    return {check.name: check.threshold for check in gate.checks if getattr(check, "threshold", None) is not None}


def main_summary(result: dict) -> str:
    fused = result["fused"]
    apcer = ", ".join(f"{kind} {rate:.3f} of {fused['attack_clips'][kind]}" for kind, rate in fused["apcer"].items())
    bpcer = "n/a" if fused["bpcer"] is None else f"{fused['bpcer']:.3f}"
    sources = "; ".join(f"{Path(source).name} {counts['rejected']} of {counts['live_visits']} refused"
                        for source, counts in fused["live_sources"].items())
    split = ", ".join([*(f"{name} {ms}" for name, ms in result["liveness_ms_per_look_by_check"].items()),
                       f"aligning and vouching {result['liveness_ms_per_look_kiosk']}"])
    return (f"liveness: APCER {apcer}; BPCER {bpcer} of {fused['live_visits']} live visits ({sources}); "
            f"{result['liveness_ms_per_look']} ms per look ({split}); clips without a visit "
            f"{json.dumps(result['clips_without_visit']['counts'])}")
