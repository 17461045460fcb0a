"""The second sky-on-the-ground measure: patches classified by colour and brush texture.

``sky_on_ground_score`` compares single pixels' colours with the painting's sky and ground colours. It
cannot see the painting's sky *texture* (The Starry Night's moons and swirls, The Scream's bands) on a
ground of much the same colour. ``sky_on_ground_patch_score`` can. The scenes here are tiny synthetic
"paintings" built in CIELAB: a sky of wavy lightness bands with yellow stars over a smooth ground, the two
sides a little apart in hue, each with a slow colour drift like a real painting's.
"""

from __future__ import annotations

import numpy as np
import pytest

from nstjax.errors import NstjaxError
from nstjax.labels import load_palette
from nstjax.recreate import SkyPatchesOnGround, sky_on_ground_patch_score, sky_on_ground_score

PAL = load_palette("landscape")
SKY, CLOUD, GRASS, HILL, SEA = (PAL.index(n) for n in ("sky", "cloud", "grass", "hill", "sea"))
H, W = 48, 64
SKY_LAB = (40.0, 0.0, -40.0)  # a mid blue
GROUND_LAB = (40.0, 0.0, -25.0)  # a greyer blue of the same lightness: 15 ΔE*ab from the sky

_RGB_TO_XYZ = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
)


def lab_to_rgb(lab) -> np.ndarray:
    """CIELAB (D65) -> sRGB in [0, 1], the inverse of nstjax's srgb_to_lab (clipped to the gamut)."""
    L, a, b = np.moveaxis(np.asarray(lab, np.float64), -1, 0)
    fy = (L + 16) / 116
    f = np.stack([fy + a / 500, fy, fy - b / 200], -1)
    xyz = np.where(f > 6 / 29, f**3, 3 * (6 / 29) ** 2 * (f - 4 / 29)) * [0.95047, 1.0, 1.08883]
    lin = xyz @ np.linalg.inv(_RGB_TO_XYZ).T
    rgb = np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * np.clip(lin, 0, None) ** (1 / 2.4) - 0.055)
    return np.clip(rgb, 0, 1).astype(np.float32)


