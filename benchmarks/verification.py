"""Verification benchmark: cheaters among honest providers, under the pure policy.

Work is modelled as unit-cost tasks whose result is a number. Honest providers sit on two
device classes whose results differ by a few parts in 10^7 (as FP32 results of the same
work on different cards do); the comparison tolerance is 10^-5, so honest results agree
across classes. A cheater returns garbage on 10 % of its tasks, and when it audits others
it lies on 10 % of its audits too. Every rule comes from ``gpudepin.core.verification``
and every movement of money is a ledger transaction; a seeded rng makes a run replayable.

    python3 benchmarks/verification.py [--tasks 200000] [--providers 100] [--seeds 1]

Extra compute counts every audit, referee, known-answer task, hold-back sweep and redo.
With ``--rows N`` tasks are batch inference of N rows each, audited by re-running the
sample of rows ``core.audit_sampling`` draws: a check then costs ``sample/N`` of a task
(a cheater's garbage covers all its rows, so any sample catches it), a redo a whole task.
"""

from __future__ import annotations

import argparse
import math
import random
import time
from collections import deque
from dataclasses import dataclass, field

from gpudepin.core import audit_sampling as AS
from gpudepin.core import ledger as L
from gpudepin.core import verification as V
from gpudepin.core.money import UNIT, format_amount

REWARD = 2 * UNIT
FEE_BPS = 1_000  # must cover auditor pay: ~9 % of tasks are audited at the task's price
STAKE = V.min_stake_for_bid(REWARD) + REWARD  # a little above the deterrent stake
CLASS_BIAS = {"rtx4090": 3e-7, "h100-80g": -2e-7}
TOLERANCE = 1e-5
CHEAT_SHARE = 0.10
HOLD_TICKS = 20_000  # the challenge window, in tasks handed out network-wide
MAX_CHECKERS = 5


@dataclass
class Provider:
    record: V.ProviderRecord
    cheater: bool
    tasks: int = 0
    first_caught_at: int | None = None
    held: deque[tuple[int, int, bool, bool]] = field(default_factory=deque)
    # (tick, task id, result was bad, already audited)


@dataclass
class Report:
    tasks: int = 0
    extra: float = 0.0  # in tasks' worth of compute
    cheaters: int = 0
    caught: int = 0
    caught_after: list[int] = field(default_factory=list)
    false_rejections: int = 0
    honest_slashed: int = 0
    bad_results: int = 0
    buyer_loss: int = 0
    bad_paid_out: int = 0  # bad results whose payment left the hold before detection
    compensated: int = 0  # clawed back from holds plus the buyer's share of slashes
    auditor_pay: int = 0
    fees: int = 0
    lazy_auditors_dropped: int = 0
    books_ok: bool = True


def agree(a: float, b: float) -> bool:
    return abs(a - b) <= TOLERANCE * max(abs(a), abs(b), 1.0)


