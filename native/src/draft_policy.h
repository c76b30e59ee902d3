// Cost-aware draft length: choose k to maximise expected committed tokens per unit of time.
// Pure (no ORT types); the engine feeds it what it observes at each step.
//
// Acceptance is kept per draft class (Drafter::draft_class: e.g. the prompt-lookup match
// length): a 6-token match is right far more often than a 1-token one, so it earns a longer
// draft. A class's estimate borrows from the pooled estimate of all classes until it has data.
//
// Model. Let a_i = P(draft i accepted | drafts 1..i-1 accepted) (estimated per position, since
// prompt-lookup drafts tend to be all right or wrong at once), and c(w) = time of a target
// forward of width w relative to width 1, d = drafting time per token relative to width 1.
// A step with k drafts commits E(k) = 1 + sum_{j=1..k} prod_{i<=j} a_i tokens (the correction
// or bonus token always commits) and costs C(k) = c(k + 1) + k d. Plain decoding is k = 0,
// E = 1, C = 1. Choose argmax_k E(k) / C(k).
#pragma once

#include <vector>

namespace edgespec {

// argmax over k in [0, k_max] of E(k) / C(k). accept[i] = a_{i+1} (size >= k_max);
// cost[w] = c(w) for w in [1, k_max + 1] (size >= k_max + 2; cost[0] unused).
int choose_draft_length(const double* accept, const double* cost, int k_max, double draft_cost);

// Draft classes a policy tells apart (Drafter::draft_class is clamped to this range).
constexpr int kDraftClasses = 17;

class DraftPolicy {
 public:
  // A new generation: k_max is its largest draft length; prior_accept is a_i before any
  // observation. Measured times are kept (they belong to the model and the machine), and used
  // only when `use_times`: a sampled generation must not depend on timings, or the same seed
  // would give different tokens (the sample path depends on k), so it uses the priors.
  // Acceptance counts carry over from the previous generation when both use times (greedy) with
  // the same k_max and prior: a class's acceptance belongs to the drafter and the model more than
  // to one prompt, and a 256-token answer is ~100 steps spread over up to 17 classes, so a fresh
  // start spends many of them relearning (the EMA still forgets old prompts within ~10 steps of
  // a class). A sampled generation starts from the prior, and so does the greedy one after it:
  // its draft lengths, hence its tokens, must not depend on earlier generations.
  void reset_acceptance(int k_max, double prior_accept, bool use_times);
  // Prior drafting cost per token relative to a target step (e.g. the draft/target weight
  // bytes: decoding is memory-bound); used until measured, and always when !use_times.
  void set_prior_draft_cost(double d) { prior_draft_cost_ = d; }
  // Forgets measured times too; draft lengths up to k_limit can then be tracked.
  void reset_costs(int k_limit);
  // One step of draft class cls (-1: nothing was proposed): n_draft proposed on the main chain,
  // n_accept of them accepted, the verify forward of `width` rows (n_draft + 1 for a chain; a
  // tree's extra branches widen it) took t_verify seconds, drafting took t_draft seconds.
  void observe(int cls, int n_draft, int n_accept, int width, double t_verify, double t_draft);
  // Draft length for the next step of class cls, in [0, k_max]; every kExplore-th consecutive
  // k = 0 choice returns 1 so the acceptance estimate keeps learning.
  int choose(int cls);

 private:
  static constexpr double kDecay = 0.9;      // EMA factor of a class's counts per step of it
  static constexpr double kPriorWeight = 2;  // pseudo-observations behind the prior
  static constexpr int kExplore = 8;
  // A verify sample counts for at most this many times the width's current estimate: measured
  // costs of widths the policy stops choosing are never refreshed, so one slow forward (the OS,
  // a page fault) must not price a width out for good.
  static constexpr double kMaxJump = 2.0;

  double width1_seconds() const;                     // 0 = nothing measured (or !use_times_)
  double cost_of(int width, double width1_s) const;  // c(width), measured or interpolated
  void estimate_acceptance(int cls);                 // accept_ from the counts
  double pooled(int cls, double toward) const;       // class cls's acceptance, shrunk to `toward`
  int k_max_ = 0;
  int k_limit_ = 0;               // row length of reached_ / accepted_
  std::vector<double> reached_;   // [kDraftClasses × k_limit]: EMA count of steps that drafted
                                  // position i+1 (row = class)
  std::vector<double> accepted_;  // [kDraftClasses × k_limit]: EMA count of those that accepted
  std::vector<double> t_width_;   // [k_limit + 2]: EMA verify seconds at width w (0 = unseen)
  std::vector<int> n_width_;      // [k_limit + 2]: forwards seen at width w; the first is a
                                  // warm-up (ORT plans and allocates for a new shape, and on
                                  // CUDA may pick kernels) and is not timed
  double t_draft_tok_ = 0;        // EMA drafting seconds per drafted token
  std::vector<double> accept_;    // [k_limit]: scratch a_i
  std::vector<double> cost_;      // [k_limit + 2]: scratch c(w)
  int zero_streak_ = 0;
  bool use_times_ = true;
  double prior_accept_ = 0.5;
  double prior_draft_cost_ = 0;
};

}  // namespace edgespec
