#include "scheduler/dashboard.h"

#include <filesystem>
#include <fstream>
#include <sstream>

namespace tidal::scheduler {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

json ReadJsonl(const fs::path& path) {
  json out = json::array();
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    json j = json::parse(line, nullptr, false);
    if (!j.is_discarded()) out.push_back(std::move(j));  // a line being appended right now
  }
  return out;
}

std::string Slurp(const fs::path& path, bool* ok) {
  std::ifstream in(path, std::ios::binary);
  *ok = static_cast<bool>(in);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

json DashboardData(const std::string& run_dir, const LiveState* live) {
  const fs::path dir(run_dir);
  json events = json::array();
  for (json& e : ReadJsonl(dir / "metrics.jsonl")) {
    // The summary repeats summary.json; the rest is what the charts need.
    if (e.value("event", "") != "summary") events.push_back(std::move(e));
  }
  json summary = nullptr;
  bool ok = false;
  std::string s = Slurp(dir / "summary.json", &ok);
  if (ok) {
    summary = json::parse(s, nullptr, false);
    if (summary.is_discarded()) summary = nullptr;
  }
  std::string name = fs::path(run_dir).filename().string();
  std::string recipe = Slurp(dir / "recipe.yaml", &ok);
  if (ok) {
    // The resolved recipe's first `name:` line (written by RecipeToYaml, top level first).
    std::istringstream in(recipe);
    for (std::string line; std::getline(in, line);) {
      if (line.rfind("name: ", 0) == 0) {
        name = line.substr(6);
        if (name.size() >= 2 && (name.front() == '"' || name.front() == '\'')) name = name.substr(1, name.size() - 2);
        break;
      }
    }
  }
  return {{"run", name},
          {"run_dir", run_dir},
          {"events", std::move(events)},
          {"timeline", ReadJsonl(dir / "timeline.jsonl")},
          {"summary", summary},
          {"live", live ? live->Get() : json(nullptr)}};
}

std::vector<HttpRoute> DashboardRoutes(const std::string& run_dir, std::shared_ptr<const LiveState> live,
                                       const std::string& chart_js_path) {
  std::vector<HttpRoute> routes;
  auto page = [] { return HttpReply{200, "text/html; charset=utf-8", DashboardHtml()}; };
  routes.push_back({"/", page});
  routes.push_back({"/dashboard", page});
  routes.push_back({"/chart.js", [chart_js_path] {
                      bool ok = false;
                      std::string js = Slurp(chart_js_path, &ok);
                      if (!ok) {
                        return HttpReply{404, "text/plain",
                                         "Chart.js not found at " + chart_js_path +
                                             " (Debian: apt-get install libjs-chart.js)\n"};
                      }
                      return HttpReply{200, "application/javascript", std::move(js)};
                    }});
  routes.push_back({"/api/run.json", [run_dir, live] {
                      return HttpReply{200, "application/json", DashboardData(run_dir, live.get()).dump()};
                    }});
  return routes;
}

}  // namespace tidal::scheduler
