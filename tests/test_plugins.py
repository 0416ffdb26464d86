"""The plugin machinery: hooks, entry-point loading, ATTRIB_LOAD_PLUGINS, `attrib plugins`, and
plugins that fail (at import, in a hook) without taking attrib down.

Every hookspec must be documented (a docstring and a section in docs/plugins.md) and exercised
here by a test named ``test_hook_<hook name>``."""

import inspect
import json
import sys
import textwrap
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner

from attrib import hookimpl, hookspecs
from attrib.cli import build_cli
from attrib.detectors import Detector, collect_detectors
from attrib.encoders import Encoder, get_encoder, list_encoders
from attrib.plugins import DEFAULT_PLUGINS, get_plugin_manager, list_plugins, make_plugin_manager

from .conftest import synthetic, write_png

ROOT = Path(__file__).resolve().parent.parent
HOOKS = sorted(name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(fn, "attrib_spec"))


def invoke(cli, *args, input=None):
    return CliRunner().invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)


# ----------------------------------------------------------------------- an in-process plugin


class MeanEncoder(Encoder):
    name = "mean-colour"
    dim = 3

    def _embed_batch(self, images):
        return np.stack([img.reshape(-1, 3).mean(axis=0) + 1.0 for img in images])


class Brightness(Detector):
    name = "brightness"
    description = "test: bright images are 'synthetic'"

    def detect(self, image):
        mean = float(image.pixels.mean()) / 255
        return self.evidence("synthetic" if mean > 0.5 else "real", mean, "lamp-gen" if mean > 0.5 else None, mean=mean)


class ExamplePlugin:
    @hookimpl
    def register_encoders(self, register):
        register("mean-colour", MeanEncoder, "test: mean colour")

    @hookimpl
    def register_detectors(self, register):
        register(Brightness())

    @hookimpl
    def register_commands(self, cli):
        @cli.command(name="hello-plugin")
        @click.argument("who", default="world")
        def hello(who):
            """A command added by a plugin."""
            click.echo(f"hello {who}")


def manager_with(*plugins):
    pm = make_plugin_manager()
    for i, plugin in enumerate(plugins):
        pm.register(plugin, name=f"test-plugin-{i}")
    return pm


# ------------------------------------------------------------------------- every hook, tested


def test_every_hook_is_documented_and_has_a_test():
    docs = (ROOT / "docs" / "plugins.md").read_text()
    tests = {name for name, _ in inspect.getmembers(sys.modules[__name__], inspect.isfunction)}
    assert HOOKS == ["register_commands", "register_detectors", "register_encoders", "register_verdict_rules"]
    for hook in HOOKS:
        fn = getattr(hookspecs, hook)
        assert (fn.__doc__ or "").strip(), f"{hook} has no docstring"
        assert f"`{hook}(" in docs, f"{hook} is not documented in docs/plugins.md"
        assert f"test_hook_{hook}" in tests, f"{hook} has no test_hook_{hook}"


def test_hook_register_encoders(tmp_path, source_dirs):
    pm = manager_with(ExamplePlugin())
    info = list_encoders(pm)["mean-colour"]
    assert (info["factory"], info["description"], info["plugin"]) == (MeanEncoder, "test: mean colour", "test-plugin-0")
    enc = get_encoder("mean-colour", pm)
    assert type(enc) is MeanEncoder and enc.spec == "mean-colour"
    img = synthetic(0, 0, 32)
    expected = img.reshape(-1, 3).mean(axis=0) + 1.0
    np.testing.assert_allclose(enc.embed([img])[0], expected / np.linalg.norm(expected), rtol=1e-6)
    cli = build_cli(pm)
    r = invoke(cli, "encoders", "list", "--json")
    assert {"name": "mean-colour", "description": "test: mean colour", "plugin": "test-plugin-0", "default": False} in json.loads(r.output)
    files = sorted(source_dirs["src0"].iterdir())[:3]
    r = invoke(cli, "-g", tmp_path / "g", "enroll", "--encoder", "mean-colour", "--generator", "a", *files)
    assert r.exit_code == 0, r.output


