//! Reference values computed by experiments/reference/reference_values.py with
//! scipy 1.17.1 and statsmodels 0.15.0; each constant names its call.

/// statsmodels proportion_confint(45, 500, alpha=0.05, method='wilson')[0]
pub(crate) const WILSON_45_500_LO: f64 = 0.06794254788913939;
/// statsmodels proportion_confint(45, 500, alpha=0.05, method='wilson')[1]
pub(crate) const WILSON_45_500_HI: f64 = 0.11830941128933345;
/// statsmodels proportion_confint(0, 20, alpha=0.05, method='wilson')[0]
pub(crate) const WILSON_0_20_LO: f64 = 0.0;
/// statsmodels proportion_confint(0, 20, alpha=0.05, method='wilson')[1]
pub(crate) const WILSON_0_20_HI: f64 = 0.1611251580528194;
/// statsmodels proportion_confint(20, 20, alpha=0.05, method='wilson')[0]
pub(crate) const WILSON_20_20_LO: f64 = 0.8388748419471804;
/// statsmodels proportion_confint(20, 20, alpha=0.05, method='wilson')[1]
pub(crate) const WILSON_20_20_HI: f64 = 0.9999999999999999;
/// statsmodels proportions_ztest(count=[120, 150], nobs=[2000, 2000])[0]
pub(crate) const ZTEST_Z: f64 = -1.8906666011235589;
/// statsmodels proportions_ztest(count=[120, 150], nobs=[2000, 2000])[1]
pub(crate) const ZTEST_P: f64 = 0.0586688635362016;
/// scipy.stats.ttest_ind(a, b, equal_var=False).statistic
pub(crate) const WELCH_T: f64 = -3.891926353636726;
/// scipy.stats.ttest_ind(a, b, equal_var=False).pvalue
pub(crate) const WELCH_P: f64 = 0.002207946124391055;
/// Welch-Satterthwaite df of a, b (numpy)
pub(crate) const WELCH_DF: f64 = 11.798911156083166;
/// scipy.stats.t.ppf(0.975, df=7)
pub(crate) const T975_DF7: f64 = 2.364624251592784;
/// scipy.stats.chi2_contingency([[90,910],[110,890],[130,870]], correction=False)[0]
pub(crate) const CHI2_STAT: f64 = 8.171603677221654;
/// scipy.stats.chi2_contingency(..., correction=False)[1]
pub(crate) const CHI2_P: f64 = 0.016809655280037316;
/// scipy.stats.chi2_contingency(..., correction=False)[2]
pub(crate) const CHI2_DOF: f64 = 2.0;
/// scipy.stats.chisquare([5130, 4870], f_exp=[5000, 5000]).statistic
pub(crate) const SRM_STAT: f64 = 6.76;
/// scipy.stats.chisquare([5130, 4870], f_exp=[5000, 5000]).pvalue
pub(crate) const SRM_P: f64 = 0.009322376047437499;
/// scipy.stats.chisquare([3400, 3250, 3350], f_exp=[10000/3]*3).statistic
pub(crate) const SRM3_STAT: f64 = 3.5;
/// scipy.stats.chisquare([3400, 3250, 3350], f_exp=[10000/3]*3).pvalue
pub(crate) const SRM3_P: f64 = 0.1737739434504451;
/// statsmodels multipletests([0.01, 0.04, 0.03, 0.005], method='holm')[1][0]
pub(crate) const HOLM_ADJ_0: f64 = 0.03;
/// statsmodels multipletests([0.01, 0.04, 0.03, 0.005], method='holm')[1][1]
pub(crate) const HOLM_ADJ_1: f64 = 0.06;
/// statsmodels multipletests([0.01, 0.04, 0.03, 0.005], method='holm')[1][2]
pub(crate) const HOLM_ADJ_2: f64 = 0.06;
/// statsmodels multipletests([0.01, 0.04, 0.03, 0.005], method='holm')[1][3]
pub(crate) const HOLM_ADJ_3: f64 = 0.02;
/// (norm.ppf(0.975)+norm.ppf(0.8))^2 * (p1(1-p1)+p2(1-p2)) / (p1-p2)^2, p1=0.05, p2=0.055
pub(crate) const N_UNPOOLED_05_055: f64 = 31230.692462975057;
/// (norm.ppf(0.975)+norm.ppf(0.8))^2 * (p1(1-p1)+p2(1-p2)) / (p1-p2)^2, p1=0.05, p2=0.06
pub(crate) const N_UNPOOLED_05_06: f64 = 8154.986043988711;
/// statsmodels NormalIndPower().solve_power(proportion_effectsize(0.055, 0.05), alpha=0.05, power=0.8)
pub(crate) const N_COHEN_05_055: f64 = 31217.423430777748;
/// statsmodels NormalIndPower().solve_power(effect_size=0.2/3, alpha=0.05, power=0.8)
pub(crate) const N_MEAN_2_3_01: f64 = 3531.987230615594;
/// statsmodels NormalIndPower().solve_power(effect_size=0.2/(3*sqrt(1-0.6^2)), alpha=0.05, power=0.8)
pub(crate) const N_MEAN_CUPED_06: f64 = 2260.4718288931463;
/// scipy integrate.quad(beta(121,881).pdf(x) * beta(101,901).cdf(x), 0, 1)
pub(crate) const P_BEAT_100_120: f64 = 0.9231834389735596;
/// scipy integrate.quad of E[max(p_c - p_t, 0)], Beta(101,901) vs Beta(121,881)
pub(crate) const LOSS_TREATMENT_100_120: f64 = 0.0004846139263564442;
/// numpy: 0.12/0.10 - 1
pub(crate) const LIFT_100_120: f64 = 0.19999999999999996;
/// scipy brentq: Fieller lower root of (pt - r pc)^2/(vt + r^2 vc) = z^2, minus 1
pub(crate) const FIELLER_LO_100_120: f64 = -0.06594951167658103;
/// scipy brentq: Fieller upper root of (pt - r pc)^2/(vt + r^2 vc) = z^2, minus 1
pub(crate) const FIELLER_HI_100_120: f64 = 0.551896477783131;
/// statsmodels multipletests([0.01, 0.04, 0.03, 0.005, 0.04, 0.9], method='fdr_bh')[1]
pub(crate) const BH_ADJ: [f64; 6] = [0.030000000000000002, 0.048, 0.048, 0.030000000000000002, 0.048, 0.9];
/// numpy: mSPRT Lambda, sigma2=1, tau2=0.01, n=1000, d=0.12 (Johari et al. 2017)
pub(crate) const MSPRT_LAMBDA_1000_012: f64 = 8.199886111940165;
/// numpy: min(1, 1/Lambda)
pub(crate) const MSPRT_P_1000_012: f64 = 0.12195291329032755;
/// scipy brentq: delta with log Lambda(delta) = log(1/0.05), sigma2=1, tau2=0.01, n=1000
pub(crate) const CS_HALF_1000: f64 = 0.1366738367033226;
/// CUPED treatment arm: (y, x) pairs
pub(crate) const CUPED_T: [(f64, f64); 8] =
    [(3.1, 2.0), (4.2, 3.5), (2.2, 1.0), (5.0, 4.1), (3.9, 2.7), (4.4, 3.9), (2.8, 1.8), (3.6, 2.2)];
