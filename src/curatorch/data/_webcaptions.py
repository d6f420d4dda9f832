"""Vocabulary and sentence shapes of the web-like shards' captions (:mod:`webshards`).

Deliberately unlike the built-in worlds' grammar (``_phrases.py``): other concepts
(characters in ink over textured surfaces), other words, other sentence shapes, free
word order, paraphrases and optional clauses, so that captions read like alt text
written by many different people.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "BACKGROUNDS",
    "GLYPHS",
    "INKS",
    "WEB_BOILERPLATE",
    "Attributes",
    "Background",
    "Ink",
    "boilerplate_caption",
    "class_name",
    "describe",
]


@dataclass(frozen=True)
class Ink:
    """A colour the character is drawn in: its RGB and the words that name it."""

    rgb: tuple[int, int, int]
    words: tuple[str, ...]


@dataclass(frozen=True)
class Background:
    """A surface texture (drawn by ``webshards._texture``) and the phrases that name it."""

    kind: str
    mean_rgb: tuple[int, int, int]  # rough mean colour, to keep the ink readable
    phrases: tuple[str, ...]
    short: tuple[str, ...]  # a noun or two, for tag-style captions


INKS: tuple[Ink, ...] = (
    Ink((250, 120, 90), ("coral", "salmon", "coral pink")),
    Ink((0, 128, 128), ("teal", "blue-green", "petrol")),
    Ink((215, 170, 30), ("mustard", "mustard yellow", "ochre")),
    Ink((25, 35, 110), ("navy", "navy blue", "midnight blue")),
    Ink((130, 40, 110), ("plum", "aubergine", "deep purple")),
    Ink((110, 120, 35), ("olive", "olive green", "khaki")),
    Ink((125, 20, 35), ("maroon", "burgundy", "wine red")),
    Ink((55, 55, 60), ("charcoal", "dark grey", "graphite")),
    Ink((40, 180, 90), ("jade", "bright green", "kelly green")),
    Ink((195, 160, 230), ("lilac", "lavender", "pale mauve")),
    Ink((190, 80, 25), ("rust", "burnt orange", "copper")),
    Ink((10, 10, 10), ("black", "jet black", "inky black")),
    Ink((248, 248, 245), ("white", "chalk white", "bright white")),
    Ink((240, 40, 150), ("hot pink", "fuchsia", "neon pink")),
)

BACKGROUNDS: tuple[Background, ...] = (
    Background(
        "wood",
        (150, 100, 60),
        ("a wooden surface", "a wooden table", "oak planks", "timber boards", "wood grain"),
        ("wood", "timber"),
    ),
    Background(
        "brick",
        (160, 70, 55),
        ("a brick wall", "red bricks", "old brickwork", "a wall of bricks"),
        ("brick", "bricks"),
    ),
    Background(
        "paper",
        (240, 238, 225),
        ("lined paper", "a notebook page", "ruled paper", "a sheet from an exercise book"),
        ("paper", "notebook"),
    ),
    Background(
        "grass",
        (70, 140, 50),
        ("grass", "a green lawn", "freshly cut turf", "a grassy field"),
        ("grass", "lawn"),
    ),
    Background(
        "concrete",
        (135, 135, 130),
        ("concrete", "grey pavement", "a cement floor", "a sidewalk slab"),
        ("concrete", "pavement"),
    ),
    Background(
        "sky",
        (110, 165, 225),
        ("a blue sky", "clear skies", "an open sky", "a cloudless sky"),
        ("sky", "skies"),
    ),
    Background(
        "gingham",
        (225, 150, 150),
        ("a checkered tablecloth", "gingham", "a chequered cloth", "a picnic blanket"),
        ("gingham", "tablecloth"),
    ),
    Background(
        "denim",
        (60, 85, 135),
        ("denim", "blue jeans fabric", "a denim jacket", "indigo twill"),
        ("denim", "jeans"),
    ),
    Background(
        "sand",
        (215, 190, 140),
        ("sand", "a sandy beach", "beach sand", "dunes"),
        ("sand", "beach"),
    ),
    Background(
        "marble",
        (225, 225, 225),
        ("marble", "a marble countertop", "polished white marble", "a marble slab"),
        ("marble", "stone"),
    ),
    Background(
        "chalkboard",
        (40, 60, 50),
        ("a chalkboard", "a blackboard", "slate", "a school board"),
        ("chalkboard", "blackboard"),
    ),
)

LETTERS = tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
DIGITS = tuple("0123456789")
GLYPHS: tuple[str, ...] = LETTERS + DIGITS
_DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_VOWEL_SOUND = frozenset("AEFHILMNORSX")  # "an M", "a K"

_SIZES = {
    True: ("large", "big", "huge", "oversized", "giant"),
    False: ("small", "tiny", "little", "miniature"),
}
_MEDIA = ("ink", "paint", "marker", "spray paint", "chalk", "felt pen")
_EXTRAS = (
    "high resolution",
    "macro shot",
    "shot on my phone",
    "natural light",
    "vintage look",
    "minimalist design",
    "royalty free",
    "4k",
    "flat lay",
    "hand lettered",
    "street art",
    "top view",
)

# web boilerplate; each "#" becomes a random digit
WEB_BOILERPLATE = (
    "IMG_####.jpg",
    "DSC#####.JPG",
    "click here to buy",
    "stock photo",
    "Stock Photo - ######",
    "image may contain: text",
    "wallpaper ####x####",
    "Screenshot_20##-##-##",
    "Untitled design (#)",
    "buy now, limited offer",
    "photo by user####",
    "placeholder image",
    "pin on Pinterest",
    "free HD download",
    "no alt text provided",
    "file_####.jpeg",
    "product shot ##",
    "lorem ipsum dolor sit amet",
    "see our other listings",
    "welcome to my blog",
)


@dataclass(frozen=True)
class Attributes:
    """What one image shows: the character, its ink, the surface, large or small."""

    glyph: int  # index into GLYPHS
    ink: int  # index into INKS
    background: int  # index into BACKGROUNDS
    large: bool


def class_name(glyph: int) -> str:
    """The class name of a character: ``"letter M"`` or ``"digit 7"``."""
    g = GLYPHS[glyph]
    return f"digit {g}" if g.isdigit() else f"letter {g}"


def _glyph_phrase(g: str, rng: np.random.Generator) -> tuple[str, str]:
    """``(full, short)`` phrases naming the character ``g``."""
    if g.isdigit():
        word = _DIGIT_WORDS[int(g)]
        full = ("the digit {g}", "the number {w}", "the numeral {g}", "a {g}", "number {g}",
                "the figure {w}", "a number {w}")  # fmt: skip
        short = ("{g}", "number {g}", "digit {g}", "{w}")
    else:
        art = "an" if g in _VOWEL_SOUND else "a"
        full = ("the letter {g}", "a capital {g}", "an uppercase {g}", "the character {g}",
                "letter {g}", f"{art} {{g}}", "the glyph {g}")  # fmt: skip
        short = ("{g}", "letter {g}", "capital {g}", "{g}")
        word = ""
    pick = lambda options: options[int(rng.integers(len(options)))]  # noqa: E731
    return pick(full).format(g=g, w=word), pick(short).format(g=g, w=word)


# sentence shapes: {G} full character phrase, {S} short one, {C} colour, {B} background
# phrase, {T} background tag word, {Z} size word, {M} medium, {X} extra clause
_SHAPES = (
    "photo of {G} in {C} {M} over {B}",
    "{G} painted {C} on {B}",
    "close-up of a {Z} {C} {S} against {B}",
    "{B} with {G} written in {C}",
    "{C} {S} on {B}, {X}",
    "A {Z} {S} in {C} lettering sits on {B}.",
    "{S} | {C} | {T}",
    "stencil of {G} sprayed in {C} onto {B}",
    "{G}, {C}, on {B}. {X}",
    "sign showing {G} drawn with {C} {M} over {B}",
    "my {C} {S} on {B} lol",
    "typography poster: {C} {S} on a {T} background",
    "{G} in {C}",
    "someone wrote {G} in {C} {M} on {B}",
    "{Z} {C} {S}, {T} texture, {X}",
    "I found {G} in {C} on {B} today",
)


def describe(attrs: Attributes, rng: np.random.Generator) -> str:
    """A caption describing ``attrs``, in one of many sentence shapes and paraphrases.

    Every caption names the character and its colour; most name the surface, some the
    size, and some add a clause that does not depend on the image ("4k", "natural light").
    """
    pick = lambda options: options[int(rng.integers(len(options)))]  # noqa: E731
    full, short = _glyph_phrase(GLYPHS[attrs.glyph], rng)
    bg = BACKGROUNDS[attrs.background]
    shape = pick(_SHAPES)
    text = shape.format(
        G=full,
        S=short,
        C=pick(INKS[attrs.ink].words),
        B=pick(bg.phrases),
        T=pick(bg.short),
        Z=pick(_SIZES[attrs.large]),
        M=pick(_MEDIA),
        X=pick(_EXTRAS),
    )
    return text[0].upper() + text[1:] if rng.random() < 0.5 else text


def boilerplate_caption(rng: np.random.Generator) -> str:
    """An uninformative web caption ("IMG_2041.jpg", "click here to buy")."""
    template = WEB_BOILERPLATE[int(rng.integers(len(WEB_BOILERPLATE)))]
    return "".join(str(int(rng.integers(10))) if c == "#" else c for c in template)