def test_hook_register_detectors(tmp_path):
    cli = build_cli(manager_with(ExamplePlugin()))
    bright = write_png(tmp_path / "bright.png", np.full((64, 64, 3), 230, np.uint8))
    r = invoke(cli, "detect", "--json", "-d", "brightness", bright)
    [ev] = json.loads(r.output)["detectors"]
    assert ev["verdict"] == "synthetic" and ev["source_hint"] == "lamp-gen" and ev["details"]["mean"] == pytest.approx(230 / 255)
    r = invoke(cli, "detectors", "list", "--json")
    assert {"name": "brightness", "description": "test: bright images are 'synthetic'", "plugin": "test-plugin-0"} in json.loads(r.output)


class LampRule:
    """A third party's verdict rule over its own detector's evidence, between the built-ins."""

    name = "lamp"
    priority = 250  # after the watermark, before metadata and the fingerprint

    def evaluate(self, facts):
        from attrib.verdict import Finding

        ev = facts.evidence_of("brightness")
        if ev is None or ev["verdict"] != "synthetic":
            return None
        return Finding("ai-generated", ev["source_hint"], sure=True, detector="brightness", value={"mean": ev["score"]}, reason="bright")


class RulePlugin:
    @hookimpl
    def register_verdict_rules(self, register):
        register(LampRule())


def test_hook_register_verdict_rules(tmp_path, source_dirs):
    pm = manager_with(ExamplePlugin(), RulePlugin())
    cli = build_cli(pm)
    g = tmp_path / "g"
    assert invoke(cli, "-g", g, "enroll", "--generator", "a", *sorted(source_dirs["src0"].iterdir())[:3]).exit_code == 0
    bright = write_png(tmp_path / "bright.png", np.full((64, 64, 3), 230, np.uint8))
    r = invoke(cli, "-g", g, "identify", "--json", "-d", "brightness", bright)
    verdict = json.loads(r.output)["verdict"]
    assert (verdict["label"], verdict["source"]) == ("ai-generated", "lamp-gen")
    assert verdict["basis"][0]["rule"] == "lamp" and verdict["basis"][0]["decisive"] and verdict["errors"] == []
    rows = _rows(cli)
    assert rows["test-plugin-1"]["registers"] == {"verdict_rules": ["lamp"]}


def test_hook_register_commands():
    cli = build_cli(manager_with(ExamplePlugin()))
    assert invoke(cli, "hello-plugin", "tests").output == "hello tests\n"
    assert "hello-plugin" not in build_cli().commands  # a fresh manager per CLI: nothing leaks


# ------------------------------------------------------------------- what plugins can get wrong


class BrokenHooks:
    @hookimpl
    def register_commands(self, cli):
        raise RuntimeError("no commands today")

    @hookimpl
    def register_detectors(self, register):
        raise ValueError("detectors exploded")

    @hookimpl
    def register_encoders(self, register):
        raise KeyError("encoders")


class BadRegistrations:
    @hookimpl
    def register_detectors(self, register):
        register(object())  # not a detector
        register(Brightness())
        register(Brightness())  # the same name twice


def test_hooks_that_raise_are_reported_not_fatal(tmp_path, capsys):
    pm = manager_with(BrokenHooks())
    cli = build_cli(pm)
    assert "warning: plugin test-plugin-0: register_commands failed: RuntimeError: no commands today" in capsys.readouterr().err
    assert "residual" in list_encoders(pm)  # the built-in encoders are still there
    img = write_png(tmp_path / "a.png", synthetic(0, 0, 64))
    r = invoke(cli, "detect", "--json", img)
    assert r.exit_code == 0
    evidence = {e["detector"]: e for e in json.loads(r.output)["detectors"]}
    assert evidence["test-plugin-0"]["error"] == "register_detectors failed: ValueError: detectors exploded"
    assert evidence["spectral"]["error"] is None
    [row] = [p for p in list_plugins(pm) if p["name"] == "test-plugin-0"]
    assert "register_detectors: ValueError: detectors exploded" in row["error"]
    assert "register_encoders: KeyError" in row["error"]


