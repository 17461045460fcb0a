"""Tests for nstjax.masks: loading, region matching, layer masks, region styles."""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import pytest
from PIL import Image

from nstjax.errors import NstjaxError
from nstjax.nst.masks import (
    MaskWarning,
    hex_to_rgb,
    layer_masks,
    layer_stage,
    load_gray_mask,
    load_segmentation,
    match_regions,
    parse_region_styles,
    resolve_region_styles,
    rgb_to_hex,
)

SKY = (0x87, 0xCE, 0xEB)
GRASS = (0x22, 0x8B, 0x22)
PINK = (0xFF, 0x14, 0x93)
YELLOW = (0xFF, 0xD7, 0x00)
COLORS = np.array([SKY, GRASS, PINK], dtype=np.uint8)

RELU_LAYERS = [
    "relu1_1", "relu1_2",
    "relu2_1", "relu2_2",
    "relu3_1", "relu3_2", "relu3_3", "relu3_4",
    "relu4_1", "relu4_2", "relu4_3", "relu4_4",
    "relu5_1", "relu5_2", "relu5_3", "relu5_4",
]  # fmt: skip
POOL_LAYERS = [f"pool{b}" for b in range(1, 6)]


def labels_scene(h: int, w: int) -> np.ndarray:
    """int [h, w] labels 0..2: sky left, grass right, a pink disc, a sky notch."""
    lab = np.zeros((h, w), dtype=np.int64)
    lab[:, int(w * 0.35) :] = 1
    yy, xx = np.mgrid[:h, :w]
    lab[(yy - h * 0.6) ** 2 + (xx - w * 0.7) ** 2 < (h * 0.2) ** 2] = 2
    lab[: int(h * 0.2), int(w * 0.5) : int(w * 0.6)] = 0
    return lab


def save(path, rgb: np.ndarray, **kw) -> str:
    Image.fromarray(rgb).save(path, **kw)
    return str(path)


