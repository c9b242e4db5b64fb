"""Refereed bisection of a training run (in the spirit of Gensyn's Verde).

Two parties (the provider and its challenger) each committed a hash of the training state
at the checkpoint steps ``0 = s_0 < s_1 < ... < s_K = T``. The first checkpoint where
their hashes differ bounds an interval ``(lo, hi]`` whose start both agree on. Each round
asks both parties for the state hash at the midpoint step: agreement moves ``lo`` up,
disagreement moves ``hi`` down. After at most ``ceil(log2(hi - lo)) <= ceil(log2 T)``
rounds one single step ``lo -> lo + 1`` is in dispute; the referee re-executes just that
step from the agreed state and the party whose hash differs from the referee's loses.

Why an honest party never loses: it answers every query with the true hash, so the
agreed ``lo`` always carries the true state and the disputed ``hi`` always carries the
liar's false hash; re-executing the true state yields the honest party's hash. A party
that does not answer before its deadline forfeits.

A ``Dispute`` is a frozen, JSON-able value; ``submit`` and ``decide`` return the next one,
so the coordinator can persist each step and the simulator can replay it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from typing import Any

from gpudepin.core.errors import Conflict, Forbidden, InvalidInput


class Phase(StrEnum):
    BISECTING = "bisecting"  # waiting for both parties' hash at ``query_step``
    REFEREE = "referee"  # one step left: the referee must re-execute ``lo -> lo + 1``
    DECIDED = "decided"


@dataclass(frozen=True)
class Dispute:
    ref: str
    parties: tuple[str, str]  # (provider, challenger)
    lo: int  # last step both agree on
    lo_hash: str
    hi: int  # first known step where they disagree
    hi_hashes: tuple[str, str]  # each party's hash at ``hi``
    rounds: int = 0
    phase: Phase = Phase.BISECTING
    answers: tuple[str | None, str | None] = (None, None)
    winner: str | None = None
    loser: str | None = None
    reason: str = ""

    @property
    def query_step(self) -> int | None:
        """The step whose hash both parties must commit next, or None when not bisecting."""
        if self.phase is not Phase.BISECTING:
            return None
        return (self.lo + self.hi) // 2

    @property
    def losers(self) -> tuple[str, ...]:
        """The parties to slash (both when neither matched the referee)."""
        if self.phase is not Phase.DECIDED:
            return ()
        if self.loser is not None:
            return (self.loser,)
        return self.parties if self.winner is None else ()

    def to_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["parties"] = list(self.parties)
        body["hi_hashes"] = list(self.hi_hashes)
        body["answers"] = list(self.answers)
        body["phase"] = str(self.phase)
        return body

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Dispute:
        a, b = body["parties"]
        h0, h1 = body["hi_hashes"]
        x0, x1 = body.get("answers", (None, None))
        return cls(
            ref=body["ref"],
            parties=(a, b),
            lo=int(body["lo"]),
            lo_hash=body["lo_hash"],
            hi=int(body["hi"]),
            hi_hashes=(h0, h1),
            rounds=int(body.get("rounds", 0)),
            phase=Phase(body.get("phase", Phase.BISECTING)),
            answers=(x0, x1),
            winner=body.get("winner"),
            loser=body.get("loser"),
            reason=body.get("reason", ""),
        )


def max_rounds(total_steps: int) -> int:
    """The most rounds a dispute over ``total_steps`` steps can take: ceil(log2 T)."""
    return math.ceil(math.log2(total_steps)) if total_steps > 1 else 0


def _settle_phase(d: Dispute) -> Dispute:
    if d.hi - d.lo <= 1:
        return replace(d, phase=Phase.REFEREE, answers=(None, None))
    return d


def open_dispute(
    ref: str,
    parties: tuple[str, str],
    checkpoint_steps: Sequence[int],
    commitments: tuple[Sequence[str], Sequence[str]],
    initial_hash: str,
) -> Dispute:
    """Start a dispute from both parties' checkpoint commitments.

    ``checkpoint_steps`` is increasing and starts at 0 (the initial state, whose hash
    ``initial_hash`` is fixed by the job spec). A party whose step-0 commitment differs
    from ``initial_hash`` loses at once.
    """
    steps = list(checkpoint_steps)
    a_list, b_list = list(commitments[0]), list(commitments[1])
    if parties[0].lower() == parties[1].lower():
        raise InvalidInput("a dispute needs two different parties")
    if not steps or steps[0] != 0 or any(x >= y for x, y in itertools.pairwise(steps)):
        raise InvalidInput("checkpoint steps must start at 0 and increase")
    if not len(a_list) == len(b_list) == len(steps):
        raise InvalidInput("each party must commit one hash per checkpoint step")
    base = Dispute(ref, parties, 0, initial_hash, 0, (a_list[0], b_list[0]))
    bad_start = [
        p for p, h in zip(parties, (a_list[0], b_list[0]), strict=True) if h != initial_hash
    ]
    if bad_start:
        if len(bad_start) == 2:
            return replace(base, phase=Phase.DECIDED, reason="both misstate the initial state")
        winner = parties[1] if bad_start[0] == parties[0] else parties[0]
        return replace(
            base,
            phase=Phase.DECIDED,
            winner=winner,
            loser=bad_start[0],
            reason="misstated the initial state",
        )
    for i in range(1, len(steps)):
        if a_list[i] != b_list[i]:
            d = Dispute(ref, parties, steps[i - 1], a_list[i - 1], steps[i], (a_list[i], b_list[i]))
            return _settle_phase(d)
    raise Conflict(
        "the two commitment lists agree at every checkpoint: nothing is in dispute",
        hint="Open a dispute only on a mismatching checkpoint.",
    )


def open_interval(
    ref: str,
    parties: tuple[str, str],
    lo: int,
    lo_hash: str,
    hi: int,
    hi_hashes: tuple[str, str],
) -> Dispute:
    """Start a dispute over ``(lo, hi]`` directly: the parties agree on the state at ``lo``
    (a segment audit's starting checkpoint) and differ at ``hi`` (the segment's end)."""
    if parties[0].lower() == parties[1].lower():
        raise InvalidInput("a dispute needs two different parties")
    if not 0 <= lo < hi:
        raise InvalidInput(f"a disputed interval needs 0 <= lo < hi, got ({lo}, {hi}]")
    if hi_hashes[0] == hi_hashes[1]:
        raise Conflict("both parties agree at the end of the interval: nothing is in dispute")
    return _settle_phase(Dispute(ref, parties, lo, lo_hash, hi, hi_hashes))


def answer_message(ref: str, step: int, state_hash: str) -> str:
    """The text a party signs when it answers a bisection query."""
    return f"gpudepin bisection\ndispute: {ref}\nstep: {step}\nstate: {state_hash}"


def submit(d: Dispute, party: str, step: int, state_hash: str) -> Dispute:
    """Record one party's hash at the queried step; once both are in, halve the interval."""
    if d.phase is not Phase.BISECTING:
        raise Conflict(f"dispute {d.ref} is {d.phase}, not taking hashes")
    if step != d.query_step:
        raise InvalidInput(f"the dispute asks for step {d.query_step}, not {step}")
    lowered = [p.lower() for p in d.parties]
    if party.lower() not in lowered:
        raise Forbidden(f"{party} is not a party to dispute {d.ref}")
    idx = lowered.index(party.lower())
    if d.answers[idx] is not None:
        raise Conflict(f"{party} already committed its hash for step {step}")
    answers = (state_hash, d.answers[1]) if idx == 0 else (d.answers[0], state_hash)
    first, second = answers
    if first is None or second is None:
        return replace(d, answers=answers)
    if first == second:
        nxt = replace(d, lo=step, lo_hash=first, rounds=d.rounds + 1, answers=(None, None))
    else:
        nxt = replace(
            d, hi=step, hi_hashes=(first, second), rounds=d.rounds + 1, answers=(None, None)
        )
    return _settle_phase(nxt)


