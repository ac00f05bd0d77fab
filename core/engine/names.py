"""Names for containers nobody named: ``adjective_surname``, as docker makes them.

The left word is a mood or a quality; the right one the surname of a scientist, engineer or
hacker whose work the engine stands on.  :func:`generate` picks one pair at random; when the
caller found the name taken, it asks again with ``retry`` > 0 and gets a digit appended
(``eager_hopper3``), as docker's ``namesgenerator.GetRandomName`` does.  The lists are our own.

Names follow the grammar container names must match (``[a-zA-Z0-9][a-zA-Z0-9_.-]+``): lower-case
ASCII letters and one underscore.
"""
from __future__ import annotations

import random as _random

__all__ = ["ADJECTIVES", "SURNAMES", "generate"]

ADJECTIVES: tuple[str, ...] = (
    "adoring", "affable", "agile", "amazing", "amiable", "amused", "ardent", "artful", "awake",
    "blissful", "bold", "brave", "breezy", "bright", "brisk", "busy", "calm", "candid", "careful",
    "charming", "cheerful", "clever", "cool", "cosmic", "cozy", "crisp", "curious", "daring",
    "dazzling", "deft", "devoted", "diligent", "dreamy", "dutiful", "eager", "earnest", "elated",
    "eloquent", "epic", "fair", "fearless", "festive", "fervent", "fond", "frosty", "gallant",
    "gentle", "gifted", "glad", "gleeful", "golden", "graceful", "happy", "hardy", "hearty",
    "helpful", "hopeful", "humble", "jolly", "jovial", "keen", "kind", "lively", "loyal", "lucid",
    "lucky", "merry", "mellow", "mindful", "modest", "nifty", "nimble", "noble", "patient",
    "peaceful", "placid", "plucky", "polite", "proud", "quick", "quiet", "quirky", "radiant",
    "relaxed", "resolute", "serene", "sharp", "shiny", "sincere", "sleepy", "smart", "snappy",
    "spry", "stoic", "sturdy", "sunny", "swift", "tender", "thrifty", "tidy", "tranquil", "trusty",
    "upbeat", "valiant", "vibrant", "vigilant", "vivid", "warm", "wise", "witty", "zealous",
    "zesty",
)

SURNAMES: tuple[str, ...] = (
    # computing: languages, systems, networks, theory
    "allen", "backus", "baran", "bernerslee", "bosack", "cerf", "codd", "conway", "corbato",
    "dijkstra", "engelbart", "floyd", "hamilton", "hoare", "hopper", "kahn", "karp", "kay", "knuth",
    "lamport", "liskov", "lovelace", "mccarthy", "metcalfe", "minsky", "naur", "perlman", "pike",
    "postel", "ritchie", "shannon", "sutherland", "tanenbaum", "thompson", "torvalds", "turing",
    "wirth", "wozniak", "babbage", "bartik", "clarke", "goldberg", "hellman", "diffie", "rivest",
    "shamir", "adleman", "stallman", "kernighan", "stroustrup", "vanrossum",
    # physics, chemistry, biology, mathematics
    "bohr", "born", "curie", "darwin", "dirac", "einstein", "euler", "faraday", "fermi", "feynman",
    "franklin", "galileo", "gauss", "germain", "goodall", "hawking", "heisenberg", "hodgkin",
    "hypatia", "joliot", "kepler", "lagrange", "laplace", "leakey", "maxwell", "meitner",
    "mendel", "newton", "noether", "pasteur", "pauli", "planck", "ramanujan", "riemann",
    "rutherford", "sagan", "schrodinger", "tesla", "volta", "wu", "yalow", "agnesi", "banach",
    "cantor", "fibonacci", "hilbert", "kovalevskaya", "mirzakhani", "poincare", "somerville",
    "archimedes", "euclid", "khayyam", "alhazen", "chandrasekhar", "raman", "bose", "salam",
)


def generate(retry: int = 0, rng: _random.Random | None = None) -> str:
    """A random ``adjective_surname``; with ``retry`` > 0 a digit 0-9 is appended.

    ``boring_wozniak`` is never produced: Steve Wozniak is not boring (docker's rule too).
    """
    r = rng or _random.SystemRandom()
    while True:
        name = f"{r.choice(ADJECTIVES)}_{r.choice(SURNAMES)}"
        if name == "boring_wozniak":
            continue
        if retry > 0:
            name += str(r.randrange(10))
        return name
