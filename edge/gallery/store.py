"""What a gallery stores, as three interfaces, so that a second store (a fleet's server) can come beside SQLite.

- ``People``: enrolled identities and their templates, each tied to the model file that made it;
- ``Events``: the decision log, with retention;
- ``Visitors``: unnamed visits kept until someone names or forgets them.

A ``Gallery`` is one opened store holding the three. Every write is one transaction: it happens whole or not at all.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.base.errors import UserError


@dataclass(frozen=True)
class EmbeddingKey:
    """The model file a template is made with or matched by."""

    fingerprint: str                      # sha256 of the file
    space: str = ""                       # source checkpoint + crop (edge.runtime.manifest.ModelEntry.embedding_space)
    kind: str = ""                        # "format:precision" of the file
    accepts: tuple[str, ...] = ()         # kinds in the same space whose templates this file may match

    @classmethod
    def of(cls, key: "EmbeddingKey | str") -> "EmbeddingKey":
        return cls(key) if isinstance(key, str) else key

    def matches(self, fingerprint: str, space: str | None, producer: str | None) -> bool:
        """Whether this file may match a template made by the file ``fingerprint`` (of kind ``producer`` in the
        embedding ``space``): the same file, or a kind it accepts in its embedding space."""
        return fingerprint == self.fingerprint or bool(self.space and space == self.space and producer in self.accepts)


@dataclass
class GalleryTemplates:
    names: list[str]             # one per identity
    matrix: np.ndarray           # (identities, dim), L2-normalised mean template per identity
    other_models: int            # templates enrolled with a model file whose embeddings are not comparable
    stale: dict[str, list[str]] = field(default_factory=dict)   # identity -> photo sources, for the identities
                                                                # whose every template is unusable here
    suspended: frozenset = frozenset()                          # named, but open no door
    groups: dict[str, frozenset] = field(default_factory=dict)  # identity -> access groups a fleet gave them


def mean_template(embeddings) -> np.ndarray:
    """A person's template: the mean of their enrolled unit embeddings, normalised."""
    mean = np.mean(embeddings, axis=0)
    return mean / (np.linalg.norm(mean) + 1e-12)


class AlreadyEnrolled(UserError):
    """The name is enrolled, and the caller did not say the new faces are that same person's."""


class NotLive(UserError):
    """A kept visitor whose visit was not judged live cannot be enrolled from the kiosk's camera."""


# Said after the consent a person gave when they also agreed to their enrolment crops being kept (People.enroll's
# ``crops``), so the record says which consent covers the kept crops.
KEPT_CROPS = "; face crops kept for a new model"

# Verdicts of a kept visitor that naming may enrol: live, or off (the kiosk ran with --no_liveness, its operator's
# choice); insufficient, attack and visits kept before liveness existed are refused.
NAMEABLE_VERDICTS = ("live", "off")


@dataclass
class Reembedded:
    """What ``People.reembed`` did: templates made per person, crops refused (and why), and the people left with no
    template the new model can match, who must enrol again."""

    made: dict[str, int]
    refused: list[str]
    must_enrol: list[str]


class People(abc.ABC):
    @abc.abstractmethod
    def enroll(self, name: str, embeddings: np.ndarray, key: EmbeddingKey | str, sources: list[str],
               consent: str | None = None, add: bool = False, crops: list[bytes] | None = None) -> int:
        """Adds templates for ``name``; returns how many. A new name is a new person; a name already enrolled is
        refused (``AlreadyEnrolled``) unless ``add`` says these faces are that same person's. ``consent`` is
        recorded with the time it was given; ``crops`` (one JPEG per template) are kept, sealed, only when the
        person agreed to that."""

    @abc.abstractmethod
    def reembed(self, key: EmbeddingKey, embed) -> Reembedded:
        """Templates for ``key``'s model, made with ``embed(jpeg) -> (embedding | None, why)`` from the kept crops of
        everyone who has no template that model can match."""

    @abc.abstractmethod
    def remove(self, name: str) -> bool:
        """Deletes a person for real (identity, templates, their logged decisions), leaving no copy behind."""

    @abc.abstractmethod
    def rename(self, name: str, new_name: str) -> None:
        """Gives an enrolled person another name (refused when it is taken)."""

    @abc.abstractmethod
    def suspend(self, name: str, suspended: bool = True) -> None:
        """Suspends a person (still named, opens no door) or, with ``suspended=False``, resumes them."""

    @abc.abstractmethod
    def templates(self, key: EmbeddingKey | str) -> GalleryTemplates:
        """Mean templates of every identity enrolled with a file whose embeddings ``key``'s file may match (the
        same file, or a kind it accepts in its embedding space), and the identities enrolled only otherwise."""

    @abc.abstractmethod
    def identities(self) -> list[tuple[str, int]]:
        """(name, template count) for every enrolled identity, any model."""

    @abc.abstractmethod
    def export_person(self, name: str) -> dict:
        """Everything held about one person, JSON-ready: identity, consent, templates, logged decisions."""

    @abc.abstractmethod
    def import_person(self, exported: dict) -> int:
        """Adds a person ``export_person`` wrote, once all of it is checked; returns the template count."""


class Events(abc.ABC):
    @abc.abstractmethod
    def log(self, events: list[dict]) -> None:
        """Appends decisions (a crash loses a whole batch or nothing)."""

    @abc.abstractmethod
    def prune(self, unknown_days: float, named_days: float) -> int:
        """Deletes decisions past retention (unnamed ones and kept visitors after ``unknown_days``, named ones after
        ``named_days``); returns how many went."""

    @abc.abstractmethod
    def count(self) -> int:
        """How many decisions are logged."""


class Visitors(abc.ABC):
    @abc.abstractmethod
    def add(self, embeddings: np.ndarray, crop_jpeg: bytes | None, key: EmbeddingKey, record: dict) -> int:
        """Keeps an unnamed visit (its looks and one face crop) so that someone can name it later; its id."""

    @abc.abstractmethod
    def kept(self) -> list[dict]:
        """The kept visitors, newest first: id, time, source, outcome, score, has_crop."""

    @abc.abstractmethod
    def crop(self, visitor: int) -> bytes | None:
        """The visitor's face crop (JPEG), None when there is none."""

    @abc.abstractmethod
    def name(self, visitor: int, name: str, consent: str, add: bool = False) -> int:
        """Enrols a kept visitor's looks under ``name`` (an enrolled name only with ``add``) and forgets the
        visitor, both or neither; returns the template count."""

    @abc.abstractmethod
    def forget(self, visitor: int) -> bool:
        """Deletes a kept visitor for real; whether there was one."""


class Gallery(abc.ABC):
    """One opened store: its people, events and visitors."""

    path: Path
    people: People
    events: Events
    visitors: Visitors

    @abc.abstractmethod
    def version(self) -> int:
        """Changes whenever another connection commits, so a running kiosk sees a new enrolment at once."""

    @abc.abstractmethod
    def close(self) -> None:
        """Closes the store."""
