"""Open-set identification of a bundle: who, of everyone enrolled, is this face, or nobody?

The protocol (``python -m benchmarks identify``), on a folder of one folder of photos per person:

- people with at least ``enrol + 1`` photos, sorted by name, are the candidates; a gallery of size G takes the
  first G of them in a seeded shuffle (a smaller gallery is part of every larger one); their first ``enrol``
  photos are enrolled (one template each, their mean, as the kiosk makes it) and their next ``probes`` are mated
  probes;
- with ``--distractors``, photos of people who are not among them (one person per photo: faces80's unlabelled
  crops) fill a gallery beyond the candidates, in a seeded shuffle (those the bundle's score cohort was made from
  are left out, and counted);
- one photo of every person not enrolled is a non-mated probe: the candidates outside the gallery, the people
  with too few photos, and every distractor not enrolled;
- a mated probe is a hit at threshold T when its mate is rank 1 with a score of at least T. FNIR at an FPIR is
  read at the T the run's own non-mated probes give; FNIR and FPIR at the bundle's shipped thresholds for that
  gallery size are reported apart. A face the detector misses is a miss for a mated probe (it is counted), and
  names nobody for a non-mated one.

Scores are the kiosk's (edge.faces.score_norm.TemplateScorer): S-norm against the bundle's cohort when it ships
one, and then raw cosines are reported beside them. A labelled photo the cohort was made from is refused: a
cohort must be faces of people who are not evaluated.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.environment import collect_environment
from benchmarks.latency import model_facts
from benchmarks.results import new_result
from benchmarks.timing import summarize
from edge.base.errors import UserError
from edge.base.imageio import list_images, read_image, scan_identity_folders
from edge.base.metrics import threshold_at_far
from edge.base.progress import progress_bar
from edge.base.timing import elapsed_ms
from edge.faces.align import FACE_CHOICES
from edge.faces.matching import match_threshold
from edge.faces.pipeline import Pipeline, open_pipeline
from edge.faces.score_norm import ScoreNorm, TemplateScorer, cohort_image_hashes, file_sha1
from edge.gallery.store import mean_template
from edge.runtime.board_profile import bundle_profile

FPIRS = {"1e-1": 1e-1, "1e-2": 1e-2, "1e-3": 1e-3}
EMBED_BATCH = 32
TIMED_PROBES = 200           # probes timed against each gallery
SEARCH_TEMPLATES = 100_000   # the large gallery a probe is also timed against (random unit vectors)


@dataclass(frozen=True)
class IdentifyOptions:
    bundle: Path
    images: tuple[Path, ...]         # one or more folders of <person>/<photo>
    gallery_sizes: tuple[int, ...] = (100, 1000)
    enrol: int = 1
    probes: int = 1
    distractors: Path | None = None
    seed: int = 0
    face: str = "centre"            # photo protocols centre the subject
    threads: int | None = None
    backend: str | None = None
    precision: str | None = None
    search_templates: int = SEARCH_TEMPLATES


@dataclass(frozen=True)
class Person:
    name: str
    enrol: tuple[Path, ...]          # photos enrolled when the person is in a gallery
    mated: tuple[Path, ...]          # their probes then
    stranger: Path                   # their one photo as a non-mated probe when they are not


@dataclass(frozen=True)
class Protocol:
    people: tuple[Person, ...]       # candidates, in gallery order, then distractors in filling order
    candidates: int
    loners: tuple[Person, ...]       # people with too few photos: always non-mated probes
    distractors_in_cohort: int = 0   # distractor photos left out: the bundle's score cohort was made from them

    def gallery(self, size: int) -> tuple[tuple[Person, ...], tuple[Person, ...]]:
        """(enrolled, not enrolled) for a gallery of ``size``."""
        return self.people[:size], self.people[size:] + self.loners


def identity_photos(roots: tuple[Path, ...]) -> dict[str, tuple[Path, ...]]:
    """Each person's photos, sorted; a person is named by their folder, and by its root too when there are
    several (orl/s1, yaleb/yaleB01)."""
    people = {}
    for root in roots:
        folders = scan_identity_folders(root)
        for name, photos in folders.images.items():
            people[f"{root.name}/{name}" if len(roots) > 1 else name] = tuple(photos)
    return people


def build_protocol(options: IdentifyOptions, refused: set[str]) -> Protocol:
    identities = identity_photos(options.images)
    people, loners = [], []
    for name in sorted(identities):
        photos = identities[name]
        if len(photos) >= options.enrol + 1:
            people.append(Person(name, photos[:options.enrol], photos[options.enrol:options.enrol + options.probes],
                                 photos[0]))
        else:
            loners.append(Person(name, (), (), photos[0]))
    rng = np.random.default_rng(options.seed)
    order = [people[i] for i in rng.permutation(len(people))]
    distractors, left_out = [], 0
    if options.distractors is not None:
        photos = list_images(options.distractors)
        kept = [photos[i] for i in rng.permutation(len(photos)) if not refused or file_sha1(photos[i]) not in refused]
        left_out = len(photos) - len(kept)
        distractors = [Person(f"distractor:{photo.relative_to(options.distractors)}", (photo,), (), photo)
                       for photo in kept]
    labelled = {p for person in order + loners for p in (*person.enrol, *person.mated, person.stranger)}
    in_cohort = sorted(str(p) for p in labelled if file_sha1(p) in refused) if refused else []
    everyone = order + distractors
    if in_cohort:
        raise UserError(f"{len(in_cohort)} photos (e.g. {in_cohort[0]}) are among the faces the bundle's score "
                        f"cohort was made from; evaluate on faces it was not built from")
    largest = max(options.gallery_sizes)
    if largest > len(everyone):
        more = "" if options.distractors else "; add photos of other people with --distractors DIR"
        raise UserError(f"a gallery of {largest} needs {largest} people; the images have {len(order)} with at "
                        f"least {options.enrol + 1} photos and the distractors {len(distractors)}{more}")
    return Protocol(tuple(everyone), len(order), tuple(loners), left_out)


def embed_photos(pipe: Pipeline, paths: list[Path], face: str) -> dict[Path, np.ndarray | None]:
    """Each photo's face detected, aligned and embedded as the kiosk does (None: no face, or unreadable)."""
    vectors: dict[Path, np.ndarray | None] = {}
    for start in progress_bar(range(0, len(paths), EMBED_BATCH), desc="embed", unit="batch"):
        batch, chips = paths[start:start + EMBED_BATCH], []
        for path in batch:
            image = read_image(path)
            found = pipe.faces.find_face(image, face) if image is not None else None
            chips.append(pipe.faces.align(image, found) if found is not None else None)
        aligned = [chip for chip in chips if chip is not None]
        embedded = iter(pipe.faces.embed_aligned(aligned) if aligned else [])
        vectors.update({path: next(embedded) if chip is not None else None for path, chip in zip(batch, chips)})
    return vectors


