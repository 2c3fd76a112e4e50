// InProcessBackend: calls the plugin's C table in this process.
//
// With a time limit, calls run on one call thread per backend and the caller waits with a
// deadline. A C call cannot be interrupted safely, so on timeout the call thread is detached
// and left to finish (or spin) on its own; the instance is abandoned (never destroyed, since
// the thread may still be using it) and every later call fails. Isolation is the real cure.
#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>

#include "envs/env_backend.h"
#include "envs/plugin_library.h"

namespace tidal::envs {

std::string PluginErrorPrefix(const std::string& plugin) {
  return absl::StrCat("env plugin '", plugin, "'");
}

namespace {

// Runs one entry function, converting every way it can fail into a Status. Never throws.
absl::StatusOr<std::string> CallPlugin(const std::string& who, const char* fn,
                                       const std::function<int(const char**)>& call) {
  const char* out = nullptr;
  int rc = TIDAL_ENV_ERROR;
  try {
    rc = call(&out);
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat(who, ": ", fn, "() threw an exception across the C ABI: ", e.what()));
  } catch (...) {
    return absl::InternalError(
        absl::StrCat(who, ": ", fn, "() threw a non-std exception across the C ABI"));
  }
  if (rc != TIDAL_ENV_OK) {
    return absl::InternalError(absl::StrCat(who, ": ", fn, "() failed (status ", rc,
                                            "): ", out ? out : "(no message)"));
  }
  if (out == nullptr) {
    return absl::InternalError(absl::StrCat(who, ": ", fn, "() returned OK but no output"));
  }
  return std::string(out);
}

class InProcessBackend final : public EnvBackend {
 public:
  InProcessBackend(std::string plugin, const tidal_env_api* api, tidal_env* env,
                   double timeout_s)
      : who_(PluginErrorPrefix(plugin)), api_(api), env_(env), timeout_s_(timeout_s) {}

  ~InProcessBackend() override {
    if (call_state_) {
      {
        std::lock_guard<std::mutex> lock(call_state_->mu);
        call_state_->stop = true;
      }
      call_state_->cv.notify_all();
      if (abandoned_) {
        call_thread_.detach();
      } else if (call_thread_.joinable()) {
        call_thread_.join();
      }
    }
    if (!abandoned_ && env_ != nullptr) {
      try {
        api_->destroy(env_);
      } catch (...) {
        // Nothing to report to: destroy has no error channel.
      }
    }
  }

  absl::StatusOr<std::string> Reset(uint64_t seed, const std::string& options_json) override {
    return Run("reset", [api = api_, env = env_, seed, options_json](const char** out) {
      return api->reset(env, seed, options_json.c_str(), out);
    });
  }
  absl::StatusOr<std::string> Step(const std::string& model_turn) override {
    return Run("step", [api = api_, env = env_, model_turn](const char** out) {
      return api->step(env, model_turn.c_str(), out);
    });
  }
  absl::StatusOr<std::string> Score(const std::string& hidden_json,
                                    const std::string& response) override {
    return Run("score", [api = api_, env = env_, hidden_json, response](const char** out) {
      return api->score(env, hidden_json.c_str(), response.c_str(), out);
    });
  }

 private:
  // Shared with the call thread; outlives the backend when the thread is abandoned.
  struct CallState {
    std::mutex mu;
    std::condition_variable cv;
    std::function<void()> job;  // set by the caller, cleared by the call thread
    bool done = false;
    bool stop = false;
  };

  static void CallLoop(std::shared_ptr<CallState> st) {
    std::unique_lock<std::mutex> lock(st->mu);
    while (true) {
      st->cv.wait(lock, [&] { return st->stop || st->job; });
      if (!st->job) return;  // stop with nothing queued
      auto job = std::move(st->job);
      st->job = nullptr;
      lock.unlock();
      job();
      lock.lock();
      st->done = true;
      st->cv.notify_all();
      if (st->stop) return;
    }
  }

  absl::StatusOr<std::string> Run(const char* fn, std::function<int(const char**)> call) {
    if (abandoned_) {
      return absl::FailedPreconditionError(absl::StrCat(
          who_, ": instance abandoned after an earlier call overran its time limit"));
    }
    if (timeout_s_ <= 0) return CallPlugin(who_, fn, call);
    if (!call_state_) {
      call_state_ = std::make_shared<CallState>();
      call_thread_ = std::thread(CallLoop, call_state_);
    }
    // The result lives in a shared_ptr so an abandoned job can still write it safely.
    auto result = std::make_shared<absl::StatusOr<std::string>>(absl::UnknownError(""));
    std::unique_lock<std::mutex> lock(call_state_->mu);
    call_state_->done = false;
    call_state_->job = [result, who = who_, fn, call = std::move(call)] {
      *result = CallPlugin(who, fn, call);
    };
    call_state_->cv.notify_all();
    const bool finished = call_state_->cv.wait_for(
        lock, std::chrono::duration<double>(timeout_s_), [&] { return call_state_->done; });
    if (!finished) {
      abandoned_ = true;
      return absl::DeadlineExceededError(absl::StrCat(
          who_, ": ", fn, "() exceeded its time limit of ", timeout_s_,
          " s; the in-process instance is abandoned (set env.isolate: true to have a stuck "
          "plugin killed and restarted instead)"));
    }
    return std::move(*result);
  }

  const std::string who_;
  const tidal_env_api* api_;
  tidal_env* env_;
  const double timeout_s_;
  bool abandoned_ = false;
  std::shared_ptr<CallState> call_state_;
  std::thread call_thread_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<EnvBackend>> OpenInProcessBackend(const EnvSpec& spec) {
  TIDAL_ASSIGN_OR_RETURN(const tidal_env_api* api, LoadPluginApi(spec.plugin));
  const std::string who = PluginErrorPrefix(spec.plugin);
  const std::string config = PluginCreateConfig(spec.plugin, spec.args);
  tidal_env* env = nullptr;
  const char* error = nullptr;
  int rc = TIDAL_ENV_ERROR;
  try {
    rc = api->create(config.c_str(), &env, &error);
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat(who, ": create() threw an exception across the C ABI: ", e.what()));
  } catch (...) {
    return absl::InternalError(
        absl::StrCat(who, ": create() threw a non-std exception across the C ABI"));
  }
  if (rc != TIDAL_ENV_OK) {
    return absl::InvalidArgumentError(absl::StrCat(
        who, ": create() rejected args ", config, ": ", error ? error : "(no message)"));
  }
  if (env == nullptr) {
    return absl::InternalError(absl::StrCat(who, ": create() returned OK but no instance"));
  }
  return std::unique_ptr<EnvBackend>(
      std::make_unique<InProcessBackend>(spec.plugin, api, env, spec.timeout_s));
}

}  // namespace tidal::envs