@contextlib.contextmanager
def no_mask_warnings():
    """Turn any MaskWarning into an error inside the block."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", MaskWarning)
        yield


# ---------------------------------------------------------------- layer_masks


def avg_pool_loop(x: np.ndarray) -> np.ndarray:
    """Independent reference: explicit loops, 2x2 window, stride 2, floor."""
    h, w = x.shape[0] // 2, x.shape[1] // 2
    out = np.zeros((h, w), dtype=np.float64)
    for i in range(h):
        for j in range(w):
            total = 0.0
            for di in (0, 1):
                for dj in (0, 1):
                    total += x[2 * i + di, 2 * j + dj]
            out[i, j] = total / 4
    return out


def expected_stage(name: str) -> int:
    if name.startswith("pool"):
        return int(name[4])
    return int(name[4]) - 1


def test_layer_shapes_follow_floor_halving_for_odd_sizes():
    h, w = 37, 50
    out = layer_masks(np.ones((2, h, w), np.float32), RELU_LAYERS + POOL_LAYERS + ["conv3_2"])
    for name, m in out.items():
        eh, ew = h, w
        for _ in range(expected_stage(name)):
            eh, ew = eh // 2, ew // 2  # pool1..pool5: 2x2 stride 2 VALID
        assert m.shape == (2, eh, ew), name
        assert m.dtype == np.float32
    assert out["relu5_1"].shape == (2, 2, 3)
    assert out["pool5"].shape == (2, 1, 1)
    assert list(out) == RELU_LAYERS + POOL_LAYERS + ["conv3_2"]


def test_all_ones_stays_all_ones():
    out = layer_masks(np.ones((37, 50), np.float32), RELU_LAYERS + POOL_LAYERS)
    for name, m in out.items():
        assert m.ndim == 2, name  # a [H, W] mask stays [h, w]
        assert np.all(m == 1.0), name


def test_half_half_mask_gives_exact_boundary_fractions():
    h, w, edge = 37, 50, 25  # columns < 25 are inside: the edge is mid-block at every stage
    mask = np.zeros((h, w), np.float32)
    mask[:, :edge] = 1
    out = layer_masks(mask, RELU_LAYERS + POOL_LAYERS)
    for name, m in out.items():
        k = expected_stage(name)
        s = 2**k
        cols = np.arange(m.shape[1])
        # Fraction of the footprint [j*s, (j+1)*s) lying left of the edge.
        frac = np.clip(edge - cols * s, 0, s) / s
        np.testing.assert_array_equal(m, np.broadcast_to(frac.astype(np.float32), m.shape), err_msg=name)
    # e.g. relu2_1 (stage 1): column 12 covers input columns 24, 25 -> 1/2
    assert out["relu2_1"][0, 12] == 0.5
    assert out["relu3_1"][0, 6] == 0.25  # input columns 24..27 -> 1/4


def test_matches_independent_loop_average_pooling():
    rng = np.random.default_rng(0)
    masks = (rng.random((3, 37, 50)) > 0.5).astype(np.float32)
    out = layer_masks(masks, RELU_LAYERS + POOL_LAYERS)
    for name, m in out.items():
        for r in range(3):
            ref = masks[r].astype(np.float64)
            for _ in range(expected_stage(name)):
                ref = avg_pool_loop(ref)
            np.testing.assert_allclose(m[r], ref, rtol=0, atol=1e-7, err_msg=name)


def test_layer_masks_leaves_input_alone_and_rejects_unknown_layers():
    masks = np.ones((1, 8, 8), np.float32)
    out = layer_masks(masks, ["relu1_1"])
    masks[0, 0, 0] = 0.5  # caller's array stays writable and independent
    assert out["relu1_1"][0, 0, 0] == 1.0
    assert not out["relu1_1"].flags.writeable
    for bad in ["relu2_3", "relu6_1", "conv1_5", "pool6", "fc6", "relu1"]:
        with pytest.raises(NstjaxError, match="unknown VGG-19 layer"):
            layer_masks(masks, [bad])
    assert layer_stage("conv1_1") == 0 and layer_stage("relu5_4") == 4 and layer_stage("pool3") == 3


def test_region_vanishing_at_a_layer_warns():
    masks = np.zeros((2, 37, 50), np.float32)
    masks[0, :36] = 1
    masks[1, 36] = 1  # only the odd last row, which VALID pooling drops
    with pytest.warns(MaskWarning, match=r"#00ff00 is empty at layers relu2_1, relu3_1"):
        out = layer_masks(masks, ["relu1_1", "relu2_1", "relu3_1"], region_names=["#ff0000", "#00ff00"])
    assert out["relu1_1"][1].sum() == 50
    assert out["relu2_1"][1].sum() == 0


# ------------------------------------------------------------ load_segmentation


def test_load_segmentation_modes(tmp_path):
    lab = labels_scene(20, 30)
    rgb = COLORS[lab]
    # RGBA with a varying alpha: alpha is ignored.
    rgba = np.concatenate([rgb, (np.arange(600).reshape(20, 30) % 256).astype(np.uint8)[..., None]], -1)
    p = save(tmp_path / "a.png", rgba)
    np.testing.assert_array_equal(load_segmentation(p), rgb)
    # Palette (P) mode.
    pimg = Image.fromarray(lab.astype(np.uint8), mode="L").convert("P")
    pimg.putpalette(COLORS.ravel().tolist() + [0] * (768 - 9))
    pimg.save(tmp_path / "p.png")
    out = load_segmentation(tmp_path / "p.png")
    assert out.dtype == np.uint8 and out.shape == (20, 30, 3)
    np.testing.assert_array_equal(out, rgb)
    # Grayscale.
    save(tmp_path / "l.png", (lab * 100).astype(np.uint8))
    out = load_segmentation(tmp_path / "l.png")
    np.testing.assert_array_equal(out, np.repeat((lab * 100).astype(np.uint8)[..., None], 3, -1))


def test_load_segmentation_nearest_resize_warns_and_keeps_colours(tmp_path):
    rng = np.random.default_rng(1)
    palette = rng.integers(0, 256, (6, 3), dtype=np.uint8)
    lab = rng.integers(0, 6, (37, 50))
    p = save(tmp_path / "seg.png", palette[lab])
    with pytest.warns(MaskWarning, match=r"seg\.png.*50x37.*61x23.*nearest"):
        out = load_segmentation(p, shape=(23, 61))
    assert out.shape == (23, 61, 3)
    got = {tuple(c) for c in out.reshape(-1, 3)}
    assert got <= {tuple(c) for c in palette}  # no interpolated colours
    with no_mask_warnings():
        load_segmentation(p, shape=(37, 50))  # same size: no warning


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(NstjaxError, match=r"missing\.png: no such file"):
        load_segmentation(tmp_path / "missing.png")
    bad = tmp_path / "notimage.png"
    bad.write_bytes(b"hello, not an image")
    with pytest.raises(NstjaxError, match=r"notimage\.png: not an image"):
        load_segmentation(bad)
    with pytest.raises(NstjaxError, match=r"notimage\.png"):
        load_gray_mask(bad)
    # A truncated PNG fails at load time, as an NstjaxError.
    good = save(tmp_path / "good.png", COLORS[labels_scene(40, 40)])
    trunc = tmp_path / "trunc.png"
    trunc.write_bytes(open(good, "rb").read()[:-40])
    with pytest.raises(NstjaxError, match=r"trunc\.png"):
        load_segmentation(trunc)
    save(tmp_path / "deep.png", np.zeros((4, 4), np.uint16))
    with pytest.raises(NstjaxError, match="not supported"):
        load_segmentation(tmp_path / "deep.png")


# --------------------------------------------------------------- load_gray_mask


def test_load_gray_mask_range_and_resize(tmp_path):
    ramp = np.tile(np.linspace(0, 255, 40).astype(np.uint8), (30, 1))
    p = save(tmp_path / "m.png", ramp)
    m = load_gray_mask(p)
    assert m.dtype == np.float32 and m.shape == (30, 40)
    assert m.min() == 0.0 and m.max() == 1.0
    np.testing.assert_allclose(m, ramp / 255.0, atol=1e-7)
    with pytest.warns(MaskWarning, match=r"m\.png.*40x30.*17x61.*bilinear"):
        r = load_gray_mask(p, shape=(61, 17))
    assert r.shape == (61, 17) and r.dtype == np.float32
    assert 0.0 <= r.min() and r.max() <= 1.0
    assert np.all(np.diff(r, axis=1) >= -1e-6)  # a ramp stays a ramp
    # 16-bit and RGBA inputs.
    save(tmp_path / "m16.png", np.full((3, 3), 65535, np.uint16))
    np.testing.assert_allclose(load_gray_mask(tmp_path / "m16.png"), 1.0)
    rgba = np.zeros((3, 3, 4), np.uint8)
    rgba[..., :3] = 255  # white, fully transparent: alpha is ignored
    save(tmp_path / "rgba.png", rgba)
    np.testing.assert_allclose(load_gray_mask(tmp_path / "rgba.png"), 1.0)


# ----------------------------------------------------------------- match_regions


def test_exact_matching_on_clean_pngs(tmp_path):
    lab = labels_scene(24, 32)
    c = load_segmentation(save(tmp_path / "content.png", COLORS[lab]))
    s_lab = labels_scene(20, 28)[::-1]  # a different layout and size
    s = load_segmentation(save(tmp_path / "style.png", COLORS[s_lab]))
    with no_mask_warnings():
        m = match_regions(c, [s], content_name="content.png", style_names=["style.png"])
    assert not m.snapped
    order = np.argsort(_keys(COLORS))  # regions come sorted by colour value
    np.testing.assert_array_equal(m.colors, COLORS[order])
    assert m.hex_colors == sorted(["#87ceeb", "#228b22", "#ff1493"])
    assert m.content_masks.shape == (3, 24, 32) and m.content_masks.dtype == np.float32
    assert len(m.style_masks) == 1 and m.style_masks[0].shape == (3, 20, 28)
    for r, label in enumerate(order):
        np.testing.assert_array_equal(m.content_masks[r], (lab == label).astype(np.float32))
        np.testing.assert_array_equal(m.style_masks[0][r], (s_lab == label).astype(np.float32))
    np.testing.assert_array_equal(m.content_masks.sum(0), 1.0)  # a partition
    np.testing.assert_allclose(m.content_fractions, [(lab == lb).mean() for lb in order], atol=1e-6)
    assert m.style_presence.tolist() == [[True, True, True]]
    assert m.unmatched == ()


def _keys(colors: np.ndarray) -> np.ndarray:
    c = colors.astype(np.int64)
    return (c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]


def _recovered(m, lab: np.ndarray, masks: np.ndarray) -> float:
    """Fraction of pixels whose region's colour is the original colour of the pixel."""
    region = masks.argmax(0)
    got = m.colors[region]
    return float(np.all(got == COLORS[lab], axis=-1).mean())


