#include "core/remove_tree.h"
#include "trainer/checkpoint.h"

#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "core/hash.h"

namespace tidal::trainer {
namespace {

using json = nlohmann::json;

constexpr const char* kFormat = "tidal-sharded-checkpoint-v1";

absl::Status MakeDirs(const std::string& path) {
  for (size_t pos = 1; pos <= path.size(); ++pos) {
    if (pos < path.size() && path[pos] != '/') continue;
    const std::string prefix = path.substr(0, pos);
    if (mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST) {
      return absl::InternalError(absl::StrCat("cannot create directory ", prefix, ": ", strerror(errno)));
    }
  }
  return absl::OkStatus();
}

std::string ParentDir(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::string RankBin(int r) { return absl::StrCat("rank-", r, ".bin"); }
std::string RankIndex(int r) { return absl::StrCat("rank-", r, ".json"); }

absl::Status Errno(const std::string& what, const std::string& path) {
  return absl::InternalError(absl::StrCat(what, " ", path, ": ", strerror(errno)));
}

// Writes `data` to `path` and fsyncs it; returns its CRC-32C through `crc`.
absl::Status WriteSynced(const std::string& path, const std::string& data, uint32_t* crc = nullptr) {
  int fd = open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) return Errno("cannot create", path);
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      close(fd);
      return Errno("cannot write", path);
    }
    off += static_cast<size_t>(n);
  }
  if (fsync(fd) != 0) {
    close(fd);
    return Errno("cannot fsync", path);
  }
  close(fd);
  if (crc) *crc = Crc32c(data.data(), data.size());
  return absl::OkStatus();
}

absl::Status FsyncDir(const std::string& dir) {
  int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Errno("cannot open directory", dir);
  int rc = fsync(fd);
  close(fd);
  if (rc != 0) return Errno("cannot fsync directory", dir);
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("checkpoint file ", path, " is missing"));
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Every rank learns whether all ranks succeeded; a failed rank keeps its own error.
absl::Status Agree(Communicator& comm, const absl::Status& local, at::Device dev, const char* phase) {
  at::Tensor flag = at::full({1}, local.ok() ? 0 : 1, at::TensorOptions().dtype(at::kInt).device(dev));
  TIDAL_RETURN_IF_ERROR(comm.AllReduce(flag, ReduceOp::kMax));
  if (!local.ok()) return local;
  if (flag.to(at::kCPU).item<int>() != 0) {
    return absl::AbortedError(absl::StrCat("checkpoint ", phase, " failed on another rank"));
  }
  return absl::OkStatus();
}

at::Device DeviceOf(const NamedTensorList& t) {
  for (const auto& [name, x] : t) {
    if (x.defined() && !x.is_cpu()) return x.device();
  }
  return at::kCPU;
}

absl::Status WriteRankFiles(const std::string& partial, int rank, const NamedTensorList& tensors) {
  std::string bin;
  json index;
  index["tensors"] = json::array();
  for (const auto& [name, t] : tensors) {
    at::Tensor c = t.detach().to(at::kCPU).contiguous();
    json e;
    e["name"] = name;
    e["dtype"] = std::string(c10::toString(c.scalar_type()));
    e["shape"] = c.sizes().vec();
    e["offset"] = bin.size();
    e["nbytes"] = c.nbytes();
    bin.append(static_cast<const char*>(c.data_ptr()), c.nbytes());
    index["tensors"].push_back(e);
  }
  uint32_t crc = 0;
  TIDAL_RETURN_IF_ERROR(WriteSynced(partial + "/" + RankBin(rank), bin, &crc));
  index["bin_bytes"] = bin.size();
  index["bin_crc32c"] = crc;
  return WriteSynced(partial + "/" + RankIndex(rank), index.dump(1));
}

absl::Status Commit(const std::string& dir, const std::string& partial, int world) {
  json files = json::object();
  for (int r = 0; r < world; ++r) {
    TIDAL_ASSIGN_OR_RETURN(std::string idx_text, ReadAll(partial + "/" + RankIndex(r)));
    json idx = json::parse(idx_text, nullptr, false);
    if (idx.is_discarded()) return absl::InternalError(absl::StrCat("rank ", r, " wrote an unreadable index"));
    files[RankIndex(r)] = {{"bytes", idx_text.size()}, {"crc32c", Crc32c(idx_text.data(), idx_text.size())}};
    files[RankBin(r)] = {{"bytes", idx["bin_bytes"]}, {"crc32c", idx["bin_crc32c"]}};
  }
  TIDAL_ASSIGN_OR_RETURN(std::string meta_text, ReadAll(partial + "/meta.json"));
  files["meta.json"] = {{"bytes", meta_text.size()}, {"crc32c", Crc32c(meta_text.data(), meta_text.size())}};
  json manifest = {{"format", kFormat}, {"world_size", world}, {"files", files}};
  const std::string tmp = partial + "/manifest.json.tmp";
  TIDAL_RETURN_IF_ERROR(WriteSynced(tmp, manifest.dump(2)));
  if (rename(tmp.c_str(), (partial + "/manifest.json").c_str()) != 0) return Errno("cannot rename", tmp);
  TIDAL_RETURN_IF_ERROR(FsyncDir(partial));
  TIDAL_RETURN_IF_ERROR(RemoveTree(dir));  // an older checkpoint under the same name
  if (rename(partial.c_str(), dir.c_str()) != 0) return Errno("cannot rename " + partial + " to", dir);
  return FsyncDir(ParentDir(dir));
}

}  // namespace

