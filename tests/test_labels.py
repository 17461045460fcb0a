"""Label maps (nstjax.labels): palettes, sketches and index PNGs, array helpers, synthetic landscape pairs.

The lost-painting sketch (``../shared/images/wild_vegetation_sketch.png``) is
used when the shared folder is there; every sketch test also runs on a
stand-in drawn here with the same eight flat colours, so a clean clone
without ``shared/`` still checks the same behaviour.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from nstjax.errors import NstjaxError
from nstjax.io import load_image
from nstjax.labels import (
    Palette,
    SynthProgress,
    class_areas,
    colorize,
    expected_class_colors,
    load_palette,
    one_hot,
    palette_names,
    read_label_map,
    resize_labels,
    save_label_map,
    synth_landscape,
    write_synth_dataset,
)

REPO = Path(__file__).resolve().parents[1]
SHARED_SKETCH = REPO.parent / "shared" / "images" / "wild_vegetation_sketch.png"
SKETCH_CLASSES = {"sky", "cloud", "mountain", "snow", "hill", "tree", "grass", "flower"}
PAL = load_palette("landscape")


def hex_rgb(text: str) -> tuple[int, int, int]:
    return tuple(int(text[i : i + 2], 16) for i in (1, 3, 5))


def draw_sketch(path: Path) -> Path:
    """A 256x192 flat-colour sketch in the same eight colours as the shared one (no anti-aliasing)."""
    im = Image.new("RGB", (256, 192), hex_rgb("#759edf"))
    d = ImageDraw.Draw(im)
    for box in [(110, 8, 150, 22), (140, 5, 195, 25), (115, 30, 165, 45)]:
        d.ellipse(box, fill=hex_rgb("#efefef"))
    ridge = [(0, 90), (60, 35), (90, 38), (120, 60), (180, 92), (256, 90), (256, 140), (0, 140)]
    d.polygon(ridge, fill=hex_rgb("#3c3b4b"))
    d.polygon([(60, 35), (90, 38), (118, 58), (80, 52)], fill=hex_rgb("#fafafa"))
    d.polygon([(0, 112), (70, 104), (150, 110), (256, 118), (256, 140), (0, 140)], fill=hex_rgb("#776c2d"))
    d.rectangle([0, 128, 255, 191], fill=hex_rgb("#b7d24e"))
    d.rectangle([49, 110, 53, 142], fill=hex_rgb("#352613"))
    d.ellipse([38, 88, 66, 122], fill=hex_rgb("#352613"))
    rng = np.random.default_rng(0)
    for _ in range(25):
        x, y = int(rng.integers(0, 250)), int(rng.integers(140, 186))
        d.ellipse([x, y, x + 11, y + 7], fill=hex_rgb("#e670b6"))
    im.save(path)
    return path


@pytest.fixture(params=["shared", "drawn"])
def sketch(request, tmp_path) -> Path:
    if request.param == "shared":
        if not SHARED_SKETCH.exists():
            pytest.skip(f"{SHARED_SKETCH} not present (the drawn stand-in covers the same checks)")
        return SHARED_SKETCH
    return draw_sketch(tmp_path / "drawn_sketch.png")


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- palettes


def test_landscape_palette_has_the_gaugan_colours_and_coco_ids():
    assert "landscape" in palette_names()
    assert isinstance(PAL, Palette) and PAL.colors.dtype == np.uint8 and PAL.colors.shape == (len(PAL), 3)
    gaugan = {
        "sky": "#759edf", "cloud": "#efefef", "mountain": "#3c3b4b", "hill": "#776c2d", "snow": "#fafafa",
        "grass": "#b7d24e", "flower": "#e670b6", "tree": "#352613", "sea": "#384f83", "river": "#32604d",
        "bush": "#5d6e32", "dirt": "#2c1e16", "road": "#987e6a",
    }  # fmt: skip
    for name, colour in gaugan.items():
        assert PAL.hex(PAL.index(name)) == colour, name
    assert {"rock", "sand", "water", "house"} <= set(PAL.names)
    # 0-based indices into COCO-Stuff's 182 labels (cocostuff labels.md ids minus one).
    coco = {
        "sky": (156, "sky-other"), "cloud": (105, "clouds"), "tree": (168, "tree"), "grass": (123, "grass"),
        "mountain": (134, "mountain"), "sea": (154, "sea"), "river": (147, "river"), "house": (127, "house"),
        "water": (177, "water-other"), "rock": (149, "rock"), "sand": (153, "sand"), "snow": (158, "snow"),
    }  # fmt: skip
    for name, (coco_id, coco_name) in coco.items():
        k = PAL.index(name)
        assert (PAL.coco_ids[k], PAL.coco_names[k]) == (coco_id, coco_name), name
    assert len(set(map(tuple, PAL.colors.tolist()))) == len(PAL)  # colours tell classes apart
    assert all(PAL.descriptions)
    with pytest.raises(KeyError, match="no class 'lava'"):
        PAL.index("lava")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not valid JSON"),
        ('{"classes": []}', "non-empty"),
        ('{"classes": [{"name": "a", "color": "#12345", "coco_id": 1}]}', "#rrggbb"),
        ('{"classes": [{"name": "a", "color": "#123456", "coco_id": 182}]}', "coco_id"),
        ('{"classes": [{"name": "a", "color": "#123456", "coco_id": 1},'
         ' {"name": "b", "color": "#123456", "coco_id": 2}]}', "already used by 'a'"),
    ],
)  # fmt: skip
def test_bad_palette_files_are_one_line_errors(tmp_path, content, problem):
    path = tmp_path / "mine.json"
    path.write_text(content)
    with pytest.raises(NstjaxError) as exc:
        load_palette(path)
    assert str(path) in one_line(exc) and problem in str(exc.value)


def test_palette_by_path_and_unknown_name(tmp_path):
    path = tmp_path / "two.json"
    path.write_text('{"classes": [{"name": "land", "color": "#00ff00", "coco_id": 123},'
                    ' {"name": "lake", "color": "#0000ff", "coco_id": 177}]}')  # fmt: skip
    pal = load_palette(path)
    assert pal.name == "two" and pal.names == ("land", "lake") and pal.colors.tolist() == [[0, 255, 0], [0, 0, 255]]
    assert load_palette(pal) is pal
    with pytest.raises(NstjaxError, match="unknown palette 'landscap'.*landscape"):
        load_palette("landscap")
    with pytest.raises(NstjaxError, match="palette file not found"):
        load_palette(tmp_path / "missing.json")


# --------------------------------------------------------------------------- reading sketches


def test_sketch_reads_with_exactly_its_classes(sketch):
    labels = read_label_map(sketch, "landscape")
    rgb = np.asarray(Image.open(sketch).convert("RGB"))
    assert labels.dtype == np.int32 and labels.shape == rgb.shape[:2]
    assert labels.min() >= 0 and labels.max() < len(PAL)  # every pixel assigned
    assert {PAL.names[k] for k in np.unique(labels)} == SKETCH_CLASSES
    assert np.array_equal(colorize(labels, PAL), rgb)  # flat sketch: colorize(read(x)) == x
    areas = class_areas(labels, PAL)
    assert list(areas) == list(PAL.names) and sum(areas.values()) == pytest.approx(1.0)
    assert {n for n, a in areas.items() if a > 0} == SKETCH_CLASSES


@pytest.mark.parametrize("quality", [75, 90])
def test_jpeg_copy_of_a_sketch_reads_nearly_the_same(sketch, tmp_path, quality):
    clean = read_label_map(sketch)
    jpeg = tmp_path / "sketch.jpg"
    Image.open(sketch).convert("RGB").save(jpeg, quality=quality)  # Pillow's default 4:2:0 chroma subsampling
    assert len(Image.open(jpeg).getcolors(1 << 24)) > 100  # really noisy
    labels = read_label_map(jpeg)
    assert (labels == clean).mean() > 0.975
    assert set(np.unique(labels)) == set(np.unique(clean))  # no stray classes along edges
    # Exact colours only: the same file is refused, listing the noise colours.
    with pytest.raises(NstjaxError, match="not in the 'landscape' palette"):
        read_label_map(jpeg, tolerance=0, edge_width=0)


def test_anti_aliased_sketch_snaps_edges_to_neighbouring_classes(sketch, tmp_path):
    clean = read_label_map(sketch)
    h, w = clean.shape
    small = tmp_path / "aa.png"
    Image.open(sketch).convert("RGB").resize((w // 2, h // 2), Image.LANCZOS).save(small)
    labels = read_label_map(small)
    assert set(np.unique(labels)) <= set(np.unique(clean))
    # Each pixel blends (mostly) its 2x2 source block: its class should be one of theirs.
    blocks = clean[: h // 2 * 2, : w // 2 * 2].reshape(h // 2, 2, w // 2, 2).transpose(0, 2, 1, 3)
    blocks = blocks.reshape(h // 2, w // 2, 4)
    assert (labels[..., None] == blocks).any(-1).mean() > 0.99


def test_off_palette_colours_are_one_error_line_listing_each(tmp_path):
    rgb = colorize(np.zeros((60, 80), np.int32) + PAL.index("grass"), PAL).copy()
    rgb[5:25, 5:35] = (255, 0, 0)  # 600 px
    rgb[40:50, 40:70] = (0, 0, 0)  # 300 px
    rgb[0, 79] = (180, 180, 180)  # one stray pixel: an edge blend, not an area
    path = tmp_path / "two_unknown.png"
    Image.fromarray(rgb).save(path)
    with pytest.raises(NstjaxError) as exc:
        read_label_map(path)
    message = one_line(exc)
    assert message.startswith(f"{path}: 2 colours not in the 'landscape' palette")
    assert "#ff0000 (600 px, nearest house #c23b22" in message
    assert "#000000 (300 px, nearest dirt #2c1e16" in message
    assert "#b4b4b4" not in message


def test_many_off_palette_colours_are_capped(tmp_path):
    rgb = np.zeros((40, 100, 3), np.uint8)
    for i in range(20):
        rgb[:, i * 5 : i * 5 + 5] = (255, 10 * i, 0)
    path = tmp_path / "rainbow.png"
    Image.fromarray(rgb).save(path)
    with pytest.raises(NstjaxError) as exc:
        read_label_map(path)
    message = one_line(exc)
    assert message.count(" px, nearest ") == 8 and "and 12 more colours" in message


# --------------------------------------------------------------------------- index PNGs


def test_index_pngs_of_each_mode_read_as_ids(tmp_path):
    ids = np.random.default_rng(0).integers(0, len(PAL), (12, 16))
    grey = tmp_path / "grey.png"
    Image.fromarray(ids.astype(np.uint8)).save(grey)  # mode L
    wide = tmp_path / "wide.png"
    Image.fromarray(ids.astype(np.uint16)).save(wide)  # mode I;16
    paletted = tmp_path / "voc_style.png"  # P with its own (grey ramp) colour table
    im = Image.frombytes("P", (16, 12), ids.astype(np.uint8).tobytes())
    im.putpalette([v for i in range(256) for v in (i, i, i)])
    im.save(paletted)
    for path in (grey, wide, paletted):
        assert Image.open(path).mode in ("L", "I;16", "P")
        out = read_label_map(path)
        assert out.dtype == np.int32 and np.array_equal(out, ids), path


def test_index_png_with_out_of_range_ids_names_file_ids_and_palette_size(tmp_path):
    ids = np.zeros((10, 10), np.uint8)
    ids[0, :4] = 17
    ids[1, :2] = 255
    path = tmp_path / "coco_ids.png"
    Image.fromarray(ids).save(path)
    with pytest.raises(NstjaxError) as exc:
        read_label_map(path)
    message = one_line(exc)
    assert message.startswith(str(path))
    assert "17 classes, ids 0-16" in message and "17 (4 px)" in message and "255 (2 px)" in message


def test_forcing_the_kind(tmp_path, sketch):
    with pytest.raises(NstjaxError, match="not an index label map"):
        read_label_map(sketch, kind="index")
    with pytest.raises(ValueError, match="kind"):
        read_label_map(sketch, kind="colour")


@pytest.mark.parametrize("what", ["text", "missing", "truncated", "directory"])
def test_bad_files_are_one_line_errors(tmp_path, what):
    path = tmp_path / "sketch.png"
    if what == "text":
        path.write_text("this is not a picture\n")
    elif what == "truncated":
        Image.fromarray(colorize(np.arange(64 * 64).reshape(64, 64) % len(PAL), PAL)).save(path)
        path.write_bytes(path.read_bytes()[:300])
    elif what == "directory":
        path.mkdir()
    with pytest.raises(NstjaxError) as exc:
        read_label_map(path)
    expected = {"text": "not an image file", "missing": "file not found", "truncated": "truncated",
                "directory": "is a directory"}[what]  # fmt: skip
    assert one_line(exc).startswith(f"{path}: ") and expected in str(exc.value)


# --------------------------------------------------------------------------- writing, array helpers


@pytest.mark.parametrize("kind", ["color", "index"])
def test_save_then_read_round_trip(tmp_path, kind):
    labels = synth_landscape(3, (40, 56))[0]
    path = save_label_map(tmp_path / "map.png", labels, PAL, kind=kind)
    assert Image.open(path).mode == ("RGB" if kind == "color" else "P")
    assert np.array_equal(read_label_map(path, PAL), labels)
    assert np.array_equal(read_label_map(path, PAL, kind=kind), labels)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.png"]  # atomic: no temp file left
    with pytest.raises(NstjaxError, match="lossy"):
        save_label_map(tmp_path / "map.jpg", labels, PAL)
    with pytest.raises(ValueError, match="outside 0-16"):
        save_label_map(tmp_path / "bad.png", np.full((4, 4), 17), PAL)


def test_one_hot_sums_to_one_in_numpy_and_under_jit():
    jax = pytest.importorskip("jax")
    labels = np.random.default_rng(1).integers(0, 5, (2, 6, 7)).astype(np.int32)
    oh = one_hot(labels, 5)
    assert isinstance(oh, np.ndarray) and oh.dtype == np.float32 and oh.shape == (2, 6, 7, 5)
    assert np.array_equal(oh.sum(-1), np.ones((2, 6, 7))) and np.array_equal(oh.argmax(-1), labels)
    jitted = jax.jit(lambda x: one_hot(x, 5))(jax.numpy.asarray(labels))
    assert isinstance(jitted, jax.Array) and np.array_equal(np.asarray(jitted), oh)
    assert one_hot(np.array([[7]]), 5).sum() == 0  # out of range: all zeros


def test_resize_labels_is_nearest_neighbour():
    labels = np.random.default_rng(2).integers(0, 17, (2, 9, 13)).astype(np.int32)
    for shape in [(4, 5), (9, 13), (20, 31), (3, 40)]:
        out = resize_labels(labels, shape)
        assert out.shape == (2, *shape) and out.dtype == np.int32
        assert set(np.unique(out)) <= set(np.unique(labels))
    assert np.array_equal(resize_labels(labels, (18, 26)), labels.repeat(2, axis=1).repeat(2, axis=2))
    assert np.array_equal(resize_labels(labels, (9, 13)), labels)
    with pytest.raises(TypeError, match="integer"):
        resize_labels(labels.astype(np.float32), (4, 4))


def test_colorize_and_class_areas_agree_with_counts():
    labels = np.array([[0, 0, 8], [8, 8, 16]])
    assert colorize(labels, PAL).tolist() == [[PAL.colors[i].tolist() for i in row] for row in labels.tolist()]
    areas = class_areas(labels, PAL)
    assert areas["sky"] == pytest.approx(2 / 6) and areas["grass"] == pytest.approx(3 / 6)
    assert areas["house"] == pytest.approx(1 / 6) and areas["tree"] == 0.0
    with pytest.raises(ValueError, match="outside"):
        colorize(np.array([[17]]), PAL)


# --------------------------------------------------------------------------- synthetic pairs

SEEDS = range(8)


@pytest.fixture(scope="module")
def synth_pairs():
    return [synth_landscape(seed, 64) for seed in SEEDS]


def test_synth_is_deterministic_and_varies_with_the_seed(synth_pairs):
    labels, photo = synth_pairs[0]
    assert labels.dtype == np.int32 and labels.shape == (64, 64)
    assert photo.dtype == np.float32 and photo.shape == (64, 64, 3) and 0 <= photo.min() and photo.max() <= 1
    again = synth_landscape(0, 64)
    assert np.array_equal(again[0], labels) and np.array_equal(again[1], photo)
    assert not np.array_equal(synth_pairs[1][0], labels)
    tall = synth_landscape(5, (48, 32))
    assert tall[0].shape == (48, 32) and tall[1].shape == (48, 32, 3)
    with pytest.raises(NstjaxError, match="16-4096"):
        synth_landscape(0, 8)


def test_every_class_appears_across_a_few_seeds(synth_pairs):
    seen = set().union(*(np.unique(labels).tolist() for labels, _ in synth_pairs))
    assert {PAL.names[k] for k in seen} == set(PAL.names)


def test_classes_are_separable_by_mean_photo_colour(synth_pairs):
    expected = expected_class_colors()
    assert expected.shape == (len(PAL), 3)
    for labels, photo in synth_pairs:
        present = np.unique(labels)
        for k in present:
            mean = photo[labels == k].mean(axis=0)
            distances = np.linalg.norm(expected[present] - mean, axis=1)
            assert present[distances.argmin()] == k, PAL.names[k]
            assert np.abs(mean - expected[k]).max() < 0.04, PAL.names[k]


def test_synth_dataset_is_written_matched_by_stem(tmp_path):
    events: list[SynthProgress] = []
    out = write_synth_dataset(tmp_path / "data", 3, 32, seed=10, progress=events.append)
    assert out.stems == ("landscape_000010", "landscape_000011", "landscape_000012")
    assert [e.done for e in events] == [1, 2, 3] and events[-1].total == 3
    labels_dir, photos_dir = tmp_path / "data" / "labels", tmp_path / "data" / "photos"
    label_stems = sorted(p.stem for p in labels_dir.iterdir())
    assert label_stems == sorted(p.stem for p in photos_dir.iterdir()) == list(out.stems)
    assert "SYNTHETIC" in (tmp_path / "data" / "README.txt").read_text()
    for stem, seed in zip(out.stems, out.seeds):
        labels, photo = synth_landscape(seed, 32)
        assert np.array_equal(read_label_map(labels_dir / f"{stem}.png"), labels)
        assert np.abs(load_image(photos_dir / f"{stem}.png") - photo).max() <= 0.5 / 255 + 1e-6
    (tmp_path / "file").write_text("x")
    with pytest.raises(NstjaxError, match="not a directory"):
        write_synth_dataset(tmp_path / "file", 1, 32)
    with pytest.raises(NstjaxError, match="count"):
        write_synth_dataset(tmp_path / "data", 0, 32)


def test_docs_table_lists_every_class():
    text = (REPO / "docs" / "labels.md").read_text(encoding="utf-8")
    for k, name in enumerate(PAL.names):
        row = re.search(rf"^\| {k} \| {name} \|.*$", text, flags=re.MULTILINE)
        assert row, name
        assert PAL.hex(k) in row[0] and f"| {PAL.coco_ids[k]} |" in row[0], name
