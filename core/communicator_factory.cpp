#include "core/communicator_factory.h"

#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/communicator_nccl.h"
#include "core/communicator_shm.h"

namespace tidal {

absl::StatusOr<std::unique_ptr<Communicator>> CreateCommunicatorForDevice(const CommunicatorSpec& spec) {
  if (spec.world_size < 1 || spec.rank < 0 || spec.rank >= spec.world_size) {
    return absl::InvalidArgumentError(absl::StrCat("communicator: rank ", spec.rank, " outside world size ",
                                                   spec.world_size));
  }
  if (spec.device == "cpu") {
    ShmCommunicatorOptions o;
    o.group = spec.group;
    o.rank = spec.rank;
    o.world_size = spec.world_size;
    o.timeout = spec.timeout;
    TIDAL_ASSIGN_OR_RETURN(std::unique_ptr<ShmCommunicator> c, ShmCommunicator::Create(o));
    return std::unique_ptr<Communicator>(std::move(c));
  }
  int index = -1;
  if (spec.device.rfind("cuda:", 0) != 0 || !absl::SimpleAtoi(spec.device.substr(5), &index) || index < 0) {
    return absl::InvalidArgumentError(absl::StrCat("communicator: device '", spec.device, "': expected cpu or cuda:N"));
  }
  if (spec.world_size > 1 && spec.nccl_id.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("communicator: ", spec.world_size,
                                                   " CUDA ranks need the NCCL unique id from the controller"));
  }
  // NVLink multicast (NVLS) is off unless the user asks for it: it needs fabric-manager state that
  // shared machines do not guarantee, and a failed NVLS set-up hangs init instead of failing it.
  setenv("NCCL_NVLS_ENABLE", "0", /*overwrite=*/0);
  NcclCommunicatorOptions o;
  o.rank = spec.rank;
  o.world_size = spec.world_size;
  o.device = index;
  o.timeout = spec.timeout;
  o.name = absl::StrCat("train group ", spec.group);
  o.unique_id = spec.nccl_id;
  // World size 1 without an id: rank 0 makes its own, no peer to hand it to.
  NcclIdExchange none = [](std::string&) { return absl::OkStatus(); };
  return CreateNcclCommunicator(o, none);
}

}  // namespace tidal
