"""Option parsing shared by the experiment commands."""

from __future__ import annotations

from typing import List, Sequence


def choice_list(text: str, allowed: Sequence[str], option: str = "--inits") -> List[str]:
    """Split a comma-separated option value and check every item is one of ``allowed``.

    Raises:
        ValueError: naming ``option``, the unknown items and the allowed ones.
    """
    items = [s.strip() for s in str(text).split(",") if s.strip()]
    unknown = [s for s in items if s not in allowed]
    if unknown or not items:
        raise ValueError(f"Unknown value(s) {unknown} in {option} {text!r}; expected a "
                         f"comma-separated subset of {list(allowed)}.")
    return items
