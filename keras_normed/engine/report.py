"""One report type for every model-level step."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, List, Optional, Sequence

__all__ = ["NonFiniteError", "Row", "Report", "spread"]


def _field(obj, mapping: str, name: str):
    # For __getattr__ (own fields are found first); via __dict__: no recursion while unpickling.
    values = obj.__dict__.get(mapping, {})
    if name in values:
        return values[name]
    raise AttributeError(f"{type(obj).__name__} has no field {name!r}")


class NonFiniteError(ValueError):
    """A batch gives a non-finite loss or gradient: bad data, or (during training) a model
    that has diverged."""


def spread(values: Sequence[float]) -> float:
    """``max / min`` of the positive finite values (NaN when there are none)."""
    vals = [v for v in values if v is not None and v > 0 and math.isfinite(v)]
    return max(vals) / min(vals) if vals else float("nan")


@dataclasses.dataclass
class Row:
    """One layer of a :class:`Report`: where it is, its structure, and what the step measured
    or set (in ``values``; readable as attributes, ``row.scale``, or items, ``row["scale"]``)."""

    path: str
    kind: str
    uses: Optional[int] = None
    fan_in: Optional[int] = None
    sharing: Optional[float] = None
    n_params: Optional[int] = None
    values: Dict[str, Any] = dataclasses.field(default_factory=dict)

    def __getattr__(self, name: str):
        return _field(self, "values", name)

    def __getitem__(self, key: str):
        if key == "name":
            return self.path.split("/")[-2] if "/" in self.path else self.path
        if key in self.values:
            return self.values[key]
        return getattr(self, key)

    def get(self, key: str, default=None):
        try:
            return self[key]
        except (AttributeError, KeyError):
            return default

    def as_dict(self) -> Dict[str, Any]:
        out = {k: v for k, v in dataclasses.asdict(self).items() if k != "values"}
        out.update(self.values)
        # JSON has no NaN (a SeparableConv's sharing, over two kernels, is not one number).
        return {k: None if isinstance(v, float) and not math.isfinite(v) else v
                for k, v in out.items()}


@dataclasses.dataclass
class Report:
    """What a model-level step (``method``: ``"rescale"``, ``"lsuv"``, ``"data_dependent"``,
    ``"growth"`` or ``"arpit"``) measured and did: ``applied`` (``reason`` says why not), one
    row per layer, and the step's own numbers in ``summary`` (spreads, exponent, notes, output
    change, loss, ...), also readable as attributes (``report.spread_after``)."""

    method: str
    applied: bool = False
    reason: str = ""
    rows: List[Row] = dataclasses.field(default_factory=list)
    summary: Dict[str, Any] = dataclasses.field(default_factory=dict)

    def __getattr__(self, name: str):
        return _field(self, "summary", name)

    @property
    def layers(self) -> List[Row]:
        return self.rows

    def column(self, key: str) -> List[Any]:
        return [row.get(key) for row in self.rows]

    @property
    def spread_before(self) -> float:
        return spread(self.column("growth_before"))

    @property
    def spread_after(self) -> float:
        return spread(self.column("growth_after"))

    @property
    def spread(self) -> float:
        return spread(self.column("growth"))

    @property
    def scales(self) -> Dict[str, float]:
        return {row.path: row.values["scale"] for row in self.rows if "scale" in row.values}

    @property
    def converged(self) -> bool:
        return all(row.values.get("converged", True) for row in self.rows)

    @property
    def homogeneous(self) -> bool:
        return not self.summary.get("notes")

    def as_dict(self) -> Dict[str, Any]:
        out = {"method": self.method, "applied": self.applied, "reason": self.reason,
               **self.summary, "layers": [row.as_dict() for row in self.rows]}
        for key, name in (("growth_before", "spread_before"), ("growth_after", "spread_after"),
                          ("growth", "spread")):
            if any(key in row.values for row in self.rows):
                out[name] = spread(self.column(key))
        return out

    def __str__(self) -> str:
        head = f"{self.method}: applied={self.applied}" + (f" ({self.reason})"
                                                           if self.reason else "")
        for key, value in self.summary.items():
            if key not in ("notes", "left") and isinstance(value, (int, float, str)) \
                    and value != "":
                head += f", {key}={_fmt(value)}"
        if any("growth" in r.values for r in self.rows):
            head += f", growth spread {_fmt(self.spread)}"
        if any("growth_after" in r.values for r in self.rows):
            head += (", predicted (not measured) growth spread"
                     if self.summary.get("rule") == "analytic" else ", growth spread")
            head += f" {_fmt(self.spread_before)} -> {_fmt(self.spread_after)}"
        keys: List[str] = []
        for row in self.rows:
            keys += [k for k in row.values if k not in keys and not isinstance(
                row.values[k], (list, dict))]
        # Columns as wide as their names: headers are never cut.
        kind = max([18] + [len(r.kind) + 1 for r in self.rows])
        width = {k: max(12, len(k) + 1) for k in keys}
        lines = [head, f"{'layer':<34}{'kind':<{kind}}{'uses':>5}{'fan_in':>8}{'sharing':>9}"
                       + "".join(f"{k:>{width[k]}}" for k in keys)]
        for r in self.rows:
            lines.append(f"{_tail(r.path, 33):<34}{r.kind:<{kind}}{_fmt(r.uses):>5}"
                         f"{_fmt(r.fan_in):>8}{_fmt(r.sharing):>9}"
                         + "".join(f"{_fmt(r.values.get(k)):>{width[k]}}" for k in keys))
        lines += [f"note: {note}" for note in self.summary.get("notes") or []]
        lines += [f"left: {left}" for left in self.summary.get("left") or []]
        return "\n".join(lines)

    def plot(self, path: str, title: Optional[str] = None,
             keys: Optional[Sequence[str]] = None) -> str:
        """Bar charts (log scale) of ``keys`` per layer (default: every numeric column the
        rows have), saved as a PNG at ``path``."""
        have = list(dict.fromkeys(k for r in self.rows for k, v in r.values.items()
                                  if isinstance(v, (int, float)) and not isinstance(v, bool)))
        if keys is None:
            keys = have
        elif isinstance(keys, str) or [k for k in keys if k not in have]:
            raise ValueError(f"`keys`: {keys!r} are not all columns of this {self.method} "
                             f"report; pass a list of some of {have}.")
        if not keys:
            raise ValueError(f"This {self.method} report has no numeric columns to plot "
                             f"({len(self.rows)} rows).")
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        names = [r["name"] for r in self.rows]
        fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.5), squeeze=False)
        for ax, key in zip(axes[0], keys):
            vals = self.column(key)
            ax.bar(range(len(vals)), vals)
            ax.set(yscale="log", xticks=range(len(vals)), title=key)
            ax.set_xticklabels(names, rotation=45, ha="right", fontsize=8)
        fig.suptitle(title or f"{self.method}")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path


def _tail(path: str, width: int) -> str:
    # Cut from the left, at a "/" where one fits: the layer's own name stays readable.
    if len(path) <= width:
        return path
    tail = path[3 - width:]
    return "..." + (tail[tail.find("/"):] if "/" in tail else tail)


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
