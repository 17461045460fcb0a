"""One settings schema per system: a setting declared once reaches the CLI, the web form, the API and the config."""

import dataclasses
import io
import json
import time

import numpy as np
import pytest
import typer
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from nstjax.cli.common import options_from, with_options
from nstjax.nst.config import StylizeConfig, preset
from nstjax.nst.settings import NOT_CONFIG, STYLIZE_SETTINGS, config_from_settings, settings_of_config
from nstjax.schema import Schema, Setting, SettingsError
from nstjax.serve import create_app
from nstjax.serve.kinds import Outcome, ServeLimits, StylizeKind


@dataclasses.dataclass(frozen=True)
class GlowConfig(StylizeConfig):
    """A config with one field more, as a new feature would add it."""

    glow: float = 0.0


GLOW = Setting("glow", float, "Strength of the glow.", default=None, unit="px", minimum=0.0, maximum=10.0,
               label="Glow", group="basic", widget="range", look={"step": 0.5})  # fmt: skip
GLOW_SETTINGS = STYLIZE_SETTINGS.with_settings(GLOW)


class GlowKind(StylizeKind):
    """The stylize mode with the extended schema; ``run`` records the config instead of optimising."""

    name = "glow"
    seen: list = []

    def run(self, prepared, content, styles, context):
        self.seen.append(prepared.config)
        return Outcome(image=np.zeros((8, 8, 3), np.float32))


def test_a_setting_declared_once_reaches_cli_form_api_and_config(tmp_path):
    # Python config
    assert config_from_settings({"preset": "cpu", "glow": 2.5}, config_type=GlowConfig).glow == 2.5

    # CLI: the option, its help and its bounds come from the declaration
    app = typer.Typer()
    seen = {}

    @app.command()
    @with_options(options_from(GLOW_SETTINGS))
    def stylize(**options):
        seen["config"] = config_from_settings(options, config_type=GlowConfig)

    runner = CliRunner()
    help_text = runner.invoke(app, ["--help"], env={"COLUMNS": "200"}).output
    assert "--glow" in help_text and "Strength of the glow." in help_text
    result = runner.invoke(app, ["--preset", "cpu", "--glow", "3"])
    assert result.exit_code == 0, result.output
    assert seen["config"].glow == 3.0 and seen["config"].size == preset("cpu").size
    assert runner.invoke(app, ["--glow", "11"]).exit_code != 0  # the declared maximum

    # Web form and API, through the app
    kind = GlowKind(GLOW_SETTINGS, GlowConfig)
    with TestClient(create_app(root=tmp_path, kinds={"glow": kind})) as client:
        modes = client.get("/api/modes").json()["modes"]
        field = next(f for f in modes[0]["fields"] if f["key"] == "glow")
        assert field == {"key": "glow", "label": "Glow (px)", "help": "Strength of the glow.", "type": "float",
                         "choices": [], "widget": "range", "group": "basic", "unit": "px", "min": 0.0,
                         "max": 10.0, "step": 0.5}  # fmt: skip
        png = io.BytesIO()
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(png, format="PNG")
        images = {"content": ("c.png", png.getvalue()), "styles": ("s.png", png.getvalue())}
        response = client.post("/api/jobs", files=images, data={"mode": "glow", "settings": json.dumps({"glow": 4})})
        assert response.status_code == 201, response.text
        job_id = response.json()["id"]
        deadline = time.monotonic() + 60
        while client.get(f"/api/jobs/{job_id}").json()["status"] != "done" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert GlowKind.seen[-1].glow == 4.0
        bad = client.post("/api/jobs", files=images, data={"mode": "glow", "settings": json.dumps({"glow": -1})})
        assert bad.status_code == 422 and bad.json()["detail"] == "glow must be at least 0, got -1"


def test_every_user_setting_of_the_config_is_declared():
    # A StylizeConfig field a user can set must be in the schema (by its own name, or lr for learning_rate);
    # the rest are internal knobs of the optimiser, listed here so a new field must be placed on purpose.
    internal = {"adam_average", "lbfgs_memory", "patience", "save_every"}
    declared = {{"lr": "learning_rate"}.get(n, n) for n in STYLIZE_SETTINGS.names if n not in NOT_CONFIG}
    fields = {f.name for f in dataclasses.fields(StylizeConfig)}
    assert fields - internal == declared


def test_form_values_of_a_preset_rebuild_the_preset():
    # settings_of_config writes what config_from_settings reads: the page's presets round-trip.
    for name in ("gatys", "neural-style", "cpu", "fast"):
        values = settings_of_config(preset(name))
        values = {k: (None if v == "" else v) for k, v in values.items()}
        assert config_from_settings({**values, "preset": name}) == preset(name), name


