"""Where a writing command puts its files, planned and checked before it does any work.

The rules, checked on the whole plan before the model is loaded (a refusal halfway would
leave half the outputs written):

1. An output never overwrites a file the command reads: an image, the model's files, a
   mask, the config. Paths are compared resolved (symlinks, ``..``, relative or absolute)
   and, for files that exist, by identity (hard links, case-insensitive file systems).
   ``--overwrite`` does not lift this rule.
2. An output never silently replaces a file the user already had: without ``--overwrite``
   the first existing one is named.
3. Outputs never collide with each other: :func:`plan_names` gives inputs whose outputs
   would share a name (``a/x.png`` and ``b/x.jpg``, or names equal but for case, which a
   case-insensitive file system would merge) distinct names.

A folder written into must be a folder that can be written (one line now, not an error
after an hour of work), and temporary files a killed run left in it are removed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


class OutputConflict(ValueError):
    """An output that would overwrite an input or an existing file, or cannot be written.
    A ValueError, so the CLI reports it in one line with exit code 2."""


def resolved(path: str | os.PathLike) -> str:
    """``path`` absolute, with symlinks and ``..`` resolved as far as it exists (a string:
    a plan of ten thousand images resolves tens of thousands of paths)."""
    try:
        return os.path.realpath(path)
    except (OSError, ValueError):
        return os.path.abspath(path)


def _identity(path: str | os.PathLike) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def _ancestors(path: str) -> Iterator[str]:
    """``path`` and every folder above it."""
    while True:
        yield path
        parent = os.path.dirname(path)
        if parent == path:
            return
        path = parent


class Reads:
    """The files a command reads, each with how to name it in an error."""

    def __init__(self) -> None:
        self._paths: dict[str, str] = {}
        self._ids: dict[tuple[int, int], str] = {}
        self._trees: list[tuple[str, str]] = []
        self._under: dict[str, str] | None = None

    def add(self, path: str | os.PathLike, what: str) -> None:
        label = f"{what} {path}"
        self._paths.setdefault(resolved(path), label)
        self._under = None
        identity = _identity(path)
        if identity is not None:
            self._ids.setdefault(identity, label)

    def add_tree(self, folder: str | os.PathLike, what: str) -> None:
        """Every existing file under ``folder`` is read (a dataset): listing it could take
        minutes, so an output is tested against the folder instead."""
        self._trees.append((resolved(folder), f"{what} {folder}"))

    def clash(self, output: str | os.PathLike, target: str) -> str | None:
        """The input ``output`` (resolved: ``target``) would overwrite, or None."""
        if target in self._paths:
            return self._paths[target]
        identity = _identity(target)
        if identity is not None and identity in self._ids:
            return self._ids[identity]
        if self._trees and os.path.lexists(output):
            for root, label in self._trees:
                if root in _ancestors(target):
                    return f"file of the {label}"
        return None

    def inside(self, target: str) -> str | None:
        """An input inside the (resolved) folder ``target``, an output folder that is filled or replaced."""
        if self._under is None:  # built once: predict --masks asks for one folder per image
            self._under = {}
            for path, label in self._paths.items():
                for parent in _ancestors(path):
                    self._under.setdefault(parent, label)
        return self._under.get(target)


def check_outputs(
    files: Sequence[Path],
    reads: Reads,
    *,
    overwrite: bool,
    folders: Sequence[Path] = (),
) -> None:
    """Refuse the plan (:class:`OutputConflict`) if an output would overwrite an input (always),
    is a folder where a file goes, collides with another output, or already exists (unless
    ``overwrite``). ``files`` are written as files, ``folders`` as folders of files."""
    outputs = [*files, *folders]
    targets = {output: resolved(output) for output in outputs}
    for output, target in targets.items():
        what = reads.clash(output, target)
        if what is not None:
            raise OutputConflict(f"{output} would overwrite the {what}; choose another output")
    for folder in folders:
        what = reads.inside(targets[folder])
        if what is not None:
            raise OutputConflict(f"{folder} would be written over the {what}; choose another output")
    for output in files:
        if os.path.isdir(targets[output]):
            raise OutputConflict(f"{output} is a folder; give a file name")
    _check_distinct(outputs, folders, targets)
    if not overwrite:
        existing = [p for p in targets if os.path.lexists(p)]
        if existing:
            more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
            raise OutputConflict(f"{existing[0]} already exists{more}; pass --overwrite to replace")


def _check_distinct(outputs: Sequence[Path], folders: Sequence[Path], targets: dict[Path, str]) -> None:
    # Case-folded: two names equal but for case are one file on macOS and Windows.
    seen: dict[str, Path] = {}
    for output in outputs:
        key = targets[output].casefold()
        if key in seen:
            raise OutputConflict(f"{seen[key]} and {output} would be the same file; choose another output")
        seen[key] = output
    roots = {targets[folder].casefold(): folder for folder in folders}
    for output in outputs:
        for parent in _ancestors(os.path.dirname(targets[output])):
            folder = roots.get(parent.casefold())
            if folder is not None:
                raise OutputConflict(f"{output} would be written inside {folder}, another output; choose another name")


def check_folder(folder: Path, option: str) -> None:
    """``folder`` is, or can be made, a folder this process can write in."""
    folder = Path(os.path.abspath(folder))
    if os.path.lexists(folder) and not folder.is_dir():
        raise OutputConflict(f"{option} {folder} is a file, not a folder")
    existing = folder
    while not os.path.lexists(existing) and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputConflict(f"cannot create {option} {folder}: {existing} is a file, not a folder")
    # os.access also says no on a read-only file system, even to root.
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputConflict(f"cannot write {option} {folder}: {existing} is not writable (permission denied)")


def clear_stale(folders: Iterable[Path], command: str) -> None:
    """Remove the temporary files a killed run (``kill -9``) left in ``folders``."""
    from ..utils.atomic import remove_stale_temp_files

    for folder in dict.fromkeys(folders):
        try:
            removed = remove_stale_temp_files(folder)
        except OSError:  # an unlistable folder: its writes report themselves
            continue
        if removed:
            print(
                f"atrous {command}: removed {len(removed)} temporary file(s) an interrupted run left in {folder}",
                file=sys.stderr,
            )


@contextmanager
def writing(path: str | os.PathLike) -> Iterator[None]:
    """An OSError while writing ``path`` names ``path``, not the temporary file it went to."""
    try:
        yield
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc


def plan_names(paths: Sequence[Path], suffixes: Sequence[str]) -> list[str]:
    """A base name per input whose outputs (``base + suffix`` for each suffix) are distinct
    from every other input's: the input's stem when its outputs are free, else ``STEM-2``,
    ``STEM-3`` … — inputs keep their stems in input order first, so the result depends only
    on the command line. Names are compared case-folded (one file on macOS and Windows)."""

    def keys(base: str) -> set[str]:
        return {(base + suffix).casefold() for suffix in suffixes}

    taken: set[str] = set()
    names: list[str] = [path.stem for path in paths]
    renamed: list[int] = []
    for i, path in enumerate(paths):
        wanted = keys(path.stem)
        if taken.isdisjoint(wanted):
            taken |= wanted
        else:
            renamed.append(i)
    for i in renamed:  # after every stem that stays, so a renamed input never takes one
        number = 2
        while not taken.isdisjoint(keys(f"{paths[i].stem}-{number}")):
            number += 1
        names[i] = f"{paths[i].stem}-{number}"
        taken |= keys(names[i])
    return names


def unique_inputs(paths: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """``paths`` without repeats of one file (given twice, by a folder and a glob, or by
    two routes to it), in order; and the repeats dropped."""
    seen: set[object] = set()
    unique, repeats = [], []
    for path in paths:
        key = _identity(path) or resolved(path)
        if key in seen:
            repeats.append(path)
        else:
            seen.add(key)
            unique.append(path)
    return unique, repeats


def add_model_files(reads: Reads, model: str | os.PathLike | None, *, int8: bool = True) -> None:
    """The model's own files: what loading it reads, and what training keeps beside it
    (checkpoints, the recipe, the metrics) — losing any of them loses the user's work.
    ``int8``: include the int8 model folder (not for ``quantize``, which writes it)."""
    from ..engine.checkpoint import BEST, LAST
    from ..inference.int8 import INFO_NAME, MODEL_BIN, MODEL_XML
    from ..inference.loading import INT8_FOLDER
    from ..inference.temperature import TEMPERATURE_NAME
    from ..inference.torchvision_models import is_torchvision_spec
    from ..models.card import CARD_NAME
    from ..models.pretrained import CONFIG_NAME, WEIGHTS_NAME

    if model is None or is_torchvision_spec(model):
        return  # torch.hub's cache is no output's business
    path = Path(model)
    if path.is_file():
        reads.add(path, "model")
        folder = path.parent
    elif path.is_dir():
        folder = path
    else:
        return  # loading will say it does not exist
    names = {CONFIG_NAME, WEIGHTS_NAME, LAST, BEST, INFO_NAME, MODEL_XML, MODEL_BIN}
    names |= {"config.yaml", "metrics.jsonl", "precision.json", "confusion_matrix.npy", TEMPERATURE_NAME, CARD_NAME}
    suffixes = {".safetensors", ".pt", ".pth", ".ckpt"}
    runs = [folder]
    if (folder.parent / "config.yaml").is_file():  # a run's best/ or int8/: the run is the model's too
        runs.append(folder.parent)
    for run in runs:
        for sub in (run, run / "best", *([run / INT8_FOLDER] if int8 else [])):
            if sub.is_dir():
                for entry in sub.iterdir():
                    if entry.is_file() and (entry.name in names or entry.suffix in suffixes):
                        reads.add(entry, "model's file")
