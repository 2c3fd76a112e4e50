#include "scheduler/controller_internal.h"

namespace tidal::scheduler::detail {

void Controller::UpdateBusy() {
  double now = Now();
  for (int d = 0; d < pool_.size(); ++d) {
    const WorkerSlot& w = workers_[d];
    bool busy = pool_.device(d).tag == Tag::kRollout
                    ? !(w.rl.empty() && w.eval.empty()) || w.agent_calls > 0
                    : w.train_ops > 0;
    if (w.state != WorkerSlot::State::kReady) busy = false;
    pool_.SetBusy(d, busy, now);
    // The timeline's state: work of the other tag still draining (paused groups, a checkpoint)
    // under the new tag is a switch in progress.
    const bool train_tag = pool_.device(d).tag == Tag::kTrain;
    const bool other_work = train_tag ? !(w.rl.empty() && w.eval.empty()) || w.agent_calls > 0 : w.train_ops > 0;
    const char* state = w.state != WorkerSlot::State::kReady ? "down"
                        : other_work                         ? "switching"
                        : busy                               ? (train_tag ? "train" : "rollout")
                                                             : "idle";
    if (telemetry_) telemetry_->DeviceState(pool_.device(d).slot.Name(), state, now);
  }
}

void Controller::ApplyPolicy() {
  PolicyInputs in;
  int dispatchable = RlRoom();
  if (eval_) dispatchable += static_cast<int>(eval_->queued.size());
  in.dispatchable_groups = dispatchable;
  in.batch_ready = !train_running_ && store_.size() >= recipe_.train.prompts_per_step &&
                   steps_done_ < recipe_.train.steps;
  // Warm-up, publishing, checkpoints and exports are train work too.
  in.train_running = train_running_ || workers_.AnyTrainRankBusy();
  in.warmup = warming_up_;
  for (int d = 0; d < pool_.size(); ++d) {
    // An agent call counts like a group: the device has rollout work while it holds one.
    in.devices.push_back({pool_.device(d).home, pool_.device(d).tag,
                          static_cast<int>(workers_[d].rl.size() + workers_[d].eval.size() +
                                           workers_[d].agent_calls)});
  }
  std::vector<Tag> want = DecideTags(policy_, in);
  double now = Now();
  for (int d = 0; d < pool_.size(); ++d) {
    if (want[d] == pool_.device(d).tag) continue;
    // Only a device that hosts an engine can be lent to rollout.
    if (want[d] == Tag::kRollout && !workers_[d].hosts_engine) continue;
    const Tag from = pool_.device(d).tag;
    pool_.SetTag(d, want[d], now);
    SendTo(d, SetTag{want[d]});
    const char* reason = MoveReason(policy_, want[d]);
    timeline_.Record({now, steps_done_, d, pool_.device(d).slot.Name(), from, want[d], reason, {}});
    if (metrics_) {
      metrics_->Add("tidal_tag_moves_total",
                    {{"device", pool_.device(d).slot.Name()}, {"from", TagName(from)}, {"to", TagName(want[d])},
                     {"reason", reason}},
                    1);
    }
    TIDAL_LOG(DEBUG) << "device " << d << " -> " << TagName(want[d]) << " (" << reason << ")";
  }
  if (metrics_) {
    metrics_->Set("tidal_policy_dispatchable_groups", {}, in.dispatchable_groups);
    metrics_->Set("tidal_policy_batch_ready", {}, in.batch_ready ? 1 : 0);
    metrics_->Set("tidal_policy_train_running", {}, in.train_running ? 1 : 0);
  }
}

int Controller::RlRoom() const {
  RoomInputs in;
  in.rl_running = rl_started_ > 0 && !stopping_ && !finishing_;
  in.sessions_only = recipe_.openai.sessions_only;
  in.prompts_per_step = recipe_.train.prompts_per_step;
  in.max_staleness = recipe_.rollout.max_staleness;
  in.steps = recipe_.train.steps;
  in.steps_done = steps_done_;
  in.outstanding = store_.size() + workers_.RlInFlight() + static_cast<int64_t>(training_batch_.size());
  return scheduler::RlRoom(in);
}

void Controller::DispatchEval() {
  if (!eval_ || eval_->queued.empty()) return;
  for (bool any = true; any && !eval_->queued.empty();) {
    any = false;
    for (int d = 0; d < pool_.size() && !eval_->queued.empty(); ++d) {
      WorkerSlot& w = workers_[d];
      if (!CanTakeWork(w, pool_.device(d).tag, eval_->version, Credit())) continue;
      int i = eval_->queued.front();
      eval_->queued.pop_front();
      const envs::Task& t = eval_tasks_[i];
      RolloutWork work;
      work.prompt_id = i;
      work.attempt = eval_->id;
      work.task_seed = t.seed;
      work.prompt = t.prompt;
      work.hidden = t.hidden;
      work.group_size = 1;
      work.eval = true;
      work.greedy = recipe_.eval.greedy;
      SendTo(d, work);
      w.eval.insert(i);
      any = true;
    }
  }
}

uint64_t Controller::RlTaskSeed(int64_t n) const {
  // Resumed runs draw from a fresh part of the seed stream.
  return TaskSeed(recipe_.seed, 1 + static_cast<uint64_t>(resume_step_), n);
}

void Controller::PollTasks() {
  for (TaskSource::Done& d : tasks_source_->TakeDone()) prefetched_.emplace(d.id, std::move(d.task));
  // Keep two steps' worth of resets ahead of dispatch, so rollout never waits on the plugin.
  const int64_t want = ledger_.created() + 2 * recipe_.train.prompts_per_step;
  for (; prefetch_requested_ < want; ++prefetch_requested_) {
    tasks_source_->Request(prefetch_requested_, RlTaskSeed(prefetch_requested_));
  }
}

void Controller::DispatchRl() {
  int room = RlRoom();
  if (room > 0) PollTasks();
  while (room > 0) {
    bool any = false;
    for (int d : dispatch_order_) {
      if (room <= 0) break;
      if (DispatchOne(d)) {
        --room;
        any = true;
      }
    }
    if (!any) break;
  }
}

bool Controller::DispatchOne(int d) {
  WorkerSlot& w = workers_[d];
  if (!CanTakeWork(w, pool_.device(d).tag, version_, Credit())) return false;
  int64_t id = ledger_.NextQueued();
  if (id < 0) {
    // A new prompt, once its reset (on the TaskSource's thread) has finished.
    const int64_t n = ledger_.created();
    auto pit = prefetched_.find(n);
    if (pit == prefetched_.end()) return false;
    absl::StatusOr<envs::Task> task = std::move(pit->second);
    prefetched_.erase(pit);
    id = ledger_.Create(RlTaskSeed(n));
    if (!task.ok()) {
      PromptFailed(id, "env_reset_failed", std::string(task.status().message()));
      return false;
    }
    tasks_.emplace(id, std::move(*task));
  }
  const PromptRecord* rec = ledger_.Find(id);
  auto it = tasks_.find(id);
  if (it == tasks_.end()) {  // a queued prompt always has its task (requeued ones keep theirs)
    Fatal(absl::InternalError(absl::StrCat("prompt ", id, " is queued without its task")));
    return false;
  }
  absl::StatusOr<int64_t> attempt = ledger_.Dispatch(id, d);
  if (!attempt.ok()) {
    Fatal(attempt.status());
    return false;
  }
  RolloutWork work;
  work.prompt_id = id;
  work.attempt = *attempt;
  work.task_seed = rec->task_seed;
  work.prompt = it->second.prompt;
  work.hidden = it->second.hidden;
  work.group_size = static_cast<int32_t>(recipe_.rollout.group_size);
  SendTo(d, work);
  w.rl.insert(id);
  return true;
}

void Controller::DropPrompt(int64_t id, const std::string& reason) {
  absl::Status s = ledger_.Drop(id, reason);
  if (!s.ok()) TIDAL_LOG(WARN) << s;
  tasks_.erase(id);
  if (metrics_) metrics_->Add("tidal_prompts_dropped_total", {{"reason", reason}}, 1);
  // Drops while the run ends are bookkeeping, not a failing run.
  if (s.ok() && !finishing_ && !stopping_) {
    if (absl::Status spent = drops_.Failure(absl::StrCat("prompt ", id, ": ", reason)); !spent.ok()) Fatal(spent);
  }
}

void Controller::PromptFailed(int64_t id, const std::string& reason, const std::string& detail) {
  TIDAL_LOG(WARN) << "prompt " << id << " " << reason << ": " << detail;
  DropPrompt(id, reason);
  if (absl::Status spent = env_errors_.Failure(detail); !spent.ok()) Fatal(spent);
}

void Controller::StoreGroup(TrajectoryGroup g) {
  const int64_t prompt_id = g.prompt_id;
  const int64_t tokens = acct_.OnGroup(g, Now());
  if (metrics_) metrics_->Add("tidal_rollout_tokens_total", {}, static_cast<double>(tokens));
  env_errors_.Success();
  if (auto reason = store_.Add(std::move(g))) DropPrompt(prompt_id, *reason);
}

void Controller::MaybeStartTrainStep() {
  if (rl_started_ <= 0 || finishing_ || train_running_ || resize_ || steps_done_ >= recipe_.train.steps) return;
  const int p = static_cast<int>(recipe_.train.prompts_per_step);
  if (store_.size() < p) return;
  for (int d : train_group_) {
    // The policy moves train ranks to train first; a rank still busy with other train work
    // (a checkpoint) queues the step behind it, which is fine.
    if (pool_.device(d).tag != Tag::kTrain || workers_[d].state != WorkerSlot::State::kReady) return;
  }
  std::vector<DroppedGroup> dropped;
  const int64_t kept_unfiltered = store_.kept_unfiltered();
  auto batch = store_.TakeBatch(p, version_, &dropped);
  for (const auto& g : dropped) DropPrompt(g.prompt_id, g.reason);
  if (!batch) return;
  AssembledStep step = AssembleTrainStep(*batch, static_cast<int>(train_group_.size()), steps_done_, version_);
  acct_.OnBatch(step, static_cast<int64_t>(batch->size()), kept_unfiltered);
  if (kept_unfiltered > 0) {
    TIDAL_LOG(WARN) << "step " << steps_done_ << ": dynamic sampling hit algo.dynamic_sampling_limit; "
                    << kept_unfiltered << " zero-variance groups kept (the policy may have collapsed)";
  }
  for (size_t r = 0; r < train_group_.size(); ++r) {
    workers_[train_group_[r]].train_ops++;
    SendTo(train_group_[r], step.shares[r]);
  }
  batch_tokens_now_ = 0;
  for (const auto& g : *batch) {
    for (const auto& s : g.samples) batch_tokens_now_ += static_cast<int64_t>(s.response_ids.size());
  }
  training_batch_ = std::move(*batch);
  train_running_ = true;
  train_replies_ = static_cast<int>(train_group_.size());
  train_stats_ = json::object();
  train_step_started_ = Now();
}

}  // namespace tidal::scheduler::detail
