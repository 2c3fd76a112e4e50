// `tidal bench rl RECIPE [key.path=value ...] [--parts N] [--skip-run]`: the RL loop's speed,
// printed as one JSON line per run.
//
// The run: the recipe goes through `tidal run`'s controller (real worker processes), quietly; the
// line reports steps/s, rollout and train tokens/s, the mean step's time split (rollout, train,
// weight update, memory-phase switches), the GPU memory peak of each phase and the mismatch.
// The first RL step is left out of the means (allocator and kernel warm-up).
//   step_s          wall time between consecutive step events
//   train_s         the controller's TrainStep round trip minus the weight update
//   weight_update_s the worker's weight gather + install (publish_seconds)
//   phase_switch_s  the worker's memory-phase switches in that step (colocated)
//   rollout_s       step_s - train_s - weight_update_s - phase_switch_s (generation, scoring,
//                   controller bookkeeping)
//
// --parts N: afterwards, in this process and on the pool's first device, each part of one step
// alone, with the run's shapes (prompts_per_step x group_size requests from the recipe's
// environment, each generating the run's mean response length with ignore_eos): engine
// generation, one trainer step on those samples, one in-process weight update (trainer ->
// engine, the engine's dtype, device to device, through weight_sync::InProcessTransport). N timed repetitions after one warm-up;
// sum_of_parts_s is their sum, to set against the colocated step_s.
#include <ATen/ATen.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>

#include "core/clock.h"
#include "core/communicator_factory.h"
#include "core/cuda_devices.h"
#include "core/recipe.h"
#include "core/tokenizer.h"
#include "envs/environment.h"
#include "rollout/engine.h"
#include "scheduler/controller.h"
#include "scheduler/model_setup.h"
#include "scheduler/rollout_role.h"
#include "scheduler/train_role.h"
#include "tools/cli/command.h"
#include "trainer/trainer.h"
#include "weight_sync/inprocess_transport.h"

namespace {

using Json = nlohmann::json;
using tidal::Recipe;

double Mean(const std::vector<double>& v) {
  if (v.empty()) return 0;
  double s = 0;
  for (double x : v) s += x;
  return s / static_cast<double>(v.size());
}

double Stat(const Json& stats, const char* key) {
  auto it = stats.find(key);
  return it != stats.end() && it->is_number() ? it->get<double>() : 0.0;
}

std::string FirstDevice(const Recipe& r) {
  const auto& ds = r.pool.device_set;
  if (ds.kind == tidal::DeviceSet::Kind::kCpu || ds.indices.empty()) return "cpu";
  return "cuda:" + std::to_string(ds.indices.front());
}

absl::StatusOr<Json> MeasureRun(const Recipe& recipe, double* response_tokens_mean) {
  tidal::scheduler::RunOptions ro;
  ro.progress = false;
  TIDAL_ASSIGN_OR_RETURN(tidal::scheduler::RunSummary summary, tidal::scheduler::RunController(recipe, ro));
  std::vector<Json> steps;
  std::ifstream in(summary.run_dir + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    Json ev = Json::parse(line, nullptr, false);
    if (ev.is_object() && ev.value("event", "") == "step") steps.push_back(std::move(ev));
  }
  if (steps.size() < 2) {
    return absl::FailedPreconditionError("bench rl: the run needs train.steps >= 2 (the first step is warm-up)");
  }
  std::vector<double> step_s, train_s, update_s, phase_s, rollout_s, kl;
  double peak_train = 0, peak_rollout = 0, offloaded = 0;
  for (size_t i = 0; i < steps.size(); ++i) {
    const Json& st = steps[i]["stats"];
    peak_train = std::max(peak_train, Stat(st, "mem_peak_train_gib"));
    peak_rollout = std::max(peak_rollout, Stat(st, "mem_peak_rollout_gib"));
    offloaded = std::max(offloaded, Stat(st, "mem_offloaded_gib"));
    if (i == 0) continue;
    const double step = steps[i]["wall"].get<double>() - steps[i - 1]["wall"].get<double>();
    const double publish = steps[i].value("publish_seconds", 0.0);
    const double train = steps[i].value("train_seconds", 0.0) - publish;
    const double phase = Stat(st, "phase_switch_seconds");
    step_s.push_back(step);
    train_s.push_back(train);
    update_s.push_back(publish);
    phase_s.push_back(phase);
    rollout_s.push_back(step - train - publish - phase);
    kl.push_back(Stat(st, "mismatch_kl"));
  }
  *response_tokens_mean = summary.response_tokens_mean;
  const double mean_step = Mean(step_s);
  return Json{{"steps", summary.steps},
              {"rl_seconds", summary.rl_seconds},
              {"steps_per_s", mean_step > 0 ? 1.0 / mean_step : 0.0},
              {"step_s", mean_step},
              {"rollout_tokens_per_s", summary.rollout_tokens_per_s},
              {"train_tokens_per_s", summary.train_tokens_per_s},
              {"response_tokens_mean", summary.response_tokens_mean},
              {"time_split_s", {{"rollout", Mean(rollout_s)}, {"train", Mean(train_s)},
                                {"weight_update", Mean(update_s)}, {"phase_switch", Mean(phase_s)}}},
              {"gpu_mem_peak_gib", {{"train", peak_train}, {"rollout", peak_rollout}}},
              {"offloaded_gib", offloaded},
              {"weight_bytes_relayed", summary.weight_bytes_relayed},
              {"mismatch_kl_mean", Mean(kl)},
              {"eval_accuracy_start", summary.eval_accuracy_start},
              {"eval_accuracy_end", summary.eval_accuracy_end}};
}

absl::StatusOr<Json> MeasureParts(const Recipe& r, int reps, double response_tokens) {
  using namespace tidal;
  using namespace tidal::trainer;
  TIDAL_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tok, LoadTokenizer(r.model.tokenizer));
  TIDAL_ASSIGN_OR_RETURN(ModelConfig config, scheduler::ModelConfigFromRecipe(r, *tok));
  const std::string device = FirstDevice(r);
  const int cuda = device == "cpu" ? -1 : std::stoi(device.substr(5));
  if (cuda >= 0) TIDAL_RETURN_IF_ERROR(CheckCudaDevices(cuda, "bench rl --parts"));
  auto sync = [&] { SynchronizeDevice(cuda); };

