"""The generator registry: entry points of an outside package, luigi.cfg sections, method strings, and what
each kind of generator builds into (modelled on nerfstudio's tests/plugins/test_registry.py)."""

from __future__ import annotations

import importlib
import sys

import numpy as np
import pytest

from generators.denoiser_generator import DenoiserViewGenerator, SamplingConfig
from generators.generate import build_generator, generate_views, prepare_generator
from generators.registry import find_generators, parse_method
from scenes.cameras import Cameras, Intrinsics, look_at
from scenes.errors import InvalidInputError
from scenes.scene import MultiViewScene
from tests.generators.plugin_package import DISTRIBUTION, MODULE, VERSION, write_plugin_package

SIZE = 8
SAMPLING = SamplingConfig(steps=4, guidance_weight=0.0)


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """The outside package on sys.path, imported fresh."""
    monkeypatch.syspath_prepend(str(write_plugin_package(tmp_path / "site")))
    yield
    sys.modules.pop(MODULE, None)
    importlib.invalidate_caches()


def truth(count: int = 5) -> MultiViewScene:
    angles = np.linspace(0, 2 * np.pi, count, endpoint=False)
    c2w = np.stack([look_at(np.array([2 * np.cos(a), 2 * np.sin(a), 0.8])) for a in angles])
    images = np.random.default_rng(0).random((count, SIZE, SIZE, 3), dtype=np.float32)
    return MultiViewScene(images, Cameras(c2w, Intrinsics(9.0, 9.0, 4.0, 4.0, SIZE, SIZE)))


def test_entry_points_of_an_installed_package_are_found(plugin):
    generators = find_generators()
    assert {"copycat", "flat", "broken"} <= set(generators)
    assert {"ground_truth", "noise", "perturbed", "shuffled_cameras", "xunet"} <= set(generators)
    assert generators["copycat"].origin == f"entry point of {DISTRIBUTION} {VERSION}"
    assert generators["copycat"].factory == f"{MODULE}:make_denoiser"


def test_without_the_package_its_generators_are_unknown():
    assert "copycat" not in find_generators()


def test_unknown_generator_lists_built_ins_entry_points_and_configured_names(plugin):
    generators = find_generators({"generator.mine": {"folder": "/nowhere"}})
    with pytest.raises(InvalidInputError, match="unknown generator 'bogus'") as error:
        parse_method("bogus/stochastic", generators)
    for name in ("ground_truth", "perturbed", "shuffled_cameras", "xunet/<sampler>", "copycat[/<sampler>]", "mine"):
        assert name in str(error.value)


def test_method_strings(plugin):
    generators = find_generators()
    method = parse_method("xunet/markovian@2.5", generators)
    assert (method.generator.name, method.sampler, method.guidance_weight) == ("xunet", "markovian", 2.5)
    assert parse_method("xunet/naive", generators).guidance_weight is None
    assert parse_method("flat", generators).sampler is None
    assert parse_method("copycat/stochastic@0", generators).guidance_weight == 0.0
    bad = {"ground_truth@3": "takes no sampler and no guidance weight", "perturbed/naive": "takes no sampler",
           "xunet": "unknown sampler ''", "xunet/ddpm": "xunet/stochastic, xunet/naive, xunet/markovian",
           "xunet/naive@strong": "'strong' is not a number"}
    for text, message in bad.items():
        with pytest.raises(InvalidInputError, match=message):
            parse_method(text, generators)


def test_luigi_cfg_sections(plugin, tmp_path):
    sections = {"generator.mine": {"factory": f"{MODULE}:make_flat", "options": '{"colour": 0.75}'},
                "generator.views": {"folder": str(tmp_path)},
                "generator.flat": {"options": '{"colour": 0.5}'},
                "GenerateViews": {"seed": "0"}}
    generators = find_generators(sections)
    assert generators["mine"].kind == "factory" and generators["mine"].options == {"colour": 0.75}
    assert generators["mine"].origin == "luigi.cfg [generator.mine]"
    assert generators["views"].kind == "folder" and generators["views"].folder == str(tmp_path.resolve())
    assert generators["flat"].options == {"colour": 0.5} and DISTRIBUTION in generators["flat"].origin
    bad = {"generator.noise": ({"folder": "/x"}, "built-in"),
           "generator.a": ({"factory": "m:f", "options": "{oops"}, "not JSON"),
           "generator.b": ({"factory": "m:f", "folder": "/x"}, "both factory and folder"),
           "generator.c": ({"path": "/x"}, r"unknown options \['path'\]"),
           "generator.d": ({"options": "{}"}, "no entry point is named 'd'")}
    for section, (values, message) in bad.items():
        with pytest.raises(InvalidInputError, match=message) as error:
            find_generators({section: values})
        assert f"[{section}]" in str(error.value)


def test_a_plugin_denoiser_runs_with_nvsc_samplers_and_the_rows_guidance_weight(plugin):
    scene = truth()
    generators = find_generators({"generator.copycat": {"options": f'{{"image_size": {SIZE}}}'}})
    for text, weight in (("copycat/stochastic", 0.0), ("copycat/naive@1.5", 1.5)):
        method = parse_method(text, generators)
        generator = prepare_generator(method, scene, 0, "scene", SAMPLING)
        assert isinstance(generator, DenoiserViewGenerator) and generator.sampling.guidance_weight == weight
        views = generate_views(method, scene, 0, generator, seed=0)
        # The denoiser predicts the conditioning image; with guidance w it is (1 + w) * image in [-1, 1], clipped.
        expected = np.clip(((1 + weight) * (scene.images[0] * 2 - 1) + 1) / 2, 0, 1)
        np.testing.assert_allclose(views.images[1:], np.broadcast_to(expected, views.images[1:].shape), atol=1e-4)
        np.testing.assert_array_equal(views.images[0], scene.images[0])


def test_a_plugin_view_generator_is_used_as_it_is(plugin):
    scene = truth()
    sections = {"generator.flat": {"options": '{"colour": 0.5}'}}
    method = parse_method("flat", find_generators(sections))
    views = generate_views(method, scene, 2, prepare_generator(method, scene, 2, "scene", SAMPLING))
    assert np.all(views.images[[0, 1, 3, 4]] == 0.5)
    np.testing.assert_array_equal(views.images[2], scene.images[2])


def test_plugin_misuse_is_named(plugin):
    generators = find_generators({"generator.typo": {"factory": f"{MODULE}:make_flaat"},
                                  "generator.absent": {"factory": "no_such_module:make"},
                                  "generator.badopt": {"factory": f"{MODULE}:make_flat", "options": '{"size": 3}'}})
    bad = {"flat/naive": "makes its views itself", "flat@2": "takes no sampler and no guidance weight",
           "copycat": "is a denoiser and needs a sampler", "broken": "returned a int, neither",
           "typo": "has no make_flaat", "absent": "cannot import no_such_module",
           "badopt": r"does not accept the options \['size'\]"}
    for text, message in bad.items():
        with pytest.raises(InvalidInputError, match=message):
            build_generator(parse_method(text, generators), "scene", SAMPLING)
