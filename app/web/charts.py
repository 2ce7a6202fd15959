"""Plot specs (plotly.js `data` and `layout` as plain JSON-able dicts) for the web pages.

The browser draws them with the plotly.js bundle that the app serves itself; nothing here
imports plotly's Python figure machinery, so building a page stays cheap.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

CONTINUATION_SPLIT = "continuation"
"""Metric split of the continuation arms' training-loss curves (`<arm label>/loss`)."""
CERTIFIED_COLOR = "#2f6fb0"
REALIZED_COLOR = "#c2571a"
GAIN_TICKS = ".2~g"
"""Tick format of gain axes: plain decimals (0.00057), not SI prefixes (570µ) for nats."""
SERIES_COLORS = ("#2f6fb0", "#c2571a", "#3a8d4f", "#7b4fa8", "#8a6d1f", "#b03a6f")

CERTIFICATE_NOTE = (
    "The certificate is the jumpboard model's risk decrease against the base on the "
    "certificate split (nats, with its interval): the base expanded at the position with "
    "W2 = -t g_train, its direction from training data and its step from validation data, "
    "measured on data that chose neither. It shows that the expanded network holds a better "
    "model; it is not a forecast of the realized gain after continued training."
)


@dataclass
class Chart:
    """One plotly chart: the element id it is drawn into, its traces and its layout."""

    element_id: str
    data: list[dict[str, Any]]
    layout: dict[str, Any]
    empty_message: str = ""
    config: dict[str, Any] = field(
        default_factory=lambda: {"displaylogo": False, "responsive": True}
    )

    @property
    def is_empty(self) -> bool:
        """True when no trace has a single point to draw."""
        return not any(trace.get("x") for trace in self.data)

    def as_json(self) -> dict[str, Any]:
        """The dict handed to `Plotly.newPlot(el, data, layout, config)` by pages.js."""
        return {"data": self.data, "layout": self.layout, "config": self.config}


def _layout(title: str, x_title: str, y_title: str, **extra: Any) -> dict[str, Any]:
    layout: dict[str, Any] = {
        "title": {"text": title, "font": {"size": 15}},
        "xaxis": {"title": {"text": x_title}, "zeroline": False},
        "yaxis": {"title": {"text": y_title}},
        "margin": {"l": 70, "r": 30, "t": 50, "b": 55},
        "legend": {"orientation": "h", "y": -0.22},
        "hovermode": "closest",
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "#fbfbfc",
        "height": 360,
    }
    layout.update(extra)
    return layout


def value_tick_format(values: Iterable[float | None]) -> str:
    """A d3 tick format in fixed decimals that resolves the spread of `values`.

    Plotly's default switches to exponents for tiny ticks (8.8e-18 where 0 is meant, from float
    rounding of the tick steps); fixed decimals print that tick as 0 and keep labels short.
    """
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return ".3~f"
    spread = max(finite) - min(finite)
    scale = spread if spread > 0 else max(abs(v) for v in finite)
    if scale <= 0:
        return ".1~f"
    decimals = max(0, min(10, 2 - math.floor(math.log10(scale))))
    return f".{decimals}~f"


def curve_chart(
    element_id: str,
    series: Mapping[str, Sequence[tuple[float, float]]],
    *,
    title: str,
    y_title: str,
    x_title: str = "step",
    dashed: Iterable[str] = (),
    empty_message: str = "",
) -> Chart:
    """Line chart of named time series (name -> [(step, value), ...]), e.g. train/val loss."""
    dashed_names = set(dashed)
    data: list[dict[str, Any]] = []
    for index, (name, points) in enumerate(sorted(series.items())):
        ordered = sorted(points)
        data.append(
            {
                "type": "scatter",
                "mode": "lines+markers" if len(ordered) < 40 else "lines",
                "name": name,
                "x": [step for step, _ in ordered],
                "y": [value for _, value in ordered],
                "line": {
                    "color": SERIES_COLORS[index % len(SERIES_COLORS)],
                    "width": 2,
                    "dash": "dash" if name in dashed_names else "solid",
                },
                "marker": {"size": 5},
            }
        )
    layout = _layout(title, x_title, y_title)
    values: list[float | None] = [v for trace in data for v in trace["y"]]
    layout["yaxis"]["tickformat"] = value_tick_format(values)
    layout["xaxis"]["tickformat"] = ",~d"
    return Chart(
        element_id, data, layout, empty_message=empty_message or f"No {y_title} recorded yet."
    )


