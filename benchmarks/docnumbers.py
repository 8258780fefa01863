"""Measured numbers in README.md and docs/*.md, rendered from benchmarks/results/*.json.

A measured value in the Markdown sits between two HTML comments (invisible on GitHub):

    <!-- r green2020::feh::network sigma -->0.195<!-- /r -->
    <!-- r green2020::teff::network sigma {.0f} -->101<!-- /r -->
    <!-- r predict::mock survey, 5,000,000 stars::stars/s (prediction loop) {x/1e6:.2f} -->0.93<!-- /r -->

The reference is the result file's name (``benchmarks/results/<name>.json``), then the keys under its
``figures``, separated by ``::`` (a key that is not under ``figures``, e.g. ``machine::date``, is looked
up at the top of the file; list items by their index). The keys may be shortened to some of them, in
order, ending with the last, where only one path holds them (``predict::mock survey, 5,000,000 stars::
stars/s (prediction loop)`` above skips ``runs``). In a Markdown table a ``|`` inside a key is written
``\\|``.

An optional last ``{...}`` formats the value as Python's ``format`` does: ``{.3f}``, ``{+.2f}``,
``{.0%}``, ``{,}``, or with an expression of the value ``x`` first: ``{x/1e6:.2f}``, ``{1-x:.0%}``,
``{abs(x):.2f}``. Without one, the value is written as the JSON holds it. Several values joined by
`` & `` enter an expression as x1, x2, ... (a string such as ``"17.0%"`` enters as 0.17):
``<!-- r predict::read Parquet::s per million stars & predict::write Parquet::s per million stars
{x1+x2:.2f} -->`` (one line in the Markdown).

``python benchmarks/render.py`` (``make docs``, and ``make bench`` after the benchmarks) rewrites the
text between the markers; ``python benchmarks/docnumbers.py --check`` lists the markers whose text
differs from the results, or whose key is missing, without writing (tests/test_docs_numbers.py runs the
same check, and the one for numbers quoted outside markers).
"""

from __future__ import annotations

import ast
import json
import operator
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

MARKER = re.compile(r"<!-- r (?P<ref>.+?) -->(?P<text>.*?)<!-- /r -->", re.S)
_SPEC = re.compile(r"\s*\{(?P<spec>[^{}]*)\}\s*$")


def doc_paths(root: Path = ROOT) -> list[Path]:
    """The documents whose numbers are rendered: README.md and docs/*.md."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def load_results(results: Path = RESULTS) -> dict[str, dict]:
    """Every result file, by its name (the file name without .json)."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(results.glob("*.json"))}


@dataclass(frozen=True)
class Key:
    """One value's place: the result file's name and the keys to it."""

    name: str
    keys: tuple[str, ...]

    @classmethod
    def parse(cls, ref: str) -> Key:
        parts = [p.strip().replace("\\|", "|") for p in ref.split("::")]
        if len(parts) < 2 or not all(parts):
            raise ValueError(f"marker reference {ref!r}: expected NAME::KEY[::KEY...] [{{FORMAT}}]")
        return cls(parts[0], tuple(parts[1:]))

    def lookup(self, results: dict[str, dict]):
        """The value in the result file. The keys are the whole path under ``figures`` (or under the top of
        the file), or, shorter, some of its keys in order ending with the last one, where exactly one path
        holds them (``precision::sigma points (kept)::speed / 32-draw Monte Carlo``). KeyError naming
        what is missing or ambiguous."""
        if self.name not in results:
            raise KeyError(f"no result file benchmarks/results/{self.name}.json")
        top = results[self.name]
        for root in (top.get("figures", {}), top):
            node, found = root, True
            for key in self.keys:
                if isinstance(node, dict) and key in node:
                    node = node[key]
                elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
                    node = node[int(key)]
                else:
                    found = False
                    break
            if found:
                return node
        paths = [p for p in _paths(top.get("figures", {})) if p[-1] == self.keys[-1] and _holds(p, self.keys)]
        if len(paths) == 1:
            node = top["figures"]
            for key in paths[0]:
                node = node[key]
            return node
        if not paths:
            raise KeyError(f"{self.name}.json has no key path holding {list(self.keys)}")
        raise KeyError(f"{list(self.keys)} is ambiguous in {self.name}.json: "
                       + "; ".join("::".join(p) for p in paths[:4]))

    def __str__(self) -> str:
        return "::".join((self.name, *self.keys))


