#include "scheduler/controller.h"

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

#include "core/logging.h"
#include "core/remove_tree.h"
#include "core/metrics_log.h"
#include "core/messaging.h"
#include "envs/environment.h"
#include "scheduler/agent_groups.h"
#include "scheduler/device_pool.h"
#include "scheduler/control_plane.h"
#include "scheduler/launcher.h"
#include "scheduler/metrics_sink.h"
#include "scheduler/prompt_ledger.h"
#include "scheduler/protocol.h"
#include "scheduler/tag_policy.h"
#include "scheduler/trajectory_store.h"
#include "weight_sync/weight_bucket.h"

namespace tidal::scheduler {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

std::atomic<bool> g_stop{false};

constexpr int kMaxRestartsPerDevice = 5;

uint64_t SplitMix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Distinct seed streams for RL prompts and SFT examples.
uint64_t TaskSeed(int64_t run_seed, uint64_t stream, int64_t index) {
  return SplitMix64(SplitMix64(static_cast<uint64_t>(run_seed) * 0x100000001B3ull + stream) +
                    static_cast<uint64_t>(index));
}

std::string FormatDuration(double s) {
  if (!(s >= 0) || std::isinf(s)) return "?";
  int64_t t = static_cast<int64_t>(s + 0.5);
  if (t >= 3600) return absl::StrFormat("%dh%02dm", t / 3600, (t % 3600) / 60);
  if (t >= 60) return absl::StrFormat("%dm%02ds", t / 60, t % 60);
  return absl::StrFormat("%ds", t);
}

struct Worker {
  enum class State { kNone, kStarting, kReady, kDead, kExited };
  State state = State::kNone;
  std::string peer;
  int restarts = 0;
  bool hosts_engine = false;
  int train_rank = -1;
  int64_t relayed_version = -1;  // newest version the worker will serve once it drains its inbox
  int64_t applied_version = -1;  // newest version it confirmed
  std::set<int64_t> rl;          // RL prompts dispatched and not returned (paused ones included)
  std::set<int64_t> eval;        // eval items dispatched and not returned
  int train_ops = 0;             // train-side requests outstanding
  int64_t agent_calls = 0;       // agent endpoint calls waiting or running (rollout work too)
  std::string openai_url;        // the agent endpoint it serves ("" = none)
  bool engine_ready() const { return state == State::kReady && hosts_engine; }
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
        agent_groups_(&ledger_, static_cast<int>(recipe.rollout.group_size)) {
    // One group per device per round, home-rollout devices first: a lent train device is
    // recalled (its groups pause) as soon as a batch is ready, so it must not take work the
    // rollout devices would otherwise have run without interruption. Home tags never change.
    for (int pass = 0; pass < 2; ++pass) {
      for (int d = 0; d < pool_.size(); ++d) {
        if ((pool_.device(d).home == Tag::kRollout) == (pass == 0)) dispatch_order_.push_back(d);
      }
    }
  }

  absl::StatusOr<RunSummary> Run();

 private:
  // ---- setup / teardown
  absl::Status PrepareRunDir();
  absl::Status StartWorkers();
  void Shutdown();

  // ---- event loop
  double Now() const { return std::chrono::duration<double>(SteadyClock::now() - t0_).count(); }
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

  // ---- data flow
  int Credit() const;
  int RlOutstanding() const;
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
  void UpdateBusy();
  void DropPrompt(int64_t id, const std::string& reason);

  // ---- reporting
  void Progress(bool force);
  void WriteEvent(json event);
  RunSummary Summarize() const;
  void WriteControllerState(const std::string& dir);
  void PruneCheckpoints();
  void ExportMetrics();

  Recipe recipe_;
  RunOptions options_;
  std::string run_dir_, ckpt_dir_;
  SteadyClock::time_point t0_ = SteadyClock::now();
  absl::Status fatal_;
  bool stopping_ = false;   // shutting workers down: exits are expected
  bool finishing_ = false;  // RL is over: no new work, in-flight work is being aborted

  std::unique_ptr<Router> router_;
  std::unique_ptr<Launcher> launcher_;
  ControlPlaneSetup control_;
  std::unique_ptr<envs::Environment> env_;
  std::unique_ptr<MetricsSink> metrics_;
  std::unique_ptr<MetricsLog> jsonl_;

  TagPolicy policy_;
  TrajectoryStore store_;
  DevicePool pool_;
  PromptLedger ledger_;
  AgentGroups agent_groups_;
  int64_t agent_sessions_late_ = 0;  // reported after RL ended: not trained, not in the ledger
  double last_agent_session_ = 0;
  std::vector<Worker> workers_;
  std::vector<int> train_group_;
  std::vector<int> dispatch_order_;  // DispatchRl's device order
  std::string comm_group_;
  std::map<int64_t, envs::Task> tasks_;  // RL prompts not yet terminal
  std::vector<envs::Task> eval_tasks_;
  std::optional<EvalRound> eval_;
  int64_t eval_rounds_ = 0;

  // Training state.
  int64_t steps_done_ = 0;
  int64_t version_ = -1;  // newest policy version published (-1: none yet)
  bool train_running_ = false;
  int train_replies_ = 0;
  std::vector<TrajectoryGroup> training_batch_;
  json train_stats_;
  double train_step_started_ = 0;
  int64_t train_tokens_total_ = 0;
  double train_seconds_total_ = 0;
  int sft_replies_ = 0;
  double sft_loss_ = 0;
  int ckpt_replies_ = 0, export_replies_ = 0;
  std::string export_error_;
  bool published_ = false;
  int64_t published_version_ = -1;
  std::string pending_ckpt_dir_;
  int64_t resume_step_ = 0;
  std::string resume_dir_;

  // Weight relay: the newest complete version, and the one streaming in.
  std::vector<std::pair<weight_sync::WeightBucket, Payload>> weights_, incoming_;
  int64_t incoming_version_ = -1;
  int64_t weight_bytes_relayed_ = 0, weight_rejected_ = 0, weight_versions_ = 0;
  int64_t corrupt_version_ = -1;  // fault injection (TIDAL_FAULT_CORRUPT_BUCKET)

  // Rates and progress.
  int64_t rollout_tokens_total_ = 0;
  double response_len_sum_ = 0, response_len_max_ = 0;
  int64_t response_count_ = 0;
  double rl_started_ = 0, rl_ended_ = 0, warmup_seconds_ = 0;
  DeviceTime rl_time_start_, rl_time_end_;  // pool totals when RL started / ended
  double last_progress_ = -1, last_metrics_ = -1;
  double last_reward_ = 0, last_accuracy_ = 0, last_staleness_ = 0, staleness_sum_ = 0;
  int64_t staleness_groups_ = 0;
  int64_t last_kept_unfiltered_ = 0;  // zero-variance groups the last batch kept (limit reached)
  double eval_acc_start_ = -1, eval_acc_end_ = -1, last_eval_acc_ = -1;
  std::deque<std::pair<double, int64_t>> rollout_window_;  // (time, tokens) samples
  bool tty_ = isatty(STDERR_FILENO);
};

template <class T>
void Controller::SendTo(int device, const T& msg, std::vector<Payload> frames) {
  Worker& w = workers_[device];
  if (w.peer.empty()) return;
  absl::Status s = router_->Send(w.peer, msg, std::move(frames));
  if (!s.ok()) TIDAL_LOG(WARN) << "send " << MessageName<T>() << " to " << w.peer << ": " << s;
}

// ---------------------------------------------------------------------------------------------
// Setup

absl::Status Controller::PrepareRunDir() {
  run_dir_ = recipe_.run_dir;
  std::error_code ec;
  fs::create_directories(fs::path(run_dir_) / "logs", ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat("run_dir: cannot create '", run_dir_, "': ", ec.message()));
  }
  ckpt_dir_ = recipe_.checkpoint.dir.empty() ? (fs::path(run_dir_) / "checkpoints").string()
                                             : recipe_.checkpoint.dir;
  fs::create_directories(ckpt_dir_, ec);
  {
    std::ofstream out(fs::path(run_dir_) / "recipe.yaml");
    out << RecipeToYaml(recipe_);
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", run_dir_, "/recipe.yaml"));
  }
  if (recipe_.metrics.jsonl) {
    fs::path path = fs::path(run_dir_) / "metrics.jsonl";
    if (!recipe_.checkpoint.resume) ::unlink(path.c_str());  // a fresh run starts a fresh log
    TIDAL_ASSIGN_OR_RETURN(jsonl_, MetricsLog::Open(path.string()));
  }
  TIDAL_RETURN_IF_ERROR(InitLogging(
      {.role = "controller", .rank = -1, .file = (fs::path(run_dir_) / "logs" / "controller.log").string()}));

