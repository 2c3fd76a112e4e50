#include "scheduler/controller_internal.h"

#include <signal.h>

#include "core/atomic_file.h"

namespace tidal::scheduler::detail {

void Controller::HandleRegister(const Envelope& env) {
  absl::StatusOr<Register> reg = env.As<Register>();
  if (!reg.ok() || reg->rank < 0 || reg->rank >= static_cast<int>(workers_.size())) {
    (void)router_->ReplyError(env, absl::InvalidArgumentError("register: bad or out-of-range rank"));
    return;
  }
  int d = reg->rank;
  // The one credential check (scheduler/worker_auth.h): a one-time token for this rank, which
  // only the process launched for it holds. Anyone else (another user, a replayed Register, a
  // second claim on a live rank) is refused and stays unadmitted (small frames only).
  const std::string token = reg->info.is_object() && reg->info.contains("token") && reg->info["token"].is_string()
                                ? reg->info["token"].get<std::string>()
                                : "";
  if (absl::Status s = control_.auth->Check(d, token); !s.ok()) {
    ++registers_refused_;
    // `d` is in range: checked above.
    const std::string holder =
        workers_[d].peer.empty() ? "" : absl::StrCat("; rank ", d, " is held by '", workers_[d].peer, "'");
    TIDAL_LOG(WARN) << "refused a Register for rank " << d << " from peer '" << env.peer << "' (host '" << reg->host
                    << "', pid " << reg->pid << "): " << s.message() << holder;
    WriteEvent({{"event", "registration_refused"}, {"device", d}, {"peer", env.peer}, {"host", reg->host},
                {"pid", reg->pid}, {"reason", std::string(s.message())}});
    (void)router_->ReplyError(env, s);
    return;
  }
  router_->Admit(env.peer);
  WorkerSlot& w = workers_[d];
  w.peer = env.peer;
  WorkerSetup setup;
  setup.run_dir = run_dir_;
  setup.recipe_path = (fs::path(run_dir_) / "recipe.yaml").string();
  setup.device = d;
  setup.device_name = pool_.device(d).slot.Name();
  setup.train_group = train_group_;
  setup.train_rank = w.train_rank;
  setup.hosts_engine = w.hosts_engine;
  setup.comm_group = MembershipName(train_group_);
  setup.tag = pool_.device(d).tag;
  setup.release_engine_memory = std::holds_alternative<ColocatedPolicy>(policy_);
  setup.resume_dir = resume_dir_;
  if (auto it = nccl_ids_.find(setup.comm_group); it != nccl_ids_.end()) setup.nccl_id = it->second;
  setup.weight_transport = transport_;
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
  WorkerSlot& w = workers_[d];
  auto bad = [&](const absl::Status& s) { TIDAL_LOG(WARN) << s; };

  if (env.Is<WorkerReady>()) {
    auto r = env.As<WorkerReady>();
    if (!r.ok()) return bad(r.status());
    w.state = WorkerSlot::State::kReady;
    if (w.openai_url != r->openai_url) {
      w.openai_url = r->openai_url;
      WriteAgentEndpoints();
    }
    TIDAL_LOG(INFO) << "device " << d << " ready in " << r->init_seconds << " s (engine "
                    << r->engine << ", trainer " << r->trainer << ")";
    // A (re)started engine worker gets the current policy at once (the broadcast group: it joins,
    // and the version is owed to it).
    if (w.hosts_engine && relay_.latest_version() >= 0) RelayVersionTo(d);
    if (bcast_ && w.train_rank >= 0) SendTo(d, bcast_->CurrentEpoch());
    if (bcast_ && w.hosts_engine && w.train_rank < 0) SendBroadcast(bcast_->ReceiverReady(d, version_));
    WriteEvent({{"event", "worker_ready"}, {"device", d}, {"restarts", w.restarts},
                {"relayed_version", w.relayed_version}, {"policy_version", version_},
                {"init_seconds", r->init_seconds}});
    // Tell it where the policy has its tag now (a restarted device may have moved).
    SendTo(d, SetTag{pool_.device(d).tag});
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
      // Keyed by device and version: a device that can never take a version stops the run.
      const int64_t key = r->version * 1024 + d;
      if (absl::Status spent = weight_resends_.Failure(
              absl::StrCat("device ", d, " version ", r->version, ": ", r->error), key);
          !spent.ok()) {
        return Fatal(spent);
      }
      WriteEvent({{"event", "weight_rejected"}, {"device", d}, {"version", r->version},
                  {"serving_version", w.applied_version}, {"error", r->error}});
      w.relayed_version = w.applied_version;
      if (relay_.latest_version() == r->version) RelayVersionTo(d);
      if (bcast_) bcast_->OnRejected(d, r->version);
    }
  } else if (env.Is<WeightGroupKey>()) {
    auto r = env.As<WeightGroupKey>();
    if (!r.ok()) return bad(r.status());
    if (bcast_) SendBroadcast(bcast_->OnKey(d, *r));
  } else if (env.Is<WeightBroadcastStarting>()) {
    auto r = env.As<WeightBroadcastStarting>();
    if (!r.ok()) return bad(r.status());
    if (bcast_) SendBroadcast(bcast_->OnStarting(d, *r));
  } else if (env.Is<WeightBroadcastDone>()) {
    auto r = env.As<WeightBroadcastDone>();
    if (!r.ok()) return bad(r.status());
    OnBroadcastDone(d, *r);
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
      absl::Status st = WriteControllerState(pending_ckpt_dir_, {steps_done_, version_, ledger_.created(), run_id_});
      if (!st.ok()) {
        Fatal(st);
      } else {
        TIDAL_LOG(INFO) << "checkpoint " << pending_ckpt_dir_ << " committed (step " << steps_done_ << ")";
        PruneCheckpoints(ckpt_dir_, recipe_.checkpoint.keep, run_id_);
      }
    }
  } else if (env.Is<TrainGroupSaved>()) {
    auto r = env.As<TrainGroupSaved>();
    if (!r.ok()) return bad(r.status());
    --w.train_ops;
    OnTrainGroupSaved(d, *r);
  } else if (env.Is<TrainGroupJoined>()) {
    auto r = env.As<TrainGroupJoined>();
    if (!r.ok()) return bad(r.status());
    --w.train_ops;
    OnTrainGroupJoined(d, *r);
  } else if (env.Is<ExportDone>()) {
    auto r = env.As<ExportDone>();
    if (!r.ok()) return bad(r.status());
    --w.train_ops;
    --export_replies_;
    if (!r->error.empty()) export_error_ = r->error;
  } else if (env.Is<WorkerMetrics>()) {
    auto r = env.As<WorkerMetrics>();
    if (!r.ok()) return bad(r.status());
    telemetry_->OnWorkerMetrics(pool_.device(d).slot.Name(), TagName(pool_.device(d).home), r->families, Now());
  } else if (env.Is<WorkerError>()) {
    auto r = env.As<WorkerError>();
    if (!r.ok()) return bad(r.status());
    TIDAL_LOG(ERROR) << "device " << d << ": " << r->what << ": " << r->detail;
    if (w.train_rank >= 0 && !stopping_) {
      Fatal(TrainGroupLost(absl::InternalError(absl::StrCat("train rank ", w.train_rank, " (device ", d, "): ",
                                                            r->what, ": ", r->detail))));
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
    ExitPlan plan = workers_.OnExit(e.device, stopping_, finishing_);
    for (int64_t id : plan.dropped_at_run_end) DropPrompt(id, "worker_exited_at_run_end");
    if (stopping_) continue;
    const WorkerSlot& w = workers_[e.device];
    TIDAL_LOG(WARN) << "device " << e.device << " worker (pid " << e.pid << ") " << e.Describe();
    WriteEvent({{"event", "worker_died"}, {"device", e.device}, {"pid", e.pid},
                {"how", e.Describe()}, {"policy_version", version_}, {"in_flight", plan.in_flight}});
    if (plan.action == ExitPlan::Action::kTrainRankLost) {
      Fatal(TrainGroupLost(absl::UnavailableError(absl::StrFormat(
          "train rank %d (device %s) %s; the sharded train group cannot continue",
          w.train_rank, pool_.device(e.device).slot.Name(), e.Describe()))));
      continue;
    }
    if (resize_ && resize_->phase == GroupResize::Phase::kJoin &&
        std::find(resize_->from.begin(), resize_->from.end(), e.device) != resize_->from.end()) {
      // A device leaving the train group died before confirming: it has nothing left to hand over
      // (its state is in the saved hand-off), so it counts as having left.
      OnTrainGroupJoined(e.device, TrainGroupJoined{steps_done_, -1, 0, "", 0, false});
    }
    if (bcast_) SendBroadcast(bcast_->ReceiverGone(e.device));
    std::vector<int64_t> requeued = ledger_.RequeueWorker(e.device);
    if (eval_) {
      for (int64_t i : plan.eval_requeue) eval_->queued.push_front(static_cast<int>(i));
    }
    TIDAL_LOG(WARN) << "requeued " << requeued.size() << " prompts of device " << e.device;
    if (plan.action == ExitPlan::Action::kGiveUp) {
      Fatal(absl::UnavailableError(absl::StrFormat("device %d died %d times; giving up "
                                                   "(control.budget.restarts = %d)",
                                                   e.device, w.restarts + 1,
                                                   workers_.policy().max_restarts_per_device)));
      continue;
    }
    absl::StatusOr<pid_t> pid =
        launcher_->Spawn(e.device, pool_.device(e.device).slot, control_.auth->Issue(e.device));
    if (!pid.ok()) {
      Fatal(pid.status());
      continue;
    }
    TIDAL_LOG(INFO) << "restarted device " << e.device << " as pid " << *pid;
  }
}