  CommunicatorSpec cs;
  cs.device = device;
  cs.group = "bench-rl-" + std::to_string(getpid());
  TIDAL_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> comm, CreateCommunicatorForDevice(cs));
  // The run's own mappings (scheduler/train_role.h, scheduler/rollout_role.h), so the parts
  // measured are the ones `tidal run` builds from this recipe.
  const TrainerOptions o = scheduler::TrainerOptionsFromRecipe(r, device);
  Model init = Model::RandomInit(config, static_cast<uint64_t>(r.seed), at::kFloat);
  TIDAL_ASSIGN_OR_RETURN(std::unique_ptr<Trainer> trainer, Trainer::Create(config, init.weights(), o, comm.get()));
  const rollout::EngineConfig ec = scheduler::EngineConfigFromRecipe(r, device);
  const at::ScalarType edtype = scheduler::EngineDtypeFor(r, device);
  std::unique_ptr<rollout::Engine> engine;
  {
    TIDAL_ASSIGN_OR_RETURN(NamedTensors w, trainer->DeviceWeights(edtype));
    TIDAL_ASSIGN_OR_RETURN(engine, rollout::Engine::Create(config, w, ec));
  }

  // The weight update the colocated run uses (checks included).
  weight_sync::InProcessTransport transport(
      edtype, cuda >= 0 ? at::kCUDA : at::kCPU, [&](at::ScalarType d) { return trainer->DeviceWeights(d); },
      [&](const NamedTensors& w, int64_t version) { return engine->UpdateWeights(w, version); });

  envs::EnvSpec es;
  es.plugin = r.env.plugin;
  es.args = r.env.args.is_null() ? Json::object() : r.env.args;
  TIDAL_ASSIGN_OR_RETURN(std::unique_ptr<envs::Environment> env, envs::Environment::Open(es));
  std::vector<std::vector<int32_t>> prompts;
  for (int64_t i = 0; i < r.train.prompts_per_step; ++i) {
    TIDAL_ASSIGN_OR_RETURN(envs::Task task, env->Reset(static_cast<uint64_t>(1000 + i)));
    prompts.push_back(tok->Encode(task.prompt));
  }
  const int64_t new_tokens = std::max<int64_t>(1, std::llround(response_tokens));

  std::mt19937 rng(static_cast<uint32_t>(r.seed));
  std::vector<double> gen_s, train_s, update_s;
  int64_t gen_tokens = 0, train_tokens = 0;
  for (int rep = 0; rep <= reps; ++rep) {
    std::vector<rollout::Request> reqs;
    for (size_t p = 0; p < prompts.size(); ++p) {
      for (int64_t g = 0; g < r.rollout.group_size; ++g) {
        rollout::Request q;
        q.id = std::to_string(rep) + "-" + std::to_string(p) + "-" + std::to_string(g);
        q.prompt = prompts[p];
        q.params.temperature = r.rollout.temperature;
        q.params.max_new_tokens = new_tokens;
        q.params.ignore_eos = true;
        q.seed = rng();
        reqs.push_back(std::move(q));
      }
    }
    sync();
    auto t0 = tidal::MonoNow();
    TIDAL_ASSIGN_OR_RETURN(std::vector<rollout::RequestOutput> outs, engine->Generate(std::move(reqs)));
    sync();
    const double g_s = tidal::SecondsSince(t0);

    std::vector<TrainSample> batch;
    int64_t toks = 0;
    for (size_t i = 0; i < outs.size(); ++i) {
      TrainSample s;
      s.prompt_ids = outs[i].prompt;
      s.response_ids = outs[i].tokens;
      s.rollout_logprobs = outs[i].logprobs;
      s.policy_versions = outs[i].versions;
      s.reward = static_cast<float>(rng() % 2);  // varied rewards: real advantages, real gradients
      s.group_id = static_cast<int64_t>(i) / r.rollout.group_size;
      toks += static_cast<int64_t>(s.response_ids.size());
      batch.push_back(std::move(s));
    }
    t0 = tidal::MonoNow();
    TIDAL_ASSIGN_OR_RETURN(StepStats st, trainer->TrainStep(batch));
    sync();
    const double t_s = tidal::SecondsSince(t0);

    t0 = tidal::MonoNow();
    TIDAL_RETURN_IF_ERROR(transport.Publish(trainer->step()).status());
    sync();
    const double u_s = tidal::SecondsSince(t0);
    if (rep == 0) continue;  // warm-up
    gen_s.push_back(g_s);
    train_s.push_back(t_s);
    update_s.push_back(u_s);
    gen_tokens += toks;
    train_tokens += st.tokens;
  }
  const DeviceMemory mem = ReadDeviceMemory(cuda);
  const double g = Mean(gen_s), t = Mean(train_s), u = Mean(update_s);
  return Json{{"device", device},
              {"requests", static_cast<int64_t>(prompts.size()) * r.rollout.group_size},
              {"new_tokens_per_request", new_tokens},
              {"repetitions", reps},
              {"rollout_s", g},
              {"train_s", t},
              {"weight_update_s", u},
              {"sum_of_parts_s", g + t + u},
              {"rollout_tokens_per_s", g > 0 ? static_cast<double>(gen_tokens) / reps / g : 0.0},
              {"train_tokens_per_s", t > 0 ? static_cast<double>(train_tokens) / reps / t : 0.0},
              {"gpu_mem_peak_gib", GiB(mem.peak_allocated)}};
}

