import cv2
import numpy as np
import pytest

from edge.faces.align import align_face
from edge.runtime.crops import crop_template, five_to_four, similarity_transform
from edge.runtime.manifest import InputSpec
from edge.runtime.preprocess import generator_input_spec, output_to_images, prepare_batch, verifier_input_spec

TEMPLATE_112 = crop_template("arcface112").array()

pytestmark = pytest.mark.unit


def test_similarity_transform_recovers_a_known_transform():
    angle, scale, shift = np.deg2rad(17), 1.7, np.array([12.0, -5.0])
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = TEMPLATE_112 * 0.8 + 10
    dst = src @ rotation.T + shift
    matrix = similarity_transform(src, dst)
    np.testing.assert_allclose(matrix[:, :2], rotation, atol=1e-4)
    np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-3)


def test_align_puts_key_points_on_the_template():
    image = np.zeros((300, 300, 3), np.uint8)
    points = TEMPLATE_112 * 2.0 + 40                       # a face twice the template size
    for x, y in points.astype(int):
        cv2.circle(image, (x, y), 3, (255, 255, 255), -1)
    aligned = align_face(image, points)
    assert aligned.shape == (112, 112, 3)
    for x, y in TEMPLATE_112.round().astype(int):
        assert aligned[y, x].max() > 100


def test_five_to_four_averages_mouth_corners():
    five = np.array([[1, 1], [3, 1], [2, 2], [1, 3], [3, 5]], np.float32)
    np.testing.assert_allclose(five_to_four(five)[3], [2, 4])


def test_prepare_batch_colour_layout_and_range():
    image = np.zeros((112, 112, 3), np.uint8)
    image[..., 2] = 255                                    # pure red in BGR
    batch = prepare_batch([image], verifier_input_spec())
    assert batch.shape == (1, 3, 112, 112) and batch.dtype == np.float32
    np.testing.assert_allclose(batch[0, :, 0, 0], [1.0, -1.0, -1.0])   # RGB order, [-1, 1]


def test_prepare_batch_resizes_and_round_trips_generator_images():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    spec = generator_input_spec()
    batch = prepare_batch([image, image], spec)
    assert batch.shape == (2, 3, 64, 64) and 0 <= batch.min() and batch.max() <= 1
    np.testing.assert_array_equal(output_to_images(batch, spec)[0], image)
    assert prepare_batch([np.zeros((112, 112, 3), np.uint8)], spec).shape == (1, 3, 64, 64)


def test_prepare_batch_quantizes_integer_inputs():
    spec = InputSpec(name="x", shape=(1, 2, 2, 3), layout="NHWC", dtype="int8", colour="BGR",
                     mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), scale=2.0, zero_point=-128)
    batch = prepare_batch([np.full((2, 2, 3), 100, np.uint8)], spec)
    assert batch.dtype == np.int8 and int(batch[0, 0, 0, 0]) == -78


@pytest.mark.parametrize("colour", ["RGB", "BGR"])
def test_prepare_batch_one_pass_path_matches_the_formula(colour):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (150, 150, 3), dtype=np.uint8) for _ in range(2)]
    spec = InputSpec(name="x", shape=(1, 3, 150, 150), layout="NCHW", dtype="float32", colour=colour,
                     mean=(122.782, 117.001, 104.298), std=(256.0, 256.0, 256.0), crop="dlib150")
    pixels = np.stack(images).astype(np.float32)
    if colour == "RGB":
        pixels = pixels[..., ::-1]
    expected = ((pixels - np.asarray(spec.mean, np.float32)) / 256.0).transpose(0, 3, 1, 2)
    got = prepare_batch(images, spec)
    assert got.flags["C_CONTIGUOUS"] and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-6)