def test_schema_checks():
    with pytest.raises(ValueError, match="declared twice"):
        STYLIZE_SETTINGS.with_settings(Setting("size", int, "Again."))
    with pytest.raises(ValueError, match="unknown widget"):
        Setting("x", int, "X.", widget="dial")
    schema = Schema("t", (Setting("n", int, "N.", minimum=1), Setting("mode", str, "M.", choices=("a", "b"))))
    assert schema.checked({"--n": 3, "mode": "b"}) == {"n": 3, "mode": "b"}
    for given, message in (
        ({"n": 0}, "n must be at least 1, got 0"),
        ({"n": 1.5}, "n must be an integer, got 1.5"),
        ({"n": True}, "n must be an integer, got True"),
        ({"mode": "c"}, "mode must be one of a, b; got 'c'"),
        ({"n": 1, "-n": 2}, "setting 'n' given twice"),
        ({"m": 1, "x": 2}, "unknown settings: m, x; known: n, mode"),
    ):
        with pytest.raises(SettingsError) as error:
            schema.checked(given)
        assert str(error.value) == message


def test_cli_only_settings_stay_off_the_web():
    web = StylizeKind().describe(ServeLimits())["fields"]
    assert {f["key"] for f in web} == set(STYLIZE_SETTINGS.web().names)
    assert not {"quality", "quiet"} & {f["key"] for f in web}
    init = next(f for f in web if f["key"] == "init")
    assert init["choices"] == ["content", "noise", "style", "grey"] and "file" not in init["help"]


def test_recreate_settings_are_fields_of_its_config():
    from nstjax.recreate.config import RecreateConfig
    from nstjax.recreate.settings import RECREATE_SETTINGS

    fields = {f.name for f in dataclasses.fields(RecreateConfig)}
    assert set(RECREATE_SETTINGS.names) - {"quiet"} <= fields
    # A request never names a file: every path setting is CLI-only, and the painter's web choices hold no run dir.
    from pathlib import Path

    assert all(not s.web for s in RECREATE_SETTINGS if s.type is Path)
    assert "cyclegan:RUN_DIR" not in RECREATE_SETTINGS["painter"].form_field()["choices"]
    with pytest.raises(ValueError, match="CLI-only"):
        Setting("folder", Path, "A folder.")


# ----------------------------------------------------------------------------- the trained systems' schemas
#
# Each trained system declares its settings once (nstjax.<system>.settings); the CLI generates its options from
# them. Every setting is a field of the system's config or TrainSettings, or an argument of its job, or named
# here as CLI-only with the reason.

TRAINED_COMMANDS = {
    # command -> the schemas whose settings its --help lists
    ("cyclegan", "train"): ("nstjax.cyclegan.settings:CYCLEGAN_TRAIN_SETTINGS",),
    ("sketch2photo", "train"): ("nstjax.sketch2photo.settings:SKETCH2PHOTO_TRAIN_SETTINGS",),
    ("fast", "train"): ("nstjax.fast.settings:FAST_TRAIN_SETTINGS",),
    ("fast", "apply"): ("nstjax.fast.settings:MEDIA_APPLY_SETTINGS",),
    ("adain", "train"): ("nstjax.adain.settings:ADAIN_TRAIN_SETTINGS",),
    ("adain", "apply"): ("nstjax.adain.settings:ADAIN_APPLY_SETTINGS",),
}

