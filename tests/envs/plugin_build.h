// Test helper: builds plugin shared libraries from source the way users do, outside the main
// build, so the tests load real .so files through dlopen.
//   BuildTestPlugin("crash.c")       -> cc/c++ -shared tests/envs/plugins/crash.c
//   BuildExamplePlugin("reverse_string") -> cmake + build of envs/examples/reverse_string
// Results are cached per test process. Failures are test failures (ADD_FAILURE) returning "".
#pragma once

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>
#include <system_error>

#include <unistd.h>

namespace tidal::envs::testing {

inline std::string RunCommand(const std::string& cmd, int* rc) {
  std::string out;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) {
    *rc = -1;
    return "popen failed";
  }
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  *rc = ::pclose(p);
  return out;
}

// A per-process scratch directory, removed when the test process exits (each CTest test is its
// own process, so parallel tests never share or race on build outputs).
inline std::string PluginBuildDir() {
  struct Scratch {
    std::string dir = std::string(TIDAL_BINARY_DIR) + "/tests/envs/plugins_" +
                      std::to_string(::getpid());
    Scratch() { std::filesystem::create_directories(dir); }
    // Not std::filesystem::remove_all: in a test binary linked with libtorch it binds to the
    // wheel's copy, which crashes at exit with Debian 12's libstdc++ (core/remove_tree.h); and
    // not tidal::RemoveTree, which the torch-free envs tests do not link.
    ~Scratch() {
      int rc = 0;
      (void)RunCommand("rm -rf '" + dir + "'", &rc);
    }
  };
  static Scratch scratch;
  return scratch.dir;
}

inline std::string BuildTestPlugin(const std::string& source) {
  static std::mutex mu;
  static std::map<std::string, std::string> built;
  std::lock_guard<std::mutex> lock(mu);
  if (auto it = built.find(source); it != built.end()) return it->second;
  const std::string src = std::string(TIDAL_SOURCE_DIR) + "/tests/envs/plugins/" + source;
  const bool cxx = source.ends_with(".cpp");
  const std::string stem = std::filesystem::path(source).stem().string();
  const std::string out = PluginBuildDir() + "/lib" + stem + ".so";
  const std::string cmd = std::string(cxx ? "c++ -std=c++17" : "cc -std=c11") +
                          " -shared -fPIC -O1 -I" TIDAL_SOURCE_DIR "/envs/include " + src +
                          " -o " + out;
  int rc = 0;
  std::string log = RunCommand(cmd, &rc);
  if (rc != 0) {
    ADD_FAILURE() << "building " << source << " failed:\n" << cmd << "\n" << log;
    return "";
  }
  built[source] = out;
  return out;
}

inline std::string BuildExamplePlugin(const std::string& name, const std::string& lib) {
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  const std::string build = PluginBuildDir() + "/example_" + name;
  const std::string so = build + "/" + lib;
  if (std::filesystem::exists(so)) return so;
  // Exactly what docs/plugins.md tells a user to run, pointed at tidal's public header.
  const std::string cmd = "cmake -S " TIDAL_SOURCE_DIR "/envs/examples/" + name + " -B " +
                          build + " -DTIDAL_INCLUDE_DIR=" TIDAL_SOURCE_DIR "/envs/include" +
                          " -DCMAKE_BUILD_TYPE=Release && cmake --build " + build;
  int rc = 0;
  std::string log = RunCommand(cmd, &rc);
  if (rc != 0 || !std::filesystem::exists(so)) {
    ADD_FAILURE() << "building example " << name << " failed:\n" << cmd << "\n" << log;
    return "";
  }
  return so;
}

}  // namespace tidal::envs::testing
