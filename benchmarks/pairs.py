"""Verification pairs in the LFW ``pairs.txt`` format: writing, parsing and finding their images.

Format: a first line ``<folds> <pairs_per_fold>`` (or one number, pairs per fold, with 10 folds), then per
fold ``pairs_per_fold`` same-person lines ``name n1 n2`` followed by as many different-person lines
``name1 n1 name2 n2``. Image n of a person is ``<name>/<name>_<n:04d>.<ext>`` (LFW), ``<name>/<n>.<ext>``
(ORL: s1/1.pgm) or ``<name>/<n:04d>.<ext>`` (our synthetic sets: id0042/0003.png); in a folder whose images
carry no numbers (Yale B), image n is the n-th in sorted file-name order.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.base.errors import UserError
from edge.base.imageio import IMAGE_SUFFIXES, scan_identity_folders

LFW_DEFAULT_FOLDS = 10


@dataclass(frozen=True)
class Pair:
    name1: str
    n1: int
    name2: str
    n2: int
    fold: int

    @property
    def same(self) -> bool:
        return self.name1 == self.name2

    def line(self) -> str:
        if self.same:
            return f"{self.name1}\t{self.n1}\t{self.n2}"
        return f"{self.name1}\t{self.n1}\t{self.name2}\t{self.n2}"


@dataclass(frozen=True)
class PairsFile:
    folds: int
    per_fold: int
    pairs: tuple[Pair, ...]   # fold by fold: per_fold same pairs, then per_fold different pairs


def parse_pairs(path: str | Path) -> PairsFile:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"pairs file {path} does not exist; make one with python -m benchmarks pairs")
    lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    if not lines:
        raise UserError(f"pairs file {path} is empty")
    try:
        header = [int(v) for v in lines[0]]
    except ValueError as err:
        raise UserError(f"{path}: first line must be '<folds> <pairs_per_fold>' or '<pairs_per_fold>'") from err
    if len(header) == 1:
        header = [LFW_DEFAULT_FOLDS, header[0]]
    if len(header) != 2 or min(header) < 1:
        raise UserError(f"{path}: first line must be '<folds> <pairs_per_fold>' with positive numbers")
    folds, per_fold = header
    expected = folds * 2 * per_fold
    if len(lines) - 1 != expected:
        raise UserError(f"{path}: header promises {folds} folds x 2 x {per_fold} = {expected} pairs, "
                        f"found {len(lines) - 1} pair lines")
    pairs = []
    for index, tokens in enumerate(lines[1:]):
        fold, within = divmod(index, 2 * per_fold)
        same = within < per_fold
        try:
            if same and len(tokens) == 3:
                pairs.append(Pair(tokens[0], int(tokens[1]), tokens[0], int(tokens[2]), fold))
                continue
            if not same and len(tokens) == 4:
                pairs.append(Pair(tokens[0], int(tokens[1]), tokens[2], int(tokens[3]), fold))
                continue
        except ValueError:
            pass  # reported below with the line's expected shape
        shape = "name n1 n2" if same else "name1 n1 name2 n2"
        raise UserError(f"{path}: pair line {index + 2} is {' '.join(tokens)!r}; fold {fold + 1} expects "
                        f"'{shape}' there ({per_fold} same-person lines, then {per_fold} different-person lines)")
    return PairsFile(folds, per_fold, tuple(pairs))


def write_pairs(path: str | Path, pairs_file: PairsFile) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{pairs_file.folds}\t{pairs_file.per_fold}"] + [p.line() for p in pairs_file.pairs]
    path.write_text("\n".join(lines) + "\n")
    return path


def image_number(name: str, stem: str) -> int | None:
    """The number of an image whose stem follows one of the two naming styles ``find_image`` reads."""
    match = re.fullmatch(rf"{re.escape(name)}_(\d+)|(\d+)", stem)
    if match is None:
        return None
    return int(match.group(1) or match.group(2))


def find_image(images: str | Path, name: str, number: int) -> Path:
    folder = Path(images) / name
    stems = (f"{name}_{number:04d}", str(number), f"{number:04d}")   # LFW, ORL, our synthetic sets
    for stem in stems:
        for suffix in IMAGE_SUFFIXES:
            for candidate in (folder / f"{stem}{suffix}", folder / f"{stem}{suffix.upper()}"):
                if candidate.is_file():
                    return candidate
    unnumbered = _sorted_unnumbered(folder, name)
    if unnumbered and 1 <= number <= len(unnumbered):
        return unnumbered[number - 1]
    looked = ", ".join(f"{folder}/{stem}.<ext>" for stem in stems)
    raise UserError(f"image {number} of {name!r} not found: looked for {looked} ({', '.join(IMAGE_SUFFIXES)})")


def _sorted_unnumbered(folder: Path, name: str) -> list[Path]:
    """A folder whose images carry no numbers (Yale B: yaleB01_P00A+010E-20.png) is numbered 1, 2, ... in
    sorted file-name order; a folder with any numbered image is not (its numbers are its own)."""
    if not folder.is_dir():
        return []
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    return [] if any(image_number(name, p.stem) is not None for p in paths) else paths


def _numbered_images(images: str | Path) -> dict[str, list[int]]:
    folders = scan_identity_folders(images)
    numbered = {}
    for name, paths in folders.images.items():
        numbers = sorted({n for n in (image_number(name, p.stem) for p in paths) if n is not None})
        if not numbers:
            numbers = list(range(1, len(_sorted_unnumbered(folders.root / name, name)) + 1))
        if numbers:
            numbered[name] = numbers
    if len(numbered) < 2:
        raise UserError(f"{images} needs at least two identity folders of images")
    return numbered


def _draw(rng: np.random.Generator, count: int, draw_one, what: str, fold: int) -> list[tuple]:
    """``count`` distinct pairs from ``draw_one``; rejection sampling, since listing every pair of a large
    set (LFW: ~10^6 different-person pairs per fold) costs far more than a few repeated draws."""
    chosen: dict[tuple, None] = {}
    for _ in range(200 * count):
        if len(chosen) == count:
            break
        chosen.setdefault(draw_one(rng), None)
    if len(chosen) < count:
        raise UserError(f"fold {fold + 1} has only {len(chosen)} distinct {what} pairs; "
                        f"lower --per_fold or --folds, or add images")
    return list(chosen)


def make_pairs(images: str | Path, folds: int = 10, per_fold: int = 30, seed: int = 0) -> tuple[PairsFile, bool]:
    """Balanced same/different pairs per fold; returns the file and whether folds have disjoint people.

    As in the LFW protocol, people are split across folds so no person is in two folds; that needs at least
    two people per fold (one with two images). With fewer people every fold draws from everyone.
    """
    if folds < 1 or per_fold < 1:
        raise UserError("--folds and --per_fold must be at least 1")
    numbered = _numbered_images(images)
    rng = np.random.default_rng(seed)
    names = sorted(numbered)
    order = [names[i] for i in rng.permutation(len(names))]
    groups = [list(g) for g in np.array_split(np.array(order, dtype=object), folds)]
    disjoint = all(len(g) >= 2 and any(len(numbered[n]) >= 2 for n in g) for g in groups)
    if not disjoint:
        groups = [names] * folds
    pairs = []
    for fold, group in enumerate(groups):
        repeated = sorted(n for n in group if len(numbered[n]) >= 2)
        if not repeated:
            raise UserError(f"{images}: no person has two numbered images, so no same-person pair exists")

        def same_pair(r):
            name = repeated[r.integers(len(repeated))]
            a, b = sorted(r.choice(numbered[name], 2, replace=False).tolist())
            return name, a, name, b

        def different_pair(r):
            i, j = sorted(r.choice(len(group), 2, replace=False).tolist())
            first, second = group[i], group[j]
            return first, int(r.choice(numbered[first])), second, int(r.choice(numbered[second]))

        for drawn in _draw(rng, per_fold, same_pair, "same-person", fold) + \
                _draw(rng, per_fold, different_pair, "different-person", fold):
            pairs.append(Pair(drawn[0], int(drawn[1]), drawn[2], int(drawn[3]), fold))
    return PairsFile(folds, per_fold, tuple(pairs)), disjoint
