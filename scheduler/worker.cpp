#include "scheduler/worker.h"

#include <ATen/Parallel.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "core/clock.h"
#include "core/curve_auth.h"

#include "core/communicator_factory.h"
#include "core/communicator_nccl.h"
#include "core/cuda_devices.h"
#include "core/logging.h"
#include "core/recipe.h"
#include "core/messaging.h"
#include "scheduler/agent_groups.h"
#include "scheduler/device_pool.h"
#include "scheduler/launcher.h"  // kWorkerTokenEnv
#include "scheduler/model_setup.h"
#include "scheduler/protocol.h"
#include "scheduler/rollout_role.h"
#include "scheduler/train_role.h"
#include "trainer/reshard.h"
#include "scheduler/control_plane.h"
#include "scheduler/worker_auth.h"
#include "scheduler/worker_metrics.h"
#include "core/metrics.h"
#include "weight_sync/broadcast_publisher.h"
#include "weight_sync/inprocess_transport.h"
#include "weight_sync/transport_factory.h"
#include "weight_sync/weight_packer.h"
#include "weight_sync/zmq_transport.h"

namespace tidal::scheduler {
namespace {


// Recipe -> the roles' plain settings (the roles do not see the recipe).
TrainRoleConfig TrainConfigFromRecipe(const Recipe& r, const WorkerSetup& setup, const ModelConfig& model,
                                      const std::string& device) {
  TrainRoleConfig c;
  c.model = model;
  c.model_path = r.model.path;
  c.tokenizer_spec = r.model.tokenizer;
  c.seed = static_cast<uint64_t>(r.seed);
  c.device = device;
  c.offload_optimizer = r.train.offload;
  c.resume_dir = setup.resume_dir;
  c.trainer = TrainerOptionsFromRecipe(r, device);
  c.reset_optimizer_after_sft = r.warmup.sft.reset_optimizer;
  return c;
}

// Device-memory bookkeeping of a worker whose trainer and engine share one GPU: the peak of each
// phase (the counter restarts at every switch) and the time the switches take.
struct MemoryPhases {
  int device = -1;  // CUDA index in this process; -1 on CPU (nothing measured)
  double peak_rollout_gib = 0, peak_train_gib = 0;  // last completed phase of each kind
  double switch_seconds = 0;                        // since the last TrainStepDone
  double offloaded_gib = 0;
  bool in_train = false;

  void Close() {
    if (device < 0) return;
    const double peak = GiB(ReadDeviceMemory(device).peak_allocated);
    (in_train ? peak_train_gib : peak_rollout_gib) = peak;
    ResetPeakDeviceMemory(device);
  }
};

absl::StatusOr<RolloutSettings> RolloutSettingsFromRecipe(const Recipe& r, const WorkerSetup& setup,
                                                          const std::string& device) {
  RolloutSettings s;
  s.env.plugin = r.env.plugin;
  s.env.args = r.env.args.is_null() ? nlohmann::json::object() : r.env.args;
  s.env.isolate = r.env.isolate;
  s.env.timeout_s = r.env.timeout_s;
  s.env.reward_range = r.env.reward_range;
  s.temperature = r.rollout.temperature;
  s.top_p = r.rollout.top_p;
  s.top_k = r.rollout.top_k;
  s.min_p = r.rollout.min_p;
  s.max_new_tokens = r.rollout.max_new_tokens;
  s.multi_turn = r.env.multi_turn;
  s.max_turns = r.env.max_turns;
  s.engine = EngineConfigFromRecipe(r, device);
  s.release_memory_when_idle = setup.release_engine_memory;
  s.openai.serve = r.openai.serve;
  s.openai.bind = r.openai.bind;
  s.openai.port = r.openai.port > 0 ? static_cast<int>(r.openai.port) + setup.device : 0;
  s.openai.default_max_tokens = r.rollout.max_new_tokens;
  return s;
}

class Worker {
 public:
  explicit Worker(WorkerOptions o) : options_(std::move(o)) {}
  absl::Status Run();

