"""``report.html``: one self-contained page — CSS inline, every picture an inline base64 PNG,
no script and no reference to anything outside the file, so it opens offline and can be
mailed or archived alone."""

from __future__ import annotations

import base64
from html import escape
from typing import Any

from .summary import interval, pct, signed

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { padding: .2em .7em; border-bottom: 1px solid #e4e4e4; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; }
.absent { color: #a35a00; } .muted { color: #777; } .big { font-size: 1.3em; font-weight: 600; }
figure { margin: 1em 0; } figcaption { color: #555; } img { max-width: 100%; image-rendering: pixelated; }
dt { font-weight: 600; margin-top: .6em; } dd { margin-left: 1.5em; }
"""


def _img(data: bytes, alt: str) -> str:
    encoded = base64.b64encode(data).decode("ascii")
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{encoded}">'


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(record: dict[str, Any], figures: dict[str, bytes]) -> str:
    """The page of a report record (``report.json``) and its pictures."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>atrous evaluation report — {escape(str(record.get('model')))}</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>Evaluation report</h1>",
        _settings(record),
        _headline(record),
        _classes(record),
        _outlines(record),
        _calibration(record, figures),
        _objects(record),
        _confusions(record),
        _worst(record, figures),
        _compare(record),
        _definitions(record),
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"


def _settings(record: dict[str, Any]) -> str:
    keys = ("model", "split", "images", "scales", "flip", "output_stride", "tile", "precision")
    rows = [[escape(k), escape(str(record.get(k)))] for k in keys if k in record]
    return _table(["setting", "value"], rows)


def _headline(record: dict[str, Any]) -> str:
    boot = record["bootstrap"]
    calibration = record["calibration"]
    lines = [
        f'<p class="big">mIoU {pct(record["miou"])} % <span class="muted">95 % interval '
        f"{interval(boot['miou'])}</span></p>",
        f"<p>pixel accuracy {pct(record['pixel_accuracy'])} % · mean accuracy {pct(record['mean_accuracy'])} % · "
        f"FWIoU {pct(record['fwiou'])} % · mean Dice {pct(record['mean_dice'])} % · "
        f"boundary mIoU {pct(record['boundary']['miou'])} %"
        + (
            ""
            if calibration is None
            else f" · ECE {pct(calibration['ece'])} % (T = {calibration['temperature']:.4g}: "
            f"{pct(calibration['ece_scaled'])} %)"
        )
        + "</p>",
    ]
    if record.get("note"):
        lines.append(f'<p class="absent">{escape(record["note"])}</p>')
    return "\n".join(lines)


def _classes(record: dict[str, Any]) -> str:
    absent = set(record["absent_classes"])
    rows = []
    for name, scores in record["per_class"].items():
        flag = ' <span class="absent">absent from ground truth</span>' if name in absent else ""
        rows.append(
            [
                escape(name) + flag,
                pct(scores["iou"]),
                interval(record["bootstrap"]["per_class"][name]),
                pct(record["boundary"]["per_class"][name]),
                pct(scores["accuracy"]),
                pct(scores["dice"]),
            ]
        )
    header = ["class", "IoU %", "95 % interval", "boundary IoU %", "accuracy %", "Dice %"]
    return "<h2>Per class</h2>" + _table(header, rows)


def _outlines(record: dict[str, Any]) -> str:
    trimap = record["trimap"]
    rows = [
        [
            f"{d} px",
            pct(trimap["accuracy"][str(d)]),
            f"{trimap['pixels'][str(d)]:,}",
            pct(trimap["error_share"][str(d)]),
            pct(trimap["accuracy_outside"][str(d)]),
        ]
        for d in trimap["widths"]
    ]
    distance = record["boundary"]["distance_px"]
    d_text = ""
    if distance is not None:
        span = str(distance["min"]) if distance["min"] == distance["max"] else f"{distance['min']}–{distance['max']}"
        d_text = f" (d = {span} px on these images)"
    return (
        "<h2>Outlines</h2>"
        f"<p>Boundary mIoU {pct(record['boundary']['miou'])} %{escape(d_text)}; per class in the table above.</p>"
        "<p>Trimap accuracy: pixel accuracy in a band around the ground-truth boundaries. When most "
        "wrong pixels lie in a thin band and the pixels outside it are nearly all right, prediction and "
        "truth draw the same outlines a pixel or two apart rather than missing regions.</p>"
        + _table(["band width d", "accuracy %", "scored pixels", "share of all errors %", "accuracy outside %"], rows)
    )


def _calibration(record: dict[str, Any], figures: dict[str, bytes]) -> str:
    c = record["calibration"]
    if c is None:
        return "<h2>Calibration</h2><p>No scored pixel.</p>"
    text = (
        f"<p>{c['pixels_sampled']:,} of {c['pixels_scored']:,} scored pixels ({escape(c['scores'])}). "
        f"ECE {pct(c['ece'])} %, NLL {c['nll']:.4f}. With the fitted temperature T = {c['temperature']:.4g}: "
        f"ECE {pct(c['ece_scaled'])} %, NLL {c['nll_scaled']:.4f} (labels unchanged).</p>"
    )
    if c["stored_temperature"] is not None:
        stored = c["stored_temperature"]
        text += f"<p>The model's temperature.json (T = {stored:.4g}) gives ECE {pct(c['ece_stored'])} %.</p>"
    figure = figures.get(c["figure"])
    if figure is not None:
        text += f"<figure>{_img(figure, 'reliability diagram')}<figcaption>Reliability diagram.</figcaption></figure>"
    rows = [
        [f"{b['low']:.3f}–{b['high']:.3f}"]
        + [cell for bins in (b, s) for cell in (f"{bins['count']:,}", pct(bins["confidence"]), pct(bins["accuracy"]))]
        for b, s in zip(c["reliability"], c["reliability_scaled"], strict=True)
    ]
    header = ["confidence bin", "pixels", "mean confidence %", "accuracy %"]
    header += ["pixels with T", "mean confidence % with T", "accuracy % with T"]
    return "<h2>Calibration</h2>" + text + _table(header, rows)


def _objects(record: dict[str, Any]) -> str:
    o = record["objects"]
    rows = [[escape(name), str(s["objects"]), pct(s["mean_iou"])] for name, s in o["sizes"].items()]
    thresholds = ", ".join(
        f"{name} ≥ {low} px" if high is None else f"{name} {low}–{high - 1} px"
        for name, (low, high) in o["area_px"].items()
    )
    per_class = [
        [escape(cls)] + [f"{pct(b['mean_iou'])} ({b['objects']})" for b in buckets.values()]
        for cls, buckets in o["per_class"].items()
        if any(b["objects"] for b in buckets.values())
    ]
    return (
        "<h2>IoU by object size</h2>"
        f"<p>Objects: 8-connected ground-truth components of one class; areas {escape(thresholds)}.</p>"
        + _table(["size", "objects", "mean object IoU %"], rows)
        + _table(["class", *(f"{n} IoU % (objects)" for n in o["sizes"])], per_class)
    )


def _confusions(record: dict[str, Any]) -> str:
    rows = [
        [escape(p["true"]), escape(p["predicted"]), pct(p["share"]), f"{p['pixels']:,}"]
        for p in record["confused_pairs"]
    ]
    if not rows:
        return "<h2>Most-confused classes</h2><p>No pixel was confused.</p>"
    header = ["true class", "predicted as", "share of the true class's pixels %", "pixels"]
    return "<h2>Most-confused classes</h2>" + _table(header, rows)


def _worst(record: dict[str, Any], figures: dict[str, bytes]) -> str:
    items = record["worst_images"]
    if not items:
        return ""
    out = [
        "<h2>Worst images</h2><p>Ranked by the image's mIoU over the classes in its ground truth. "
        "Panels: image | truth | prediction | errors (red: wrong, grey: ignored).</p>"
    ]
    for item in items:
        caption = (
            f"{item['rank']}. {escape(item['name'])}: mIoU {pct(item['miou'])} % over "
            f"{escape(', '.join(item['classes']))}"
        )
        out.append(f"<figure>{_img(figures[item['file']], item['name'])}<figcaption>{caption}</figcaption></figure>")
    return "\n".join(out)


def _compare(record: dict[str, Any]) -> str:
    c = record.get("compare")
    if c is None:
        return ""
    rows = [
        [
            "mIoU",
            pct(c["miou"]["this"]),
            pct(c["miou"]["other"]),
            signed(c["miou"]["difference"]["estimate"]),
            interval(c["miou"]["difference"], sign=True),
        ]
    ]
    rows += [
        [
            escape(name),
            pct(v["this"]),
            pct(v["other"]),
            signed(v["difference"]["estimate"]),
            interval(v["difference"], True),
        ]
        for name, v in c["per_class"].items()
    ]
    header = ["", "this %", f"{c['against']} %", "difference (points)", "95 % paired interval"]
    return (
        f"<h2>Compared with {escape(c['against'])}</h2>"
        f"<p>The same images, resampled together ({c['resamples']} resamples, seed {c['seed']}): an interval "
        "that excludes 0 is a difference the choice of images does not explain.</p>" + _table(header, rows)
    )


def _definitions(record: dict[str, Any]) -> str:
    boot = record["bootstrap"]
    items = {
        "IoU, mIoU": "n_ii / (t_i + Σ_j n_ji − n_ii) from one confusion matrix summed over the split (FCN §5); "
        "mIoU averages the classes present in ground truth or prediction.",
        "95 % interval": f"Bootstrap over images (Efron): {boot['resamples']} resamples of the images with "
        f"replacement (numpy default_rng, seed {boot['seed']}), the per-image confusion matrices of each summed, "
        "the 2.5th and 97.5th percentiles of the metric.",
        "Boundary IoU": "Cheng et al., CVPR 2021: per class, Σ|G_d ∩ P_d| / Σ|G_d ∪ P_d| where M_d is a mask "
        "minus its erosion by d = 0.02 × image diagonal (at least 1 px); ignored pixels excluded.",
        "Trimap accuracy": "Kohli et al. 2009 (DeepLab v1's trimap): pixel accuracy of pixels whose (2d+1)² square "
        "holds more than one ground-truth label (void counted as a label); void pixels not scored.",
        "ECE": "Guo et al. 2017: 15 equal-width bins of the top-label confidence, Σ |B|/n · |accuracy − confidence|.",
        "Temperature": "One T > 0 minimising the NLL of softmax(z / T) on these pixels; labels never change.",
        "Object IoU": "Per 8-connected ground-truth component O of a class: |O ∩ P| / |O ∪ K|, K the predicted "
        "components of the class touching O.",
    }
    body = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in items.items())
    return f"<h2>Definitions</h2><dl>{body}</dl>"