# setting -> where its value goes: "config.<dotted field>", "train.<TrainSettings field>", "arg.<parameter of the
# system's job>", or "cli: <why it is the command line's only>".
WHERE = {
    "cyclegan-train": {
        "size": "config.model.size", "generator": "config.model.generator", "ngf": "config.model.ngf",
        "ndf": "config.model.ndf", "blocks": "config.model.blocks", "upsample": "config.model.upsample",
        "lr": "config.optim.lr", "lambda_cycle": "config.loss.lambda_cycle",
        "lambda_identity": "config.loss.lambda_identity", "pool_size": "config.loss.pool_size", "dtype": "config.dtype",
    },
    "sketch2photo-train": {
        "model": "config.model", "size": "config.size", "ngf": "config.spade.ngf config.pix2pix.ngf",
        "ndf": "config.spade.ndf config.pix2pix.ndf", "palette": "config.palette", "hidden": "config.spade.hidden",
        "vae": "config.spade.use_vae", "norm": "config.spade.norm", "weights": "arg.weights",
        "lambda_vgg": "config.spade.lambda_vgg", "input_kind": "config.pix2pix.input", "dtype": "config.dtype",
        "vgg_input": "config.spade.vgg_input",
    },
    "fast-train": {
        "size": "config.size", "style_size": "config.style_size", "content_weight": "config.content_weight",
        "style_weight": "config.style_weight", "tv_weight": "config.tv_weight", "content_layer": "config.content_layer",
        "style_layers": "config.style_layers", "lr": "config.learning_rate", "output": "config.output",
        "pooling": "config.pooling", "dtype": "config.dtype", "weights": "arg.weights", "batch_size": "train.batch_size",
    },
    "adain-train": {
        "size": "config.size", "load_size": "config.load_size", "content_weight": "config.content_weight",
        "style_weight": "config.style_weight", "lr": "config.learning_rate", "lr_decay": "config.lr_decay",
        "dtype": "config.dtype", "weights": "arg.weights", "batch_size": "train.batch_size", "encoder": "config.encoder",
    },
    "media-apply": {
        "output": "arg.output", "size": "arg.size", "batch_size": "arg.batch_size", "blend": "arg.blend",
        "motion": "arg.motion", "quality": "arg.quality", "crf": "arg.video_quality", "dtype": "arg.dtype",
        "quiet": "cli: a terminal's progress bar",
    },
    "adain-apply": {
        "alpha": "arg.alpha", "style_blend": "arg.blend", "preserve_color": "arg.preserve_color",
        "style_size": "arg.style_size", "weights": "arg.weights", "output": "arg.output", "size": "arg.size",
        "batch_size": "arg.batch_size", "blend": "arg.blend_frames", "motion": "arg.motion", "quality": "arg.quality",
        "crf": "arg.video_quality", "dtype": "arg.dtype", "quiet": "cli: a terminal's progress bar",
    },
}  # fmt: skip


def _schema(spec: str):
    import importlib

    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


def _system(system: str):
    """(default config, the job function) of a schema's system."""
    if system == "cyclegan-train":
        from nstjax.cyclegan import CycleGANConfig, train

        return CycleGANConfig(), train
    if system == "sketch2photo-train":
        from nstjax.sketch2photo import Sketch2PhotoConfig, train

        return Sketch2PhotoConfig(), train
    if system == "fast-train":
        from nstjax.fast import FastConfig, train_fast

        return FastConfig(), train_fast
    if system == "adain-train":
        from nstjax.adain import AdaINConfig, train_adain

        return AdaINConfig(), train_adain
    if system == "media-apply":
        from nstjax.fast import apply_fast

        return None, apply_fast
    from nstjax.adain import apply_adain

    return None, apply_adain


@pytest.mark.parametrize("spec", sorted({s for specs in TRAINED_COMMANDS.values() for s in specs}))
def test_every_trained_system_setting_has_a_home(spec):
    import functools
    import inspect

    from nstjax.train.settings import TrainSettings

    schema = _schema(spec)
    where = WHERE[schema.system]
    assert set(schema.names) == set(where), f"{schema.system}: place every setting in WHERE"
    config, job = _system(schema.system)
    parameters = inspect.signature(job).parameters
    train_fields = {f.name for f in dataclasses.fields(TrainSettings)}
    for setting in schema:
        if where[setting.name].startswith("cli:"):
            assert not setting.web, f"{setting.name} is CLI-only"
            continue
        for target in where[setting.name].split():
            kind, _, path = target.partition(".")
            if kind == "train":
                assert path in train_fields, setting.name
            elif kind == "config":
                value = functools.reduce(getattr, path.split("."), config)
                if setting.default is not None:  # None: not given, the config's own default stays
                    assert setting.default == value, f"{schema.system}: {setting.name} default"
            else:
                assert kind == "arg" and path in parameters, f"{setting.name}: {job.__name__} has no {path}"
                default = parameters[path].default
                if setting.default is not None and default is not inspect.Parameter.empty:
                    assert setting.default == default, f"{schema.system}: {setting.name} default"


def test_train_settings_are_the_fields_of_train_settings():
    from nstjax.cli.common import TRAIN_OPTIONS
    from nstjax.train.settings import TRAIN_SETTINGS, TrainSettings, train_settings_from

    fields = {f.name: f.default for f in dataclasses.fields(TrainSettings)}
    assert set(fields) - set(TRAIN_SETTINGS.names) == {"decay_fraction"}  # a system's choice, not a user's
    assert all(fields[s.name] == s.default for s in TRAIN_SETTINGS)
    # Job control stays on the command line, in --help's order of old.
    assert list(TRAIN_OPTIONS) == ["run", "steps", "epochs", "batch_size", "seed", "resume", "log_every",
                                   "sample_every", "checkpoint_every", "keep", "quiet", "distributed"]  # fmt: skip
    # The system's default length only when neither steps nor epochs is given.
    assert train_settings_from({}, epochs=200) == TrainSettings(epochs=200)
    assert train_settings_from({"steps": 5, "batch_size": 2}, epochs=200) == TrainSettings(steps=5, batch_size=2)
    assert train_settings_from({"epochs": 3}, steps=9, decay_fraction=0.0) == TrainSettings(epochs=3, decay_fraction=0.0)


