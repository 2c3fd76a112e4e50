#include "scheduler/task_source.h"

#include <algorithm>

namespace tidal::scheduler {

absl::StatusOr<std::unique_ptr<TaskSource>> TaskSource::Open(const envs::EnvSpec& spec) {
  TIDAL_ASSIGN_OR_RETURN(std::unique_ptr<envs::Environment> env, envs::Environment::Open(spec));
  return std::unique_ptr<TaskSource>(new TaskSource(std::move(env)));
}

TaskSource::TaskSource(std::unique_ptr<envs::Environment> env)
    : env_(std::move(env)), plugin_(env_->plugin()), thread_([this] { Loop(); }) {}

TaskSource::~TaskSource() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    queue_.clear();
  }
  cv_.notify_all();
  thread_.join();
}

void TaskSource::Request(int64_t id, uint64_t seed, envs::Split split) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back({id, seed, split, false});
  }
  cv_.notify_one();
}

std::vector<TaskSource::Done> TaskSource::TakeDone() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Done> out;
  out.swap(done_);
  return out;
}

int64_t TaskSource::in_flight() const {
  std::lock_guard<std::mutex> lock(mu_);
  int64_t queued = 0;
  for (const Item& i : queue_) queued += i.blocking ? 0 : 1;
  return queued + running_ + static_cast<int64_t>(done_.size());
}

absl::StatusOr<envs::Task> TaskSource::Get(uint64_t seed, envs::Split split) {
  std::unique_lock<std::mutex> lock(mu_);
  const int64_t id = next_blocking_id_--;
  queue_.push_back({id, seed, split, true});
  cv_.notify_one();
  absl::StatusOr<envs::Task> out;
  done_cv_.wait(lock, [&] {
    auto it = std::find_if(blocking_done_.begin(), blocking_done_.end(), [&](const Done& d) { return d.id == id; });
    if (it == blocking_done_.end()) return false;
    out = std::move(it->task);
    blocking_done_.erase(it);
    return true;
  });
  return out;
}

void TaskSource::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
    if (stop_) return;
    Item item = queue_.front();
    queue_.pop_front();
    if (!item.blocking) ++running_;
    lock.unlock();
    absl::StatusOr<envs::Task> task = env_->Reset(item.seed, item.split);  // plugin code, off the loop
    lock.lock();
    if (item.blocking) {
      blocking_done_.push_back({item.id, std::move(task)});
      done_cv_.notify_all();
    } else {
      --running_;
      done_.push_back({item.id, std::move(task)});
    }
  }
}

}  // namespace tidal::scheduler