 private:
  absl::Status Setup();
  absl::Status Handle(const Envelope& env);
  // The weights plane's transport this train rank publishes through (setup_.weight_transport),
  // for train_'s current rank: made at setup and again whenever the elastic train group gives
  // this device a trainer (JoinTrainGroup), since who publishes (rank 0) can change.
  absl::Status MakeTransport();
  // Publishes `version` through transport_ (a collective over the train group) and records its
  // metrics. Returns the seconds spent.
  absl::StatusOr<double> Publish(int64_t version);
  // The broadcast transport (weight_transport nccl): the layout and limits both sides plan the
  // same way, and the receiver's step-boundary check (applies a verified version, reports).
  absl::StatusOr<weight_sync::BroadcastOptions> BroadcastOptions() const;
  // weight_sync.bucket_mb in bytes (at least 1 MiB): the bucket size of every transport.
  int64_t BucketBytes() const { return std::max<int64_t>(1, recipe_.weight_sync.bucket_mb) << 20; }
  absl::Status OnWeightGroupJoin(const WeightGroupJoin& m);
  void PollBroadcast();
  // Waits (up to weight_sync.timeout_s) until the version in flight, if any, has its outcome and
  // reports it: before the receiver joins a new epoch or begins the next version (CUDA: Begin
  // does not wait, the old group's watchdog bounds a transfer that never ends).
  void FinishBroadcastInFlight();
  // Queues a group on the engine, or holds it while a broadcast version is arriving (new work
  // never starts on the old weights).
  void AddWork(const RolloutWork& m);
  // Sends the agent sessions that finished, and the agent load when it changed.
  void ReportAgentSessions();
  // Sends WorkerMetrics when `force` or a second has passed since the last snapshot.
  void ReportMetrics(bool force);
  // The gradient communicator of a train-group membership (cached: trainer/reshard.h).
  absl::StatusOr<Communicator*> GroupCommunicator(const std::string& group, const std::vector<int>& members,
                                                  const std::string& nccl_id_hex, bool* created);
  // Elastic train group (protocol.h TrainGroupJoin): this device's trainer for the new membership.
  TrainGroupJoined JoinTrainGroup(const TrainGroupJoin& m);
  template <class T>
  void Send(const T& msg, std::vector<Payload> frames = {}) {
    absl::Status s = dealer_->Send(msg, std::move(frames));
    if (!s.ok()) TIDAL_LOG(WARN) << "send " << MessageName<T>() << ": " << s;
  }

  WorkerOptions options_;
  std::unique_ptr<Dealer> dealer_;
  WorkerSetup setup_;
  Recipe recipe_;
  std::unique_ptr<RolloutRole> rollout_;
  std::unique_ptr<TrainRole> train_;
  TrainRoleConfig train_config_;  // what a trainer of this device is built from (joins included)
  // One communicator per train-group membership this device has been in; kept while the worker
  // lives, so a group that re-forms reuses it (its other members kept theirs too).
  trainer::CommunicatorCache comms_{[this](const std::string& group, const std::vector<int>& members, int rank,
                                  const std::string& nccl_id) -> absl::StatusOr<std::unique_ptr<Communicator>> {
    CommunicatorSpec cs;
    cs.device = train_config_.device;
    cs.rank = rank;
    cs.world_size = static_cast<int>(members.size());
    cs.group = group;
    cs.nccl_id = nccl_id;
    cs.timeout = absl::Seconds(600);
    return CreateCommunicatorForDevice(cs);
  }};
  std::shared_ptr<const Tokenizer> tokenizer_;
  MemoryPhases phases_;
  // Train ranks only: kZmq (buckets to the controller's relay) or, colocated, kInProcess (the
  // engine takes each version from the trainer in this process, device to device in its own
  // dtype; the controller relays nothing).
  std::unique_ptr<weight_sync::Transport> transport_;
  ModelConfig model_config_;
  std::string device_;  // "cpu" or "cuda:0" (CUDA_VISIBLE_DEVICES holds this worker's GPU)
  // Broadcast transport: the controller's epoch (kept for a trainer made later), the receiving
  // side (an engine worker without a train rank), and the work held while a version arrives.
  weight_sync::BroadcastEpoch bcast_epoch_;
  std::unique_ptr<weight_sync::BroadcastSubscriber> subscriber_;
  std::vector<RolloutWork> held_work_;
  MonoTime broadcast_began_{};  // the version in flight started arriving
  at::DeviceType device_type_ = at::kCPU;     // where this worker's trainer and engine run
  at::ScalarType engine_dtype_ = at::kFloat;  // the engine's weights (in-process transport)
  bool shutdown_ = false;
  int64_t reported_agent_calls_ = 0;
  std::string http_token_;  // the OpenAI endpoint's bearer token ("" = loopback, none)
  MonoTime last_metrics_{};
};

absl::Status Worker::Setup() {
  auto t0 = MonoNow();
  TIDAL_ASSIGN_OR_RETURN(DeviceSlot slot, ParseDeviceName(options_.device));
  if (slot.kind == DeviceKind::kCpu) at::set_num_threads(1);  // one core per CPU slot
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  DealerOptions d;
  d.endpoint = options_.controller;
  d.name = absl::StrFormat("worker-%d-%s-%d", options_.rank, host, getpid());
  d.heartbeat.interval = absl::Milliseconds(options_.heartbeat_ms);
  d.heartbeat.miss = options_.heartbeat_miss;
  std::string token = options_.token;
  if (!options_.credentials.empty()) {
    TIDAL_ASSIGN_OR_RETURN(RunCredentials creds, RunCredentials::Load(options_.credentials));
    d.curve = CurveClientKeys{creds.server.public_key, creds.client.public_key, creds.client.secret_key};
    if (token.empty() && !creds.secret.empty()) {
      TIDAL_ASSIGN_OR_RETURN(token, DeriveToken(creds.secret, options_.rank));
    }
  }
  d.metrics = &ProcessRegistry();  // control-plane traffic, shipped with the worker's metrics
  TIDAL_ASSIGN_OR_RETURN(dealer_, Dealer::Connect(d));
  Register reg;
  reg.role = "worker";
  reg.rank = options_.rank;
  reg.pid = getpid();
  reg.host = host;
  reg.info = {{"device", options_.device}, {"token", token}};
  TIDAL_ASSIGN_OR_RETURN(setup_, dealer_->Call<WorkerSetup>(reg, absl::Seconds(60)));
  TIDAL_ASSIGN_OR_RETURN(recipe_, LoadRecipe(setup_.recipe_path));
  if (recipe_.openai.serve && !IsLoopbackHost(recipe_.openai.bind)) {
    http_token_ = ReadHttpToken(setup_.run_dir);
    if (http_token_.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "openai.bind ", recipe_.openai.bind, " is not loopback but ", setup_.run_dir, "/secrets/http_token is missing"));
    }
  }
  RecordBuildInfo(ProcessRegistry());

