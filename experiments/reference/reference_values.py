"""Reference values for gavat-experiments' statistics tests.

Run with scipy and statsmodels installed (a virtualenv from PyPI):

    python3 -m venv /tmp/refs && /tmp/refs/bin/pip install scipy statsmodels numpy
    /tmp/refs/bin/python experiments/reference/reference_values.py > experiments/src/stats/refs.rs

Prints a Rust module of constants; each line says which call produced it.
Generated with scipy 1.17.1, statsmodels 0.15.0.
"""
import numpy as np
import scipy
import statsmodels
from scipy import integrate, stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_confint, proportion_effectsize, proportions_ztest

out = []


def const(name, value, source):
    out.append(f"/// {source}\npub(crate) const {name}: f64 = {float(value)!r};")


for s, n in [(45, 500), (0, 20), (20, 20)]:
    lo, hi = proportion_confint(s, n, alpha=0.05, method="wilson")
    const(f"WILSON_{s}_{n}_LO", lo, f"statsmodels proportion_confint({s}, {n}, alpha=0.05, method='wilson')[0]")
    const(f"WILSON_{s}_{n}_HI", hi, f"statsmodels proportion_confint({s}, {n}, alpha=0.05, method='wilson')[1]")

z, p = proportions_ztest(count=[120, 150], nobs=[2000, 2000])
const("ZTEST_Z", z, "statsmodels proportions_ztest(count=[120, 150], nobs=[2000, 2000])[0]")
const("ZTEST_P", p, "statsmodels proportions_ztest(count=[120, 150], nobs=[2000, 2000])[1]")

a = np.array([1.2, 2.3, 0.8, 3.1, 2.2, 1.9, 2.8, 1.1])
b = np.array([2.9, 3.4, 2.7, 4.1, 3.3, 2.5, 3.9, 3.0, 3.6])
t, p = stats.ttest_ind(a, b, equal_var=False)
va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
const("WELCH_T", t, "scipy.stats.ttest_ind(a, b, equal_var=False).statistic")
const("WELCH_P", p, "scipy.stats.ttest_ind(a, b, equal_var=False).pvalue")
const("WELCH_DF", df, "Welch-Satterthwaite df of a, b (numpy)")
const("T975_DF7", stats.t.ppf(0.975, df=7), "scipy.stats.t.ppf(0.975, df=7)")

chi2, p, dof, _ = stats.chi2_contingency([[90, 910], [110, 890], [130, 870]], correction=False)
const("CHI2_STAT", chi2, "scipy.stats.chi2_contingency([[90,910],[110,890],[130,870]], correction=False)[0]")
const("CHI2_P", p, "scipy.stats.chi2_contingency(..., correction=False)[1]")
const("CHI2_DOF", dof, "scipy.stats.chi2_contingency(..., correction=False)[2]")

r = stats.chisquare([5130, 4870], f_exp=[5000, 5000])
const("SRM_STAT", r.statistic, "scipy.stats.chisquare([5130, 4870], f_exp=[5000, 5000]).statistic")
const("SRM_P", r.pvalue, "scipy.stats.chisquare([5130, 4870], f_exp=[5000, 5000]).pvalue")
r = stats.chisquare([3400, 3250, 3350], f_exp=[10000 / 3] * 3)
const("SRM3_STAT", r.statistic, "scipy.stats.chisquare([3400, 3250, 3350], f_exp=[10000/3]*3).statistic")
const("SRM3_P", r.pvalue, "scipy.stats.chisquare([3400, 3250, 3350], f_exp=[10000/3]*3).pvalue")

adj = multipletests([0.01, 0.04, 0.03, 0.005], alpha=0.05, method="holm")[1]
for i, v in enumerate(adj):
    const(f"HOLM_ADJ_{i}", v, f"statsmodels multipletests([0.01, 0.04, 0.03, 0.005], method='holm')[1][{i}]")

z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
for (p1, p2, name) in [(0.05, 0.055, "N_UNPOOLED_05_055"), (0.05, 0.06, "N_UNPOOLED_05_06")]:
    n = z**2 * (p1 * (1 - p1) + p2 * (1 - p2)) / (p1 - p2) ** 2
    const(name, n, f"(norm.ppf(0.975)+norm.ppf(0.8))^2 * (p1(1-p1)+p2(1-p2)) / (p1-p2)^2, p1={p1}, p2={p2}")
n = NormalIndPower().solve_power(effect_size=proportion_effectsize(0.055, 0.05), alpha=0.05, power=0.8, ratio=1.0,
                                 alternative="two-sided")
const("N_COHEN_05_055", n, "statsmodels NormalIndPower().solve_power(proportion_effectsize(0.055, 0.05), alpha=0.05, power=0.8)")

bc, bt = stats.beta(1 + 100, 1 + 900), stats.beta(1 + 120, 1 + 880)
pts = [0.08, 0.1, 0.12, 0.14]
p_beat = integrate.quad(lambda x: bt.pdf(x) * bc.cdf(x), 0, 1, points=pts, epsabs=1e-13, limit=500)[0]
const("P_BEAT_100_120", p_beat, "scipy integrate.quad(beta(121,881).pdf(x) * beta(101,901).cdf(x), 0, 1)")
mean_c = bc.mean()
bc_plus = stats.beta(102, 901)
loss = integrate.quad(lambda x: bt.pdf(x) * (mean_c * bc_plus.sf(x) - x * bc.sf(x)), 0, 1, points=pts, epsabs=1e-13,
                      limit=500)[0]
const("LOSS_TREATMENT_100_120", loss, "scipy integrate.quad of E[max(p_c - p_t, 0)], Beta(101,901) vs Beta(121,881)")

pc, pt = 0.1, 0.12
var = (pt / pc) ** 2 * ((pt * (1 - pt) / 1000) / pt**2 + (pc * (1 - pc) / 1000) / pc**2)
lift = pt / pc - 1
zq = stats.norm.ppf(0.975)
const("LIFT_100_120", lift, "numpy: 0.12/0.10 - 1")
const("LIFT_LO_100_120", lift - zq * np.sqrt(var), "numpy: delta-method lift - norm.ppf(0.975)*se")
const("LIFT_HI_100_120", lift + zq * np.sqrt(var), "numpy: delta-method lift + norm.ppf(0.975)*se")

s2, tau2, n, d = 1.0, 0.01, 1000, 0.12
lam = np.sqrt(2 * s2 / (2 * s2 + n * tau2)) * np.exp(n**2 * tau2 * d**2 / (4 * s2 * (2 * s2 + n * tau2)))
const("MSPRT_LAMBDA_1000_012", lam, "numpy: mSPRT Lambda, sigma2=1, tau2=0.01, n=1000, d=0.12 (Johari et al. 2017)")
const("MSPRT_P_1000_012", min(1.0, 1 / lam), "numpy: min(1, 1/Lambda)")

print("//! Reference values computed by experiments/reference/reference_values.py with")
print(f"//! scipy {scipy.__version__} and statsmodels {statsmodels.__version__}; each constant names its call.")
print()
print("\n".join(out))
