"""Image sizes read from headers, for every format the kiosk's API takes, before any pixel is decoded."""
import cv2
import numpy as np
import pytest

from edge.base.image_header import image_size

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".webp", ".pgm", ".ppm"])
def test_the_declared_size_of_every_accepted_format(suffix):
    image = np.random.default_rng(0).integers(0, 255, (37, 53, 3), dtype=np.uint8)
    if suffix == ".pgm":
        image = image[..., 0]
    data = cv2.imencode(suffix, image)[1].tobytes()
    assert image_size(data) == (53, 37)


def test_gif_progressive_jpeg_and_lossless_webp():
    assert image_size(b"GIF89a" + (640).to_bytes(2, "little") + (480).to_bytes(2, "little") + b"\0" * 8) == (640, 480)
    image = np.full((21, 34, 3), 128, np.uint8)
    progressive = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    lossless = cv2.imencode(".webp", image, [cv2.IMWRITE_WEBP_QUALITY, 101])[1].tobytes()
    assert image_size(progressive) == (34, 21) and image_size(lossless) == (34, 21)


def test_what_is_no_image_or_is_cut_short_has_no_size():
    png = cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1].tobytes()
    for data in (b"", b"this is not an image", png[:20], b"\xff\xd8\xff\xe0\x00", b"BM" + b"\0" * 10):
        assert image_size(data) is None
