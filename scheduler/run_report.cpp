#include "scheduler/run_report.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "scheduler/metrics_sink.h"

namespace tidal::scheduler {

using nlohmann::json;

std::string FormatDuration(double s) {
  if (!(s >= 0) || std::isinf(s)) return "?";
  int64_t t = static_cast<int64_t>(s + 0.5);
  if (t >= 3600) return absl::StrFormat("%dh%02dm", t / 3600, (t % 3600) / 60);
  if (t >= 60) return absl::StrFormat("%dm%02ds", t / 60, t % 60);
  return absl::StrFormat("%ds", t);
}

std::string ProgressLine::Format() const {
  return absl::StrFormat(
      "step %d/%d | reward %.3f | acc %.3f | eval %s | rollout %.0f tok/s | train %.0f tok/s | "
      "staleness %.2f | idle %.0f%% | ETA %s",
      steps_done, steps, reward, accuracy,
      eval_accuracy >= 0 ? absl::StrFormat("%.3f", eval_accuracy) : std::string("-"),
      rollout_tokens_per_s, train_tokens_per_s, staleness, 100.0 * idle_fraction,
      FormatDuration(eta_seconds));
}

double EtaSeconds(double elapsed, int64_t session_steps, int64_t steps_left) {
  return session_steps > 0 ? elapsed / session_steps * steps_left : -1;
}

std::vector<DeviceSummary> DeviceSummaries(const DevicePool& pool, const Fleet& fleet) {
  std::vector<DeviceSummary> out;
  for (int d = 0; d < pool.size(); ++d) {
    const auto& dev = pool.device(d);
    DeviceSummary ds;
    ds.device = dev.slot.Name();
    ds.home_tag = TagName(dev.home);
    ds.busy_rollout_s = dev.time.busy[0];
    ds.busy_train_s = dev.time.busy[1];
    ds.idle_rollout_s = dev.time.idle[0];
    ds.idle_train_s = dev.time.idle[1];
    ds.idle_fraction = dev.time.IdleFraction();
    ds.tag_moves = dev.tag_moves;
    ds.restarts = d < fleet.size() ? fleet[d].restarts : 0;
    out.push_back(ds);
  }
  return out;
}

double IdleFractionBetween(const DeviceTime& start, const DeviceTime& end) {
  DeviceTime rl;
  for (int t = 0; t < 2; ++t) {
    rl.busy[t] = end.busy[t] - start.busy[t];
    rl.idle[t] = end.idle[t] - start.idle[t];
  }
  return rl.IdleFraction();
}

void ExportPoolMetrics(MetricsSink& sink, const DevicePool& pool, const Fleet& fleet,
                       const LedgerSummary& s, int store_groups, const WeightSyncCounts& weights) {
  for (int d = 0; d < pool.size(); ++d) {
    const auto& dev = pool.device(d);
    std::string name = dev.slot.Name();
    for (Tag t : {Tag::kRollout, Tag::kTrain}) {
      int k = static_cast<int>(t);
      sink.SetTotal("tidal_device_seconds_total", {{"device", name}, {"tag", TagName(t)}, {"state", "busy"}}, dev.time.busy[k]);
      sink.SetTotal("tidal_device_seconds_total", {{"device", name}, {"tag", TagName(t)}, {"state", "idle"}}, dev.time.idle[k]);
    }
    sink.Set("tidal_device_tag_is_train", {{"device", name}}, dev.tag == Tag::kTrain ? 1 : 0);
    sink.Set("tidal_device_idle_fraction", {{"device", name}}, dev.time.IdleFraction());
    sink.Set("tidal_device_inflight_groups", {{"device", name}},
             d < fleet.size() ? static_cast<double>(fleet[d].rollout_load()) : 0.0);
    if (d < fleet.size()) {
      sink.SetTotal("tidal_worker_restarts_total", {{"device", name}}, fleet[d].restarts);
      sink.Set("tidal_worker_up", {{"device", name}}, fleet[d].state == WorkerSlot::State::kReady ? 1 : 0);
    }
  }
  sink.Set("tidal_pool_idle_fraction", {}, pool.Total().IdleFraction());
  sink.Set("tidal_prompts", {{"state", "queued"}}, static_cast<double>(s.queued));
  sink.Set("tidal_prompts", {{"state", "in_flight"}}, static_cast<double>(s.in_flight));
  sink.Set("tidal_prompts", {{"state", "stored"}}, static_cast<double>(s.stored));
  sink.SetTotal("tidal_prompts_created_total", {}, static_cast<double>(s.created));
  sink.SetTotal("tidal_prompts_trained_total", {}, static_cast<double>(s.trained));
  sink.SetTotal("tidal_prompts_requeued_total", {}, static_cast<double>(s.requeued));
  sink.Set("tidal_store_groups", {}, store_groups);
  sink.SetTotal("tidal_weight_sync_relayed_bytes_total", {}, static_cast<double>(weights.bytes_relayed));
  sink.SetTotal("tidal_weight_sync_rejected_total", {}, static_cast<double>(weights.rejected));
}

json WorkerStatus(const DevicePool& pool, const Fleet& fleet) {
  static const char* kState[] = {"none", "starting", "ready", "dead", "exited"};
  json workers = json::array();
  for (int d = 0; d < pool.size() && d < fleet.size(); ++d) {
    const WorkerSlot& w = fleet[d];
    const auto& dev = pool.device(d);
    workers.push_back({{"device", dev.slot.Name()}, {"home", TagName(dev.home)}, {"tag", TagName(dev.tag)},
                       {"state", kState[static_cast<int>(w.state)]}, {"restarts", w.restarts},
                       {"tag_moves", dev.tag_moves}, {"idle_fraction", dev.time.IdleFraction()},
                       {"in_flight", static_cast<int64_t>(w.rollout_load()) + w.agent_calls}});
  }
  return workers;
}

json RunSummary::ToJson() const {
  json devs = json::array();
  for (const auto& d : devices) {
    devs.push_back({{"device", d.device}, {"home_tag", d.home_tag},
                    {"busy_rollout_s", d.busy_rollout_s}, {"busy_train_s", d.busy_train_s},
                    {"idle_rollout_s", d.idle_rollout_s}, {"idle_train_s", d.idle_train_s},
                    {"idle_fraction", d.idle_fraction}, {"tag_moves", d.tag_moves},
                    {"restarts", d.restarts}});
  }
  return {{"run_dir", run_dir},
          {"policy", policy},
          {"steps", steps},
          {"wall_seconds", wall_seconds},
          {"warmup_seconds", warmup_seconds},
          {"rl_seconds", rl_seconds},
          {"eval_accuracy_start", eval_accuracy_start},
          {"eval_accuracy_end", eval_accuracy_end},
          {"devices", devs},
          {"idle_fraction", idle_fraction},
          {"rl_idle_fraction", rl_idle_fraction},
          {"prompts", {{"created", prompts_created}, {"trained", prompts_trained},
                       {"dropped", prompts_dropped}, {"requeued", prompts_requeued},
                       {"unaccounted", prompts_unaccounted}, {"dropped_by_reason", dropped_by_reason}}},
          {"weight_sync", {{"transport", weight_transport}, {"versions", weight_versions},
                           {"bytes_relayed", weight_bytes_relayed}, {"bytes_broadcast", weight_bytes_broadcast},
                           {"broadcast_failures", weight_broadcast_failures}, {"group_epochs", weight_group_epochs},
                           {"rejected", weight_rejected}}},
          {"worker_restarts", worker_restarts},
          {"train_group_restarts", train_group_restarts},
          {"train_group", {{"resizes", train_group_resizes}, {"min", train_group_min}, {"max", train_group_max},
                           {"final", train_group_final}, {"resize_seconds", train_group_resize_seconds}}},
          {"faults", {{"env_errors", env_errors}, {"nonfinite_skipped", nonfinite_skipped},
                      {"registers_refused", registers_refused}}},
          {"rollout_tokens_per_s", rollout_tokens_per_s},
          {"train_tokens_per_s", train_tokens_per_s},
          {"mean_staleness", mean_staleness},
          {"response_tokens_mean", response_tokens_mean},
          {"response_tokens_max", response_tokens_max},
          {"agent", {{"sessions", agent_sessions}, {"sessions_after_run_end", agent_sessions_late}}},
          {"stopped_early", stopped_early}};
}

std::string RunSummary::Format() const {
  std::string out = absl::StrFormat(
      "\n== run summary (%s) ==\nsteps %d | wall %.1f s (warm-up %.1f s, RL %.1f s) | policy %s\n",
      run_dir, steps, wall_seconds, warmup_seconds, rl_seconds, policy);
  auto acc = [](double a) { return a < 0 ? std::string("-") : absl::StrFormat("%.3f", a); };
  absl::StrAppendFormat(&out, "eval greedy accuracy: after warm-up %s -> final %s\n",
                        acc(eval_accuracy_start), acc(eval_accuracy_end));
  absl::StrAppendFormat(&out, "rollout %.0f tok/s | train %.0f tok/s | mean staleness %.2f | response tokens mean %.1f max %.0f\n",
                        rollout_tokens_per_s, train_tokens_per_s, mean_staleness, response_tokens_mean,
                        response_tokens_max);
  out += "device   home     busy(rollout/train)   idle(rollout/train)   idle%   moves restarts\n";
  for (const auto& d : devices) {
    absl::StrAppendFormat(&out, "%-8s %-8s %8.1f / %-8.1f     %8.1f / %-8.1f   %5.1f%%  %5d %5d\n",
                          d.device, d.home_tag, d.busy_rollout_s, d.busy_train_s, d.idle_rollout_s,
                          d.idle_train_s, 100 * d.idle_fraction, d.tag_moves, d.restarts);
  }
  absl::StrAppendFormat(&out, "pool idle fraction: %.1f%% (RL phase: %.1f%%)\n", 100 * idle_fraction,
                        100 * rl_idle_fraction);
  if (train_group_resizes > 0) {
    absl::StrAppendFormat(&out, "train group: %d resizes (%.1f s of hand-off), %d..%d devices, %d at the end\n",
                          train_group_resizes, train_group_resize_seconds, train_group_min, train_group_max,
                          train_group_final);
  }
  absl::StrAppendFormat(&out, "prompts: created %d, trained %d, dropped %d, requeued %d, unaccounted %d\n",
                        prompts_created, prompts_trained, prompts_dropped, prompts_requeued,
                        prompts_unaccounted);
  for (const auto& [reason, n] : dropped_by_reason) {
    absl::StrAppendFormat(&out, "  dropped (%s): %d\n", reason, n);
  }
  if (agent_sessions + agent_sessions_late > 0) {
    absl::StrAppendFormat(&out, "agent sessions: %d grouped (in the prompt counts above), %d after the run ended\n",
                          agent_sessions, agent_sessions_late);
  }
  if (weight_transport == "nccl") {
    absl::StrAppendFormat(&out,
                          "weight sync (broadcast): %d versions, %.1f MB broadcast, %d failed broadcasts, %d group epochs, "
                          "%d rejected | worker restarts %d\n",
                          weight_versions, weight_bytes_broadcast / 1e6, weight_broadcast_failures, weight_group_epochs,
                          weight_rejected, worker_restarts);
  } else {
    absl::StrAppendFormat(&out, "weight sync: %d versions, %.1f MB relayed, %d rejected | worker restarts %d\n",
                          weight_versions, weight_bytes_relayed / 1e6, weight_rejected, worker_restarts);
  }
  if (train_group_restarts > 0) {
    absl::StrAppendFormat(&out, "train group lost and the run restarted from a checkpoint %d time(s) "
                          "(earlier attempts: summary.attempt-K.json)\n", train_group_restarts);
  }
  if (env_errors + nonfinite_skipped + registers_refused > 0) {
    absl::StrAppendFormat(&out, "faults: %d failed prompts, %d skipped non-finite updates, %d refused registers\n",
                          env_errors, nonfinite_skipped, registers_refused);
  }
  return out;
}

}  // namespace tidal::scheduler