  if (recipe_.checkpoint.resume) {
    // The newest step-N directory holding a controller_state.json.
    int64_t best = -1;
    for (const auto& e : fs::directory_iterator(ckpt_dir_, ec)) {
      std::string n = e.path().filename().string();
      if (n.rfind("step-", 0) != 0 || !fs::exists(e.path() / "controller_state.json")) continue;
      int64_t step = std::atoll(n.c_str() + 5);
      if (step > best) {
        best = step;
        resume_dir_ = e.path().string();
      }
    }
    if (best >= 0) {
      std::ifstream in(fs::path(resume_dir_) / "controller_state.json");
      json st = json::parse(in, nullptr, false);
      if (st.is_discarded()) {
        return absl::InvalidArgumentError(absl::StrCat(resume_dir_, "/controller_state.json: not JSON"));
      }
      resume_step_ = st.value("step", best);
      steps_done_ = resume_step_;
      TIDAL_LOG(INFO) << "resuming from " << resume_dir_ << " (step " << resume_step_ << ")";
    } else {
      TIDAL_LOG(WARN) << "checkpoint.resume: no checkpoint in " << ckpt_dir_ << "; starting fresh";
    }
  }
  return absl::OkStatus();
}

absl::Status Controller::StartWorkers() {
  TIDAL_ASSIGN_OR_RETURN(policy_, ParseTagPolicy(EnumName(recipe_.pool.policy)));
  RouterOptions ro = control_.router;
  ro.heartbeat.interval = absl::Milliseconds(recipe_.control.heartbeat_ms);
  ro.heartbeat.miss = static_cast<int>(recipe_.control.heartbeat_miss);
  TIDAL_ASSIGN_OR_RETURN(router_, Router::Bind(ro));
  TIDAL_ASSIGN_OR_RETURN(std::string dial, AdvertisedEndpoint(recipe_, router_->endpoint()));
  TIDAL_LOG(INFO) << "control plane on " << router_->endpoint() << " (workers dial " << dial << ", CURVE "
                  << (control_.credentials ? "on" : "off") << ")";

  std::vector<Tag> homes;
  for (const auto& d : pool_.devices()) homes.push_back(d.home);
  train_group_ = TrainGroup(policy_, homes);
  if (train_group_.empty()) {
    return absl::InvalidArgumentError("pool.tags.train: the train group is empty (need >= 1 train device)");
  }
  workers_.resize(pool_.size());
  for (int d = 0; d < pool_.size(); ++d) {
    workers_[d].hosts_engine = HostsEngine(policy_, pool_.device(d).home);
    for (size_t r = 0; r < train_group_.size(); ++r) {
      if (train_group_[r] == d) workers_[d].train_rank = static_cast<int>(r);
    }
  }
  comm_group_ = absl::StrFormat("tidal-%d-%d", getpid(),
                                std::chrono::system_clock::now().time_since_epoch().count() % 1000000);

  if (const char* c = std::getenv("TIDAL_FAULT_CORRUPT_BUCKET")) corrupt_version_ = std::atoll(c);

  TIDAL_ASSIGN_OR_RETURN(
      launcher_, MakeLauncher(recipe_,
                              LaunchOptions{options_.worker_binary, dial, (fs::path(run_dir_) / "logs").string(),
                                            control_.worker_credentials,
                                            {"--heartbeat-ms", std::to_string(recipe_.control.heartbeat_ms),
                                             "--heartbeat-miss", std::to_string(recipe_.control.heartbeat_miss)}},
                              train_group_));
  TIDAL_RETURN_IF_ERROR(WriteControlInfo(run_dir_, dial, control_, launcher_->kind()));
  for (int d = 0; d < pool_.size(); ++d) {
    TIDAL_ASSIGN_OR_RETURN(pid_t pid, launcher_->Spawn(d, pool_.device(d).slot, control_.auth->Issue(d)));
    workers_[d].state = Worker::State::kStarting;
    TIDAL_LOG(INFO) << "worker " << d << " (" << pool_.device(d).slot.Name() << ", "
                    << TagName(pool_.device(d).home) << ") pid " << pid;
  }
  pool_.Start(Now());
  return WaitUntil(
      [&] {
        for (const auto& w : workers_) {
          if (w.state != Worker::State::kReady) return false;
        }
        return true;
      },
      "workers to start");
}

// ---------------------------------------------------------------------------------------------
// Event loop

void Controller::Fatal(absl::Status status) {
  if (fatal_.ok()) {
    TIDAL_LOG(ERROR) << status;
    fatal_ = std::move(status);
  }
}

absl::Status Controller::WaitUntil(const std::function<bool()>& done, const char* what) {
  while (true) {
    if (!fatal_.ok()) return fatal_;
    if (g_stop.load() && !stopping_ && !finishing_) {
      return absl::CancelledError(absl::StrCat("stopped (signal) while waiting for ", what));
    }
    if (done()) return absl::OkStatus();
    Pump(absl::Milliseconds(5));
    Tick();
  }
}

void Controller::Pump(absl::Duration timeout) {
  // Drain everything queued, then wait at most `timeout` for more.
  for (int i = 0; i < 256; ++i) {
    absl::StatusOr<Inbound> in = router_->Receive(i == 0 ? timeout : absl::ZeroDuration());
    if (!in.ok()) return;
    if (auto* env = std::get_if<Envelope>(&*in)) {
      Handle(*env);
    } else {
      const auto& ev = std::get<PeerEvent>(*in);
      if (ev.kind == PeerEvent::Kind::kDead) HandlePeerDead(ev.peer);
    }
  }
}

int Controller::DeviceOfPeer(const std::string& peer) const {
  for (size_t d = 0; d < workers_.size(); ++d) {
    if (workers_[d].peer == peer) return static_cast<int>(d);
  }
  return -1;
}

