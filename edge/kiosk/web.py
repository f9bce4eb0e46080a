"""The kiosk's web page and JSON API (FastAPI), over a running ``edge.kiosk.service.KioskService``.

``/health`` is open; everything else takes a token (``Authorization: Bearer TOKEN`` or ``?token=``): the read
token for the page's data, the frame and ``/metrics``, the admin token to enrol and remove people.
"""
from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Annotated

import cv2
import numpy as np
from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi import Path as FastApiPath
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from edge.base.errors import UserError
from edge.base.image_header import image_size
from edge.gallery.rules import check_name
from edge.gallery.sqlite import SqliteGallery
from edge.gallery.store import KEPT_CROPS, AlreadyEnrolled, NotLive
from edge.kiosk.actions import REFUSALS
from edge.kiosk.service import KioskService
from edge.kiosk.tokens import scope_of
from edge.liveness.checks import FUSED_VERDICTS

MAX_UPLOAD_BYTES = 8 * 1024 * 1024
MAX_PIXELS = 25_000_000
MAX_PHOTOS = 5
MAX_REQUEST_BYTES = MAX_PHOTOS * MAX_UPLOAD_BYTES + 1024 * 1024     # the largest enrolment, with its form fields
PAGE = Path(__file__).with_name("kiosk_page.html")
OPEN_PATHS = ("/", "/health")             # everything else needs a token before its body is read
NEEDS_TOKEN = "a token is needed: Authorization: Bearer TOKEN (see tokens.json)"
TOO_LARGE = f"the request is larger than {MAX_REQUEST_BYTES // (1024 * 1024)} MB"
# A kept visitor's id as SQLite stores it: larger numbers are a 422 from the route, never a 500 from the database.
VisitorId = Annotated[int, FastApiPath(ge=1, le=2**63 - 1)]


