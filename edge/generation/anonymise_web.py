"""The anonymised stream served as a web page: ``python -m edge generate --mode anonymise --serve``.

A thread runs the anonymiser over the source (edge.generation.anonymise.AnonymisedStream, which keeps the latest output
frame as a JPEG); the page shows it a few times a second with what was replaced. Only anonymised frames ever
leave the process: the camera's own frames are never encoded or served.
"""
from __future__ import annotations

from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse, JSONResponse, Response

from edge.generation.anonymise import AnonymisedStream

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
