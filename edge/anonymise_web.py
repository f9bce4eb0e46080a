"""The anonymised stream served as a web page: ``python -m edge generate --mode anonymise --serve``.

A thread runs the anonymiser over the source and keeps the latest output frame as a JPEG; the page shows it a few
times a second with what was replaced. Only anonymised frames ever leave the process: the camera's own frames are
never encoded or served.
"""
from __future__ import annotations

import threading
import time

import cv2
from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse, JSONResponse, Response

from edge.anonymise import Anonymiser

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>edge-face: anonymised stream</title>
<style>body{font-family:sans-serif;background:#111;color:#eee;margin:2em}img{max-width:100%;border:1px solid #444}
</style></head><body><h1>Anonymised stream</h1><img id="frame" alt="the latest anonymised frame">
<p id="status">starting...</p>
<script>
async function tick() {
  document.getElementById('frame').src = 'api/frame.jpg?t=' + Date.now();
  const status = await (await fetch('api/status')).json();
  document.getElementById('status').textContent = `${status.frames} frames, ${status.fps} fps, ` +
    `${status.faces_replaced} faces replaced, ${status.faces_pixelated} pixelated (lost for a frame)` +
    (status.ended ? ' - the source ended' : '');
}
setInterval(tick, 250);
</script></body></html>
"""


class AnonymisedStream:
    """The anonymiser over a frame source in a thread, with the latest output frame and counters."""

    def __init__(self, anonymiser: Anonymiser, source, writer=None, max_frames: int = 0):
        self.anonymiser, self.source, self.writer, self.max_frames = anonymiser, source, writer, max_frames
        self.jpeg: bytes | None = None
        self.frames = self.replaced = self.pixelated = 0
        self.started = time.perf_counter()
        self.ended = False
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="anonymise", daemon=True)

    def start(self) -> AnonymisedStream:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def status(self) -> dict:
        seconds = time.perf_counter() - self.started
        return {"frames": self.frames, "fps": round(self.frames / seconds, 1) if seconds else 0.0,
                "faces_replaced": self.replaced, "faces_pixelated": self.pixelated, "ended": self.ended,
                "error": self.error}

    def _run(self) -> None:
        try:
            for frame in self.source:
                if self._stop.is_set():
                    break
                step = self.anonymiser.step(frame.image, frame.index)
                ok, encoded = cv2.imencode(".jpg", step.image, [cv2.IMWRITE_JPEG_QUALITY, 85])
                if ok:
                    self.jpeg = encoded.tobytes()
                if self.writer is not None:
                    self.writer.write(step.image)
                self.frames += 1
                self.replaced += step.replaced
                self.pixelated += step.pixelated
                if self.max_frames and self.frames >= self.max_frames:
                    break
        except Exception as err:            # shown on the page and in /api/status, not lost in a thread
            self.error = f"{type(err).__name__}: {err}"
        finally:
            self.ended = True


def create_app(stream: AnonymisedStream) -> FastAPI:
    app = FastAPI(title="edge-face anonymised stream", docs_url=None, redoc_url=None)

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return PAGE

    @app.get("/api/frame.jpg")
    def frame() -> Response:
        if stream.jpeg is None:
            raise HTTPException(503, "no frame yet")
        return Response(stream.jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @app.get("/api/status")
    def status() -> dict:
        return stream.status()

    @app.get("/health")
    def health() -> JSONResponse:
        healthy = stream.error is None and (stream.frames > 0 or not stream.ended)
        return JSONResponse({"ok": healthy, **stream.status()}, status_code=200 if healthy else 503)

    return app