def create_app(service: KioskService, tokens: dict[str, str], gallery_path: Path) -> FastAPI:
    # No /docs (Swagger UI loads its scripts from the web); the schema itself is served below, behind a token.
    app = FastAPI(title="edge-face kiosk", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(RefuseBeforeReading, tokens=tokens)
    registry = CollectorRegistry()
    registry.register(_ServiceCollector(service))

    @contextlib.contextmanager
    def gallery_connection():
        """A connection of the request's own: its changes are seen by the loop's connection (data_version). A
        gallery that cannot be opened or read stops the kiosk deciding, and answers 503 with the reason."""
        try:
            gallery = SqliteGallery(gallery_path)
        except UserError as err:
            service.gallery_failed(str(err))
            raise HTTPException(503, f"the gallery cannot be used: {err}") from err
        try:
            yield gallery
        except sqlite3.DatabaseError as err:
            service.gallery_failed(f"{gallery_path}: {err}")
            raise HTTPException(503, f"the gallery cannot be used: {gallery_path}: {err}") from err
        finally:
            gallery.close()

    def scope(request: Request) -> str:
        granted = scope_of(tokens, presented_token(request))
        if granted is None:
            raise HTTPException(401, NEEDS_TOKEN)
        return granted

    def admin(granted: str = Depends(scope)) -> None:
        if granted != "admin":
            raise HTTPException(403, "this needs the admin token")

    @app.get("/health")
    def health() -> JSONResponse:
        camera = service.camera_status()
        healthy = service.healthy()
        body = {"status": "ok" if healthy else "degraded", "camera": camera["state"], "frames": service.state.frames,
                "error": service.state.error}
        return JSONResponse(body, status_code=200 if healthy else 503)

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return PAGE.read_text()

    @app.get("/openapi.json", dependencies=[Depends(scope)], include_in_schema=False)
    def schema() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/metrics", dependencies=[Depends(scope)])
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")

    @app.get("/api/status", dependencies=[Depends(scope)])
    def status() -> dict:
        pipeline = service.pipeline
        return {"fps": round(service.fps(), 1), "frames": service.state.frames, "camera": service.camera_status(),
                "enrolled": len(pipeline.matcher.templates.names), "decisions": dict(service.state.decisions),
                "recent": list(service.state.recent), "stages_p50_ms": service.stage_p50(),
                "thresholds": {"match": round(service.stream.thresholds.match, 4),
                               "unknown": round(service.stream.thresholds.unknown, 4)},
                "error": service.state.error, "bundle": {"signed": not service.trust.allowed_unsigned,
                                                         "trust": service.trust.describe()},
                "liveness": service.liveness_status(), "fleet": service.fleet_status()}

    @app.get("/api/frame.jpg", dependencies=[Depends(scope)])
    def frame() -> Response:
        jpeg = service.frame_jpeg()
        if jpeg is None:
            raise HTTPException(503, "no frame yet")
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @app.get("/api/gallery", dependencies=[Depends(scope)])
    def people() -> dict:
        with gallery_connection() as gallery:
            return {"people": [{"name": name, "templates": count} for name, count in gallery.people.identities()]}

    # Routes that decode images or run a model are plain functions: FastAPI runs them on its worker threads, so
    # the event loop (and /health, the page) never waits for an embedding.
    @app.post("/api/gallery", dependencies=[Depends(admin)])
    def enrol(name: str = Form(...), consent: str = Form(...), photos: list[UploadFile] = File(...),
              add: str = Form("no"), keep_crops: str = Form("no")) -> JSONResponse:
        if consent.strip().lower() != "yes":
            raise HTTPException(400, "enrolment needs the person's consent: send consent=yes")
        named(name)
        if not 1 <= len(photos) <= MAX_PHOTOS:
            raise HTTPException(400, f"send 1 to {MAX_PHOTOS} photos, not {len(photos)}")
        embeddings, sources, refused, crops = [], [], [], []
        for photo in photos:
            image, why = _decode(photo.file.read(MAX_UPLOAD_BYTES + 1))
            if image is not None:
                with service.models:
                    embedding, crop, why = service.pipeline.faces.enrolment_look(image)
                if embedding is not None:
                    embeddings.append(embedding)
                    sources.append(f"upload:{photo.filename}")
                    crops.append(crop)
            if why:
                refused.append({"photo": photo.filename, "reason": why})
        if not embeddings:
            return JSONResponse({"enrolled": 0, "refused": refused}, status_code=400)
        with gallery_connection() as gallery:
            try:
                kept = keep_crops == "yes"             # only with the person's consent to keeping them
                added = gallery.people.enroll(name, np.stack(embeddings), service.pipeline.faces.key, sources,
                                              consent=f"yes{KEPT_CROPS}" if kept else "yes",
                                              add=add == "yes", crops=crops if kept else None)
            except AlreadyEnrolled as err:
                raise HTTPException(409, f"{err} (send add=yes)") from err
        return JSONResponse({"enrolled": added, "refused": refused})

    # {name:path}: a name written before names had one rule may hold a '/', and must still be removable
    @app.delete("/api/gallery/{name:path}", dependencies=[Depends(admin)])
    def remove(name: str) -> dict:
        with gallery_connection() as gallery:
            if not gallery.people.remove(name):
                raise HTTPException(404, f"{name!r} is not enrolled")
        return {"removed": name}

    @app.get("/api/visitors", dependencies=[Depends(scope)])
    def visitors() -> dict:
        with gallery_connection() as gallery:
            return {"visitors": gallery.visitors.kept()}

    @app.get("/api/visitors/{visitor}/crop.jpg", dependencies=[Depends(scope)])
    def visitor_crop(visitor: VisitorId) -> Response:
        with gallery_connection() as gallery:
            crop = gallery.visitors.crop(visitor)
        if crop is None:
            raise HTTPException(404, f"no face kept for visitor {visitor}")
        return Response(crop, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @app.post("/api/visitors/{visitor}/name", dependencies=[Depends(admin)])
    def name_visitor(visitor: VisitorId, name: str = Form(...), consent: str = Form(...),
                     add: str = Form("no")) -> dict:
        if consent.strip().lower() != "yes":
            raise HTTPException(400, "naming a visitor enrols them: it needs their consent (consent=yes)")
        named(name)
        with gallery_connection() as gallery:
            try:
                added = gallery.visitors.name(visitor, name, consent="yes", add=add == "yes")
            except AlreadyEnrolled as err:
                raise HTTPException(409, f"{err} (send add=yes)") from err
            except NotLive as err:
                raise HTTPException(422, str(err)) from err
            except UserError as err:
                raise HTTPException(404, str(err)) from err
        return {"enrolled": added, "name": name}

    @app.delete("/api/visitors/{visitor}", dependencies=[Depends(admin)])
    def forget_visitor(visitor: VisitorId) -> dict:
        with gallery_connection() as gallery:
            if not gallery.visitors.forget(visitor):
                raise HTTPException(404, f"no kept visitor {visitor}")
        return {"forgotten": visitor}

    @app.post("/api/test", dependencies=[Depends(scope)])
    def test_image(photo: UploadFile = File(...)) -> dict:
        image, why = _decode(photo.file.read(MAX_UPLOAD_BYTES + 1))
        if image is None:
            raise HTTPException(400, why)
        with service.models:
            decisions = service.pipeline.process(image).decisions
        results = [{"box": d.box, "identity": d.identity, "score": d.score, "best_match": d.best_match}
                   for d in decisions]
        return {"faces": results, "threshold": round(service.pipeline.matcher.threshold, 4)}

    return app


def _decode(data: bytes) -> tuple[np.ndarray | None, str | None]:
    """An uploaded photo, checked by its content (not its name): its size in bytes, then the pixel count its
    header declares, before a pixel is decoded; then decodability."""
    if len(data) > MAX_UPLOAD_BYTES:
        return None, f"larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB"
    size = image_size(data)
    if size is None:
        return None, "not an image (JPEG, PNG, BMP, WebP, GIF, PGM/PPM)"
    if size[0] * size[1] > MAX_PIXELS:
        return None, f"{size[0]}x{size[1]} pixels, more than {MAX_PIXELS // 1_000_000} megapixels"
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return (image, None) if image is not None else (None, "not a readable image (damaged or cut short)")


def named(name: str) -> str:
    """The name, or a 400 saying what is wrong with it (edge.gallery.rules.check_name, the one rule)."""
    try:
        return check_name(name)
    except UserError as err:
        raise HTTPException(400, str(err)) from err


def presented_token(request: Request) -> str:
    """The token a request carries: ``Authorization: Bearer TOKEN``, else ``?token=``."""
    header = request.headers.get("authorization", "")
    return header[7:] if header.lower().startswith("bearer ") else request.query_params.get("token", "")


class RefuseBeforeReading:
    """Refuses a request before a byte of its body is read: without a valid token on any route but the open
    ones (401), or with a body larger than MAX_REQUEST_BYTES, by its Content-Length or as it streams (413). The
    routes still check which token (read or admin) each needs."""

    def __init__(self, app, tokens: dict[str, str]):
        self.app, self.tokens = app, tokens

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        if scope["path"] not in OPEN_PATHS and scope_of(self.tokens, presented_token(request)) is None:
            await JSONResponse({"detail": NEEDS_TOKEN}, status_code=401)(scope, receive, send)
            return
        declared = request.headers.get("content-length", "0")
        if not declared.isdigit() or int(declared) > MAX_REQUEST_BYTES:
            await JSONResponse({"detail": TOO_LARGE}, status_code=413)(scope, receive, send)
            return
        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > MAX_REQUEST_BYTES:           # a chunked body that never said its length
                raise HTTPException(413, TOO_LARGE)
            return message
        await self.app(scope, counted, send)


class _ServiceCollector:
    """Prometheus metrics read from the service at scrape time."""

    def __init__(self, service: KioskService):
        self.service = service

    def collect(self):
        service = self.service
        yield GaugeMetricFamily("edge_face_fps", "frames per second over the last frames", value=service.fps())
        frames = CounterMetricFamily("edge_face_frames", "frames processed")
        frames.add_metric([], service.state.frames)
        yield frames
        stages = GaugeMetricFamily("edge_face_stage_latency_ms", "median stage latency over the last frames",
                                   labels=["stage"])
        for stage, value in service.stage_p50().items():
            stages.add_metric([stage], value)
        yield stages
        decisions = CounterMetricFamily("edge_face_decisions", "visit decisions by outcome", labels=["outcome"])
        for outcome in ("named", "unknown", "undecided"):
            decisions.add_metric([outcome], service.state.decisions[outcome])
        yield decisions
        camera = service.camera_status()
        reconnects = CounterMetricFamily("edge_face_camera_reconnects", "camera reconnection attempts")
        reconnects.add_metric([], camera.get("reconnects", 0))
        yield reconnects
        dropped = CounterMetricFamily("edge_face_camera_dropped_frames", "camera frames overwritten unread")
        dropped.add_metric([], camera.get("dropped", 0))
        yield dropped
        up = GaugeMetricFamily("edge_face_camera_streaming", "1 while the camera delivers frames",
                               value=1.0 if camera["state"] == "streaming" else 0.0)
        yield up
        yield GaugeMetricFamily("edge_face_bundle_signed", "1 when the bundle's signature was verified against a "
                                "trusted key, 0 when it runs unsigned (--allow_unsigned)",
                                value=0.0 if service.trust.allowed_unsigned else 1.0)
        liveness = service.liveness_status()
        yield GaugeMetricFamily("edge_face_liveness_on", "1 while liveness checks judge every visit, 0 when the kiosk "
                                "runs with --no_liveness (a photo of an enrolled person is named like them)",
                                value=0.0 if liveness["checks"] == "off" else 1.0)
        verdicts = CounterMetricFamily("edge_face_liveness_verdicts", "visit decisions by liveness verdict (a "
                                       "visit judged again after going out insufficient counts again); attack: a "
                                       "presentation attack, each one alerted", labels=["verdict"])
        for verdict in FUSED_VERDICTS:
            verdicts.add_metric([verdict], liveness["verdicts"].get(verdict, 0))
        yield verdicts
        fleet = service.fleet_status()
        if fleet is not None:
            yield GaugeMetricFamily("edge_face_fleet_online", "1 while the kiosk reaches its fleet's server",
                                    value=1.0 if fleet["online"] else 0.0)
            yield GaugeMetricFamily("edge_face_fleet_replica_age_seconds", "seconds since the replica last held every "
                                    "change of the server (+Inf: never); past --max_replica_age no door opens",
                                    value=float("inf") if fleet["replica_age_s"] is None else fleet["replica_age_s"])
            yield GaugeMetricFamily("edge_face_fleet_doors_barred", "1 while named visits open no door because the "
                                    "replica is too old", value=0.0 if fleet["doors"].startswith("open") else 1.0)
        counts = service.door.counts
        refused = CounterMetricFamily("edge_face_door_refused", "decisions that opened no door, by reason",
                                      labels=["reason"])
        for reason in REFUSALS:
            refused.add_metric([reason], counts[reason])
        yield refused
        actions = CounterMetricFamily("edge_face_door_actions", "door events per action: ok, failed (not "
                                      "delivered at once), expired or dropped (never sent)",
                                      labels=["action", "result"])
        for action in service.door.actions + service.door.alerts:
            for result in ("ok", "failed", "expired", "dropped"):
                actions.add_metric([action.name, result], counts[f"{action.name} {result}"])
        yield actions