void Controller::HandleRegister(const Envelope& env) {
  absl::StatusOr<Register> reg = env.As<Register>();
  if (!reg.ok() || reg->rank < 0 || reg->rank >= static_cast<int>(workers_.size())) {
    (void)router_->ReplyError(env, absl::InvalidArgumentError("register: bad or out-of-range rank"));
    return;
  }
  int d = reg->rank;
  // The one credential check (scheduler/worker_auth.h): a one-time token for this rank.
  const std::string token = reg->info.is_object() && reg->info.contains("token") && reg->info["token"].is_string()
                                ? reg->info["token"].get<std::string>()
                                : "";
  if (absl::Status s = control_.auth->Check(d, token); !s.ok()) {
    TIDAL_LOG(WARN) << "refused registration of rank " << d << " from " << env.peer << " (host '" << reg->host
                    << "', pid " << reg->pid << "): " << s.message();
    WriteEvent({{"event", "registration_refused"}, {"device", d}, {"peer", env.peer}, {"host", reg->host},
                {"reason", std::string(s.message())}});
    (void)router_->ReplyError(env, s);
    return;
  }
  Worker& w = workers_[d];
  w.peer = env.peer;
  WorkerSetup setup;
  setup.run_dir = run_dir_;
  setup.recipe_path = (fs::path(run_dir_) / "recipe.yaml").string();
  setup.device = d;
  setup.device_name = pool_.device(d).slot.Name();
  setup.train_group = train_group_;
  setup.train_rank = w.train_rank;
  setup.hosts_engine = w.hosts_engine;
  setup.comm_group = comm_group_;
  setup.tag = TagName(pool_.device(d).tag);
  setup.release_engine_memory = std::holds_alternative<ColocatedPolicy>(policy_);
  setup.resume_dir = resume_dir_;
  if (absl::Status s = router_->Reply(env, setup); !s.ok()) TIDAL_LOG(WARN) << "reply to " << env.peer << ": " << s;
  TIDAL_LOG(INFO) << "device " << d << " registered as " << env.peer << " (pid " << reg->pid << ")";
}

void Controller::Handle(const Envelope& env) {
  if (env.Is<Register>()) return HandleRegister(env);
  int d = DeviceOfPeer(env.peer);
  if (d < 0) {
    TIDAL_LOG(WARN) << "message " << env.type() << " from unknown peer " << env.peer;
    return;
  }
  Worker& w = workers_[d];
  auto bad = [&](const absl::Status& s) { TIDAL_LOG(WARN) << s; };

  if (env.Is<WorkerReady>()) {
    auto r = env.As<WorkerReady>();
    if (!r.ok()) return bad(r.status());
    w.state = Worker::State::kReady;
    if (w.openai_url != r->openai_url) {
      w.openai_url = r->openai_url;
      WriteAgentEndpoints();
    }
    TIDAL_LOG(INFO) << "device " << d << " ready in " << r->init_seconds << " s (engine "
                    << r->engine << ", trainer " << r->trainer << ")";
    // A (re)started engine worker gets the current policy at once.
    if (w.hosts_engine && !weights_.empty()) RelayVersionTo(d);
    WriteEvent({{"event", "worker_ready"}, {"device", d}, {"restarts", w.restarts},
                {"relayed_version", w.relayed_version}, {"policy_version", version_},
                {"init_seconds", r->init_seconds}});
    // Tell it where the policy has its tag now (a restarted device may have moved).
    SendTo(d, SetTag{TagName(pool_.device(d).tag)});
  } else if (env.Is<RolloutResult>()) {
    auto r = env.As<RolloutResult>();
    if (!r.ok()) return bad(r.status());
    OnRolloutResult(d, *r);
  } else if (env.Is<AgentSessions>()) {
    auto r = env.As<AgentSessions>();
    if (!r.ok()) return bad(r.status());
    OnAgentSessions(d, std::move(*r));
  } else if (env.Is<WorkAborted>()) {
    auto r = env.As<WorkAborted>();
    if (!r.ok()) return bad(r.status());
    for (int64_t id : r->prompt_ids) {
      if (w.rl.erase(id) > 0) DropPrompt(id, "aborted_at_run_end");
    }
  } else if (env.Is<weight_sync::WeightBucket>()) {
    OnWeightBucket(d, env);
  } else if (env.Is<WeightsPublished>()) {
    auto r = env.As<WeightsPublished>();
    if (!r.ok()) return bad(r.status());
    --w.train_ops;
    published_ = true;
    published_version_ = r->version;
  } else if (env.Is<WeightApplied>()) {
    auto r = env.As<WeightApplied>();
    if (!r.ok()) return bad(r.status());
    if (r->ok) {
      w.applied_version = std::max(w.applied_version, r->version);
    } else {
      ++weight_rejected_;
      TIDAL_LOG(WARN) << "device " << d << " rejected weight version " << r->version << ": "
                      << r->error << "; it keeps serving version " << w.applied_version
                      << "; resending";
      WriteEvent({{"event", "weight_rejected"}, {"device", d}, {"version", r->version},
                  {"serving_version", w.applied_version}, {"error", r->error}});
      w.relayed_version = w.applied_version;
      if (!weights_.empty() && weights_.front().first.version == r->version) RelayVersionTo(d);
    }
  } else if (env.Is<SftStepDone>()) {
    auto r = env.As<SftStepDone>();
    if (!r.ok()) return bad(r.status());
    --w.train_ops;
    --sft_replies_;
    sft_loss_ += r->loss / static_cast<double>(train_group_.size());
  } else if (env.Is<TrainStepDone>()) {
    auto r = env.As<TrainStepDone>();
    if (!r.ok()) return bad(r.status());
    --w.train_ops;
    OnTrainStepDone(d, *r);
  } else if (env.Is<CheckpointDone>()) {
    auto r = env.As<CheckpointDone>();
    if (!r.ok()) return bad(r.status());
    --w.train_ops;
    --ckpt_replies_;
    if (!r->error.empty()) {
      Fatal(absl::InternalError(absl::StrCat("checkpoint ", r->dir, " on device ", d, ": ", r->error)));
    } else if (ckpt_replies_ == 0) {
      // Written after the trainer committed the directory, so a controller state only exists
      // next to a complete checkpoint.
      WriteControllerState(pending_ckpt_dir_);
      PruneCheckpoints();
    }
  } else if (env.Is<ExportDone>()) {
    auto r = env.As<ExportDone>();
    if (!r.ok()) return bad(r.status());
    --w.train_ops;
    --export_replies_;
    if (!r->error.empty()) export_error_ = r->error;
  } else if (env.Is<WorkerError>()) {
    auto r = env.As<WorkerError>();
    if (!r.ok()) return bad(r.status());
    TIDAL_LOG(ERROR) << "device " << d << ": " << r->what << ": " << r->detail;
    if (w.train_rank >= 0 && !stopping_) {
      Fatal(absl::InternalError(absl::StrCat("train rank ", w.train_rank, " (device ", d, "): ",
                                             r->what, ": ", r->detail)));
    }
  } else {
    TIDAL_LOG(WARN) << "unexpected message " << env.type() << " from " << env.peer;
  }
}

void Controller::HandlePeerDead(const std::string& peer) {
  int d = DeviceOfPeer(peer);
  if (d < 0 || stopping_) return;
  // Silent past the heartbeat limit: treat a hung worker like a dead one. Killing it makes the
  // reaper handle both cases the same way.
  TIDAL_LOG(WARN) << "device " << d << " (" << peer << ") missed its heartbeats; killing it";
  launcher_->Kill(d, SIGKILL);
}