def template(vectors: dict, photos: tuple[Path, ...]) -> np.ndarray | None:
    """A person's template as the gallery makes it from their enrolled faces; None when none was found."""
    found = [vectors[p] for p in photos if vectors[p] is not None]
    return mean_template(found) if found else None


def identification_metrics(mated_top: np.ndarray, mated_hit: np.ndarray, stranger_top: np.ndarray,
                           named: float | None, unknown: float | None) -> dict:
    """FNIR at each FPIR the non-mated probes resolve, rank-1, and both rates at the shipped thresholds.
    ``mated_top``: each mated probe's rank-1 score (-inf: no face); ``mated_hit``: whether rank 1 is its mate."""
    fnir = {}
    for key, fpir in FPIRS.items():
        if len(stranger_top) * fpir < 1:
            fnir[key] = None               # too few non-mated probes to read this rate
            continue
        threshold = threshold_at_far(stranger_top, fpir)
        fnir[key] = float(1.0 - np.mean(mated_hit & (mated_top >= threshold)))
    shipped = {}
    for label, threshold in (("named", named), ("unknown", unknown)):
        if threshold is not None and len(stranger_top):
            hits = mated_hit & (mated_top >= threshold)
            shipped[label] = {"threshold": threshold, "fnir": float(1.0 - np.mean(hits)),
                              "fpir": float(np.mean(stranger_top >= threshold))}
    return {"fnir_at_fpir": fnir, "rank1": float(np.mean(mated_hit)), "at_shipped_thresholds": shipped,
            "mated_probes": int(len(mated_top)), "non_mated_probes": int(len(stranger_top))}