@pytest.mark.parametrize("size", [(96, 128), (240, 320)])
def test_jpeg_segmentation_snaps_back_to_the_palette(tmp_path, size):
    # The larger size matters: there JPEG's shifted version of a flat colour
    # is more common than any colour of the small clean style image.
    lab = labels_scene(*size)
    path = save(tmp_path / "content.jpg", COLORS[lab], quality=75)
    c = load_segmentation(path)
    n_colours = len(np.unique(c.reshape(-1, 3), axis=0))
    assert n_colours > 100  # JPEG noise: many tiny colours

    # 1) an explicit palette
    s = COLORS[labels_scene(40, 40)]
    m = match_regions(c, [s], palette=COLORS)
    assert m.snapped and m.num_regions == 3
    assert _recovered(m, lab, m.content_masks) > 0.99

    # 2) palette derived automatically, clean PNG style: the exact style
    #    colours win over JPEG's slightly shifted ones.
    m = match_regions(c, [s])
    assert m.snapped
    assert sorted(m.hex_colors) == sorted(rgb_to_hex(x) for x in COLORS)
    assert _recovered(m, lab, m.content_masks) > 0.99
    assert m.unmatched == ()

    # 3) everything JPEG: colours may shift by a few levels, but the three
    #    regions are found and matched.
    s_lab = labels_scene(64, 80)
    s_jpg = load_segmentation(save(tmp_path / "style.jpg", COLORS[s_lab], quality=75))
    m = match_regions(c, [s_jpg])
    assert m.num_regions == 3
    dist = np.linalg.norm(m.colors[:, None].astype(float) - COLORS[None].astype(float), axis=-1)
    assert dist.min(1).max() < 8
    nearest = dist.argmin(1)  # region -> original label
    content_label = nearest[m.content_masks.argmax(0)]
    style_label = nearest[m.style_masks[0].argmax(0)]
    assert (content_label == lab).mean() > 0.99
    assert (style_label == s_lab).mean() > 0.99


