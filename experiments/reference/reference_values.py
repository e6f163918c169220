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
from scipy import integrate, optimize, stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_confint, proportion_effectsize, proportions_ztest

out = []


def const(name, value, source):
    out.append(f"/// {source}\npub(crate) const {name}: f64 = {float(value)!r};")


def const_array(name, values, source):
    items = ", ".join(repr(float(v)) for v in values)
    out.append(f"/// {source}\npub(crate) const {name}: [f64; {len(values)}] = [{items}];")


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

n = NormalIndPower().solve_power(effect_size=0.2 / 3.0, alpha=0.05, power=0.8, ratio=1.0, alternative="two-sided")
const("N_MEAN_2_3_01", n, "statsmodels NormalIndPower().solve_power(effect_size=0.2/3, alpha=0.05, power=0.8)")
n = NormalIndPower().solve_power(effect_size=0.2 / (3.0 * np.sqrt(1 - 0.36)), alpha=0.05, power=0.8, ratio=1.0,
                                 alternative="two-sided")
const("N_MEAN_CUPED_06", n, "statsmodels NormalIndPower().solve_power(effect_size=0.2/(3*sqrt(1-0.6^2)), alpha=0.05, power=0.8)")

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
vc, vt = pc * (1 - pc) / 1000, pt * (1 - pt) / 1000
zq = stats.norm.ppf(0.975)
const("LIFT_100_120", pt / pc - 1, "numpy: 0.12/0.10 - 1")
# Fieller's interval, found by inverting the test numerically (not the closed form the crate
# uses): the ratios rho with (pt - rho*pc)^2 / (vt + rho^2 vc) = z^2, either side of pt/pc.
fieller = lambda rho: (pt - rho * pc) ** 2 / (vt + rho**2 * vc) - zq**2
lo = optimize.brentq(fieller, 0.0, pt / pc, xtol=1e-15, rtol=1e-15)
hi = optimize.brentq(fieller, pt / pc, 10.0, xtol=1e-15, rtol=1e-15)
const("FIELLER_LO_100_120", lo - 1, "scipy brentq: Fieller lower root of (pt - r pc)^2/(vt + r^2 vc) = z^2, minus 1")
const("FIELLER_HI_100_120", hi - 1, "scipy brentq: Fieller upper root of (pt - r pc)^2/(vt + r^2 vc) = z^2, minus 1")

bh = multipletests([0.01, 0.04, 0.03, 0.005, 0.04, 0.9], alpha=0.05, method="fdr_bh")[1]
const_array("BH_ADJ", bh, "statsmodels multipletests([0.01, 0.04, 0.03, 0.005, 0.04, 0.9], method='fdr_bh')[1]")

s2, tau2, n, d = 1.0, 0.01, 1000, 0.12
lam = np.sqrt(2 * s2 / (2 * s2 + n * tau2)) * np.exp(n**2 * tau2 * d**2 / (4 * s2 * (2 * s2 + n * tau2)))
const("MSPRT_LAMBDA_1000_012", lam, "numpy: mSPRT Lambda, sigma2=1, tau2=0.01, n=1000, d=0.12 (Johari et al. 2017)")
const("MSPRT_P_1000_012", min(1.0, 1 / lam), "numpy: min(1, 1/Lambda)")
# The confidence sequence inverts the mSPRT: its half-width is the delta with Lambda(d - delta) = 1/alpha.
log_lam = lambda diff: 0.5 * np.log(2 * s2 / (2 * s2 + n * tau2)) + n**2 * tau2 * diff**2 / (4 * s2 * (2 * s2 + n * tau2))
half = optimize.brentq(lambda h: log_lam(h) - np.log(1 / 0.05), 0.0, 10.0, xtol=1e-15, rtol=1e-15)
const("CS_HALF_1000", half, "scipy brentq: delta with log Lambda(delta) = log(1/0.05), sigma2=1, tau2=0.01, n=1000")

# CUPED: two small arms of (y, x) pairs; the adjusted difference is the treatment's OLS
# coefficient in y ~ 1 + treatment + x (statsmodels), the rest the closed forms in numpy.
import statsmodels.api as sm