def continuation_chart(element_id: str, arms: Mapping[str, Sequence[tuple[float, float]]]) -> Chart:
    """Each expanded arm against its control during continuation, as means over seeds.

    `arms` maps labels like `control seed 0` and `position 4 seed 0` to [(step, loss)]; the
    seeds of one arm are averaged step by step (every seed sees the same step grid), the
    control dashed.
    """
    grouped: dict[str, dict[float, list[float]]] = {}
    seeds: dict[str, set[str]] = {}
    for label, points in arms.items():
        arm, _, seed = label.partition(" seed ")
        seeds.setdefault(arm, set()).add(seed)
        for step, value in points:
            grouped.setdefault(arm, {}).setdefault(step, []).append(value)
    series = {}
    for arm, by_step in grouped.items():
        n = len(seeds[arm])
        name = f"{arm} (mean of {n} seed{'s' if n != 1 else ''})"
        series[name] = [(step, sum(v) / len(v)) for step, v in sorted(by_step.items())]
    control = [name for name in series if name.startswith("control")]
    chart = curve_chart(
        element_id,
        series,
        title="Continuation: each expanded arm against the control",
        y_title="training loss (nats, window mean)",
        x_title="continuation step",
        dashed=control,
    )
    chart.empty_message = "No continuation curves in this result (recorded since this version)."
    return chart


def depth_chart(
    element_id: str, events: Sequence[Mapping[str, Any]], spec: Mapping[str, Any]
) -> Chart:
    """Depth of the grown network over training steps: a step line through the growth events."""
    model = spec.get("model") or {}
    start = int(model.get("depth", 0)) * int(model.get("stages", 1))
    train = spec.get("train") or {}
    steps: list[float] = [0.0]
    depths: list[float] = [float(start)]
    for event in sorted(events, key=lambda e: e.get("step") or 0):
        if event.get("step") is None or event.get("depth_after") is None:
            continue
        steps.append(float(event["step"]))
        depths.append(float(event["depth_after"]))
    data = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "line": {"shape": "hv", "color": CERTIFIED_COLOR, "width": 2},
            "name": "blocks",
            "x": steps,
            "y": depths,
            "hovertemplate": "step %{x}<br>%{y} blocks<extra></extra>",
        }
    ]
    layout = _layout(
        f"Depth over training ({train.get('epochs', '?')} epochs)", "step", "residual blocks"
    )
    layout["yaxis"].update({"tickformat": ",~d", "dtick": 1, "rangemode": "tozero"})
    layout["xaxis"]["tickformat"] = ",~d"
    layout["showlegend"] = False
    return Chart(element_id, data, layout, empty_message="No growth events recorded.")


def split_curves(
    points: Iterable[tuple[int, str, str, float | None]],
) -> tuple[dict[str, list[tuple[float, float]]], dict[str, list[tuple[float, float]]]]:
    """Split metric points (step, split, name, value) into loss series and accuracy series.

    Series are keyed `split/name` (`train/loss`, `val/accuracy`); metrics whose name is neither
    a loss nor an accuracy are left out of both.
    """
    losses: dict[str, list[tuple[float, float]]] = {}
    accuracies: dict[str, list[tuple[float, float]]] = {}
    for step, split, name, value in points:
        if value is None or split == CONTINUATION_SPLIT:
            continue
        target = losses if "loss" in name else accuracies if "acc" in name else None
        if target is not None:
            target.setdefault(f"{split}/{name}", []).append((step, value))
    return losses, accuracies


