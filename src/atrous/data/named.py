"""Datasets by name: what :func:`~atrous.data.build_dataset` and
:func:`~atrous.data.build_instance_dataset` share.

Both are a :class:`~atrous.utils.registry.Registry` of builders called as
``build(root, split, transforms, **options)``, looked up case-insensitively, whose
``options`` (``data.options`` in a recipe) are checked before anything is built.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ..options import check_options
from ..utils.registry import Registry

#: Leading positional parameters every builder takes: root, split, transforms (not options).
BUILDER_ARGS = 3


def dataset_registry(kind: str) -> Registry[Any]:
    """An empty registry of ``kind`` (``"dataset"``, ``"instance dataset"``); names in lower case."""
    return Registry(kind, fold_case=True)


def check_dataset_options(
    registry: Registry[Any], name: str, build: Callable[..., Any], options: Iterable[str]
) -> None:
    """Refuse, naming it, an option ``build`` does not take, before it is called.

    Otherwise a typo would surface as ``FolderDataset.__init__() got an unexpected keyword
    argument``, naming neither ``data.options`` nor the valid options.
    """
    check_options(build, options, what=f"{registry.kind} {name.lower()!r}", where="data.options", bound=BUILDER_ARGS)