def shipped_thresholds(pipe: Pipeline, size: int) -> tuple[float | None, float | None]:
    """The named and unknown thresholds the kiosk reads for a gallery of ``size`` (None without a calibration)."""
    match = pipe.matcher.entry.match
    if match is None:
        return None, None
    return (match_threshold(match, size).threshold,
            match_threshold(match, size, pipe.streaming.tracking.unknown_far).threshold)


def score_gallery(protocol: Protocol, size: int, vectors: dict, templates: list, norm: ScoreNorm | None,
                  thresholds: tuple[float | None, float | None]) -> tuple[dict, dict]:
    """The metrics of one gallery size (and the counts behind them), scored against ``norm`` (None: cosines),
    with the rates at ``thresholds`` (named, unknown). ``templates``: each person's of the largest gallery, in
    gallery order (None: no face found to enrol)."""
    enrolled, outside = protocol.gallery(size)
    kept = [i for i, t in enumerate(templates[:size]) if t is not None]
    scorer = TemplateScorer(np.stack([templates[i] for i in kept]), norm)
    slot_of = {i: slot for slot, i in enumerate(kept)}
    mated_top, mated_hit = [], []
    for index, person in enumerate(enrolled):
        for photo in person.mated:
            probe = vectors[photo]
            if probe is None:
                mated_top.append(-np.inf)
                mated_hit.append(False)
                continue
            best, score = scorer.best(probe)
            mated_top.append(score)
            mated_hit.append(index in slot_of and best == slot_of[index])
    strangers = [vectors[person.stranger] for person in outside]
    found = [v for v in strangers if v is not None]
    stranger_top = np.concatenate([scorer.scores(np.stack(found)).max(axis=1) if found else np.zeros(0),
                                   np.full(len(strangers) - len(found), -np.inf)])
    metrics = identification_metrics(np.asarray(mated_top), np.asarray(mated_hit, bool), stranger_top, *thresholds)
    counts = {"enrolled": size, "enrolled_without_a_face": size - len(kept),
              "mated_probes_without_a_face": int(np.sum(np.isneginf(mated_top))),
              "non_mated_probes_without_a_face": len(strangers) - len(found)}
    return metrics, counts


def time_search(scorer: TemplateScorer, probes: np.ndarray) -> list[float]:
    """Milliseconds to find one probe's best template, per probe (the kiosk's Matcher.match)."""
    times = []
    for probe in probes:
        start = time.perf_counter_ns()
        scorer.best(probe)
        times.append(elapsed_ms(start))
    return times


