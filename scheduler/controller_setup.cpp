// Controller setup (scheduler/controller_internal.h): the run directory (refusing to mix two runs,
// resume state, logs) and the workers' start-up (transport choice, train group, control plane,
// one launched process per device slot, waiting until every one registered and is ready).
#include <signal.h>
#include <unistd.h>

#include <filesystem>

#include "core/remove_tree.h"
#include "scheduler/controller_internal.h"

namespace tidal::scheduler::detail {

absl::Status Controller::PrepareRunDir() {
  run_dir_ = recipe_.run_dir;
  std::error_code ec;
  // Never mix two runs in one directory: a second `tidal run` of the same recipe would truncate
  // the first one's metrics and interleave checkpoints.
  if (fs::exists(fs::path(run_dir_) / "recipe.yaml", ec) && !recipe_.checkpoint.resume) {
    if (!options_.overwrite) {
      return absl::FailedPreconditionError(absl::StrCat(
          "run_dir '", run_dir_, "' already holds a run; continue it with `tidal run --resume ", run_dir_,
          "`, choose another run_dir (run_dir=... or name=...), or pass --overwrite to replace it"));
    }
    TIDAL_RETURN_IF_ERROR(RemoveTree(run_dir_));
  }
  fs::create_directories(fs::path(run_dir_) / "logs", ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat("run_dir: cannot create '", run_dir_, "': ", ec.message()));
  }
  ckpt_dir_ = CheckpointDirOf(recipe_);
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
  // Where every tag move is written (docs/controller.md, "Tag timeline"); a resumed run appends.
  timeline_.Open((fs::path(run_dir_) / "tag_timeline.jsonl").string(), recipe_.checkpoint.resume);
  TIDAL_RETURN_IF_ERROR(InitLogging(
      {.role = "controller", .rank = -1, .file = (fs::path(run_dir_) / "logs" / "controller.log").string(),
       .level = std::nullopt}));

  run_id_ = NewRunId();  // a resumed run keeps the id of the checkpoint it continues
  if (!recipe_.checkpoint.resume) {
    // A fresh run never overwrites or adopts another run's checkpoints (a shared checkpoint.dir).
    TIDAL_RETURN_IF_ERROR(CheckFreshCheckpointDir(ckpt_dir_, options_.overwrite));
  } else {
    TIDAL_ASSIGN_OR_RETURN(std::optional<ResumePoint> resume, FindResumePoint(ckpt_dir_));
    if (resume) {
      resume_dir_ = resume->dir;
      resume_step_ = resume->step;
      run_id_ = resume->run_id;
      steps_done_ = resume_step_;
      TIDAL_LOG(INFO) << "resuming from " << resume_dir_ << " (step " << resume_step_ << ")";
    } else {
      TIDAL_LOG(WARN) << "checkpoint.resume: no checkpoint in " << ckpt_dir_ << "; starting fresh";
    }
  }
  return absl::OkStatus();
}

absl::Status Controller::StartWorkers() {
  policy_ = TagPolicyFor(recipe_.pool.policy);
  TIDAL_ASSIGN_OR_RETURN(transport_, weight_sync::SelectTransport(recipe_.weight_sync.backend,
                                                                  recipe_.pool.device_set.kind, recipe_.pool.policy));
  TIDAL_LOG(INFO) << "weight sync: " << weight_sync::TransportName(transport_) << " transport";
  RouterOptions ro = control_.router;  // control.bind + CURVE keys (scheduler/control_plane.h)
  ro.heartbeat.interval = absl::Milliseconds(recipe_.control.heartbeat_ms);
  ro.heartbeat.miss = static_cast<int>(recipe_.control.heartbeat_miss);
  // Nobody takes over a worker's identity, and a peer that has not registered with its launch
  // token gets nothing larger than a Register decoded.
  ro.allow_handover = false;
  ro.unadmitted_max_bytes = kUnadmittedMaxBytes;
  ro.metrics = &ProcessRegistry();  // control-plane traffic on /metrics
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
  workers_.Resize(pool_.size());
  for (int d = 0; d < pool_.size(); ++d) {
    workers_[d].hosts_engine = HostsEngine(policy_, pool_.device(d).home);
    for (size_t r = 0; r < train_group_.size(); ++r) {
      if (train_group_[r] == d) workers_[d].train_rank = static_cast<int>(r);
    }
  }
  comm_group_ = absl::StrFormat("tidal-%d-%d", getpid(),
                                WallMillis() % 1000000);
  // CUDA train ranks meet through NCCL; its bootstrap root lives here (a train rank's death ends
  // the run, so one id serves the whole run). A single rank makes its own id.
  if (recipe_.pool.device_set.kind == DeviceSet::Kind::kCuda && train_group_.size() > 1) {
    TIDAL_ASSIGN_OR_RETURN(std::string id, NewNcclUniqueId());
    nccl_id_hex_ = NcclIdToHex(id);
    nccl_ids_[MembershipName(train_group_)] = nccl_id_hex_;
  }
  // The elastic train group (controller_resize.cpp); the recipe loader validated the keys.
  const auto& e = recipe_.pool.elastic;
  elastic_.min_train = static_cast<int>(e.min_train);
  elastic_.max_train = static_cast<int>(e.max_train);
  elastic_.min_rollout = static_cast<int>(e.min_rollout);
  elastic_.switch_cost_s = e.switch_cost_s;
  elastic_.hysteresis = e.hysteresis;
  elastic_.horizon_steps = static_cast<int>(e.horizon_steps);
  elastic_.lend = true;  // elastic: train-group devices roll out between steps
  TIDAL_ASSIGN_OR_RETURN(plan_, ParseElasticPlan(e.plan));
  train_group_min_ = train_group_max_ = static_cast<int>(train_group_.size());

  relay_.SetStreamHook(weight_sync::FaultHookFromEnv());  // test-only; empty in production
  if (transport_ == weight_sync::TransportKind::kNccl) bcast_.emplace(train_group_, comm_group_ + ".wb");

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
    workers_[d].state = WorkerSlot::State::kStarting;
    TIDAL_LOG(INFO) << "worker " << d << " (" << pool_.device(d).slot.Name() << ", "
                    << TagName(pool_.device(d).home) << ") pid " << pid;
  }
  pool_.Start(Now());
  return WaitUntil([&] { return workers_.AllReady(); }, "workers to start");
}

}  // namespace tidal::scheduler::detail