def test_trained_system_choices_are_the_systems_own():
    from typing import get_args

    from nstjax import adain, cyclegan, sketch2photo
    from nstjax.adain.settings import ADAIN_APPLY_SETTINGS, ADAIN_TRAIN_SETTINGS
    from nstjax.cyclegan.settings import CYCLEGAN_TRAIN_SETTINGS
    from nstjax.fast import config as fast_config
    from nstjax.fast.settings import FAST_TRAIN_SETTINGS, MEDIA_APPLY_SETTINGS
    from nstjax.models.johnson import OUTPUTS
    from nstjax.models.layers import UpsampleName
    from nstjax.models.vgg import POOLINGS
    from nstjax.sketch2photo.settings import SKETCH2PHOTO_TRAIN_SETTINGS

    c, s, f = CYCLEGAN_TRAIN_SETTINGS, SKETCH2PHOTO_TRAIN_SETTINGS, FAST_TRAIN_SETTINGS
    assert c["generator"].choices == get_args(cyclegan.GeneratorName)
    assert c["upsample"].choices == get_args(UpsampleName)
    assert c["dtype"].choices == tuple(cyclegan.DTYPES)
    assert s["model"].choices == get_args(sketch2photo.ModelName)
    assert s["norm"].choices == get_args(sketch2photo.NormName)
    assert s["input_kind"].choices == get_args(sketch2photo.InputName)
    assert s["dtype"].choices == tuple(sketch2photo.DTYPES)
    assert f["output"].choices == OUTPUTS and f["pooling"].choices == POOLINGS
    assert f["dtype"].choices == MEDIA_APPLY_SETTINGS["dtype"].choices == fast_config.DTYPES
    assert ADAIN_TRAIN_SETTINGS["dtype"].choices == ADAIN_APPLY_SETTINGS["dtype"].choices == adain.config.DTYPES


@pytest.mark.parametrize("command", sorted(TRAINED_COMMANDS), ids=" ".join)
def test_cli_help_lists_every_schema_setting(command):
    import re

    from nstjax.cli import app
    from nstjax.train.settings import TRAIN_SETTINGS

    help_text = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"}).output
    schemas = [_schema(spec) for spec in TRAINED_COMMANDS[command]]
    if command[1] == "train":
        schemas.append(TRAIN_SETTINGS)
    for schema in schemas:
        for setting in schema:
            for flag in setting.cli_flags:
                assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", help_text), f"{command}: {flag}"
    if command in (("fast", "train"), ("adain", "train")):  # the system's batch size replaces the shared default
        batch = schemas[0]["batch_size"].default
        assert re.search(rf"--batch-size .*\[default: {batch}\]", help_text), help_text


def test_a_required_setting_is_a_required_option():
    from pathlib import Path

    from nstjax.cli.common import options_from

    schema = Schema("t", (Setting("out", Path, "Output.", flags=("--out", "-o"), web=False, required=True),))
    assert options_from(schema)["out"][1] is ...
    app = typer.Typer()

    @app.command()
    @with_options(options_from(schema))
    def run(**options):
        typer.echo(f"out={options['out']}")

    assert CliRunner().invoke(app, ["-o", "x.png"]).output.strip() == "out=x.png"
    assert CliRunner().invoke(app, []).exit_code == 2
    with pytest.raises(ValueError, match="required"):
        Setting("out", Path, "Output.", default=Path("x"), web=False, required=True)
    with pytest.raises(ValueError, match="required"):
        Setting("name", str, "A name.", required=True)


def test_the_settings_schemas_import_no_jax():
    # The CLI reads the schemas at start-up: they (not their packages' __init__, which load the systems) must
    # not load JAX. The packages are stubbed as empty ones so that only the schema modules' own imports count.
    import subprocess
    import sys

    code = """
import sys, types
from pathlib import Path
import nstjax
root = Path(nstjax.__file__).parent
for pkg in ("train", "cyclegan", "sketch2photo", "fast", "adain"):
    stub = types.ModuleType(f"nstjax.{pkg}"); stub.__path__ = [str(root / pkg)]; sys.modules[stub.__name__] = stub
import nstjax.train.settings, nstjax.cyclegan.settings, nstjax.sketch2photo.settings
import nstjax.fast.settings, nstjax.adain.settings
print(sorted(m for m in sys.modules if m == "jax" or m.startswith(("jax.", "flax"))))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