void Controller::OnRolloutResult(int d, const RolloutResult& r) {
  WorkerSlot& w = workers_[d];
  if (r.eval) {
    if (w.eval.erase(r.prompt_id) == 0 || !eval_ || r.attempt != eval_->id) return;
    ++eval_->done;
    if (!r.samples.empty() && r.samples.front().correct) ++eval_->correct;
    for (const auto& s : r.samples) acct_.rollout_tokens += static_cast<int64_t>(s.response_ids.size());
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
    PromptFailed(r.prompt_id, "rollout_error", absl::StrCat("device ", d, ": ", r.error));
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
    metrics_->SetTotal("tidal_agent_sessions_total", {}, static_cast<double>(agent_groups_.sessions()));
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
  const std::string path = (fs::path(run_dir_) / "openai_endpoints.json").string();
  if (absl::Status s = WriteFileAtomic(path, json{{"endpoints", endpoints}}.dump(2) + "\n"); !s.ok()) {
    TIDAL_LOG(WARN) << s;
  }
}

void Controller::OnTrainStepDone(int d, const TrainStepDone& r) {
  if (!train_running_ || r.step != steps_done_) {
    TIDAL_LOG(WARN) << "unexpected TrainStepDone for step " << r.step;
    return;
  }
  acct_.train_tokens += r.tokens;
  if (workers_[d].train_rank == 0) train_stats_ = r.stats;
  if (workers_[d].train_rank == 0 && r.stats.is_object()) {
    // Every rank skips together; rank 0 reports it once.
    const double skipped = r.stats.value("nonfinite_skipped", 0.0);
    if (skipped > 0) {
      nonfinite_skipped_ += static_cast<int64_t>(skipped);
      TIDAL_LOG(WARN) << "step " << r.step << ": " << skipped
                      << " update(s) skipped for a non-finite loss or gradient (train.max_nonfinite_steps in a row stop the run)";
    }
  }
  if (--train_replies_ > 0) return;
  double secs = Now() - train_step_started_;
  acct_.train_seconds += secs;
  MeasureStep(secs);
  for (const auto& g : training_batch_) {
    absl::Status s = ledger_.Trained(g.prompt_id, r.step);
    if (!s.ok()) TIDAL_LOG(WARN) << s;
    tasks_.erase(g.prompt_id);
  }
  if (!training_batch_.empty()) drops_.Success();
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
             {"reward", acct_.last_reward},
             {"accuracy", acct_.last_accuracy},
             {"staleness", acct_.last_staleness},
             {"zero_variance_groups_kept", acct_.last_kept_unfiltered},
             {"train_seconds", secs},
             {"train_tokens", r.tokens},
             {"publish_seconds", r.publish_seconds},
             {"rollout_tokens_total", acct_.rollout_tokens},
             {"wall", Now()},
             {"stats", train_stats_}};
  WriteEvent(ev);
  if (metrics_) {
    metrics_->SetTotal("tidal_steps_total", {}, static_cast<double>(step));
    metrics_->Set("tidal_policy_version", {}, static_cast<double>(version_));
    metrics_->Set("tidal_reward_mean", {}, acct_.last_reward);
    metrics_->Set("tidal_train_accuracy", {}, acct_.last_accuracy);
    metrics_->Set("tidal_staleness_mean", {}, acct_.last_staleness);
    metrics_->Add("tidal_train_tokens_total", {}, static_cast<double>(r.tokens));
    metrics_->Observe("tidal_train_step_wall_seconds", {}, secs);
    // The trainer's statistics (loss parts, grad norm, mismatch KL) are summaries in the train
    // workers' metrics (scheduler/worker_metrics.h), labelled by device.
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

void Controller::OnWeightBucket(int d, const Envelope& env) {
  auto b = env.As<weight_sync::WeightBucket>();
  if (!b.ok() || env.frames.size() != 1) {
    TIDAL_LOG(WARN) << "bad weight bucket from device " << d;
    return;
  }
  if (b->index == 0) relay_started_ = Now();
  const bool complete = relay_.Accept(*b, env.frames[0]);
  // Stream each bucket on as it arrives (the receiver verifies every one before it swaps).
  for (int dev = 0; dev < pool_.size(); ++dev) {
    WorkerSlot& w = workers_[dev];
    if (!w.hosts_engine || w.train_rank >= 0 || w.state != WorkerSlot::State::kReady) continue;
    SendTo(dev, *b, {relay_.Stream(*b, env.frames[0], dev)});
    if (b->index + 1 == b->count) w.relayed_version = b->version;
  }
  if (complete && metrics_) {
    metrics_->Add("tidal_weight_sync_versions_total", {}, 1);
    metrics_->Observe("tidal_weight_sync_relay_seconds", {}, Now() - relay_started_);
    metrics_->Set("tidal_weight_sync_version_bytes", {}, static_cast<double>(b->total_bytes));
  }
}

void Controller::SendBroadcast(const BroadcastControl::Outbox& out) {
  for (const auto& [d, m] : out.epochs) SendTo(d, m);
  for (const auto& [d, m] : out.joins) SendTo(d, m);
  for (const auto& [d, m] : out.incoming) {
    SendTo(d, m);
    // The receiver handles WeightIncoming before any later RolloutWork, and holds new work until
    // the version is applied (or refused), so dispatch may count on it now.
    workers_[d].relayed_version = std::max(workers_[d].relayed_version, m.version);
  }
}

void Controller::OnBroadcastDone(int d, const WeightBroadcastDone& m) {
  if (!bcast_) return;
  if (m.ok) {
    if (metrics_) {
      metrics_->Add("tidal_weight_sync_versions_total", {}, 1);
      metrics_->Add("tidal_weight_sync_broadcast_bytes_total", {}, static_cast<double>(m.bytes));
      metrics_->Observe("tidal_weight_sync_broadcast_seconds", {}, m.send_seconds);
      metrics_->Set("tidal_weight_sync_version_bytes", {}, static_cast<double>(m.bytes));
    }
  } else {
    TIDAL_LOG(WARN) << "weight broadcast of version " << m.version << " (epoch " << m.epoch << ", " << m.receivers
                    << " receivers) failed: " << m.error << (m.group_dead ? "; new epoch, resending" : "");
    WriteEvent({{"event", "weight_broadcast_failed"}, {"version", m.version}, {"epoch", m.epoch},
                {"group_dead", m.group_dead}, {"error", m.error}});
    if (metrics_) metrics_->Add("tidal_weight_sync_broadcast_failures_total", {}, 1);
    // Every retry has a budget: the same one a rejecting receiver spends.
    if (absl::Status spent = weight_resends_.Failure(
            absl::StrCat("broadcast of version ", m.version, ": ", m.error), m.version * 1024 + d);
        !spent.ok()) {
      return Fatal(spent);
    }
  }
  SendBroadcast(bcast_->OnDone(d, m));
}

void Controller::MaybeResendBroadcast() {
  if (!bcast_ || !bcast_->ResendDue() || train_running_ || resize_ || finishing_) return;
  if (bcast_->membership().world_size() < 2) return;  // nobody to send to
  for (int d : train_group_) {
    if (workers_[d].state != WorkerSlot::State::kReady || workers_[d].train_ops > 0) return;
  }
  TIDAL_LOG(INFO) << "weight broadcast: resending version " << *bcast_->ResendDue() << " to "
                  << bcast_->Receivers().size() << " receiver(s)";
  WriteEvent({{"event", "weight_resend"}, {"version", *bcast_->ResendDue()}, {"policy_version", version_},
              {"epoch", bcast_->membership().epoch()}, {"receivers", bcast_->Receivers().size()}});
  bcast_->ResendStarted();
  for (int d : train_group_) {
    workers_[d].train_ops++;
    SendTo(d, PublishWeights{"broadcast resend"});
  }
}

void Controller::RelayVersionTo(int d) {
  for (const auto& [b, frame] : relay_.Resend(d)) SendTo(d, b, {frame});
  if (relay_.latest_version() >= 0) workers_[d].relayed_version = relay_.latest_version();
}

}  // namespace tidal::scheduler::detail
