#include "scheduler/tag.h"

#include "core/message.h"

namespace tidal::scheduler {

const char* TagName(Tag tag) { return tag == Tag::kTrain ? "train" : "rollout"; }

std::optional<Tag> ParseTag(std::string_view name) {
  if (name == "rollout") return Tag::kRollout;
  if (name == "train") return Tag::kTrain;
  return std::nullopt;
}

void to_json(nlohmann::json& j, Tag tag) { j = TagName(tag); }

void from_json(const nlohmann::json& j, Tag& tag) { EnumFromName(j, tag, ParseTag, "tag"); }

}  // namespace tidal::scheduler
