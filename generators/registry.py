"""Generators by name: the built-ins, plug-ins found through the entry-point group `nvsc.generators`, and
generators defined in luigi.cfg.

A method (a row of the report) is written `<generator>[/<sampler>][@<w>]`:
  - controls take neither sampler nor weight: `ground_truth`, `noise`, `perturbed`, `shuffled_cameras`;
  - denoisers need a sampler of `generators.samplers` (`xunet/stochastic`, `my_model/markovian`); the joint
    multi-view generator takes its own (`mvdiffusion/joint`, `generators.samplers.joint`);
  - `@<w>` sets the classifier-free guidance weight of that row (`xunet/stochastic@3`), for guidance sweeps;
    without it the pipeline's default (`[GenerateViews] guidance_weight`) applies. Only denoisers take it.

Plug-ins register a factory in their package metadata, as nerfstudio's `nerfstudio.method_configs` group does::

    [project.entry-points."nvsc.generators"]
    my_model = "my_package.nvsc_plugin:make_generator"

The factory is called with the keyword options of the generator's luigi.cfg section (if any), plus `device` if it
takes that keyword, and returns a `ViewGenerator` (used as it is; method `my_model`) or a `Denoiser` (sampled by
nvsc's samplers; method `my_model/stochastic`); see `generators/denoiser.py`.

luigi.cfg defines generators without packaging (the pipeline reads the sections and passes them here)::

    [generator.my_model]
    factory = my_package.nvsc_plugin:make_generator   # an importable `module:attribute`, as an entry point names
    options = {"checkpoint": "/models/my_model"}      # JSON object of keyword arguments for the factory

    [generator.my_views]
    folder = /data/my_views                           # pre-generated views, one sub-folder per scene
                                                      # (generators/folder_generator.py)

A section with only `options` configures the entry point of the same name. Built-in names cannot be redefined.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from generators.controls import CONTROLS
from generators.samplers import SAMPLERS
from scenes.errors import InvalidInputError

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "nvsc.generators"
CONFIG_PREFIX = "generator."
TRAINED = ("xunet", "concat_unet", "mvdiffusion")
#: Built-in trained generators that denoise all views together (MVDiffusion's multi-branch UNet), and the samplers
#: they take instead of the pair samplers of `generators.samplers`.
JOINT_SAMPLERS = {"mvdiffusion": ("joint",)}
FORBIDDEN_CHARACTERS = "/@ "


@dataclass(frozen=True)
class GeneratorEntry:
    """Where a generator comes from and how to build it."""

    name: str
    """The name methods use (`xunet`, `my_model`)."""
    kind: str
    """`control` (no model), `trained` (nvsc's X-UNet, trained by the pipeline), `factory` (a callable that returns
    a ViewGenerator or a Denoiser) or `folder` (pre-generated views)."""
    origin: str
    """Where it was found, for messages: `built-in`, `entry point of <distribution> <version>` or
    `luigi.cfg [generator.<name>]`."""
    factory: str = ""
    """`module:attribute` of the factory (kind `factory`)."""
    options: dict = field(default_factory=dict)
    """Keyword arguments for the factory (kind `factory`)."""
    folder: str = ""
    """Root of the pre-generated views (kind `folder`)."""

    @property
    def takes_sampler(self) -> bool | None:
        """True for denoisers, False for controls and folders, None when only the factory's result can tell."""
        return {"trained": True, "factory": None}.get(self.kind, False)

    def definition(self) -> dict:
        """What determines this generator's output besides the pipeline's parameters (for cache keys)."""
        return {"name": self.name, "kind": self.kind, "origin": self.origin, "factory": self.factory,
                "options": self.options, "folder": self.folder}


@dataclass(frozen=True)
class Method:
    """A parsed method string."""

    text: str
    """The method as written (`xunet/stochastic@3`)."""
    generator: GeneratorEntry
    """The generator it names."""
    sampler: str | None
    """The sampler for denoisers, None for generators that make views themselves."""
    guidance_weight: float | None
    """The row's guidance weight from `@<w>`, or None for the pipeline's default."""


def builtin_generators() -> dict[str, GeneratorEntry]:
    entries = {name: GeneratorEntry(name, "control", "built-in") for name in CONTROLS}
    entries.update({name: GeneratorEntry(name, "trained", "built-in") for name in TRAINED})
    return entries


def entry_point_generators() -> dict[str, GeneratorEntry]:
    """Generators registered by installed distributions in the `nvsc.generators` entry-point group."""
    entries = {}
    for point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = point.dist
        origin = f"entry point of {dist.name} {dist.version}" if dist is not None else "entry point"
        if any(c in point.name for c in FORBIDDEN_CHARACTERS) or point.name in builtin_generators():
            logger.warning("ignoring the nvsc.generators entry point '%s' (%s): the name is a built-in or holds "
                           "one of %r", point.name, origin, FORBIDDEN_CHARACTERS)
            continue
        entries[point.name] = GeneratorEntry(point.name, "factory", origin, factory=point.value)
    return entries


