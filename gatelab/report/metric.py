"""A metric as a report shows it: its direction, its units, its chance level and its formatting.

Records keep raw values (an accuracy is a fraction in [0, 1]); only what a reader sees is scaled
(a fraction whose unit is ``%`` as a percentage) and rounded. Keys follow the record: ``test/<m>``
is the test metric at the best-validation parameters, ``eval/<m>`` the best validation value,
``final/test/<m>`` the test metric at the last step. What a metric is called, its unit and its
direction are the task's words, written into every run's summary (``labels/<m>``, ``units/<m>``,
``directions/<m>``): the report knows no task.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping

__all__ = ["Metric", "format_p", "is_finite"]

_SPLITS = {
    "test": "test",
    "eval": "validation",
    "final/test": "final test",
    "final/eval": "final validation",
    "train": "training",
}


@dataclasses.dataclass(frozen=True)
class Metric:
    """One summary key and how to read it.

    Attributes:
        key: the summary key, e.g. ``test/accuracy``.
        direction: ``max`` when higher is better, else ``min``.
        chance: the metric's value for the trivial predictor, where the task gives it.
        name_label: what the metric is called (``cross-entropy``); its name by default.
        unit: its unit (``nats/step``), ``%`` for a fraction shown as a percentage.
    """

    key: str
    direction: str
    chance: float | None = None
    name_label: str = ""
    unit: str = ""

    @classmethod
    def from_key(
        cls,
        key: str,
        *,
        primary: str | None = None,
        primary_direction: str | None = None,
        chance: float | None = None,
        labels: Mapping[str, str] | None = None,
        units: Mapping[str, str] | None = None,
        directions: Mapping[str, str] | None = None,
    ) -> Metric:
        """The metric ``key``; the task's own direction and chance apply to its primary metric.

        Args:
            key: a summary key (``test/bpc``); a bare name (``bpc``) means ``test/<name>``.
            primary: the task's primary metric name (``summary.json`` ``primary_metric``).
            primary_direction: its direction (``summary.json`` ``direction``).
            chance: the primary metric's chance level (``summary.json`` ``chance``).
            labels, units, directions: per metric name, the task's words for it, its unit and
                its direction (``summary.json`` ``labels/<m>``, ``units/<m>``, ``directions/<m>``).
        """
        if "/" not in key:
            key = f"test/{key}"
        name = key.rsplit("/", 1)[1]
        is_primary = primary is not None and name == primary
        if is_primary and primary_direction in ("max", "min"):
            direction = primary_direction
        else:
            direction = (directions or {}).get(name) or "min"
        label = (labels or {}).get(name) or name
        unit = (units or {}).get(name) or ""
        return cls(key, direction, chance if is_primary else None, label, unit)

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[1]

    @property
    def split(self) -> str:
        return self.key.rsplit("/", 1)[0] if "/" in self.key else ""

    @property
    def percent(self) -> bool:
        """A fraction shown as a percentage."""
        return self.unit == "%"

    @property
    def scale(self) -> float:
        """The factor from the record's value to the shown one (fractions to percentages)."""
        return 100.0 if self.percent else 1.0

    @property
    def words(self) -> str:
        """``test accuracy``, ``validation NLL``."""
        return f"{_SPLITS.get(self.split, self.split)} {self.name_label or self.name}".strip()

    @property
    def label(self) -> str:
        """An axis label with the unit: ``test accuracy (%)``, ``test NLL (nats/frame)``."""
        return f"{self.words} ({self.unit})" if self.unit else self.words

    @property
    def direction_words(self) -> str:
        return "higher is better" if self.direction == "max" else "lower is better"

    def is_better(self, a: float, b: float) -> bool:
        """Whether ``a`` beats ``b`` by this metric's direction."""
        return a > b if self.direction == "max" else a < b

    def decimals(self, spreads: Iterable[float], values: Iterable[float] = ()) -> int:
        """Decimal places for one column of this metric (shown units, e.g. percentage points).

        Two significant digits of the smallest standard deviation (one for percentages, which
        are read in tenths of a point); without spreads, four significant digits of the values.
        """
        stds = [abs(s) * self.scale for s in spreads if is_finite(s) and s != 0]
        if stds:
            first = -math.floor(math.log10(min(stds)))
            return min(max(first, 1), 3) if self.percent else min(max(first + 1, 0), 8)
        if self.percent:
            return 1
        magnitudes = [abs(v) for v in values if is_finite(v) and v != 0]
        if not magnitudes:
            return 3
        return min(max(3 - math.floor(math.log10(sorted(magnitudes)[len(magnitudes) // 2])), 0), 8)

    def format(self, value: float | None, decimals: int, unit: bool = True) -> str:
        """``88.4%`` or ``8.512``; ``n/a`` for a missing value."""
        if not is_finite(value):
            return "n/a"
        text = f"{value * self.scale:.{decimals}f}"
        return text + ("%" if self.percent and unit else "")

    def format_mean_std(self, mean: float, std: float, decimals: int) -> str:
        """``88.4 ± 0.9%``; the std is left out when there is none (a single run)."""
        if not is_finite(mean):
            return "n/a"
        if not is_finite(std):
            return self.format(mean, decimals)
        text = f"{mean * self.scale:.{decimals}f} ± {std * self.scale:.{decimals}f}"
        return text + ("%" if self.percent else "")


def format_p(p: float | None) -> str:
    """Two significant digits, exponents without padding: ``0.012``, ``3e-5``; ``n/a``."""
    if not is_finite(p):
        return "n/a"
    if p >= 0.001:
        return f"{p:.2g}"
    mantissa, exponent = f"{p:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def is_finite(value: object) -> bool:
    """A number that is neither NaN nor infinite (``None`` and non-numbers are not)."""
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
