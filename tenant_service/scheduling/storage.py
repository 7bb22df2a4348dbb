"""The storage scheduler's linear program: build it with numpy, solve it with HiGHS.

Variables, per device d and step t: charging c[d,t] in [0, consumption capacity],
discharging p[d,t] in [0, production capacity] (both MW, at the grid side) and the
SoC s[d,t] at the end of step t (MWh) in [soc-min, soc-max], fixed where a target is
set; per step, grid import g+[t] in [0, site consumption capacity] and export g-[t]
in [0, site production capacity]. Rows: one SoC balance per device and step,

    s[d,t] - e_s[t] s[d,t-1] - e_c[t] dt c[d,t] + dt / e_d[t] p[d,t] = gain - usage

(s[d,-1] is the SoC at start, moved to the right-hand side), and one site balance
per step, g+[t] - g-[t] - sum_d (c[d,t] - p[d,t]) = inflexible[t]. The objective is
sum_t (consumption price g+ - production price g-) dt plus a tie-breaker (see
`TIE_BREAK`). The matrix is built column-wise with index arithmetic on (D, T)
arrays, so building costs O(D T) numpy work and no Python loop over steps.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Final

import highspy
import numpy as np
import numpy.typing as npt

try:
    # highspy's public Highs installs a Python log callback in its __init__, which
    # prints HiGHS' banner to stdout whatever output_flag says (highspy 1.16) and
    # would break our one-JSON-line-per-record stdout; the bare binding is silent.
    from highspy._core import _Highs as Solver
except ImportError:  # highspy before its _core layout
    from highspy import Highs as Solver

from tenant_service.scheduling.problem import (
    Array,
    InfeasibleError,
    SiteProblem,
    Solution,
    StorageDevice,
)

IntArray = npt.NDArray[np.int64]

# Prefer charging sooner: charging at step t costs TIE_BREAK * scale * (t + 1) / T
# extra per MWh and discharging TIE_BREAK * scale * (T - t) / T, scale being the
# largest |price|. Both grow towards the less preferred end, so charging a step
# earlier (or discharging a step later) is always strictly cheaper, while the whole
# term stays below 1e-5 of the largest price (0.001 EUR/MWh at 100 EUR/MWh, under
# the 0.01 that prices are quoted in): it only decides between hours whose prices
# tie. Both terms are positive, so cycling or charging and discharging at once never
# pays through the tie-breaker, unlike a slope on net power, which would reward
# charging early and discharging the same energy late.
TIE_BREAK: Final = 1e-5
# The tie-breaker's step-to-step differences (TIE_BREAK / T of the largest price,
# 3.5e-9 for a month of 15-minute steps) must exceed HiGHS' dual feasibility
# tolerance (1e-7 by default, absolute on the scaled objective) to be honoured.
DUAL_TOLERANCE: Final = 1e-9
# Absolute slack (MWh, MW) when diagnosing infeasibility by hand, as HiGHS' primal
# feasibility tolerance: a bound missed by less than this is not the culprit.
TOLERANCE: Final = 1e-7
EFFICIENCIES: Final = (
    "charging_efficiency",
    "discharging_efficiency",
    "storage_efficiency",
)


def solve(problem: SiteProblem, *, time_limit: float = 60.0) -> Solution:
    """Schedule the site's devices at least cost; raise InfeasibleError if none."""
    _validate(problem, time_limit)
    _check_bounds(problem)
    model = _Model(problem)
    highs = Solver()
    highs.setOptionValue("output_flag", False)
    highs.setOptionValue("time_limit", float(time_limit))
    highs.setOptionValue("dual_feasibility_tolerance", DUAL_TOLERANCE)
    if model.pass_to(highs) == highspy.HighsStatus.kError:
        raise RuntimeError("HiGHS rejected the storage model")
    if model.add_breaches(highs) == highspy.HighsStatus.kError:
        raise RuntimeError("HiGHS rejected the soft SoC constraints")
    status = _run(highs)
    if status != highspy.HighsModelStatus.kOptimal:
        raise InfeasibleError(_diagnose(problem, model, highs, status, time_limit))
    return model.solution(np.asarray(highs.getSolution().col_value, dtype=np.float64))


