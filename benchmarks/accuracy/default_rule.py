"""``--method auto``'s rule, applied to the committed benchmark results (docs/method.md, "Which method by default").

    .venv/bin/python -m benchmarks.accuracy.default_rule            # print the standings
    .venv/bin/python -m benchmarks.accuracy.default_rule --write    # and the tables into docs/method.md, README.md

For each student family: every method's test-split top-1 on each accuracy-benchmark pair whose student is of
that family (the profiles in ``PROFILES_READ``, seeds as the table ran them). A method's score is the mean of
its per-pair means; its spread the pooled seed std (the root mean square of its per-pair stds). The leader is
the best score among the methods measured on every such pair. A method with fewer FLOPs per step than the
leader (the speed benchmark's headline pair, ``SPEED_RESULTS``) whose score is within the larger of the two
spreads stands in for it; of several, the cheapest. tests/test_defaults.py checks that
``hf_cakd.methods.BEST_METHOD_FOR_STUDENT`` is what this gives.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import REPO, update_readme

PROFILES_READ = ("quick", "headline")
ACCURACY = REPO / "benchmarks" / "accuracy"
SPEED_RESULTS = REPO / "benchmarks" / "speed" / "headline" / "results.json"
DOCS = REPO / "docs" / "method.md"
DOCS_REGION = "default-rule"
README = REPO / "README.md"
README_REGION = "results-summary"
SUMMARY_METHODS = ("none", "kd", "ofa", "rsd", "fbt")  # the README's columns; benchmarks/README.md has every method


@dataclass(frozen=True)
class Standing:
    method: str
    score: float  # mean over the family's pairs of the method's mean top-1 (%)
    spread: float  # pooled seed std over those pairs (points)
    gflops: float  # per step at the headline pair


def profile_results() -> dict[str, dict]:
    """Each read profile's committed results.json, read once."""
    return {profile: json.loads((ACCURACY / profile / "results.json").read_text()) for profile in PROFILES_READ}


def family_results(results: dict[str, dict]) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """family -> method -> [(mean top-1 %, std) per pair with a student of that family]."""
    found: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for record in results.values():
        for pair in record["pairs"].values():
            family = record["models"][pair["student"]]["family"]
            for method, measured in pair["methods"].items():
                if measured.get("top1"):
                    found.setdefault(family, {}).setdefault(method, []).append(
                        (100 * measured["top1"]["mean"], 100 * (measured["top1"]["std"] or 0.0))
                    )
    return found


def gflops_per_step(path: Path = SPEED_RESULTS) -> dict[str, float]:
    return {row["name"]: row["gflops_per_step"] for row in json.loads(path.read_text())["methods"]}


def standings(per_method: dict[str, list[tuple[float, float]]], gflops: dict[str, float]) -> list[Standing]:
    """The methods measured on every pair of the family (and by the speed benchmark), best score first."""
    pairs = max(len(values) for values in per_method.values())
    rows = [
        Standing(
            method,
            sum(mean for mean, _ in values) / len(values),
            math.sqrt(sum(std**2 for _, std in values) / len(values)),
            gflops[method],
        )
        for method, values in per_method.items()
        if len(values) == pairs and method in gflops
    ]
    return sorted(rows, key=lambda row: -row.score)


def choose(rows: list[Standing]) -> tuple[Standing, Standing]:
    """(the leader, the method the rule picks): the cheapest method within the larger spread of the leader."""
    leader = rows[0]
    level = [row for row in rows if row.gflops < leader.gflops and leader.score - row.score <= max(leader.spread, row.spread)]
    return leader, min(level, key=lambda row: row.gflops) if level else leader


@dataclass(frozen=True)
class Ranking:
    """One student family's standings, its number of pairs, the leader and the method the rule picks."""

    rows: list[Standing]
    pairs: int
    leader: Standing
    chosen: Standing


def rankings(results: dict[str, dict] | None = None) -> dict[str, Ranking]:
    """The rule applied to every student family of ``results`` (default: the committed ones), by family name."""
    gflops = gflops_per_step()
    ranked = {}
    for family, methods in sorted(family_results(results or profile_results()).items()):
        rows = standings(methods, gflops)
        ranked[family] = Ranking(rows, max(len(values) for values in methods.values()), *choose(rows))
    return ranked


def best_methods(ranked: dict[str, Ranking] | None = None) -> dict[str, str]:
    return {family: ranking.chosen.method for family, ranking in (ranked or rankings()).items()}


def evidence_table(ranked: dict[str, Ranking] | None = None) -> str:
    """Per family, each method's score ± spread, cost and the choice, as a markdown table."""
    lines = [
        "| student family (pairs) | method | top-1 (%), mean of pair means ± pooled std | GFLOP / step | `auto` |",
        "| --- | --- | ---: | ---: | --- |",
    ]
    for family, ranking in (ranked or rankings()).items():
        leader, chosen = ranking.leader, ranking.chosen
        for row in ranking.rows:
            why = ""
            if row is chosen:
                why = "**chosen**: the best score" if chosen is leader else f"**chosen**: within the spread of {leader.method}, cheaper"
            lines.append(f"| {family} ({ranking.pairs}) | {row.method} | {row.score:.2f} ± {row.spread:.2f} | {row.gflops:.1f} | {why} |")
    return "\n".join(lines) + "\n"


def _cell(measured: dict, bold: bool) -> str:
    seeds = len(measured["runs"])
    text = f"{100 * measured['top1']['mean']:.2f}" + (f" ± {100 * measured['top1']['std']:.2f}" if seeds > 1 else "")
    return (f"**{text}**" if bold else text) + ("" if seeds == 3 else f" ({seeds} seed{'s' if seeds > 1 else ''})")


def summary_table(results: dict[str, dict], chosen: dict[str, str]) -> str:
    """The README's table: per benchmark pair, the main methods' test-split top-1 and what ``auto`` runs."""
    lines = [
        "| profile: pair | student | " + " | ".join(f"`{m}`" for m in SUMMARY_METHODS) + " | `auto` runs |",
        "| --- | --- | " + "---: | " * len(SUMMARY_METHODS) + "--- |",
    ]
    for profile, record in results.items():
        for name, pair in record["pairs"].items():
            student = record["models"][pair["student"]]
            means = {m: pair["methods"][m]["top1"] for m in SUMMARY_METHODS if pair["methods"].get(m, {}).get("top1")}
            best = max(means, key=lambda m: means[m]["mean"])
            cells = [_cell(pair["methods"][m], bold=m == best) if m in means else "-" for m in SUMMARY_METHODS]
            lines.append(f"| {profile}: {name} | {student['name']} ({student['family']}) | " + " | ".join(cells) + f" | `{chosen[student['family']]}` |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="Put the tables into docs/method.md and README.md.")
    write = parser.parse_args().write
    results = profile_results()
    ranked = rankings(results)
    table, summary = evidence_table(ranked), summary_table(results, best_methods(ranked))
    print(table + "\n" + summary)
    if write:
        update_readme(DOCS, table, DOCS_REGION)
        update_readme(README, summary, README_REGION)


if __name__ == "__main__":
    main()
