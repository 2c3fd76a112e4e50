// The elastic split: how many devices train and which, decided at each train-step boundary from
// measured throughput (issue #16). Pure logic, no I/O, no clock: the controller feeds it what it
// measured and applies the moves it returns (recording each in the tag timeline).
//
// Model. With n devices in the train group and N - n rolling out, one step takes
//   T_train(n) = B / (train_rate * n * scaling^(n-1))           (B: tokens of one train batch)
// and the next batch needs R = max(0, B - Q) / rollout_rate device-seconds of rollout (Q:
// finished tokens already queued). Train members roll out while they do not train (the tag
// policy lends them, see tag_policy.h), so over a period P rollout gets (N - n) * P + n * (P -
// T_train) device-seconds, and
//   period(n) = max(T_train(n), (R + n * T_train(n)) / N)
// The best split makes the current step's training and the next batch's rollout finish
// together; with no train member able to lend (lend = false) the rollout term is R / (N - n). Rates are per device (tokens/s), exponential moving averages over steps (RateMeter),
// so one noisy step does not move devices. Q already holds whatever the staleness gate let
// rollout run ahead: when the queue covers the next batch, rollout needs no device at all.
//
// A resize is taken only when it pays: the predicted period gain over the next horizon_steps
// steps must exceed switch_cost_s per moved device, AND the gain must exceed `hysteresis` of the
// current period (so tags do not flap between two near-equal splits). Bounds [min_train, max_train] and min_rollout always
// hold (a violated bound is repaired first, reason "bounds").
//
// Long tail: once every prompt of the next batch is dispatched (dispatchable == 0), a rollout
// device with nothing in flight cannot help rollout finish sooner; it joins training at this
// boundary whatever the rates say (reason "long_tail"), and the balance rule takes it back later.
//
// Which devices: growing takes the rollout devices with the fewest groups in flight (idle ones
// first, then lower index); shrinking releases the highest-indexed members, so the lowest device
// stays train rank 0 (it publishes weights) and every new membership shares a device with the
// old one (the optimizer state hand-off needs a surviving member).
//
// Threads: none; plain values.
#pragma once

#include <string>
#include <vector>

#include "scheduler/device_pool.h"

namespace tidal::scheduler {

struct ElasticOptions {
  int min_train = 1;
  int max_train = 0;        // 0: every device but min_rollout
  int min_rollout = 0;      // devices that never join the train group
  double switch_cost_s = 0.5;   // cost of moving one device in or out (pause/resume, re-shard)
  int horizon_steps = 20;       // steps a resize's gain is counted over against its cost
  double hysteresis = 0.10;     // minimum relative period gain for a resize
  double scaling = 0.95;        // train efficiency factor per extra rank (gradient communication)
  bool lend = true;             // train members roll out between steps (elastic); false: never
};

// Exponential moving average of tokens per device-second.
class RateMeter {
 public:
  explicit RateMeter(double alpha = 0.3) : alpha_(alpha) {}
  // `device_seconds`: busy seconds summed over the devices that produced `tokens`.
  void Observe(double tokens, double device_seconds);
  bool ready() const { return samples_ > 0; }
  double rate() const { return rate_; }
  int samples() const { return samples_; }

 private:
  double alpha_;
  double rate_ = 0;
  int samples_ = 0;
};

struct SplitInputs {
  int devices = 0;
  std::vector<int> train;          // current members (device indices)
  std::vector<int> rollout_load;   // per device: groups in flight on it (rollout work)
  int dispatchable = 0;            // groups the staleness gate and supply still allow
  double batch_tokens = 0;         // tokens of one train batch (moving average)
  double queued_tokens = 0;        // finished tokens in the store (toward the next batch)
  double rollout_rate = 0;         // tokens/s per rollout device
  double train_rate = 0;           // tokens/s per train device
};

struct Move {
  int device = 0;
  Tag from = Tag::kRollout, to = Tag::kTrain;
  std::string reason;  // train_bound | rollout_bound | long_tail | bounds | plan
};

struct SplitDecision {
  std::vector<int> train;  // new members, ascending
  std::vector<Move> moves;
  double period_now = 0, period_new = 0;  // predicted step periods (s); 0 when rates are unknown
  std::string reason;                     // "" when the group stays
};

// Predicted period of a split with `n` train devices (infinite when a side has no device and work).
double PredictPeriod(const ElasticOptions& o, const SplitInputs& in, int n);

SplitDecision ChooseSplit(const ElasticOptions& o, const SplitInputs& in);

// The group resized to `target` devices (clamped to the bounds) with ChooseSplit's choice of
// devices, every move labelled `reason` (pool.elastic.plan uses it with "plan").
SplitDecision SplitTo(const ElasticOptions& o, const SplitInputs& in, int target, const std::string& reason);

}  // namespace tidal::scheduler
