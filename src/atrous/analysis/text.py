"""The analysis as a plain-text report, section by section (what ``atrous analyze`` prints)."""

from __future__ import annotations

from collections.abc import Sequence

from .advisor import Advice
from .effective_rf import EffectiveField
from .receptive_field import FieldRow
from .report import Analysis
from .valid_weights import Placement, ValidWeightCurve

MIB = 2**20
CURVE_RATES = (6, 12, 18, 24, 36)  # the rates DeepLab v2 and v3 use


def _num(x: float) -> str:
    return f"{round(x):d}" if abs(x - round(x)) < 1e-6 else f"{x:.2f}"


def _pair(h: str, w: str) -> str:
    return h if h == w else f"{h}×{w}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool]) -> list[str]:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]
    lines = []
    for row in (header, *rows):
        cells = [str(c).rjust(n) if r else str(c).ljust(n) for c, n, r in zip(row, widths, right, strict=True)]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "-" * len(lines[0]))
    return lines


def format_report(analysis: Analysis) -> str:
    """Every section of ``analysis`` as text."""
    h, w = analysis.size
    stride = f", output stride {analysis.output_stride}" if analysis.output_stride else ""
    lines = [f"{analysis.model}: input {h}×{w}{stride}"]
    if analysis.flops is not None:
        lines.append(
            f"{analysis.flops / 1e9:.2f} GFLOPs, {analysis.activation_bytes / MIB:.0f} MiB of activations "
            "(every tensor the forward pass allocates, batch 1)"
        )
    lines += ["", *fields_section(analysis.fields, analysis.conservative)]
    lines += ["", *valid_weights_section(analysis.curve, analysis.placements)]
    lines += ["", *advice_section(analysis.advice)]
    if analysis.effective:
        lines += ["", *effective_section(analysis.effective)]
    return "\n".join(lines)


def fields_section(rows: Sequence[FieldRow], conservative: Sequence[str] = ()) -> list[str]:
    table = []
    for r in rows:
        slack = _pair(_num(r.h.slack), _num(r.w.slack))
        table.append(
            (
                r.part,
                r.name or "(model)",
                r.label,
                f"{r.shape[0]}×{r.shape[1]}",
                _pair(_num(r.h.size), _num(r.w.size)),
                _pair(_num(r.h.jump), _num(r.w.jump)),
                _pair(_num(r.h.start), _num(r.w.start)),
                "" if slack == "0" else f"±{slack}",
                "yes" if r.covers_input else "no",
            )
        )
    header = ("part", "module", "what", "map", "RF size", "jump", "centre(0,0)", "slack", "sees all")
    lines = [
        "Theoretical receptive fields (Araujo et al. 2019): per axis, in input pixels; 'centre(0,0)' is the centre",
        "of output pixel (0, 0)'s field (padded coordinates); 'sees all': the map's centre pixel sees the whole input",
        "",
        *_table(header, table, (False, False, False, True, True, True, True, True, False)),
    ]
    if any(r.h.slack or r.w.slack for r in rows):
        lines.append("slack: after a resize the field of a given pixel sits up to this far from the straight-line fit")
    if conservative:
        lines.append(f"taken as seeing their whole input (not modelled exactly): {', '.join(conservative)}")
    return lines


