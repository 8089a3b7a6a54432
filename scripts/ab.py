#!/usr/bin/env python3
"""A/B two `oxifaster` binaries on one machine: run them alternately (A, B,
A, B, ...) with the same `bench` arguments and print, per workload point,
each side's median Mops/s and the median of the per-round ratios B/A.

    scripts/ab.py OLD_BINARY NEW_BINARY ROUNDS -- bench --keys 1000000 --workload c,a,rmw --threads 2 --secs 2 --device null

Alternating in one session is what makes the ratio honest on a shared,
noisy machine: both sides see the same background load, round by round.

    scripts/ab.py --stack-pads 0,3,8,13 OLD NEW ROUNDS -- bench ...

runs round i of both sides with `--stack-pad` P[i mod len]: the hot loop's
speed depends on where its worker's stack starts (4 KiB aliasing), so one
position can favour one binary by 10% or more; varying it makes the ratio
one of code, not of layout. (Both binaries must know `--stack-pad`.)
"""
import json
import statistics
import subprocess
import sys


def run(binary, args):
    out = subprocess.run([binary, *args, "--json"], check=True, capture_output=True, text=True).stdout
    points = {}
    for line in out.splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            if "workload" not in r:
                continue
            points[(r["workload"], r["dist"], r["threads"])] = r["mops"]
    return points


def main():
    argv = sys.argv[1:]
    pads = None
    if argv[:1] == ["--stack-pads"]:
        pads = [p for p in argv[1].split(",") if p]
        argv = argv[2:]
    if len(argv) < 4 or "--" not in argv:
        sys.exit(__doc__)
    a, b, rounds = argv[0], argv[1], int(argv[2])
    args = argv[argv.index("--") + 1 :]
    results = {"A": [], "B": []}
    for i in range(rounds):
        round_args = args + ["--stack-pad", pads[i % len(pads)]] if pads else args
        for side, binary in (("A", a), ("B", b)) if i % 2 == 0 else (("B", b), ("A", a)):
            results[side].append(run(binary, round_args))
            print(f"round {i + 1} {side} done", file=sys.stderr)
    print(f"{'point':<24} {'A median':>9} {'B median':>9} {'B/A (median of rounds)':>24}  per-round ratios")
    for point in results["A"][0]:
        xs = [r[point] for r in results["A"]]
        ys = [r[point] for r in results["B"]]
        ratios = [y / x for x, y in zip(xs, ys) if x > 0]
        name = f"{point[0]} {point[1]} {point[2]}t"
        print(
            f"{name:<24} {statistics.median(xs):>9.2f} {statistics.median(ys):>9.2f} "
            f"{statistics.median(ratios):>24.3f}  {' '.join(f'{r:.2f}' for r in ratios)}"
        )


if __name__ == "__main__":
    main()
