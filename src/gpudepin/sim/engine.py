"""The discrete-event simulation: a month of network life on the core's own rules.

Events sit in one ``heapq`` queue ordered by (time, sequence): an hourly demand batch, a
daily settlement, providers joining and leaving, leases ending. Every rule is the core's:

* **churn** - session lengths drawn from ``core.shards.Churn`` (Weibull shape 0.75, scale
  96 h for consumer cards); datacenter cards stay 20 times longer (an assumption);
* **market** - each provider keeps one standing ``Ask`` in a ``core.orderbook.OrderBook``;
  buyers' lease ``Order``s are filled by ``match_instant`` and released when they end;
* **leases** - ``core.leases`` creates, starts, bills (``accrue`` on the provider's usage
  receipt), ends (``tick`` on silence) and refunds each lease;
* **ledger** - every token moves by a ``core.ledger`` transaction on an
  ``InMemoryLedger``: deposits, stake, escrow, held pay, release, claw-back, slash, SLA
  credit, fee burn and the daily mint (``mint_rewards``);
* **verification** - ``plan_verification`` decides each audit and picks the auditor;
  ``adjudicate`` judges disagreements (asking a referee on a lone mismatch); records move
  by ``after_verified``/``after_fault``; ``is_banned`` removes repeat cheaters; held pay is
  released by ``releasable`` after the challenge window;
* **SLA** - an enterprise lease its provider abandons is measured by ``core.sla.sla_report``
  and its credit is paid from the provider's stake by ``ledger.sla_credit_from_stake``.

Aggregation keeps 100,000 providers cheap: demand arrives in hourly batches, providers
live in flat lists indexed by number, held pay is released per day's cohort, the journal
is folded into a running digest and daily figures instead of being kept, and the garbage
collector runs rarely while the events run (``_sparse_gc``). Everything random comes from one seeded
``random.Random``, and nothing iterates over a set, so a seed replays bit for bit.
"""

from __future__ import annotations

import gc
import hashlib
import heapq
import math
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from gpudepin.core import leases, sla, verification
from gpudepin.core import ledger as L
from gpudepin.core.hardware import CATALOG, Tier
from gpudepin.core.market import Ask, Order, OrderKind, Requirements
from gpudepin.core.money import UNIT
from gpudepin.core.orderbook import OrderBook
from gpudepin.core.shards import CONSUMER_CHURN, Churn

HOUR = 3600.0
DAY = 86_400.0
# event kinds, in the order they run when they share a time
_DAY, _HOUR, _LEAVE, _JOIN, _END = range(5)

# Share of providers per class (an assumption: consumer cards dominate DePIN fleets).
CLASS_MIX: dict[str, float] = {
    "rtx3090": 0.25,
    "rtx4090": 0.40,
    "rtx5090": 0.15,
    "a100-80g": 0.12,
    "h100-80g": 0.08,
}
REGION_MIX: dict[str, float] = {
    "us-east": 0.30,
    "eu-west": 0.25,
    "eu-central": 0.15,
    "ap-south": 0.15,
    "us-west": 0.15,
}
# auditors are chosen among a random handful of online providers, not the whole fleet
AUDITOR_SAMPLE = 4
DATACENTER_CHURN = Churn(shape=0.75, scale_h=96.0 * 20)


@dataclass(frozen=True)
class SimParams:
    """The knobs of one run; the defaults are market-facts.md where it has a figure."""

    providers: int = 1000
    days: int = 30
    seed: int = 1
    cheater_share: float = 0.05
    cheat_rate: float = 0.3  # share of a cheater's leases it fakes
    target_utilization: float = 0.6  # demand sized to fill this share of online GPUs
    price_sigma: float = 0.4  # log-normal spread of asks around the class median
    buyer_sigma: float = 0.35  # spread of buyers' maximum prices
    buyer_premium: float = 1.25  # buyers' median maximum over the class median
    mean_lease_h: float = 24.0
    mean_offline_h: float = 24.0
    diurnal_amplitude: float = 0.35
    fee_bps: int = 500
    emission_per_gpu_day: float = 0.5  # tokens minted per provider-day (network-wide mean)
    consumer_stake: int = 200 * UNIT  # io.net's 200 per GPU (market-facts.md)
    enterprise_stake: int = 1000 * UNIT  # verification.DEFAULT_PARAMS.enterprise_min_stake
    sla_uptime_target: float = 0.999
    buyers: int = 0  # 0: one buyer per 50 providers
    token_usd: float = 1.0


