"""``python -m benchmarks report RESULTS...``: one self-contained HTML page (and the Markdown) per board, rendered
from the result JSON alone, with matplotlib plots embedded as PNG: no network, no file beside the page.

- latency distributions: a box per model file and backend, from every timed call;
- latency against accuracy: each verifier file's p50 against its ROC AUC on real pairs (where both were measured);
- the pipeline's per-stage breakdown (median ms per stage, per mode), and its speed beside the peers';
- several boards: an index page with each model's p50 on every board side by side.
Runs where matplotlib is installed (a development machine), on results copied from the boards.
"""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from benchmarks.render import operating_points, render_report
from benchmarks.results import load_results
from edge.base.errors import UserError

STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:.85em}th,td{border:1px solid #ccc;padding:.25em .5em}
th{background:#f0f0f0}figure{margin:1.5em 0}img{max-width:100%}figcaption{color:#555;font-size:.9em}"""


README_HEAD = """# Benchmark results

Rendered by `python -m benchmarks report` from the JSON files in the board folders here; do not edit: rerun a
benchmark, then the report. Each board folder also holds `report.md`, and the same command writes a self-contained
`report.html` with plots beside it (not committed: make it). To add a board, run on it:

```bash
python -m benchmarks latency  --bundle BUNDLE --results benchmarks/results
python -m benchmarks pipeline --bundle BUNDLE --source CAMERA_OR_CLIP --results benchmarks/results
python -m benchmarks pairs    --images IMAGES --out out/pairs.txt      # not committed: it lists the data's files
python -m benchmarks verify   --bundle BUNDLE --pairs out/pairs.txt --images IMAGES --results benchmarks/results
python -m benchmarks detect   --bundle BUNDLE --boxes BOXES.xml --results benchmarks/results
```

then copy `benchmarks/results/<board>/` here and run `python -m benchmarks report benchmarks/results`.

"""


def _pyplot():
    try:
        import matplotlib
    except ImportError as err:
        raise UserError("benchmarks report draws its plots with matplotlib: pip install '.[report]' (a "
                        "development machine's tool; boards only measure)") from err
    matplotlib.use("Agg")
    from matplotlib import pyplot

    return pyplot


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    _pyplot().close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def latency_plot(results: list[dict]) -> str | None:
    runs = sorted((r for r in results if r["kind"] == "latency" and r.get("timings_ms")),
                  key=lambda r: (r["model"]["task"], r["model"]["name"], r["backend"]))
    if not runs:
        return None
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(9, 0.35 * len(runs) + 1.2))
    axis.boxplot([r["timings_ms"] for r in runs], vert=False, showfliers=False, widths=0.6)
    axis.set_yticks(range(1, len(runs) + 1), [f"{r['model']['name']} ({r['backend']})" for r in runs], fontsize=8)
    axis.set(xlabel="ms per call (box: quartiles, whiskers: 1.5 IQR)", xscale="log")
    axis.grid(axis="x", alpha=0.3)
    return _png(figure)


def tradeoff_plot(results: list[dict]) -> str | None:
    latency = {(r["model"]["name"], r["backend"]): r["summary"]["p50"] for r in results
               if r["kind"] == "latency" and r["summary"]["p50"] is not None}
    points = [(latency[(r["model"]["name"], r["backend"])], r["roc_auc"], f"{r['model']['name']} ({r['backend']})")
              for r in results if r["kind"] == "verify" and (r["model"].get("name"), r["backend"]) in latency]
    if not points:
        return None
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for ms, auc, label in points:
        axis.scatter(ms, auc)
        axis.annotate(label, (ms, auc), fontsize=7, xytext=(4, 4), textcoords="offset points")
    axis.set(xlabel="latency p50, ms per call", ylabel="ROC AUC on real pairs (measured on this board)")
    axis.grid(alpha=0.3)
    return _png(figure)


def liveness_plot(results: list[dict]) -> str | None:
    """BPCER against the worse of print's and replay's APCER at the shipped liveness settings and each swept one
    (a star: the shipped ones); settings landing on one point share its label (their values, in the order the title
    names them). Several swept runs in one folder (other clips, another live video) each get a colour, named by
    their attack clips' folder."""
    runs = [r for r in results if r["kind"] == "liveness" and r.get("sweep")]
    if not runs:
        return None
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 4.5))
    labelled: dict[tuple[float, float], int] = {}
    for number, run in enumerate(runs):
        # hollow, each run's larger than the next one's: runs landing on one point show as rings
        grow = 1 + 0.7 * (len(runs) - 1 - number)
        labels: dict[tuple[float, float], list[str]] = {}
        for shipped, row in operating_points(run):
            if row["bpcer"] is None:
                continue
            point = (max(row["apcer"].get(kind, 0.0) for kind in ("print", "replay")), row["bpcer"])
            labels.setdefault(point, []).append("/".join(f"{v:g}" for v in row["settings"].values()) +
                                                (" shipped" if shipped else ""))
            axis.scatter(*point, marker="*" if shipped else "o", s=(140 if shipped else 30) * grow, zorder=3,
                         facecolors="none", edgecolors=f"C{number}", linewidths=1.5,
                         label=Path(run["attacks"]).name if shipped else None)
        for point, texts in labels.items():
            above = labelled.get(point, 0)          # labels other runs put on this point: this one goes above them
            labelled[point] = above + len(texts)
            axis.annotate("\n".join(texts), point, fontsize=7, xytext=(4, 3 + 10 * above), textcoords="offset points",
                          rotation=40, va="bottom", color=f"C{number}")
    names = sorted({" / ".join(run["sweep"][0]["settings"]) for run in runs})
    clips = f"{Path(runs[0]['attacks']).name}: " if len(runs) == 1 else ""
    axis.set_title(f"{clips}points labelled {'; '.join(names)} (a star: as shipped)", fontsize=9)
    if len(runs) > 1:
        axis.legend(fontsize=8, title="attack clips", title_fontsize=8, loc="best")
    axis.margins(x=0.08, y=0.15)        # room for the labels, which lean up and right
    axis.axvline(0.02, color="grey", linestyle="--", linewidth=0.8)
    axis.axhline(0.10, color="grey", linestyle="--", linewidth=0.8)
    axis.set(xlabel="APCER, the worse of print and replay (attack clips judged live)",
             ylabel="BPCER (live visits not judged live)")
    axis.grid(alpha=0.3)
    return _png(figure)


