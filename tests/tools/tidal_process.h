// Test helpers for end-to-end suites that start `tidal` processes: spawn with an environment and
// an output file, wait with a deadline, kill on destruction; read files and JSONL event logs.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace tidal::testing_util {

inline std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs `tidal <args>` through the shell (args may redirect); returns its exit code and stdout.
inline std::pair<int, std::string> RunCli(const std::string& args) {
  std::string cmd = std::string(TIDAL_BIN) + " " + args;
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  int st = ::pclose(p);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

// Events of one kind from a run's metrics.jsonl.
inline std::vector<nlohmann::json> ReadEvents(const std::string& run_dir, const std::string& kind) {
  std::vector<nlohmann::json> out;
  std::ifstream in(run_dir + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object() && j.value("event", "") == kind) out.push_back(std::move(j));
  }
  return out;
}

class Process {
 public:
  // argv[0] is a path; `env` entries are set (value) or, with unset=true, removed in the child.
  Process(std::vector<std::string> argv, const std::string& output,
          std::vector<std::pair<std::string, std::string>> env = {}, std::vector<std::string> unset = {})
      : output_(output) {
    pid_ = fork();
    if (pid_ == 0) {
      int fd = open(output.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(fd, 1);
      dup2(fd, 2);
      for (auto& k : unset) unsetenv(k.c_str());
      for (auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
      std::vector<char*> a;
      for (auto& s : argv) a.push_back(s.data());
      a.push_back(nullptr);
      execv(a[0], a.data());
      _exit(127);
    }
  }
  ~Process() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  // Exit code (128 + signal when killed), or -1 on timeout (the process keeps running).
  int Wait(double timeout_s) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (pid_ > 0 && waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        return code_;
      }
      if (pid_ <= 0) return code_;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return -1;
  }
  std::string Output() const { return ReadText(output_); }
  pid_t pid() const { return pid_; }

 private:
  std::string output_;
  pid_t pid_ = -1;
  int code_ = -1;
};

}  // namespace tidal::testing_util