@dataclass(frozen=True)
class Ref:
    """A marker's reference: one value (or several, joined by `` & ``, for an expression of x1, x2, ...;
    x is x1) and how to format it."""

    keys: tuple[Key, ...]
    expr: str | None
    fmt: str

    @classmethod
    def parse(cls, ref: str) -> Ref:
        expr, fmt = None, ""
        m = _SPEC.search(ref)
        if m:
            ref = ref[:m.start()]
            spec = m["spec"]
            # "{x/1e6:.2f}": an expression, then the format; "{.2f}" or "{:.2f}": the format alone
            head, colon, tail = spec.rpartition(":")
            if colon:
                expr, fmt = head.strip() or None, tail
            elif "x" in spec:
                expr = spec.strip()
            else:
                fmt = spec
        keys = tuple(Key.parse(part) for part in ref.split(" & "))
        if len(keys) > 1 and expr is None:
            raise ValueError(f"marker reference {ref!r}: several values need an expression of x1, x2, ...")
        return cls(keys, expr, fmt)

    def render(self, results: dict[str, dict]) -> str:
        values = [key.lookup(results) for key in self.keys]
        if self.expr is not None:
            value = _evaluate(self.expr, {"x": values[0], **{f"x{i}": v for i, v in enumerate(values, 1)}})
        else:
            value = values[0]
        if isinstance(value, (dict, list)):
            raise ValueError(f"{self} points at a {type(value).__name__}, not a value")
        if self.fmt:
            return format(value, self.fmt)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return str(value)
        return json.dumps(value)

    def __str__(self) -> str:
        return " & ".join(map(str, self.keys))


def _paths(node, prefix: tuple[str, ...] = ()):
    """Every key path to a leaf of nested dicts."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    else:
        yield prefix


def _holds(path: tuple[str, ...], keys: tuple[str, ...]) -> bool:
    """Whether ``keys`` appear in ``path`` in order."""
    rest = iter(path)
    return all(any(k == p for p in rest) for k in keys)


_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.Pow: operator.pow, ast.USub: operator.neg, ast.UAdd: operator.pos}
_CALLS = {"abs": abs, "round": round, "min": min, "max": max}
_COMPARE = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge}


def _number(value) -> float:
    """A result's value as a number: strings such as "17.0%" (0.17) or "1.5" are read."""
    if isinstance(value, str):
        text = value.strip().replace(",", "")
        return float(text[:-1]) / 100 if text.endswith("%") else float(text)
    return value


def _evaluate(expr: str, names: dict[str, float]) -> float:
    """Arithmetic on the named values (+ - * / **, abs, round, min, max, numbers, and one comparison,
    which counts 1 when true: ``(abs(x1) < 0.1) + (abs(x2) < 0.1)``): nothing else is evaluated."""
    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.Name) and node.id in names:
            return _number(names[node.id])
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.operand))
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _COMPARE:
            return int(_COMPARE[type(node.ops[0])](ev(node.left), ev(node.comparators[0])))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _CALLS:
            return _CALLS[node.func.id](*[ev(a) for a in node.args])
        raise ValueError(f"not allowed in a marker's expression: {ast.dump(node)}")

    return ev(ast.parse(expr, mode="eval"))


@dataclass
class Problem:
    """A marker that does not render, or whose text is not what it renders to."""

    path: Path
    line: int
    ref: str
    found: str
    expected: str | None
    error: str | None = None

    def __str__(self) -> str:
        where = f"{self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path}:{self.line}"
        if self.error:
            return f"{where}: <!-- r {self.ref} -->: {self.error}"
        return f"{where}: <!-- r {self.ref} --> reads {self.found!r}, the result gives {self.expected!r}"


def render_text(text: str, results: dict[str, dict], path: Path = ROOT / "?") -> tuple[str, list[Problem]]:
    """The text with every marker's value rendered, and the markers that differed or failed (those that
    fail keep their old text)."""
    problems: list[Problem] = []

    def one(m: re.Match) -> str:
        line = text.count("\n", 0, m.start()) + 1
        try:
            value = Ref.parse(m["ref"]).render(results)
        except (KeyError, ValueError, TypeError, SyntaxError, ZeroDivisionError) as exc:
            problems.append(Problem(path, line, m["ref"], m["text"], None, str(exc).strip("\"'")))
            return m.group(0)
        if value != m["text"]:
            problems.append(Problem(path, line, m["ref"], m["text"], value))
        return f"<!-- r {m['ref']} -->{value}<!-- /r -->"

    return MARKER.sub(one, text), problems


