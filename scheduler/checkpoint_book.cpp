#include "scheduler/checkpoint_book.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "core/logging.h"
#include "core/remove_tree.h"

namespace tidal::scheduler {

namespace fs = std::filesystem;
using nlohmann::json;

absl::StatusOr<std::optional<ResumePoint>> FindResumePoint(const std::string& ckpt_dir) {
  int64_t best = -1;
  std::string dir;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(ckpt_dir, ec)) {
    std::string n = e.path().filename().string();
    if (n.rfind("step-", 0) != 0 || !fs::exists(e.path() / "controller_state.json")) continue;
    int64_t step = std::atoll(n.c_str() + 5);
    if (step > best) {
      best = step;
      dir = e.path().string();
    }
  }
  if (best < 0) return std::nullopt;
  std::ifstream in(fs::path(dir) / "controller_state.json");
  json st = json::parse(in, nullptr, false);
  if (st.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(dir, "/controller_state.json: not JSON"));
  }
  return ResumePoint{dir, st.value("step", best)};
}

void WriteControllerState(const std::string& dir, int64_t step, int64_t version,
                          int64_t prompts_created) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  json st = {{"step", step}, {"version", version}, {"prompts_created", prompts_created}};
  std::ofstream(fs::path(dir) / "controller_state.json") << st.dump(2) << "\n";
}

void PruneCheckpoints(const std::string& ckpt_dir, int64_t keep) {
  std::vector<std::pair<int64_t, fs::path>> ckpts;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(ckpt_dir, ec)) {
    std::string n = e.path().filename().string();
    if (n.rfind("step-", 0) == 0) ckpts.emplace_back(std::atoll(n.c_str() + 5), e.path());
  }
  std::sort(ckpts.begin(), ckpts.end());
  for (size_t i = 0; i + static_cast<size_t>(std::max<int64_t>(0, keep)) < ckpts.size(); ++i) {
    absl::Status removed = RemoveTree(ckpts[i].second.string());
    if (!removed.ok()) TIDAL_LOG(WARN) << removed;
    TIDAL_LOG(INFO) << "removed old checkpoint " << ckpts[i].second.string();
  }
}

}  // namespace tidal::scheduler
