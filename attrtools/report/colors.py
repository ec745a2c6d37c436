"""Colour scales that do not mislead: a sequential map from 0 for unsigned scores (raw attention,
rollout, attention flow, GlobEnc, ALTI: shares, no sign) and a diverging map centred on 0 for
signed ones (AttAttr, Grad-SAM, Chefer, gradient×input, IG, DecompX). Every scale comes with a
legend that states its range."""
from __future__ import annotations

import math
from dataclasses import dataclass

SEQUENTIAL = "Oranges"
DIVERGING = "RdBu_r"


def lut(name: str, n: int = 64) -> list[str]:
    """``n`` hex colours sampled evenly from the matplotlib colour map ``name``."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    cmap = colormaps[name]
    return [to_hex(cmap(i / (n - 1))) for i in range(n)]


def _luminance(hex_colour: str) -> float:
    r, g, b = (int(hex_colour[i: i + 2], 16) / 255 for i in (1, 3, 5))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


@dataclass
class Scale:
    """A value -> colour mapping. ``signed``: diverging, ``vmin = -vmax``, white at 0;
    unsigned: sequential from ``vmin = 0`` (white) to ``vmax``."""

    signed: bool
    vmin: float
    vmax: float
    colours: list[str]

    @property
    def cmap(self) -> str:
        return DIVERGING if self.signed else SEQUENTIAL

    def position(self, value: float) -> float:
        """0..1 along the colour map (values outside the range are clipped)."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return 0.5 if self.signed else 0.0
        span = self.vmax - self.vmin
        return min(1.0, max(0.0, (float(value) - self.vmin) / span)) if span > 0 else (0.5 if self.signed else 0.0)

    def colour(self, value: float) -> str:
        return self.colours[round(self.position(value) * (len(self.colours) - 1))]

    def text_colour(self, value: float) -> str:
        return "#fff" if _luminance(self.colour(value)) < 0.45 else "#111"

    def gradient_css(self) -> str:
        stops = self.colours[:: max(1, len(self.colours) // 16)] + [self.colours[-1]]
        return "linear-gradient(to right, " + ", ".join(stops) + ")"

    def ticks(self) -> list[tuple[float, str]]:
        """(position 0..1, label) for the legend."""
        if self.signed:
            return [(0.0, _num(self.vmin)), (0.5, "0"), (1.0, _num(self.vmax))]
        return [(0.0, _num(self.vmin)), (0.5, _num((self.vmin + self.vmax) / 2)), (1.0, _num(self.vmax))]

    def explanation(self) -> str:
        if self.signed:
            return ("signed scores: red raises the explained class's score, blue lowers it, white is 0; "
                    "colour range ±" + _num(self.vmax))
        return "unsigned scores (no direction): white is 0, darker is a larger share; range 0 – " + _num(self.vmax)

    def to_json(self) -> dict:
        return {"signed": self.signed, "vmin": self.vmin, "vmax": self.vmax, "colours": self.colours}


def _num(value: float) -> str:
    return f"{value:.3g}"


def scale_for(values, signed: bool, n: int = 64) -> Scale:
    """The scale for ``values`` (an iterable of floats; NaNs ignored)."""
    finite = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if signed:
        top = max((abs(v) for v in finite), default=0.0) or 1.0
        return Scale(True, -top, top, lut(DIVERGING, n))
    top = max(finite, default=0.0)
    return Scale(False, 0.0, top if top > 0 else 1.0, lut(SEQUENTIAL, n))
