"""The printed report of bench/hostile.py: per-family counts, totals against targets, and the failures."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

RSS_TARGET = 1.2
BAD = ("internal_error", "escaped", "hung", "crashed")
MB = 1024  # records hold kB


def report(records: list[dict[str, Any]], base: dict[str, Any] | None, wall_s: float) -> bool:
    """Print everything; True when every target is met."""
    cases = [r for r in records if "outcome" in r]
    peak_kb = max([r.get("peak_kb", 0) for r in records if "done" in r] + [r["peak_kb"] for r in cases] + [0])
    _families(cases)
    print()
    _codes(cases)
    print()
    ok = _totals(cases, base, peak_kb, wall_s)
    _failures(cases)
    return ok


def _families(cases: list[dict[str, Any]]) -> None:
    by_family: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in cases:
        by_family[r["family"]].append(r)
    head = f"{'family':<15}{'n':>5}{'coded':>7}{'internal':>10}{'escaped':>9}{'hung':>6}{'leftover':>10}"
    print(head + f"{'flagged':>9}{'unexpct':>9}{'max s':>8}{'peak MB':>9}")
    for family, rows in by_family.items():
        count = Counter(r["outcome"] for r in rows)
        print(f"{family:<15}{len(rows):>5}{count['coded']:>7}{count['internal_error']:>10}{count['escaped']:>9}"
              f"{count['hung'] + count['crashed']:>6}{sum(bool(r['leftovers']) for r in rows):>10}"
              f"{sum(bool(_message_flags(r)) for r in rows):>9}{sum(_unexpected(r) for r in rows):>9}"
              f"{max(r['seconds'] for r in rows):>8.1f}{max(r['peak_kb'] for r in rows) / MB:>9.0f}")


def _codes(cases: list[dict[str, Any]]) -> None:
    codes = Counter(r["code"] for r in cases)
    print("codes: " + ", ".join(f"{code} {n}" for code, n in codes.most_common()))


def _totals(cases: list[dict[str, Any]], base: dict[str, Any] | None, peak_kb: int, wall_s: float) -> bool:
    count = Counter(r["outcome"] for r in cases)
    leftovers = sum(bool(r["leftovers"]) for r in cases)
    flagged = sum(bool(_message_flags(r)) for r in cases)
    rows: list[tuple[str, str, bool | None]] = [
        ("requests", str(len(cases)), len(cases) >= 500),
        ("coded", str(count["coded"]), None),
        ("internal_error", str(count["internal_error"]), count["internal_error"] == 0),
        ("escaped", str(count["escaped"]), count["escaped"] == 0),
        ("hung / worker died", f"{count['hung']} / {count['crashed']}", count["hung"] + count["crashed"] == 0),
        ("leftovers (cases)", f"{leftovers} ({sum(len(r['leftovers']) for r in cases)} entries)", leftovers == 0),
        ("checkpoints kept", str(sum(r["checkpoints"] > 0 for r in cases)), None),
        ("traceback/long msg", str(flagged), flagged == 0),
        ("unexpected codes", str(sum(_unexpected(r) for r in cases)), None),
        ("peak RSS worker", f"{peak_kb / MB:.0f} MB", None),
    ]
    if base is not None:
        ratio = peak_kb / base["peak_kb"]
        rows.append(("peak RSS normal job", f"{base['peak_kb'] / MB:.0f} MB ({base['seconds']:.0f} s, {base['code']})",
                     None))
        rows.append(("peak RSS ratio", f"{ratio:.2f}x", ratio < RSS_TARGET))
    else:
        rows.append(("peak RSS ratio", "n/a (no normal job: --quick or it failed)", None))
    rows.append(("wall time", f"{wall_s:.0f} s", None))
    print(f"{'total':<22}{'value':>28}  target")
    for name, value, met in rows:
        verdict = "" if met is None else ("met" if met else "NOT met")
        print(f"{name:<22}{value:>28}  {verdict}")
    return all(met is not False for _, _, met in rows)


def _message_flags(r: dict[str, Any]) -> list[str]:
    return [f for f in r.get("flags", []) if f in ("traceback", "long_message")]


def _unexpected(r: dict[str, Any]) -> bool:
    return bool(r.get("expect")) and r["outcome"] == "coded" and r["code"] not in r["expect"]


def _failures(cases: list[dict[str, Any]]) -> None:
    _listing("internal_error / escaped / hung / worker died", [r for r in cases if r["outcome"] in BAD])
    _listing("leftovers", [r for r in cases if r["leftovers"]], lambda r: ", ".join(r["leftovers"][:3]))
    _listing("traceback or long message", [r for r in cases if _message_flags(r)],
             lambda r: f"{','.join(_message_flags(r))} ({r.get('message_len', 0)} chars)")
    _listing("unexpected codes (expected what the issue asks)", [r for r in cases if _unexpected(r)],
             lambda r: f"{r['code']}, expected {'/'.join(r['expect'])}: {r['message']}")
    top = sorted(cases, key=lambda r: -r["peak_kb"])[:5]
    print("\nhighest peak RSS: " + "; ".join(f"{r['family']}/{r['name']} {r['peak_kb'] / MB:.0f} MB" for r in top))
    slow = sorted(cases, key=lambda r: -r["seconds"])[:5]
    print("slowest: " + "; ".join(f"{r['family']}/{r['name']} {r['seconds']:.1f} s ({r['code']})" for r in slow))


def _listing(title: str, rows: list[dict[str, Any]], detail: Any = None) -> None:
    """Rows grouped by family and message: ``family: [outcome code] message  ×n  (case names)``."""
    if not rows:
        return
    print(f"\n{title}: {len(rows)}")
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        text = detail(r) if detail else f"[{r['outcome']} {r['code']}] {r.get('detail') or r['message']}"
        groups[(r["family"], text)].append(r)
    for (family, text), members in groups.items():
        names = ", ".join(m["name"] for m in members[:4]) + (", …" if len(members) > 4 else "")
        print(f"  {family}: {text[:160]}  x{len(members)}  ({names[:200]})")
