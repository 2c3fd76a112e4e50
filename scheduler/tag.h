// A device's tag: what the controller has it doing (rollout or train). The one definition for the
// device pool, the tag policies, the run report and the wire (WorkerSetup::tag, SetTag::tag).
//
// On the wire a tag is its name ("rollout" | "train"), so traces stay readable; decoding any other
// value throws nlohmann::json::type_error, which Envelope::As turns into InvalidArgument (a
// malformed message is refused, never read as some default tag).
//
// Contract: plain data, no state; thread-safe.
#pragma once

#include <optional>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

namespace tidal::scheduler {

enum class Tag : int { kRollout = 0, kTrain = 1 };

const char* TagName(Tag tag);
std::optional<Tag> ParseTag(std::string_view name);

void to_json(nlohmann::json& j, Tag tag);
void from_json(const nlohmann::json& j, Tag& tag);

}  // namespace tidal::scheduler
