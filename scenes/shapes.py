"""Procedural object categories built from trimesh primitives, in the spirit of ShapeNet's mugs, chairs and lamps.

Each instance varies its shape choices (tapered or straight mug, torus or square handle, slab or slatted chair
back, arm lengths...), proportions, part colours and a solid texture (stripes, checker, dots or plain) evaluated at
3D positions, so a pattern continues consistently across views. Every category has a part that breaks its
symmetry (the mug's handle, the chair's back, the lamp's arm), so different views show different things.
Objects rest z-up around the origin, scaled so that every vertex lies in the unit sphere.
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import trimesh

from scenes.errors import InvalidInputError
from scenes.render import AlbedoFn

#: A solid texture: points [P, 3] -> mix weight [P] in [0, 1] between a part's colour and its pattern colour.
Pattern = Callable[[np.ndarray], np.ndarray]
PATTERNS = ("stripes", "checker", "dots", "plain")


@dataclass
class ProceduralObject:
    """A mesh and the procedure that colours it (`albedo_fn(points [P, 3], face_ids [P]) -> rgb [P, 3]`)."""

    mesh: trimesh.Trimesh
    albedo_fn: AlbedoFn


@dataclass
class _Part:
    mesh: trimesh.Trimesh
    colour: np.ndarray  # [3] in [0, 1]
    pattern: Pattern | None = None
    pattern_colour: np.ndarray | None = None


def make_object(category: str, rng: np.random.Generator) -> ProceduralObject:
    """One random instance of `category`; the same generator state gives the same object."""
    if category not in CATEGORIES:
        raise InvalidInputError("category", f"unknown category {category!r}", f"use one of {sorted(CATEGORIES)}")
    return _assemble(CATEGORIES[category](rng), rng)


def _assemble(parts: list[_Part], rng: np.random.Generator) -> ProceduralObject:
    """Concatenate the parts, turn the object to a random heading, fit it into the unit sphere, build its albedo."""
    mesh = trimesh.util.concatenate([part.mesh for part in parts])
    mesh.apply_transform(trimesh.transformations.rotation_matrix(rng.uniform(0, 2 * np.pi), [0, 0, 1]))
    mesh.apply_translation(-mesh.bounds.mean(axis=0))
    mesh.apply_scale(0.98 / np.linalg.norm(mesh.vertices, axis=1).max())
    part_of_face = np.repeat(np.arange(len(parts)), [len(part.mesh.faces) for part in parts])
    colours = np.stack([part.colour for part in parts])

    def albedo_fn(points: np.ndarray, face_ids: np.ndarray) -> np.ndarray:
        part = part_of_face[face_ids]
        rgb = colours[part].copy()
        for j, spec in enumerate(parts):
            mask = part == j
            if spec.pattern is not None and mask.any():
                weight = spec.pattern(points[mask])[:, None]
                rgb[mask] = (1.0 - weight) * spec.colour + weight * spec.pattern_colour
        return rgb

    return ProceduralObject(mesh, albedo_fn)


# ---- colours and solid textures -------------------------------------------------------------------------------

def _palette(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """`n` clearly different colours: hues spread by the golden ratio from a random start."""
    start = rng.uniform()
    return [np.array(colorsys.hsv_to_rgb((start + 0.618034 * i) % 1.0, rng.uniform(0.45, 0.85),
                                         rng.uniform(0.6, 0.95))) for i in range(n)]


def _pattern_colour(colour: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A contrasting colour for a pattern: much darker, much lighter, or white."""
    choice = rng.integers(3)
    if choice == 0:
        return colour * 0.35
    if choice == 1:
        return 1.0 - 0.3 * (1.0 - colour)
    return np.array([0.97, 0.97, 0.95])


def _random_pattern(rng: np.random.Generator, allow_plain: bool = True) -> Pattern | None:
    """A solid texture of 3D position with a random kind, scale, orientation and phase (None for plain)."""
    kind = PATTERNS[rng.integers(len(PATTERNS) if allow_plain else len(PATTERNS) - 1)]
    period = rng.uniform(0.14, 0.26)
    phase = rng.uniform(0, 1, size=3)
    if kind == "stripes":
        axis = np.array([0.0, 0.0, 1.0]) if rng.uniform() < 0.5 else _unit(rng.normal(size=3))
        return lambda p: (np.mod(p @ axis / period + phase[0], 1.0) < 0.5).astype(np.float64)
    if kind == "checker":
        return lambda p: (np.floor(p / period + phase).sum(axis=1) % 2).astype(np.float64)
    if kind == "dots":
        radius = rng.uniform(0.25, 0.4)
        return lambda p: (np.linalg.norm(np.mod(p / period + phase, 1.0) - 0.5, axis=1) < radius).astype(np.float64)
    return None


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _textured(mesh: trimesh.Trimesh, colour: np.ndarray, rng: np.random.Generator, allow_plain: bool = True) -> _Part:
    pattern = _random_pattern(rng, allow_plain)
    return _Part(mesh, colour, pattern, _pattern_colour(colour, rng) if pattern is not None else None)