@dataclass
class DayStats:
    day: int
    utilization: float = 0.0  # mean of the hourly samples
    online: float = 0.0
    leases: int = 0
    unmet: int = 0
    volume: int = 0
    fees: int = 0
    burned: int = 0
    minted: int = 0
    audits: int = 0
    audit_failures: int = 0
    cheaters_caught: int = 0
    sla_leases: int = 0
    sla_breaches: int = 0
    price_sum: dict[str, float] = field(default_factory=dict)  # $/h x leases
    price_n: dict[str, int] = field(default_factory=dict)
    earned: dict[str, int] = field(default_factory=dict)  # per class, pay + mint
    volume_by_class: dict[str, int] = field(default_factory=dict)
    gpu_days: dict[str, float] = field(default_factory=dict)  # online time per class


@dataclass
class SimResult:
    params: SimParams
    days: list[DayStats]
    hourly_utilization: list[float]
    balances: dict[str, int]
    journal_digest: str
    events: int
    transactions: int
    cheaters: int
    cheaters_banned: int
    classes: dict[str, int]
    regions_online: dict[str, int]
    classes_online: dict[str, int]

    def ledger_hash(self) -> str:
        """SHA-256 over every balance, sorted: equal for equal ledgers, bit for bit."""
        h = hashlib.sha256()
        for account, amount in sorted(self.balances.items()):
            h.update(f"{account}={amount}\n".encode())
        return h.hexdigest()


@contextmanager
def _sparse_gc() -> Iterator[None]:
    """Run the cyclic garbage collector rarely while the events run. The simulation makes
    no reference cycles, yet with 100,000 providers every full collection walks millions
    of live objects: at the default thresholds that was a third of the CPU time (100,000
    providers x 2 days: 33.6 CPU s against 22.8 with this, and 22.1 with no collector at
    all). The objects made before the run are frozen out of collections for good measure;
    the settings are put back afterwards."""
    threshold = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


def _pick(rng: random.Random, mix: dict[str, float]) -> str:
    x, acc = rng.random(), 0.0
    for name, share in mix.items():
        acc += share
        if x < acc:
            return name
    return next(reversed(mix))


def _poisson(rng: random.Random, lam: float) -> int:
    """A Poisson draw; the normal approximation above 30 keeps big batches O(1)."""
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def per_second(usd_per_hour: float, token_usd: float) -> int:
    """A $/h price as base units per GPU-second."""
    return max(1, int(usd_per_hour / token_usd / HOUR * UNIT))