  TIDAL_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tok, LoadTokenizer(recipe_.model.tokenizer));
  std::shared_ptr<const Tokenizer> tokenizer(std::move(tok));
  tokenizer_ = tokenizer;
  TIDAL_ASSIGN_OR_RETURN(ModelConfig config, ModelConfigFromRecipe(recipe_, *tokenizer));
  const std::string device = slot.kind == DeviceKind::kCpu ? "cpu" : "cuda:0";  // CUDA_VISIBLE_DEVICES
  model_config_ = config;
  device_ = device;
  if (slot.kind == DeviceKind::kCuda) phases_.device = 0;
  train_config_ = TrainConfigFromRecipe(recipe_, setup_, config, device);
  if (setup_.train_rank >= 0) {
    TIDAL_ASSIGN_OR_RETURN(Communicator * comm,
                           GroupCommunicator(setup_.comm_group, setup_.train_group, setup_.nccl_id, nullptr));
    TIDAL_ASSIGN_OR_RETURN(train_, TrainRole::Create(train_config_, tokenizer, comm));
  }
  device_type_ = slot.kind == DeviceKind::kCuda ? at::kCUDA : at::kCPU;
  if (setup_.hosts_engine) {
    TIDAL_ASSIGN_OR_RETURN(RolloutSettings rs, RolloutSettingsFromRecipe(recipe_, setup_, device));
    rs.openai.bearer_token = http_token_;
    engine_dtype_ = rs.engine.dtype.value_or(at::kFloat);
    if (setup_.weight_transport == weight_sync::TransportKind::kInProcess && !train_) {
      return absl::FailedPreconditionError("in-process weight transport on a worker without a train rank");
    }
    TIDAL_ASSIGN_OR_RETURN(rollout_, RolloutRole::Create(rs, config, tokenizer));
    rollout_->SetActive(setup_.tag == Tag::kRollout);
  }
  if (train_) TIDAL_RETURN_IF_ERROR(MakeTransport());
  phases_.in_train = setup_.tag != Tag::kRollout;
  if (phases_.device >= 0) ResetPeakDeviceMemory(phases_.device);
  TIDAL_LOG(INFO) << "device " << setup_.device_name << ": train rank " << setup_.train_rank
                  << ", engine " << (rollout_ != nullptr) << ", tag " << TagName(setup_.tag);
  Send(WorkerReady{rollout_ != nullptr, train_ != nullptr, SecondsSince(t0),
                   rollout_ ? rollout_->openai_url() : ""});
  return absl::OkStatus();
}