def stages_plot(results: list[dict]) -> str | None:
    bars = [(f"{Path(r['source']).name[:28]}: {mode}", m["stages"]) for r in results if r["kind"] == "pipeline"
            for mode, m in r["modes"].items() if m.get("stages")]
    if not bars:
        return None
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(9, 0.5 * len(bars) + 1.5))
    stages = sorted({s for _, st in bars for s in st if s != "total"})
    for index, (label, measured) in enumerate(bars):
        left = 0.0
        for number, stage in enumerate(stages):
            value = (measured.get(stage) or {}).get("p50") or 0.0
            axis.barh(index, value, left=left, color=f"C{number}", label=stage if index == 0 else None)
            left += value
    axis.set_yticks(range(len(bars)), [label for label, _ in bars], fontsize=8)
    axis.set(xlabel="median ms per frame, by stage")
    axis.legend(fontsize=8, loc="lower right")
    return _png(figure)


def peers_plot(results: list[dict]) -> str | None:
    bars = [(f"{name} ({Path(r['source']).name[:24]})", p["fps"]) for r in results if r["kind"] == "peers"
            for name, p in r["peers"].items() if p.get("fps")]
    if not bars:
        return None
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(8, 0.45 * len(bars) + 1.2))
    axis.barh(range(len(bars)), [fps for _, fps in bars], color=["C0" if label.startswith("ours") else "C7"
                                                                 for label, _ in bars])
    axis.set_yticks(range(len(bars)), [label for label, _ in bars], fontsize=8)
    axis.set(xlabel="frames per second on the same frames (higher is better)")
    axis.grid(axis="x", alpha=0.3)
    return _png(figure)