class _Model:
    """The linear program of one site problem, as arrays HiGHS reads in one go."""

    def __init__(self, problem: SiteProblem) -> None:
        steps, devices = problem.steps, problem.devices
        dt = problem.step_hours
        n_dev = len(devices)
        self.problem = problem
        self.steps = steps
        self.n_dev = n_dev
        self.grid = 3 * n_dev * steps  # first column of g+ (then g-)
        self.num_col = self.grid + 2 * steps
        self.num_row = (n_dev + 1) * steps

        def stack(field: str) -> Array:
            return np.array(
                [getattr(d, field) for d in devices], dtype=np.float64
            ).reshape(n_dev, steps)

        eta_c, eta_d = stack("charging_efficiency"), stack("discharging_efficiency")
        eta_s = stack("storage_efficiency")
        soc_lo, soc_hi = _soc_bounds(problem)
        self.soc_lo, self.soc_hi = soc_lo, soc_hi

        # Column-wise matrix: per device the blocks c, p, s, each (T, 2) entries.
        t = np.arange(steps)
        dyn = np.arange(n_dev)[:, None] * steps + t[None, :]  # (D, T) SoC rows
        site = np.broadcast_to(n_dev * steps + t, (n_dev, steps))  # site rows
        index = np.empty((n_dev, 3, steps, 2), dtype=np.int64)
        value = np.empty((n_dev, 3, steps, 2), dtype=np.float64)
        index[:, 0, :, 0] = dyn
        index[:, 0, :, 1] = site
        value[:, 0, :, 0] = -eta_c * dt
        value[:, 0, :, 1] = -1.0
        index[:, 1, :, 0] = dyn
        index[:, 1, :, 1] = site
        value[:, 1, :, 0] = dt / eta_d
        value[:, 1, :, 1] = 1.0
        # s[d,t] enters its own balance and, with -e_s[t+1], the next step's.
        index[:, 2, :, 0] = dyn
        index[:, 2, :, 1] = dyn + 1
        value[:, 2, :, 0] = 1.0
        value[:, 2, :-1, 1] = -eta_s[:, 1:]
        keep = np.ones((n_dev, 3, steps, 2), dtype=bool)
        keep[:, 2, -1, 1] = False  # the last SoC has no next step
        site_rows = n_dev * steps + t
        self.a_index = np.concatenate([index[keep], site_rows, site_rows])
        self.a_value = np.concatenate(
            [value[keep], np.ones(steps), np.full(steps, -1.0)]
        )
        counts = np.concatenate([keep.sum(axis=-1).ravel(), np.ones(2 * steps, int)])
        self.a_start = np.zeros(self.num_col + 1, dtype=np.int64)
        np.cumsum(counts, out=self.a_start[1:])

        cp = np.asarray(problem.consumption_price, dtype=np.float64)
        pp = np.asarray(problem.production_price, dtype=np.float64)
        # HiGHS sees prices divided by the largest |price| (and dt): its tolerances
        # are absolute, so this keeps the tie-breaker equally visible at any price
        # level.
        scale = max(float(np.abs(cp).max()), float(np.abs(pp).max()))
        scale = scale if scale > 0 else 1.0
        tie = np.zeros((n_dev, 3, steps))
        sooner = np.array([d.prefer_charging_sooner for d in devices], dtype=bool)
        tie[sooner, 0, :] = TIE_BREAK * (t + 1) / steps
        tie[sooner, 1, :] = TIE_BREAK * (steps - t) / steps
        self.cost = np.concatenate([tie.ravel(), cp / scale, -pp / scale])

        zeros = np.zeros((n_dev, steps))
        self.col_lower = np.concatenate(
            [np.stack([zeros, zeros, soc_lo], axis=1).ravel(), np.zeros(2 * steps)]
        )
        self.col_upper = np.concatenate(
            [
                np.stack(
                    [
                        stack("consumption_capacity"),
                        stack("production_capacity"),
                        soc_hi,
                    ],
                    axis=1,
                ).ravel(),
                np.asarray(problem.site_consumption_capacity, dtype=np.float64),
                np.asarray(problem.site_production_capacity, dtype=np.float64),
            ]
        )
        self.scale = scale
        self.tie = tie
        self.breaches: list[_Breach] = []
        rhs = stack("soc_gain") - stack("soc_usage")
        rhs[:, 0] += eta_s[:, 0] * np.array([d.soc_at_start for d in devices])
        self.row_bound = np.concatenate(
            [rhs.ravel(), np.asarray(problem.inflexible, dtype=np.float64)]
        )

    def pass_to(self, highs: Solver) -> highspy.HighsStatus:
        """Hand the whole model to HiGHS at once."""
        lp = highspy.HighsLp()
        lp.num_col_ = self.num_col
        lp.num_row_ = self.num_row
        lp.col_cost_ = self.cost
        lp.col_lower_ = self.col_lower
        lp.col_upper_ = self.col_upper
        lp.row_lower_ = self.row_bound
        lp.row_upper_ = self.row_bound
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.num_col_ = self.num_col
        lp.a_matrix_.num_row_ = self.num_row
        lp.a_matrix_.start_ = self.a_start
        lp.a_matrix_.index_ = self.a_index
        lp.a_matrix_.value_ = self.a_value
        return highs.passModel(lp)

    def add_breaches(self, highs: Solver) -> highspy.HighsStatus:
        """Columns and rows of the soft constraints (none when all are hard).

        Per family, a breach b[t] >= 0 per step with a bound (x[t] + b[t] at least a
        minimum, or x[t] - b[t] at most a maximum; x a device's SoC or the site's
        import or export) and the largest breach B >= b[t]. As FlexMeasures 1.0.1
        prices them: SoC P * sum_t b[t] ("all ...") plus P * B per hour of one step
        ("any ..."); site capacity P * sum_t b[t] * step hours plus P * B.
        """
        problem, dt = self.problem, self.problem.step_hours
        low, high = problem.soc_minima_breach_price, problem.soc_maxima_breach_price
        families: list[
            tuple[str, str, IntArray, Array | None, float | None, float]
        ] = []
        for d, device in enumerate(problem.devices):
            soc = self.soc_columns(d)
            families += [
                ("all soc minima", "any soc minima", soc, device.soc_minima, low, 1.0),
                (
                    "all soc maxima",
                    "any soc maxima",
                    soc,
                    device.soc_maxima,
                    high,
                    -1.0,
                ),
            ]
            if problem.soft_targets:
                target = device.soc_target
                families += [
                    ("all soc targets", "any soc targets", soc, target, low, 1.0),
                    ("all soc targets", "any soc targets", soc, target, high, -1.0),
                ]
        status = highspy.HighsStatus.kOk
        for all_name, any_name, cols, bound, price, sign in families:
            # FlexMeasures reports SoC terms only where bounds are given.
            if bound is not None and price is not None and not np.isnan(bound).all():
                status = self.add_family(
                    highs,
                    _Breach(all_name, any_name, price, price / dt),
                    cols,
                    bound,
                    sign,
                )
            if status == highspy.HighsStatus.kError:
                return status
        steps = np.arange(self.steps, dtype=np.int64)
        for k, (kind, contract, price) in enumerate(
            (
                (
                    "consumption",
                    problem.site_consumption_contract,
                    problem.site_consumption_breach_price,
                ),
                (
                    "production",
                    problem.site_production_contract,
                    problem.site_production_breach_price,
                ),
            )
        ):
            if price is None:
                continue
            breach = _Breach(
                f"electricity all {kind} breaches",
                f"electricity any {kind} breach",
                price * dt,
                price,
            )
            bound = np.full(self.steps, np.nan) if contract is None else contract
            bound = np.where(np.isfinite(bound), bound, np.nan)
            status = self.add_family(
                highs, breach, self.grid + k * self.steps + steps, bound, -1.0
            )
            if status == highspy.HighsStatus.kError:
                return status
        return status

    def add_family(
        self, highs: Solver, breach: _Breach, cols: IntArray, bound: Array, sign: float
    ) -> highspy.HighsStatus:
        """One family's breach columns and rows (steps where `bound` is not nan)."""
        steps = np.flatnonzero(~np.isnan(bound)).astype(np.int64)
        n = len(steps)
        first = highs.getNumCol()
        breach = dataclasses.replace(breach, steps=steps, first=first)
        self.breaches.append(breach)
        unit = 1.0 / (self.scale * self.problem.step_hours)  # objective per currency
        status = highs.addCols(
            n + 1,
            np.concatenate(
                [np.full(n, breach.per_step * unit), [breach.largest * unit]]
            ),
            np.zeros(n + 1),
            np.full(n + 1, highspy.kHighsInf),
            0,
            np.zeros(0, dtype=np.int64),
            np.zeros(0, dtype=np.int64),
            np.zeros(0),
        )
        if status == highspy.HighsStatus.kError or n == 0:
            return status
        own = first + np.arange(n, dtype=np.int64)
        inf = highspy.kHighsInf
        # A minimum: x + b >= bound; a maximum: x - b <= bound. Then B - b >= 0.
        lower = np.concatenate(
            [bound[steps] if sign > 0 else np.full(n, -inf), np.zeros(n)]
        )
        upper = np.concatenate(
            [np.full(n, inf) if sign > 0 else bound[steps], np.full(n, inf)]
        )
        index = np.concatenate(
            [np.stack([cols[steps], own], 1), np.stack([np.full(n, first + n), own], 1)]
        ).ravel()
        value = np.concatenate([np.tile([1.0, sign], n), np.tile([1.0, -1.0], n)])
        return highs.addRows(
            2 * n, lower, upper, 4 * n, np.arange(0, 4 * n, 2), index, value
        )

    def soc_columns(self, device: int) -> IntArray:
        """Column indices of one device's SoC."""
        first = (3 * device + 2) * self.steps
        return np.arange(first, first + self.steps, dtype=np.int64)

    def solution(self, x: Array) -> Solution:
        """Read the optimal schedule out of HiGHS' column values."""
        steps, dt = self.steps, self.problem.step_hours
        blocks = x[: self.grid].reshape(self.n_dev, 3, steps)
        g_in = x[self.grid : self.grid + steps]
        g_out = x[self.grid + steps : self.num_col]
        cost = float(
            np.sum(
                self.problem.consumption_price * g_in
                - self.problem.production_price * g_out
            )
            * dt
        )
        power = blocks[:, 0, :] - blocks[:, 1, :]
        costs = {"electricity net energy": cost}
        for breach in self.breaches:
            n = len(breach.steps)
            spent = float(x[breach.first : breach.first + n].sum())
            largest = float(x[breach.first + n])
            for name, amount in (
                (breach.all_name, breach.per_step * spent),
                (breach.any_name, breach.largest * largest),
            ):
                costs[name] = costs.get(name, 0.0) + amount
        tie = self.tie * blocks * self.scale * dt
        for d, device in enumerate(self.problem.devices):
            if device.prefer_charging_sooner:
                costs[f"prefer a full storage {d} sooner"] = float(tie[d].sum())
        return Solution(
            power=tuple(power[d].copy() for d in range(self.n_dev)),
            soc=tuple(blocks[d, 2, :].copy() for d in range(self.n_dev)),
            cost=cost,
            commitment_costs=costs,
        )