def valid_weights_section(curve: ValidWeightCurve, placed: Sequence[Placement]) -> list[str]:
    k2 = curve.kernel**2
    rates = [r for r in CURVE_RATES if r <= curve.size]
    paper = [(str(r), _pct(curve.share(k2)[r - 1]), _pct(curve.share(1)[r - 1])) for r in rates]
    lines = [
        f"Valid weights (DeepLab v3 §3.3, Fig. 4): a {curve.kernel}×{curve.kernel} filter on a "
        f"{curve.size}×{curve.size} map with zero padding, share of positions",
        "",
        *_table(("rate", f"all {k2} taps valid", "only the centre"), paper, (True, True, True)),
        "",
    ]
    if not placed:
        return [*lines, "The model has no dilated convolution."]
    groups: list[tuple[Placement, int]] = []
    for p in placed:
        key = (p.kernel, p.rate, p.feature, p.stride, p.padding)
        last = groups[-1][0] if groups else None
        if last is not None and (last.kernel, last.rate, last.feature, last.stride, last.padding) == key:
            groups[-1] = (last, groups[-1][1] + 1)
        else:
            groups.append((p, 1))
    table = [
        (
            p.module + (f" (+{n - 1} alike)" if n > 1 else ""),
            f"{p.kernel[0]}×{p.kernel[1]}",
            _pair(str(p.rate[0]), str(p.rate[1])),
            f"{p.feature[0]}×{p.feature[1]}",
            _pct(p.full_share),
            _pct(p.single_share),
        )
        for p, n in groups
    ]
    header = ("dilated convolution", "kernel", "rate", "feature", "all taps valid", "one tap valid")
    lines += [
        "The model's dilated convolutions, each at the feature size it runs on (share of output positions):",
        "",
        *_table(header, table, (False, True, True, True, True, True)),
    ]
    return lines


def advice_section(advice: Advice) -> list[str]:
    kind = advice.aspp or "none"
    lines = [f"Adviser: input {advice.size[0]}×{advice.size[1]}, ASPP: {kind}"]
    for s in advice.strides:
        mark = " (analysed)" if s.output_stride == advice.output_stride else ""
        if not s.available:
            lines.append(f"  output stride {s.output_stride}{mark}: not available — {s.reason}")
            continue
        figures = []
        if s.feature:
            figures.append(f"ASPP input {s.feature[0]}×{s.feature[1]}")
        if s.flops is not None:
            figures.append(f"{s.flops / 1e9:.2f} GFLOPs")
        figures.append(f"{s.activation_bytes / MIB:.0f} MiB of activations")
        lines.append(f"  output stride {s.output_stride}{mark}: " + ", ".join(figures))
        for b in s.branches:
            lines.append(
                f"    rate {b.rate:>3}: {b.status:<10} all {b.kernel**2} taps at {_pct(b.full_share):>7} of positions, "
                f"only the centre at {_pct(b.single_share):>7}"
            )
        if s.min_side_non_degenerate is not None:
            lines.append(
                f"    smallest square input (multiple of {s.output_stride}): {s.min_side_non_degenerate} keeps every "
                f"branch non-degenerate, {s.min_side_unweakened} keeps all {s.branches[0].kernel ** 2} taps somewhere"
            )
    lines.append(
        "  degenerate: rate ≥ max(H, W), the branch is a 1×1 convolution; weakened: min(H, W) < 2·rate + 1, "
        "no position sees every tap"
    )
    lines += [f"  note: {n}" for n in advice.notes]
    return lines


def effective_section(maps: Sequence[EffectiveField]) -> list[str]:
    first = maps[0]
    h, w = first.gradient.shape
    lines = [
        f"Effective receptive fields (Luo et al. 2016): {h}×{w} input, mean over {first.samples} random input(s);",
        "radius: half-side of the centred square holding that share of |∂ centre pixel / ∂ input|",
        "",
    ]
    table = []
    for e in maps:
        border = min(e.centre[0], e.centre[1], h - 1 - e.centre[0], w - 1 - e.centre[1])
        r90 = f"≥{e.radius90}" if e.radius90 >= border else str(e.radius90)
        table.append((e.weights, e.label, str(e.radius50), r90, _pair(_num(e.half_size[0]), _num(e.half_size[1]))))
    header = ("weights", "map", "50 % radius", "90 % radius", "theoretical half-size")
    lines += _table(header, table, (False, False, True, True, True))
    lines.append("≥: the 90 % square reaches the image border; a larger --erf-size would show more")
    return lines