def test_unmatched_content_colour_raises_naming_colour_and_file(tmp_path):
    lab = labels_scene(24, 32)
    c = COLORS[lab]
    c[:5, :5] = YELLOW  # in no style
    s = COLORS[labels_scene(20, 20)]
    with pytest.raises(NstjaxError) as ei:
        match_regions(c, [s, s], content_name="content.png", style_names=["a.png", "b.png"])
    msg = str(ei.value)
    assert "#ffd700" in msg and "a.png" in msg and "b.png" in msg
    assert msg.startswith("content.png: ")
    assert "\n" not in msg

    with pytest.warns(MaskWarning, match="#ffd700"):
        m = match_regions(c, [s], allow_unmatched=True, style_names=["a.png"])
    assert "#ffd700" not in m.hex_colors and m.num_regions == 3
    (u,) = m.unmatched
    assert (u.color, u.side, u.missing_from) == ("#ffd700", "content", ("a.png",))
    assert u.fractions == {"content segmentation": pytest.approx(25 / (24 * 32))}
    assert "#ffd700" in str(u)
    # Those pixels are in no region: no style loss for them.
    assert np.all(m.content_masks[:, :5, :5] == 0)
    assert m.content_masks.sum() == 24 * 32 - 25


def test_style_only_colour_is_reported_silently(tmp_path):
    c = COLORS[labels_scene(24, 32)]
    s = COLORS[labels_scene(20, 20)]
    s[:4, :] = YELLOW
    with no_mask_warnings():
        m = match_regions(c, [s], style_names=["style.png"])
    assert m.num_regions == 3
    (u,) = m.unmatched
    assert u.color == "#ffd700" and u.side == "style"
    assert u.fractions == {"style.png": pytest.approx(80 / 400)}


def test_several_styles_presence_and_region_style_resolution():
    c = COLORS[labels_scene(24, 32)]
    s0 = np.zeros((10, 10, 3), np.uint8)
    s0[:] = SKY
    s0[5:] = GRASS  # sky + grass
    s1 = np.zeros((12, 12, 3), np.uint8)
    s1[:] = PINK
    s1[:6] = SKY  # sky + pink
    m = match_regions(c, [s0, s1], style_names=["s0.png", "s1.png"])
    hexes = m.hex_colors  # ['#228b22', '#87ceeb', '#ff1493']
    assert hexes == ["#228b22", "#87ceeb", "#ff1493"]
    assert m.style_presence.tolist() == [[True, True, False], [False, True, True]]
    assert np.all(m.style_masks[0][2] == 0)  # pink absent from style 0

    # Default: every style that contains the region.
    np.testing.assert_array_equal(resolve_region_styles(m), m.style_presence)
    # Sky from style 1 only.
    use = resolve_region_styles(m, parse_region_styles("#87CEEB:1", 2))
    assert use.tolist() == [[True, False, False], [False, True, True]]
    # A slightly-off colour (JPEG shift) still finds its region.
    use = resolve_region_styles(m, {"#88cdeb": (0,)})
    assert use[:, 1].tolist() == [True, False]
    with pytest.raises(NstjaxError, match=r"#ffd700 is not a region"):
        resolve_region_styles(m, {"#ffd700": (0,)})
    with pytest.raises(NstjaxError, match=r"#ff1493 .* style 0.*s0\.png has no pixel"):
        resolve_region_styles(m, {"#ff1493": (0,)})


