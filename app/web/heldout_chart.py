"""The job page's decision chart for an expand job: control minus expanded held-out risk per
position over the continuation, with a band over seeds (plotly.js spec as plain dicts)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from app.web.charts import SERIES_COLORS, Chart, _layout, value_tick_format


def _band_color(hex_color: str, alpha: float) -> str:
    red, green, blue = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red},{green},{blue},{alpha})"


def heldout_gain_chart(element_id: str, records: Sequence[Mapping[str, Any]]) -> Chart:
    """Control minus expanded held-out risk per position over the continuation, mean over
    seeds with a band from the lowest to the highest seed: validation risk at the early
    readings, test risk at the last step (what the answer is decided on)."""
    by_position: dict[int, dict[float, list[float]]] = {}
    for record in records:
        realized = record.get("realized") or {}
        position = record.get("position")
        if not isinstance(position, int) or not realized:
            continue
        steps = by_position.setdefault(position, {})
        for row in realized.get("early") or []:
            if _finite(row.get("gain")) and _finite(row.get("step")):
                steps.setdefault(float(row["step"]), []).append(float(row["gain"]))
        if _finite(realized.get("gain_vs_control")) and _finite(realized.get("steps")):
            steps.setdefault(float(realized["steps"]), []).append(
                float(realized["gain_vs_control"])
            )
    data: list[dict[str, Any]] = []
    for index, (position, steps) in enumerate(sorted(by_position.items())):
        color = SERIES_COLORS[index % len(SERIES_COLORS)]
        xs = sorted(steps)
        lows = [min(steps[x]) for x in xs]
        highs = [max(steps[x]) for x in xs]
        seeds = max(len(v) for v in steps.values())
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "x": xs + xs[::-1],
                "y": highs + lows[::-1],
                "fill": "toself",
                "fillcolor": _band_color(color, 0.15),
                "line": {"width": 0, "color": color},
                "hoverinfo": "skip",
                "showlegend": False,
                "name": f"position {position} seeds",
            }
        )
        data.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": f"position {position} (mean of {seeds} seed{'s' if seeds != 1 else ''})",
                "x": xs,
                "y": [sum(steps[x]) / len(steps[x]) for x in xs],
                "line": {"color": color, "width": 2},
                "marker": {"size": 6},
            }
        )
    layout = _layout(
        "Held-out risk: control minus expanded (positive: the insertion helps)",
        "continuation step",
        "risk difference (nats): validation early, test at the end",
    )
    layout["yaxis"]["tickformat"] = value_tick_format([v for trace in data for v in trace["y"]])
    layout["yaxis"]["zeroline"] = True
    layout["xaxis"]["tickformat"] = ",~d"
    return Chart(
        element_id,
        data,
        layout,
        empty_message="No held-out risks of the continuation yet (they land when it ends).",
    )


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