absl::Status SaveShardedCheckpoint(const std::string& dir_in, Communicator& comm, const NamedTensorList& tensors,
                                   const std::string& meta) {
  std::string dir = dir_in;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  const std::string partial = dir + ".partial";
  const at::Device dev = DeviceOf(tensors);
  absl::Status local = absl::OkStatus();
  if (comm.rank() == 0) {
    local = RemoveTree(partial);
    if (local.ok()) local = MakeDirs(partial);
  }
  TIDAL_RETURN_IF_ERROR(Agree(comm, local, dev, "directory creation"));
  local = WriteRankFiles(partial, comm.rank(), tensors);
  if (local.ok() && comm.rank() == 0) local = WriteSynced(partial + "/meta.json", meta);
  TIDAL_RETURN_IF_ERROR(Agree(comm, local, dev, "write"));
  if (comm.rank() == 0) local = Commit(dir, partial, comm.world_size());
  return Agree(comm, local, dev, "commit");
}

namespace {

absl::Status VerifyFile(const std::string& dir, const json& files, const std::string& name, const std::string& data) {
  if (!files.is_object() || !files.contains(name)) {
    return absl::DataLossError(absl::StrCat("checkpoint ", dir, "/manifest.json does not list ", name));
  }
  const json& entry = files[name];
  if (!entry.is_object() || !entry.contains("bytes") || !entry["bytes"].is_number_unsigned() ||
      !entry.contains("crc32c") || !entry["crc32c"].is_number_unsigned()) {
    return absl::DataLossError(absl::StrCat("checkpoint ", dir, "/manifest.json: the entry of ", name,
                                            " lacks unsigned \"bytes\" and \"crc32c\""));
  }
  const uint64_t bytes = entry["bytes"].get<uint64_t>();
  const uint32_t crc = entry["crc32c"].get<uint32_t>();
  if (data.size() != bytes) {
    return absl::DataLossError(absl::StrCat("checkpoint file ", dir, "/", name, " is ", data.size(),
                                            " bytes, manifest says ", bytes, " (truncated or replaced)"));
  }
  const uint32_t got = Crc32c(data.data(), data.size());
  if (got != crc) {
    return absl::DataLossError(absl::StrCat("checkpoint file ", dir, "/", name, " is corrupted: crc32c ", got,
                                            ", manifest says ", crc));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> LoadRank(const std::string& dir, int rank, int world, const NamedTensorList& into) {
  TIDAL_ASSIGN_OR_RETURN(std::string manifest_text, ReadAll(dir + "/manifest.json"));
  json manifest = json::parse(manifest_text, nullptr, false);
  if (manifest.is_discarded() || manifest.value("format", "") != kFormat) {
    return absl::DataLossError(absl::StrCat("checkpoint ", dir, ": manifest.json is not a ", kFormat, " manifest"));
  }
  if (!manifest.contains("world_size") || !manifest["world_size"].is_number_integer() || !manifest.contains("files")) {
    return absl::DataLossError(absl::StrCat("checkpoint ", dir, "/manifest.json lacks \"world_size\" or \"files\""));
  }
  if (manifest["world_size"].get<int>() != world) {
    return absl::FailedPreconditionError(absl::StrCat("checkpoint ", dir, " was saved by ", manifest["world_size"].get<int>(),
                                                      " ranks; this group has ", world, " (resharding unsupported)"));
  }
  const json& files = manifest["files"];
  TIDAL_ASSIGN_OR_RETURN(std::string meta, ReadAll(dir + "/meta.json"));
  TIDAL_RETURN_IF_ERROR(VerifyFile(dir, files, "meta.json", meta));
  TIDAL_ASSIGN_OR_RETURN(std::string idx_text, ReadAll(dir + "/" + RankIndex(rank)));
  TIDAL_RETURN_IF_ERROR(VerifyFile(dir, files, RankIndex(rank), idx_text));
  TIDAL_ASSIGN_OR_RETURN(std::string bin, ReadAll(dir + "/" + RankBin(rank)));
  TIDAL_RETURN_IF_ERROR(VerifyFile(dir, files, RankBin(rank), bin));
  json idx = json::parse(idx_text);
  std::map<std::string, json> entries;
  for (const json& e : idx["tensors"]) entries[e["name"].get<std::string>()] = e;
  for (const auto& [name, t] : into) {
    auto it = entries.find(name);
    if (it == entries.end()) {
      return absl::NotFoundError(absl::StrCat("checkpoint ", dir, "/", RankIndex(rank), " has no tensor ", name));
    }
    const json& e = it->second;
    const std::vector<int64_t> shape = e["shape"].get<std::vector<int64_t>>();
    const std::string dtype = e["dtype"].get<std::string>();
    if (at::IntArrayRef(shape) != t.sizes() || dtype != c10::toString(t.scalar_type())) {
      return absl::FailedPreconditionError(absl::StrCat("checkpoint tensor ", name, " is ", dtype, c10::str(at::IntArrayRef(shape)),
                                                        ", expected ", c10::toString(t.scalar_type()),
                                                        c10::str(t.sizes()), " (different model or options?)"));
    }
    const uint64_t off = e["offset"].get<uint64_t>(), nbytes = e["nbytes"].get<uint64_t>();
    if (off + nbytes > bin.size() || nbytes != t.nbytes()) {
      return absl::DataLossError(absl::StrCat("checkpoint tensor ", name, " lies outside ", RankBin(rank)));
    }
    at::Tensor src = at::from_blob(bin.data() + off, t.sizes(), at::TensorOptions().dtype(t.scalar_type()));
    t.copy_(src);
  }
  return meta;
}

}  // namespace

absl::StatusOr<std::string> LoadShardedCheckpoint(const std::string& dir, Communicator& comm,
                                                  const NamedTensorList& into) {
  absl::StatusOr<std::string> meta = LoadRank(dir, comm.rank(), comm.world_size(), into);
  TIDAL_RETURN_IF_ERROR(Agree(comm, meta.status(), DeviceOf(into), "load"));
  return meta;
}

absl::StatusOr<ShardedCheckpointContents> ReadShardedCheckpoint(const std::string& dir) {
  TIDAL_ASSIGN_OR_RETURN(std::string manifest_text, ReadAll(dir + "/manifest.json"));
  json manifest = json::parse(manifest_text, nullptr, false);
  if (manifest.is_discarded() || manifest.value("format", "") != kFormat || !manifest.contains("world_size")) {
    return absl::DataLossError(absl::StrCat("checkpoint ", dir, ": manifest.json is not a ", kFormat, " manifest"));
  }
  const json& files = manifest["files"];
  ShardedCheckpointContents out;
  out.world_size = manifest["world_size"].get<int>();
  TIDAL_ASSIGN_OR_RETURN(out.meta, ReadAll(dir + "/meta.json"));
  TIDAL_RETURN_IF_ERROR(VerifyFile(dir, files, "meta.json", out.meta));
  for (int r = 0; r < out.world_size; ++r) {
    TIDAL_ASSIGN_OR_RETURN(std::string idx_text, ReadAll(dir + "/" + RankIndex(r)));
    TIDAL_RETURN_IF_ERROR(VerifyFile(dir, files, RankIndex(r), idx_text));
    TIDAL_ASSIGN_OR_RETURN(std::string bin, ReadAll(dir + "/" + RankBin(r)));
    TIDAL_RETURN_IF_ERROR(VerifyFile(dir, files, RankBin(r), bin));
    json idx = json::parse(idx_text, nullptr, false);
    if (idx.is_discarded() || !idx.contains("tensors")) {
      return absl::DataLossError(absl::StrCat("checkpoint ", dir, "/", RankIndex(r), " is not a rank index"));
    }
    NamedTensorList tensors;
    for (const json& e : idx["tensors"]) {
      const std::string name = e["name"].get<std::string>();
      const std::vector<int64_t> shape = e["shape"].get<std::vector<int64_t>>();
      const std::string dtype_name = e["dtype"].get<std::string>();
      std::optional<at::ScalarType> dtype;
      for (at::ScalarType c : {at::kFloat, at::kDouble, at::kBFloat16, at::kHalf, at::kLong, at::kInt, at::kByte}) {
        if (dtype_name == c10::toString(c)) dtype = c;
      }
      if (!dtype) {
        return absl::DataLossError(absl::StrCat("checkpoint tensor ", name, " has unknown dtype ", dtype_name));
      }
      at::Tensor t = at::empty(shape, at::TensorOptions().dtype(*dtype));
      const uint64_t off = e["offset"].get<uint64_t>(), nbytes = e["nbytes"].get<uint64_t>();
      if (off + nbytes > bin.size() || nbytes != t.nbytes()) {
        return absl::DataLossError(absl::StrCat("checkpoint tensor ", name, " lies outside ", RankBin(r)));
      }
      std::memcpy(t.data_ptr(), bin.data() + off, nbytes);
      tensors.emplace_back(name, std::move(t));
    }
    out.ranks.push_back(std::move(tensors));
  }
  return out;
}

}  // namespace tidal::trainer
