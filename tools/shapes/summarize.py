"""The validation grid in a few numbers, for docs/control-table.md: per stage its settings
and wall time, its best setting, and where the floors stop it (the best "all correct" among
settings meeting each pair of floors).

    /usr/bin/python3 tools/shapes/summarize.py
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from search import FLOORS, OUT, row_key  # noqa: E402
from table import describe  # noqa: E402


def fmt(m):
    return ", ".join(f"{k} {m[k]:.3f}" for k in ("all", "iou", "color", "color_in_box", "style", "count"))


def main():
    with open(OUT) as f:
        d = json.load(f)
    res = d["results"]
    print("stages:", json.dumps(d["stages"]))
    for st in dict.fromkeys(r["stage"] for r in res):
        rs = [r for r in res if r["stage"] == st]
        b = max(rs, key=lambda r: row_key(r["metrics"]))
        print(f"\n[{st}] {len(rs)} settings, {sum(r['seconds'] for r in rs):.0f} s; best: {' / '.join(describe(b['setting']))}: {fmt(b['metrics'])}")
        print(f"  meeting all floors: {sum(all(r['metrics'][k] >= v for k, v in FLOORS.items()) for r in rs)}")
    print("\nwhere the floors stop it (all stages):")
    names = list(FLOORS)
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            ok = [r for r in res if r["metrics"][names[i]] >= FLOORS[names[i]] and r["metrics"][names[j]] >= FLOORS[names[j]]]
            if ok:
                b = max(ok, key=lambda r: row_key(r["metrics"]))
                print(f"  {names[i]} & {names[j]}: {len(ok)} settings; best {' / '.join(describe(b['setting']))}: {fmt(b['metrics'])}")
            else:
                print(f"  {names[i]} & {names[j]}: none")
    print("\nthe trade-off: the best color (and all correct) at each box-IoU floor, all stages")
    for floor in (0.3, 0.4, 0.5, 0.6, 0.7):
        ok = [r for r in res if r["metrics"]["iou"] >= floor]
        b = max(ok, key=lambda r: r["metrics"]["color"])
        print(f"  iou >= {floor}: {len(ok)} settings; best color {b['metrics']['color']:.3f} "
              f"({' / '.join(describe(b['setting']))}; {fmt(b['metrics'])})")
    for k in names:
        print(f"  max {k} over the grid: {max(r['metrics'][k] for r in res):.3f}")
    # per base: the best color among settings with iou >= 0.6
    for base in ("base", "layout", "style"):
        ok = [r for r in res if r["setting"]["kinds"][0] == base and r["metrics"]["iou"] >= FLOORS["iou"]]
        if ok:
            b = max(ok, key=lambda r: r["metrics"]["color"])
            print(f"  {base} as base, iou >= 0.6: best color {b['metrics']['color']:.3f} ({' / '.join(describe(b['setting']))})")
        ok = [r for r in res if r["setting"]["kinds"][0] == base and r["metrics"]["color"] >= FLOORS["color"]]
        if ok:
            b = max(ok, key=lambda r: r["metrics"]["iou"])
            print(f"  {base} as base, color >= 0.8: best iou {b['metrics']['iou']:.3f} ({' / '.join(describe(b['setting']))})")


if __name__ == "__main__":
    main()
