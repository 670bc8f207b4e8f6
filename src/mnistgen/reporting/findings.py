"""The findings of a report: rankings read off the table, naming a winner only where its lead is
larger than the noise of the number, and a tie otherwise."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from .results import ModelResult, format_number

RANKED = (("acceptable digits", "acceptable", max), ("coverage", "coverage", max),
          ("Inception Score", "inception_score", max), ("FID", "fid", min),
          ("precision", "precision", max), ("recall", "recall", max))
# A lead smaller than this many standard deviations of the difference (the two spreads combined)
# is a tie: for roughly normal noise, a real tie shows a larger gap only about 5% of the time.
TIE_SIGMAS = 2.0
# Training times less than this factor apart are a tie: repeated timings of the same work on this
# machine differed by up to 42% (README: sampling 8,918 vs 12,689 digits/s; epoch times +-10-30%).
TIME_TIE_RATIO = 1.5


@dataclass(frozen=True)
class Ranking:
    """How one finding ranks the results: by ``value``, ``better`` being max or min; ``same`` says
    that two results cannot be told apart, ``show`` how a result is named, ``why_tie`` why tied ones are."""

    title: str
    value: Callable[[ModelResult], float]
    better: Callable
    same: Callable[[ModelResult, ModelResult], bool]
    show: Callable[[ModelResult], str]
    why_tie: Callable[[list[ModelResult]], str]
    note: str = ""

    def finding(self, results: list[ModelResult]) -> str:
        """The best result, or a tie between it and every result that ``same`` cannot tell apart
        from it; a named winner comes with the runner-up, so the reader sees the margin."""
        ordered = sorted(results, key=self.value, reverse=self.better is max)
        best = ordered[0]
        tied = [best] + [r for r in ordered[1:] if self.same(best, r)]
        if len(tied) > 1:
            notes = "; ".join(filter(None, (self.why_tie(tied), self.note)))
            return f"{self.title}: tie between {', '.join(self.show(r) for r in tied)} ({notes})."
        runner_up = f", ahead of {self.show(ordered[1])}" if len(ordered) > 1 else ""
        return f"{self.title}: {self.show(best)}{runner_up}" + (f" ({self.note})." if self.note else ".")


def _metric_finding(results: list[ModelResult], title: str, key: str, better: Callable) -> str:
    """The ranking by one metric, ties judged by its spread; 'not computed' (with why) where no run has it."""
    scored = [r for r in results if r.scores["samples"][key] is not None]
    if not scored:
        return f"{title[0].upper()}{title[1:]}: not computed ({results[0].scores['samples']['skipped'][key]})."

    def value(r: ModelResult) -> float:
        return r.scores["samples"][key]

    def spread(r: ModelResult) -> float:
        return r.scores["samples"]["spread"][key]

    return Ranking(f"Best {title}", value, better,
                   lambda a, b: abs(value(a) - value(b)) <= TIE_SIGMAS * math.hypot(spread(a), spread(b)),
                   lambda r: f"{r.label} {value(r):.3f} ± {spread(r):.3f}",
                   lambda tied: f"gaps within {TIE_SIGMAS:g} standard deviations of the difference",
                   f"real data: {format_number(scored[0].scores['real'][key])}").finding(scored)


def _on_budget(r: ModelResult) -> bool:
    return r.summary["stop_reason"] == "time budget"


def findings(results: list[ModelResult]) -> list[str]:
    """Rankings read off the table; no judgement that the numbers do not carry. A winner is named
    only where its lead is larger than the noise of the number (TIE_SIGMAS, TIME_TIE_RATIO); else 'tie'."""
    if not results:
        return []
    lines = [_metric_finding(results, title, key, better) for title, key, better in RANKED]

    def seconds(r: ModelResult) -> float:
        return r.summary["training_seconds"]

    # A run stopped by its time budget took as long as it was allowed, by construction.
    lines.append(Ranking(
        "Fastest to train", seconds, min,
        lambda a, b: (_on_budget(a) and _on_budget(b)) or seconds(b) <= TIME_TIE_RATIO * seconds(a),
        lambda r: f"{r.label} {seconds(r):.0f} s",
        lambda tied: "each stopped on its time budget" if all(map(_on_budget, tied)) else
        f"less than {TIME_TIE_RATIO:g}x apart, within the spread of repeated timings on this machine").finding(results))
    lines.append(Ranking("Fewest parameters", lambda r: r.info["parameters"], min,
                         lambda a, b: a.info["parameters"] == b.info["parameters"],
                         lambda r: f"{r.label} {r.info['parameters']:,}",
                         lambda tied: "equal counts").finding(results))
    return lines

