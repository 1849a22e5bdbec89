"""Which keyword options a builder accepts, found before it is called.

Models and datasets are built through chains of ``**kwargs``: ``create_model("deeplabv3_resnet18",
**options)`` reaches ``build_segmentor`` → ``_assemble`` → ``create_backbone`` → the
backbone's builder. A typo in ``model.options`` then surfaces deep down as ``create_resnet()
got an unexpected keyword argument``, naming neither the option's place nor the valid
ones, and only after half the model was built. :func:`check_options` finds the keywords
the whole chain accepts and rejects a bad one up front, with a did-you-mean and the list.

:func:`accepted_keywords` reads signatures and, where a function has ``**kwargs``, its
source: the calls that forward ``**kwargs`` (or pass the dict on, as ``f(name, kwargs)``)
are followed to their callees — module functions, closure variables, classes (their
``__init__``) and ``super().__init__`` — and keys taken out by ``kwargs.pop("key")`` /
``.get`` / ``kwargs["key"]`` count as accepted. Names a caller already passes explicitly
are not (passing them again would be "multiple values"). A dispatch on a runtime value
(``create_backbone`` picking a builder by name) has a resolver here. Anything this cannot
follow makes the answer ``None``, and :func:`check_options` then checks nothing, so an
unusual builder is never refused by mistake.
"""

from __future__ import annotations

import ast
import builtins
import functools
import inspect
import textwrap
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .utils.registry import close_names

_MAX_DEPTH = 12
_DICT_READERS = ("pop", "get", "setdefault")
_NOT_CONST = object()


@dataclass(frozen=True)
class _Target:
    fn: Callable[..., Any]  # the function whose parameters are read
    owner: type | None  # the class being built, for super() in its __init__ chain
    defining: type | None  # the class that defines ``fn``
    bound: int  # leading positional parameters already filled (self, partial's args)


def _target(obj: Any, owner: type | None = None) -> _Target | None:
    if isinstance(obj, functools.partial):  # its keywords stay overridable, its positional arguments do not
        inner = _target(obj.func, owner)
        return None if inner is None else _Target(inner.fn, inner.owner, inner.defining, inner.bound + len(obj.args))
    if isinstance(obj, type):
        for klass in obj.__mro__:
            if "__init__" in vars(klass):
                init = vars(klass)["__init__"]
                if klass is object:
                    return None
                return _Target(init, obj, klass, 1) if inspect.isfunction(init) else None
        return None
    if inspect.ismethod(obj):
        return _Target(obj.__func__, owner, None, 1)
    if inspect.isfunction(obj):
        return _Target(inspect.unwrap(obj), owner, None, 0)
    return None


def _backbone_builder(consts: Mapping[str, Any]) -> dict[str, Any]:
    # create_backbone picks its builder by the backbone name at run time; resolve it the
    # same way for the name this chain passes (a literal in every registered model).
    from . import backbones

    name = consts.get("name")
    if not isinstance(name, str) or name not in backbones.BACKBONES:
        return {}
    return {"builder": backbones.backbone_builder(name)}


# function (module.qualname) -> its local names that hold callees, given the constant arguments.
_LOCAL_RESOLVERS: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    "atrous.backbones.create_backbone": _backbone_builder,
}


@functools.lru_cache(maxsize=256)
def _function_node(fn: Callable[..., Any]) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError):
        return None
    node = tree.body[0] if tree.body else None
    return node if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) else None


def _is_name(node: ast.AST, name: str) -> bool:
    return isinstance(node, ast.Name) and node.id == name


def _const(node: ast.AST, consts: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name) and node.id in consts:
        return consts[node.id]
    return _NOT_CONST


