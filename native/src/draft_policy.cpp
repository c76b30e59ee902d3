#include "draft_policy.h"

#include <algorithm>

namespace edgespec {
namespace {

// Prior extra cost of one more token in a verify forward, relative to a width-1 forward, used
// only for widths not measured yet (measured here: fp32 ~0.03-0.04, int4 ~0.15).
constexpr double kPriorSlope = 0.05;
constexpr double kTimeDecay = 0.8;  // EMA factor of measured times

}  // namespace

int choose_draft_length(const double* accept, const double* cost, int k_max, double draft_cost) {
  int best_k = 0;
  double best = 1.0;  // k = 0: E = 1 token for C = 1
  double expected = 1.0;
  double reach = 1.0;  // prod_{i<=j} a_i: probability that draft j is accepted
  for (int k = 1; k <= k_max; ++k) {
    reach *= accept[k - 1];
    expected += reach;                              // E(k) = E(k-1) + prod_{i<=k} a_i
    const double c = cost[k + 1] + k * draft_cost;  // C(k) = c(k+1) + k d
    if (expected / c > best) {
      best = expected / c;
      best_k = k;
    }
  }
  return best_k;
}

void DraftPolicy::reset_acceptance(int k_max, double prior_accept, bool use_times) {
  if (k_max + 2 > static_cast<int>(t_width_.size())) reset_costs(k_max);
  const bool carry = use_times && use_times_ && k_max == k_max_ && prior_accept == prior_accept_;
  k_max_ = k_max;
  use_times_ = use_times;
  prior_accept_ = prior_accept;
  zero_streak_ = 0;
  if (carry) return;  // greedy after greedy: keep what the classes showed
  std::fill(reached_.begin(), reached_.end(), 0.0);
  std::fill(accepted_.begin(), accepted_.end(), 0.0);
}

void DraftPolicy::reset_costs(int k_limit) {
  k_max_ = std::min(k_max_, k_limit);
  k_limit_ = k_limit;
  t_width_.assign(k_limit + 2, 0.0);
  n_width_.assign(k_limit + 2, 0);
  t_draft_tok_ = 0;
  accept_.assign(k_limit, 0.0);
  cost_.assign(k_limit + 2, 1.0);
  reached_.assign(static_cast<size_t>(kDraftClasses) * k_limit, 0.0);
  accepted_.assign(static_cast<size_t>(kDraftClasses) * k_limit, 0.0);
}

void DraftPolicy::observe(int cls, int n_draft, int n_accept, int width, double t_verify,
                          double t_draft) {
  n_draft = std::min(n_draft, k_max_);
  if (cls >= 0 && n_draft > 0) {
    double* reached = reached_.data() + static_cast<size_t>(cls) * k_limit_;
    double* accepted = accepted_.data() + static_cast<size_t>(cls) * k_limit_;
    // Position i (0-based) was reached when drafts 0..i-1 were all accepted.
    for (int i = 0; i < k_max_; ++i) {
      reached[i] *= kDecay;
      accepted[i] *= kDecay;
    }
    for (int i = 0; i < n_draft && i <= n_accept; ++i) {
      reached[i] += 1;
      if (i < n_accept) accepted[i] += 1;
    }
  }
  if (width < 1 || width >= static_cast<int>(t_width_.size())) return;  // beyond k_limit + 1
  if (n_width_[width]++ == 0) return;  // a new shape's first forward: warm-up, not timed
  double& t = t_width_[width];
  const double sample = t == 0 ? t_verify : std::min(t_verify, kMaxJump * t);
  t = t == 0 ? sample : kTimeDecay * t + (1 - kTimeDecay) * sample;
  if (n_draft > 0) {
    const double per_token = t_draft / n_draft;
    t_draft_tok_ =
        t_draft_tok_ == 0 ? per_token : kTimeDecay * t_draft_tok_ + (1 - kTimeDecay) * per_token;
  }
}

// Seconds of a width-1 verify: measured, or inferred from the smallest measured width with the
// prior slope; 0 when no width up to k_max + 1 has been measured (or times are not used).
double DraftPolicy::width1_seconds() const {
  if (!use_times_) return 0;
  for (int w = 1; w <= k_max_ + 1; ++w) {
    if (t_width_[w] > 0) return t_width_[w] / (1.0 + kPriorSlope * (w - 1));
  }
  return 0;
}

// c(width) = time(width) / width1_seconds(), so c(1) = 1. Unmeasured widths are interpolated
// between measured neighbours, or extrapolated with the prior slope.
double DraftPolicy::cost_of(int width, double width1_s) const {
  if (width1_s == 0) return 1.0 + kPriorSlope * (width - 1);
  int lo = 0, hi = 0;  // nearest measured widths below / above (0 = none)
  for (int w = width; w >= 1 && lo == 0; --w) lo = t_width_[w] > 0 ? w : 0;
  for (int w = width; w <= k_max_ + 1 && hi == 0; ++w) hi = t_width_[w] > 0 ? w : 0;
  if (lo == width) return t_width_[width] / width1_s;
  if (lo != 0 && hi != 0) {
    const double f = static_cast<double>(width - lo) / (hi - lo);
    return ((1 - f) * t_width_[lo] + f * t_width_[hi]) / width1_s;
  }
  if (lo != 0) return t_width_[lo] / width1_s + kPriorSlope * (width - lo);
  return std::max(1.0, t_width_[hi] / width1_s - kPriorSlope * (hi - width));
}

// Acceptance over all positions of class cls (all classes when cls < 0), shrunk towards
// `toward` by kPriorWeight pseudo-observations.
double DraftPolicy::pooled(int cls, double toward) const {
  const int lo = cls < 0 ? 0 : cls, hi = cls < 0 ? kDraftClasses : cls + 1;
  double reached = kPriorWeight, accepted = kPriorWeight * toward;
  for (int c = lo; c < hi; ++c) {
    for (int i = 0; i < k_max_; ++i) {
      reached += reached_[static_cast<size_t>(c) * k_limit_ + i];
      accepted += accepted_[static_cast<size_t>(c) * k_limit_ + i];
    }
  }
  return accepted / reached;
}

// a_i of class cls: position i's own counts, shrunk towards the class's pooled acceptance, itself
// shrunk towards all classes' pooled acceptance (shrunk towards the prior). Positions and classes
// with few observations borrow what the others show instead of staying at the prior.
void DraftPolicy::estimate_acceptance(int cls) {
  const double class_rate = pooled(cls, pooled(-1, prior_accept_));
  const double* reached = reached_.data() + static_cast<size_t>(cls) * k_limit_;
  const double* accepted = accepted_.data() + static_cast<size_t>(cls) * k_limit_;
  for (int i = 0; i < k_max_; ++i) {
    accept_[i] = (accepted[i] + kPriorWeight * class_rate) / (reached[i] + kPriorWeight);
  }
}

int DraftPolicy::choose(int cls) {
  estimate_acceptance(cls);
  const double width1_s = width1_seconds();
  for (int w = 1; w <= k_max_ + 1; ++w) cost_[w] = cost_of(w, width1_s);
  const bool measured = width1_s > 0 && t_draft_tok_ > 0;
  const double draft_cost = measured ? t_draft_tok_ / width1_s : prior_draft_cost_;
  const int k = choose_draft_length(accept_.data(), cost_.data(), k_max_, draft_cost);
  if (k > 0) {
    zero_streak_ = 0;
    return k;
  }
  return ++zero_streak_ % kExplore == 0 && k_max_ > 0 ? 1 : 0;
}

}  // namespace edgespec