def curves_from_result(
    curves: Mapping[str, Sequence[Sequence[float]]],
) -> list[tuple[int, str, str, float]]:
    """Metric points from a result's `curves` dict ({"train/loss": [[step, value], ...]})."""
    points: list[tuple[int, str, str, float]] = []
    for key, pairs in curves.items():
        split, _, name = key.partition("/")
        if not name:
            continue
        for pair in pairs:
            if len(pair) >= 2 and pair[1] is not None:
                points.append((int(pair[0]), split, name, float(pair[1])))
    return points


def _error_bar(plus: list[float | None], minus: list[float | None]) -> dict[str, Any]:
    return {
        "type": "data",
        "symmetric": False,
        "array": [0.0 if v is None else v for v in plus],
        "arrayminus": [0.0 if v is None else v for v in minus],
        "thickness": 1.5,
        "width": 5,
    }


def insertion_chart(element_id: str, rows: Sequence[Mapping[str, Any]]) -> Chart:
    """Per position: the certificate's risk decrease (its interval as error bar) next to the
    realized gain (its interval), both in nats.

    `rows` are position summaries (see `app.web.job_view.position_rows`): `position`,
    `certificate_risk_decrease`, `certificate_ci`, `gain_mean`, `gain_ci`. The certificate is
    measured at zero continuation steps and is usually far smaller than the realized gain, so
    each gets its own y axis (both in nats); a position without a value gets no point.
    """
    certified = [r for r in rows if r.get("certificate_risk_decrease") is not None]
    realized = [r for r in rows if r.get("gain_mean") is not None]
    data: list[dict[str, Any]] = [
        {
            "type": "scatter",
            "mode": "markers",
            "name": "certificate: jumpboard model's risk decrease (nats, interval)",
            "x": [r["position"] - 0.08 for r in certified],
            "y": [r["certificate_risk_decrease"] for r in certified],
            "customdata": [r["position"] for r in certified],
            "hovertemplate": "position %{customdata}<br>certificate %{y:.3g} nats<extra></extra>",
            "error_y": _error_bar(
                [_ci_side(r, 1, "certificate_ci", "certificate_risk_decrease") for r in certified],
                [_ci_side(r, 0, "certificate_ci", "certificate_risk_decrease") for r in certified],
            ),
            "marker": {"color": CERTIFIED_COLOR, "size": 10, "symbol": "diamond"},
            "yaxis": "y",
        },
        {
            "type": "scatter",
            "mode": "markers",
            "name": "realized gain vs control (mean over seeds, interval)",
            "x": [r["position"] + 0.08 for r in realized],
            "y": [r["gain_mean"] for r in realized],
            "customdata": [r["position"] for r in realized],
            "hovertemplate": "position %{customdata}<br>gain vs control %{y:.3g} nats"
            "<extra></extra>",
            "error_y": _error_bar(
                [_ci_side(r, 1) for r in realized], [_ci_side(r, 0) for r in realized]
            ),
            "marker": {"color": REALIZED_COLOR, "size": 10},
            "yaxis": "y2",
        },
    ]
    positions = sorted({r["position"] for r in rows})
    # Symmetric ranges put both zeros at mid-height, so a point above the line means a gain
    # on either axis.
    certified_extent = _extent(data[0]["y"], data[0]["error_y"])
    realized_extent = _extent(data[1]["y"], data[1]["error_y"])
    layout = _layout(
        "Insertion positions: certificate next to realized gain",
        "insertion position (0 = after the stem)",
        "certificate: risk decrease (nats)",
        yaxis2={
            "title": {"text": "realized gain vs control (nats)", "font": {"color": REALIZED_COLOR}},
            "overlaying": "y",
            "side": "right",
            "zeroline": True,
            "zerolinecolor": "#bbb",
            "tickfont": {"color": REALIZED_COLOR},
            "range": [-realized_extent, realized_extent],
            "tickformat": value_tick_format([-realized_extent, realized_extent]),
            "showgrid": False,
        },
    )
    layout["yaxis"].update(
        {
            "range": [-certified_extent, certified_extent],
            "zeroline": True,
            "zerolinecolor": "#bbb",
            "tickformat": value_tick_format([-certified_extent, certified_extent]),
        }
    )
    layout["yaxis"]["title"]["font"] = {"color": CERTIFIED_COLOR}
    layout["yaxis"]["tickfont"] = {"color": CERTIFIED_COLOR}
    layout["xaxis"].update({"tickmode": "array", "tickvals": positions, "dtick": 1})
    layout["margin"]["r"] = 75
    return Chart(element_id, data, layout, empty_message="No insertion positions in this result.")


