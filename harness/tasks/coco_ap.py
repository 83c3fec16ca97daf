"""COCO-style box AP with pycocotools, the field's reference evaluator, from in-memory lists.

Ground truths are ``(image_id, class, x, y, w, h)`` and detections ``(image_id, class, score, x, y, w,
h)``, boxes in pixels with (x, y) the top-left corner (COCO's ``bbox`` format). :func:`coco_ap` builds
the COCO ground-truth object in memory (every annotation ``iscrowd`` 0, its ``area`` the box area
w * h), loads the detections with ``loadRes``, and runs ``COCOeval`` (iouType "bbox", IoU 0.50:0.05:0.95,
at most 100 detections per image, 101-point interpolated precision) with the area ranges passed in:
``small`` below ``small_area``, ``large`` from ``large_area``, ``medium`` between. pycocotools' prints
are suppressed. Values are in [0, 1]; -1 (pycocotools' own convention) where a range holds no object.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

AP_KEYS = ("ap", "ap50", "ap75", "ap_s", "ap_m", "ap_l")  # COCOeval.stats[0:6]


def coco_ap(gts: list[tuple], dets: list[tuple], n_classes: int, small_area: float,
            large_area: float) -> dict[str, float]:
    """AP over IoU .50:.95 (``ap``), at .50 and .75, and by object size (see the module doc)."""
    images = sorted({int(g[0]) for g in gts} | {int(d[0]) for d in dets})
    anns = [{"id": i + 1, "image_id": int(g[0]), "category_id": int(g[1]) + 1,
             "bbox": [float(v) for v in g[2:6]], "area": float(g[4] * g[5]), "iscrowd": 0}
            for i, g in enumerate(gts)]
    dataset = {"info": {}, "images": [{"id": i} for i in images], "annotations": anns,
               "categories": [{"id": k + 1, "name": str(k)} for k in range(n_classes)]}
    if not dets or not gts:
        return {k: 0.0 if gts else -1.0 for k in AP_KEYS}
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = dataset
        gt.createIndex()
        res = np.array([[d[0], *d[3:7], d[2], int(d[1]) + 1] for d in dets], dtype=np.float64)
        dt = gt.loadRes(res)
        ev = COCOeval(gt, dt, iouType="bbox")
        ev.params.areaRng = [[0.0, 1e10], [0.0, small_area], [small_area, large_area], [large_area, 1e10]]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {k: float(v) for k, v in zip(AP_KEYS, ev.stats[:6])}
