// The elastic train group (pool.elastic.resize; docs/controller.md, "Elastic train group"):
// at an optimizer-step boundary the controller measures, asks the split policy
// (scheduler/elastic_policy.h) or follows pool.elastic.plan, and when devices move runs the
// two-phase hand-off:
//   save  the old group writes its sharded trainer state (masters, AdamW moments, step counters,
//         KL reference, learning rate) to <run_dir>/reshard/step-N, a collective over the old
//         communicator (TrainGroupSave);
//   join  every device of either group gets TrainGroupJoin: members build their trainer over the
//         new membership's communicator (cached per membership in each worker) from that state,
//         re-sliced to the new world size (trainer/reshard.h); devices that left drop theirs.
// Between the two phases the controller flips each moved device's side (pool home, train rank,
// relay target), records the move in the tag timeline and re-orders dispatch. No train step
// starts while a resize runs; rollout goes on (a joining device's unfinished groups stay in its
// engine and continue when it is lent to rollout again, as for any train-group device).
#include "core/remove_tree.h"
#include "scheduler/controller_internal.h"

namespace tidal::scheduler::detail {

namespace {

bool Contains(const std::vector<int>& v, int d) { return std::find(v.begin(), v.end(), d) != v.end(); }

std::vector<int> Union(const std::vector<int>& a, const std::vector<int>& b) {
  std::vector<int> out = a;
  for (int d : b) {
    if (!Contains(out, d)) out.push_back(d);
  }
  std::sort(out.begin(), out.end());
  return out;
}

json Members(const std::vector<int>& v) { return json(v); }

}  // namespace

bool Controller::ResizeEnabled() const {
  return recipe_.pool.elastic.resize && std::holds_alternative<ElasticPolicy>(policy_);
}

std::string Controller::MembershipName(const std::vector<int>& members) const {
  std::string name = absl::StrCat(comm_group_, ".m");
  for (size_t i = 0; i < members.size(); ++i) {
    const int d = members[i];
    absl::StrAppend(&name, i > 0 ? "_" : "", d);
    // A restarted device has an empty communicator cache: the membership needs a fresh name.
    if (d < workers_.size() && workers_[d].restarts > 0) absl::StrAppend(&name, "r", workers_[d].restarts);
  }
  return name;
}

void Controller::MeasureStep(double step_seconds) {
  if (!ResizeEnabled()) return;
  const double now = Now();
  // Device-seconds normalised to one rank's efficiency (the policy's model divides the per-device
  // rate by scaling^(n-1) for n ranks), so the rate does not depend on the split it was taken at.
  const double n = static_cast<double>(std::max<size_t>(1, train_group_.size()));
  const double train_device_seconds = step_seconds * n * std::pow(elastic_.scaling, n - 1);
  train_meter_.Observe(static_cast<double>(batch_tokens_now_), train_device_seconds);
  batch_tokens_ = batch_tokens_ <= 0 ? static_cast<double>(batch_tokens_now_)
                                     : 0.3 * static_cast<double>(batch_tokens_now_) + 0.7 * batch_tokens_;
  // Rollout: tokens finished since the last step over the device-seconds spent rolling out.
  pool_.Advance(now);
  const double busy = pool_.Total().busy[static_cast<int>(Tag::kRollout)];
  const double rollout_tokens = static_cast<double>(acct_.rollout_tokens - meter_tokens_);
  const double rollout_device_seconds = busy - meter_rollout_busy_;
  rollout_meter_.Observe(rollout_tokens, rollout_device_seconds);
  WriteElasticTraceRow(train_device_seconds, rollout_tokens, rollout_device_seconds);
  meter_tokens_ = acct_.rollout_tokens;
  meter_rollout_busy_ = busy;
  if (metrics_) {
    metrics_->Set("tidal_elastic_train_rate", {}, train_meter_.rate());
    metrics_->Set("tidal_elastic_rollout_rate", {}, rollout_meter_.rate());
  }
}

void Controller::WriteElasticTraceRow(double train_device_seconds, double rollout_tokens,
                                      double rollout_device_seconds) {
  if (!elastic_trace_.is_open()) {
    const fs::path path = fs::path(run_dir_) / "elastic_trace.csv";
    std::error_code ec;
    const bool fresh = !recipe_.checkpoint.resume || !fs::exists(path, ec);
    elastic_trace_.open(path, fresh ? std::ios::trunc : std::ios::app);
    if (fresh) {
      elastic_trace_ << "step,train_tokens,train_device_seconds,rollout_tokens,rollout_device_seconds,"
                        "batch_tokens,queued_tokens,dispatchable,loads\n";
    }
  }
  std::string loads;
  for (int d = 0; d < pool_.size(); ++d) absl::StrAppend(&loads, d > 0 ? ";" : "", workers_[d].rollout_load());
  elastic_trace_ << absl::StrFormat("%d,%d,%.9g,%.9g,%.9g,%.9g,%.9g,%d,%s\n", steps_done_, batch_tokens_now_,
                                    train_device_seconds, rollout_tokens, rollout_device_seconds, batch_tokens_,
                                    QueuedTokens(), Dispatchable(), loads);
  elastic_trace_.flush();
}

double Controller::QueuedTokens() const {
  return static_cast<double>(store_.size()) * batch_tokens_ /
         static_cast<double>(std::max<int64_t>(1, recipe_.train.prompts_per_step));
}

int Controller::Dispatchable() const {
  return RlRoom() + (eval_ ? static_cast<int>(eval_->queued.size()) : 0);
}

void Controller::MaybeResize() {
  if (!ResizeEnabled() || resize_ || rl_started_ <= 0 || finishing_ || stopping_ || train_running_) return;
  if (steps_done_ >= recipe_.train.steps || steps_done_ <= resize_checked_step_) return;
  // A checkpoint (or anything else) still running on the group: decide once it is done.
  if (workers_.AnyTrainRankBusy()) return;
  for (const auto& w : workers_) {
    if (w.state != WorkerSlot::State::kReady) return;  // a restarting device: next boundary
  }
  resize_checked_step_ = steps_done_;

  SplitInputs in;
  in.devices = pool_.size();
  in.train = train_group_;
  for (int d = 0; d < pool_.size(); ++d) in.rollout_load.push_back(workers_[d].rollout_load());
  in.dispatchable = Dispatchable();
  in.batch_tokens = batch_tokens_;
  in.queued_tokens = QueuedTokens();
  in.rollout_rate = rollout_meter_.rate();
  in.train_rate = train_meter_.rate();

  SplitDecision decision;
  if (!plan_.empty()) {
    while (plan_next_ < plan_.size() && plan_[plan_next_].first < steps_done_) ++plan_next_;  // resumed past it
    if (plan_next_ >= plan_.size() || plan_[plan_next_].first != steps_done_) return;
    decision = SplitTo(elastic_, in, static_cast<int>(plan_[plan_next_++].second), "plan");
    decision.reason = decision.moves.empty() ? "" : "plan";
  } else {
    if (!train_meter_.ready() || !rollout_meter_.ready()) return;
    decision = ChooseSplit(elastic_, in);
  }
  if (decision.moves.empty()) return;

  GroupResize r;
  r.from = train_group_;
  r.to = decision.train;
  r.moves = decision.moves;
  r.reason = decision.reason;
  r.period_now = decision.period_now;
  r.period_new = decision.period_new;
  r.started = Now();
  r.dir = (fs::path(run_dir_) / "reshard" / absl::StrCat("step-", steps_done_)).string();
  r.replies = static_cast<int>(r.from.size());
  TIDAL_LOG(INFO) << "train group " << Members(r.from).dump() << " -> " << Members(r.to).dump() << " at step "
                  << steps_done_ << " (" << r.reason << "; predicted period " << r.period_now << " s -> "
                  << r.period_new << " s)";
  for (int d : r.from) {
    workers_[d].train_ops++;
    SendTo(d, TrainGroupSave{steps_done_, r.dir});
  }
  resize_ = std::move(r);
}

void Controller::OnTrainGroupSaved(int device, const TrainGroupSaved& m) {
  if (!resize_ || resize_->phase != GroupResize::Phase::kSave || !Contains(resize_->from, device)) {
    TIDAL_LOG(WARN) << "unexpected TrainGroupSaved from device " << device;
    return;
  }
  if (!m.error.empty()) {
    return Fatal(absl::InternalError(
        absl::StrCat("elastic resize at step ", m.step, ": device ", device, " could not save its train state: ", m.error)));
  }
  if (--resize_->replies > 0) return;
  GroupResize& r = *resize_;
  // A joining device that went down meanwhile cannot take a rank: the old group re-forms from the
  // state it just saved (its communicator is cached, nothing is lost) and the next boundary
  // decides again.
  for (const Move& mv : r.moves) {
    if (mv.to == Tag::kTrain && workers_[mv.device].state != WorkerSlot::State::kReady) {
      TIDAL_LOG(WARN) << "device " << mv.device << " went down before joining the train group; keeping "
                      << Members(r.from).dump();
      r.to = r.from;
      r.moves.clear();
      break;
    }
  }
  const double now = Now();
  for (const Move& mv : r.moves) {
    const int d = mv.device;
    pool_.SetHome(d, mv.to);
    if (mv.to == Tag::kRollout) {
      // It served the version it trained (it installed it itself); the relay takes over from here.
      workers_[d].train_rank = -1;
      workers_[d].relayed_version = std::max(workers_[d].relayed_version, version_);
    }
  }
  train_group_ = r.to;
  for (size_t i = 0; i < train_group_.size(); ++i) workers_[train_group_[i]].train_rank = static_cast<int>(i);
  if (bcast_) {
    // Devices that moved into the train group leave the broadcast group (they install their own
    // copy); rank 0 may have moved; engine devices that left it receive from now on (they serve
    // the version they trained, so nothing is owed to them).
    SendBroadcast(bcast_->SetTrainGroup(train_group_));
    for (const Move& mv : r.moves) {
      if (mv.to == Tag::kRollout && workers_[mv.device].state == WorkerSlot::State::kReady &&
          HostsEngine(policy_, Tag::kRollout)) {
        SendBroadcast(bcast_->ReceiverReady(mv.device, -1));
      }
    }
  }
  dispatch_order_ = DispatchOrder(pool_);
  for (const Move& mv : r.moves) {
    const std::string name = pool_.device(mv.device).slot.Name();
    timeline_.Record({now, steps_done_, mv.device, name, mv.from, mv.to, mv.reason, train_group_});
    if (metrics_) {
      metrics_->Add("tidal_tag_moves_total",
                    {{"device", name}, {"from", TagName(mv.from)}, {"to", TagName(mv.to)}, {"reason", mv.reason}}, 1);
    }
  }
  r.comm_group = MembershipName(train_group_);
  std::string nccl_id;
  if (recipe_.pool.device_set.kind == DeviceSet::Kind::kCuda && train_group_.size() > 1) {
    auto it = nccl_ids_.find(r.comm_group);
    if (it == nccl_ids_.end()) {
      absl::StatusOr<std::string> id = NewNcclUniqueId();
      if (!id.ok()) return Fatal(id.status());
      it = nccl_ids_.emplace(r.comm_group, NcclIdToHex(*id)).first;
    }
    nccl_id = it->second;
  }
  r.phase = GroupResize::Phase::kJoin;
  const std::vector<int> all = Union(r.from, r.to);
  r.replies = static_cast<int>(all.size());
  for (int d : all) {
    workers_[d].train_ops++;
    SendTo(d, TrainGroupJoin{steps_done_, train_group_, r.comm_group, nccl_id, r.dir});
  }
}

void Controller::OnTrainGroupJoined(int device, const TrainGroupJoined& m) {
  if (!resize_ || resize_->phase != GroupResize::Phase::kJoin) {
    TIDAL_LOG(WARN) << "unexpected TrainGroupJoined from device " << device;
    return;
  }
  if (!m.error.empty()) {
    return Fatal(absl::InternalError(absl::StrCat("elastic resize at step ", m.step, ": device ", device,
                                                  " could not join train group ", resize_->comm_group, ": ", m.error)));
  }
  const int want = Contains(resize_->to, device) ? workers_[device].train_rank : -1;
  if (m.rank != want) {
    return Fatal(absl::InternalError(absl::StrCat("elastic resize: device ", device, " took rank ", m.rank,
                                                  "; the controller expected ", want)));
  }
  if (--resize_->replies > 0) return;
  GroupResize& r = *resize_;
  const double secs = Now() - r.started;
  if (!r.moves.empty()) {
    ++resizes_;
    resize_seconds_ += secs;
  }
  train_group_min_ = std::min<int>(train_group_min_, static_cast<int>(train_group_.size()));
  train_group_max_ = std::max<int>(train_group_max_, static_cast<int>(train_group_.size()));
  json moves = json::array();
  for (const Move& mv : r.moves) {
    moves.push_back({{"device", mv.device}, {"from", TagName(mv.from)}, {"to", TagName(mv.to)}});
  }
  WriteEvent({{"event", "train_group_resize"}, {"step", steps_done_}, {"from", Members(r.from)},
              {"to", Members(r.to)}, {"reason", r.reason}, {"moves", moves}, {"seconds", secs},
              {"predicted_period_s", {r.period_now, r.period_new}}, {"wall", Now()}});
  if (metrics_) {
    metrics_->Set("tidal_train_group_size", {}, static_cast<double>(train_group_.size()));
    metrics_->Observe("tidal_train_group_resize_seconds", {}, secs);
  }
  TIDAL_LOG(INFO) << "train group is " << Members(train_group_).dump() << " (" << r.comm_group << ") after "
                  << secs << " s";
  // The hand-off state has served its purpose (the group's checkpoints are separate).
  if (absl::Status s = RemoveTree(r.dir); !s.ok()) TIDAL_LOG(WARN) << "removing " << r.dir << ": " << s;
  ::rmdir(fs::path(r.dir).parent_path().c_str());  // <run_dir>/reshard, once empty (fails otherwise: fine)
  resize_.reset();
}

}  // namespace tidal::scheduler::detail