def _extent(values: Sequence[float], error: Mapping[str, Any]) -> float:
    """Half-height of a symmetric axis range that shows every value with its error bar."""
    reach = [
        max(abs(v + plus), abs(v - minus))
        for v, plus, minus in zip(values, error["array"], error["arrayminus"], strict=True)
    ]
    top = max(reach, default=0.0)
    return 1.12 * top if top > 0 else 1.0


def _ci_side(
    row: Mapping[str, Any], side: int, ci_key: str = "gain_ci", value_key: str = "gain_mean"
) -> float | None:
    ci = row.get(ci_key)
    mean = row.get(value_key)
    if not ci or mean is None or ci[side] is None:
        return None
    return float(ci[1] - mean) if side else float(mean - ci[0])


def scatter_chart(element_id: str, points: Sequence[Mapping[str, Any]]) -> Chart:
    """Certificate-vs-realized scatter: one point per (job, position) across all jobs, both in
    nats, each with its interval."""
    shown = [p for p in points if p.get("certificate_risk_decrease") is not None]
    data = [
        {
            "type": "scatter",
            "mode": "markers",
            "name": "insertion position (mean over seeds)",
            "x": [p["certificate_risk_decrease"] for p in shown],
            "y": [p["gain_mean"] for p in shown],
            "text": [f"job {p['job_id']} · position {p['position']}" for p in shown],
            "hovertemplate": "%{text}<br>certificate %{x:.3g} nats<br>realized %{y:.3g} nats"
            "<extra></extra>",
            "error_x": _error_bar(
                [_ci_side(p, 1, "certificate_ci", "certificate_risk_decrease") for p in shown],
                [_ci_side(p, 0, "certificate_ci", "certificate_risk_decrease") for p in shown],
            ),
            "error_y": _error_bar([_ci_side(p, 1) for p in shown], [_ci_side(p, 0) for p in shown]),
            "marker": {"color": CERTIFIED_COLOR, "size": 9, "opacity": 0.85},
        }
    ]
    layout = _layout(
        "Certificate vs realized gain against the control",
        "certificate: jumpboard model's risk decrease on the certificate split (nats, interval)",
        "realized gain vs control (nats, interval)",
        height=440,
    )
    for axis in ("xaxis", "yaxis"):
        layout[axis].update({"zeroline": True, "zerolinecolor": "#999", "tickformat": GAIN_TICKS})
    return Chart(element_id, data, layout, empty_message="No measured insertions yet.")


JOB_COLORS = (
    "#2f6fb0",
    "#c2571a",
    "#3a8d4f",
    "#7b4fa8",
    "#8a6d1f",
    "#b03a6f",
    "#1f8a8a",
    "#6b6b6b",
    "#d1a21f",
    "#4a4ad1",
    "#8fb03a",
    "#d14a4a",
)
"""One colour per job on the calibration scatters (cycled beyond twelve jobs)."""
SYMLOG_DECADES = 2.0
"""An axis goes symmetric-log when its non-zero magnitudes span more than this many decades."""