std::function<absl::Status()> Setup(CLI::App& sub) {
  struct Args {
    std::string recipe;
    std::vector<std::string> overrides;
    int parts = 0;
    bool skip_run = false;
  };
  auto args = std::make_shared<Args>();
  sub.add_option("recipe", args->recipe, "Recipe YAML file")->required();
  sub.add_option("overrides", args->overrides, "Overrides: key.path=value (value parsed as YAML)");
  sub.add_option("--parts", args->parts, "Also time each part of a step alone, this many repetitions (0 = skip)");
  sub.add_flag("--skip-run", args->skip_run, "Only the parts (needs --parts; response length = rollout.max_new_tokens)");
  return [args]() -> absl::Status {
    TIDAL_ASSIGN_OR_RETURN(Recipe recipe, tidal::LoadRecipe(args->recipe, args->overrides));
    Json line = {{"bench", "rl"}, {"recipe", args->recipe}, {"overrides", args->overrides},
                 {"policy", std::string(tidal::EnumName(recipe.pool.policy))}, {"devices", recipe.pool.devices}};
    double response_tokens = static_cast<double>(recipe.rollout.max_new_tokens);
    if (!args->skip_run) {
      TIDAL_ASSIGN_OR_RETURN(Json run, MeasureRun(recipe, &response_tokens));
      line["run"] = run;
    }
    if (args->parts > 0) {
      TIDAL_ASSIGN_OR_RETURN(Json parts, MeasureParts(recipe, args->parts, response_tokens));
      line["parts"] = parts;
      if (line.contains("run")) {
        const double sum = parts["sum_of_parts_s"].get<double>();
        line["colocated_step_over_sum_of_parts"] = sum > 0 ? line["run"]["step_s"].get<double>() / sum : 0.0;
      }
    }
    std::cout << line.dump() << std::endl;
    return absl::OkStatus();
  };
}

TIDAL_CLI_COMMAND("bench rl", "RL loop speed of a recipe: steps/s, tokens/s, time split, memory (JSON line)", Setup);

}  // namespace
