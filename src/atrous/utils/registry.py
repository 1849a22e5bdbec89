"""One name → builder table, with the one "did you mean" every table answers with.

Backbones, models, datasets, instance datasets and losses are each a :class:`Registry`;
config keys and option names use :func:`did_you_mean` directly. An unknown name is always
answered the same way: ``unknown model 'deeplabv3_resnet5'. Did you mean: deeplabv3_resnet50?``
followed by where to find the full list.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def close_names(
    name: str, choices: Iterable[str], *, n: int = 3, cutoff: float = 0.5, ignore_case: bool = False
) -> list[str]:
    """Up to ``n`` of ``choices`` that look like ``name`` (difflib's ratio ≥ ``cutoff``).

    ``ignore_case`` compares lower-cased spellings (``"OHME"`` is close to ``"ohem"``) and
    still returns the choices as they are spelt.
    """
    choices = list(choices)
    if not ignore_case:
        return difflib.get_close_matches(str(name), choices, n=n, cutoff=cutoff)
    spelt = {}
    for choice in choices:
        spelt.setdefault(choice.lower(), choice)
    return [spelt[c] for c in difflib.get_close_matches(str(name).lower(), list(spelt), n=n, cutoff=cutoff)]


def did_you_mean(
    name: str,
    choices: Iterable[str],
    *,
    n: int = 3,
    cutoff: float = 0.5,
    quote: bool = False,
    lead: str = " Did you mean: ",
    ignore_case: bool = False,
) -> str:
    """``" Did you mean: a, b?"`` for the choices close to ``name``, or ``""`` when none is.

    ``quote`` writes the names as ``'a'``; ``lead`` is what comes before them (the sentence
    the hint continues decides its punctuation); ``ignore_case`` as in :func:`close_names`.
    """
    close = close_names(name, choices, n=n, cutoff=cutoff, ignore_case=ignore_case)
    if not close:
        return ""
    return f"{lead}{', '.join(repr(c) if quote else c for c in close)}?"


class Registry(Generic[T]):
    """Names → builders (or classes), in registration order, with per-entry facts.

    Args:
        kind: what an entry is, as the error names it (``"model"``, ``"dataset"``).
        listing: where the user finds every name (``"atrous.list_models()"``); appended to
            the unknown-name error.
        fold_case: look names up case-insensitively (``"CamVid"`` finds ``"camvid"``); the
            names must then be registered in lower case.
        n, cutoff, quote, lead: how :func:`did_you_mean` is asked (always ignoring case: a
            hint's job is to find the name meant, and case never makes a name less close).
            A ``lead`` that opens with its own punctuation (``"; did you mean "``) goes
            straight after the unknown name instead of after a full stop.
    """

    def __init__(
        self,
        kind: str,
        *,
        listing: str | None = None,
        fold_case: bool = False,
        n: int = 3,
        cutoff: float = 0.5,
        quote: bool = False,
        lead: str = " Did you mean: ",
    ) -> None:
        self.kind = kind
        self.listing = listing
        self.fold_case = fold_case
        self._hint = dict(n=n, cutoff=cutoff, quote=quote, lead=lead, ignore_case=True)
        self._entries: dict[str, T] = {}
        self._info: dict[str, dict[str, Any]] = {}

    def add(self, name: str, entry: T, **info: Any) -> T:
        """Register ``entry`` as ``name``; ``info`` is kept beside it (a task, a module …)."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        if self.fold_case and name != name.lower():
            raise ValueError(f"{self.kind} {name!r}: names of a case-folding registry are lower case")
        self._entries[name] = entry
        self._info[name] = info
        return entry

    def register(self, name: str | None = None, **info: Any) -> Callable[[T], T]:
        """Decorator form of :meth:`add`; the name defaults to the function's."""

        def decorate(entry: T) -> T:
            return self.add(name or entry.__name__, entry, **info)  # type: ignore[attr-defined]

        return decorate

    def get(self, name: str) -> T:
        """The entry called ``name``; a ``ValueError`` naming the close ones otherwise."""
        key = name.lower() if self.fold_case and isinstance(name, str) else name
        try:
            return self._entries[key]
        except (KeyError, TypeError):
            raise ValueError(self.unknown_message(name)) from None

    __getitem__ = get  # ``registry[name]``, with the same error

    def info(self, name: str) -> dict[str, Any]:
        self.get(name)
        return self._info[name.lower() if self.fold_case else name]

    def unknown_message(self, name: str) -> str:
        hint = did_you_mean(str(name), self._entries, **self._hint)
        head = f"unknown {self.kind} {name!r}" + (hint if hint[:1] not in ("", " ") else f".{hint}")
        if self.listing:
            return f"{head} {self.listing} lists all {len(self._entries)}."
        return f"{head} Available: {', '.join(self._entries)}."

    def names(self, pattern: str = "*", **where: Any) -> list[str]:
        """Sorted names matching the glob ``pattern`` whose facts equal ``where``."""
        return sorted(
            n
            for n in self._entries
            if fnmatch.fnmatch(n, pattern) and all(self._info[n].get(k) == v for k, v in where.items())
        )

    def __contains__(self, name: object) -> bool:
        key = name.lower() if self.fold_case and isinstance(name, str) else name
        try:
            return key in self._entries
        except TypeError:  # unhashable: not a name
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