absl::Status Worker::MakeTransport() {
  switch (setup_.weight_transport) {
    case weight_sync::TransportKind::kInProcess:
      if (rollout_) {
        // Collective over the train group (every colocated rank hosts an engine): each rank
        // gathers the policy on its own device in the engine's dtype and its engine copies it in
        // place.
        transport_ = std::make_unique<weight_sync::InProcessTransport>(
            engine_dtype_, device_type_, [this](at::ScalarType dtype) { return train_->DeviceWeights(dtype); },
            [this](const NamedTensors& w, int64_t version) -> absl::Status {
              WeightApplied applied = rollout_->Install(w, version);
              Send(applied);
              return applied.ok ? absl::OkStatus() : absl::InternalError(applied.error);
            });
        return absl::OkStatus();
      }
      [[fallthrough]];  // a train rank without an engine has nothing to copy into: buckets
    case weight_sync::TransportKind::kZmq: {
      // Collective: uniform across train ranks (all of them host engines, or none does). A send
      // that fails is logged (Send) and the relay never completes that version.
      weight_sync::ZmqTransport::LocalInstall local;
      if (rollout_) {
        local = [this](const NamedTensors& w, int64_t version) {
          Send(rollout_->Install(w, version));
          return absl::OkStatus();
        };
      }
      transport_ = std::make_unique<weight_sync::ZmqTransport>(
          [this] { return train_->FullWeights(/*all_ranks=*/rollout_ != nullptr); }, train_->rank() == 0,
          BucketBytes(),
          [this](const weight_sync::WeightBucket& header, Payload bytes) {
            Send(header, {std::move(bytes)});
            return absl::OkStatus();
          },
          std::move(local));
      return absl::OkStatus();
    }
    case weight_sync::TransportKind::kNccl: {
      // Collective over the train group: every rank gathers the policy on its device (bf16 on
      // CUDA: the wire's dtype, half the bytes of the fp32 masters; fp32 on CPU, cast in the
      // pack); rank 0 broadcasts it to the engine workers, a rank with an engine installs its own.
      TIDAL_ASSIGN_OR_RETURN(weight_sync::BroadcastOptions o, BroadcastOptions());
      const at::ScalarType gather_dtype = device_type_ == at::kCUDA ? at::kBFloat16 : at::kFloat;
      weight_sync::BroadcastPublisher::LocalInstall local;
      if (rollout_) {
        local = [this](const NamedTensors& w, int64_t version) {
          Send(rollout_->Install(w, version));
          return absl::OkStatus();
        };
      }
      weight_sync::BroadcastPublisher::Hooks hooks;
      hooks.publish_id = [this](int64_t epoch, const std::string& key) {
        Send(WeightGroupKey{epoch, NcclIdToHex(key)});
        return absl::OkStatus();
      };
      hooks.starting = [this](int64_t epoch, int64_t version) { Send(WeightBroadcastStarting{epoch, version}); };
      hooks.done = [this](const weight_sync::BroadcastOutcome& out) {
        Send(WeightBroadcastDone{out.epoch, out.version, out.status.ok(), std::string(out.status.message()),
                                 out.group_dead, out.bytes, out.receivers, out.connect_seconds, out.send_seconds});
      };
      auto publisher = std::make_unique<weight_sync::BroadcastPublisher>(
          std::move(o), train_->rank() == 0, [this, gather_dtype] { return train_->DeviceWeights(gather_dtype); },
          std::move(local), std::move(hooks));
      publisher->SetEpoch(bcast_epoch_);
      transport_ = std::move(publisher);
      return absl::OkStatus();
    }
    case weight_sync::TransportKind::kIpc:
      break;
  }
  return absl::UnimplementedError(absl::StrCat("weight transport ", weight_sync::TransportName(setup_.weight_transport),
                                               " is not driven by tidal run (weight_sync/transport.h)"));
}

absl::StatusOr<weight_sync::BroadcastOptions> Worker::BroadcastOptions() const {
  weight_sync::BroadcastOptions o;
  o.device = device_;
  o.timeout = absl::Seconds(recipe_.weight_sync.timeout_s);
  TIDAL_ASSIGN_OR_RETURN(o.layout, weight_sync::PlanBuckets(ParamSpecs(model_config_), BucketBytes()));
  return o;
}

absl::Status Worker::OnWeightGroupJoin(const WeightGroupJoin& m) {
  if (!rollout_) return absl::FailedPreconditionError("WeightGroupJoin sent to a worker without an engine");
  if (!subscriber_) {
    TIDAL_ASSIGN_OR_RETURN(weight_sync::BroadcastOptions o, BroadcastOptions());
    subscriber_ = std::make_unique<weight_sync::BroadcastSubscriber>(std::move(o));
  }
  TIDAL_ASSIGN_OR_RETURN(std::string key, NcclIdFromHex(m.key_hex));
  FinishBroadcastInFlight();
  auto t0 = MonoNow();
  absl::Status s = subscriber_->Join(weight_sync::GroupTicket{m.epoch, m.rank, m.world_size, key});
  RecordWeightSync("connect", SecondsSince(t0));
  if (!s.ok()) {
    // The publisher's connect fails too: the controller renews the epoch and resends.
    TIDAL_LOG(WARN) << "weight broadcast group epoch " << m.epoch << ": " << s;
  }
  return absl::OkStatus();
}