def _box(extents, centre) -> trimesh.Trimesh:
    return trimesh.creation.box(extents=extents, transform=trimesh.transformations.translation_matrix(centre))


def _rod(start, end, radius: float, sections: int = 16) -> trimesh.Trimesh:
    return trimesh.creation.cylinder(radius=radius, segment=[start, end], sections=sections)


# ---- categories -----------------------------------------------------------------------------------------------

def _mug(rng: np.random.Generator) -> list[_Part]:
    """Body (straight or tapered cylinder) with a dark liquid disc on top, a handle on one side, maybe a saucer."""
    radius, height = rng.uniform(0.28, 0.42), rng.uniform(0.55, 0.95)
    taper = rng.choice([1.0, rng.uniform(0.75, 0.9), rng.uniform(1.1, 1.3)])
    body_colour, handle_colour, saucer_colour = _palette(rng, 3)
    body = trimesh.creation.cylinder(radius=radius, height=height, sections=40)
    body.apply_translation([0, 0, height / 2])
    top = body.vertices[:, 2] > height / 2
    body.vertices[top, :2] *= taper  # scaling the top ring makes a truncated cone
    liquid = trimesh.creation.cylinder(radius=0.85 * radius * taper, height=0.02, sections=40)
    liquid.apply_translation([0, 0, height + 0.002])
    parts = [_textured(body, body_colour, rng, allow_plain=False),
             _Part(liquid, np.array([0.25, 0.13, 0.06]) if rng.uniform() < 0.7 else np.array([0.9, 0.9, 0.85]))]

    wall = radius * (1 + (taper - 1) * 0.5)  # body radius at mid-height
    grip, thickness = rng.uniform(0.35, 0.55) * height, rng.uniform(0.03, 0.055)
    z_mid = height * rng.uniform(0.45, 0.6)
    if rng.uniform() < 0.6:
        handle = trimesh.creation.torus(major_radius=grip / 2, minor_radius=thickness, major_sections=32,
                                        minor_sections=12)
        handle.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0]))  # ring in the xz plane
        handle.apply_scale([rng.uniform(0.8, 1.2), 1.0, 1.0])
        handle.apply_translation([wall + 0.2 * grip, 0, z_mid])
    else:  # square handle: two arms and an upright
        reach, bar = rng.uniform(0.15, 0.25), 2 * thickness
        handle = trimesh.util.concatenate([
            _box([reach + 0.05, bar, bar], [wall + reach / 2 - 0.02, 0, z_mid + grip / 2]),
            _box([reach + 0.05, bar, bar], [wall + reach / 2 - 0.02, 0, z_mid - grip / 2]),
            _box([bar, bar, grip + bar], [wall + reach, 0, z_mid])])
    parts.append(_Part(handle, handle_colour))
    if rng.uniform() < 0.4:
        saucer = trimesh.creation.cylinder(radius=radius * rng.uniform(1.5, 1.8), height=0.04, sections=40)
        saucer.apply_translation([0, 0, -0.02])
        parts.append(_textured(saucer, saucer_colour, rng))
    return parts


