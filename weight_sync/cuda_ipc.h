// CUDA IPC weight path: trainer and engine on the same GPU in different processes. The trainer
// packs a version into a staging buffer it exports once; the engine maps that buffer, verifies
// every bucket's checksum on the device and copies into its parameters: no host hop.
//
// Contract:
// - IpcExporter (trainer side) owns one cudaMalloc'd staging buffer (IPC handles need a whole
//   allocation, not a caching-allocator block) and an interprocess event. Publish(v) packs on
//   the caller's current stream, records the event and returns the IpcNotice the control plane
//   carries to the engine's process. The buffer is single-buffered: Publish refuses a new
//   version until the engine has sent back Released(v) for the previous one.
// - IpcImporter (engine side) maps the buffer on first use (and again when the exporter's handle
//   changes), makes its stream wait for the exporter's event, checksums and verifies every
//   bucket (Receive), and copies them into the engine's tensors (Apply) only after Receive
//   succeeded for that version. Release() waits for its copies and returns the version to ack;
//   after that the exporter may overwrite the buffer.
// - Both sides plan the same BucketLayout. Same GPU only (CUDA IPC across devices would go over
//   the peer link: that is the NCCL path's job). One thread drives each object.
// - Builds without CUDA return Unimplemented from Create.
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/message.h"
#include "weight_sync/bucket_layout.h"
#include "weight_sync/transport.h"

namespace tidal::weight_sync {

struct IpcNotice {
  int64_t version = -1;
  int32_t device = 0;
  int64_t bytes = 0;
  std::string memory_handle;  // hex of cudaIpcMemHandle_t
  std::string event_handle;   // hex of cudaIpcEventHandle_t
  int32_t exporter_pid = 0;
};
TIDAL_MESSAGE(IpcNotice, version, device, bytes, memory_handle, event_handle, exporter_pid)

class IpcExporter {
 public:
  static absl::StatusOr<std::unique_ptr<IpcExporter>> Create(BucketLayout layout, int device);
  ~IpcExporter();
  absl::StatusOr<IpcNotice> Publish(std::span<const at::Tensor> sources, int64_t version);
  // The engine's process is done with `version`.
  void Released(int64_t version);
  const at::Tensor& staging() const;

 private:
  struct Impl;
  explicit IpcExporter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// IpcExporter behind the weights plane's Transport (TransportKind::kIpc): each Publish takes the
// policy's tensors from `sources` (indexed like the layout's params, on the exporter's device),
// packs them into the exported buffer and hands the notice to `notify` (the control plane's way
// to the engine's process). Released(v) passes the engine's ack on to the exporter.
// PublishStats: gather_seconds = `sources`, send_seconds = the pack, bytes = the notice's bytes.
class IpcTransport : public Transport {
 public:
  using Sources = std::function<absl::StatusOr<std::vector<at::Tensor>>()>;
  using Notify = std::function<absl::Status(const IpcNotice& notice)>;
  IpcTransport(std::unique_ptr<IpcExporter> exporter, Sources sources, Notify notify);

  TransportKind kind() const override { return TransportKind::kIpc; }
  absl::StatusOr<PublishStats> Publish(int64_t version) override;
  void Released(int64_t version) { exporter_->Released(version); }

 private:
  std::unique_ptr<IpcExporter> exporter_;
  Sources sources_;
  Notify notify_;
};

class IpcImporter {
 public:
  static absl::StatusOr<std::unique_ptr<IpcImporter>> Create(BucketLayout layout, int device);
  ~IpcImporter();
  absl::Status Receive(const IpcNotice& notice);
  absl::Status Apply(std::span<const at::Tensor> targets);
  // Waits for the copies out of the mapped buffer; returns the version to send back.
  absl::StatusOr<int64_t> Release();
  const at::Tensor& mapped() const;

 private:
  struct Impl;
  explicit IpcImporter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tidal::weight_sync
