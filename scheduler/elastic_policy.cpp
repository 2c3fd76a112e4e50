#include "scheduler/elastic_policy.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace tidal::scheduler {

void RateMeter::Observe(double tokens, double device_seconds) {
  if (device_seconds <= 0 || tokens < 0 || !std::isfinite(tokens) || !std::isfinite(device_seconds)) return;
  const double r = tokens / device_seconds;
  rate_ = samples_ == 0 ? r : alpha_ * r + (1 - alpha_) * rate_;
  ++samples_;
}

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

int MaxTrain(const ElasticOptions& o, int devices) {
  int hi = devices - std::max(0, o.min_rollout);
  if (o.max_train > 0) hi = std::min(hi, o.max_train);
  return std::max(hi, std::min(std::max(1, o.min_train), devices));
}

int MinTrain(const ElasticOptions& o, int devices) { return std::min(std::max(1, o.min_train), devices); }

int Load(const SplitInputs& in, int d) {
  return d < static_cast<int>(in.rollout_load.size()) ? in.rollout_load[d] : 0;
}

}  // namespace

double PredictPeriod(const ElasticOptions& o, const SplitInputs& in, int n) {
  if (in.train_rate <= 0 || in.rollout_rate <= 0 || in.batch_tokens <= 0) return 0;
  const double t_train = n <= 0 ? kInf : in.batch_tokens / (in.train_rate * n * std::pow(o.scaling, n - 1));
  const double need = std::max(0.0, in.batch_tokens - in.queued_tokens) / in.rollout_rate;  // device-s
  const int r = in.devices - n;
  double t_roll = 0;
  if (need > 0 && o.lend) {
    t_roll = (need + n * t_train) / in.devices;
  } else if (need > 0) {
    t_roll = r <= 0 ? kInf : need / r;
  }
  return std::max(t_train, t_roll);
}

SplitDecision ChooseSplit(const ElasticOptions& o, const SplitInputs& in) {
  SplitDecision out;
  std::vector<int> cur = in.train;
  std::sort(cur.begin(), cur.end());
  out.train = cur;
  const int n_now = static_cast<int>(cur.size());
  const int lo = MinTrain(o, in.devices), hi = MaxTrain(o, in.devices);
  int target = n_now;
  std::string reason;

  out.period_now = PredictPeriod(o, in, n_now);
  if (n_now < lo || n_now > hi) {
    target = std::clamp(n_now, lo, hi);
    reason = "bounds";
  } else if (out.period_now > 0) {
    // Best split by the model; ties go to the split closest to the current one.
    int best = n_now;
    double best_p = out.period_now;
    for (int n = lo; n <= hi; ++n) {
      const double p = PredictPeriod(o, in, n);
      if (p < best_p || (p == best_p && std::abs(n - n_now) < std::abs(best - n_now))) {
        best = n;
        best_p = p;
      }
    }
    const double gain = out.period_now - best_p;
    if (best != n_now && gain * std::max(1, o.horizon_steps) > o.switch_cost_s * std::abs(best - n_now) &&
        gain > o.hysteresis * out.period_now) {
      target = best;
      reason = best > n_now ? "train_bound" : "rollout_bound";
    }
  }
  // Long tail: idle rollout devices with nothing left to dispatch join training now.
  if (in.dispatchable == 0) {
    int idle = 0;
    for (int d = 0; d < in.devices; ++d) {
      if (!std::binary_search(cur.begin(), cur.end(), d) && Load(in, d) == 0) ++idle;
    }
    const int tail_target = std::min(hi, n_now + idle);
    if (idle > 0 && tail_target > target) {
      target = tail_target;
      reason = "long_tail";
    }
  }
  if (target == n_now) {
    out.period_new = out.period_now;
    return out;
  }
  SplitDecision moved = SplitTo(o, in, target, reason);
  moved.period_now = out.period_now;
  return moved;
}

SplitDecision SplitTo(const ElasticOptions& o, const SplitInputs& in, int target, const std::string& reason) {
  SplitDecision out;
  std::vector<int> cur = in.train;
  std::sort(cur.begin(), cur.end());
  const int n_now = static_cast<int>(cur.size());
  target = std::clamp(target, MinTrain(o, in.devices), MaxTrain(o, in.devices));
  out.train = cur;
  out.period_now = PredictPeriod(o, in, n_now);
  if (target == n_now) {
    out.period_new = out.period_now;
    return out;
  }
  std::vector<int> next = cur;
  if (target > n_now) {
    std::vector<int> cand;
    for (int d = 0; d < in.devices; ++d) {
      if (!std::binary_search(cur.begin(), cur.end(), d)) cand.push_back(d);
    }
    std::stable_sort(cand.begin(), cand.end(), [&](int a, int b) { return Load(in, a) < Load(in, b); });
    for (int i = 0; i < target - n_now && i < static_cast<int>(cand.size()); ++i) {
      next.push_back(cand[i]);
      out.moves.push_back({cand[i], Tag::kRollout, Tag::kTrain, reason});
    }
  } else {
    for (int i = 0; i < n_now - target; ++i) {
      out.moves.push_back({next.back(), Tag::kTrain, Tag::kRollout, reason});
      next.pop_back();
    }
  }
  std::sort(next.begin(), next.end());
  out.train = next;
  out.reason = reason;
  out.period_new = PredictPeriod(o, in, static_cast<int>(next.size()));
  return out;
}

}  // namespace tidal::scheduler