def configured_generators(sections: Mapping[str, Mapping[str, str]], known: Mapping[str, GeneratorEntry]
                          ) -> dict[str, GeneratorEntry]:
    """Generators of luigi.cfg's `[generator.<name>]` sections (section name -> {option: value}), given the
    generators `known` so far (a section with only `options` configures one of them)."""
    entries = {}
    for section, values in sections.items():
        if not section.startswith(CONFIG_PREFIX):
            continue
        name, where = section[len(CONFIG_PREFIX):], f"luigi.cfg [{section}]"
        if name in known and known[name].origin == "built-in":
            raise InvalidInputError(where, f"'{name}' is a built-in generator", "give the section another name")
        if not name or any(c in name for c in FORBIDDEN_CHARACTERS):
            raise InvalidInputError(where, f"the name '{name}' is empty or holds one of {FORBIDDEN_CHARACTERS!r}",
                                    "name the section [generator.<letters, digits, _ or ->]")
        unknown = sorted(set(values) - {"factory", "options", "folder"})
        if unknown:
            raise InvalidInputError(where, f"unknown options {unknown}", "use factory (+ options) or folder")
        try:
            options = json.loads(values.get("options", "{}"))
        except ValueError as error:
            raise InvalidInputError(f"{where} options", f"is not JSON ({error})",
                                    'write a JSON object, e.g. {"checkpoint": "/models/x"}') from error
        if not isinstance(options, dict):
            raise InvalidInputError(f"{where} options", "is not a JSON object", 'write e.g. {"checkpoint": "/x"}')
        if ("factory" in values) + ("folder" in values) > 1:
            raise InvalidInputError(where, "sets both factory and folder", "keep one of them")
        if "folder" in values:
            if options:
                raise InvalidInputError(where, "gives options to a folder of views", "remove `options`")
            folder = str(Path(values["folder"]).expanduser().resolve())
            entries[name] = GeneratorEntry(name, "folder", where, folder=folder)
        elif "factory" in values:
            entries[name] = GeneratorEntry(name, "factory", where, factory=values["factory"], options=options)
        elif name in known:
            base = known[name]
            entries[name] = GeneratorEntry(name, base.kind, f"{base.origin}, options from {where}",
                                           factory=base.factory, options=options)
        else:
            raise InvalidInputError(where, f"defines no generator and no entry point is named '{name}'",
                                    "set `factory = module:attribute` or `folder = <path>`")
    return entries


def find_generators(sections: Mapping[str, Mapping[str, str]] | None = None) -> dict[str, GeneratorEntry]:
    """Every generator by name: built-ins, then entry points, then luigi.cfg sections (later ones win)."""
    entries = builtin_generators()
    entries.update(entry_point_generators())
    entries.update(configured_generators(sections or {}, entries))
    return entries


def describe(generators: Mapping[str, GeneratorEntry]) -> str:
    """The known generators as a user would write them, for error messages."""
    return ", ".join(name if entry.takes_sampler is False else f"{name}/<sampler>" if entry.takes_sampler else
                     f"{name}[/<sampler>]" for name, entry in generators.items())


def samplers_of(entry: GeneratorEntry) -> tuple[str, ...]:
    """The sampler names a generator that takes a sampler accepts."""
    if entry.kind == "trained" and entry.name in JOINT_SAMPLERS:
        return JOINT_SAMPLERS[entry.name]
    return tuple(SAMPLERS)


def parse_method(method: str, generators: Mapping[str, GeneratorEntry]) -> Method:
    """The `Method` of a method string; `InvalidInputError` for unknown names and misplaced samplers or weights."""
    base, at, weight_text = method.partition("@")
    generator, slash, sampler = base.partition("/")
    if generator not in generators:
        raise InvalidInputError("method", f"unknown generator '{generator}' in '{method}'",
                                f"use one of: {describe(generators)}")
    entry = generators[generator]
    weight = None
    if at:
        try:
            weight = float(weight_text)
        except ValueError:
            raise InvalidInputError("method", f"'{method}': the guidance weight '{weight_text}' is not a number",
                                    f"write e.g. '{base}@3'") from None
    if entry.takes_sampler is False:
        if slash or at:
            raise InvalidInputError("method", f"'{method}': the {entry.kind} '{generator}' takes no sampler and no "
                                    "guidance weight", f"write just '{generator}'")
        return Method(method, entry, None, None)
    if slash or entry.takes_sampler:
        allowed = samplers_of(entry)
        if sampler not in allowed:
            raise InvalidInputError("method", f"unknown sampler '{sampler}' in '{method}'",
                                    f"use one of: {', '.join(f'{generator}/{s}' for s in allowed)}")
        return Method(method, entry, sampler, weight)
    return Method(method, entry, None, weight)


def load_factory(entry: GeneratorEntry) -> Callable:
    """The factory object `module:attribute` names, imported."""
    module_name, _, attribute = entry.factory.partition(":")
    fix = f"install the package that provides it, or correct `{entry.factory}` ({entry.origin})"
    try:
        target = importlib.import_module(module_name)
    except ImportError as error:
        raise InvalidInputError(f"generator '{entry.name}'", f"cannot import {module_name} ({error})", fix) from error
    try:
        for part in attribute.split(".") if attribute else []:
            target = getattr(target, part)
    except AttributeError as error:
        raise InvalidInputError(f"generator '{entry.name}'", f"{module_name} has no {attribute}", fix) from error
    if not callable(target):
        raise InvalidInputError(f"generator '{entry.name}'", f"{entry.factory} is not callable",
                                "name a function or class that returns a ViewGenerator or a Denoiser")
    return target


def call_factory(entry: GeneratorEntry, device: str) -> object:
    """Call the entry's factory with its options (and `device` when the factory takes that keyword)."""
    factory = load_factory(entry)
    options = dict(entry.options)
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # some builtins have no signature: call them as they are
        return factory(**options)
    if "device" in signature.parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD
                                               for p in signature.parameters.values()):
        options.setdefault("device", device)
    try:
        signature.bind(**options)
    except TypeError as error:
        raise InvalidInputError(f"generator '{entry.name}'", f"its factory {entry.factory} does not accept the "
                                f"options {sorted(options)} ({error})", f"fix `options` ({entry.origin})") from error
    return factory(**options)
