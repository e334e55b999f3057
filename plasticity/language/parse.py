"""The rule language written as text: :func:`parse` turns a string into the same objects
as the Python expressions (for users coming from Brian2's or Lava's rule strings).

Only the language is read: numbers, ``+ - * / **``, the names ``pre``, ``post``,
``modulator``, ``weight``, ``eligibility``, the functions ``relu``, ``abs``, ``sigmoid``,
``exp``, ``tanh``, ``heaviside``, the numbers passed by name, and the
signals' own attributes (``.spike``, ``.trace(...)``, ``.before``...), and a string only
as the name of a fed signal (``post.signal('L')``). Nothing else is evaluated: no other
name, attribute, call or statement.

What it evaluates is bounded before it is computed: an expression nests at most
:data:`MAX_DEPTH` levels, and arithmetic on numbers stays within floats (a power whose
result would exceed ``1.8e308``, such as ``9**9**9``, is refused before Python computes it).
"""

from __future__ import annotations

import ast
import math
import operator
from numbers import Real
from typing import Any

from .text import _number

__all__ = ["parse"]

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.Pow: operator.pow}  # fmt: skip
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}
#: the attributes of the sides and signals that a declaration may read
_ATTRIBUTES = {"spike", "voltage", "trace", "rate", "before", "previous", "delayed",
               "lowpass", "batch_mean", "signal"}  # fmt: skip
_KEYWORDS = {"nearest", "init", "per_sample"}
#: the deepest nesting of operations, calls and attributes read (far beyond any rule)
MAX_DEPTH = 100
_FLOAT_BITS = 1024  # a number of 2**1024 or more is no float


def parse(text: str, **values: float) -> Any:
    """The declaration written in ``text``, with ``values`` as named numbers: the same
    objects (and the same ``repr``) as the Python expression.

    Args:
        text: a term or a sum of terms, e.g. ``"a_plus * post.spike * pre.trace(tau)"``.
        **values: the numbers the text names (``a_plus=0.01, tau=20.0``).

    Raises:
        TypeError: ``text`` is not a string, or a value is not a real number.
        ValueError: the text is not an expression of the language (the message names
            the part), or a term does not factor into post × pre.

    Example:
        >>> from plasticity.language import parse, post, pre
        >>> parse("a * post.spike * pre.trace(tau)", a=0.01, tau=20.0)
        0.01 * post.spike * pre.trace(20)
        >>> repr(parse("0.01 * post.trace(20).before * pre.spike")) == repr(
        ...     0.01 * post.trace(20.0).before * pre.spike)
        True
        >>> parse("post.spike * os.system('ls')")
        Traceback (most recent call last):
        ...
        ValueError: unknown name 'os' in "post.spike * os.system('ls')": the language knows pre, post, modulator, weight, eligibility, relu, abs, sigmoid, exp, tanh, heaviside and the values passed by name
    """
    if not isinstance(text, str):
        raise TypeError(f"`text` must be a string, got {type(text).__name__}")
    from . import eligibility, exp, heaviside, modulator, post, pre, relu, sigmoid, tanh, weight
    from .functions import absolute

    names: dict[str, Any] = {"pre": pre, "post": post, "modulator": modulator,
                             "weight": weight, "relu": relu, "eligibility": eligibility,
                             "abs": absolute, "sigmoid": sigmoid, "exp": exp, "tanh": tanh,
                             "heaviside": heaviside}  # fmt: skip
    for key, value in values.items():
        if key in names:
            raise ValueError(f"`{key}` is a name of the language; give the number another name")
        _number(value, f"`{key}`")  # checked; kept as given (an int stays one)
        names[key] = value
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as error:
        raise ValueError(f"{_short(text)} is not an expression: {error.msg}") from None
    except (RecursionError, MemoryError):  # Python's parser gives up on deep nesting
        raise ValueError(f"{_short(text)} nests too deeply to be read: a rule nests at most "
                         f"{MAX_DEPTH} levels") from None  # fmt: skip
    _check_depth(tree.body, text)
    return _Reader(text.strip(), names).read(tree.body)


def _short(text: str) -> str:
    return repr(text) if len(text) <= 120 else f"{text[:100]!r}... ({len(text)} characters)"