@dataclass(frozen=True, slots=True, eq=False)
class _Breach:
    """One family of soft bounds, as columns of the model, and what a breach costs."""

    all_name: str  # as FlexMeasures names the commitments, e.g. "all soc minima"
    any_name: str  # e.g. "any soc minima"
    per_step: float  # currency per unit (MWh, MW) of each step's breach
    largest: float  # currency per unit of the largest breach
    steps: IntArray = dataclasses.field(
        default_factory=lambda: np.zeros(0, dtype=np.int64)
    )
    first: int = 0  # first column: one breach per bounded step, then the largest


def _run(highs: Solver) -> highspy.HighsModelStatus:
    if highs.run() == highspy.HighsStatus.kError:
        return highspy.HighsModelStatus.kSolveError
    return highs.getModelStatus()


def _validate(problem: SiteProblem, time_limit: float) -> None:
    """Raise ValueError for inputs no schedule could be made from."""
    steps = problem.steps
    if steps < 1:
        raise ValueError("the planning window has no steps")
    if not (np.isfinite(problem.step_hours) and problem.step_hours > 0):
        raise ValueError(f"step_hours must be positive, not {problem.step_hours!r}")
    if not time_limit > 0:
        raise ValueError(f"time_limit must be positive, not {time_limit!r}")

    def check(name: str, values: Array, expected: str) -> None:
        array = np.asarray(values, dtype=np.float64)
        if array.shape != (steps,):
            raise ValueError(f"{name} has shape {array.shape}, expected ({steps},)")
        ok = {
            "finite": np.isfinite(array),
            "finite or nan": ~np.isinf(array),
            "finite or -inf": (array < np.inf) & ~np.isnan(array),
            "finite or inf": (array > -np.inf) & ~np.isnan(array),
            "at least 0 (inf for none)": array >= 0,
            "in (0, 1]": (array > 0) & (array <= 1),
        }[expected]
        bad = _first(~ok)
        if bad is not None:
            raise ValueError(
                f"{name} must be {expected}, not {float(array[bad])!r} at step"
                f" {bad + 1} of {steps}"
            )

    for field in ("consumption_price", "production_price", "inflexible"):
        check(field, getattr(problem, field), "finite")
    for field in ("site_consumption_capacity", "site_production_capacity"):
        check(field, getattr(problem, field), "at least 0 (inf for none)")
    dearer = _first(problem.production_price > problem.consumption_price)
    if dearer is not None:
        # Selling dearer than buying makes importing and exporting at once pay, which
        # only binaries could forbid (FlexMeasures issue #1105).
        raise ValueError(
            f"production_price {problem.production_price[dearer]:g} exceeds"
            f" consumption_price {problem.consumption_price[dearer]:g} at step"
            f" {dearer + 1} of {steps}, which a linear program cannot model"
        )
    for device in problem.devices:
        name = device.name
        if not np.isfinite(device.soc_at_start):
            raise ValueError(f"{name}: soc_at_start must be finite")
        check(f"{name}: soc_min", device.soc_min, "finite or -inf")
        check(f"{name}: soc_max", device.soc_max, "finite or inf")
        check(f"{name}: soc_target", device.soc_target, "finite or nan")
        for field in ("soc_minima", "soc_maxima"):
            if getattr(device, field) is not None:
                check(f"{name}: {field}", getattr(device, field), "finite or nan")
        for field in ("consumption_capacity", "production_capacity"):
            check(
                f"{name}: {field}", getattr(device, field), "at least 0 (inf for none)"
            )
        for field in ("soc_gain", "soc_usage"):
            check(f"{name}: {field}", getattr(device, field), "finite")
        for field in EFFICIENCIES:
            check(f"{name}: {field}", getattr(device, field), "in (0, 1]")


