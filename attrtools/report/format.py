"""Number, time, label and model formatting for reports (what a reader sees instead of a repr)."""
from __future__ import annotations

import math
import os


def is_missing(value) -> bool:
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


def fmt_seconds(seconds) -> str:
    """``0.42`` -> ``"0.42 s"``, ``75`` -> ``"1 min 15 s"``, ``3720`` -> ``"1 h 02 min"``; missing -> ``"–"``."""
    if is_missing(seconds):
        return "–"
    seconds = float(seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms" if seconds < 0.1 else f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        minutes, rest = divmod(round(seconds), 60)
        if minutes >= 10:
            return f"{round(seconds / 60)} min"
        return f"{minutes} min {rest:02d} s"
    hours, rest = divmod(round(seconds) // 60, 60)
    return f"{hours} h {rest:02d} min"


def fmt_number(value, digits: int = 3) -> str:
    """Integers with thousands separators, floats with ``digits`` decimals (or 3 significant digits
    when tiny), bools as yes/no, missing values as ``–``; anything else via ``str``."""
    if is_missing(value):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != 0 and abs(value) < 10 ** -digits:
            return f"{value:.3g}"
        return f"{value:,.{digits}f}"
    return str(value)


def fmt_percent(fraction, digits: int = 1) -> str:
    """``0.8731`` -> ``"87.3 %"``."""
    if is_missing(fraction):
        return "–"
    return f"{100 * float(fraction):.{digits}f} %"


def fmt_bytes(count) -> str:
    if is_missing(count):
        return "–"
    count = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return str(count)


def is_generic_label(name) -> bool:
    """True for transformers' placeholder names (``LABEL_0``)."""
    return name is None or str(name).upper().startswith("LABEL_")


def label_names_from_config(config) -> list[str]:
    """Class names in id order from a model config's ``id2label``; ``[]`` when they are the generic
    ``LABEL_k`` placeholders (then reports show class numbers)."""
    mapping = getattr(config, "id2label", None) or {}
    try:
        names = [mapping[k] if k in mapping else mapping[str(k)] for k in range(len(mapping))]
    except KeyError:
        return []
    return [] if all(is_generic_label(n) for n in names) else [str(n) for n in names]


def class_name(index, names=None) -> str:
    """``1`` with names ``["negative", "positive"]`` -> ``"positive (1)"``; without names -> ``"class 1"``."""
    if is_missing(index):
        return "–"
    try:
        i = int(index)
    except (TypeError, ValueError):
        return str(index)
    if names and 0 <= i < len(names) and not is_generic_label(names[i]):
        return f"{names[i]} ({i})"
    return f"class {i}"


def model_label(name_or_path: str | None, fingerprint: str | None = None) -> str:
    """How a report names a model: a hub id as is, a local folder by its last two path parts
    (never a whole cache path), then the first 12 hex digits of its fingerprint."""
    name = str(name_or_path or "model")
    if os.path.isabs(name) or os.sep in name.strip(os.sep) and os.path.exists(name):
        parts = [p for p in os.path.normpath(name).split(os.sep) if p]
        name = "/".join(parts[-2:]) + " (local folder)"
    if fingerprint:
        name += f" · fingerprint {str(fingerprint)[:12]}"
    return name


def truncate(text, width: int = 90) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= width else text[: width - 1] + "…"