def run(
    seed: int,
    n_tasks: int,
    n_providers: int,
    params: V.VerificationParams,
    lying_auditors: bool = True,
    check_cost: float = 1.0,
) -> Report:
    rng = random.Random(seed)
    led = L.InMemoryLedger()
    buyer = "0xbuyer"
    led.apply(L.deposit(buyer, n_tasks * REWARD * 2))
    providers: dict[str, Provider] = {}
    n_cheaters = max(1, n_providers // 10)
    for i in range(n_providers):
        addr = f"0x{i:04x}"
        record = V.ProviderRecord(
            addr,
            operator=f"op{i // 2}",  # pairs share an operator: they never audit each other
            region=f"r{i % 4}",
            device_class="rtx4090" if i % 2 else "h100-80g",
        )
        providers[addr] = Provider(record, cheater=i % (n_providers // n_cheaters) == 0)
        led.apply(L.deposit(addr, STAKE))
        led.apply(L.stake(led.balances, addr, STAKE))

    rep = Report(tasks=n_tasks, cheaters=sum(p.cheater for p in providers.values()))
    bad_paid: dict[int, int] = {}  # task id -> gross paid for a bad result, until refunded
    truth: dict[int, float] = {}

    def output(p: Provider, task: int, lying: bool) -> float:
        if lying:
            return truth[task] + rng.uniform(1.0, 100.0)
        return truth[task] * (1.0 + CLASS_BIAS[p.record.device_class])

    pool = list(providers.values())  # shrinks when someone is banned

    def audit(p: Provider, task: int, provider_out: float) -> tuple[V.Decision, str | None]:
        """Re-execute on auditors (then referees) until two results agree."""
        outs = {p.record.address: provider_out}
        cands = [q.record for q in pool]
        decision = V.Decision(V.Verdict.ESCALATE)
        while decision.verdict is V.Verdict.ESCALATE and len(outs) < MAX_CHECKERS:
            chosen = V.choose_auditor(p.record, cands, rng, params, exclude=outs)
            if chosen is None:
                break
            aud = providers[chosen.address]
            lies = lying_auditors and aud.cheater and rng.random() < CHEAT_SHARE
            outs[chosen.address] = output(aud, task, lies)
            rep.extra += check_cost
            pay = min(math.ceil(REWARD * check_cost), led.balance(L.FEES))
            if pay:
                led.apply(L.pay_auditor_from_fees(led.balances, chosen.address, pay))
                rep.auditor_pay += pay
            if V.should_inject_known_answer(rng, params.known_answer_rate):
                rep.extra += check_cost
                passed = not (lying_auditors and aud.cheater and rng.random() < CHEAT_SHARE)
                before = aud.record.auditor_faults
                aud.record = V.after_known_answer(aud.record, passed)
                if before < params.auditor_ban_after <= aud.record.auditor_faults:
                    rep.lazy_auditors_dropped += 1
            checkers = [a for a in outs if a != p.record.address]
            decision = V.adjudicate(
                p.record.address, checkers, lambda a, b: agree(outs[a], outs[b])
            )
        for f in decision.faulty:
            if f != p.record.address:  # an auditor that lied about someone else's work
                fault(providers[f], None, None)
        honest = [a for a in outs if a != p.record.address and a not in decision.faulty]
        return decision, (honest[0] if honest else None)

    def fault(p: Provider, task: int | None, auditor: str | None) -> None:
        if not p.cheater:
            rep.honest_slashed += 1
        p.record = V.after_fault(p.record)
        if p.first_caught_at is None:
            p.first_caught_at = max(1, p.tasks)
        if V.is_banned(p.record, params) and p in pool:
            pool.remove(p)
        amount = min(V.slash_amount(STAKE, params), led.balance(L.stake_account(p.record.address)))
        if amount:
            split = V.slash_split(amount, params)
            led.apply(
                L.slash(led.balances, p.record.address, amount, buyer, auditor or buyer, split)
            )
            rep.compensated += split[0]
        # sweep: everything still held is re-checked; bad results are clawed back
        for i, (tick, tid, bad, audited) in enumerate(p.held):
            if not audited and tid != task:
                rep.extra += check_cost
                p.held[i] = (tick, tid, bad, True)
            if bad and tid in bad_paid:
                led.apply(
                    L.claw_back(
                        led.balances,
                        p.record.address,
                        buyer,
                        bad_paid[tid] - bad_paid[tid] * FEE_BPS // 10_000,
                    )
                )
                rep.compensated += bad_paid.pop(tid) - REWARD * FEE_BPS // 10_000
                rep.extra += 1  # redone by someone honest

    for tick in range(n_tasks):
        truth[tick] = rng.uniform(-1e3, 1e3)
        p = pool[rng.randrange(len(pool))]
        p.tasks += 1
        cheats = p.cheater and rng.random() < CHEAT_SHARE
        out = output(p, tick, cheats)
        ref = f"job{tick // 1000}"
        led.apply(L.lock_escrow(led.balances, buyer, ref, REWARD))
        led.apply(L.pay_into_hold(led.balances, buyer, ref, p.record.address, REWARD, FEE_BPS))
        if cheats:
            bad_paid[tick] = REWARD
            rep.bad_results += 1
        check = V.plan_verification(
            f"t{tick}", p.record, [], rng, params, stake=STAKE, reward=REWARD
        )
        audited = check is not None
        p.held.append((tick, tick, cheats, audited))
        if audited:
            decision, whistleblower = audit(p, tick, out)
            if decision.verdict is V.Verdict.REJECTED:
                if not p.cheater:
                    rep.false_rejections += 1
                fault(p, tick, whistleblower)
            elif decision.verdict is V.Verdict.ACCEPTED:
                p.record = V.after_verified(p.record)
        # the challenge window closes: held earnings become withdrawable
        for q in (p,):
            while q.held and q.held[0][0] + HOLD_TICKS <= tick:
                _, tid, _, _ = q.held.popleft()
                amount = REWARD - REWARD * FEE_BPS // 10_000
                led.apply(L.release_held(led.balances, q.record.address, amount))
                truth.pop(tid, None)

    rep.bad_paid_out = len(bad_paid)
    rep.buyer_loss = max(0, rep.bad_results * REWARD - rep.compensated)
    for p in providers.values():
        if p.cheater and p.first_caught_at is not None:
            rep.caught += 1
            rep.caught_after.append(p.first_caught_at)
    rep.fees = led.balance(L.FEES) + rep.auditor_pay
    rep.books_ok = not L.imbalances(led.balances)
    return rep


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=200_000)
    ap.add_argument("--providers", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--seeds", type=int, default=1, help="repeat with this many seeds")
    ap.add_argument(
        "--honest-auditing", action="store_true", help="cheaters cheat only on their own tasks"
    )
    ap.add_argument(
        "--rows", type=int, default=0, help="rows per inference task, audited by sample (0: full)"
    )
    args = ap.parse_args()
    params = V.DEFAULT_PARAMS
    schedule = [
        V.audit_rate(V.ProviderRecord("x", "y", streak=s), STAKE, params, REWARD)
        for s in range(100)
    ]
    escape = V.escape_probability(schedule, params.catch_rate, CHEAT_SHARE)
    for seed in range(args.seed, args.seed + args.seeds):
        start = time.perf_counter()
        cost = AS.audit_cost(args.rows) if args.rows else 1.0
        r = run(seed, args.tasks, args.providers, params, not args.honest_auditing, cost)
        took = time.perf_counter() - start
        print(f"seed: {seed}")
        print(f"tasks: {r.tasks}")
        print(f"cheaters also lie when auditing: {not args.honest_auditing}")
        print(f"providers: {args.providers} ({r.cheaters} cheating on {CHEAT_SHARE:.0%} of tasks)")
        if args.rows:
            print(f"audits re-run {AS.sample_size(args.rows)} of {args.rows} rows ({cost:.3f})")
        print(f"verification overhead: {100 * r.extra / r.tasks:.2f}% of useful compute")
        print(f"cheaters caught: {r.caught}/{r.cheaters}")
        print(f"cheater caught after (max tasks): {max(r.caught_after, default=0)}")
        print(
            f"cheater caught after (mean tasks): "
            f"{sum(r.caught_after) / max(1, len(r.caught_after)):.1f}"
        )
        print(f"P(10% cheater escapes its first 100 tasks), analytic: {escape:.2e}")
        print(f"false rejections: {r.false_rejections}")
        print(f"honest providers slashed: {r.honest_slashed}")
        print(f"bad results delivered: {r.bad_results}")
        print(f"bad results paid out before detection: {r.bad_paid_out}")
        print(f"buyer loss: {format_amount(r.buyer_loss)} tokens")
        print(f"auditor pay / fees collected: {r.auditor_pay / max(1, r.fees):.2f}")
        print(f"auditors dropped by known answers: {r.lazy_auditors_dropped}")
        print(f"ledger balanced: {r.books_ok}")
        print(f"run time: {took:.1f} s")


if __name__ == "__main__":
    main()
