"""What enrolment shares across the command line: the bundle's pipeline as this board runs it, the model flags,
enrolment photos turned into templates (and, with consent, kept crops), re-embedding from those crops, and names
as a line of output may hold them. ``edge enroll``, ``edge gallery`` and ``edge fleet`` all call these."""
from __future__ import annotations

import argparse
from pathlib import Path

from edge.base.errors import UserError
from edge.base.flags import count


def add_model_choice(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", help="onnxruntime or tflite (default: the board's preference order)")
    parser.add_argument("--precision", help="fp32, fp16 or int8 (default: the board's choice for verify)")
    parser.add_argument("--threads", type=count, help="default: the board config's thread count")


def open_bundle_pipeline(args, gallery: Path | None, create_gallery: bool = False):
    """The bundle's pipeline as this board runs it: its measured profile, where it has one, chooses the files."""
    from edge.faces.pipeline import open_pipeline
    from edge.runtime.board_profile import bundle_profile

    return open_pipeline(args.bundle, gallery_path=gallery, backend=args.backend, threads=args.threads,
                         precision=args.precision, threshold=getattr(args, "threshold", None),
                         per_probe_far=getattr(args, "probe_far", None), create_gallery=create_gallery,
                         profile=bundle_profile(args.bundle))


def add_keep_crops(parser) -> None:
    parser.add_argument("--keep_crops", action="store_true",
                        help="the person also agreed to their face crops being kept (sealed), so that a new model's "
                             "templates can be made without asking them back (edge gallery --reembed)")


def embed_photos(args):
    """``args.images``' faces as templates for ``args.name`` (who must have consented) with the bundle's verifier:
    (embeddings, their photos, the photos refused and why, the closed pipeline, whose ``faces.key`` names the
    model, and with ``args.keep_crops`` each face's crop as JPEG, else None)."""
    from edge.base.imageio import frame_reference, list_images, read_photo
    from edge.gallery.rules import check_name

    if not args.consent:
        raise UserError(f"enrolment keeps {args.name!r}'s face: ask them, and once they agree add --consent "
                        f"(recorded with its time); nothing enrolled")
    check_name(args.name)
    missing = [item for item in args.images if not Path(item).exists() and frame_reference(item) is None]
    if missing:
        raise UserError(f"{missing[0]} does not exist ({len(missing)} of the photos given are missing); "
                        f"nothing enrolled")
    paths = [str(p) for item in args.images for p in (list_images(item) if Path(item).is_dir() else [item])]
    if not paths:
        raise UserError(f"no images in {', '.join(args.images)}; nothing enrolled")
    pipeline = open_bundle_pipeline(args, None)
    embeddings, sources, refused, crops = [], [], [], []
    try:
        for path in paths:
            image = read_photo(path)
            embedding, crop, why = (pipeline.faces.enrolment_look(image) if image is not None
                                    else (None, None, "unreadable"))
            if embedding is None:
                refused.append(f"{Path(path).name} ({why})")
                continue
            embeddings.append(embedding)
            sources.append(path)
            crops.append(crop)
    finally:
        pipeline.close()
    if not embeddings:
        raise UserError(f"no usable photo of {args.name}: {'; '.join(refused[:5])}; nothing enrolled")
    return embeddings, sources, refused, pipeline, crops if args.keep_crops else None


def reembed(args, people) -> int:
    """``edge gallery --reembed`` and ``edge fleet reembed``: templates for ``args.bundle``'s verifier from the kept
    crops, and who must enrol again."""
    pipeline = open_bundle_pipeline(args, None)
    try:
        done = people.reembed(pipeline.faces.key, pipeline.faces.enrolment_embedding_of_jpeg)
    finally:
        pipeline.close()
    print(f"reembed: {sum(done.made.values())} templates for {len(done.made)} people with "
          f"{pipeline.faces.embedder.entry.name}" + "".join(f"; refused {r}" for r in done.refused[:5]))
    if done.must_enrol:
        print(f"reembed: {len(done.must_enrol)} must enrol again (no crop kept, or none usable): "
              f"{', '.join(shown_name(n) for n in done.must_enrol)}")
    return 0


def shown_name(name: str) -> str:
    """A name as a line of output may hold it: as it is when it keeps the naming rule, else quoted with escapes
    (a name from before the rule, holding a newline, cannot forge a line)."""
    from edge.gallery.rules import check_name

    try:
        return check_name(name)
    except UserError:
        return repr(name)
