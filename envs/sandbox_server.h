// SandboxServer: the HTTP face of RunSandboxed (`tidal sandbox serve`).
//
//   POST /run   {"language": "python3"|"bash", "code": "...", "stdin": "", "timeout_s": 5,
//                "memory_mb": 256}
//            -> 200 {"stdout", "stderr", "exit_code", "signal", "time_s", "timed_out",
//                    "truncated", "error"}      (the program ran, whatever it did)
//               400 {"error"} bad request | 503 {"error"} queue full or sandbox unavailable
//   GET /health -> {"ok": true, "workers": N, "busy": B, "queued": Q}
//
// At most `workers` programs run at once; up to `queue_limit` more requests wait for a slot
// (FIFO by arrival at the lock), beyond that requests get 503 at once. Start() binds and serves
// on a background thread; Stop() (or the destructor) stops accepting and waits for running
// requests. Listens on 127.0.0.1 by default: the service runs arbitrary code for whoever can
// reach it, so expose it deliberately.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/status.h"
#include "envs/sandbox.h"

namespace httplib {
class Server;
}

namespace tidal::envs {

struct SandboxServerOptions {
  std::string bind = "127.0.0.1";
  int port = 8731;  // 0: pick a free port (see port())
  int workers = 2;
  int queue_limit = 64;
  SandboxLimits limits;
};

class SandboxServer {
 public:
  explicit SandboxServer(SandboxServerOptions options);
  ~SandboxServer();

  absl::Status Start();
  void Stop();
  int port() const { return port_; }
  // Blocks until Stop() is called from another thread (or a signal handler's thread).
  void Wait();

 private:
  void HandleRun(const std::string& body, int* status, std::string* reply);
  // Returns a free slot, or -1 when the queue is full.
  int AcquireSlot();
  void ReleaseSlot(int slot);

  SandboxServerOptions options_;
  std::unique_ptr<httplib::Server> http_;
  std::thread thread_;
  int port_ = 0;

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<bool> busy_;
  int queued_ = 0;
  bool stopped_ = false;
};

}  // namespace tidal::envs
