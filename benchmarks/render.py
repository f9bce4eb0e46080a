"""Markdown from benchmark result dicts (benchmarks.results); never the other way round."""
from __future__ import annotations

from benchmarks.timing import median_interval

PRECISION_ORDER = {"fp32": 0, "fp16": 1, "int8": 2}


def _ms(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def _num(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def vs_fp32_text(comparison: dict | None, precision: str) -> str:
    """'INT8 1.9x faster than FP32' from the p50 ratio measured in the same run."""
    if precision == "fp32":
        return "reference"
    if not comparison:
        return "no FP32 file"
    speedup = comparison["speedup_p50"]
    if speedup >= 1:
        return f"{precision.upper()} {speedup:.2f}x faster than FP32"
    return f"{precision.upper()} {1 / speedup:.2f}x slower than FP32"


def environment_table(results: list[dict]) -> str:
    newest = max(results, key=lambda r: r["created"])
    env = newest["environment"]
    versions = env.get("versions", {})
    rows = [["board", env.get("board")], ["machine", env.get("machine_model")], ["CPU", env.get("cpu_model")],
            ["cores", env.get("cores")], ["OS", env.get("os")], ["arch", env.get("arch")],
            ["python", env.get("python")]]
    rows += [[name, version] for name, version in versions.items()]
    rows += [["power mode (nvpmodel)", env.get("power_mode")], ["JetPack (L4T)", env.get("jetpack")],
             ["CPU governor", env.get("cpu_governor")], ["SoC temperature at start, C", env.get("soc_temperature_c")],
             ["throttled (vcgencmd)", env.get("throttled")], ["threads", env.get("threads")],
             ["bundle manifest sha256", (env.get("manifest_sha256") or "")[:16] or None],
             ["bundle for another board", env.get("bundle_for_another_board")],
             ["command", env.get("command")]]
    text = _table(["", "value"], [[str(k), "-" if v is None else str(v)] for k, v in rows])
    volatile = ("command", "soc_temperature_c")            # differ from run to run by nature
    differing = sorted(key for key in env if key not in volatile
                       and any(r["environment"].get(key) != env[key] for r in results))
    if differing:
        text += ("\n\nShown: the newest run's environment. Other runs in this folder differ in: "
                 + ", ".join(differing) + " (see their JSON files).")
    return text


def profile_section(latency: list[dict]) -> str:
    """What ``benchmarks latency --write_profile`` makes of these runs: per task, the fastest file and backend,
    which compile and the runtime then default to on this board (edge.runtime.board_profile)."""
    from benchmarks.profile import fastest_per_task

    rows = [[task, choice["file"], choice["precision"], choice["backend"], _ms(choice["median_ms"]),
             str(len(choice["measured"]))] for task, choice in sorted(fastest_per_task(latency).items())]
    return ("## The board profile these results give\n\n`python -m benchmarks latency --write_profile` on the board "
            "writes this choice (the fastest file and backend per task by median) to the board's profile; compile "
            "and the runtime then default to it, and say so.\n\n"
            + _table(["task", "file", "precision", "backend", "p50 ms", "files timed"], rows) + "\n")


def latency_table(results: list[dict]) -> str:
    rows = sorted((r for r in results if r["kind"] == "latency"),
                  key=lambda r: (r["model"]["task"], r["model"]["architecture"],
                                 PRECISION_ORDER.get(r["model"]["precision"], 9), r["model"]["format"], r["backend"]))
    body = []
    for r in rows:
        s, m = r["summary"], r["model"]
        interval = median_interval(r.get("timings_ms") or [])
        body.append([m["task"], m["name"], m["precision"], r["backend"], str(r["environment"].get("threads")),
                     str(r.get("batch", 1)), _ms(s["p50"]),
                     f"{interval[0]:.2f}-{interval[1]:.2f}" if interval else "-", _ms(s["p90"]), _ms(s["p99"]),
                     _ms(s["mean"]),
                     _num(s["throughput_per_s"], 1),
                     f"skipped: {r['skipped']}" if r.get("skipped") else vs_fp32_text(r.get("vs_fp32"), m["precision"]),
                     "yes" if r.get("board_default") else ""])
    header = ["task", "model", "precision", "backend", "threads", "batch", "p50 ms", "p50 95 % interval", "p90 ms",
              "p99 ms", "mean ms",
              "calls/s", "vs FP32 (p50)", "board default"]
    return _table(header, body)


def pipeline_table(results: list[dict]) -> str:
    header = ["source", "mode", "threads", "frames", "fps (mean)", "frame p50 ms", "frame p99 ms",
              "frames with a face", "faces/frame", "decisions", "vs dlib: frames with its faces found",
              "vs dlib: its faces found"]
    body, notes = [], []
    for r in (r for r in results if r["kind"] == "pipeline"):
        dlib = r["comparison"].get("dlib", {})
        for mode, m in r["modes"].items():
            found = dlib.get(mode)
            body.append([r["source"], mode, str(r["environment"].get("threads", "-")), str(m["frames"]),
                         _num(m["fps"], 1), _ms(m["frame_summary"]["p50"]),
                         _ms(m["frame_summary"]["p99"]), f"{m['frames_with_face']}/{m['frames']}",
                         _num(m["faces_per_frame"], 2), ", ".join(f"{k} {v}" for k, v in m["decisions"].items()),
                         f"{found['frames_found']}/{found['frames_with_dlib_face']}" if found else "-",
                         f"{found['faces_found']}/{found['dlib_faces']}" if found else "-"])
        ratio = r["comparison"].get("fps_ratio_tracked_over_per_frame")
        if ratio is not None:
            agree = r["comparison"]["visit_agreement"]
            notes.append(f"`{r['source']}`: tracked runs {ratio:.2f}x the per-frame fps; "
                         f"{agree['same_identity']} of {agree['compared']} visits got the identity most per-frame "
                         f"decisions gave the same face ({agree['visits']} visits).")
        heat = r.get("thermal") or {}
        if heat.get("max_c") is not None:
            notes.append(f"`{r['source']}`: SoC {heat['readings_c'][0]:.0f} C at the start, {heat['max_c']:.0f} C at "
                         f"most during the run" + (f"; throttling flags {heat['throttled_at_end']}"
                                                   if heat.get("throttled_at_end") else "") + ".")
        if dlib:
            ref = dlib["reference"]
            notes.append(f"`{r['source']}`: dlib ({ref['detector']}) looked at {ref['frames']} frames and found "
                         f"{ref['faces']} faces in {ref['frames_with_face']} of them.")
    stages = pipeline_stages_table(results)
    return (_table(header, body) + ("\n\n" + "\n".join(f"- {n}" for n in notes) if notes else "")
            + (f"\n\nMean milliseconds per frame in each stage (`read`: decoding, or the camera's read; `total`: the "
               f"frame's work after it):\n\n{stages}" if stages else ""))


def pipeline_stages_table(results: list[dict]) -> str:
    """Each run's mean time per stage, side by side (results from before ``read`` was a stage show ``-``)."""
    rows = [(r, mode, m) for r in results if r["kind"] == "pipeline" for mode, m in r["modes"].items()
            if m.get("stages")]
    names = list(dict.fromkeys(["read", *(stage for _, _, m in rows for stage in m["stages"])]))
    body = [[r["source"], mode, str(r["environment"].get("threads", "-")),
             *(_ms(m["stages"][name]["mean"]) if name in m["stages"] else "-" for name in names)]
            for r, mode, m in rows]
    return _table(["source", "mode", "threads", *names], body) if rows else ""


def peers_table(results: list[dict]) -> str:
    header = ["source", "pipeline", "what it does per frame", "frames", "fps (mean)", "frame p50 ms",
              "frames with a face", "faces/frame"]
    body = []
    for r in (r for r in results if r["kind"] == "peers"):
        for name, p in r["peers"].items():
            body.append([r["source"], name, p["does"], str(p["frames"]), _num(p["fps"], 1),
                         _ms(p["frame_summary"]["p50"]), f"{p['frames_with_face']}/{p['frames']}",
                         _num(p["faces_per_frame"], 2)])
        body += [[r["source"], name, f"skipped: {why}", "-", "-", "-", "-", "-"] for name, why in r["skipped"].items()]
    return _table(header, body)


def verify_table(results: list[dict]) -> str:
    header = ["pairs file", "model", "backend", "pairs", "accuracy (k-fold)", "ROC AUC", "EER", "TAR@FAR=1e-2",
              "TAR@FAR=1e-3", "threshold", "accuracy at threshold", "balanced accuracy at threshold",
              "faces not found", "failed pairs", "embed p50 ms"]
    body = []
    for r in (r for r in results if r["kind"] == "verify"):
        acc, tar = r["accuracy"], r["tar_at_far"]
        mirror = " + mirror" if r.get("mirror_average") else ""
        body.append([r["pairs"], r["model"]["name"] + mirror, r["backend"], str(r["pair_count"]),
                     f"{acc['mean']:.4f} ± {acc['std']:.4f} ({r['folds']} folds)", _num(r["roc_auc"], 4),
                     _num(r["eer"]["rate"], 4), _num(tar.get("1e-2"), 4), _num(tar.get("1e-3"), 4),
                     _num(r["calibrated_threshold"], 3), _num(r["accuracy_at_calibrated"], 4),
                     _num(r.get("balanced_accuracy_at_calibrated"), 4),
                     f"{r['faces_not_found']} of {r['image_count']}", str(r["failed_pairs"]),
                     _ms(r["embed_summary"]["p50"])])
    return _table(header, body)


def identify_table(results: list[dict]) -> str:
    header = ["images (+ distractors)", "model", "score", "enrolled", "FNIR @ FPIR 1e-1", "FNIR @ FPIR 1e-2",
              "FNIR @ FPIR 1e-3", "rank-1", "FNIR / FPIR at the shipped threshold", "probes (mated / non-mated)",
              "match p50 ms (gallery / 100k)"]
    body = []
    for r in (r for r in results if r["kind"] == "identify"):
        times = list(r["match_ms"].values())
        for size, m in r["per_gallery_size"].items():
            for score, metrics in [(r["score"], m), *([("cosine", m["cosine"])] if "cosine" in m else [])]:
                fnir, shipped = metrics["fnir_at_fpir"], metrics["at_shipped_thresholds"].get("named")
                at_shipped = f"{_num(shipped['fnir'], 3)} / {_num(shipped['fpir'], 4)}" if shipped else "-"
                body.append([r["images"] + (f" (+ {r['distractors']})" if r.get("distractors") else ""),
                             r["model"]["name"], score, size, *(_num(fnir[k], 3) for k in ("1e-1", "1e-2", "1e-3")),
                             _num(metrics["rank1"], 3), at_shipped if score == r["score"] else "-",
                             f"{metrics['mated_probes']} / {metrics['non_mated_probes']}",
                             " / ".join(_ms(t["p50"]) for t in times)])
    return _table(header, body)


def detect_table(results: list[dict]) -> str:
    header = ["boxes file", "strategy: detectors", "backend", "images", "labelled faces", "recall", "recall >= 40 px",
              "recall by face height (found/faces)", "detections", "precision", "detect p50 ms"]
    body = []
    for r in (r for r in results if r["kind"] == "detect"):
        sizes = ", ".join(f"{name}: {v['found']}/{v['faces']}" for name, v in r["recall_by_height"].items())
        detectors = ", ".join(m["name"] for m in r["models"])
        body.append([r["boxes"], f"{r['strategy']}: {detectors}", r["backend"], str(r["image_count"]),
                     str(r["labelled_faces"]),
                     _num(r["recall"], 3), _num(r["recall_40px"], 3), sizes, str(r["detections"]),
                     _num(r["precision"], 3), _ms(r["detect_summary"]["p50"])])
    return _table(header, body)


# the liveness result's fused counts (benchmarks.liveness_bench.TOLD) and their columns
COUNT_COLUMNS = {"someone_else": "live looks of someone else (clips / live visits)",
                 "without_movement": "live without movement (clips / live visits)",
                 "near_threshold": "live near planar's threshold (clips / live visits)",
                 "near_twice": "live twice near planar's threshold (clips / live visits)"}
FUSED_COUNTS = tuple(COUNT_COLUMNS)


def liveness_table(results: list[dict]) -> str:
    header = ["attack clips", "check", "APCER print", "APCER replay", "APCER video replay", "BPCER (live visits)",
              "ms per look", *COUNT_COLUMNS.values()]
    body = []
    for r in (r for r in results if r["kind"] == "liveness"):
        fused = r["fused"]
        for name, rates in [("fused", fused), *r["checks"].items()]:
            apcer = [f"{_num(rates['apcer'][k], 3)} of {fused['attack_clips'][k]}" if k in rates["apcer"] else "-"
                     for k in ("print", "replay", "video_replay")]
            bpcer = _bpcer_cell(rates["bpcer"], fused["live_visits"])
            fused_only = ([_visits_counted(fused, key) for key in FUSED_COUNTS] if name == "fused"
                          else [""] * len(FUSED_COUNTS))
            body.append([r["attacks"], name, *apcer, bpcer, _ms(_ms_per_look(r, name)), *fused_only])
    return _table(header, body)


def _ms_per_look(result: dict, name: str) -> float | None:
    """The liveness stage's ms per look ("fused": all of it), or one check's share (None where not measured)."""
    return result["liveness_ms_per_look"] if name == "fused" else \
        result.get("liveness_ms_per_look_by_check", {}).get(name)


def operating_points(result: dict) -> list[tuple[bool, dict]]:
    """(whether shipped, its fused rates with ``settings``) for a liveness result's shipped settings, then for each
    point its sweep measured."""
    swept = list(result["sweep"][0]["settings"])
    shipped = {"settings": {key: result["liveness_settings"][key] for key in swept}, **result["fused"]}
    return [(True, shipped), *((False, point) for point in result["sweep"])]


def liveness_sweep_table(results: list[dict]) -> str:
    """The fused rates at the shipped liveness settings and at each setting ``--sweep`` measured; "" without one."""
    header = ["attack clips", "liveness settings", "APCER print", "APCER replay", "APCER video replay",
              "BPCER (live visits)", *(COUNT_COLUMNS[key] for key in FUSED_COUNTS[1:])]
    body = []
    for r in (r for r in results if r["kind"] == "liveness" and r.get("sweep")):
        for shipped, row in operating_points(r):
            label = "as shipped: " if shipped else ""
            apcer = [_num(row["apcer"][k], 3) if k in row["apcer"] else "-"
                     for k in ("print", "replay", "video_replay")]
            bpcer = _bpcer_cell(row["bpcer"], row["live_visits"])
            settings = ", ".join(f"{k} {v}" for k, v in row["settings"].items())
            body.append([r["attacks"], label + settings, *apcer, bpcer,
                         *(_visits_counted(row, key) for key in FUSED_COUNTS[1:])])
    return _table(header, body) if body else ""


def liveness_sources_table(results: list[dict]) -> str:
    """Each live source's live visits and the fused verdict's refusals among them; "" in results from before it."""
    header = ["attack clips", "live source", "size", "fps", "live visits", "refused (fused)", "BPCER"]
    body = [[r["attacks"], source, "x".join(map(str, counts["size"])) if counts.get("size") else "-",
             _num(counts["fps"], 2) if counts.get("fps") else "-", str(counts["live_visits"]), str(counts["rejected"]),
             _num(counts["rejected"] / counts["live_visits"], 3) if counts["live_visits"] else "-"]
            for r in results if r["kind"] == "liveness"
            for source, counts in r["fused"].get("live_sources", {}).items()]
    return _table(header, body) if body else ""


def liveness_tables(results: list[dict]) -> str:
    tables = (liveness_table(results), liveness_sources_table(results), liveness_sweep_table(results))
    return "\n\n".join(table for table in tables if table)


def _bpcer_cell(bpcer: float | None, live_visits: int) -> str:
    return "-" if bpcer is None else f"{_num(bpcer, 3)} of {live_visits}"


def _visits_counted(fused: dict, key: str) -> str:
    """The fused row's count of clips / live visits under ``key`` (FUSED_COUNTS: someone_else, live verdicts refused
    for a look of someone else; without_movement, live with a check wanting movement; near_threshold, live with
    planar near its threshold; near_twice, live with planar twice near it); "-" in results from before it."""
    counts = fused.get(key)
    return "-" if counts is None else f"{sum(counts['attack_clips'].values())} / {counts['live_visits']}"


def fleet_table(results: list[dict]) -> str:
    header = ["kiosks", "PostgreSQL", "enrol p50 / p95 s", "erase p50 / p95 s", "catch-up", "outage",
              "decisions lost / duplicated", "enrolments lost / duplicated"]
    body = []
    for r in (r for r in results if r["kind"] == "fleet"):
        p50, p95 = r["propagation_p50_s"], r["propagation_p95_s"]
        body.append([str(r["kiosks"]), r["postgres"], f"{_num(p50['enrol'])} / {_num(p95['enrol'])}",
                     f"{_num(p50['erase'])} / {_num(p95['erase'])}",
                     f"{r['catchup_people']} people in {_num(r['catchup_s'], 1)} s", f"{r['outage_s']:.0f} s",
                     f"{r['events_lost']} / {r['events_duplicated']} of {r['events_logged']}",
                     f"{r['enrolments_lost']} / {r['enrolments_duplicated']} of {r['enrolments_made']}"])
    return _table(header, body)


SECTIONS = {
    "latency": ("Model latency",
                "Each model is loaded with its backend and timed on `infer` alone (preprocessing excluded), at the "
                "batch the kiosk runs it: 1, or 2 for a verifier with mirror averaging (a face and its mirror). "
                "Models are timed interleaved: every round runs each model once, so machine noise falls on all "
                "alike and the FP32 ratio is measured in the same run. The p50's 95 % interval is a bootstrap over "
                "the run's own calls: two files (or two runs, `python -m benchmarks compare`) whose intervals "
                "overlap are not shown to differ.", latency_table),
    "pipeline": ("Pipeline (end to end)",
                 "Every frame is read once and given to each mode in turn (alternating which goes first); a "
                 "mode's frame time is the read plus its own work, and fps is frames over their sum. `tracked` is "
                 "the board's detection strategy with tracking and one decision per visit; `per_frame` detects "
                 "the whole frame and embeds every face of every frame; `anonymise` replaces every face found with "
                 "the bundle's generator and pixelates one lost for a frame (its decisions column counts both; "
                 "a second detector looks at every input frame and counts faces whose middle the output leaves "
                 "as it was: `witness_faces_unaltered` in the JSON).",
                 pipeline_table),
    "peers": ("Peers on the same frames",
              "The pipelines a user would otherwise pick, each given every frame in turn (alternating the order): "
              "ours detecting and embedding every face of every frame, face_recognition's dlib pipeline, and "
              "OpenCV's Haar detector (detection only). A peer not installed here is a row saying so.",
              peers_table),
    "verify": ("Verification accuracy (detect -> align -> embed)",
               "Each distinct image is embedded once through the full pipeline; a pair with an undetected face "
               "scores below every real pair (a failure), and when a reference pipeline runs beside ours a pair "
               "either one misses fails for both. Accuracy is k-fold on the pairs file's folds, each fold's "
               "threshold chosen on the others; embed ms is the time per face of aligning and embedding (ours, "
               "mirror averaging included) or of dlib's descriptor on its chip (dlib).", verify_table),
    "identify": ("Open-set identification (who of everyone enrolled, or nobody)",
                 "One folder of photos per person: a gallery of G takes G people in a seeded shuffle (a smaller "
                 "gallery is part of every larger one) and enrols their first photo, their next is a mated probe; "
                 "one photo of every person not enrolled is a non-mated probe. A mated probe is a hit when its "
                 "mate is rank 1 at or above the threshold; FNIR at an FPIR is read at the threshold the run's own "
                 "non-mated probes give, and at the bundle's shipped threshold for that gallery size. With a "
                 "score cohort in the bundle its S-norm scores come first and raw cosines below them.",
                 identify_table),
    "detect": ("Detection against labelled boxes",
               "A detection finds a labelled face when its centre lies inside the box and their heights differ by "
               "less than 2x (detectors draw boxes differently); each face and detection counts once. Precision "
               "counts every detection that finds no labelled face as false, unlabelled faces included.",
               detect_table),
    "liveness": ("Liveness (presentation attacks)",
                 "Rendered attack clips (`python -m benchmarks attacks`) and live video through the kiosk's loop at "
                 "the bundle's thresholds as shipped. APCER: share of attack clips with a visit judged live (clips "
                 "from which no visit formed are not counted; the JSON says how many); BPCER: share of live visits (at "
                 "least 4 liveness looks, or a verdict settled in fewer; a face of 40 px or more) not judged live, "
                 "insufficient included. "
                 "`fused` is what opens the door; each check's row is that check alone. The live video here is one "
                 "performer: a BPCER from it says little about people in general. The next table splits the live "
                 "visits by source. Where the run swept settings "
                 "of the board config's `liveness` block (`--sweep`), a last table gives the fused rates at each, "
                 "the shipped ones first: the trade-off a door's owner chooses on; nothing was chosen from it.",
                 liveness_tables),
    "fleet": ("Fleet (PostgreSQL gallery of record, kiosk replicas)",
              "A server of its own and kiosk processes (`python -m edge fleet sync`), each with its own gallery. "
              "Propagation: from the admin's commit until every online kiosk's gallery holds (enrol) or no longer "
              "holds (erase) the person, per kiosk and round. Outage: the server stopped while every kiosk logs "
              "decisions and enrols people; what the server lacks, or holds twice, once all caught up. Catch-up: "
              "a new replica's first round over people enrolled while it was off.", fleet_table),
}


def render_section(kind: str, results: list[dict]) -> str:
    title, note, table = SECTIONS[kind]
    return f"## {title}\n\n{note}\n\n{table(results)}\n"


def render_report(results: list[dict], title: str = "Benchmarks") -> str:
    parts = [f"# {title}\n",
             f"Generated from {len(results)} result files in this folder by `python -m benchmarks`; "
             "rerun a benchmark rather than editing this file.\n"]
    if results:
        parts.append("## Environment\n\n" + environment_table(results) + "\n")
    latency = [r for r in results if r["kind"] == "latency"]
    if latency:
        parts.append(profile_section(latency))
    parts += [render_section(kind, results) for kind in SECTIONS if any(r["kind"] == kind for r in results)]
    return "\n".join(parts)