void Worker::FinishBroadcastInFlight() {
  if (!subscriber_) return;
  const MonoTime t0 = MonoNow();
  while (subscriber_->in_flight() && SecondsSince(t0) < recipe_.weight_sync.timeout_s) {
    PollBroadcast();
    if (subscriber_->in_flight()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

void Worker::PollBroadcast() {
  if (!subscriber_) return;
  const int64_t version = subscriber_->version_in_flight();
  std::optional<absl::Status> s = subscriber_->Poll();
  if (!s) return;
  WeightApplied applied{version, false, "", 0, rollout_->version()};
  RecordWeightSync("receive", SecondsSince(broadcast_began_));
  if (s->ok()) {
    RecordWeightBytes("received", static_cast<double>(subscriber_->version_bytes()));
    absl::StatusOr<NamedTensors> w = subscriber_->StagedWeights();
    if (w.ok() && engine_dtype_ != at::kBFloat16) {
      // The wire carries bf16; an engine in another dtype (fp32 on CPU) takes a cast copy.
      for (auto& [name, t] : *w) t = t.to(engine_dtype_);
    }
    // In place into the engine's parameter storage (Engine::UpdateWeights copies each tensor).
    if (w.ok()) applied = rollout_->Install(*w, version);
    if (!w.ok()) {
      applied.error = std::string(w.status().message());
      RecordWeightRejected();
    }
  } else {
    applied.error = std::string(s->message());
    RecordWeightRejected();
  }
  if (!applied.ok) {
    TIDAL_LOG(WARN) << "weight version " << version << " (broadcast) rejected: " << applied.error
                    << "; serving version " << applied.serving_version;
  } else {
    TIDAL_LOG(INFO) << "weight version " << version << " applied (broadcast, epoch " << subscriber_->epoch() << ") in "
                    << applied.seconds << " s";
  }
  Send(applied);
  std::vector<RolloutWork> held = std::move(held_work_);
  held_work_.clear();
  for (const RolloutWork& m : held) AddWork(m);
}

void Worker::AddWork(const RolloutWork& m) {
  if (subscriber_ && subscriber_->in_flight()) {
    held_work_.push_back(m);
    return;
  }
  absl::Status s = rollout_->Add(m);
  if (!s.ok()) {
    RolloutResult r;
    r.prompt_id = m.prompt_id;
    r.attempt = m.attempt;
    r.eval = m.eval;
    r.error = std::string(s.message());
    Send(r);
  }
}

absl::StatusOr<double> Worker::Publish(int64_t version) {
  if (!transport_) return absl::FailedPreconditionError("weights to publish on a worker without a trainer");
  TIDAL_ASSIGN_OR_RETURN(weight_sync::PublishStats st, transport_->Publish(version));
  if (transport_->kind() == weight_sync::TransportKind::kInProcess) {
    RecordWeightSync("in_process", st.seconds);
  } else if (transport_->kind() == weight_sync::TransportKind::kNccl) {
    RecordWeightSync("gather", st.gather_seconds);
    if (train_->rank() == 0 && st.bytes > 0) {
      RecordWeightSync("broadcast", st.send_seconds);
      RecordWeightBytes("broadcast", static_cast<double>(st.bytes));
    }
  } else {
    RecordWeightSync("gather", st.gather_seconds);
    if (train_->rank() == 0) {
      RecordWeightSync("send", st.send_seconds);
      RecordWeightBytes("sent", static_cast<double>(st.bytes));
    }
  }
  return st.seconds;
}

absl::StatusOr<Communicator*> Worker::GroupCommunicator(const std::string& group, const std::vector<int>& members,
                                                        const std::string& nccl_id_hex, bool* created) {
  std::string raw;
  if (!nccl_id_hex.empty()) {
    TIDAL_ASSIGN_OR_RETURN(raw, NcclIdFromHex(nccl_id_hex));
  }
  return comms_.Get(group, members, setup_.device, raw, created);
}

TrainGroupJoined Worker::JoinTrainGroup(const TrainGroupJoin& m) {
  auto t0 = MonoNow();
  TrainGroupJoined out;
  out.step = m.step;
  out.world = static_cast<int32_t>(m.members.size());
  // The old trainer goes first either way: its state is in m.state_dir, and a device of a large
  // model cannot hold two. Its transport goes with it (it calls into train_).
  transport_.reset();
  train_.reset();
  const bool member = std::find(m.members.begin(), m.members.end(), setup_.device) != m.members.end();
  if (member) {
    bool created = false;
    absl::StatusOr<Communicator*> comm = GroupCommunicator(m.comm_group, m.members, m.nccl_id, &created);
    out.cached_communicator = comm.ok() && !created;
    absl::StatusOr<std::unique_ptr<TrainRole>> role =
        comm.ok() ? TrainRole::CreateFromState(train_config_, tokenizer_, *comm, m.state_dir)
                  : absl::StatusOr<std::unique_ptr<TrainRole>>(comm.status());
    if (role.ok()) {
      train_ = std::move(*role);
      if (absl::Status s = MakeTransport(); !s.ok()) {
        train_.reset();
        out.error = std::string(s.message());
      }
    } else {
      out.error = std::string(role.status().message());
    }
    if (train_) {
      out.rank = train_->rank();
      // A member that is rolling out right now keeps its trainer in the rollout phase (gradients
      // and cached blocks released), as a lent train rank does.
      if (rollout_ && !phases_.in_train) train_->EnterRolloutPhase();
    }
  }
  setup_.train_rank = out.rank;
  setup_.train_group = m.members;
  out.seconds = SecondsSince(t0);
  TIDAL_LOG(INFO) << "train group " << m.comm_group << ": " << (member ? "rank " : "left") << (member ? std::to_string(out.rank) : "")
                  << " of " << out.world << (out.cached_communicator ? " (cached communicator)" : "") << " in "
                  << out.seconds << " s" << (out.error.empty() ? "" : ": " + out.error);
  return out;
}

void Worker::ReportAgentSessions() {
  if (!rollout_) return;
  std::vector<rollout::SessionTrajectory> done = rollout_->TakeSessions();
  const int64_t calls = rollout_->AgentCallsInFlight();
  if (done.empty() && calls == reported_agent_calls_) return;
  reported_agent_calls_ = calls;
  AgentSessions msg;
  msg.calls_in_flight = calls;
  for (auto& s : done) {
    AgentSession a;
    a.session_id = s.session_id;
    a.group = s.group;
    a.reward = s.reward;
    const bool correct = s.info.is_object() && s.info.contains("correct") && s.info["correct"].is_boolean()
                             ? s.info["correct"].get<bool>()
                             : s.reward >= 1.0;
    for (Trajectory& t : SessionTrajectories(s.calls)) {
      t.reward = s.reward;
      t.correct = correct;
      t.text = tokenizer_->Decode(t.response_ids, /*skip_special_tokens=*/true);
      a.trajectories.push_back(std::move(t));
    }
    msg.sessions.push_back(std::move(a));
  }
  Send(msg);
}

void Worker::ReportMetrics(bool force) {
  if (!force && SecondsSince(last_metrics_) < 1.0) return;
  last_metrics_ = MonoNow();
  Send(WorkerMetrics{WorkerMetricsSnapshot()});
}

absl::Status Worker::Handle(const Envelope& env) {
  if (env.Is<SetTag>()) {
    TIDAL_ASSIGN_OR_RETURN(SetTag m, env.As<SetTag>());
    const bool to_rollout = m.tag == Tag::kRollout;
    if (train_ && rollout_ && to_rollout == phases_.in_train) {
      // A shared device changes hands: close the phase's peak, free the leaving side's memory
      // first (trainer: gradients, cached blocks, moments if offloading; engine: its KV cache).
      auto t0 = MonoNow();
      phases_.Close();
      if (to_rollout) {
        PhaseSwitchStats st = train_->EnterRolloutPhase();
        phases_.offloaded_gib = GiB(st.bytes_offloaded);
        rollout_->SetActive(true);
      } else {
        rollout_->SetActive(false);  // pauses the engine and frees its KV cache
        EmptyDeviceCache();          // ... back to the device, not just to this allocator
        train_->EnterTrainPhase();
      }
      phases_.in_train = !to_rollout;
      phases_.switch_seconds += SecondsSince(t0);
    } else if (rollout_) {
      rollout_->SetActive(to_rollout);
    }
    phases_.in_train = !to_rollout;  // also on a device without a trainer: it may join the group
  } else if (env.Is<RolloutWork>()) {
    TIDAL_ASSIGN_OR_RETURN(RolloutWork m, env.As<RolloutWork>());
    if (!rollout_) return absl::FailedPreconditionError("RolloutWork sent to a worker without an engine");
    AddWork(m);
  } else if (env.Is<AbortWork>()) {
    TIDAL_ASSIGN_OR_RETURN(AbortWork m, env.As<AbortWork>());
    WorkAborted out;
    if (rollout_) out.prompt_ids = rollout_->Abort(m.prompt_ids);
    Send(out);
  } else if (env.Is<weight_sync::WeightBucket>()) {
    TIDAL_ASSIGN_OR_RETURN(auto m, env.As<weight_sync::WeightBucket>());
    if (!rollout_) return absl::FailedPreconditionError("WeightBucket sent to a worker without an engine");
    if (env.frames.size() != 1) {
      return absl::InvalidArgumentError(absl::StrCat("WeightBucket with ", env.frames.size(), " frames"));
    }
    if (auto applied = rollout_->OnBucket(m, env.frames[0])) {
      if (!applied->ok) TIDAL_LOG(WARN) << "weight version " << applied->version << " rejected: " << applied->error;
      Send(*applied);
    }
  } else if (env.Is<WeightGroupEpoch>()) {
    TIDAL_ASSIGN_OR_RETURN(WeightGroupEpoch m, env.As<WeightGroupEpoch>());
    bcast_epoch_ = weight_sync::BroadcastEpoch{m.epoch, m.world_size, m.group_base};
    if (auto* p = dynamic_cast<weight_sync::BroadcastPublisher*>(transport_.get())) p->SetEpoch(bcast_epoch_);
  } else if (env.Is<WeightGroupJoin>()) {
    TIDAL_ASSIGN_OR_RETURN(WeightGroupJoin m, env.As<WeightGroupJoin>());
    TIDAL_RETURN_IF_ERROR(OnWeightGroupJoin(m));
  } else if (env.Is<WeightIncoming>()) {
    TIDAL_ASSIGN_OR_RETURN(WeightIncoming m, env.As<WeightIncoming>());
    if (!rollout_) return absl::FailedPreconditionError("WeightIncoming sent to a worker without an engine");
    FinishBroadcastInFlight();
    broadcast_began_ = MonoNow();
    absl::Status s = subscriber_ ? subscriber_->Begin(m.epoch, m.version)
                                 : absl::FailedPreconditionError("weight broadcast: this worker never joined the group");
    if (!s.ok()) {
      TIDAL_LOG(WARN) << "weight version " << m.version << " (broadcast): " << s;
      Send(WeightApplied{m.version, false, std::string(s.message()), 0, rollout_->version()});
    }
    PollBroadcast();  // CPU: the version is complete already
  } else if (env.Is<SftStep>()) {
    TIDAL_ASSIGN_OR_RETURN(SftStep m, env.As<SftStep>());
    TIDAL_ASSIGN_OR_RETURN(SftStepDone done, train_->Sft(m));
    RecordTrainPhase("sft", done.seconds);
    Send(done);
  } else if (env.Is<TrainStep>()) {
    TIDAL_ASSIGN_OR_RETURN(TrainStep m, env.As<TrainStep>());
    TIDAL_ASSIGN_OR_RETURN(TrainStepDone done, train_->Train(m));
    TIDAL_ASSIGN_OR_RETURN(done.publish_seconds, Publish(done.version));
    if (phases_.device >= 0) {
      const DeviceMemory mem = ReadDeviceMemory(phases_.device);
      done.stats["mem_peak_train_gib"] = GiB(mem.peak_allocated);  // this phase so far
      done.stats["mem_peak_rollout_gib"] = phases_.peak_rollout_gib;
      done.stats["mem_reserved_gib"] = GiB(mem.reserved);
      done.stats["mem_offloaded_gib"] = phases_.offloaded_gib;
      done.stats["phase_switch_seconds"] = phases_.switch_seconds;
      phases_.switch_seconds = 0;
    }
    RecordTrainPhase("compute", done.seconds);
    RecordTrainPhase("publish", done.publish_seconds);
    RecordTrainStep(done.tokens, done.stats, /*report_stats=*/train_->rank() == 0);
    Send(done);
    ReportMetrics(/*force=*/true);  // every step's numbers reach /metrics, however fast steps are
  } else if (env.Is<PublishWeights>()) {
    TIDAL_RETURN_IF_ERROR(env.As<PublishWeights>().status());
    auto t0 = MonoNow();
    const int64_t version = train_->version();
    TIDAL_RETURN_IF_ERROR(Publish(version).status());
    Send(WeightsPublished{version, 0, 0, SecondsSince(t0)});
  } else if (env.Is<Checkpoint>()) {
    TIDAL_ASSIGN_OR_RETURN(Checkpoint m, env.As<Checkpoint>());
    absl::Status s = train_->SaveCheckpoint(m.dir);
    // The checkpoint's HF view (weights + tokenizer files): usable by `tidal generate` and
    // transformers without resuming the run. Collective, like the save.
    if (s.ok()) s = train_->ExportHf(m.dir + "/hf");
    Send(CheckpointDone{m.step, m.dir, s.ok() ? "" : std::string(s.message())});
  } else if (env.Is<ExportModel>()) {
    TIDAL_ASSIGN_OR_RETURN(ExportModel m, env.As<ExportModel>());
    absl::Status s = train_->ExportHf(m.dir);
    Send(ExportDone{m.dir, s.ok() ? "" : std::string(s.message())});
  } else if (env.Is<TrainGroupSave>()) {
    TIDAL_ASSIGN_OR_RETURN(TrainGroupSave m, env.As<TrainGroupSave>());
    if (!train_) return absl::FailedPreconditionError("TrainGroupSave sent to a worker without a trainer");
    auto t0 = MonoNow();
    absl::Status s = train_->SaveCheckpoint(m.dir);  // collective over the old group
    Send(TrainGroupSaved{m.step, s.ok() ? "" : std::string(s.message()), SecondsSince(t0)});
  } else if (env.Is<TrainGroupJoin>()) {
    TIDAL_ASSIGN_OR_RETURN(TrainGroupJoin m, env.As<TrainGroupJoin>());
    Send(JoinTrainGroup(m));
  } else if (env.Is<Shutdown>()) {
    shutdown_ = true;
  } else {
    TIDAL_LOG(WARN) << "unexpected message " << env.type();
  }
  return absl::OkStatus();
}

absl::Status Worker::Run() {
  absl::Status s = Setup();
  if (!s.ok()) {
    if (dealer_) Send(WorkerError{"setup", std::string(s.message())});
    return s;
  }
  while (!shutdown_) {
    bool busy = rollout_ && rollout_->HasWork();
    absl::StatusOr<Inbound> in = dealer_->Receive(busy ? absl::ZeroDuration() : absl::Milliseconds(20));
    if (in.ok()) {
      if (auto* env = std::get_if<Envelope>(&*in)) {
        absl::Status hs;
        try {
          hs = Handle(*env);
        } catch (const std::exception& e) {
          hs = absl::InternalError(e.what());
        }
        if (!hs.ok()) {
          TIDAL_LOG(ERROR) << env->type() << ": " << hs;
          Send(WorkerError{env->type(), std::string(hs.message())});
        }
      } else if (std::get<PeerEvent>(*in).kind == PeerEvent::Kind::kDead) {
        return absl::UnavailableError("the controller stopped answering heartbeats; exiting");
      }
      continue;  // drain the inbox before stepping: weights and aborts come first
    }
    if (in.status().code() == absl::StatusCode::kCancelled) break;
    if (busy) {
      std::vector<RolloutResult> done;
      try {
        done = rollout_->Step();
      } catch (const std::exception& e) {
        Send(WorkerError{"engine step", e.what()});
        return absl::InternalError(absl::StrCat("engine step: ", e.what()));
      }
      for (auto& r : done) Send(r);
    }
    PollBroadcast();  // a step boundary: a verified version is applied here
    ReportAgentSessions();
    ReportMetrics(/*force=*/false);
  }
  ReportMetrics(/*force=*/true);
  TIDAL_LOG(INFO) << "shutting down";
  return absl::OkStatus();
}

}  // namespace

absl::Status ResolveWorkerOptions(WorkerOptions& o) {
  auto env = [](const char* name) -> std::string {
    const char* v = std::getenv(name);
    return v != nullptr ? v : "";
  };
  if (o.controller.empty()) o.controller = env("TIDAL_CONTROLLER");
  if (o.device.empty()) o.device = env("TIDAL_DEVICE");
  if (o.credentials.empty()) o.credentials = env("TIDAL_CREDENTIALS");
  if (o.token.empty()) o.token = env("TIDAL_WORKER_TOKEN");
  // Read once, then out of the environment: environment workers and sandboxes started later
  // must never see the registration token.
  unsetenv("TIDAL_WORKER_TOKEN");
  if (o.rank < 0) {
    std::string r = env("TIDAL_RANK");
    if (r.empty()) r = env("JOB_COMPLETION_INDEX");
    if (!r.empty() && !absl::SimpleAtoi(r, &o.rank)) {
      return absl::InvalidArgumentError(absl::StrCat("worker rank '", r, "' is not a number"));
    }
  }
  std::vector<std::string> missing;
  if (o.controller.empty()) missing.push_back("--controller (or TIDAL_CONTROLLER)");
  if (o.device.empty()) missing.push_back("--device (or TIDAL_DEVICE)");
  if (o.rank < 0) missing.push_back("--rank (or TIDAL_RANK / JOB_COMPLETION_INDEX)");
  if (!missing.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("tidal worker: missing ", absl::StrJoin(missing, ", ")));
  }
  if (!IsLoopbackEndpoint(o.controller) && o.credentials.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("tidal worker: controller ", o.controller,
                                                   " is not on loopback: CURVE credentials are required "
                                                   "(--credentials or TIDAL_CREDENTIALS)"));
  }
  return absl::OkStatus();
}

absl::Status RunWorker(const WorkerOptions& options) {
  TIDAL_RETURN_IF_ERROR(InitLogging({.role = "worker", .rank = options.rank}));
  Worker w(options);
  return w.Run();
}

}  // namespace tidal::scheduler