def _soc_bounds(problem: SiteProblem) -> tuple[Array, Array]:
    """Each device's SoC bounds per step, (D, T), with targets pinning both."""
    shape = (len(problem.devices), problem.steps)
    lo = np.empty(shape)
    hi = np.empty(shape)
    for i, device in enumerate(problem.devices):
        # Soft targets are rows with a breach (see _Model.add_breaches).
        has_target = ~np.isnan(device.soc_target) & (not problem.soft_targets)
        lo[i] = np.where(has_target, device.soc_target, device.soc_min)
        # Bounds that cross by less than TOLERANCE (unit conversions) pass
        # _check_bounds; HiGHS must not see them crossed.
        hi[i] = np.where(
            has_target, device.soc_target, np.maximum(device.soc_max, device.soc_min)
        )
    return lo, hi


def _check_bounds(problem: SiteProblem) -> None:
    """Name SoC bounds that contradict each other before building anything."""
    steps = problem.steps
    for device in problem.devices:
        soc_min, soc_max, target = device.soc_min, device.soc_max, device.soc_target
        clash = _first(soc_min > soc_max + TOLERANCE)
        if clash is not None:
            raise InfeasibleError(
                f"soc-min/soc-max of {device.name} conflict: {_at(clash, steps)} the"
                f" minimum {soc_min[clash]:g} MWh exceeds the maximum"
                f" {soc_max[clash]:g} MWh."
            )
        outside = _first(
            (target < soc_min - TOLERANCE) | (target > soc_max + TOLERANCE)
        )
        if outside is not None and not problem.soft_targets:
            raise InfeasibleError(
                f"soc-targets of {device.name} cannot be met: {_at(outside, steps)}"
                f" the target {target[outside]:g} MWh lies outside soc-min/soc-max"
                f" ({soc_min[outside]:g} to {soc_max[outside]:g} MWh)."
            )