void Controller::ReapWorkers() {
  for (const ExitedWorker& e : launcher_->Reap()) {
    Worker& w = workers_[e.device];
    w.peer.clear();
    w.train_ops = 0;
    w.agent_calls = 0;  // the agents see their calls fail and retry elsewhere
    if (stopping_ || finishing_) {
      w.state = Worker::State::kExited;
      for (int64_t id : w.rl) DropPrompt(id, "worker_exited_at_run_end");
      w.rl.clear();
      if (stopping_) continue;
    }
    w.state = Worker::State::kDead;
    TIDAL_LOG(WARN) << "device " << e.device << " worker (pid " << e.pid << ") " << e.Describe();
    WriteEvent({{"event", "worker_died"}, {"device", e.device}, {"pid", e.pid},
                {"how", e.Describe()}, {"policy_version", version_},
                {"in_flight", static_cast<int64_t>(w.rl.size())}});
    if (w.train_rank >= 0) {
      Fatal(absl::UnavailableError(absl::StrFormat(
          "train rank %d (device %s) %s; the sharded train group cannot continue: resume from the "
          "last checkpoint (checkpoint.resume=true)",
          w.train_rank, pool_.device(e.device).slot.Name(), e.Describe())));
      continue;
    }
    std::vector<int64_t> requeued = ledger_.RequeueWorker(e.device);
    w.rl.clear();
    if (eval_) {
      for (int64_t i : w.eval) eval_->queued.push_front(static_cast<int>(i));
    }
    w.eval.clear();
    w.relayed_version = w.applied_version = -1;
    TIDAL_LOG(WARN) << "requeued " << requeued.size() << " prompts of device " << e.device;
    if (w.restarts >= kMaxRestartsPerDevice) {
      Fatal(absl::UnavailableError(absl::StrFormat("device %d died %d times; giving up", e.device,
                                                   w.restarts + 1)));
      continue;
    }
    ++w.restarts;
    absl::StatusOr<pid_t> pid = launcher_->Spawn(e.device, pool_.device(e.device).slot, control_.auth->Issue(e.device));
    if (!pid.ok()) {
      Fatal(pid.status());
      continue;
    }
    w.state = Worker::State::kStarting;
    TIDAL_LOG(INFO) << "restarted device " << e.device << " as pid " << *pid;
  }
}

void Controller::Tick() {
  ReapWorkers();
  if (!fatal_.ok()) return;
  if (recipe_.openai.sessions_only && rl_started_ > 0 && !finishing_ &&
      steps_done_ < recipe_.train.steps && Now() - last_agent_session_ > recipe_.openai.idle_timeout_s) {
    return Fatal(absl::DeadlineExceededError(absl::StrFormat(
        "openai.sessions_only: no agent session finished in %.0f s (openai.idle_timeout_s); agents "
        "find the endpoints in %s/openai_endpoints.json",
        recipe_.openai.idle_timeout_s, run_dir_)));
  }
  ApplyPolicy();
  DispatchEval();
  DispatchRl();
  MaybeStartTrainStep();
  UpdateBusy();
  Progress(false);
}

void Controller::UpdateBusy() {
  double now = Now();
  for (int d = 0; d < pool_.size(); ++d) {
    const Worker& w = workers_[d];
    bool busy = pool_.device(d).tag == Tag::kRollout
                    ? !(w.rl.empty() && w.eval.empty()) || w.agent_calls > 0
                    : w.train_ops > 0;
    if (w.state != Worker::State::kReady) busy = false;
    pool_.SetBusy(d, busy, now);
  }
}

// ---------------------------------------------------------------------------------------------
// Tags and dispatch

void Controller::ApplyPolicy() {
  PolicyInputs in;
  int dispatchable = RlRoom();
  if (eval_) dispatchable += static_cast<int>(eval_->queued.size());
  in.dispatchable_groups = dispatchable;
  in.batch_ready = !train_running_ && store_.size() >= recipe_.train.prompts_per_step &&
                   steps_done_ < recipe_.train.steps;
  // Warm-up, publishing, checkpoints and exports are train work too.
  bool train_work = false;
  for (const auto& w : workers_) train_work |= w.train_rank >= 0 && w.train_ops > 0;
  in.train_running = train_running_ || train_work;
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
    pool_.SetTag(d, want[d], now);
    SendTo(d, SetTag{TagName(want[d])});
    TIDAL_LOG(DEBUG) << "device " << d << " -> " << TagName(want[d]);
  }
  if (metrics_) {
    metrics_->Set("tidal_policy_dispatchable_groups", {}, in.dispatchable_groups);
    metrics_->Set("tidal_policy_batch_ready", {}, in.batch_ready ? 1 : 0);
    metrics_->Set("tidal_policy_train_running", {}, in.train_running ? 1 : 0);
  }
}

int Controller::Credit() const {
  return std::max<int>(1, static_cast<int>(recipe_.rollout.max_seqs / std::max<int64_t>(1, recipe_.rollout.group_size)));
}

int Controller::RlOutstanding() const {
  int in_flight = 0;
  for (const auto& w : workers_) in_flight += static_cast<int>(w.rl.size());
  return store_.size() + in_flight + static_cast<int>(training_batch_.size());
}

int Controller::RlRoom() const {
  if (rl_started_ <= 0 || stopping_ || finishing_ || steps_done_ >= recipe_.train.steps) return 0;
  if (recipe_.openai.sessions_only) return 0;  // the agents supply the trajectories
  const int64_t p = recipe_.train.prompts_per_step;
  // Rollout may run ahead of training by max_staleness versions: at most (s + 1) batches exist
  // at once (stored, in flight, or being trained), and never more than the remaining steps need.
  int64_t cap = std::min<int64_t>((recipe_.rollout.max_staleness + 1) * p,
                                  (recipe_.train.steps - steps_done_) * p);
  return static_cast<int>(std::max<int64_t>(0, cap - RlOutstanding()));
}