def render_docs(paths: list[Path] | None = None, results: dict[str, dict] | None = None,
                write: bool = True) -> list[Problem]:
    """Render every marker of the documents (written in place when ``write``); returns what differed
    and what failed."""
    results = load_results() if results is None else results
    problems: list[Problem] = []
    for path in doc_paths() if paths is None else paths:
        text = path.read_text()
        new, found = render_text(text, results, path)
        problems += found
        if write and new != text:
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(new)
            tmp.replace(path)
    return problems


# ----- numbers quoted outside the markers (the check of tests/test_docs_numbers.py) -----

# Text that holds no quoted result: code, HTML comments (the markers with their values), link targets, URLs.
_HIDDEN = re.compile(r"```.*?```|<!-- r .+? -->.*?<!-- /r -->|<!--.*?-->|`[^`\n]*`|\]\([^)]*\)|https?://\S+",
                     re.S)
# A decimal number, a percentage, or a rate with a thousands separator ("283,000 stars/s").
NUMBER = re.compile(r"(?<![\w.,/-])[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s?%)?(?![\w])")
_RATE = re.compile(r"\s*(?:stars?\s*/\s*s|stars? per s|per second|/\s*s\b|rows? per s)")
# Not measurements: versions (1.2.3, Python 3.11), dates, and numbers beside a comparison (cuts, ranges).
_VERSION = re.compile(r"\d+\.\d+\.\d+|(?:Python|python|torch|numpy|version|v)\s?\d+\.\d+")
_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
# Bins and thresholds given with at most one decimal ("-2.5 to -2.0", "-3..-2.5", "below -2.5"): settings.
_RANGE = re.compile(r"[-+−]?\d+(?:\.\d)?\s*(?:to|\.\.)\s*[-+−]?\d+(?:\.\d)?(?!\d|\.\d)")
_THRESHOLD = re.compile(r"(?i)\b(?:below|above|under|over|beyond|at most|at least|fewer than|more than|less than|up to)"
                        r"\s+(?:about\s+)?[-+−]?\d+(?:\.\d)?(?!\d|\.\d)%?")
_COMPARE_BEFORE = re.compile(r"(?:<=?|>=?|≤|≥|≲|≳)\s*$")
_COMPARE_AFTER = re.compile(r"^\s*(?:<=?|>=?|≤|≥|≲|≳)")


@dataclass
class Quoted:
    """A measured-looking number quoted outside markers."""

    path: Path
    line: int
    number: str
    context: str

    def __str__(self) -> str:
        where = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path
        return f"{where}:{self.line}: {self.number!r} in ...{self.context}..."


def _blank(text: str, pattern: re.Pattern) -> str:
    """The text with every match replaced by spaces (newlines kept: line numbers stay right)."""
    return pattern.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)


def quoted_numbers(text: str, path: Path = ROOT / "?", allowed: list[re.Pattern] = ()) -> list[Quoted]:
    """Decimal numbers, percentages and rates with a thousands separator outside markers, code, comments
    and links, that are not versions, dates, bins or thresholds with at most one decimal ("-2.5 to -2.0",
    "below -2.5"), or beside a comparison, and not inside a match of one of ``allowed`` (phrases that
    quote constants or citations)."""
    shown = _blank(text, _HIDDEN)
    for pattern in (*allowed, _VERSION, _DATE, _RANGE, _THRESHOLD):
        shown = _blank(shown, pattern)
    out = []
    for m in NUMBER.finditer(shown):
        number = m.group(0)
        if "." not in number and "%" not in number and not ("," in number and _RATE.match(shown, m.end())):
            continue
        before, after = shown[max(0, m.start() - 4):m.start()], shown[m.end():m.end() + 4]
        if _COMPARE_BEFORE.search(before) or _COMPARE_AFTER.search(after):
            continue
        line = shown.count("\n", 0, m.start()) + 1
        start = shown.rfind("\n", 0, m.start()) + 1
        end = shown.find("\n", m.end())
        context = text[max(start, m.start() - 60):min(end if end >= 0 else len(text), m.end() + 40)]
        out.append(Quoted(path, line, number, context.strip()))
    return out


def main(argv: list[str]) -> int:
    """``--check``: list what differs, write nothing, exit 1 if anything does; else render in place."""
    check = "--check" in argv
    problems = render_docs(write=not check)
    for p in problems:
        print(p)
    return 1 if any(p.error or check for p in problems) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