def _first(mask: npt.NDArray[np.bool_]) -> int | None:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else None


def _at(step: int, steps: int) -> str:
    return f"at the end of step {step + 1} of {steps}"


def _during(step: int, steps: int) -> str:
    return f"during step {step + 1} of {steps}"


def _diagnose(
    problem: SiteProblem,
    model: _Model,
    highs: Solver,
    status: highspy.HighsModelStatus,
    time_limit: float,
) -> str:
    """Say in one sentence why no optimal schedule came out."""
    statuses = highspy.HighsModelStatus
    if status == statuses.kUnboundedOrInfeasible:
        # Presolve may stop at "one or the other"; the simplex alone tells which.
        highs.setOptionValue("presolve", "off")
        status = _run(highs)
    if status == statuses.kTimeLimit:
        return (
            f"the solver hit its time limit of {time_limit:g} s before finding an"
            " optimal schedule."
        )
    if status == statuses.kUnbounded:
        return (
            "the schedule is unbounded: with capacities left unlimited, the prices"
            " make consuming or producing ever more pay."
        )
    if status != statuses.kInfeasible:
        return (
            "the solver stopped without an optimal schedule"
            f" ({highs.modelStatusToString(status)})."
        )
    # Cheapest first: per-step arithmetic, one pass per device, then re-solves.
    message = _site_alone(problem)
    for i, device in enumerate(problem.devices):
        message = message or _device_alone(
            device, problem.step_hours, model.soc_lo[i], model.soc_hi[i]
        )
    message = message or _relax(problem, model, highs)
    return message or (
        "no schedule meets the soc-targets, soc-minima, soc-maxima and site"
        " capacities together."
    )