def sky_texture(shape, base, rng) -> np.ndarray:
    """Wavy horizontal lightness bands (±10 L*, 6 px apart) and 2x2 px yellow stars, around ``base`` (Lab)."""
    h, w = shape
    y, x = np.mgrid[:h, :w].astype(np.float64)
    lab = np.zeros((h, w, 3)) + base
    lab[..., 0] += 10 * np.sin(2 * np.pi * (y + 1.5 * np.sin(2 * np.pi * x / 20)) / 6)
    for _ in range(h * w // 90):
        yy, xx = rng.integers(0, h - 1), rng.integers(0, w - 1)
        lab[yy : yy + 2, xx : xx + 2] = (85.0, 0.0, 60.0)
    return lab


def ground_texture(shape, base, rng) -> np.ndarray:
    """Smooth paint: ``base`` (Lab) with a little pixel noise."""
    return np.zeros((*shape, 3)) + base + rng.normal(0.0, 1.0, (*shape, 3))


def drift(shape, seed) -> np.ndarray:
    """A slow colour drift over the picture (Lab offsets up to about ±6 L*, ±4 a*, ±8 b*)."""
    rng = np.random.default_rng(100 + seed)
    y, x = np.mgrid[: shape[0], : shape[1]].astype(np.float64)
    out = np.zeros((*shape, 3))
    for c, amp in enumerate((6.0, 4.0, 8.0)):
        for _ in range(2):
            fy, fx = rng.uniform(0.5, 1.5, 2) * 2 / np.array(shape)
            out[..., c] += amp / 2 * np.sin(2 * np.pi * (fy * y + fx * x) + rng.uniform(0, 2 * np.pi))
    return out


def two_sides(shape=(H, W), top=SKY, bottom=GRASS) -> np.ndarray:
    labels = np.full(shape, bottom, np.int32)
    labels[: shape[0] // 2] = top
    return labels


def painting():
    rng = np.random.default_rng(0)
    half = (H // 2, W)
    lab = np.concatenate([sky_texture(half, SKY_LAB, rng), ground_texture(half, GROUND_LAB, rng)])
    return lab_to_rgb(lab + drift((H, W), 0)), two_sides()


def result(ground: str):
    """A result over the same sketch (sky above ground) whose ground is:

    "clean": the painting's ground paint; "sky texture": the sky's bands and stars at the ground's mean
    colour; "sky": the sky's texture in the sky's colour.
    """
    rng = np.random.default_rng(1)
    half = (H // 2, W)
    sky = sky_texture(half, SKY_LAB, rng)
    make = {
        "clean": lambda: ground_texture(half, GROUND_LAB, rng),
        "sky texture": lambda: sky_texture(half, GROUND_LAB, rng),
        "sky": lambda: sky_texture(half, SKY_LAB, rng),
    }[ground]
    return lab_to_rgb(np.concatenate([sky, make()]) + drift((H, W), 1)), two_sides()


def test_sky_texture_on_a_ground_coloured_ground_is_seen_where_the_colour_score_misses_it():
    paint, paint_labels = painting()
    image, labels = result("sky texture")
    colour = sky_on_ground_score(image, labels, paint, paint_labels)
    patches = sky_on_ground_patch_score(image, labels, paint, paint_labels, size=None)
    assert colour.score < 0.15, colour.score  # only the yellow stars' own pixels read as sky
    assert patches.score > 0.9, patches.as_dict()
    assert patches.sky_vote > 0.8
    # It is the texture that sees it: with the colour group weighted far above the texture the same
    # patches read as ground again, and at the analysis size the default (160 px) the result holds.
    assert sky_on_ground_patch_score(image, labels, paint, paint_labels, size=None, color_weight=10.0).score < 0.3
    assert sky_on_ground_patch_score(image, labels, paint, paint_labels).score > 0.9


def test_a_clean_ground_scores_low_and_the_sky_itself_high():
    paint, paint_labels = painting()
    clean, labels = result("clean")
    s = sky_on_ground_patch_score(clean, labels, paint, paint_labels, size=None)
    assert s.score < 0.05 and s.sky_vote < 0.1, s.as_dict()
    assert sky_on_ground_patch_score(clean, labels, paint, paint_labels).score < 0.05
    sky, labels = result("sky")
    assert sky_on_ground_patch_score(sky, labels, paint, paint_labels, size=None).score > 0.95
    assert sky_on_ground_score(sky, labels, paint, paint_labels).score > 0.8  # here both measures agree


def test_the_score_is_deterministic_and_reports_its_method():
    paint, paint_labels = painting()
    image, labels = result("sky texture")
    a = sky_on_ground_patch_score(image, labels, paint, paint_labels, size=None)
    b = sky_on_ground_patch_score(image.copy(), labels.copy(), paint.copy(), paint_labels.copy(), size=None)
    assert isinstance(a, SkyPatchesOnGround)
    assert a == b
    # The seed only subsamples a painting with more than MAX_TRAIN patches a side: not this one.
    assert sky_on_ground_patch_score(image, labels, paint, paint_labels, size=None, seed=7) == a
    # 12 px patches every 4 px: 14 columns, and 4 rows each lie wholly in the 24 sky or the 24 ground rows
    # (the row across the horizon is only 2/3 ground, under MIN_COVER).
    assert a.ground_patches == 14 * 4 and a.shape == (H, W)
    assert a.training_patches == (14 * 4, 14 * 4)
    d = a.as_dict()
    assert set(d) == {"score", "ground_patches", "sky_vote", "training_patches", "analysis_shape", "method"}
    assert d["score"] == a.score and "9-NN" in d["method"] and "12x12 px" in d["method"]
    # Label maps are resized to their image by nearest neighbour, like the colour score's.
    half = sky_on_ground_patch_score(image, labels[::2, ::2], paint, paint_labels[::2, ::2], size=None)
    assert half.score == a.score


def test_classes_count_by_side_and_other_classes_are_left_out():
    paint, paint_labels = painting()
    image, _ = result("sky texture")
    # cloud is sky and hill is ground, as for the colour score; a sea ground is neither, so nothing to score.
    cloud_hill = sky_on_ground_patch_score(
        image, two_sides(top=CLOUD, bottom=HILL), paint, two_sides(top=CLOUD, bottom=HILL), size=None
    )
    assert cloud_hill.score > 0.9
    with pytest.raises(NstjaxError, match="no 12x12 px patch that is at least 75% ground to score"):
        sky_on_ground_patch_score(image, two_sides(bottom=SEA), paint, paint_labels, size=None)


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda k: k | {"image": np.zeros((H, W))}, r"image must be an \[H, W, 3\] RGB array"),
        (lambda k: k | {"painting": np.zeros((H, W, 4))}, r"painting must be an \[H, W, 3\] RGB array"),
        (lambda k: k | {"image": np.full((H, W, 3), np.nan)}, "image holds NaN or infinite"),
        (lambda k: k | {"labels": np.zeros((H, W, 1), np.int32)}, r"labels must be an \[H, W\] label map"),
        (lambda k: k | {"painting_labels": np.full((H, W), GRASS)}, "painting has no 12x12 px patch .* sky"),
        (lambda k: k | {"painting_labels": np.full((H, W), SKY)}, "painting has no 12x12 px patch .* ground"),
        (lambda k: k | {"labels": np.full((H, W), SKY)}, "no 12x12 px patch .* ground to score"),
        (lambda k: k | {"patch": 50}, "image is 64x48 px at the analysis size, smaller than a 50 px patch"),
        (lambda k: k | {"size": 0}, "size must be an integer >= 8"),
        (lambda k: k | {"patch": True}, "patch must be an integer >= 3"),
        (lambda k: k | {"stride": 0}, "stride must be an integer >= 1"),
        (lambda k: k | {"neighbours": 2.5}, "neighbours must be an integer >= 1"),
        (lambda k: k | {"color_weight": -1.0}, "color_weight must be a finite number >= 0"),
        (lambda k: k | {"color_weight": float("nan")}, "color_weight must be a finite number >= 0"),
    ],
)
def test_bad_input_is_an_nstjax_error(change, match):
    paint, paint_labels = painting()
    image, labels = result("clean")
    kwargs = change(
        {"image": image, "labels": labels, "painting": paint, "painting_labels": paint_labels, "size": None}
    )
    with pytest.raises(NstjaxError, match=match):
        sky_on_ground_patch_score(**kwargs)
