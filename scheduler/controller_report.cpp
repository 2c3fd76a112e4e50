#include "scheduler/controller_internal.h"

namespace tidal::scheduler::detail {

void Controller::WriteEvent(json event) {
  if (telemetry_) telemetry_->OnEvent(event);
  if (!jsonl_) return;
  absl::Status s = jsonl_->Write(std::move(event));
  if (!s.ok()) TIDAL_LOG(WARN) << s;
}

void Controller::Progress(bool force) {
  double now = Now();
  pool_.Advance(now);
  if (force || now - last_metrics_ >= 0.5) {
    last_metrics_ = now;
    ExportMetrics();
  }
  if (!options_.progress || rl_started_ <= 0) return;
  double period = tty_ ? 0.5 : 5.0;
  if (!force && last_progress_ >= 0 && now - last_progress_ < period) return;
  last_progress_ = now;
  ProgressLine line;
  line.steps_done = steps_done_;
  line.steps = recipe_.train.steps;
  line.reward = acct_.last_reward;
  line.accuracy = acct_.last_accuracy;
  line.eval_accuracy = last_eval_acc_;
  line.rollout_tokens_per_s = acct_.rollout_window.Rate(now);
  line.train_tokens_per_s = acct_.train_tokens_per_s();
  line.staleness = acct_.last_staleness;
  line.idle_fraction = pool_.Total().IdleFraction();
  line.eta_seconds = EtaSeconds(now - rl_started_, steps_done_ - resume_step_, recipe_.train.steps - steps_done_);
  std::fprintf(stdout, tty_ ? "\r\033[K%s" : "%s\n", line.Format().c_str());
}

void Controller::ExportMetrics() {
  if (!metrics_) return;
  ExportPoolMetrics(*metrics_, pool_, workers_, ledger_.Summary(), store_.size(),
                    {bcast_ ? bcast_->versions() : relay_.versions(), relay_.bytes_relayed(), weight_rejected_});
  if (telemetry_) {
    telemetry_->SetLive({{"step", steps_done_}, {"steps", recipe_.train.steps}, {"workers", WorkerStatus(pool_, workers_)}},
                        Now());
  }
}

RunSummary Controller::Summarize() const {
  RunSummary s;
  s.run_dir = run_dir_;
  s.policy = TagPolicyName(policy_);
  s.steps = steps_done_;
  s.wall_seconds = Now();
  s.warmup_seconds = warmup_seconds_;
  s.rl_seconds = rl_started_ > 0 ? (rl_ended_ > 0 ? rl_ended_ : Now()) - rl_started_ : 0;
  s.eval_accuracy_start = eval_acc_start_;
  s.eval_accuracy_end = eval_acc_end_;
  s.devices = DeviceSummaries(pool_, workers_);
  for (const auto& ds : s.devices) s.worker_restarts += ds.restarts;
  s.train_group_restarts = options_.train_group_restarts;
  s.train_group_resizes = resizes_;
  s.train_group_min = train_group_min_;
  s.train_group_max = train_group_max_;
  s.train_group_final = static_cast<int>(train_group_.size());
  s.train_group_resize_seconds = resize_seconds_;
  s.idle_fraction = pool_.Total().IdleFraction();
  // A run stopped before its last step still reports its RL phase so far (up to the pool's
  // last accounting), not 0.
  if (rl_started_ > 0) {
    s.rl_idle_fraction = IdleFractionBetween(rl_time_start_, rl_ended_ > 0 ? rl_time_end_ : pool_.Total());
  }
  LedgerSummary l = ledger_.Summary();
  s.prompts_created = l.created;
  s.prompts_trained = l.trained;
  s.prompts_dropped = l.dropped;
  s.prompts_requeued = l.requeued;
  s.prompts_unaccounted = l.unaccounted();
  s.dropped_by_reason = l.dropped_by_reason;
  s.weight_transport = weight_sync::TransportName(transport_);
  s.weight_versions = bcast_ ? bcast_->versions() : relay_.versions();
  s.weight_bytes_relayed = relay_.bytes_relayed();
  if (bcast_) {
    s.weight_bytes_broadcast = bcast_->bytes();
    s.weight_broadcast_failures = bcast_->failures();
    s.weight_group_epochs = bcast_->epochs();
  }
  s.weight_rejected = weight_rejected_;
  s.env_errors = env_errors_.total();
  s.nonfinite_skipped = nonfinite_skipped_;
  s.registers_refused = registers_refused_;
  s.rollout_tokens_per_s = s.rl_seconds > 0 ? acct_.rollout_tokens / s.rl_seconds : 0;
  s.train_tokens_per_s = acct_.train_tokens_per_s();
  s.mean_staleness = acct_.mean_staleness();
  s.response_tokens_mean = acct_.response_tokens_mean();
  s.response_tokens_max = acct_.response_len_max;
  s.stopped_early = StopRequested() || steps_done_ < recipe_.train.steps;
  s.agent_sessions = agent_groups_.sessions();
  s.agent_sessions_late = agent_sessions_late_;
  return s;
}

}  // namespace tidal::scheduler::detail