def _site_alone(problem: SiteProblem) -> str | None:
    """Name a site capacity that the inflexible load breaks whatever devices do."""
    steps = problem.steps
    least = problem.inflexible - sum(
        (d.production_capacity for d in problem.devices), np.zeros(steps)
    )
    over = _first(least > problem.site_consumption_capacity + TOLERANCE)
    if over is not None:
        return (
            f"site-consumption-capacity cannot be met: {_during(over, steps)} the"
            f" site consumes at least {least[over]:g} MW, above"
            f" {problem.site_consumption_capacity[over]:g} MW."
        )
    most = problem.inflexible + sum(
        (d.consumption_capacity for d in problem.devices), np.zeros(steps)
    )
    under = _first(-most > problem.site_production_capacity + TOLERANCE)
    if under is not None:
        return (
            f"site-production-capacity cannot be met: {_during(under, steps)} the"
            f" site produces at least {-most[under]:g} MW, above"
            f" {problem.site_production_capacity[under]:g} MW."
        )
    return None


def _device_alone(
    device: StorageDevice, hours: float, lo: Array, hi: Array
) -> str | None:
    """Name the first SoC bound (lo, hi per step) one device cannot reach alone."""
    steps = len(lo)
    drift = device.soc_gain - device.soc_usage
    up = device.charging_efficiency * device.consumption_capacity * hours + drift
    down = drift - device.production_capacity / device.discharging_efficiency * hours
    targets = (~np.isnan(device.soc_target)).tolist()
    # A loop over steps, but only on the failure path: the reachable SoC interval
    # is clipped by each step's bounds, which does not vectorise.
    low = high = float(device.soc_at_start)
    rows = zip(
        device.storage_efficiency.tolist(),
        up.tolist(),
        down.tolist(),
        lo.tolist(),
        hi.tolist(),
        targets,
        strict=True,
    )
    for t, (keep, rise, fall, lower, upper, target) in enumerate(rows):
        low, high = keep * low + fall, keep * high + rise
        if high < lower - TOLERANCE:
            family, bound = (
                ("soc-targets", "") if target else ("soc-minima", "at least ")
            )
            return (
                f"{family} of {device.name} cannot be met: {_at(t, steps)} the SoC"
                f" must be {bound}{lower:g} MWh but can reach only {high:g} MWh."
            )
        if low > upper + TOLERANCE:
            family, bound = (
                ("soc-targets", "") if target else ("soc-maxima", "at most ")
            )
            return (
                f"{family} of {device.name} cannot be met: {_at(t, steps)} the SoC"
                f" must be {bound}{upper:g} MWh but cannot get below {low:g} MWh."
            )
        low, high = max(low, lower), min(high, upper)
    return None


