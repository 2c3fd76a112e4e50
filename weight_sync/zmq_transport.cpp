#include "weight_sync/zmq_transport.h"

#include <algorithm>

#include "core/clock.h"
#include "weight_sync/weight_packer.h"

namespace tidal::weight_sync {

ZmqTransport::ZmqTransport(Gather gather, bool sends, int64_t bucket_bytes, Send send, LocalInstall local_install)
    : gather_(std::move(gather)),
      sends_(sends),
      bucket_bytes_(std::max<int64_t>(1, bucket_bytes)),
      send_(std::move(send)),
      local_install_(std::move(local_install)) {}

absl::StatusOr<PublishStats> ZmqTransport::Publish(int64_t version) {
  const MonoTime t0 = MonoNow();
  NamedTensors full;
  TIDAL_ASSIGN_OR_RETURN(PublishStats out,
                         TimedPublish(version, gather_, [&](NamedTensors& gathered) -> absl::StatusOr<int64_t> {
                           int64_t bytes = 0;
                           if (sends_) {
                             for (PackedBucket& b : PackWeights(gathered, version, bucket_bytes_)) {
                               bytes += static_cast<int64_t>(b.bytes.size());
                               TIDAL_RETURN_IF_ERROR(send_(b.header, std::move(b.bytes)));
                             }
                           }
                           full = std::move(gathered);
                           return bytes;
                         }));
  // The local engine's install is not part of the send (it is the engine's weight update).
  if (local_install_) TIDAL_RETURN_IF_ERROR(local_install_(full, version));
  out.seconds = SecondsSince(t0);
  return out;
}

}  // namespace tidal::weight_sync