def forfeit(d: Dispute, party: str) -> Dispute:
    """``party`` missed its deadline: the other party wins."""
    if d.phase is Phase.DECIDED:
        raise Conflict(f"dispute {d.ref} is already decided")
    lowered = [p.lower() for p in d.parties]
    if party.lower() not in lowered:
        raise Forbidden(f"{party} is not a party to dispute {d.ref}")
    other = d.parties[1 - lowered.index(party.lower())]
    return replace(d, phase=Phase.DECIDED, winner=other, loser=party, reason="missed its deadline")


def decide(d: Dispute, referee_hash: str) -> Dispute:
    """The referee re-executed step ``lo -> hi`` from the agreed state: judge by its hash."""
    if d.phase is not Phase.REFEREE:
        raise Conflict(f"dispute {d.ref} is {d.phase}, not waiting for the referee")
    matches = [h == referee_hash for h in d.hi_hashes]
    step = f"step {d.lo}->{d.hi}"
    if matches[0] and not matches[1]:
        return replace(
            d,
            phase=Phase.DECIDED,
            winner=d.parties[0],
            loser=d.parties[1],
            reason=f"{step}: the referee agrees with {d.parties[0]}",
        )
    if matches[1] and not matches[0]:
        return replace(
            d,
            phase=Phase.DECIDED,
            winner=d.parties[1],
            loser=d.parties[0],
            reason=f"{step}: the referee agrees with {d.parties[1]}",
        )
    return replace(d, phase=Phase.DECIDED, reason=f"{step}: neither matches the referee")


def run_dispute(
    d: Dispute,
    answer: Callable[[str, int], str],
    reexecute: Callable[[int, str], str],
) -> Dispute:
    """Drive a dispute to its end: ``answer(party, step)`` gives a party's hash at a step,
    ``reexecute(step, state_hash)`` is the referee running one step from the agreed state
    (it returns the hash after step ``step + 1``)."""
    while d.phase is Phase.BISECTING:
        step = d.query_step
        assert step is not None
        for party in d.parties:
            d = submit(d, party, step, answer(party, step))
    if d.phase is Phase.REFEREE:
        d = decide(d, reexecute(d.lo, d.lo_hash))
    return d
