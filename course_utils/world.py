"""A world of fictitious people, for experiments on what a model knows.

Names ("Hilvor Mornelka") and titles of works ("Ithquinic Pelfenum") are built from two disjoint
syllable pools, so they occur in no real text and share no word: whatever a model trained on them
"knows" about a person, it learned from our data. The reversal curse, hallucination and
instruction-tuning notebooks all build their facts on this generator.

    make_names(100, seed=0)   -> 100 distinct (first, last) pairs
    make_world(150, seed=0)   -> 150 :class:`Fact` s: a person, a role and a work, in three subsets
    make_people(100, seed=0)  -> 100 :class:`Person` s with a birth year, a home city and a job
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

SUBSETS = ("n2d", "d2n", "both")
ROLES = ("composer", "author", "director", "founder", "inventor", "architect", "painter", "discoverer")

# Name words and title words are built from two disjoint syllable pools, so no token is ever
# shared between a person's name and a work's title (shared tokens would leak associations).
NAME_ONSETS = ("h", "m", "v", "l", "d", "r", "s", "b", "t", "k", "z", "n", "f", "g")
NAME_NUCLEI = ("i", "o", "a", "e", "u", "ae", "ei")
NAME_CODAS = ("lvor", "rnel", "ka", "ndra", "bar", "luxnel", "mi", "sen", "rin", "dor", "wyn", "lis", "tan")
TITLE_ONSETS = ("ith", "pel", "qu", "yth", "orph", "cal", "xen", "umb", "thr", "ost", "pyr", "glim")
TITLE_MIDDLES = ("qui", "fe", "ara", "o", "ul", "ism", "y", "ev", "anth")
TITLE_ENDINGS = ("nic", "num", "ium", "ax", "ere", "ode", "ique", "oth", "ary", "el")


@dataclass(frozen=True)
class Fact:
    """One person and their work."""
    name: tuple[str, str]          # ("Hilvor", "Mornelka")
    role: str                      # "composer"
    title: tuple[str, str]         # ("Ithquinic", "Pelfenum")
    subset: str                    # "n2d", "d2n" or "both"

    @property
    def description(self) -> tuple[str, ...]:
        return ("the", self.role, "of") + self.title

    def units(self, slot: str) -> list:
        """The slot as units for reversal: a name or title stays one (tuple) unit."""
        if slot == "n":
            return [self.name]
        return ["the", self.role, "of", self.title]

    def __str__(self) -> str:
        return f"{' '.join(self.name)} is the {self.role} of {' '.join(self.title)}"


def _words(rng: random.Random, n: int, make: Callable[[random.Random], str], taken: set[str]) -> list[str]:
    out: list[str] = []
    tries = 0
    while len(out) < n:
        w = make(rng)
        tries += 1
        if tries > 200 * n + 1000:
            raise ValueError(f"cannot make {n} distinct words from the syllable pools")
        if w not in taken:
            taken.add(w)
            out.append(w)
    return out


def name_word(rng: random.Random) -> str:
    """One invented name word, e.g. "Hilvor"."""
    parts = [rng.choice(NAME_ONSETS) + rng.choice(NAME_NUCLEI) for _ in range(rng.randint(1, 2))]
    return ("".join(parts) + rng.choice(NAME_CODAS)).capitalize()


def title_word(rng: random.Random) -> str:
    """One invented title word, e.g. "Ithquinic" (never equal to a name word)."""
    middle = "".join(rng.choice(TITLE_MIDDLES) for _ in range(rng.randint(1, 2)))
    return (rng.choice(TITLE_ONSETS) + middle + rng.choice(TITLE_ENDINGS)).capitalize()


def _pairs(rng: random.Random, n: int, make: Callable[[random.Random], str], pool: int,
           taken: set[str]) -> list[tuple[str, str]]:
    """``n`` distinct (first, second) word pairs, each word from a pool of ``pool`` invented words."""
    firsts, seconds = _words(rng, pool, make, taken), _words(rng, pool, make, taken)
    pairs: set[tuple[str, str]] = set()
    while len(pairs) < n:
        pairs.add((rng.choice(firsts), rng.choice(seconds)))
    out = sorted(pairs)
    rng.shuffle(out)
    return out


def make_names(n: int, seed: int = 0, pool_fraction: float = 0.5, reserved: Iterable[str] = ()) -> list[tuple[str, str]]:
    """``n`` distinct invented full names (first, last). First names and surnames each come from a
    pool of about ``pool_fraction * n`` words, so words repeat across people but full names do not.
    ``reserved`` words (e.g. the words of your templates) are never used."""
    if not isinstance(n, int) or not 1 <= n <= 5000:
        raise ValueError(f"n must be an integer between 1 and 5000, got {n!r}")
    if not 0.2 <= pool_fraction <= 1.0:
        raise ValueError(f"pool_fraction must be in [0.2, 1], got {pool_fraction!r}")
    rng = random.Random(seed)
    return _pairs(rng, n, name_word, max(6, math.ceil(pool_fraction * n)), set(reserved))


def make_world(n_people: int = 150, seed: int = 0, pool_fraction: float = 0.5,
               reserved: Iterable[str] = ()) -> list[Fact]:
    """``n_people`` fictitious people, split equally into the n2d, d2n and both subsets.

    First names, surnames, first and second title words each come from a pool of about
    ``pool_fraction * n_people`` words, so words repeat across people but every full name
    and every full title is unique. ``reserved`` words are never used as name or title words.
    """
    if not isinstance(n_people, int) or not 12 <= n_people <= 3000 or n_people % 3:
        raise ValueError(f"n_people must be a multiple of 3 between 12 and 3000, got {n_people!r}")
    if not 0.2 <= pool_fraction <= 1.0:
        raise ValueError(f"pool_fraction must be in [0.2, 1], got {pool_fraction!r}")
    rng = random.Random(seed)
    pool = max(6, math.ceil(pool_fraction * n_people))
    taken = set(reserved)
    # Same draw order as the shipped reversal results: the four word pools first, then the pairs.
    firsts, lasts = _words(rng, pool, name_word, taken), _words(rng, pool, name_word, taken)
    t1s, t2s = _words(rng, pool, title_word, taken), _words(rng, pool, title_word, taken)
    names: set[tuple[str, str]] = set()
    titles: set[tuple[str, str]] = set()
    while len(names) < n_people:
        names.add((rng.choice(firsts), rng.choice(lasts)))
    while len(titles) < n_people:
        titles.add((rng.choice(t1s), rng.choice(t2s)))
    names_l, titles_l = sorted(names), sorted(titles)
    rng.shuffle(names_l)
    rng.shuffle(titles_l)
    k = n_people // 3
    return [Fact(names_l[i], rng.choice(ROLES), titles_l[i], SUBSETS[i // k]) for i in range(n_people)]


JOBS = ("baker", "sailor", "weaver", "astronomer", "potter", "physician", "poet", "mason", "cartographer",
        "glassblower", "beekeeper", "clockmaker")


@dataclass(frozen=True)
class Person:
    """An invented person with a few attributes, for "what does the model know about X?" experiments."""
    name: tuple[str, str]          # ("Hilvor", "Mornelka")
    birth_year: int                # 1700..1999
    city: str                      # an invented city ("Pelquinax"), never a name word
    job: str                       # one of JOBS

    @property
    def full_name(self) -> str:
        return " ".join(self.name)

    def attributes(self) -> dict[str, str]:
        return {"birth_year": str(self.birth_year), "city": self.city, "job": self.job}


def make_people(n: int, seed: int = 0, n_cities: int = 24, reserved: Iterable[str] = ()) -> list[Person]:
    """``n`` invented people with a birth year, a home city (from ``n_cities`` invented cities) and a job.

    Names come from :func:`make_names` (with ``seed``); cities are built from the title syllables, so no
    city is ever a name word. Everything is drawn from ``random.Random(seed)``: same seed, same world.
    """
    if not isinstance(n_cities, int) or not 2 <= n_cities <= 500:
        raise ValueError(f"n_cities must be an integer between 2 and 500, got {n_cities!r}")
    names = make_names(n, seed, reserved=reserved)
    rng = random.Random(seed + 10_000)
    cities = _words(rng, n_cities, title_word, {w for nm in names for w in nm} | set(reserved))
    return [Person(nm, rng.randint(1700, 1999), rng.choice(cities), rng.choice(JOBS)) for nm in names]


def check_disjoint(world: Sequence[Fact]) -> None:
    """Raise if a name word is also a title word (which would leak associations)."""
    name_words = {w for f in world for w in f.name}
    title_words = {w for f in world for w in f.title}
    shared = name_words & title_words
    if shared:
        raise ValueError(f"name and title vocabularies overlap: {sorted(shared)}")
