#include "scheduler/controller.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/cord.h"
#include "absl/strings/str_format.h"

#include "core/clock.h"
#include "scheduler/controller_internal.h"

namespace tidal::scheduler {
namespace detail {
namespace {
std::atomic<bool> g_stop{false};
}  // namespace

bool StopRequested() { return g_stop.load(); }

constexpr char kTrainGroupLostUrl[] = "tidal.dev/train-group-lost";

absl::Status TrainGroupLost(absl::Status status) {
  status.SetPayload(kTrainGroupLostUrl, absl::Cord("1"));
  return status;
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

int Controller::DeviceOfPeer(const std::string& peer) const { return workers_.DeviceOfPeer(peer); }

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
  MaybeResize();
  ApplyPolicy();
  DispatchEval();
  DispatchRl();
  MaybeStartTrainStep();
  MaybeResendBroadcast();
  UpdateBusy();
  Progress(false);
}

// ---------------------------------------------------------------------------------------------
// Phases

absl::Status Controller::RunWarmup() {
  const auto& sft = recipe_.warmup.sft;
  if (sft.steps <= 0 || !resume_dir_.empty()) return absl::OkStatus();
  double t = Now();
  TIDAL_LOG(INFO) << "warm-up: " << sft.steps << " SFT steps of " << sft.batch_size << " examples";
  warming_up_ = true;
  absl::Cleanup done = [this] { warming_up_ = false; };
  int64_t example = 0;
  for (int64_t step = 0; step < sft.steps; ++step) {
    std::vector<SftStep> shares(train_group_.size());
    for (int64_t i = 0; i < sft.batch_size; ++i) {
      absl::StatusOr<envs::Task> task = tasks_source_->Get(TaskSeed(recipe_.seed, 2, example++), envs::Split::kTrain);
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
        std::fprintf(stdout, "%swarm-up %lld/%lld | sft loss %.4f | %s%s", tty_ ? "\r\033[K" : "",
                     static_cast<long long>(step + 1), static_cast<long long>(sft.steps), sft_loss_,
                     FormatDuration(Now() - t).c_str(), tty_ ? "" : "\n");
      }
    }
  }
  if (options_.progress && tty_) std::fprintf(stdout, "\n");
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
        // In-process: every engine took the version from its own trainer; the relay stays empty.
        // Broadcast: the receivers were sent the version before rank 0 answered.
        if (transport_ == weight_sync::TransportKind::kInProcess || bcast_) return published_;
        return published_ && relay_.latest_version() >= 0 && relay_.latest_version() == published_version_;
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
  std::fprintf(stdout, "%seval (%s, policy v%lld): greedy accuracy %.3f (%d/%d) in %.1f s\n",
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
    if (!workers_[d].rl.empty() && workers_[d].state == WorkerSlot::State::kReady) {
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
            if (!w.rl.empty() && w.state == WorkerSlot::State::kReady) return false;
          }
          return true;
        },
        "aborted work");
    if (!s.ok()) return s;
  }
  // Work on workers that never answered is dropped once they are stopped (AccountRemaining).
  return absl::OkStatus();
}

absl::Status Controller::CheckpointLast() {
  TIDAL_RETURN_IF_ERROR(
      WaitUntil([&] { return !train_running_ && ckpt_replies_ == 0 && !resize_; }, "the last train step"));
  if (steps_done_ <= 0 || train_group_.empty()) return absl::OkStatus();
  const std::string dir = (fs::path(ckpt_dir_) / absl::StrCat("step-", steps_done_)).string();
  std::error_code ec;
  if (fs::exists(fs::path(dir) / "controller_state.json", ec)) return absl::OkStatus();
  ckpt_replies_ = static_cast<int>(train_group_.size());
  for (int dev : train_group_) {
    workers_[dev].train_ops++;
    SendTo(dev, Checkpoint{steps_done_, dir});
  }
  pending_ckpt_dir_ = dir;
  TIDAL_RETURN_IF_ERROR(WaitUntil([&] { return ckpt_replies_ == 0; }, "the last checkpoint"));
  TIDAL_LOG(INFO) << "checkpointed the last step in " << dir;
  return absl::OkStatus();
}