def test_bad_detector_registrations_are_reported():
    registry, failures = collect_detectors(manager_with(BadRegistrations()))
    assert list(registry) == ["spectral", "npr", "brightness"]
    assert [(f["name"], f["hook"]) for f in failures] == [("test-plugin-0", "register_detectors")] * 2
    assert "has no name: a detector needs a non-empty string `name`" in failures[0]["error"]
    assert failures[1]["error"] == "detector name 'brightness' is already registered by test-plugin-0"


class BadEncoderRegistrations:
    @hookimpl
    def register_encoders(self, register):
        register("", MeanEncoder)
        register("not-callable", "MeanEncoder")
        register("mean-colour", MeanEncoder, "test: mean colour")


def test_bad_encoder_registrations_are_reported():
    pm = manager_with(BadEncoderRegistrations())
    registry = list_encoders(pm)
    assert "mean-colour" in registry and "" not in registry and "not-callable" not in registry
    [row] = [r for r in list_plugins(pm) if r["name"] == "test-plugin-0"]
    assert row["error"] == (
        "register_encoders: encoder name '': an encoder needs a non-empty string name; "
        "register_encoders: encoder 'not-callable': the factory 'MeanEncoder' is not callable"
    )


# ------------------------------------------------------------------- name clashes: one rule


class OtherMean(MeanEncoder):
    name = "other-mean"


class ClashingPlugin:
    """Takes a built-in encoder name, a built-in detector name, and a name of test-plugin-0."""

    @hookimpl
    def register_encoders(self, register):
        register("residual", OtherMean, "a plugin's residual")
        register("mean-colour", OtherMean, "a second mean-colour")

    @hookimpl
    def register_detectors(self, register):
        class FakeSpectral(Brightness):
            name = "spectral"

        register(FakeSpectral())
        register(Brightness())


def test_name_clashes_first_registration_wins_for_encoders_and_detectors(tmp_path):
    pm = manager_with(ExamplePlugin(), ClashingPlugin())
    cli = build_cli(pm)
    encoders = list_encoders(pm)
    assert (encoders["residual"]["plugin"], encoders["mean-colour"]["plugin"]) == ("attrib.default_plugins.encoders", "test-plugin-0")
    assert type(get_encoder("mean-colour", pm)) is MeanEncoder
    assert type(get_encoder("residual", pm)).__name__ == "ResidualSpectrumEncoder"
    detectors, _ = collect_detectors(pm)
    assert (detectors["spectral"]["plugin"], detectors["brightness"]["plugin"]) == ("attrib.default_plugins.detectors", "test-plugin-0")
    expected = [
        "register_detectors: detector name 'spectral' is already registered by attrib.default_plugins.detectors",
        "register_detectors: detector name 'brightness' is already registered by test-plugin-0",
        "register_encoders: encoder name 'residual' is already registered by attrib.default_plugins.encoders",
        "register_encoders: encoder name 'mean-colour' is already registered by test-plugin-0",
    ]
    assert sorted(_rows(cli)["test-plugin-1"]["error"].split("; ")) == sorted(expected)
    assert _rows(cli)["test-plugin-0"]["error"] is None
    # the clash also shows where the names are used
    r = CliRunner().invoke(cli, ["encoders", "list", "--json"])
    owners = {row["name"]: row["plugin"] for row in json.loads(r.stdout)}
    assert (owners["residual"], owners["mean-colour"]) == ("attrib.default_plugins.encoders", "test-plugin-0")
    assert "warning: plugin test-plugin-1: register_encoders failed: encoder name 'residual' is already registered" in r.stderr
    img = write_png(tmp_path / "a.png", synthetic(0, 0, 64))
    evidence = json.loads(invoke(cli, "detect", "--json", img).output)["detectors"]
    assert [e["detector"] for e in evidence] == ["test-plugin-1", "test-plugin-1", "spectral", "npr", "brightness"]
    clash = "detector name 'spectral' is already registered by attrib.default_plugins.detectors"
    assert evidence[0]["error"] == f"register_detectors failed: {clash}"
    assert "periodic" in evidence[2]["details"]["summary"]  # the built-in spectral ran, not the fake