def _chair(rng: np.random.Generator) -> list[_Part]:
    """Seat, four legs (round or square), a back on one side (slab or slats, maybe tilted), maybe armrests."""
    width, depth, thick = rng.uniform(0.7, 1.0), rng.uniform(0.65, 0.95), rng.uniform(0.06, 0.12)
    seat_z = rng.uniform(0.4, 0.6)
    seat_colour, leg_colour, back_colour, arm_colour = _palette(rng, 4)
    parts = [_textured(_box([width, depth, thick], [0, 0, seat_z]), seat_colour, rng)]

    leg = rng.uniform(0.04, 0.08)
    inset = rng.uniform(0.02, 0.1)
    corners = [(sx * (width / 2 - inset - leg), sy * (depth / 2 - inset - leg)) for sx in (-1, 1) for sy in (-1, 1)]
    round_legs = rng.uniform() < 0.5
    legs = [(_rod([x, y, 0], [x, y, seat_z], leg / 1.5) if round_legs else _box([leg, leg, seat_z], [x, y, seat_z / 2]))
            for x, y in corners]
    parts.append(_Part(trimesh.util.concatenate(legs), leg_colour))

    back_height, back_thick = rng.uniform(0.5, 0.85), rng.uniform(0.05, 0.09)
    back_y, back_base = -depth / 2 + back_thick / 2, seat_z + thick / 2
    if rng.uniform() < 0.5:
        back = _box([width, back_thick, back_height], [0, back_y, back_base + back_height / 2])
    else:  # two posts and horizontal slats
        post = rng.uniform(0.05, 0.08)
        pieces = [_box([post, back_thick, back_height], [sx * (width / 2 - post / 2), back_y, back_base + back_height / 2])
                  for sx in (-1, 1)]
        n_slats = int(rng.integers(2, 5))
        slat = back_height / (2 * n_slats + 1)
        pieces += [_box([width - post, back_thick * 0.8, slat], [0, back_y, back_base + (2 * i + 1.5) * slat])
                   for i in range(n_slats)]
        back = trimesh.util.concatenate(pieces)
    tilt = rng.uniform(0, np.radians(15))
    back.apply_transform(trimesh.transformations.rotation_matrix(-tilt, [1, 0, 0], point=[0, back_y, back_base]))
    parts.append(_textured(back, back_colour, rng))

    if rng.uniform() < 0.4:
        arm_z = back_base + rng.uniform(0.2, 0.3)
        arms = [_box([0.06, depth * 0.8, 0.05], [sx * (width / 2 - 0.03), -depth * 0.1, arm_z]) for sx in (-1, 1)]
        arms += [_box([0.04, 0.04, arm_z - back_base], [sx * (width / 2 - 0.03), depth * 0.25, (arm_z + back_base) / 2])
                 for sx in (-1, 1)]
        parts.append(_Part(trimesh.util.concatenate(arms), arm_colour))
    return parts


def _lamp(rng: np.random.Generator) -> list[_Part]:
    """Desk lamp: base, upright pole, an arm reaching to one side, a shade (cone or drum) over a bulb."""
    base_colour, pole_colour, shade_colour = _palette(rng, 3)
    base_r, base_h = rng.uniform(0.22, 0.35), rng.uniform(0.05, 0.1)
    if rng.uniform() < 0.6:
        base = trimesh.creation.cylinder(radius=base_r, height=base_h, sections=40)
        base.apply_translation([0, 0, base_h / 2])
    else:
        base = _box([2 * base_r, 1.5 * base_r, base_h], [0, 0, base_h / 2])
    pole_r, pole_h = rng.uniform(0.02, 0.035), rng.uniform(0.8, 1.3)
    reach, rise = rng.uniform(0.35, 0.7), rng.uniform(-0.1, 0.25)
    top, tip = np.array([0, 0, pole_h]), np.array([reach, 0, pole_h + rise])
    rods = trimesh.util.concatenate([_rod([0, 0, base_h], top, pole_r), _rod(top, tip, pole_r),
                                     trimesh.creation.icosphere(2, radius=2 * pole_r).apply_translation(top)])

    shade_r, shade_h = rng.uniform(0.15, 0.26), rng.uniform(0.18, 0.3)
    if rng.uniform() < 0.6:  # cone, apex up, opening towards the desk
        shade = trimesh.creation.cone(radius=shade_r, height=shade_h, sections=32)
    else:
        shade = trimesh.creation.cylinder(radius=shade_r * 0.8, height=shade_h, sections=32)
        shade.apply_translation([0, 0, shade_h / 2])
    shade.apply_translation(tip - [0, 0, shade_h * 0.75])
    bulb = trimesh.creation.icosphere(2, radius=shade_r * 0.45).apply_translation(tip - [0, 0, shade_h * 0.8])
    return [_textured(base, base_colour, rng), _Part(rods, pole_colour), _textured(shade, shade_colour, rng),
            _Part(bulb, np.array([1.0, 0.95, 0.6]))]


#: Category name -> builder of the parts of one instance.
CATEGORIES: dict[str, Callable[[np.random.Generator], list[_Part]]] = {"mug": _mug, "chair": _chair, "lamp": _lamp}
