// TaskSource: the controller's environment, called on a thread of its own. The controller's
// loop never runs plugin code: it asks for a task (Request) and picks finished ones up later
// (TakeDone), so a slow or hung reset() delays only its own prompt while heartbeats, results and
// weights keep flowing. The environment's own time limit (env.timeout_s) bounds each call; with
// env.isolate the plugin runs in an env-worker process that a crash or a hang takes down alone.
//
// Contract:
// - Request/TakeDone/in_flight/Get are called from one thread (the controller's loop); the
//   source's thread is the only one that touches the Environment.
// - Requests are served in order, one at a time. TakeDone returns every finished request since
//   the last call, in order, each with its task or the plugin's error (whose message names the
//   plugin).
// - Get() is the blocking form (warm-up and evaluation tasks, before or between loop phases):
//   it queues behind earlier requests and waits for its own result.
// - The destructor stops the thread after the call in progress returns (at most env.timeout_s).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "core/status.h"
#include "envs/environment.h"

namespace tidal::scheduler {

class TaskSource {
 public:
  static absl::StatusOr<std::unique_ptr<TaskSource>> Open(const envs::EnvSpec& spec);
  ~TaskSource();
  TaskSource(const TaskSource&) = delete;
  TaskSource& operator=(const TaskSource&) = delete;

  struct Done {
    int64_t id = 0;
    absl::StatusOr<envs::Task> task;
  };
  // Queues Reset(seed, split) for the caller's `id`.
  void Request(int64_t id, uint64_t seed, envs::Split split = envs::Split::kTrain);
  std::vector<Done> TakeDone();
  // Requests queued or running, not yet taken.
  int64_t in_flight() const;
  // Blocking Reset on the source's thread.
  absl::StatusOr<envs::Task> Get(uint64_t seed, envs::Split split);

  const std::string& plugin() const { return plugin_; }

 private:
  struct Item {
    int64_t id;
    uint64_t seed;
    envs::Split split;
    bool blocking;
  };
  explicit TaskSource(std::unique_ptr<envs::Environment> env);
  void Loop();

  std::unique_ptr<envs::Environment> env_;  // touched by thread_ only after construction
  const std::string plugin_;
  mutable std::mutex mu_;
  std::condition_variable cv_;       // wakes the thread: a request or stop
  std::condition_variable done_cv_;  // wakes Get()
  std::deque<Item> queue_;
  std::vector<Done> done_;
  std::vector<Done> blocking_done_;
  int64_t running_ = 0;
  bool stop_ = false;
  int64_t next_blocking_id_ = -1;  // Get() uses negative ids internally
  std::thread thread_;
};

}  // namespace tidal::scheduler
