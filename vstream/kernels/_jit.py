"""Kernels compiled by numba, with numba imported when the first kernel runs.

``import numba`` costs ~0.15-0.3 s (llvmlite, numba's type system), a third of
``import vstream``; a user who builds a pipeline and reads ``explain()`` needs no kernel.
So the kernel modules decorate with :func:`njit` from here: it records the function and
its options, and the first call of any kernel (or :func:`load`) imports numba, runs the
registered :func:`on_load` hooks (``@overload`` and ``@intrinsic`` definitions, which need
numba's extension API) and makes every recorded function a numba dispatcher.

Compiled code that calls a kernel finds a :class:`Kernel` in its module's globals; numba
types it as its dispatcher (``_numba_type_``), so it compiles as a call of the
dispatcher. :func:`load` then puts each dispatcher in place of its Kernel in the globals
of every ``vstream`` module, so Python calls go to numba directly; a Kernel kept
elsewhere forwards its calls. Once loaded, :func:`njit` returns the dispatcher itself.
With ``NUMBA_DISABLE_JIT=1`` numba's ``njit`` returns the Python function, and so does
the load here.
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:  # numba's stubs: to the type checker a kernel is what numba.njit makes
    from numba.core.dispatcher import Dispatcher

__all__ = ["Kernel", "load", "loaded", "njit", "on_load"]

F = TypeVar("F", bound=Callable[..., Any])

_lock = threading.RLock()
_kernels: list[Kernel] = []
_hooks: list[Callable[[], None]] = []
_loaded = False


class Kernel:
    """A function numba compiles when a kernel is first called, with its ``njit`` options.

    Calling it loads the kernels (:func:`load`) and calls the dispatcher. ``py_func`` is
    the Python function, as on a numba dispatcher; other attributes are the dispatcher's.
    """

    def __init__(self, py_func: Callable[..., Any], options: dict[str, Any]) -> None:
        functools.update_wrapper(self, py_func)
        self.py_func = py_func
        self.options = options
        self.compiled: Any = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.compiled is None:
            load()
        return self.compiled(*args, **kwargs)

    @property
    def _numba_type_(self) -> Any:
        # numba's typeof asks a global for it: compiled code calls the dispatcher
        load()
        return self.compiled._numba_type_

    def __getattr__(self, name: str) -> Any:
        # only for names the object lacks: numba's own (signatures, inspect_types, ...)
        if name.startswith("__") or name in ("compiled", "py_func", "options"):
            raise AttributeError(name)
        load()
        return getattr(self.compiled, name)

    def __repr__(self) -> str:
        state = "not compiled yet" if self.compiled is None else repr(self.compiled)
        return f"<vstream kernel {self.py_func.__qualname__}: {state}>"


def njit(**options: Any) -> Callable[[F], Dispatcher[F]]:
    """``numba.njit(**options)``, applied when the kernels are loaded. To the type checker
    the kernel is a numba dispatcher, as ``numba.njit`` makes it.

    Examples
    --------
    >>> from vstream.kernels._jit import njit
    >>> @njit(cache=False, nogil=True)
    ... def twice(x):
    ...     return 2 * x
    >>> twice(21)
    42
    """

    def decorate(fn: F) -> Dispatcher[F]:
        with _lock:
            if _loaded:
                import numba

                compiled: Dispatcher[F] = numba.njit(**options)(fn)
                return compiled
            kernel = Kernel(fn, options)
            _kernels.append(kernel)
            return kernel  # type: ignore[return-value]  # called as the dispatcher is

    return decorate


def on_load(hook: Callable[[], None]) -> Callable[[], None]:
    """Run ``hook`` when the kernels are loaded, before any is compiled (at once if they
    are): for definitions that need numba's extension API (``@overload``,
    ``@intrinsic``). Returns ``hook``."""
    with _lock:
        if _loaded:
            hook()
        else:
            _hooks.append(hook)
    return hook


def loaded() -> bool:
    """Whether numba has been imported and the kernels made dispatchers."""
    return _loaded


def load() -> None:
    """Import numba, run the :func:`on_load` hooks and make every kernel a dispatcher (once;
    later calls return at once). Compilation itself still happens per kernel, at its
    first call, or from numba's on-disk cache."""
    global _loaded
    if _loaded:
        return
    with _lock:
        if _loaded:
            return
        import numba

        for hook in _hooks:
            hook()
        for kernel in _kernels:
            kernel.compiled = numba.njit(**kernel.options)(kernel.py_func)
        _loaded = True
        _hooks.clear()
        dispatchers = {id(k): k.compiled for k in _kernels}
        _kernels.clear()
        # Python calls go to the dispatchers directly, not through the Kernels
        for name, module in list(sys.modules.items()):
            if not (name == "vstream" or name.startswith("vstream.")) or module is None:
                continue
            space = vars(module)
            for attr, value in list(space.items()):
                if isinstance(value, Kernel) and id(value) in dispatchers:
                    space[attr] = dispatchers[id(value)]
