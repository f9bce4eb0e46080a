"""What may come into a gallery: a person's name (one rule wherever a name comes in) and an exported template."""
from __future__ import annotations

import base64
import unicodedata

import numpy as np

from edge.base.errors import UserError

MAX_NAME_CHARS = 64
MAX_DIM = 4096               # embedding sizes: 128 (dlib), 512 (ArcFace); anything larger is not a face template
UNIT_TOLERANCE = 1e-3


def check_name(name) -> str:
    """The one rule for a person's name, everywhere a name comes in (enrolment, naming a visitor, an import): 1 to
    MAX_NAME_CHARS characters in Unicode NFC, no surrounding spaces, no control or invisible formatting characters
    (newlines would forge lines of ``edge gallery``; right-to-left overrides would disguise a name), no path
    separators, not "." or "..". Returns the name, or raises UserError saying what is wrong."""
    if not isinstance(name, str) or not name:
        raise UserError("a name must not be empty")
    if len(name) > MAX_NAME_CHARS:
        raise UserError(f"a name has at most {MAX_NAME_CHARS} characters, not {len(name)}")
    if unicodedata.normalize("NFC", name) != name:
        raise UserError(f"the name {name!r} is not in Unicode NFC form; type it again or normalise it")
    if name != name.strip():
        raise UserError(f"the name {name!r} begins or ends with a space")
    hidden = sorted({c for c in name if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")})
    if hidden:
        raise UserError(f"the name {name!r} holds control or invisible characters "
                        f"({', '.join(f'U+{ord(c):04X}' for c in hidden)})")
    if "/" in name or "\\" in name or name in (".", ".."):
        raise UserError(f"the name {name!r} holds a path separator or is a path; use letters, spaces, '-', '.'")
    return name


def exported_vector(template: dict) -> np.ndarray:
    """One exported template's embedding, refused (ValueError) unless it is ``dim`` finite float32 values of
    length 1 (every template this runtime writes is a unit vector)."""
    dim, model = template["dim"], template["model"]
    if not isinstance(dim, int) or not 0 < dim <= MAX_DIM or not isinstance(model, str) or not model:
        raise ValueError(f"a template needs a dim from 1 to {MAX_DIM} and a model, not {dim!r} and {model!r}")
    raw = base64.b64decode(template["embedding"], validate=True)
    if len(raw) != 4 * dim:
        raise ValueError(f"a template of dim {dim} holds {len(raw)} bytes, not {4 * dim}")
    vector = np.frombuffer(raw, np.float32)
    if not np.isfinite(vector).all() or abs(float(np.linalg.norm(vector)) - 1) > UNIT_TOLERANCE:
        raise ValueError("a template is not a finite unit vector")
    return vector