def boards_plot(boards: dict[str, list[dict]]) -> str | None:
    models = sorted({r["model"]["name"] for runs in boards.values() for r in runs if r["kind"] == "latency"})
    if not models or len(boards) < 2:
        return None
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(9, 0.45 * len(models) * len(boards) / 2 + 1.5))
    height = 0.8 / len(boards)
    for number, (board, runs) in enumerate(sorted(boards.items())):
        best = {}
        for r in (r for r in runs if r["kind"] == "latency" and r["summary"]["p50"] is not None):
            name = r["model"]["name"]
            best[name] = min(best.get(name, float("inf")), r["summary"]["p50"])
        axis.barh([i + number * height for i in range(len(models))], [best.get(m, 0.0) for m in models], height,
                  label=board)
    axis.set_yticks([i + 0.4 - height / 2 for i in range(len(models))], models, fontsize=8)
    axis.set(xlabel="latency p50, ms (the fastest backend of each file)", xscale="log")
    axis.legend(fontsize=8)
    return _png(figure)


def page(title: str, markdown: str, figures: list[tuple[str, str | None]]) -> str:
    try:
        from markdown_it import MarkdownIt
    except ImportError as err:
        raise UserError("benchmarks report renders its HTML with markdown-it-py: pip install '.[report]'") from err

    body = MarkdownIt("commonmark").enable("table").render(markdown)
    shown = "".join(f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{png}">'
                    f"<figcaption>{html.escape(caption)}</figcaption></figure>" for caption, png in figures if png)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head><body>{body}<h2>Plots</h2>{shown or '<p>nothing to plot</p>'}"
            "</body></html>\n")


def board_folders(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """(each given folder that holds results, or the sub-folders that do; the given results folders of boards)."""
    found, parents = [], []
    for path in paths:
        if not path.is_dir():
            raise UserError(f"{path} is not a results folder")
        if any(path.glob("*.json")):
            found.append(path)
            continue
        boards = sorted(p for p in path.iterdir() if p.is_dir() and any(p.glob("*.json")))
        if not boards:
            raise UserError(f"{path} holds no benchmark results (*.json), nor board folders that do")
        found += boards
        parents.append(path)
    return found, parents


def write_reports(paths: list[Path], out: Path | None = None) -> list[Path]:
    """report.md and report.html per board (in its folder, or ``out/<board>/``), index.html beside them when there
    are several, and a README.md in each results folder of boards given (its boards' reports, for a repository
    page); every file written whole (temporary name, then renamed)."""
    folders, parents = board_folders(paths)
    names = [folder.name for folder in folders]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise UserError(f"more than one results folder for board {', '.join(twice)}: report them one at a time "
                        "(or merge their JSON files into one folder)")
    boards = {folder.name: load_results(folder) for folder in folders}     # all read before anything is written
    written = []
    for folder in folders:
        results = boards[folder.name]
        target = (out / folder.name) if out else folder
        title = f"Benchmarks: {folder.name}"
        markdown = render_report(results, title=title)
        figures = [("Latency of every model file and backend, every timed call", latency_plot(results)),
                   ("Latency against accuracy on real pairs, per verifier file", tradeoff_plot(results)),
                   ("The pipeline's per-stage breakdown", stages_plot(results)),
                   ("Ours and the peers on the same frames", peers_plot(results)),
                   ("Liveness: the fused APCER and BPCER at the shipped settings and each swept one (dashed: the "
                    "targets, APCER 2 % and BPCER 10 %)", liveness_plot(results))]
        written += [_write(target / "report.md", markdown), _write(target / "report.html",
                                                                    page(title, markdown, figures))]
    for parent in ([] if out else parents):
        reports = [render_report(boards[f.name], title=f"Board: {f.name}") for f in folders if f.parent == parent]
        demoted = ["\n".join("#" + line if line.startswith("#") else line for line in text.splitlines())
                   for text in reports]                     # each board's headings one level down
        written.append(_write(parent / "README.md", README_HEAD + "\n\n".join(demoted) + "\n"))
    if len(boards) > 1:
        index = (out or folders[0].parent) / "index.html"
        links = "\n".join(f"- [{name}]({name}/report.html)" for name in sorted(boards))
        written.append(_write(index, page("Benchmarks: boards side by side", f"# Boards side by side\n\n{links}\n",
                                          [("Each model file's latency on every board", boards_plot(boards))])))
    return written


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path
