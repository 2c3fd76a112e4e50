// A real `tidal run` process for end-to-end tests (tests/tools/*_test.cpp): started with fork/exec
// of the built binary, its output in <run_dir>.out, its run directory read back (summary.json,
// metrics.jsonl events, logs). The destructor SIGKILLs a run still going.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/remove_tree.h"

namespace tidal::testing {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

inline void RemoveTree(const fs::path& path) { (void)tidal::RemoveTree(path.string()); }

inline std::string ReadFile(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline std::vector<nlohmann::json> ReadJsonl(const fs::path& p) {
  std::vector<nlohmann::json> out;
  std::ifstream in(p);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) out.push_back(nlohmann::json::parse(line, nullptr, false));
  }
  return out;
}

class TidalRun {
 public:
  // Starts `tidal run <recipe> run_dir=<dir> <overrides...>` with stdout+stderr in <dir>.out.
  TidalRun(const fs::path& recipe, const fs::path& run_dir, std::vector<std::string> overrides,
      std::vector<std::pair<std::string, std::string>> env = {})
      : run_dir_(run_dir) {
    RemoveTree(run_dir);
    output_ = run_dir.string() + ".out";
    std::vector<std::string> args = {TIDAL_BIN, "run", recipe.string(), "run_dir=" + run_dir.string(), "--quiet"};
    args.insert(args.end(), overrides.begin(), overrides.end());
    pid_ = fork();
    if (pid_ == 0) {
      int fd = open(output_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(fd, 1);
      dup2(fd, 2);
      for (auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(TIDAL_BIN, argv.data());
      _exit(127);
    }
  }
  ~TidalRun() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  // Exit code, or -1 on timeout (the run is then killed).
  int Wait(double timeout_s) {
    auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
    while (Clock::now() < deadline) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return -1;
  }
  std::string Output() const { return ReadFile(output_); }
  nlohmann::json Summary() const { return nlohmann::json::parse(ReadFile(run_dir_ / "summary.json"), nullptr, false); }
  std::vector<nlohmann::json> Events() const { return ReadJsonl(run_dir_ / "metrics.jsonl"); }
  std::vector<nlohmann::json> Events(const std::string& kind) const {
    std::vector<nlohmann::json> out;
    for (auto& e : Events()) {
      if (e.value("event", "") == kind) out.push_back(e);
    }
    return out;
  }
  pid_t pid() const { return pid_; }
  const fs::path& dir() const { return run_dir_; }

 private:
  fs::path run_dir_;
  std::string output_;
  pid_t pid_ = -1;
};


}  // namespace tidal::testing
