"""Registries of kernel modules (activations, losses) and the code-dispatching kernels generated from them.

An activation or a loss is one module that owns every kernel about it; the
engines call it through a *dispatcher*: a kernel taking the integer code
first, written here as a chain of ``if code == CODE: return module.fn(...)``
over the registered modules and ending in ``raise``, so that an unknown
code (or a function that a module does not have) raises instead of falling
through to a plausible wrong answer. Numba compiles the chain like
hand-written code; a module added to the package adds a branch.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from ._jit import jit


def discover(package: str, path: Sequence[str]) -> tuple[ModuleType, ...]:
    """Import every module of ``package`` whose name does not start with ``_``; return them sorted by ``CODES``.

    Each module declares ``CODE`` (one int) or ``CODES`` (several, for modules that serve several names with
    one implementation), and ``NAME``/``NAMES`` alike. Duplicate codes or names raise ``ImportError``.
    """
    modules = [importlib.import_module(f"{package}.{info.name}") for info in pkgutil.iter_modules(path)
               if not info.name.startswith("_")]
    modules.sort(key=lambda m: codes_of(m)[0])
    codes = [c for m in modules for c in codes_of(m)]
    names = [n for m in modules for n in names_of(m)]
    if len(set(codes)) != len(codes) or len(set(names)) != len(names):
        raise ImportError(f"{package}: duplicate CODE or NAME among {[m.__name__ for m in modules]}")
    return tuple(modules)


def codes_of(module: ModuleType) -> tuple[int, ...]:
    """The codes a module serves (``CODES``, or ``(CODE,)``)."""
    return tuple(getattr(module, "CODES", None) or (module.CODE,))


def names_of(module: ModuleType) -> tuple[str, ...]:
    """The names a module serves (``NAMES``, or ``(NAME,)``), in the order of :func:`codes_of`."""
    return tuple(getattr(module, "NAMES", None) or (module.NAME,))


class Dispatchers:
    """Generates and holds one package's dispatchers (their source is kept in :attr:`source`)."""

    def __init__(self, what: str, modules: Sequence[ModuleType], filename: str) -> None:
        self.what = what
        self.modules = tuple(modules)
        self.filename = filename
        self.namespace: dict[str, Any] = {f"_{m.__name__.rsplit('.', 1)[1]}": m for m in self.modules}
        self.sources: list[str] = []

    def make(self, signature: str, body: Callable[[ModuleType], str], head: str = "",
             need: str | Callable[[ModuleType], bool] | None = None, inline: bool = False, **names: Any) -> Any:
        """Compile ``def signature:`` + ``head`` + one branch per module + ``raise``.

        ``body(m)`` is the branch's code for module ``m``, with ``{m}`` standing for the module and ``{p}`` for
        ``, code`` when the module has a ``CODE_TEST`` (its codes carry a parameter) and for nothing otherwise;
        the branch is taken for each of the module's codes and those its ``CODE_TEST`` accepts. Modules
        without the attribute ``need`` (or for which the
        predicate ``need(m)`` is false) get no branch.
        ``names`` are extra globals of the generated function. ``inline``: inline the dispatcher into its
        callers at Numba IR level (for the small ones called per element in hot loops).
        """
        name = signature.split("(")[0]
        lines = [f"def {signature}:"] + (["    " + line for line in head.splitlines()] if head else [])
        for m in self.modules:
            if need is not None and not (need(m) if callable(need) else hasattr(m, need)):
                continue
            codes = codes_of(m)
            # a module whose parameter travels in its code (leaky_relu's slope) also claims the codes CODE_TEST
            # accepts, and gets the code as its kernels' last argument where the body says {p}
            claims = [f"code == {c}" for c in codes] + ([m.CODE_TEST] if getattr(m, "CODE_TEST", None) else [])
            test = " or ".join(claims)
            lines.append(f"    if {test}:  # {', '.join(names_of(m))}")
            short = f"_{m.__name__.rsplit('.', 1)[1]}"
            extra = ", code" if getattr(m, "CODE_TEST", None) else ""
            lines += ["        " + line.replace("{m}", short).replace("{p}", extra) for line in body(m).splitlines()]
        lines.append(f'    raise ValueError("fastgrad {self.what}.{name}: unknown code (or not defined for it)")')
        source = "\n".join(lines) + "\n"
        self.sources.append(source)
        self.namespace.update(names)
        # compiled under the package's file name: Numba caches a function next to its source file (keyed by
        # the bytecode and by every source of the package, _cache.py), so a new module never loads stale code
        exec(compile(source, self.filename, "exec"), self.namespace)
        function = self.namespace[name]
        function.__module__ = self.modules[0].__name__.rsplit(".", 1)[0]
        return jit(inline=inline)(function)

    @property
    def source(self) -> str:
        """The generated source of every dispatcher made so far."""
        return "\n".join(self.sources)