@dataclass(frozen=True)
class SymlogAxis:
    """y = sign(v) log10(1 + |v| / threshold): linear near 0, logarithmic beyond `threshold`."""

    threshold: float

    def forward(self, value: float) -> float:
        """The plotted coordinate of `value`."""
        sign = 1.0 if value >= 0 else -1.0
        return sign * math.log10(1.0 + abs(value) / self.threshold)

    def ticks(self, values: Sequence[float]) -> tuple[list[float], list[str]]:
        """Tick positions (plotted coordinates) and labels (original values) at decades."""
        top = max((abs(v) for v in values), default=self.threshold)
        exponents = range(
            math.floor(math.log10(self.threshold)), math.ceil(math.log10(max(top, 1e-300))) + 1
        )
        magnitudes = [10.0**e for e in exponents]
        has_negative = any(v < 0 for v in values)
        has_positive = any(v > 0 for v in values)
        tick_values = [0.0]
        if has_positive:
            tick_values += magnitudes
        if has_negative:
            tick_values = [-m for m in reversed(magnitudes)] + tick_values
        labels = [f"{v:g}" for v in tick_values]
        return [self.forward(v) for v in tick_values], labels


def symlog_axis(values: Sequence[float | None]) -> SymlogAxis | None:
    """A symmetric-log axis for `values` when they span more than SYMLOG_DECADES; else None.

    The linear threshold is the smallest non-zero magnitude, so every point stays apart.
    """
    magnitudes = sorted(abs(v) for v in values if v is not None and v != 0 and math.isfinite(v))
    if len(magnitudes) < 2 or math.log10(magnitudes[-1] / magnitudes[0]) <= SYMLOG_DECADES:
        return None
    return SymlogAxis(threshold=magnitudes[0])


def predictor_scatter_chart(
    element_id: str,
    predictor: str,
    description: str,
    points: Sequence[Mapping[str, Any]],
    job_labels: Mapping[int, str],
) -> Chart:
    """Predictor (x) vs realized gain (y): a trace (colour, legend entry) per job.

    `points` come from `app.web.calibration.predictor_points`; either axis becomes
    symmetric-log (ticks labelled with the original values) when its values span decades.
    """
    usable = [
        p
        for p in points
        if p["predictors"].get(predictor) is not None and p.get("gain_mean") is not None
    ]
    xs = [float(p["predictors"][predictor]) for p in usable]
    ys = [float(p["gain_mean"]) for p in usable]
    x_axis, y_axis = symlog_axis(xs), symlog_axis(ys)
    jobs = sorted({int(p["job_id"]) for p in usable})
    data = []
    for index, job in enumerate(jobs):
        mine = [p for p in usable if int(p["job_id"]) == job]
        jx = [float(p["predictors"][predictor]) for p in mine]
        jy = [float(p["gain_mean"]) for p in mine]
        data.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": job_labels.get(job, f"job {job}"),
                "x": [x_axis.forward(v) for v in jx] if x_axis else jx,
                "y": [y_axis.forward(v) for v in jy] if y_axis else jy,
                "customdata": [[x, y, p["position"]] for x, y, p in zip(jx, jy, mine, strict=True)],
                "hovertemplate": f"job {job} · position %{{customdata[2]}}<br>"
                f"{predictor} %{{customdata[0]:.3g}}<br>realized %{{customdata[1]:.3g}} nats"
                "<extra></extra>",
                "marker": {"color": JOB_COLORS[index % len(JOB_COLORS)], "size": 9},
            }
        )
    layout = _layout(
        predictor,
        f"{predictor}: {description}" + (" (symmetric log)" if x_axis else ""),
        "realized gain vs control (nats)" + (" (symmetric log)" if y_axis else ""),
        height=380,
        legend={"orientation": "v", "x": 1.02, "y": 1.0, "font": {"size": 11}},
        showlegend=True,
    )
    layout["margin"] = {"l": 70, "r": 20, "t": 45, "b": 55}
    for name, axis, values in (("xaxis", x_axis, xs), ("yaxis", y_axis, ys)):
        layout[name].update({"zeroline": True, "zerolinecolor": "#999"})
        if axis is None:
            layout[name]["tickformat"] = GAIN_TICKS
        else:
            tickvals, ticktext = axis.ticks(values)
            layout[name].update({"tickmode": "array", "tickvals": tickvals, "ticktext": ticktext})
    return Chart(element_id, data, layout, empty_message=f"No insertions with {predictor} yet.")
