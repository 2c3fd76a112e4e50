#include "core/tokenizer.h"

#include <filesystem>

#include "core/bpe_tokenizer.h"
#include "core/byte_tokenizer.h"

namespace tidal {

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& spec) {
  if (spec == "byte") return std::make_unique<ByteTokenizer>();
  std::error_code ec;
  if (!std::filesystem::is_directory(spec, ec)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tokenizer spec '", spec, "' is neither \"byte\" nor a directory holding tokenizer.json"));
  }
  const std::filesystem::path json = std::filesystem::path(spec) / "tokenizer.json";
  if (!std::filesystem::is_regular_file(json, ec)) {
    return absl::NotFoundError(
        absl::StrCat("tokenizer directory '", spec, "' has no tokenizer.json"));
  }
  TIDAL_ASSIGN_OR_RETURN(std::unique_ptr<BpeTokenizer> bpe, BpeTokenizer::Load(spec));
  return std::unique_ptr<Tokenizer>(std::move(bpe));
}

}  // namespace tidal
