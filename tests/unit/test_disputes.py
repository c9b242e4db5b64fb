from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpudepin.core import disputes as D
from gpudepin.core.errors import Conflict, Forbidden, InvalidInput


def step_hash(prev: str, step: int) -> str:
    """One deterministic training step, as the referee would replay it."""
    return hashlib.sha256(f"{prev}:{step}".encode()).hexdigest()[:16]


def trajectory(initial: str, total: int) -> list[str]:
    out = [initial]
    for s in range(total):
        out.append(step_hash(out[-1], s))
    return out


def checkpoints(total: int, every: int) -> list[int]:
    steps = list(range(0, total, every))
    return [*steps, total] if steps[-1] != total else steps


def liar_trajectory(honest: list[str], diverge: int, salt: int) -> list[str]:
    """Agrees with the honest run up to ``diverge - 1``, then fakes every later state."""
    out = honest[:diverge]
    for s in range(diverge, len(honest)):
        out.append(f"fake{salt}:{s}")
    return out


def referee(step: int, state: str) -> str:
    return step_hash(state, step)


def open_between(honest: list[str], liar: list[str], steps: list[int], liar_first: bool):
    parties = ("0xliar", "0xhonest") if liar_first else ("0xhonest", "0xliar")
    by_party = {"0xhonest": honest, "0xliar": liar}
    commits = tuple([by_party[p][s] for s in steps] for p in parties)
    d = D.open_dispute("job/t", parties, steps, (commits[0], commits[1]), honest[0])
    return d, lambda party, step: by_party[party][step]


@settings(max_examples=200, deadline=None)
@given(
    total=st.integers(min_value=1, max_value=5000),
    every=st.integers(min_value=1, max_value=500),
    data=st.data(),
)
def test_liar_always_loses_within_log2_rounds(total: int, every: int, data: st.DataObject) -> None:
    honest = trajectory("init", total)
    diverge = data.draw(st.integers(min_value=1, max_value=total))
    liar = liar_trajectory(honest, diverge, data.draw(st.integers(0, 9)))
    d, answer = open_between(honest, liar, checkpoints(total, every), data.draw(st.booleans()))
    end = D.run_dispute(d, answer, referee)
    assert end.winner == "0xhonest" and end.losers == ("0xliar",)
    assert end.rounds <= D.max_rounds(total)
    assert end.lo == diverge - 1 and end.hi == diverge


@settings(max_examples=100, deadline=None)
@given(total=st.integers(min_value=2, max_value=2000), data=st.data())
def test_an_inconsistent_liar_still_loses(total: int, data: st.DataObject) -> None:
    """A liar that answers the midpoints at random (sometimes truthfully) cannot win."""
    honest = trajectory("init", total)
    liar_final = liar_trajectory(honest, total, 1)
    rng_bits = data.draw(st.lists(st.booleans(), min_size=64, max_size=64))
    d, _ = open_between(honest, liar_final, [0, total], liar_first=False)
    calls = iter(rng_bits)

    def answer(party: str, step: int) -> str:
        if party == "0xhonest" or next(calls, True):
            return honest[step]
        return f"noise:{step}"

    end = D.run_dispute(d, answer, referee)
    assert end.winner == "0xhonest"
    assert end.rounds <= D.max_rounds(total)


def test_misstated_initial_state_loses_at_once() -> None:
    d = D.open_dispute("j", ("0xa", "0xb"), [0, 10], (["bad", "x"], ["init", "y"]), "init")
    assert d.phase is D.Phase.DECIDED and d.loser == "0xa" and d.rounds == 0


def test_nothing_in_dispute_is_refused() -> None:
    with pytest.raises(Conflict):
        D.open_dispute("j", ("0xa", "0xb"), [0, 4], (["i", "x"], ["i", "x"]), "i")