def _check_depth(root: ast.AST, text: str) -> None:
    """Refuses an expression nested deeper than :data:`MAX_DEPTH` (walked without
    recursion), before anything is evaluated."""
    stack = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ValueError(f"{_short(text)} nests more than {MAX_DEPTH} levels deep; write "
                             "the rule with fewer nested parts")  # fmt: skip
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))


def _plain(x: Any) -> bool:
    return isinstance(x, Real) and not isinstance(x, bool)


class _Reader:
    def __init__(self, text: str, names: dict[str, Any]) -> None:
        self.text, self.names = text, names

    def fail(self, what: str) -> ValueError:
        return ValueError(f"{what} in {_short(self.text)}: the language knows pre, post, "
                          "modulator, weight, eligibility, relu, abs, sigmoid, exp, tanh, "
                          "heaviside and the values passed by name")  # fmt: skip

    def source(self, node: ast.AST) -> str:
        return _short(ast.get_source_segment(self.text, node) or ast.unparse(node))

    def number(self, value: Any, node: ast.AST) -> Any:
        """``value`` if it is a real number a float can hold (an int stays one)."""
        if not isinstance(value, Real) or (
            isinstance(value, int) and abs(value).bit_length() > _FLOAT_BITS
        ) or (isinstance(value, float) and not math.isfinite(value)):
            raise self.fail(f"the number {self.source(node)} (not a finite float)")
        return value

    def arithmetic(self, node: ast.BinOp, a: Any, b: Any) -> Any:
        """``a op b`` on two numbers, refused before it is computed when a power's result
        would not fit a float (``9**9**9`` would take Python forever)."""
        if isinstance(node.op, ast.Pow) and isinstance(a, int) and isinstance(b, int):
            if b > 0 and abs(a) > 1 and b * math.log2(abs(a)) > _FLOAT_BITS:
                raise self.fail(f"the number {self.source(node)} (not a finite float)")
        try:
            value = _BINARY[type(node.op)](a, b)
        except OverflowError:
            raise self.fail(f"the number {self.source(node)} (not a finite float)") from None
        return self.number(value, node)

    def name(self, node: ast.AST) -> Any:
        """The argument of ``side.signal(...)``: a string (the only one the text reads)."""
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        return self.read(node)

    def constant(self, node: ast.Constant) -> Any:
        """A number (an int stays one, as in Python: ``x ** 2``, ``.delayed(2)``)."""
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise self.fail(f"the constant {node.value!r}")
        return self.number(node.value, node)

    def attribute(self, node: ast.Attribute) -> Any:
        """One of the language's attributes (``.spike``, ``.trace``, ...) of what it reads."""
        value = self.read(node.value)
        if node.attr not in _ATTRIBUTES:
            raise self.fail(f"the attribute .{node.attr}")
        if not hasattr(type(value), node.attr):  # e.g. (1).spike, relu.trace
            raise self.fail(f"the attribute .{node.attr} of {self.source(node.value)}")
        return getattr(value, node.attr)

    def call(self, node: ast.Call) -> Any:
        """A call of one of the language's functions or methods (known keywords only)."""
        function = self.read(node.func)
        if not callable(function):
            raise self.fail(f"{ast.unparse(node.func)!r} called")
        named = getattr(function, "__name__", None) == "signal"  # pre/post.signal('name')
        args = [self.name(a) if named else self.read(a) for a in node.args]
        kwargs = {}
        for k in node.keywords:
            if k.arg not in _KEYWORDS:
                raise self.fail(f"the keyword {k.arg}=")
            v = k.value
            constant = isinstance(v, ast.Constant) and (v.value is None or isinstance(v.value, bool))
            kwargs[k.arg] = v.value if constant else self.read(v)  # type: ignore[union-attr]
        return function(*args, **kwargs)

    def read(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Constant):
            return self.constant(node)
        if isinstance(node, ast.Name):
            if node.id not in self.names:
                raise self.fail(f"unknown name {node.id!r}")
            return self.names[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            a, b = self.read(node.left), self.read(node.right)
            if _plain(a) and _plain(b):
                return self.arithmetic(node, a, b)
            return _BINARY[type(node.op)](a, b)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](self.read(node.operand))
        if isinstance(node, ast.Attribute):
            return self.attribute(node)
        if isinstance(node, ast.Call):
            return self.call(node)
        raise self.fail(f"{ast.unparse(node)!r} ({type(node).__name__})")