class Simulation:
    """One run; ``run()`` returns the result. Providers are numbered 0..n-1."""

    def __init__(self, params: SimParams) -> None:
        self.p = params
        self.rng = random.Random(params.seed)
        self.ledger = L.InMemoryLedger()
        self.book = OrderBook()
        self.queue: list[tuple[float, int, int, int, int]] = []
        self.seq = 0
        self.events = 0
        self.transactions = 0
        self.digest = hashlib.sha256()
        n = params.providers
        rng = self.rng
        self.addr = [f"p{i:06d}" for i in range(n)]
        self.cls = [_pick(rng, CLASS_MIX) for _ in range(n)]
        self.region = [_pick(rng, REGION_MIX) for _ in range(n)]
        self.price = [
            per_second(
                CATALOG[c].median_usd_per_hour * math.exp(rng.gauss(0.0, params.price_sigma)),
                params.token_usd,
            )
            for c in self.cls
        ]
        self.cheater = [rng.random() < params.cheater_share for _ in range(n)]
        self.enterprise = [CATALOG[c].tier is Tier.ENTERPRISE for c in self.cls]
        self.online = [False] * n
        self.online_since = [0.0] * n
        self.banned = [False] * n
        self.caught = [False] * n
        self.lease: list[leases.Lease | None] = [None] * n
        self.version = [0] * n
        self.records = [
            verification.ProviderRecord(self.addr[i], f"op{i}", self.region[i], self.cls[i])
            for i in range(n)
        ]
        self.staked = [False] * n
        self.work_s = [0.0] * n
        self.up_s = [0.0] * n
        self.held: list[dict[int, int]] = [{} for _ in range(n)]  # day earned -> net pay
        self.earners: dict[int, set[int]] = {}  # day -> providers holding pay earned then
        self.online_ids: list[int] = []
        self.pos = [-1] * n
        nb = params.buyers or max(1, n // 50)
        self.buyers = [f"b{j:05d}" for j in range(nb)]
        self.requirements = {c: Requirements(gpu_class=c) for c in CLASS_MIX}
        self.days: list[DayStats] = []
        self.hourly: list[float] = []
        self.day = DayStats(0)
        self.hour_samples: list[float] = []
        self.orders = 0
        self.leased = 0
        self.terms = sla.SlaTerms(uptime_target=params.sla_uptime_target)

    # ---- plumbing ------------------------------------------------------------------------

    def push(self, t: float, kind: int, a: int = 0, b: int = 0) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (t, self.seq, kind, a, b))

    def apply(self, txn: L.Transaction | None) -> None:
        if txn is None:
            return
        self.ledger.apply(txn)
        self.transactions += 1
        if txn.kind == "mint":
            self.day.minted += -txn.postings[0].amount
        for p in txn.postings:
            if p.account == L.BURNED:
                self.day.burned += p.amount
        if len(self.ledger.journal) >= 4096:
            self._fold()

    def _fold(self) -> None:
        """Fold the journal into the running digest, so memory stays flat. One ``update``
        per fold hashes the same bytes as one per posting (SHA-256 streams), only faster."""
        parts: list[str] = []
        for txn in self.ledger.journal:
            parts.append(txn.kind)
            parts += [f"{p.account}{p.amount}" for p in txn.postings]
        self.digest.update("".join(parts).encode())
        self.ledger.journal.clear()

    def bal(self) -> dict[str, int]:
        return self.ledger.balances

    def _set_online(self, i: int, on: bool) -> None:
        if on:
            self.pos[i] = len(self.online_ids)
            self.online_ids.append(i)
        else:
            k, last = self.pos[i], self.online_ids[-1]
            self.online_ids[k] = last
            self.pos[last] = k
            self.online_ids.pop()
            self.pos[i] = -1
        self.online[i] = on

    def _churn(self, i: int) -> Churn:
        return DATACENTER_CHURN if self.enterprise[i] else CONSUMER_CHURN

    # ---- the run -------------------------------------------------------------------------

    def run(self) -> SimResult:
        p, rng = self.p, self.rng
        end = p.days * DAY
        for i in range(p.providers):
            # start in the churn's steady state: most online, each at a random session age
            c = self._churn(i)
            share_on = c.mean_h() / (c.mean_h() + p.mean_offline_h)
            if rng.random() < share_on:
                self.push(0.0, _JOIN, i)
            else:
                self.push(rng.expovariate(1.0 / (p.mean_offline_h * HOUR)), _JOIN, i)
        for h in range(p.days * 24):
            self.push(h * HOUR, _HOUR, h)
        for d in range(1, p.days + 1):
            self.push(d * DAY, _DAY, d)
        with _sparse_gc():
            self._loop(end)
        self._fold()
        online_cls: dict[str, int] = {}
        online_reg: dict[str, int] = {}
        for i in self.online_ids:
            online_cls[self.cls[i]] = online_cls.get(self.cls[i], 0) + 1
            online_reg[self.region[i]] = online_reg.get(self.region[i], 0) + 1
        fleet: dict[str, int] = {}
        for name in self.cls:
            fleet[name] = fleet.get(name, 0) + 1
        return SimResult(
            params=p,
            days=self.days,
            hourly_utilization=self.hourly,
            balances=dict(self.ledger.balances),
            journal_digest=self.digest.hexdigest(),
            events=self.events,
            transactions=self.transactions,
            cheaters=sum(self.cheater),
            cheaters_banned=sum(1 for i in range(p.providers) if self.banned[i]),
            classes=dict(sorted(fleet.items())),
            regions_online=dict(sorted(online_reg.items())),
            classes_online=dict(sorted(online_cls.items())),
        )

    def _loop(self, end: float) -> None:
        while self.queue:
            t, _, kind, a, b = heapq.heappop(self.queue)
            if t > end:
                break
            self.events += 1
            if kind == _HOUR:
                self.hour(t, a)
            elif kind == _DAY:
                self.settle_day(t, a)
            elif kind == _JOIN:
                self.join(t, a)
            elif kind == _LEAVE:
                self.leave(t, a, b)
            else:
                self.lease_end(t, a, b)

    # ---- providers -----------------------------------------------------------------------

    def join(self, t: float, i: int) -> None:
        if self.banned[i]:
            return
        p, addr = self.p, self.addr[i]
        if not self.staked[i]:
            amount = p.enterprise_stake if self.enterprise[i] else p.consumer_stake
            self.apply(L.deposit(addr, amount, ref="stake"))
            self.apply(L.stake(self.bal(), addr, amount))
            self.staked[i] = True
        self._set_online(i, True)
        self.online_since[i] = t
        self.book.post(
            Ask(
                addr,
                self.cls[i],
                self.region[i],
                self.price[i],
                1,
                math.inf,
                OrderKind.LEASE,
                CATALOG[self.cls[i]].tier,
            )
        )
        c = self._churn(i)
        session = self.rng.weibullvariate(c.scale_h, c.shape) * HOUR
        self.version[i] += 1
        self.push(t + session, _LEAVE, i, self.version[i])

    def _uptime_until(self, i: int, t: float) -> None:
        """Count online time up to ``t``; the daily settlement calls it for everyone online,
        so each day gets only its own hours."""
        self.up_s[i] += t - self.online_since[i]
        self.online_since[i] = t

    def leave(self, t: float, i: int, version: int, *, banned: bool = False) -> None:
        if not self.online[i] or (version and version != self.version[i]):
            return
        self.version[i] += 1
        self._uptime_until(i, t)
        lease = self.lease[i]
        if lease is not None:
            self._finish(t, i, lease, lost=True)
            if not self.online[i]:
                return  # the lease's audit banned it, and that took it offline already
        self.book.withdraw(self.addr[i], OrderKind.LEASE, self.cls[i])
        self._set_online(i, False)
        if not banned:
            self.push(t + self.rng.expovariate(1.0 / (self.p.mean_offline_h * HOUR)), _JOIN, i)

    # ---- demand --------------------------------------------------------------------------

    def hour(self, t: float, h: int) -> None:
        p, rng = self.p, self.rng
        online = len(self.online_ids)
        util = self.leased / online if online else 0.0
        self.hourly.append(util)
        self.hour_samples.append(util)
        self.day.online += online / 24.0
        hod = (h % 24) / 24.0
        diurnal = 1.0 + p.diurnal_amplitude * math.sin(2 * math.pi * (hod - 0.375))
        # expected online GPUs per class, from the fleet mix (demand does not see churn)
        for cls, share in CLASS_MIX.items():
            lam = p.target_utilization * p.providers * share * 0.8 / p.mean_lease_h * diurnal
            for _ in range(_poisson(rng, lam)):
                self.order(t, cls)

    def order(self, t: float, cls: str) -> None:
        p, rng = self.p, self.rng
        self.orders += 1
        buyer = self.buyers[rng.randrange(len(self.buyers))]
        hours = min(72.0, max(0.5, rng.expovariate(1.0 / p.mean_lease_h)))
        usd = CATALOG[cls].median_usd_per_hour * p.buyer_premium
        max_price = per_second(usd * math.exp(rng.gauss(0.0, p.buyer_sigma)), p.token_usd)
        order = Order(
            f"o{self.orders}",
            OrderKind.LEASE,
            buyer,
            self.requirements[cls],
            max_price,
            1,
            t,
            duration_s=int(hours * HOUR),
        )
        award = self.book.match_instant(order, t)
        if award is None:
            self.day.unmet += 1
            return
        escrow = leases.escrow_for(order)
        have = self.bal().get(L.available_account(buyer), 0)
        if have < escrow:
            self.apply(L.deposit(buyer, max(escrow - have, 1000 * UNIT), ref="buy"))
        self.apply(L.lock_escrow(self.bal(), buyer, order.id, escrow))
        lease = leases.start(leases.new_lease(order, award, t, escrow=escrow), t)
        i = int(lease.provider[1:])
        self.lease[i] = lease
        self.leased += 1
        self.day.leases += 1
        alloc = award.allocations[0]
        usd_h = alloc.price * HOUR / UNIT * p.token_usd
        self.day.price_sum[cls] = self.day.price_sum.get(cls, 0.0) + usd_h
        self.day.price_n[cls] = self.day.price_n.get(cls, 0) + 1
        self.push(t + order.duration_s, _END, i, self.version[i])

    def lease_end(self, t: float, i: int, version: int) -> None:
        lease = self.lease[i]
        if lease is None or version != self.version[i]:
            return
        self._finish(t, i, lease, lost=False)

    # ---- a lease ends: bill, verify, pay -------------------------------------------------

    def _finish(self, t: float, i: int, lease: leases.Lease, *, lost: bool) -> None:
        p, addr = self.p, self.addr[i]
        started = lease.started_at or t
        delivered = round(t - started)
        receipt = leases.UsageReceipt(lease.id, addr, delivered, t)
        acc = leases.accrue(lease, receipt, t)
        done = acc.lease
        if done.state is leases.LeaseState.ACTIVE:
            # the receipts stopped: the lease ends as provider-lost after the grace period
            done = leases.tick(done, t + leases.DEFAULT_GRACE_S + 1)
        self.lease[i] = None
        self.leased -= 1
        self.work_s[i] += delivered
        if acc.amount > 0:
            self.apply(
                L.pay_into_hold(
                    self.bal(), done.buyer, done.escrow_ref, addr, acc.amount, p.fee_bps
                )
            )
            net = acc.amount - acc.amount * p.fee_bps // 10_000
            day = int(t // DAY)
            self.held[i][day] = self.held[i].get(day, 0) + net
            self.earners.setdefault(day, set()).add(i)
            self.day.volume += acc.amount
            vc = self.day.volume_by_class
            vc[self.cls[i]] = vc.get(self.cls[i], 0) + acc.amount
            self.day.fees += acc.amount - net
            self.day.earned[self.cls[i]] = self.day.earned.get(self.cls[i], 0) + net
        if self.enterprise[i]:
            self._sla(t, i, done, acc.amount, lost)
        self.apply(leases.refund(self.bal(), done))
        escrow = L.escrow_account(done.buyer, done.escrow_ref)
        if self.bal().get(escrow) == 0:
            del self.ledger.balances[escrow]
        if acc.amount > 0:
            self._verify(t, i, done, acc.amount)
        if not lost and self.online[i]:
            self.book.release(addr, OrderKind.LEASE, self.cls[i], 1)

    def _sla(self, t: float, i: int, lease: leases.Lease, paid: int, lost: bool) -> None:
        self.day.sla_leases += 1
        if not lost:
            return
        start = lease.started_at or t
        report = sla.sla_report([start, t], start, start + lease.duration_s, 60.0, paid, self.terms)
        if report.breached:
            self.day.sla_breaches += 1
            if report.credit > 0:
                self.apply(
                    L.sla_credit_from_stake(
                        self.bal(), self.addr[i], lease.buyer, report.credit, lease.id
                    )
                )

    def _verify(self, t: float, i: int, lease: leases.Lease, paid: int) -> None:
        rng = self.rng
        cheated = self.cheater[i] and rng.random() < self.p.cheat_rate
        candidates = self._candidates(i)
        stake = self.bal().get(L.stake_account(self.addr[i]), 0)
        check = verification.plan_verification(
            lease.id, self.records[i], candidates, rng, stake=stake, reward=paid
        )
        if check is None or check.auditor is None:
            return
        self.day.audits += 1
        results = {self.addr[i]: "fake" if cheated else "true"}
        auditor = int(check.auditor[1:])
        results[check.auditor] = self._result_of(auditor)
        decision = verification.adjudicate(
            self.addr[i], [check.auditor], lambda a, b: _agree(results, a, b)
        )
        if decision.verdict is verification.Verdict.ESCALATE:
            referee = verification.choose_auditor(
                self.records[i], candidates, rng, exclude=[check.auditor]
            )
            if referee is None:
                return
            results[referee.address] = self._result_of(int(referee.address[1:]))
            decision = verification.adjudicate(
                self.addr[i],
                [check.auditor, referee.address],
                lambda a, b: _agree(results, a, b),
            )
        if decision.verdict is verification.Verdict.REJECTED:
            self.day.audit_failures += 1
            self._fault(t, i, lease, paid, auditor)
        elif decision.verdict is verification.Verdict.ACCEPTED:
            self.records[i] = verification.after_verified(self.records[i])
        for party in decision.faulty:
            j = int(party[1:])
            if j != i:
                self.records[j] = replace(
                    self.records[j], auditor_faults=self.records[j].auditor_faults + 1
                )

    def _result_of(self, j: int) -> str:
        """What provider ``j`` answers as an auditor: cheaters fake some audits too."""
        if self.cheater[j] and self.rng.random() < self.p.cheat_rate:
            return f"fake-{j}"
        return "true"

    def _candidates(self, i: int) -> list[verification.ProviderRecord]:
        ids = self.online_ids
        if len(ids) <= 1:
            return []
        picks = [ids[self.rng.randrange(len(ids))] for _ in range(AUDITOR_SAMPLE)]
        return [self.records[j] for j in picks if j != i]

    def _fault(self, t: float, i: int, lease: leases.Lease, paid: int, auditor: int) -> None:
        addr, bal = self.addr[i], self.bal()
        net = paid - paid * self.p.fee_bps // 10_000
        held = bal.get(L.held_account(addr), 0)
        back = min(net, held)
        if back > 0:
            self.apply(L.claw_back(bal, addr, lease.buyer, back, lease.id))
            self._unhold(i, back)
            self.day.earned[self.cls[i]] = self.day.earned.get(self.cls[i], 0) - back
        stake = bal.get(L.stake_account(addr), 0) + bal.get(L.unbonding_account(addr), 0)
        amount = verification.slash_amount(stake)
        if amount > 0:
            split = verification.slash_split(amount)
            self.apply(L.slash(bal, addr, amount, lease.buyer, self.addr[auditor], split, lease.id))
        self.records[i] = verification.after_fault(self.records[i])
        if not self.caught[i]:
            self.caught[i] = True
            self.day.cheaters_caught += 1
        if verification.is_banned(self.records[i]):
            self.banned[i] = True
            self.leave(t, i, 0, banned=True)

    def _unhold(self, i: int, amount: int) -> None:
        """Take a claw-back out of the newest held buckets first."""
        for day in sorted(self.held[i], reverse=True):
            take = min(amount, self.held[i][day])
            self.held[i][day] -= take
            amount -= take
            if amount == 0:
                break

    # ---- the daily settlement --------------------------------------------------------------

    def settle_day(self, t: float, d: int) -> None:
        for i in self.online_ids:
            self._uptime_until(i, t)
        self._release(t, d)
        self._mint(d)
        self.apply(L.burn_fees(self.bal()))
        self.day.utilization = sum(self.hour_samples) / max(1, len(self.hour_samples))
        gpu_days = self.day.gpu_days
        for c, up in zip(self.cls, self.up_s, strict=True):
            if up > 0:
                gpu_days[c] = gpu_days.get(c, 0.0) + up / DAY
        self.days.append(self.day)
        self.day = DayStats(d)
        self.hour_samples = []
        n = self.p.providers
        self.work_s = [0.0] * n
        self.up_s = [0.0] * n

    def _release(self, t: float, d: int) -> None:
        """Release held pay whose challenge window has passed. Every provider's pay of one
        day shares its earned-at time, so ``releasable`` judges each day's cohort once
        instead of every provider's bucket every day; a cohort's payees are paid in
        provider order."""
        window = verification.DEFAULT_PARAMS.hold_window_s
        cohorts = [
            verification.Payout(f"day{day}", "", 0, day * DAY) for day in sorted(self.earners)
        ]
        for ready in verification.releasable(cohorts, t, window):
            day = int(ready.earned_at // DAY)
            for i in sorted(self.earners.pop(day)):
                amount = self.held[i].pop(day, 0)
                if amount > 0:
                    self.apply(L.release_held(self.bal(), self.addr[i], amount, f"day{d}"))

    def _mint(self, d: int) -> None:
        """Reward_i = Mint_job * w_i / sum(w) + Mint_avail * a_i / sum(a) (market-facts.md):
        half of the day's emission by verified work, half by time online."""
        p = self.p
        mint = int(p.emission_per_gpu_day * p.providers * UNIT)
        half = mint // 2
        total_w = sum(self.work_s)
        total_a = sum(self.up_s)
        rewards: dict[str, int] = {}
        earned = self.day.earned
        for i, (w, a) in enumerate(zip(self.work_s, self.up_s, strict=True)):
            if (w <= 0 and a <= 0) or self.banned[i]:
                continue
            r = 0
            if total_w > 0 and w > 0:
                r += int(half * w / total_w)
            if total_a > 0 and a > 0:
                r += int(half * a / total_a)
            if r > 0:
                rewards[self.addr[i]] = r
                c = self.cls[i]
                earned[c] = earned.get(c, 0) + r
        self.apply(L.mint_rewards(rewards, f"day{d}"))


def _agree(results: dict[str, str], a: str, b: str) -> bool:
    """Two honest re-executions agree; a faked result matches nothing."""
    return results[a] == "true" and results[b] == "true"


def simulate(params: SimParams) -> SimResult:
    """Run one simulation; the same params (seed included) give the same result."""
    return Simulation(params).run()