def test_attrib_plugins_lists_hook_errors_without_an_earlier_call():
    """`attrib plugins` calls the registration hooks itself, so their errors show on a fresh manager."""
    rows = _rows(build_cli(manager_with(BrokenHooks())))
    assert rows["test-plugin-0"]["error"] == (
        "register_commands: RuntimeError: no commands today; register_encoders: KeyError: 'encoders'; "
        "register_detectors: ValueError: detectors exploded"
    )


# ------------------------------------------------------------------ entry points, env var


def _write_dist(site: Path, dist: str, module: str, body: str, version: str = "0.3", entry: str = "main"):
    (site / f"{module}.py").write_text(textwrap.dedent(body))
    info = site / f"{module}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[attrib]\n{entry} = {module}\n")


GOOD_PLUGIN = """
    import click
    from attrib import hookimpl

    @hookimpl
    def register_commands(cli):
        @cli.command(name="fake-hello")
        def hello():
            click.echo("hello from an installed plugin")
"""


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """Two plugin distributions on sys.path: attrib-fake (works), attrib-broken (import fails)."""
    site = tmp_path / "site"
    site.mkdir()
    _write_dist(site, "attrib-fake", "attrib_fake_test_plugin", GOOD_PLUGIN, entry="fake")
    _write_dist(site, "attrib-broken", "attrib_broken_test_plugin", "raise ImportError('needs libfoo')\n", "1.0", entry="broken")
    monkeypatch.syspath_prepend(str(site))
    for mod in ("attrib_fake_test_plugin", "attrib_broken_test_plugin"):
        monkeypatch.delitem(sys.modules, mod, raising=False)
    return site


def _rows(cli, *extra):
    r = invoke(cli, "plugins", "--json", *extra)
    assert r.exit_code == 0, r.output
    return {row["name"]: row for row in json.loads(r.output)}


def test_entry_points_load_and_are_listed(installed, monkeypatch):
    monkeypatch.delenv("ATTRIB_LOAD_PLUGINS")
    cli = build_cli()
    rows = _rows(cli)
    assert rows["fake"] == {
        "name": "fake",
        "distribution": "attrib-fake",
        "version": "0.3",
        "builtin": False,
        "hooks": ["register_commands"],
        "registers": {"commands": ["fake-hello"]},
        "error": None,
    }
    assert rows["broken"]["distribution"] == "attrib-broken" and rows["broken"]["version"] == "1.0"
    assert rows["broken"]["error"] == "load: ImportError: needs libfoo"
    assert not any(r["builtin"] for r in rows.values())
    assert invoke(cli, "fake-hello").output == "hello from an installed plugin\n"
    text = invoke(cli, "plugins").output
    assert "fake  [attrib-fake 0.3]" in text and "commands: fake-hello" in text and "error: load: ImportError" in text


@pytest.mark.parametrize(
    "value, loaded",
    [("", set()), ("attrib-fake", {"fake"}), ("ATTRIB_FAKE", {"fake"}), ("fake", {"fake"}), ("attrib-broken, attrib-fake", {"fake"})],
)
def test_attrib_load_plugins_chooses(installed, monkeypatch, value, loaded):
    monkeypatch.setenv("ATTRIB_LOAD_PLUGINS", value)
    cli = build_cli()
    rows = _rows(cli)
    assert {n for n, r in rows.items() if r["error"] is None} == loaded, rows
    assert ("fake-hello" in cli.commands) == ("fake" in loaded)


def test_attrib_load_plugins_names_a_missing_plugin(installed, monkeypatch):
    monkeypatch.setenv("ATTRIB_LOAD_PLUGINS", "attrib-nothing")
    rows = _rows(build_cli())
    assert rows == {
        "attrib-nothing": {
            "name": "attrib-nothing",
            "distribution": None,
            "version": None,
            "builtin": False,
            "hooks": [],
            "registers": {},
            "error": "load: not installed (named in ATTRIB_LOAD_PLUGINS)",
        }
    }