def test_malformed_palette_and_arrays():
    c = COLORS[labels_scene(8, 8)]
    with pytest.raises(NstjaxError, match="palette"):
        match_regions(c, [c], palette=np.zeros((3, 4), np.uint8))
    with pytest.raises(NstjaxError, match="palette"):
        match_regions(c, [c], palette=np.array([[0, 0, 300]]))
    with pytest.raises(ValueError):
        match_regions(c[..., 0], [c])
    with pytest.raises(ValueError):
        match_regions(c, [])


def test_ill_fitting_palette_warns():
    c = COLORS[labels_scene(24, 32)]
    with pytest.warns(MaskWarning, match="palette does not seem to fit"):
        match_regions(c, [c], palette=np.array([[0, 0, 0], [255, 255, 255]]))


# ----------------------------------------------------------- parse_region_styles


def test_parse_region_styles_valid():
    assert parse_region_styles(None, 2) == {}
    assert parse_region_styles("", 1) == {}
    assert parse_region_styles(" #87ceeb:0 , #228B22:1 ,", 2) == {"#87ceeb": (0,), "#228b22": (1,)}
    assert parse_region_styles("87ceeb:1,#87ceeb:0,#87ceeb:1", 2) == {"#87ceeb": (0, 1)}


@pytest.mark.parametrize(
    ("spec", "pattern"),
    [
        ("#87ceeg:0", r"'#87ceeg' is not a colour"),
        ("#87cee:0", r"not a colour"),
        ("#87ceeb:x", r"style index 'x' is not a whole number"),
        ("#87ceeb:1.5", r"not a whole number"),
        ("#87ceeb:", r"style index '' is not a whole number"),
        ("#87ceeb:2", r"style index 2 is out of range; there are 2 style images \(valid: 0..1\)"),
        ("#87ceeb:-1", r"out of range"),
        ("#87ceeb", r"expected COLOUR:INDEX"),
        ("#87ceeb:0:1", r"expected COLOUR:INDEX"),
    ],
)
def test_parse_region_styles_errors(spec, pattern):
    with pytest.raises(NstjaxError, match=pattern) as ei:
        parse_region_styles(spec, 2)
    assert "\n" not in str(ei.value)


def test_hex_helpers():
    assert rgb_to_hex(SKY) == "#87ceeb"
    assert hex_to_rgb("#87CEEB") == SKY
    assert hex_to_rgb(" 87ceeb ") == SKY
    with pytest.raises(NstjaxError):
        hex_to_rgb("#fff")


def test_tiny_jpeg_style_is_snapped_and_close_clean_colours_stay_distinct(tmp_path):
    # A 30x30 JPEG: every colour is >= 0.1% of 900 pixels, but single-pixel
    # colours still mark it as noisy, so it is snapped, not matched exactly.
    s_lab = labels_scene(30, 30)
    s = load_segmentation(save(tmp_path / "s.jpg", COLORS[s_lab], quality=90))
    c_lab = labels_scene(24, 32)
    c = COLORS[c_lab].copy()
    near_sky = np.array([0x87, 0xCE, 0xD0], np.uint8)  # 27 from SKY: a distinct, deliberate colour
    c[:3, :3] = near_sky
    m = match_regions(c, [s], allow_unmatched=True)
    assert m.snapped
    assert {rgb_to_hex(x) for x in COLORS} <= set(m.hex_colors)
    # The clean content's near-sky colour is kept as its own colour, not
    # merged into sky (noisy sky pixels of the JPEG may snap to it: the two
    # colours are closer than JPEG noise can tell apart).
    sky = m.hex_colors.index("#87ceeb")
    assert np.all(m.content_masks[sky, :3, :3] == 0)
    assert m.content_masks[sky].sum() == (c_lab == 0).sum() - 9
    # Exact mode keeps close colours apart too.
    s_clean = COLORS[s_lab].copy()
    s_clean[:3, :3] = near_sky
    with no_mask_warnings():
        m = match_regions(c, [s_clean])
    assert not m.snapped and m.num_regions == 4