def synthetic_templates(count: int, dim: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((count, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def run_identify(options: IdentifyOptions) -> tuple[str, dict]:
    if options.face not in FACE_CHOICES:
        raise UserError(f"--face must be one of {', '.join(FACE_CHOICES)}, got {options.face!r}")
    if options.enrol < 1 or options.probes < 1 or not options.gallery_sizes or min(options.gallery_sizes) < 1:
        raise UserError("--enrol, --probes and every --gallery_sizes entry must be at least 1")
    pipe = open_pipeline(options.bundle, backend=options.backend, threads=options.threads,
                         precision=options.precision, profile=bundle_profile(options.bundle))
    try:
        entry, norm = pipe.matcher.entry, pipe.matcher.norm
        protocol = build_protocol(options, cohort_image_hashes(options.bundle, entry))
        largest = max(options.gallery_sizes)
        enrolled, _ = protocol.gallery(largest)
        photos = sorted({p for person in enrolled for p in (*person.enrol, *person.mated)}
                        | {person.stranger for person in (*protocol.people, *protocol.loners)})
        vectors = embed_photos(pipe, photos, options.face)
        templates = [template(vectors, person.enrol) for person in enrolled]
        per_size, counts = {}, {}
        for size in sorted(options.gallery_sizes):
            metrics, counts[str(size)] = score_gallery(protocol, size, vectors, templates, norm,
                                                       shipped_thresholds(pipe, size))
            if norm is not None:       # raw cosines beside them; the thresholds are the normalised scores'
                metrics["cosine"] = score_gallery(protocol, size, vectors, templates, None, (None, None))[0]
            per_size[str(size)] = metrics
        found = np.stack([v for v in vectors.values() if v is not None])
        probes = found[np.random.default_rng(options.seed).choice(len(found), min(TIMED_PROBES, len(found)),
                                                                  replace=False)]
        gallery = TemplateScorer(np.stack([t for t in templates if t is not None]), norm)
        large = TemplateScorer(synthetic_templates(options.search_templates, found.shape[1], options.seed), norm)
        match_ms = {"gallery": summarize(time_search(gallery, probes)),
                    f"{options.search_templates}_templates": summarize(time_search(large, probes))}
        board, threads, backend = pipe.board, pipe.threads, pipe.faces.embedder.backend_name
        score_kind = pipe.matcher.score_kind
    finally:
        pipe.close()
    result = new_result(
        "identify", collect_environment(board, threads, options.bundle), bundle=str(options.bundle),
        images=", ".join(map(str, options.images)),
        distractors=str(options.distractors) if options.distractors else None,
        enrol=options.enrol, probes=options.probes, seed=options.seed, face_choice=options.face,
        model=model_facts(entry), backend=backend, score=score_kind,
        labelled_people=protocol.candidates, people_with_too_few_photos=len(protocol.loners),
        distractors_left_out_as_cohort=protocol.distractors_in_cohort,
        photos=len(vectors), photos_without_a_face=sum(v is None for v in vectors.values()),
        per_gallery_size=per_size, counts=counts, match_ms=match_ms,
        match_note=(f"one probe against the {largest}-person gallery and against {options.search_templates} random "
                    f"unit templates (their cohort statistics computed once, as the kiosk does when it loads), "
                    f"{threads} threads"))
    return board, result


def summary_lines(result: dict) -> list[str]:
    """What a person reads first: per gallery size, FNIR at FPIR 1 % and rank-1; the match times."""
    lines = [f"identify ({result['score']} scores; {result['enrol']} photo enrolled, {result['probes']} probe "
             f"per person):"]
    for size, metrics in result["per_gallery_size"].items():
        fnir = metrics["fnir_at_fpir"]
        cosine = metrics.get("cosine")
        was = f" (cosine: {cosine['fnir_at_fpir']['1e-2']:.3f}, {cosine['rank1']:.3f})" \
            if cosine and cosine["fnir_at_fpir"]["1e-2"] is not None else ""
        rates = ", ".join(f"FPIR {k}: {v:.3f}" for k, v in fnir.items() if v is not None)
        rates = f"FNIR at {rates}" if rates else "FNIR unmeasured (too few non-mated probes)"
        lines.append(f"  {size} enrolled: {rates}; rank-1 {metrics['rank1']:.3f}{was}; "
                     f"{metrics['mated_probes']} mated and {metrics['non_mated_probes']} non-mated probes")
    for label, times in result["match_ms"].items():
        lines.append(f"  one probe against the {label.replace('_', ' ')}: {times['p50']:.2f} ms p50")
    return lines