def test_malformed_commitments_are_refused() -> None:
    with pytest.raises(InvalidInput):
        D.open_dispute("j", ("0xa", "0xb"), [0, 4, 4], (["i"] * 3, ["i"] * 3), "i")
    with pytest.raises(InvalidInput):
        D.open_dispute("j", ("0xa", "0xb"), [0, 4], (["i", "x"], ["i"]), "i")
    with pytest.raises(InvalidInput):
        D.open_dispute("j", ("0xa", "0xa"), [0, 4], (["i", "x"], ["i", "y"]), "i")


def test_submissions_are_checked() -> None:
    honest = trajectory("init", 16)
    d, _ = open_between(honest, liar_trajectory(honest, 5, 0), [0, 16], liar_first=False)
    assert d.query_step == 8
    with pytest.raises(InvalidInput):
        D.submit(d, "0xhonest", 3, honest[3])
    with pytest.raises(Forbidden):
        D.submit(d, "0xstranger", 8, "h")
    d = D.submit(d, "0xhonest", 8, honest[8])
    with pytest.raises(Conflict):
        D.submit(d, "0xhonest", 8, honest[8])
    with pytest.raises(Conflict):
        D.decide(d, "h")


def test_a_silent_party_forfeits() -> None:
    honest = trajectory("init", 16)
    d, _ = open_between(honest, liar_trajectory(honest, 5, 0), [0, 16], liar_first=False)
    d = D.forfeit(D.submit(d, "0xhonest", 8, honest[8]), "0xliar")
    assert d.winner == "0xhonest" and d.losers == ("0xliar",)
    with pytest.raises(Conflict):
        D.forfeit(d, "0xhonest")


def test_both_wrong_are_both_slashed() -> None:
    d = D.open_dispute("j", ("0xa", "0xb"), [0, 1], (["i", "x"], ["i", "y"]), "i")
    assert d.phase is D.Phase.REFEREE
    d = D.decide(d, "z")
    assert d.winner is None and set(d.losers) == {"0xa", "0xb"}


def test_dispute_survives_json_between_rounds() -> None:
    honest = trajectory("init", 100)
    d, answer = open_between(honest, liar_trajectory(honest, 37, 0), [0, 50, 100], False)
    while d.phase is D.Phase.BISECTING:
        step = d.query_step
        assert step is not None
        d = D.submit(d, "0xhonest", step, answer("0xhonest", step))
        d = D.Dispute.from_json(json.loads(json.dumps(d.to_json())))
        d = D.submit(d, "0xliar", step, answer("0xliar", step))
    d = D.decide(d, referee(d.lo, d.lo_hash))
    assert d.winner == "0xhonest" and d.rounds <= D.max_rounds(50)


@settings(max_examples=100, deadline=None)
@given(
    lo=st.integers(min_value=0, max_value=300),
    length=st.integers(min_value=1, max_value=400),
    data=st.data(),
)
def test_a_segment_dispute_convicts_the_liar_within_log2_of_the_segment(
    lo: int, length: int, data: st.DataObject
) -> None:
    hi = lo + length
    honest = trajectory("init", hi)
    diverge = data.draw(st.integers(min_value=lo + 1, max_value=hi))
    liar = liar_trajectory(honest, diverge, 3)
    by_party = {"0xhonest": honest, "0xliar": liar}
    parties = ("0xliar", "0xhonest") if data.draw(st.booleans()) else ("0xhonest", "0xliar")
    d = D.open_interval(
        "c1", parties, lo, honest[lo], hi, (by_party[parties[0]][hi], by_party[parties[1]][hi])
    )
    d = D.run_dispute(d, lambda p, s: by_party[p][s], referee)
    assert d.loser == "0xliar" and d.winner == "0xhonest"
    assert d.rounds <= D.max_rounds(length)


def test_a_segment_dispute_needs_a_disagreement() -> None:
    with pytest.raises(Conflict):
        D.open_interval("c1", ("0xa", "0xb"), 0, "x", 4, ("y", "y"))
    with pytest.raises(InvalidInput):
        D.open_interval("c1", ("0xa", "0xb"), 4, "x", 4, ("y", "z"))
    assert "step: 7" in D.answer_message("d1", 7, "ab")