void Controller::DispatchEval() {
  if (!eval_ || eval_->queued.empty()) return;
  for (bool any = true; any && !eval_->queued.empty();) {
    any = false;
    for (int d = 0; d < pool_.size() && !eval_->queued.empty(); ++d) {
      Worker& w = workers_[d];
      if (!w.engine_ready() || pool_.device(d).tag != Tag::kRollout ||
          w.relayed_version < eval_->version ||
          static_cast<int>(w.rl.size() + w.eval.size()) >= Credit()) {
        continue;
      }
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

void Controller::DispatchRl() {
  int room = RlRoom();
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
  Worker& w = workers_[d];
  if (!w.engine_ready() || pool_.device(d).tag != Tag::kRollout || w.relayed_version < version_ ||
      static_cast<int>(w.rl.size() + w.eval.size()) >= Credit()) {
    return false;
  }
  int64_t id = ledger_.NextQueued();
  // Resumed runs draw from a fresh part of the seed stream.
  if (id < 0) id = ledger_.Create(TaskSeed(recipe_.seed, 1 + static_cast<uint64_t>(resume_step_), ledger_.created()));
  const PromptRecord* rec = ledger_.Find(id);
  auto it = tasks_.find(id);
  if (it == tasks_.end()) {
    absl::StatusOr<envs::Task> task = env_->Reset(rec->task_seed, envs::Split::kTrain);
    if (!task.ok()) {
      DropPrompt(id, "env_reset_failed");
      TIDAL_LOG(WARN) << "prompt " << id << ": " << task.status();
      return false;
    }
    it = tasks_.emplace(id, std::move(*task)).first;
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
}

void Controller::OnRolloutResult(int d, const RolloutResult& r) {
  Worker& w = workers_[d];
  if (r.eval) {
    if (w.eval.erase(r.prompt_id) == 0 || !eval_ || r.attempt != eval_->id) return;
    ++eval_->done;
    if (!r.samples.empty() && r.samples.front().correct) ++eval_->correct;
    for (const auto& s : r.samples) rollout_tokens_total_ += static_cast<int64_t>(s.response_ids.size());
    return;
  }
  if (w.rl.erase(r.prompt_id) == 0) {
    TIDAL_LOG(WARN) << "device " << d << ": result for prompt " << r.prompt_id
                    << " it does not hold (late answer of a requeued attempt?); discarded";
    return;
  }
  absl::Status s = ledger_.Complete(r.prompt_id, r.attempt, d);
  if (!s.ok()) {
    TIDAL_LOG(WARN) << s << "; discarded";
    return;
  }
  if (finishing_) {
    // Crossed the run-end abort on the wire; the last step is already trained.
    DropPrompt(r.prompt_id, "unused_at_run_end");
    return;
  }
  if (!r.error.empty()) {
    TIDAL_LOG(WARN) << "prompt " << r.prompt_id << " failed on device " << d << ": " << r.error;
    DropPrompt(r.prompt_id, "rollout_error");
    return;
  }
  TrajectoryGroup g;
  g.prompt_id = r.prompt_id;
  g.attempt = r.attempt;
  g.worker = d;
  g.samples = r.samples;
  g.queue_seconds = r.queue_seconds;
  g.generate_seconds = r.generate_seconds;
  StoreGroup(std::move(g));
}

void Controller::OnAgentSessions(int d, AgentSessions m) {
  workers_[d].agent_calls = m.calls_in_flight;
  for (AgentSession& session : m.sessions) {
    if (finishing_ || stopping_) {
      ++agent_sessions_late_;
      continue;
    }
    last_agent_session_ = Now();
    const std::string id = session.session_id;
    absl::StatusOr<std::vector<TrajectoryGroup>> done = agent_groups_.Add(std::move(session), d);
    if (!done.ok()) {
      TIDAL_LOG(WARN) << "device " << d << ": agent session '" << id << "': " << done.status();
      continue;
    }
    for (TrajectoryGroup& g : *done) StoreGroup(std::move(g));
  }
  if (metrics_) {
    metrics_->Set("tidal_agent_sessions_total", {}, static_cast<double>(agent_groups_.sessions()));
    metrics_->Set("tidal_agent_open_groups", {}, agent_groups_.open_groups());
  }
}

void Controller::WriteAgentEndpoints() {
  json endpoints = json::array();
  for (int d = 0; d < pool_.size(); ++d) {
    if (workers_[d].openai_url.empty()) continue;
    endpoints.push_back({{"device", pool_.device(d).slot.Name()}, {"url", workers_[d].openai_url}});
    TIDAL_LOG(INFO) << "agent endpoint of device " << d << ": " << workers_[d].openai_url;
  }
  // Written whole and renamed into place: agents poll this file.
  const fs::path path = fs::path(run_dir_) / "openai_endpoints.json";
  const fs::path tmp = path.string() + ".tmp";
  std::ofstream(tmp) << json{{"endpoints", endpoints}}.dump(2) << "\n";
  if (std::rename(tmp.c_str(), path.c_str()) != 0) TIDAL_LOG(WARN) << "cannot write " << path.string();
}

void Controller::StoreGroup(TrajectoryGroup g) {
  const int64_t prompt_id = g.prompt_id;
  int64_t tokens = g.ResponseTokens();
  for (const auto& smp : g.samples) {
    const double n = static_cast<double>(smp.response_ids.size());
    response_len_sum_ += n;
    response_len_max_ = std::max(response_len_max_, n);
    ++response_count_;
  }
  rollout_tokens_total_ += tokens;
  rollout_window_.emplace_back(Now(), rollout_tokens_total_);
  if (metrics_) metrics_->Add("tidal_rollout_tokens_total", {}, static_cast<double>(tokens));
  if (auto reason = store_.Add(std::move(g))) DropPrompt(prompt_id, *reason);
}

void Controller::MaybeStartTrainStep() {
  if (rl_started_ <= 0 || finishing_ || train_running_ || steps_done_ >= recipe_.train.steps) return;
  const int p = static_cast<int>(recipe_.train.prompts_per_step);
  if (store_.size() < p) return;
  for (int d : train_group_) {
    // The policy moves train ranks to train first; a rank still busy with other train work
    // (a checkpoint) queues the step behind it, which is fine.
    if (pool_.device(d).tag != Tag::kTrain || workers_[d].state != Worker::State::kReady) return;
  }
  std::vector<DroppedGroup> dropped;
  const int64_t kept_unfiltered = store_.kept_unfiltered();
  auto batch = store_.TakeBatch(p, version_, &dropped);
  for (const auto& g : dropped) DropPrompt(g.prompt_id, g.reason);
  if (!batch) return;
  const int64_t step = steps_done_;
  std::vector<TrainStep> shares(train_group_.size());
  double stale = 0, reward = 0, correct = 0, samples = 0;
  for (size_t i = 0; i < batch->size(); ++i) {
    const auto& g = (*batch)[i];
    shares[i % shares.size()].groups.push_back({g.prompt_id, g.samples});
    int64_t mv = g.MinVersion();
    stale += mv == TrajectoryGroup::kNoVersion ? 0 : static_cast<double>(version_ - mv);
    for (const auto& s : g.samples) {
      reward += s.reward;
      correct += s.correct ? 1 : 0;
      samples += 1;
    }
  }
  last_staleness_ = stale / static_cast<double>(batch->size());
  last_kept_unfiltered_ = kept_unfiltered;
  if (kept_unfiltered > 0) {
    TIDAL_LOG(WARN) << "step " << steps_done_ << ": dynamic sampling hit algo.dynamic_sampling_limit; "
                    << kept_unfiltered << " zero-variance groups kept (the policy may have collapsed)";
  }
  staleness_sum_ += stale;
  staleness_groups_ += static_cast<int64_t>(batch->size());
  last_reward_ = samples > 0 ? reward / samples : 0;
  last_accuracy_ = samples > 0 ? correct / samples : 0;
  for (size_t r = 0; r < train_group_.size(); ++r) {
    shares[r].step = step;
    workers_[train_group_[r]].train_ops++;
    SendTo(train_group_[r], shares[r]);
  }
  training_batch_ = std::move(*batch);
  train_running_ = true;
  train_replies_ = static_cast<int>(train_group_.size());
  train_stats_ = json::object();
  train_step_started_ = Now();
}

void Controller::OnTrainStepDone(int d, const TrainStepDone& r) {
  if (!train_running_ || r.step != steps_done_) {
    TIDAL_LOG(WARN) << "unexpected TrainStepDone for step " << r.step;
    return;
  }
  train_tokens_total_ += r.tokens;
  if (workers_[d].train_rank == 0) train_stats_ = r.stats;
  if (--train_replies_ > 0) return;
  double secs = Now() - train_step_started_;
  train_seconds_total_ += secs;
  for (const auto& g : training_batch_) {
    absl::Status s = ledger_.Trained(g.prompt_id, r.step);
    if (!s.ok()) TIDAL_LOG(WARN) << s;
    tasks_.erase(g.prompt_id);
  }
  training_batch_.clear();
  train_running_ = false;
  ++steps_done_;
  // Rank 0 sent the version's buckets before this reply, so the relay already has them; train
  // ranks that host an engine installed the new version themselves.
  version_ = std::max(version_, r.version);
  for (int dev : train_group_) {
    if (workers_[dev].hosts_engine) workers_[dev].relayed_version = version_;
  }
  const int64_t step = steps_done_;
  json ev = {{"event", "step"},
             {"step", step},
             {"version", version_},
             {"reward", last_reward_},
             {"accuracy", last_accuracy_},
             {"staleness", last_staleness_},
             {"zero_variance_groups_kept", last_kept_unfiltered_},
             {"train_seconds", secs},
             {"train_tokens", r.tokens},
             {"publish_seconds", r.publish_seconds},
             {"rollout_tokens_total", rollout_tokens_total_},
             {"wall", Now()},
             {"stats", train_stats_}};
  WriteEvent(ev);
  if (metrics_) {
    metrics_->Set("tidal_step", {}, static_cast<double>(step));
    metrics_->Set("tidal_policy_version", {}, static_cast<double>(version_));
    metrics_->Set("tidal_reward_mean", {}, last_reward_);
    metrics_->Set("tidal_train_accuracy", {}, last_accuracy_);
    metrics_->Set("tidal_staleness_mean", {}, last_staleness_);
    metrics_->Add("tidal_train_tokens_total", {}, static_cast<double>(r.tokens));
    for (auto it = train_stats_.begin(); it != train_stats_.end(); ++it) {
      if (it.value().is_number()) metrics_->Set("tidal_train_" + it.key(), {}, it.value().get<double>());
    }
  }
  if (recipe_.checkpoint.every > 0 && step % recipe_.checkpoint.every == 0 &&
      steps_done_ < recipe_.train.steps) {
    std::string dir = (fs::path(ckpt_dir_) / absl::StrCat("step-", step)).string();
    ckpt_replies_ = static_cast<int>(train_group_.size());
    for (int dev : train_group_) {
      workers_[dev].train_ops++;
      SendTo(dev, Checkpoint{step, dir});
    }
    pending_ckpt_dir_ = dir;
  }
  Progress(true);
}

// ---------------------------------------------------------------------------------------------
// Weight relay (CPU transport): train rank 0 -> controller -> every engine that is not a train rank.

void Controller::OnWeightBucket(int d, const Envelope& env) {
  auto b = env.As<weight_sync::WeightBucket>();
  if (!b.ok() || env.frames.size() != 1) {
    TIDAL_LOG(WARN) << "bad weight bucket from device " << d;
    return;
  }
  if (b->version != incoming_version_) {
    incoming_.clear();
    incoming_version_ = b->version;
  }
  incoming_.emplace_back(*b, env.frames[0]);
  // Stream each bucket on as it arrives (the receiver verifies every one before it swaps).
  for (int dev = 0; dev < pool_.size(); ++dev) {
    Worker& w = workers_[dev];
    if (!w.hosts_engine || w.train_rank >= 0 || w.state != Worker::State::kReady) continue;
    Payload frame = env.frames[0];
    if (b->version == corrupt_version_ && b->index == 0) {
      // Fault injection for tests: flip one byte of a copy; the cached original stays intact.
      std::string bytes(frame.view());
      if (!bytes.empty()) bytes[bytes.size() / 2] ^= 0x5A;
      frame = Payload::FromString(std::move(bytes));
      TIDAL_LOG(WARN) << "fault injection: corrupting version " << b->version << " bucket 0 for device " << dev;
    }
    SendTo(dev, *b, {frame});
    weight_bytes_relayed_ += static_cast<int64_t>(frame.size());
    if (b->index + 1 == b->count) w.relayed_version = b->version;
  }
  if (static_cast<int>(incoming_.size()) == b->count) {
    if (b->version == corrupt_version_) corrupt_version_ = -1;  // once
    weights_ = std::move(incoming_);
    incoming_.clear();
    incoming_version_ = -1;
    ++weight_versions_;
    if (metrics_) {
      metrics_->Add("tidal_weight_sync_versions_total", {}, 1);
      metrics_->Set("tidal_weight_sync_version_bytes", {}, static_cast<double>(b->total_bytes));
    }
  }
}

void Controller::RelayVersionTo(int d) {
  Worker& w = workers_[d];
  for (const auto& [b, frame] : weights_) {
    SendTo(d, b, {frame});
    weight_bytes_relayed_ += static_cast<int64_t>(frame.size());
  }
  if (!weights_.empty()) w.relayed_version = weights_.front().first.version;
}

// ---------------------------------------------------------------------------------------------
// Phases

absl::Status Controller::RunWarmup() {
  const auto& sft = recipe_.warmup.sft;
  if (sft.steps <= 0 || !resume_dir_.empty()) return absl::OkStatus();
  double t = Now();
  TIDAL_LOG(INFO) << "warm-up: " << sft.steps << " SFT steps of " << sft.batch_size << " examples";
  int64_t example = 0;
  for (int64_t step = 0; step < sft.steps; ++step) {
    std::vector<SftStep> shares(train_group_.size());
    for (int64_t i = 0; i < sft.batch_size; ++i) {
      absl::StatusOr<envs::Task> task = env_->Reset(TaskSeed(recipe_.seed, 2, example++), envs::Split::kTrain);
      if (!task.ok()) return task.status();
      if (!task->reference) {
        return absl::FailedPreconditionError(absl::StrCat(
            "warmup.sft: env plugin '", recipe_.env.plugin, "' gives no reference answer to train on"));
      }
      shares[i % shares.size()].examples.push_back({task->prompt, *task->reference});
    }
    sft_replies_ = static_cast<int>(train_group_.size());
    sft_loss_ = 0;
    for (size_t r = 0; r < train_group_.size(); ++r) {
      shares[r].step = step;
      shares[r].lr = sft.lr;
      workers_[train_group_[r]].train_ops++;
      SendTo(train_group_[r], shares[r]);
    }
    TIDAL_RETURN_IF_ERROR(WaitUntil([&] { return sft_replies_ == 0; }, "an SFT step"));
    if ((step + 1) % 10 == 0 || step + 1 == sft.steps) {
      WriteEvent({{"event", "warmup"}, {"step", step + 1}, {"loss", sft_loss_}, {"wall", Now()}});
      if (options_.progress) {
        std::fprintf(stderr, "%swarm-up %lld/%lld | sft loss %.4f | %s%s", tty_ ? "\r\033[K" : "",
                     static_cast<long long>(step + 1), static_cast<long long>(sft.steps), sft_loss_,
                     FormatDuration(Now() - t).c_str(), tty_ ? "" : "\n");
      }
    }
  }
  if (options_.progress && tty_) std::fprintf(stderr, "\n");
  warmup_seconds_ = Now() - t;
  return absl::OkStatus();
}

absl::Status Controller::PublishInitialWeights() {
  published_ = false;
  for (int d : train_group_) {
    workers_[d].train_ops++;
    SendTo(d, PublishWeights{"initial"});
  }
  TIDAL_RETURN_IF_ERROR(WaitUntil(
      [&] {
        for (int d : train_group_) {
          if (workers_[d].train_ops > 0) return false;
        }
        return published_ && !weights_.empty() && weights_.front().first.version == published_version_;
      },
      "the initial weights"));
  const int64_t v = published_version_;
  version_ = v;
  for (int d : train_group_) {
    if (workers_[d].hosts_engine) workers_[d].relayed_version = v;
  }
  return absl::OkStatus();
}

absl::Status Controller::RunEval(const std::string& name, double* accuracy) {
  if (eval_tasks_.empty()) return absl::OkStatus();
  EvalRound round;
  round.name = name;
  round.version = version_;
  round.total = static_cast<int>(eval_tasks_.size());
  round.id = ++eval_rounds_;
  round.started = Now();
  for (int i = 0; i < round.total; ++i) round.queued.push_back(i);
  eval_ = std::move(round);
  TIDAL_RETURN_IF_ERROR(WaitUntil([&] { return !eval_->active(); }, "evaluation"));
  double acc = static_cast<double>(eval_->correct) / eval_->total;
  *accuracy = acc;
  last_eval_acc_ = acc;
  WriteEvent({{"event", "eval"}, {"name", name}, {"version", eval_->version}, {"accuracy", acc},
              {"correct", eval_->correct}, {"total", eval_->total},
              {"seconds", Now() - eval_->started}, {"wall", Now()}});
  if (metrics_) metrics_->Set("tidal_eval_accuracy", {{"split", "eval"}}, acc);
  std::fprintf(stderr, "%seval (%s, policy v%lld): greedy accuracy %.3f (%d/%d) in %.1f s\n",
               tty_ ? "\r\033[K" : "", name.c_str(), static_cast<long long>(eval_->version), acc,
               eval_->correct, eval_->total, Now() - eval_->started);
  eval_.reset();
  return absl::OkStatus();
}

absl::Status Controller::RunRl() {
  rl_started_ = Now();
  last_agent_session_ = rl_started_;
  pool_.Advance(rl_started_);
  rl_time_start_ = pool_.Total();
  const int64_t every = recipe_.eval.every;
  int64_t next_eval = every > 0 ? every : -1;
  while (steps_done_ < recipe_.train.steps) {
    TIDAL_RETURN_IF_ERROR(WaitUntil(
        [&] { return steps_done_ >= recipe_.train.steps || (next_eval > 0 && steps_done_ >= next_eval); },
        "training"));
    if (next_eval > 0 && steps_done_ >= next_eval && steps_done_ < recipe_.train.steps) {
      // Mid-run eval shares the engines with rollout (eval items go first); versions may move
      // while it runs, so it is labelled with the version it started at.
      double acc;
      TIDAL_RETURN_IF_ERROR(RunEval(absl::StrCat("step-", steps_done_), &acc));
      next_eval += every;
    }
  }
  rl_ended_ = Now();
  pool_.Advance(rl_ended_);
  rl_time_end_ = pool_.Total();
  return absl::OkStatus();
}

absl::Status Controller::FinishRl() {
  // Give back what is not needed any more: queued and stored prompts are dropped, in-flight work
  // is aborted on its worker and dropped when the worker confirms.
  finishing_ = true;
  for (int64_t id : store_.Clear()) DropPrompt(id, "unused_at_run_end");
  for (int64_t id : agent_groups_.TakeOpen()) DropPrompt(id, "agent_group_incomplete_at_run_end");
  for (int64_t id : ledger_.InState(PromptState::kQueued)) DropPrompt(id, "unused_at_run_end");
  bool any = false;
  for (int d = 0; d < pool_.size(); ++d) {
    if (!workers_[d].rl.empty() && workers_[d].state == Worker::State::kReady) {
      SendTo(d, AbortWork{});
      any = true;
    }
  }
  if (any) {
    auto deadline = Now() + 10.0;
    absl::Status s = WaitUntil(
        [&] {
          if (Now() > deadline) return true;
          for (const auto& w : workers_) {
            if (!w.rl.empty() && w.state == Worker::State::kReady) return false;
          }
          return true;
        },
        "aborted work");
    if (!s.ok()) return s;
  }
  // Work on workers that never answered stays open: it shows up as unaccounted.
  return absl::OkStatus();
}

absl::Status Controller::ExportFinal() {
  std::string dir = (fs::path(run_dir_) / "final").string();
  export_replies_ = static_cast<int>(train_group_.size());
  export_error_.clear();
  for (int d : train_group_) {
    workers_[d].train_ops++;
    SendTo(d, ExportModel{dir});
  }
  TIDAL_RETURN_IF_ERROR(WaitUntil([&] { return export_replies_ == 0; }, "the final model export"));
  if (!export_error_.empty()) return absl::InternalError(absl::StrCat("export to ", dir, ": ", export_error_));
  TIDAL_LOG(INFO) << "final model (HF format) in " << dir;
  return absl::OkStatus();
}

void Controller::Shutdown() {
  stopping_ = true;
  if (router_) {
    for (int d = 0; d < static_cast<int>(workers_.size()); ++d) {
      if (!workers_[d].peer.empty()) SendTo(d, scheduler::Shutdown{"run finished"});
    }
  }
  if (launcher_) {
    auto deadline = Now() + 5.0;
    while (Now() < deadline) {
      launcher_->Reap();
      bool left = false;
      for (int d = 0; d < pool_.size(); ++d) left |= launcher_->Pid(d) > 0;
      if (!left) break;
      usleep(20000);
    }
    launcher_->Stop(absl::Seconds(3));
  }
}

// ---------------------------------------------------------------------------------------------
// Reporting

void Controller::WriteEvent(json event) {
  if (!jsonl_) return;
  absl::Status s = jsonl_->Write(std::move(event));
  if (!s.ok()) TIDAL_LOG(WARN) << s;
}

void Controller::WriteControllerState(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  json st = {{"step", steps_done_}, {"version", version_},
             {"prompts_created", ledger_.created()}};
  std::ofstream(fs::path(dir) / "controller_state.json") << st.dump(2) << "\n";
}

void Controller::PruneCheckpoints() {
  std::vector<std::pair<int64_t, fs::path>> ckpts;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(ckpt_dir_, ec)) {
    std::string n = e.path().filename().string();
    if (n.rfind("step-", 0) == 0) ckpts.emplace_back(std::atoll(n.c_str() + 5), e.path());
  }
  std::sort(ckpts.begin(), ckpts.end());
  for (size_t i = 0; i + recipe_.checkpoint.keep < ckpts.size(); ++i) {
    absl::Status removed = RemoveTree(ckpts[i].second.string());
    if (!removed.ok()) TIDAL_LOG(WARN) << removed;
    TIDAL_LOG(INFO) << "removed old checkpoint " << ckpts[i].second.string();
  }
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
  while (rollout_window_.size() > 1 && now - rollout_window_.front().first > 20.0) rollout_window_.pop_front();
  double rollout_tps = 0;
  if (rollout_window_.size() > 1) {
    double dt = rollout_window_.back().first - rollout_window_.front().first;
    // A window shorter than a second (the first results) would overstate the rate.
    if (dt >= 1.0) rollout_tps = (rollout_window_.back().second - rollout_window_.front().second) / dt;
  }
  double train_tps = train_seconds_total_ > 0 ? train_tokens_total_ / train_seconds_total_ : 0;
  double elapsed = now - rl_started_;
  const int64_t session_steps = steps_done_ - resume_step_;
  double eta = session_steps > 0 ? elapsed / session_steps * (recipe_.train.steps - steps_done_) : -1;
  DeviceTime total = pool_.Total();
  std::string line = absl::StrFormat(
      "step %d/%d | reward %.3f | acc %.3f | eval %s | rollout %.0f tok/s | train %.0f tok/s | "
      "staleness %.2f | idle %.0f%% | ETA %s",
      steps_done_, recipe_.train.steps, last_reward_, last_accuracy_,
      last_eval_acc_ >= 0 ? absl::StrFormat("%.3f", last_eval_acc_) : std::string("-"), rollout_tps,
      train_tps, last_staleness_, 100.0 * total.IdleFraction(), FormatDuration(eta));
  std::fprintf(stderr, tty_ ? "\r\033[K%s" : "%s\n", line.c_str());
}

void Controller::ExportMetrics() {
  if (!metrics_) return;
  for (int d = 0; d < pool_.size(); ++d) {
    const auto& dev = pool_.device(d);
    std::string name = dev.slot.Name();
    for (Tag t : {Tag::kRollout, Tag::kTrain}) {
      int k = static_cast<int>(t);
      metrics_->Set("tidal_device_seconds", {{"device", name}, {"tag", TagName(t)}, {"state", "busy"}}, dev.time.busy[k]);
      metrics_->Set("tidal_device_seconds", {{"device", name}, {"tag", TagName(t)}, {"state", "idle"}}, dev.time.idle[k]);
    }
    metrics_->Set("tidal_device_tag_is_train", {{"device", name}}, dev.tag == Tag::kTrain ? 1 : 0);
    metrics_->Set("tidal_device_idle_fraction", {{"device", name}}, dev.time.IdleFraction());
    metrics_->Set("tidal_device_inflight_groups", {{"device", name}},
                  static_cast<double>(workers_[d].rl.size() + workers_[d].eval.size()));
  }
  metrics_->Set("tidal_pool_idle_fraction", {}, pool_.Total().IdleFraction());
  LedgerSummary s = ledger_.Summary();
  metrics_->Set("tidal_prompts", {{"state", "queued"}}, static_cast<double>(s.queued));
  metrics_->Set("tidal_prompts", {{"state", "in_flight"}}, static_cast<double>(s.in_flight));
  metrics_->Set("tidal_prompts", {{"state", "stored"}}, static_cast<double>(s.stored));
  metrics_->Set("tidal_prompts", {{"state", "trained"}}, static_cast<double>(s.trained));
  metrics_->Set("tidal_prompts", {{"state", "dropped"}}, static_cast<double>(s.dropped));
  metrics_->Set("tidal_prompts_requeued", {}, static_cast<double>(s.requeued));
  metrics_->Set("tidal_store_groups", {}, store_.size());
  metrics_->Set("tidal_weight_sync_bytes_relayed", {}, static_cast<double>(weight_bytes_relayed_));
  metrics_->Set("tidal_weight_sync_rejected", {}, static_cast<double>(weight_rejected_));
  int64_t restarts = 0;
  for (const auto& w : workers_) restarts += w.restarts;
  metrics_->Set("tidal_worker_restarts", {}, static_cast<double>(restarts));
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
  for (int d = 0; d < pool_.size(); ++d) {
    const auto& dev = pool_.device(d);
    DeviceSummary ds;
    ds.device = dev.slot.Name();
    ds.home_tag = TagName(dev.home);
    ds.busy_rollout_s = dev.time.busy[0];
    ds.busy_train_s = dev.time.busy[1];
    ds.idle_rollout_s = dev.time.idle[0];
    ds.idle_train_s = dev.time.idle[1];
    ds.idle_fraction = dev.time.IdleFraction();
    ds.tag_moves = dev.tag_moves;
    ds.restarts = workers_.empty() ? 0 : workers_[d].restarts;
    s.worker_restarts += ds.restarts;
    s.devices.push_back(ds);
  }
  s.idle_fraction = pool_.Total().IdleFraction();
  if (rl_ended_ > 0) {
    DeviceTime rl;
    for (int t = 0; t < 2; ++t) {
      rl.busy[t] = rl_time_end_.busy[t] - rl_time_start_.busy[t];
      rl.idle[t] = rl_time_end_.idle[t] - rl_time_start_.idle[t];
    }
    s.rl_idle_fraction = rl.IdleFraction();
  }
  LedgerSummary l = ledger_.Summary();
  s.prompts_created = l.created;
  s.prompts_trained = l.trained;
  s.prompts_dropped = l.dropped;
  s.prompts_requeued = l.requeued;
  s.prompts_unaccounted = l.unaccounted();
  s.dropped_by_reason = l.dropped_by_reason;
  s.weight_versions = weight_versions_;
  s.weight_bytes_relayed = weight_bytes_relayed_;
  s.weight_rejected = weight_rejected_;
  s.rollout_tokens_per_s = s.rl_seconds > 0 ? rollout_tokens_total_ / s.rl_seconds : 0;
  s.train_tokens_per_s = train_seconds_total_ > 0 ? train_tokens_total_ / train_seconds_total_ : 0;
  s.mean_staleness = staleness_groups_ > 0 ? staleness_sum_ / staleness_groups_ : 0;
  s.response_tokens_mean = response_count_ > 0 ? response_len_sum_ / response_count_ : 0;
  s.response_tokens_max = response_len_max_;
  s.stopped_early = g_stop.load() || steps_done_ < recipe_.train.steps;
  s.agent_sessions = agent_groups_.sessions();
  s.agent_sessions_late = agent_sessions_late_;
  return s;
}

absl::StatusOr<RunSummary> Controller::Run() {
  TIDAL_RETURN_IF_ERROR(PrepareRunDir());
  envs::EnvSpec spec;
  spec.plugin = recipe_.env.plugin;
  spec.args = recipe_.env.args.is_null() ? json::object() : recipe_.env.args;
  spec.isolate = recipe_.env.isolate;
  spec.timeout_s = recipe_.env.timeout_s;
  TIDAL_ASSIGN_OR_RETURN(env_, envs::Environment::Open(spec));
  for (int64_t i = 0; i < recipe_.env.eval_prompts; ++i) {
    TIDAL_ASSIGN_OR_RETURN(envs::Task t, env_->Reset(static_cast<uint64_t>(i), envs::Split::kEval));
    eval_tasks_.push_back(std::move(t));
  }
  // control.bind / CURVE / credentials / tokens: scheduler/control_plane.h.
  TIDAL_ASSIGN_OR_RETURN(control_, PrepareControlPlane(recipe_, run_dir_));
  if (recipe_.metrics.port > 0) {
    TIDAL_ASSIGN_OR_RETURN(metrics_, MetricsSink::Serve(recipe_.metrics.bind, static_cast<int>(recipe_.metrics.port),
                                                        IsLoopbackHost(recipe_.metrics.bind) ? "" : control_.http_token));
    TIDAL_LOG(INFO) << "metrics on " << metrics_->url();
  } else {
    metrics_ = MetricsSink::Local();
  }

  absl::Status status = StartWorkers();
  if (status.ok()) status = RunWarmup();
  if (status.ok()) status = PublishInitialWeights();
  if (status.ok()) status = RunEval("after_warmup", &eval_acc_start_);
  if (status.ok()) status = RunRl();
  absl::Status finish = fatal_.ok() ? FinishRl() : absl::OkStatus();
  if (status.ok()) status = finish;
  if (status.ok()) status = RunEval("final", &eval_acc_end_);
  if (status.ok()) status = ExportFinal();
  std::fprintf(stderr, "%s", tty_ ? "\n" : "");
  Shutdown();
  pool_.Advance(Now());

  RunSummary summary = Summarize();
  json js = summary.ToJson();
  std::ofstream(fs::path(run_dir_) / "summary.json") << js.dump(2) << "\n";
  js["event"] = "summary";
  WriteEvent(js);
  std::fprintf(stderr, "%s", summary.Format().c_str());
  if (!status.ok()) return status;
  return summary;
}

}  // namespace

void RequestStop() { g_stop.store(true); }

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
          {"weight_sync", {{"versions", weight_versions}, {"bytes_relayed", weight_bytes_relayed},
                           {"rejected", weight_rejected}}},
          {"worker_restarts", worker_restarts},
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
  absl::StrAppendFormat(&out, "weight sync: %d versions, %.1f MB relayed, %d rejected | worker restarts %d\n",
                        weight_versions, weight_bytes_relayed / 1e6, weight_rejected, worker_restarts);
  return out;
}

absl::StatusOr<RunSummary> RunController(const Recipe& recipe, const RunOptions& options) {
  Controller c(recipe, options);
  return c.Run();
}

}  // namespace tidal::scheduler
