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
