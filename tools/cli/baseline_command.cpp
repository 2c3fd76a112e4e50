#include "tools/cli/baseline_command.h"

#include <cstdio>

#include "absl/status/status.h"

namespace tidal::cli {

absl::StatusOr<CommandOutput> RunCommand(const std::string& cmd) {
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (pipe == nullptr) return absl::InternalError("cannot start " + cmd);
  CommandOutput r;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof buf, pipe)) > 0;) r.out.append(buf, n);
  r.exit_code = ::pclose(pipe);
  return r;
}

std::optional<nlohmann::json> LastJsonLine(const std::string& out) {
  const size_t end = out.find_last_not_of('\n');
  if (end == std::string::npos) return std::nullopt;
  const size_t nl = out.rfind('\n', end);
  const size_t begin = nl == std::string::npos ? 0 : nl + 1;
  nlohmann::json j = nlohmann::json::parse(out.substr(begin, end - begin + 1), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return std::nullopt;
  return j;
}

}  // namespace tidal::cli
