// The controller's state and its members, shared by the files that implement it (internal to
// scheduler/: only controller*.cpp include this). The class is split by concept:
//   controller.cpp           setup, the event loop, the phases (warm-up, publish, eval, RL,
//                            finish, export), shutdown, Run
//   controller_events.cpp    what each worker message and each worker exit does
//   controller_dataflow.cpp  tags, dispatch, the store, train-step start
//   controller_report.cpp    events, progress, metrics, the summary
//   controller_resize.cpp    the elastic train group: measuring, deciding, the state hand-off
// The decisions themselves live in the tested parts: fleet.h, dispatch.h, train_step.h,
// checkpoint_book.h, run_report.h, tag_policy.h, elastic_policy.h, trajectory_store.h,
// weight_sync/weight_relay.h.
//
// Contract: one thread (RunController's caller) runs everything here.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <set>

#include "core/clock.h"
#include "core/communicator_nccl.h"
#include "core/cuda_devices.h"
#include "core/logging.h"
#include "core/metrics_log.h"
#include "core/messaging.h"
#include "envs/environment.h"
#include "scheduler/agent_groups.h"
#include "scheduler/broadcast_control.h"
#include "scheduler/controller.h"
#include "scheduler/checkpoint_book.h"
#include "scheduler/device_pool.h"
#include "scheduler/dispatch.h"
#include "scheduler/elastic_policy.h"
#include "scheduler/failure_budget.h"
#include "scheduler/fleet.h"
#include "scheduler/control_plane.h"
#include "scheduler/launcher.h"
#include "scheduler/metrics_sink.h"
#include "scheduler/prompt_ledger.h"
#include "scheduler/protocol.h"
#include "scheduler/run_report.h"
#include "scheduler/task_source.h"
#include "scheduler/run_telemetry.h"
#include "scheduler/tag_policy.h"
#include "scheduler/tag_timeline.h"
#include "scheduler/train_step.h"
#include "scheduler/trajectory_store.h"
#include "weight_sync/fault_injection.h"
#include "weight_sync/transport_factory.h"
#include "weight_sync/weight_bucket.h"
#include "weight_sync/weight_relay.h"

namespace tidal::scheduler::detail {

namespace fs = std::filesystem;
using nlohmann::json;

// Set by RequestStop() (async-signal-safe).
bool StopRequested();

// Where the run's checkpoints live: checkpoint.dir, or <run_dir>/checkpoints when it is empty.
inline std::string CheckpointDirOf(const Recipe& recipe) {
  return recipe.checkpoint.dir.empty() ? (fs::path(recipe.run_dir) / "checkpoints").string() : recipe.checkpoint.dir;
}

// `status` marked as a lost train group (IsTrainGroupLost), which RunController restarts from the
// last checkpoint.
absl::Status TrainGroupLost(absl::Status status);

// Messages from a peer that has not registered with its launch token are dropped above this size
// before decoding (a Register is a few hundred bytes).
inline constexpr int64_t kUnadmittedMaxBytes = 64 << 10;

// An elastic resize in progress (controller_resize.cpp): the old group saves, then every device
// of either group joins the new one.
struct GroupResize {
  enum class Phase { kSave, kJoin };
  Phase phase = Phase::kSave;
  std::vector<int> from, to;  // memberships (device indices, ascending)
  std::vector<Move> moves;
  std::string reason;
  std::string dir;            // the hand-off state (a sharded trainer checkpoint)
  std::string comm_group;     // the new membership's communicator name
  int replies = 0;
  double started = 0;
  double period_now = 0, period_new = 0;  // the policy's predictions (0: a planned resize)
};

struct EvalRound {
  std::string name;
  int64_t version = 0;
  std::deque<int> queued;  // eval task indices not yet dispatched
  int total = 0, done = 0, correct = 0;
  int64_t id = 0;
  double started = 0;
  bool active() const { return done < total; }
};

class Controller {
 public:
  Controller(const Recipe& recipe, const RunOptions& options)
      : recipe_(recipe), options_(options),
        store_(static_cast<int>(recipe.rollout.max_staleness), recipe.algo.dynamic_sampling,
               recipe.algo.dynamic_sampling_limit * recipe.train.prompts_per_step),
        pool_(SlotsFromDeviceSet(recipe.pool.device_set),
              recipe.pool.policy == PoolPolicy::kColocated ? 0
                                                           : static_cast<int>(recipe.pool.tags.train)),
        agent_groups_(&ledger_, static_cast<int>(recipe.rollout.group_size)),
        workers_(SupervisionPolicy{static_cast<int>(recipe.control.budget.restarts)}),
        env_errors_("env_errors", "prompts in a row failed", "control.budget.env_errors",
                    recipe.control.budget.env_errors, FailureBudget::Shape::kConsecutive),
        drops_("drops", "prompts in a row dropped with none trained", "control.budget.drops",
               recipe.control.budget.drops, FailureBudget::Shape::kConsecutive),
        weight_resends_("weight_resends", "re-sends of one weight version to a device that rejected it",
                        "control.budget.weight_resends", recipe.control.budget.weight_resends,
                        FailureBudget::Shape::kPerKey) {
    dispatch_order_ = DispatchOrder(pool_);
  }