bool Controller::RestoreStartEval() {
  if (resume_dir_.empty()) return false;
  std::ifstream in(fs::path(run_dir_) / "metrics.jsonl");
  bool found = false;
  for (std::string line; std::getline(in, line);) {
    json e = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (e.is_object() && e.value("event", "") == "eval" && e.value("name", "") == "after_warmup" &&
        e.contains("accuracy") && e["accuracy"].is_number()) {
      eval_acc_start_ = e["accuracy"].get<double>();
      found = true;
    }
  }
  if (found) TIDAL_LOG(INFO) << "resumed: after-warm-up eval accuracy " << eval_acc_start_ << " (from metrics.jsonl)";
  return found;
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

void Controller::AccountRemaining(const absl::Status& status) {
  // Every worker is gone: what the ledger still holds will never be trained. Each prompt is
  // dropped with the reason the run ended, so the summary accounts for all of them.
  const std::string reason = g_stop.load() ? "stopped" : status.ok() ? "unfinished_at_run_end" : "run_failed";
  for (int64_t id : store_.Clear()) DropPrompt(id, reason);
  for (int64_t id : agent_groups_.TakeOpen()) DropPrompt(id, reason);
  for (PromptState st : {PromptState::kQueued, PromptState::kInFlight, PromptState::kStored}) {
    for (int64_t id : ledger_.InState(st)) DropPrompt(id, reason);
  }
  for (int d = 0; d < workers_.size(); ++d) workers_[d].rl.clear();
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
// Run

absl::StatusOr<RunSummary> Controller::Run() {
  TIDAL_RETURN_IF_ERROR(PrepareRunDir());
  envs::EnvSpec spec;
  spec.plugin = recipe_.env.plugin;
  spec.args = recipe_.env.args.is_null() ? json::object() : recipe_.env.args;
  spec.isolate = recipe_.env.isolate;
  spec.timeout_s = recipe_.env.timeout_s;
  spec.reward_range = recipe_.env.reward_range;
  // The environment runs on the TaskSource's thread (and, with env.isolate, in its own process):
  // the loop below never runs plugin code.
  TIDAL_ASSIGN_OR_RETURN(tasks_source_, TaskSource::Open(spec));
  for (int64_t i = 0; i < recipe_.env.eval_prompts; ++i) {
    TIDAL_ASSIGN_OR_RETURN(envs::Task t, tasks_source_->Get(static_cast<uint64_t>(i), envs::Split::kEval));
    eval_tasks_.push_back(std::move(t));
  }
  // control.bind / CURVE / credentials / tokens: scheduler/control_plane.h.
  TIDAL_ASSIGN_OR_RETURN(control_, PrepareControlPlane(recipe_, run_dir_));
  TelemetryOptions to;
  to.run = recipe_.name;
  to.run_dir = run_dir_;
  to.bind = recipe_.metrics.bind;
  to.port = static_cast<int>(recipe_.metrics.port);
  to.tensorboard = recipe_.metrics.tensorboard;
  to.append = recipe_.checkpoint.resume;
  to.bearer_token = IsLoopbackHost(recipe_.metrics.bind) ? "" : control_.http_token;
  TIDAL_ASSIGN_OR_RETURN(telemetry_, RunTelemetry::Start(to));
  metrics_ = &telemetry_->metrics();
  if (options_.progress && !telemetry_->url().empty()) {
    std::fprintf(stderr, "dashboard: %s | metrics: %s\n", telemetry_->dashboard_url().c_str(), telemetry_->url().c_str());
  }

  absl::Status status = StartWorkers();
  if (status.ok()) status = RunWarmup();
  if (status.ok()) status = PublishInitialWeights();
  if (status.ok() && !RestoreStartEval()) status = RunEval("after_warmup", &eval_acc_start_);
  if (status.ok()) status = RunRl();
  // Ctrl-C / SIGTERM during the run: wind down, but keep what was trained (checkpoint + export).
  const bool stopped = absl::IsCancelled(status) && StopRequested() && fatal_.ok();
  absl::Status finish = fatal_.ok() ? FinishRl() : absl::OkStatus();
  if (status.ok()) status = finish;
  if ((status.ok() || stopped) && finish.ok() && rl_started_ > 0) {
    absl::Status kept = CheckpointLast();
    if (kept.ok() && status.ok()) kept = RunEval("final", &eval_acc_end_);
    if (kept.ok()) kept = ExportFinal();
    if (status.ok()) status = kept;
    if (!kept.ok()) TIDAL_LOG(ERROR) << "keeping the trained policy: " << kept;
  }
  std::fprintf(stdout, "%s", tty_ ? "\n" : "");
  Shutdown();
  AccountRemaining(status);
  pool_.Advance(Now());

  RunSummary summary = Summarize();
  json js = summary.ToJson();
  std::ofstream(fs::path(run_dir_) / "summary.json") << js.dump(2) << "\n";
  js["event"] = "summary";
  WriteEvent(js);
  std::fprintf(stdout, "%s", summary.Format().c_str());
  // A lost train rank may surface as another error on the way out (a wait cancelled by it): the
  // run's error is the loss, so RunController can restart from a checkpoint.
  if (!status.ok() && IsTrainGroupLost(fatal_)) return fatal_;
  if (!status.ok()) return status;
  return summary;
}

}  // namespace detail

void RequestStop() { detail::g_stop.store(true); }

absl::StatusOr<RunSummary> RunController(const Recipe& recipe, const RunOptions& options) {
  // A CUDA pool on a machine without (enough) GPUs fails here, before the run dir or any worker.
  const DeviceSet& ds = recipe.pool.device_set;
  if (ds.kind == DeviceSet::Kind::kCuda && !ds.indices.empty()) {
    TIDAL_RETURN_IF_ERROR(CheckCudaDevices(*std::max_element(ds.indices.begin(), ds.indices.end()),
                                           absl::StrCat("pool.devices '", recipe.pool.devices, "'")));
  }
  Recipe attempt = recipe;
  RunOptions opts = options;
  for (int restarts = 0;; ++restarts) {
    opts.train_group_restarts = restarts;
    absl::StatusOr<RunSummary> result;
    {
      detail::Controller c(attempt, opts);
      result = c.Run();
    }  // every worker of the attempt is stopped here
    if (result.ok() || !IsTrainGroupLost(result.status()) || detail::StopRequested()) return result;
    const std::string why(result.status().message());
    if (restarts >= recipe.control.budget.restarts) {
      return absl::UnavailableError(absl::StrFormat("%s; the run was restarted from a checkpoint %d times, the budget "
                                                    "(control.budget.restarts = %d)",
                                                    why, restarts, recipe.control.budget.restarts));
    }
    const std::string ckpt_dir = detail::CheckpointDirOf(attempt);
    absl::StatusOr<std::optional<ResumePoint>> point = FindResumePoint(ckpt_dir);
    if (!point.ok() || !point->has_value()) {
      return absl::UnavailableError(absl::StrFormat(
          "%s; no checkpoint of this run to restart from in %s (%s)", why, ckpt_dir,
          point.ok() ? absl::StrCat("checkpoint.every = ", recipe.checkpoint.every) : point.status().ToString()));
    }
    // The failed attempt's summary (its prompts accounted as run_failed) stays beside the next.
    const std::filesystem::path run_dir(attempt.run_dir);
    std::error_code ec;
    std::filesystem::rename(run_dir / "summary.json", run_dir / absl::StrCat("summary.attempt-", restarts + 1, ".json"), ec);
    TIDAL_LOG(WARN) << why << "; restarting the run from " << (*point)->dir << " (restart " << restarts + 1 << " of "
                    << recipe.control.budget.restarts << ", control.budget.restarts)";
    std::fprintf(stdout, "train group lost; restarting from %s\n", (*point)->dir.c_str());
    attempt.checkpoint.resume = true;
    opts.overwrite = false;  // the run dir now holds this run: never delete it
  }
}

bool IsTrainGroupLost(const absl::Status& status) {
  return !status.ok() && status.GetPayload(detail::kTrainGroupLostUrl).has_value();
}

}  // namespace tidal::scheduler
