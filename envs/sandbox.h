// RunSandboxed: runs one untrusted program (python3 or bash) under tidal-sandbox-exec
// (sandbox_exec_main.cpp): fresh tmpfs working directory, read-only system, no network (own
// network namespace), own pid namespace torn down at the end, rlimits on CPU time, address
// space, processes and file size, a wall-clock kill, and capped output.
//
// Thread-safe; each call blocks for at most about timeout_s + 2 s. `slot` picks the
// unprivileged uid the program runs as (limits.base_uid + slot): concurrent calls must use
// distinct slots, since the process limit counts a uid's processes machine-wide. The sandbox
// service (sandbox_server.h) owns slots and the queue. Needs root (or CAP_SYS_ADMIN): without
// it every call fails with FailedPrecondition naming what could not be set up (fail closed).
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "core/status.h"

namespace tidal::envs {

struct SandboxRequest {
  std::string language;    // "python3" or "bash"
  std::string code;
  std::string stdin_data;
  double timeout_s = 5.0;  // wall clock; CPU time is limited to ceil(timeout_s)
  int64_t memory_mb = 256;  // address-space limit per process
};

struct SandboxLimits {
  double max_timeout_s = 60.0;
  int64_t max_memory_mb = 4096;
  int64_t max_procs = 32;               // processes (threads count too) of the program's uid
  int64_t file_size_mb = 16;            // largest file the program may write
  int64_t disk_mb = 32;                 // size of /work and of /tmp
  size_t max_output_bytes = 64 << 10;   // per stream; the rest is read and dropped
  int64_t base_uid = 1900000;           // program uid = base_uid + slot (no host user has it)
  std::string python = "/usr/bin/python3";
  std::string bash = "/bin/bash";
};

struct SandboxResult {
  std::string stdout_text, stderr_text;
  int exit_code = -1;      // -1 when killed by a signal
  int signal = 0;          // the signal that ended the program, 0 if it exited
  double time_s = 0.0;     // wall clock
  bool timed_out = false;  // killed on the wall-clock limit
  bool truncated = false;  // stdout or stderr exceeded max_output_bytes
  std::string error;       // why the run did not complete normally, "" if it did
  nlohmann::json ToJson() const;
};

// kInvalidArgument for a bad request (language, limits over the maximum); kFailedPrecondition
// when the sandbox cannot be set up; kInternal for unexpected helper failures. A program that
// fails, crashes or times out is an OK result describing that.
absl::StatusOr<SandboxResult> RunSandboxed(const SandboxRequest& request,
                                           const SandboxLimits& limits, int slot);

// Parses a /run request body; errors name the field.
absl::StatusOr<SandboxRequest> SandboxRequestFromJson(const nlohmann::json& body);

}  // namespace tidal::envs
