"""scripts/paired.py: the alternated pairs and the spread every benchmark prints."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from paired import Spread, alternated_rates, interleave, measure_pairs  # noqa: E402


def test_pairs_alternate_which_side_runs_first_and_give_per_pair_ratios():
    calls: list[str] = []
    values = iter([2.0, 1.0, 4.0, 2.0, 3.0, 1.0, 8.0, 2.0])

    def side(name: str):
        def run() -> float:
            calls.append(name)
            return next(values)
        return run

    ratios = measure_pairs(side("a"), side("b"), pairs=4)
    assert calls == ["a", "b", "b", "a", "a", "b", "b", "a"]
    # pair 2 ran b first: b=4, a=2 -> 0.5; pair 4: b=8, a=2 -> 0.25
    assert ratios == [2.0, 0.5, 3.0, 0.25]


def test_spread_reports_min_median_max_and_the_halves():
    s = Spread.of([1.0, 1.2, 0.9, 1.1, 1.0])
    assert (s.low, s.median, s.high) == (0.9, 1.0, 1.2)
    assert s.halves == (1.0, 1.15)  # pairs 1, 3, 5 and 2, 4
    assert abs(s.drift - 0.15 / 1.15) < 1e-12
    line = s.line("ratio")
    assert "median 1.000 (min 0.900, max 1.200, 5 pairs)" in line
    assert Spread.of([1.0, 2.0]).halves is None


def test_interleave_runs_pair_k_of_every_row_before_pair_k_plus_one_alternating_order():
    calls: list[str] = []
    clock = iter(range(1, 100))

    def side(name: str):
        def run() -> float:
            calls.append(name)
            return float(next(clock))
        return run

    rounds: list[int] = []
    out = interleave({"x": (side("xa"), side("xb")), "y": (side("ya"), side("yb"))}, 3,
                     rounds.append)
    assert calls == ["xa", "xb", "yb", "ya",   # round 1: row x a-first, row y b-first
                     "xb", "xa", "ya", "yb",   # round 2: the orders swap
                     "xa", "xb", "yb", "ya"]
    assert rounds == [1, 2, 3]
    # each ratio is its row's a over its b, whichever ran first: x's pairs (1, 2), (6, 5),
    # (9, 10); y's (4, 3), (7, 8), (12, 11)
    assert out == {"x": [0.5, 6 / 5, 0.9], "y": [4 / 3, 7 / 8, 12 / 11]}



def test_alternated_rates_time_sub_windows_in_turn_and_leave_the_warm_steps_untimed():
    now = [0.0]
    calls: list[str] = []

    def side(name: str, seconds_per_step: float):
        def step() -> None:
            calls.append(name)
            now[0] += seconds_per_step
        return step

    # powers of two: the fake clock's sums are exact
    a_rate, b_rate = alternated_rates((side("a", 2**-10), side("b", 2**-8)), per_step=10,
                                      seconds=2**-5, sub=2**-6, warm=2, clock=lambda: now[0])
    # a sub-window: 2 warm steps, then steps until sub has passed (a: 16, b: 4). Had the
    # warm steps been timed, each rate would come out 16/18 or 4/6 of the true one.
    assert (a_rate, b_rate) == (10 * 2**10, 10 * 2**8)
    a, b = ["a"] * 18, ["b"] * 6
    assert calls == a + b + b + a  # A B, then B A: each side with 2 sub-windows of 2**-6 s
