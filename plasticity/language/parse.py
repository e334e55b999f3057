"""The rule language written as text: :func:`parse` turns a string into the same objects
as the Python expressions (for users coming from Brian2's or Lava's rule strings).

Only the language is read: numbers, ``+ - * / **``, the names ``pre``, ``post``,
``modulator``, ``weight``, ``relu``, ``eligibility``, the numbers passed by name, and the
signals' own attributes (``.spike``, ``.trace(...)``, ``.before``...). Nothing else is
evaluated: no other name, attribute, call or statement.
"""

from __future__ import annotations

import ast
import operator
from typing import Any

from .text import _number

__all__ = ["parse"]

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.Pow: operator.pow}  # fmt: skip
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}
#: the attributes of the sides and signals that a declaration may read
_ATTRIBUTES = {"spike", "voltage", "trace", "rate", "before", "previous", "delayed",
               "lowpass", "batch_mean"}  # fmt: skip
_KEYWORDS = {"nearest", "init", "per_sample"}


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
        ValueError: unknown name 'os' in "post.spike * os.system('ls')": the language knows pre, post, modulator, weight, relu, eligibility and the values passed by name
    """
    if not isinstance(text, str):
        raise TypeError(f"`text` must be a string, got {type(text).__name__}")
    from . import eligibility, modulator, post, pre, relu, weight

    names: dict[str, Any] = {"pre": pre, "post": post, "modulator": modulator,
                             "weight": weight, "relu": relu, "eligibility": eligibility}  # fmt: skip
    for key, value in values.items():
        if key in names:
            raise ValueError(f"`{key}` is a name of the language; give the number another name")
        _number(value, f"`{key}`")  # checked; kept as given (an int stays one)
        names[key] = value
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as error:
        raise ValueError(f"{text!r} is not an expression: {error.msg}") from None
    return _Reader(text, names).read(tree.body)


class _Reader:
    def __init__(self, text: str, names: dict[str, Any]) -> None:
        self.text, self.names = text, names

    def fail(self, what: str) -> ValueError:
        return ValueError(f"{what} in {self.text!r}: the language knows pre, post, modulator, "
                          "weight, relu, eligibility and the values passed by name")  # fmt: skip

    def read(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                raise self.fail(f"the constant {node.value!r}")
            return node.value  # an int stays one, as in Python (`x ** 2`, `.delayed(2)`)
        if isinstance(node, ast.Name):
            if node.id not in self.names:
                raise self.fail(f"unknown name {node.id!r}")
            return self.names[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            return _BINARY[type(node.op)](self.read(node.left), self.read(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](self.read(node.operand))
        if isinstance(node, ast.Attribute):
            value = self.read(node.value)
            if node.attr not in _ATTRIBUTES:
                raise self.fail(f"the attribute .{node.attr}")
            return getattr(value, node.attr)
        if isinstance(node, ast.Call):
            function = self.read(node.func)
            if not callable(function):
                raise self.fail(f"{ast.unparse(node.func)!r} called")
            args = [self.read(a) for a in node.args]
            kwargs = {}
            for k in node.keywords:
                if k.arg not in _KEYWORDS:
                    raise self.fail(f"the keyword {k.arg}=")
                v = k.value
                constant = isinstance(v, ast.Constant) and (v.value is None or isinstance(v.value, bool))
                kwargs[k.arg] = v.value if constant else self.read(v)  # type: ignore[union-attr]
            return function(*args, **kwargs)
        raise self.fail(f"{ast.unparse(node)!r} ({type(node).__name__})")
