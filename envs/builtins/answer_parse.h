// Answer extraction shared by the built-in verifiers.
//
// FirstInteger: the first run of ASCII digits in the text, with a '-' directly before it taken
// as its sign ("  3", "3 times", "it is -12." -> 3, 3, -12). Digits beyond int64 range make the
// answer unparseable (nullopt), never a wrapped value.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace tidal::envs::builtins {

std::optional<int64_t> FirstInteger(std::string_view text);

}  // namespace tidal::envs::builtins