cuped_t = [(3.1, 2.0), (4.2, 3.5), (2.2, 1.0), (5.0, 4.1), (3.9, 2.7), (4.4, 3.9), (2.8, 1.8), (3.6, 2.2)]
cuped_c = [(2.5, 2.1), (3.0, 3.0), (1.9, 0.9), (4.1, 4.4), (3.3, 2.5), (2.1, 1.2), (3.8, 3.6)]
rows = [(y, 1.0, x) for y, x in cuped_t] + [(y, 0.0, x) for y, x in cuped_c]
Y = np.array([r[0] for r in rows])
X = sm.add_constant(np.array([[r[1], r[2]] for r in rows]))
fit = sm.OLS(Y, X).fit()
yt, xt = np.array(cuped_t).T
yc, xc = np.array(cuped_c).T
sxy = ((xt - xt.mean()) * (yt - yt.mean())).sum() + ((xc - xc.mean()) * (yc - yc.mean())).sum()
sxx = ((xt - xt.mean()) ** 2).sum() + ((xc - xc.mean()) ** 2).sum()
theta = sxy / sxx
adj_var = np.var(yt - theta * xt, ddof=1) / len(yt) + np.var(yc - theta * xc, ddof=1) / len(yc)
raw_var = np.var(yt, ddof=1) / len(yt) + np.var(yc, ddof=1) / len(yc)
zc = fit.params[1] / np.sqrt(adj_var)
out.append("/// CUPED treatment arm: (y, x) pairs\npub(crate) const CUPED_T: [(f64, f64); 8] = " + repr(cuped_t).replace("[", "[").replace("]", "]") + ";")
out.append("/// CUPED control arm: (y, x) pairs\npub(crate) const CUPED_C: [(f64, f64); 7] = " + repr(cuped_c) + ";")
const("CUPED_DIFF", fit.params[1], "statsmodels OLS(y ~ 1 + treatment + x).params['treatment']")
const("CUPED_THETA", fit.params[2], "statsmodels OLS(y ~ 1 + treatment + x).params['x']")
const("CUPED_Z", zc, "numpy: CUPED difference / sqrt(var(y_t - theta x_t)/n_t + var(y_c - theta x_c)/n_c)")
const("CUPED_P", 2 * stats.norm.sf(abs(zc)), "scipy: 2 * norm.sf(|CUPED_Z|)")
const("CUPED_REDUCTION", 1 - adj_var / raw_var, "numpy: 1 - adjusted variance / raw variance of the difference")

# Gaussian model on the relative lift (GrowthBook gbstats): the posterior integrated numerically
# from likelihood N(lift_hat; L, v) times the prior, not from the conjugate closed form.
pc, pt, n = 0.1, 0.12, 1000
vc, vt = pc * (1 - pc) / n, pt * (1 - pt) / n
lift_hat = pt / pc - 1
v = vt / pc**2 + pt**2 * vc / pc**4
for name, prior in [("GAUSS_FLAT", lambda L: 1.0), ("GAUSS_NORMAL_01", lambda L: stats.norm.pdf(L, 0, 0.1))]:
    post = lambda L: stats.norm.pdf(lift_hat, L, np.sqrt(v)) * prior(L)
    lo_, hi_ = lift_hat - 40 * np.sqrt(v), lift_hat + 40 * np.sqrt(v)
    q = lambda f: integrate.quad(f, lo_, hi_, points=[0.0, lift_hat], epsabs=1e-14, epsrel=1e-13, limit=1000)[0]
    z_ = q(post)
    mean = q(lambda L: L * post(L)) / z_
    sd = np.sqrt(q(lambda L: (L - mean) ** 2 * post(L)) / z_)
    win = integrate.quad(post, 0, hi_, epsabs=1e-14, epsrel=1e-13, limit=1000)[0] / z_
    loss = integrate.quad(lambda L: -L * post(L), lo_, 0, epsabs=1e-14, epsrel=1e-13, limit=1000)[0] / z_
    out.append(f"/// scipy quad: posterior [mean, sd, P(L > 0), E[max(-L, 0)]] of the lift, prior {name}, pc=0.1 pt=0.12 n=1000\n"
               f"pub(crate) const {name}: [f64; 4] = [{float(mean)!r}, {float(sd)!r}, {float(win)!r}, {float(loss)!r}];")

print("//! Reference values computed by experiments/reference/reference_values.py with")
print(f"//! scipy {scipy.__version__} and statsmodels {statsmodels.__version__}; each constant names its call.")
print()
print("\n".join(out))