/// CUPED control arm: (y, x) pairs
pub(crate) const CUPED_C: [(f64, f64); 7] =
    [(2.5, 2.1), (3.0, 3.0), (1.9, 0.9), (4.1, 4.4), (3.3, 2.5), (2.1, 1.2), (3.8, 3.6)];
/// statsmodels OLS(y ~ 1 + treatment + x).params['treatment']
pub(crate) const CUPED_DIFF: f64 = 0.6049824757049582;
/// statsmodels OLS(y ~ 1 + treatment + x).params['x']
pub(crate) const CUPED_THETA: f64 = 0.7236737294886078;
/// numpy: CUPED difference / sqrt(var(y_t - theta x_t)/n_t + var(y_c - theta x_c)/n_c)
pub(crate) const CUPED_Z: f64 = 5.091100289994146;
/// scipy: 2 * norm.sf(|CUPED_Z|)
pub(crate) const CUPED_P: f64 = 3.559916605199922e-07;
/// numpy: 1 - adjusted variance / raw variance of the difference
pub(crate) const CUPED_REDUCTION: f64 = 0.9310947101203186;
/// scipy quad: posterior [mean, sd, P(L > 0), E[max(-L, 0)]] of the lift, prior GAUSS_FLAT, pc=0.1 pt=0.12 n=1000
pub(crate) const GAUSS_FLAT: [f64; 4] = [0.2, 0.1533623161014465, 0.9039004818067538, 0.006921607912677942];
/// scipy quad: posterior [mean, sd, P(L > 0), E[max(-L, 0)]] of the lift, prior GAUSS_NORMAL_01, pc=0.1 pt=0.12 n=1000
pub(crate) const GAUSS_NORMAL_01: [f64; 4] =
    [0.05966587112171837, 0.08376578325255535, 0.7618586539532972, 0.011721194209291361];
