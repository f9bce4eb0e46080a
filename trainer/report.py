"""What a person sees of a training run: the progress bar, the time limit notice, the Markdown report and PNGs."""
from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from edge.base.progress import progress_bar


class Clock:
    """Wall time since the run started, against an optional ``--max_seconds`` limit."""

    def __init__(self, max_seconds: float | None):
        self.max_seconds = max_seconds
        self.start = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def expired(self) -> bool:
        return self.max_seconds is not None and self.elapsed >= self.max_seconds


def epoch_bar(epoch: int, epochs: int, images: int, disable: bool = False):
    """A per-epoch bar counted in images, so its rate reads as images per second."""
    return progress_bar(total=images, desc=f"epoch {epoch}/{epochs}", unit="img", leave=True, dynamic_ncols=True,
                        disable=disable)


def interrupt_notice(name: str, done: float, planned: float, unit: str = "epochs") -> str:
    return (f"{name}: interrupted (Ctrl+C or SIGTERM) with {done:g} of {planned:g} {unit} done; evaluating and "
            f"saving what there is")


def stop_notice(name: str, clock: Clock, epochs_done: float, epochs: int) -> str:
    return (f"{name}: stopped after {clock.elapsed:.0f} s (--max_seconds {clock.max_seconds:g}), "
            f"{epochs_done:.1f} of {epochs} epochs done")


def outputs_next_to(checkpoint: str | Path, suffix: str) -> Path:
    """``runs/verifier.pt`` -> ``runs/verifier_<suffix>``."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(f"{checkpoint.stem}_{suffix}")


def write_png(path: str | Path, image: np.ndarray) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a PNG for {path}")
    data.tofile(str(path))   # imencode + tofile also works for non-ASCII paths, unlike cv2.imwrite on Windows
    return path


def image_grid(rows: list[list[np.ndarray]], zoom: int = 2, gap: int = 2) -> np.ndarray:
    """Equal-sized BGR images in rows, with a white gap, enlarged ``zoom`` times (pixels kept sharp)."""
    height, width = rows[0][0].shape[:2]
    columns = max(len(r) for r in rows)
    grid = np.full((len(rows) * (height + gap) - gap, columns * (width + gap) - gap, 3), 255, np.uint8)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            y, x = r * (height + gap), c * (width + gap)
            grid[y:y + height, x:x + width] = image
    return cv2.resize(grid, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown_table(values: dict) -> list[str]:
    lines = ["| name | value |", "|---|---|"]
    lines += [f"| {key} | {_cell(value)} |" for key, value in values.items()]
    return lines


def write_report(path: str | Path, title: str, summary: str, sections: dict[str, dict | list[str]]) -> Path:
    """A Markdown report: a one-line summary, then one table (dict) or paragraph list (list) per section."""
    lines = [f"# {title}", "", summary, ""]
    for heading, body in sections.items():
        lines += [f"## {heading}", ""]
        lines += markdown_table(body) if isinstance(body, dict) else list(body)
        lines.append("")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path