def _relax(problem: SiteProblem, model: _Model, highs: Solver) -> str | None:
    """Name the first constraint family whose removal makes the problem feasible."""
    inf = highspy.kHighsInf
    for i, device in enumerate(problem.devices):
        cols = model.soc_columns(i)
        lo, hi = model.soc_lo[i], model.soc_hi[i]
        has_target = ~np.isnan(device.soc_target)
        relaxations = (
            ("soc-targets", has_target.any(), device.soc_min, device.soc_max),
            (
                "soc-minima",
                np.isfinite(device.soc_min).any(),
                np.where(has_target, device.soc_target, -inf),
                hi,
            ),
            (
                "soc-maxima",
                np.isfinite(device.soc_max).any(),
                lo,
                np.where(has_target, device.soc_target, inf),
            ),
        )
        for family, present, lower, upper in relaxations:
            if present and _feasible_with(highs, cols, (lower, upper), (lo, hi)):
                return (
                    f"{family} of {device.name} cannot be met within the site's"
                    " capacities and the other devices' constraints."
                )
    steps = problem.steps
    capacities = (
        ("site-consumption-capacity", problem.site_consumption_capacity),
        ("site-production-capacity", problem.site_production_capacity),
    )
    zero, unlimited = np.zeros(steps), np.full(steps, inf)
    for k, (family, capacity) in enumerate(capacities):
        cols = np.arange(steps, dtype=np.int64) + model.grid + k * steps
        if np.isfinite(capacity).any() and _feasible_with(
            highs, cols, (zero, unlimited), (zero, capacity)
        ):
            return (
                f"{family} cannot be met together with the devices' SoC"
                " constraints and capacities."
            )
    return None


def _feasible_with(
    highs: Solver,
    cols: IntArray,
    bounds: tuple[Array, Array],
    restore: tuple[Array, Array],
) -> bool:
    """Re-solve with some columns' bounds changed, then put the bounds back."""
    n = len(cols)
    highs.changeColsBounds(n, cols, *(np.asarray(b, np.float64) for b in bounds))
    # Unbounded counts: some schedule meets every remaining constraint.
    feasible = _run(highs) in (
        highspy.HighsModelStatus.kOptimal,
        highspy.HighsModelStatus.kUnbounded,
    )
    highs.changeColsBounds(n, cols, *(np.asarray(b, np.float64) for b in restore))
    return feasible
