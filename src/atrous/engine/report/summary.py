"""The report in a few lines of text, for the terminal (the CLI prints it)."""

from __future__ import annotations

from typing import Any


def pct(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{100 * value:.{digits}f}"


def signed(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:+.2f}"


def interval(record: dict[str, Any], sign: bool = False) -> str:
    """``[low, high]`` in percent (points for a difference)."""
    show = signed if sign else pct
    if record["low"] is None:
        return "[-]"
    return f"[{show(record['low'])}, {show(record['high'])}]"


def class_table(record: dict[str, Any]) -> str:
    """Per class: IoU with its interval, boundary IoU, and a flag for classes absent from the
    ground truth (their IoU is undefined, or 0 when they were predicted)."""
    names = list(record["per_class"])
    absent = set(record["absent_classes"])
    width = max(len("class"), *(len(n) for n in names))
    header = f"{'class':<{width}}  {'IoU':>6}  {'95 % interval':<16}  {'boundary IoU':>12}"
    lines = [header, "-" * len(header)]
    for name in names:
        iou = record["per_class"][name]["iou"]
        ci = interval(record["bootstrap"]["per_class"][name])
        biou = record["boundary"]["per_class"][name]
        flag = "  absent from ground truth" if name in absent else ""
        lines.append(f"{name:<{width}}  {pct(iou):>6}  {ci:<16}  {pct(biou):>12}{flag}")
    return "\n".join(lines)


def summary_text(record: dict[str, Any]) -> str:
    """What the report found, in percent; the HTML and JSON hold the details."""
    boot = record["bootstrap"]
    lines = [
        f"report over {record['images']} images (95 % intervals: bootstrap over images, "
        f"{boot['resamples']} resamples, seed {boot['seed']})",
        class_table(record),
    ]
    boundary = record["boundary"]
    distance = boundary["distance_px"]
    d_text = (
        ""
        if distance is None
        else f"d = {distance['min']}" + (f"–{distance['max']}" if distance["max"] != distance["min"] else "")
    )
    lines.append(
        f"mIoU {pct(record['miou'])} % {interval(boot['miou'])} · boundary mIoU {pct(boundary['miou'])} % ({d_text} px)"
    )
    if record.get("note"):
        lines.append(f"note: {record['note']}")
    trimap = record["trimap"]
    lines.append(
        "trimap accuracy: " + ", ".join(f"d={d} {pct(trimap['accuracy'][str(d)], 1)} %" for d in trimap["widths"])
    )
    lines.append(
        "share of the errors within d px of an outline: "
        + ", ".join(f"d={d} {pct(trimap['error_share'][str(d)], 1)} %" for d in trimap["widths"])
        + " · accuracy outside: "
        + ", ".join(f"{pct(trimap['accuracy_outside'][str(d)], 1)} %" for d in trimap["widths"])
    )
    calibration = record["calibration"]
    if calibration is not None:
        lines.append(
            f"calibration ({calibration['pixels_sampled']:,} of {calibration['pixels_scored']:,} scored pixels): "
            f"ECE {pct(calibration['ece'])} % → {pct(calibration['ece_scaled'])} % at T = "
            f"{calibration['temperature']:.4g} (NLL {calibration['nll']:.4f} → {calibration['nll_scaled']:.4f})"
            + (" — T is the search's bound" if calibration["temperature_at_bound"] else "")
        )
        if calibration["stored_temperature"] is not None:
            lines.append(
                f"  the model's temperature.json (T = {calibration['stored_temperature']:.4g}) gives "
                f"ECE {pct(calibration['ece_stored'])} %"
            )
    sizes = record["objects"]["sizes"]
    lines.append(
        "objects (8-connected): "
        + ", ".join(f"{name} {s['objects']} (mean IoU {pct(s['mean_iou'], 1)} %)" for name, s in sizes.items())
    )
    if record["confused_pairs"]:
        lines.append(
            "most confused: "
            + "; ".join(f"{p['true']} → {p['predicted']} {pct(p['share'], 1)} %" for p in record["confused_pairs"][:5])
        )
    if record["worst_images"]:
        lines.append(
            "worst images: " + ", ".join(f"{w['name']} ({pct(w['miou'], 1)} %)" for w in record["worst_images"])
        )
    compare = record.get("compare")
    if compare is not None:
        miou = compare["miou"]
        lines.append(
            f"compared with {compare['against']}: mIoU {pct(miou['this'])} % vs {pct(miou['other'])} %, "
            f"difference {signed(miou['difference']['estimate'])} points {interval(miou['difference'], sign=True)} "
            "(paired bootstrap)"
        )
    return "\n".join(lines)
