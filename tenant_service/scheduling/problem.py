"""A site's storage scheduling problem in numbers, and its solution.

Everything here is in MW, MWh, hours and currency per MWh, on a grid of `steps`
equal steps from the planning window's start. Arrays of length `steps` hold one
value per step; state-of-charge bounds and targets hold one value per step too,
for the instant at the *end* of that step (the SoC at the window's start is
`soc_at_start`). `nan` in `soc_target` means "no target then"; `-inf`/`inf` in
bounds mean "no bound". Power is consumption-positive: a device charging at 2 MW
has power +2, discharging at 2 MW has power -2.

grid.py builds these from the flex-model and flex-context that flexmodel.py
parses; the solver (storage.py) only reads them. Nothing here imports
aiohttp or touches a database.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True, eq=False)
class StorageDevice:
    """One storage device (battery, EV charger) on the site."""

    name: str  # how messages name it, e.g. "sensor 5"
    soc_at_start: float  # MWh
    soc_min: Array  # MWh, lower bound at the end of each step (soc-min and soc-minima)
    soc_max: Array  # MWh, upper bound at the end of each step (soc-max and soc-maxima)
    soc_target: Array  # MWh, exact SoC at the end of each step, nan = none
    consumption_capacity: Array  # MW >= 0, most charging power per step
    production_capacity: Array  # MW >= 0, most discharging power per step
    charging_efficiency: Array  # (0, 1]: share of consumed energy that is stored
    discharging_efficiency: Array  # (0, 1]: share of released stored energy delivered
    storage_efficiency: Array  # (0, 1]: share of the SoC kept over each step
    soc_gain: (
        Array  # MWh added to the SoC during each step (e.g. solar on a heat buffer)
    )
    soc_usage: Array  # MWh taken from the SoC during each step (e.g. driving an EV)
    prefer_charging_sooner: bool = True
    # Soft SoC bounds (see SiteProblem's breach prices), nan = none; with a breach
    # price these are not part of soc_min/soc_max.
    soc_minima: Array | None = None
    soc_maxima: Array | None = None


@dataclass(frozen=True, slots=True, eq=False)
class SiteProblem:
    """Devices sharing one grid connection, with prices and site limits."""

    step_hours: float  # length of one step in hours (> 0)
    consumption_price: Array  # currency/MWh paid for energy taken from the grid
    production_price: Array  # currency/MWh received for energy fed into the grid
    inflexible: Array  # MW, summed power of the site's other devices (consumption > 0)
    site_consumption_capacity: Array  # MW >= 0 (inf = none), most net consumption
    site_production_capacity: Array  # MW >= 0 (inf = none), most net production
    devices: tuple[StorageDevice, ...]
    # Currency per MWh of SoC below soc-minima (above soc-maxima), as FlexMeasures'
    # flex-context; None: those bounds are hard. soc-targets are soft when both are
    # set (a shortage priced as a minimum's, a surplus as a maximum's).
    soc_minima_breach_price: float | None = None
    soc_maxima_breach_price: float | None = None
    # MW (inf = none): consumption (production) the site may exceed at the breach
    # price, currency per MW (see storage.py); None: no such soft capacity.
    site_consumption_contract: Array | None = None
    site_production_contract: Array | None = None
    site_consumption_breach_price: float | None = None
    site_production_breach_price: float | None = None

    @property
    def soft_targets(self) -> bool:
        """Whether soc-targets may be missed, at their breach prices."""
        return (
            self.soc_minima_breach_price is not None
            and self.soc_maxima_breach_price is not None
        )

    @property
    def steps(self) -> int:
        """Number of steps of the planning window."""
        return len(self.consumption_price)


@dataclass(frozen=True, slots=True, eq=False)
class Solution:
    """The optimal schedule of each device, in the order of `SiteProblem.devices`."""

    power: tuple[Array, ...]  # MW per step, consumption positive
    soc: tuple[Array, ...]  # MWh at the end of each step
    cost: float  # currency, energy cost of the site over the window
    # Currency per cost term, named as FlexMeasures' scheduler_info.commitment_costs.
    commitment_costs: dict[str, float] = field(default_factory=dict)


class InfeasibleError(Exception):
    """No schedule meets every constraint; the message names the one not met."""