def test_plugins_all_lists_builtins(monkeypatch):
    rows = _rows(build_cli(), "--all")
    assert set(DEFAULT_PLUGINS) <= set(rows)
    assert rows["attrib.default_plugins.detectors"]["registers"] == {"detectors": ["spectral", "npr"]}
    assert rows["attrib.default_plugins.encoders"]["hooks"] == ["register_encoders"]
    assert rows["attrib.default_plugins.verdict"]["registers"] == {
        "verdict_rules": ["c2pa", "watermark", "metadata", "fingerprint", "detectors"]
    }
    shipped = sorted(p.name for p in (ROOT / "attrib" / "data" / "encoders").iterdir() if (p / "config.json").is_file())
    # each shipped folder, and fp-wccn2's tiled reading right after it
    expected = ["residual"] + [n for name in shipped for n in ([name, "fp-wccn2-tiles"] if name == "fp-wccn2" else [name])]
    assert rows["attrib.default_plugins.encoders"]["registers"] == {"encoders": expected}
    assert all(r["error"] is None for r in rows.values())
    assert rows["attrib.default_plugins.detectors"]["distribution"] == "attrib"
    assert invoke(build_cli(), "plugins").output.startswith("No plugins installed")


def test_fresh_manager_per_cli_and_no_import_time_state(installed, monkeypatch):
    monkeypatch.setenv("ATTRIB_LOAD_PLUGINS", "")
    without = build_cli()
    monkeypatch.setenv("ATTRIB_LOAD_PLUGINS", "attrib-fake")
    with_fake = build_cli()
    assert "fake-hello" in with_fake.commands and "fake-hello" not in without.commands
    assert make_plugin_manager() is not make_plugin_manager()
    assert get_plugin_manager() is get_plugin_manager()  # the library's shared one
    bare = make_plugin_manager(load_entry_points=False)
    assert {name for name, _ in bare.list_name_plugin()} == set(DEFAULT_PLUGINS)


# --------------------------------------------------------------- the encoder registry, cached


def test_encoder_registry_is_built_once_per_manager(monkeypatch):
    """get_encoder does not call the hooks (and re-read every shipped config.json) each time: the
    registry is kept per plugin manager, rebuilt for a fresh one or when its plugins change."""
    from attrib.default_plugins import encoders as builtin

    shipped = len(builtin._shipped())
    assert shipped >= 3  # the count below can only be right if configs are really read
    reads = []
    describe = builtin._describe
    monkeypatch.setattr(builtin, "_describe", lambda folder: reads.append(folder.name) or describe(folder))
    pm = make_plugin_manager()
    get_encoder("residual", pm)
    get_encoder("residual", pm)
    list_encoders(pm)
    assert len(reads) == shipped
    get_encoder("residual", make_plugin_manager())  # a fresh manager: a fresh registry
    assert len(reads) == 2 * shipped
    pm.register(ExamplePlugin(), name="late")  # plugins changed: rebuilt, with the new encoder
    assert list_encoders(pm)["mean-colour"]["plugin"] == "late"
    assert len(reads) == 3 * shipped
    pm.unregister(name="late")
    assert "mean-colour" not in list_encoders(pm)


def test_encoder_spec_is_declared_and_set_by_get_encoder(tmp_path, source_dirs):
    """``Encoder.spec`` is what get_encoder takes to make the encoder again; galleries store it."""
    assert Encoder.spec is None and MeanEncoder().spec is None  # built directly: the gallery uses `name`

    class Renamed:
        @hookimpl
        def register_encoders(self, register):
            register("mean-renamed", MeanEncoder, "registered under another name than its `name`")

    pm = manager_with(Renamed())
    enc = get_encoder("mean-renamed", pm)
    assert (enc.name, enc.spec) == ("mean-colour", "mean-renamed")
    assert get_encoder("residual", pm).spec == "residual"
    cli = build_cli(pm)
    files = sorted(source_dirs["src0"].iterdir())[:3]
    r = invoke(cli, "-g", tmp_path / "g", "enroll", "--encoder", "mean-renamed", "--generator", "a", *files)
    assert r.exit_code == 0, r.output
    from attrib import Gallery

    reopened = Gallery(tmp_path / "g", pm=pm)
    assert reopened.setting("encoder_spec") == "mean-renamed" and reopened.encoder.spec == "mean-renamed"