  absl::StatusOr<RunSummary> Run();

 private:
  // ---- setup / teardown
  absl::Status PrepareRunDir();
  absl::Status StartWorkers();
  void Shutdown();
  // After Shutdown: drops every prompt still open, with the reason the run ended.
  void AccountRemaining(const absl::Status& status);

  // ---- event loop
  double Now() const { return SecondsSince(t0_); }
  // Runs the loop until `done()` holds; fails on a fatal error or a stop request.
  absl::Status WaitUntil(const std::function<bool()>& done, const char* what);
  void Pump(absl::Duration timeout);
  void Tick();
  void Handle(const Envelope& env);
  void HandleRegister(const Envelope& env);
  void HandlePeerDead(const std::string& peer);
  void ReapWorkers();
  void Fatal(absl::Status status);
  int DeviceOfPeer(const std::string& peer) const;
  template <class T>
  void SendTo(int device, const T& msg, std::vector<Payload> frames = {});

  // ---- phases
  absl::Status RunWarmup();
  absl::Status PublishInitialWeights();
  absl::Status RunEval(const std::string& name, double* accuracy);
  absl::Status RunRl();
  absl::Status FinishRl();
  absl::Status ExportFinal();
  // Checkpoints the last trained step unless a checkpoint of it exists (waits for a train step
  // in flight first).
  absl::Status CheckpointLast();
  // A resumed run does not repeat the after-warm-up eval: its accuracy comes from metrics.jsonl.
  bool RestoreStartEval();

  // ---- data flow
  int Credit() const { return scheduler::Credit(recipe_.rollout.max_seqs, recipe_.rollout.group_size); }
  int RlRoom() const;  // how many more RL groups the staleness gate and the step budget allow
  void ApplyPolicy();
  void DispatchEval();
  void DispatchRl();
  bool DispatchOne(int device);
  void MaybeStartTrainStep();
  void OnRolloutResult(int device, const RolloutResult& r);
  void OnAgentSessions(int device, AgentSessions m);
  // A finished group (environment prompt or agent sessions) -> rollout stats and the store.
  void StoreGroup(TrajectoryGroup g);
  void WriteAgentEndpoints();
  void OnTrainStepDone(int device, const TrainStepDone& d);
  void OnWeightBucket(int device, const Envelope& env);
  void RelayVersionTo(int device);
  // ---- the broadcast transport (weight_transport nccl; scheduler/broadcast_control.h)
  void SendBroadcast(const BroadcastControl::Outbox& out);
  void OnBroadcastDone(int device, const WeightBroadcastDone& m);
  // Sends PublishWeights to the train group when a version is owed to the receivers and the
  // train group is idle (a train step in flight publishes a newer one anyway).
  void MaybeResendBroadcast();
  void UpdateBusy();
  void DropPrompt(int64_t id, const std::string& reason);
  // A prompt that failed (its reset or its rollout): dropped, counted against env_errors.
  void PromptFailed(int64_t id, const std::string& reason, const std::string& detail);
  // Moves finished environment resets into prefetched_ and keeps the next ones requested.
  void PollTasks();
  uint64_t RlTaskSeed(int64_t n) const;

  // ---- elastic train group (controller_resize.cpp)
  bool ResizeEnabled() const;
  // At a step boundary with the train group idle: measures, asks the policy (or the plan), and
  // starts a resize when it moves devices.
  void MaybeResize();
  // After every finished step: the throughput meters the policy reads.
  void MeasureStep(double step_seconds);
  void WriteElasticTraceRow(double train_device_seconds, double rollout_tokens, double rollout_device_seconds);
  double QueuedTokens() const;  // finished tokens in the store, in batch-token units
  int Dispatchable() const;     // groups the staleness gate and supply still allow (eval included)
  void OnTrainGroupSaved(int device, const TrainGroupSaved& m);
  void OnTrainGroupJoined(int device, const TrainGroupJoined& m);
  // The communicator name of a membership; a member's restart makes a fresh one (its old
  // process's cached communicator is gone).
  std::string MembershipName(const std::vector<int>& members) const;

  // ---- reporting
  void Progress(bool force);
  void WriteEvent(json event);
  RunSummary Summarize() const;
  void ExportMetrics();

  Recipe recipe_;
  RunOptions options_;
  std::string run_dir_, ckpt_dir_;
  MonoTime t0_ = MonoNow();
  absl::Status fatal_;
  bool stopping_ = false;   // shutting workers down: exits are expected
  bool finishing_ = false;  // RL is over: no new work, in-flight work is being aborted

  std::unique_ptr<Router> router_;
  std::unique_ptr<Launcher> launcher_;
  ControlPlaneSetup control_;  // bind address, CURVE keys, registration tokens (control_plane.h)
  std::unique_ptr<TaskSource> tasks_source_;  // the environment, off the loop thread
  std::unique_ptr<RunTelemetry> telemetry_;  // endpoint + dashboard, TensorBoard, timeline
  MetricsSink* metrics_ = nullptr;           // telemetry_'s
  double relay_started_ = 0;                 // first bucket of the version streaming in
  std::unique_ptr<MetricsLog> jsonl_;

