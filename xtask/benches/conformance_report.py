#!/usr/bin/env python3
"""Tallies a `cargo xtask conformance` run from ginkgo's JSON reports (`report.json` in its
report directory, or `parallel/report.json` and `serial/report.json` of a `--parallel` run): the `[Conformance]` tests passed, failed (with the first line of each
failure), left out by `--skip`, and not reached (a run stopped before its end), per SIG, with
wall times and the slowest tests. The figures of BENCHMARKS.md's whole-suite runs come from it:

    python3 xtask/benches/conformance_report.py REPORT_DIR/report.json --skip 'REGEX'
    python3 xtask/benches/conformance_report.py REPORT_DIR/{parallel,serial}/report.json

The reports of one run's passes are read together: a test counts with the outcome of the pass
that ran it (each pass leaves out the other's tests).

`--skip` and `--focus` are the regular expressions given to `cargo xtask conformance`, so the
tests they left out are told apart from those the run did not reach. `--markdown` prints the tables as
Markdown.
"""

import argparse
import collections
import json
import re
import sys

# The outcomes of a test that did not run, and every outcome in the order they are printed.
NOT_RUN = ("skipped itself", "left out", "not reached")
ORDER = ("passed", "failed", "timedout", "interrupted", "panicked", "aborted") + NOT_RUN


def spec_name(spec):
    """The full name ginkgo prints: the containers' texts, then the leaf's."""
    parts = list(spec.get("ContainerHierarchyTexts") or []) + [spec.get("LeafNodeText", "")]
    return " ".join(part for part in parts if part)


def labels(spec):
    """Every label of the spec and its containers."""
    found = set(spec.get("LeafNodeLabels") or [])
    for container in spec.get("ContainerHierarchyLabels") or []:
        found.update(container or [])
    return found


def sig(name):
    match = re.match(r"\[(sig-[a-z-]+)\]", name)
    return match.group(1) if match else "(none)"


def first_line(text, limit=200):
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def rank(row):
    """Which of a test's outcomes in several passes counts: one that ran, then why it did not."""
    outcome = row[1]
    return NOT_RUN.index(outcome) + 1 if outcome in NOT_RUN else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", metavar="report",
                        help="ginkgo's JSON report (report.json), one per pass of the run")
    parser.add_argument("--skip", default=None, help="the run's --skip regular expression")
    parser.add_argument("--focus", default=None, help="the run's --focus regular expression")
    parser.add_argument("--markdown", action="store_true", help="Markdown tables")
    parser.add_argument("--slowest", type=int, default=15, help="how many of the slowest to list")
    args = parser.parse_args()

    suites = []
    for report in args.reports:
        with open(report, encoding="utf-8") as handle:
            suites.extend(json.load(handle))
    skip = re.compile(args.skip) if args.skip else None
    focus = re.compile(args.focus) if args.focus else None

    found = {}  # name -> (name, outcome, seconds, message), the pass that ran it first
    suite_nodes = []
    wall = 0.0
    interrupted = []
    for suite in suites:
        wall += (suite.get("RunTime") or 0) / 1e9
        interrupted.extend(suite.get("SpecialSuiteFailureReasons") or [])
        for spec in suite.get("SpecReports") or []:
            name = spec_name(spec)
            if spec.get("LeafNodeType") != "It":
                if spec.get("State") not in ("passed", "skipped", "pending"):
                    suite_nodes.append((spec.get("LeafNodeType"), spec.get("State")))
                continue
            if "Conformance" not in labels(spec):
                continue
            state = spec.get("State")
            seconds = (spec.get("RunTime") or 0) / 1e9
            failure = (spec.get("Failure") or {}).get("Message", "")
            if state == "passed":
                outcome = "passed"
            elif state in ("skipped", "pending"):
                if (skip and skip.search(name)) or (focus and not focus.search(name)):
                    outcome = "left out"
                elif spec.get("NumAttempts"):
                    # It started, and skipped itself (a precondition the cluster lacks).
                    outcome = "skipped itself"
                else:
                    outcome = "not reached"
            else:
                outcome = state
            row = (name, outcome, seconds, failure)
            if name not in found or rank(row) < rank(found[name]):
                found[name] = row
    rows = sorted(found.values())

    by_outcome = collections.Counter(outcome for _, outcome, _, _ in rows)
    ran = [row for row in rows if row[1] not in NOT_RUN]
    print(f"report: {', '.join(args.reports)}")
    print(f"[Conformance] tests in the suite: {len(rows)}")
    print(f"suite wall time: {wall:.0f} s ({wall / 3600:.2f} h)")
    if interrupted:
        print(f"the run ended early: {'; '.join(interrupted)}")
    for outcome in ORDER:
        if by_outcome.get(outcome):
            print(f"  {outcome}: {by_outcome[outcome]}")
    for outcome in sorted(set(by_outcome) - set(ORDER)):
        print(f"  {outcome}: {by_outcome[outcome]}")
    if suite_nodes:
        print(f"suite-level nodes not passed: {suite_nodes}")
    if ran:
        spent = sum(seconds for _, _, seconds, _ in ran)
        print(f"ran {len(ran)} tests in {spent:.0f} s, {spent / len(ran):.1f} s each on average")

    per_sig = collections.defaultdict(lambda: collections.Counter())
    sig_time = collections.Counter()
    for name, outcome, seconds, _ in rows:
        per_sig[sig(name)][outcome] += 1
        sig_time[sig(name)] += seconds
    columns = ["passed", "failed (any state)", "skipped itself", "left out", "not reached",
               "time of those run"]
    print()
    if args.markdown:
        print("| SIG | " + " | ".join(columns) + " |")
        print("|---" * (len(columns) + 1) + "|")
    for name in sorted(per_sig):
        counts = per_sig[name]
        failed = sum(count for outcome, count in counts.items()
                     if outcome != "passed" and outcome not in NOT_RUN)
        cells = [counts["passed"], failed, counts["skipped itself"], counts["left out"],
                 counts["not reached"], f"{sig_time[name]:.0f} s"]
        if args.markdown:
            print(f"| {name} | " + " | ".join(str(cell) for cell in cells) + " |")
        else:
            print(f"  {name:<22} " + "  ".join(f"{column} {cell}"
                                                for column, cell in zip(columns, cells)))

    failures = [row for row in ran if row[1] != "passed"]
    if failures:
        print("\nnot passed:")
        for name, outcome, seconds, message in failures:
            print(f"- {outcome} ({seconds:.0f} s): {name}\n    {first_line(message)}")
    left_out = [name for name, outcome, _, _ in rows if outcome == "left out"]
    if left_out:
        print("\nleft out by --skip:")
        for name in left_out:
            print(f"- {name}")
    if ran and args.slowest:
        print(f"\nthe {args.slowest} slowest:")
        for name, outcome, seconds, _ in sorted(ran, key=lambda row: -row[2])[: args.slowest]:
            print(f"- {seconds:6.0f} s {outcome}: {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
