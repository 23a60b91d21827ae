"""Fit scaling laws to anyone's (size, loss) data: the public API of refllm's fitter.

    fit_power_law(N, L)            L(N) = E + A N^-alpha   (saturating=False: L = A N^-alpha)
    fit_chinchilla(N, D, L)        L(N, D) = E + A/N^alpha + B/D^beta   (Hoffmann et al. 2022)
    compute_optimal(fit, C)        N_opt, D_opt under C = 6 N D          (Hoffmann et al., Eq. 4)
    isoflop_fit(C, N, L)           Approach 2: parabola minima per budget, N_opt ~ C^a

One module a job: `.laws` (the formulas), `.varpro` (variable projection), `.power_law` and
`.chinchilla` (the fitters), `.isoflop` (Approach 2 and the allocation), `.bootstrap` (intervals),
`.result` (`FitResult` and the options every fitter shares). The fitters import `.result`, never
each other.
"""

from refllm.scaling.fit.chinchilla import fit_chinchilla
from refllm.scaling.fit.isoflop import Allocation, IsoFLOPResult, compute_optimal, isoflop_fit
from refllm.scaling.fit.power_law import fit_power_law
from refllm.scaling.fit.result import MIN_REPLICATES, FitResult

__all__ = ["Allocation", "FitResult", "IsoFLOPResult", "compute_optimal", "fit_chinchilla",
           "fit_power_law", "isoflop_fit", "MIN_REPLICATES"]