  TagPolicy policy_;
  TagTimeline timeline_;  // every tag move: <run_dir>/tag_timeline.jsonl + tidal_tag_moves_total
  TrajectoryStore store_;
  DevicePool pool_;
  PromptLedger ledger_;
  AgentGroups agent_groups_;
  int64_t agent_sessions_late_ = 0;  // reported after RL ended: not trained, not in the ledger
  double last_agent_session_ = 0;
  Fleet workers_;  // restarts per device: control.budget.restarts
  std::vector<int> train_group_;
  // Elastic train group (pool.elastic): options, the fixed plan, the resize in progress, the
  // meters, and what the summary reports.
  ElasticOptions elastic_;
  std::vector<std::pair<int64_t, int64_t>> plan_;  // (step, size), pool.elastic.plan
  size_t plan_next_ = 0;
  std::optional<GroupResize> resize_;
  int64_t resize_checked_step_ = -1;  // the boundary last decided at
  RateMeter train_meter_, rollout_meter_;
  double batch_tokens_ = 0;           // moving average of one batch's response tokens
  int64_t batch_tokens_now_ = 0;      // response tokens of the batch being trained
  int64_t meter_tokens_ = 0;          // acct_.rollout_tokens at the last measurement
  double meter_rollout_busy_ = 0;     // pool rollout busy seconds at the last measurement
  // <run_dir>/elastic_trace.csv: what each measurement fed the split policy, one row per train
  // step, in the format tests/scheduler/traces/ replay (opened on the first step).
  std::ofstream elastic_trace_;
  int64_t resizes_ = 0;
  int train_group_min_ = 0, train_group_max_ = 0;
  double resize_seconds_ = 0;
  std::map<std::string, std::string> nccl_ids_;  // membership name -> hex ncclUniqueId (CUDA)
  std::vector<int> dispatch_order_;  // DispatchRl's device order
  std::string comm_group_;
  std::string nccl_id_hex_;  // the train group's NCCL unique id (CUDA pools, > 1 rank; "" otherwise)
  std::map<int64_t, envs::Task> tasks_;  // RL prompts not yet terminal
  // Resets of the next RL prompts (by creation index), finished or failed, not yet dispatched.
  std::map<int64_t, absl::StatusOr<envs::Task>> prefetched_;
  int64_t prefetch_requested_ = 0;  // resets requested for creation indices below this
  FailureBudget env_errors_, drops_, weight_resends_;
  std::vector<envs::Task> eval_tasks_;
  std::optional<EvalRound> eval_;
  int64_t eval_rounds_ = 0;

  // Training state.
  int64_t steps_done_ = 0;
  int64_t version_ = -1;  // newest policy version published (-1: none yet)
  bool train_running_ = false;
  bool warming_up_ = false;  // RunWarmup is running (the tag policy keeps colocated pools on train)
  int train_replies_ = 0;
  std::vector<TrajectoryGroup> training_batch_;
  json train_stats_;
  double train_step_started_ = 0;
  int sft_replies_ = 0;
  double sft_loss_ = 0;
  int ckpt_replies_ = 0, export_replies_ = 0;
  std::string export_error_;
  bool published_ = false;
  int64_t published_version_ = -1;
  std::string pending_ckpt_dir_;
  int64_t resume_step_ = 0;
  std::string resume_dir_;
  std::string run_id_;  // written into every checkpoint's state (checkpoint_book.h)

  weight_sync::WeightRelay relay_;
  std::optional<BroadcastControl> bcast_;  // weight_transport nccl only
  weight_sync::TransportKind transport_ = weight_sync::TransportKind::kZmq;  // from weight_sync.backend
  int64_t weight_rejected_ = 0;
  int64_t registers_refused_ = 0;
  int64_t nonfinite_skipped_ = 0;  // train updates skipped for a non-finite loss or gradient

  // Totals, rates and progress.
  StepAccounting acct_;
  double rl_started_ = 0, rl_ended_ = 0, warmup_seconds_ = 0;
  DeviceTime rl_time_start_, rl_time_end_;  // pool totals when RL started / ended
  double last_progress_ = -1, last_metrics_ = -1;
  double eval_acc_start_ = -1, eval_acc_end_ = -1, last_eval_acc_ = -1;
  bool tty_ = isatty(STDOUT_FILENO);  // progress goes to stdout, logs to stderr
};

template <class T>
void Controller::SendTo(int device, const T& msg, std::vector<Payload> frames) {
  WorkerSlot& w = workers_[device];
  if (w.peer.empty()) return;
  absl::Status s = router_->Send(w.peer, msg, std::move(frames));
  if (!s.ok()) TIDAL_LOG(WARN) << "send " << MessageName<T>() << " to " << w.peer << ": " << s;
}

}  // namespace tidal::scheduler::detail