class _Resolver:
    def __init__(self) -> None:
        self.depth = 0

    def keywords(self, target: _Target, consts: Mapping[str, Any]) -> set[str] | None:
        """Keywords ``target`` accepts: its named parameters, plus what its ``**kwargs`` reach."""
        params = self._params(target)
        if params is None:
            return None
        named = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        var_kw = next((p.name for p in params if p.kind == p.VAR_KEYWORD), None)
        if var_kw is None:
            return named
        extra = self.dict_keys(target, var_kw, consts)
        return None if extra is None else named | extra

    def _params(self, target: _Target) -> list[inspect.Parameter] | None:
        try:
            params = list(inspect.signature(target.fn, follow_wrapped=False).parameters.values())
        except (TypeError, ValueError):
            return None
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        skipped = {p.name for p in positional[: target.bound]}
        return [p for p in params if p.name not in skipped]

    def dict_keys(self, target: _Target, name: str, consts: Mapping[str, Any]) -> set[str] | None:
        """Keys the dict held in ``target``'s variable ``name`` may carry without an error."""
        self.depth += 1
        try:
            if self.depth > _MAX_DEPTH:
                return None
            return self._dict_keys(target, name, consts)
        finally:
            self.depth -= 1

    def _dict_keys(self, target: _Target, name: str, consts: Mapping[str, Any]) -> set[str] | None:
        node = _function_node(target.fn)
        if node is None:
            return None
        uses = sum(1 for n in ast.walk(node) if _is_name(n, name) and isinstance(n.ctx, ast.Load))
        explained = 0
        keys: set[str] = set()
        followed = False
        for n in ast.walk(node):
            if isinstance(n, ast.Dict):  # {**kwargs}: a copy, which constrains nothing
                explained += sum(1 for k, v in zip(n.keys, n.values, strict=True) if k is None and _is_name(v, name))
            if isinstance(n, ast.Subscript) and _is_name(n.value, name):
                key = _const(n.slice, {})
                if not isinstance(key, str):
                    return None
                keys.add(key)
                explained += 1
            if not isinstance(n, ast.Call):
                continue
            func = n.func
            if isinstance(func, ast.Attribute) and _is_name(func.value, name):
                key = _const(n.args[0], {}) if n.args else _NOT_CONST
                if func.attr not in _DICT_READERS or not isinstance(key, str):
                    return None  # kwargs.items(), .update(...): cannot tell what is accepted
                keys.add(key)
                explained += 1
                continue
            forwarded = any(k.arg is None and _is_name(k.value, name) for k in n.keywords)
            passed_at = [i for i, a in enumerate(n.args) if _is_name(a, name)]
            if not forwarded and not passed_at:
                continue
            callee = self._callee(func, target, consts)
            if callee is None:
                return None
            callee_consts = self._call_consts(n, callee, consts)
            if forwarded:
                explained += 1
                accepted = self.keywords(callee, callee_consts)
                if accepted is None:
                    return None
                keys |= accepted - self._explicit(n, callee)
            for i in passed_at:  # f(x, kwargs): the callee forwards it under its own name
                explained += 1
                params = self._params(callee)
                positional = [p for p in params or [] if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
                if params is None or i >= len(positional):
                    return None
                inner = self.dict_keys(callee, positional[i].name, callee_consts)
                if inner is None:
                    return None
                keys |= inner
            followed = True
        if explained < uses:
            return None  # used in a way not followed here (stored, iterated, tested)
        if not followed and not keys:
            return None  # swallowed whole: nothing tells which keys are fine
        return keys

    def _callee(self, func: ast.AST, target: _Target, consts: Mapping[str, Any]) -> _Target | None:
        # super().__init__(...) inside an __init__ of the class being built
        if (
            isinstance(func, ast.Attribute)
            and func.attr == "__init__"
            and isinstance(func.value, ast.Call)
            and _is_name(func.value.func, "super")
            and not func.value.args
        ):
            if target.owner is None or target.defining is None:
                return None
            mro = target.owner.__mro__
            for klass in mro[mro.index(target.defining) + 1 :]:
                if "__init__" in vars(klass):
                    init = vars(klass)["__init__"]
                    if klass is object or not inspect.isfunction(init):
                        return None
                    return _Target(init, target.owner, klass, 1)
            return None
        obj = self._lookup(func, target, consts)
        return None if obj is None else _target(obj)

    def _lookup(self, node: ast.AST, target: _Target, consts: Mapping[str, Any]) -> Any:
        if isinstance(node, ast.Attribute):
            base = self._lookup(node.value, target, consts)
            return None if base is None else getattr(base, node.attr, None)
        if not isinstance(node, ast.Name):
            return None
        fn = target.fn
        resolver = _LOCAL_RESOLVERS.get(f"{fn.__module__}.{fn.__qualname__}")
        if resolver is not None:
            local = resolver(consts)
            if node.id in local:
                return local[node.id]
        try:
            closure = inspect.getclosurevars(fn).nonlocals
        except (TypeError, ValueError):
            closure = {}
        if node.id in closure:
            return closure[node.id]
        if node.id in fn.__globals__:
            return fn.__globals__[node.id]
        return getattr(builtins, node.id, None)

    def _call_consts(self, call: ast.Call, callee: _Target, consts: Mapping[str, Any]) -> dict[str, Any]:
        """Constant arguments of ``call`` by the callee's parameter names (for dispatch resolvers)."""
        values: dict[str, Any] = {}
        params = self._params(callee) or []
        positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        for name, arg in zip(positional, call.args, strict=False):
            if isinstance(arg, ast.Starred):
                break
            value = _const(arg, consts)
            if value is not _NOT_CONST:
                values[name] = value
        for keyword in call.keywords:
            if keyword.arg is not None:
                value = _const(keyword.value, consts)
                if value is not _NOT_CONST:
                    values[keyword.arg] = value
        return values

    def _explicit(self, call: ast.Call, callee: _Target) -> set[str]:
        """Parameters ``call`` fills itself, positionally or by name."""
        names = {k.arg for k in call.keywords if k.arg is not None}
        params = self._params(callee) or []
        positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        count = 0
        for arg in call.args:
            if isinstance(arg, ast.Starred):
                return set(positional) | names  # *args: any positional may be filled
            count += 1
        return names | set(positional[:count])


def accepted_keywords(builder: Callable[..., Any], *, bound: int = 0) -> set[str] | None:
    """The keyword arguments ``builder`` (a function or class) accepts, following ``**kwargs``.

    Args:
        builder: what will be called.
        bound: leading positional parameters the caller always fills (not options).

    Returns:
        The names, or ``None`` when the ``**kwargs`` chain cannot be followed (then anything may be fine).
    """
    target = _target(builder)
    if target is None:
        return None
    target = _Target(target.fn, target.owner, target.defining, target.bound + bound)
    return _Resolver().keywords(target, {})


def check_options(
    builder: Callable[..., Any],
    options: Iterable[str],
    *,
    what: str,
    where: str,
    bound: int = 0,
    also: Collection[str] = (),
) -> None:
    """Raise a ``TypeError`` naming the options ``builder`` does not accept, before it is called.

    Args:
        builder: what the options will be passed to.
        options: their names.
        what: the thing being built, for the message (``"model 'unet'"``).
        where: where such options are set, for the message (``"model.options"``).
        bound: leading positional parameters the caller fills itself.
        also: names the caller takes out before calling (accepted too).

    Raises:
        TypeError: ``"model 'unet' has no option 'base_ch'. Did you mean base_chs? Its options (model.options): ..."``.
    """
    accepted = accepted_keywords(builder, bound=bound)
    if accepted is None:
        return
    accepted |= set(also)
    unknown = [name for name in options if name not in accepted]
    if not unknown:
        return
    shown = sorted(name for name in accepted if not name.startswith("_"))  # _private ones pass, unlisted
    hints = {}
    for name in unknown:
        close = close_names(name, shown, n=3, cutoff=0.6)
        if close:
            hints[name] = " or ".join(close)
    noun = "option" if len(unknown) == 1 else "options"
    message = f"{what} has no {noun} {', '.join(repr(n) for n in unknown)}"
    if len(unknown) == 1 and hints:
        message += f". Did you mean {hints[unknown[0]]}?"
    elif hints:
        message += " (" + "; ".join(f"{name!r}: did you mean {close}?" for name, close in hints.items()) + ")"
    if shown:
        message += f"{'' if message.endswith('?') else '.'} Its options ({where}): {', '.join(shown)}"
    else:
        message += f"; it takes no options ({where})"
    raise TypeError(message)
