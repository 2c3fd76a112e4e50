// Helpers shared by the trainer suites: run N shm ranks as threads, tiny models, batches.
#pragma once

#include <ATen/ATen.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>

#include <atomic>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/remove_tree.h"
#include "core/communicator_shm.h"
#include "core/model.h"
#include "trainer/train_batch.h"

namespace tidal::testing {

inline std::string UniqueGroup(const std::string& tag) {
  static std::atomic<int> counter{0};
  return tag + "-" + std::to_string(getpid()) + "-" + std::to_string(counter++);
}

// Runs fn(comm) on `world` threads with one ShmCommunicator each; returns per-rank statuses.
inline std::vector<absl::Status> RunRanks(int world, const std::function<absl::Status(Communicator&)>& fn) {
  const std::string group = UniqueGroup("tr");
  std::vector<absl::Status> out(world);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      ShmCommunicatorOptions o;
      o.group = group;
      o.rank = r;
      o.world_size = world;
      o.slot_bytes = 64 << 10;
      o.timeout = absl::Seconds(60);
      auto comm = ShmCommunicator::Create(o);
      if (!comm.ok()) {
        out[r] = comm.status();
        return;
      }
      try {
        out[r] = fn(**comm);
      } catch (const std::exception& e) {
        out[r] = absl::InternalError(e.what());
      }
    });
  }
  for (auto& t : threads) t.join();
  return out;
}

// std::filesystem is avoided: LibTorch exports conflicting copies of some of its symbols.
inline void RemoveTree(const std::string& path) { (void)tidal::RemoveTree(path); }
inline bool Exists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }
inline void MakeDir(const std::string& path) { mkdir(path.c_str(), 0755); }

inline ModelConfig TinyConfig(bool tied) {
  ModelConfig c = TinyQwen2Config(/*hidden=*/32, /*layers=*/2, /*heads=*/4, /*kv_heads=*/2, /*vocab=*/48);
  c.tie_word_embeddings = tied;
  return c;
}

// Deterministic RL batch: `n` samples in groups of 4, varied lengths, advantages given.
inline std::vector<trainer::TrainSample> RandomBatch(int n, int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<trainer::TrainSample> out(n);
  for (int i = 0; i < n; ++i) {
    trainer::TrainSample& s = out[i];
    const int p = 2 + rng() % 6, r = 1 + rng() % 9;
    for (int t = 0; t < p; ++t) s.prompt_ids.push_back(rng() % vocab);
    for (int t = 0; t < r; ++t) s.response_ids.push_back(rng() % vocab);
    s.group_id = i / 4;
    s.reward = static_cast<float>(rng() % 3);
    s.advantage = static_cast<float>(static_cast<int>(rng() % 5) - 2) * 0.5f;
  }
  return out;
}

inline double MaxAbsDiff(const NamedTensors& a, const NamedTensors& b) {
  double m = 0;
  for (const auto& [name, t] : a) m = std::max(m, (t.to(at::kFloat) - b.at(name).to(at::kFloat)).abs().max().item<double>());
  return m;
}

}  // namespace tidal::testing
