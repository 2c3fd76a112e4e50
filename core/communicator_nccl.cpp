#include "core/communicator_nccl.h"

#include <ATen/ATen.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

#ifdef TIDAL_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#endif

namespace tidal {

NcclIdExchange NcclIdViaCommunicator(Communicator& bootstrap) {
  return [&bootstrap](std::string& id) -> absl::Status {
    at::Tensor buf = at::zeros({static_cast<int64_t>(id.size())}, at::kByte);
    if (bootstrap.rank() == 0) std::memcpy(buf.data_ptr(), id.data(), id.size());
    TIDAL_RETURN_IF_ERROR(bootstrap.Broadcast(buf, 0));
    std::memcpy(id.data(), buf.data_ptr(), id.size());
    return absl::OkStatus();
  };
}

NcclIdExchange NcclIdViaFile(std::string path, int rank, absl::Duration timeout) {
  return [path = std::move(path), rank, timeout](std::string& id) -> absl::Status {
    if (rank == 0) {
      const std::string tmp = absl::StrCat(path, ".tmp.", getpid());
      int fd = open(tmp.c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0600);
      if (fd < 0) return absl::PermissionDeniedError(absl::StrCat("cannot write NCCL id file ", tmp, ": ", strerror(errno)));
      bool ok = write(fd, id.data(), id.size()) == static_cast<ssize_t>(id.size()) && fsync(fd) == 0;
      close(fd);
      if (!ok || rename(tmp.c_str(), path.c_str()) != 0) {
        return absl::InternalError(absl::StrCat("cannot publish NCCL id file ", path, ": ", strerror(errno)));
      }
      return absl::OkStatus();
    }
    const absl::Time deadline = absl::Now() + timeout;
    while (true) {
      std::ifstream in(path, std::ios::binary);
      if (in) {
        std::string got((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        if (got.size() == id.size()) {
          id = got;
          return absl::OkStatus();
        }
      }
      if (absl::Now() > deadline) {
        return absl::DeadlineExceededError(absl::StrCat("rank ", rank, ": NCCL id file ", path, " did not appear within ",
                                                        absl::FormatDuration(timeout)));
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
  };
}

std::string NcclIdToHex(const std::string& id) {
  static const char* kHex = "0123456789abcdef";
  std::string out;
  out.reserve(id.size() * 2);
  for (unsigned char c : id) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 15]);
  }
  return out;
}

absl::StatusOr<std::string> NcclIdFromHex(const std::string& hex) {
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  if (hex.size() % 2 != 0) return absl::InvalidArgumentError("NCCL id: odd number of hex digits");
  std::string out(hex.size() / 2, '\0');
  for (size_t i = 0; i < out.size(); ++i) {
    const int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return absl::InvalidArgumentError(absl::StrCat("NCCL id: bad hex digit at ", 2 * i));
    out[i] = static_cast<char>(hi * 16 + lo);
  }
  return out;
}

#ifndef TIDAL_WITH_CUDA

bool NcclAvailable() { return false; }

absl::StatusOr<std::string> NewNcclUniqueId() {
  return absl::UnimplementedError("this build has no NCCL backend (configure with TIDAL_CUDA=ON)");
}

absl::StatusOr<std::unique_ptr<Communicator>> CreateNcclCommunicator(const NcclCommunicatorOptions&,
                                                                     const NcclIdExchange&) {
  return absl::UnimplementedError("this build has no NCCL backend (configure with TIDAL_CUDA=ON)");
}

#else  // TIDAL_WITH_CUDA

bool NcclAvailable() { return true; }

absl::StatusOr<std::string> NewNcclUniqueId() {
  ncclUniqueId id;
  ncclResult_t r = ncclGetUniqueId(&id);
  if (r != ncclSuccess) {
    return absl::InternalError(absl::StrCat(__FILE__, ":", __LINE__, ": ncclGetUniqueId failed: ",
                                            ncclGetErrorString(r), " (", static_cast<int>(r), ")"));
  }
  return std::string(reinterpret_cast<const char*>(&id), sizeof(id));
}

namespace {

absl::Status NcclError(ncclResult_t r, const char* expr, const char* file, int line, const std::string& name) {
  return absl::InternalError(absl::StrCat(file, ":", line, ": ", name, ": ", expr, " failed: ",
                                          ncclGetErrorString(r), " (", static_cast<int>(r), ")"));
}
absl::Status CudaError(cudaError_t r, const char* expr, const char* file, int line, const std::string& name) {
  return absl::InternalError(absl::StrCat(file, ":", line, ": ", name, ": ", expr, " failed: ",
                                          cudaGetErrorString(r)));
}

// Return-code checks; `name_` is the communicator's name in scope.
#define TIDAL_NCCL_CHECK(expr)                                                  \
  do {                                                                          \
    ncclResult_t tidal_nccl_r_ = (expr);                                        \
    if (tidal_nccl_r_ != ncclSuccess && tidal_nccl_r_ != ncclInProgress)        \
      return NcclError(tidal_nccl_r_, #expr, __FILE__, __LINE__, name_);        \
  } while (0)
#define TIDAL_CUDA_CHECK(expr)                                                  \
  do {                                                                          \
    cudaError_t tidal_cuda_r_ = (expr);                                         \
    if (tidal_cuda_r_ != cudaSuccess)                                           \
      return CudaError(tidal_cuda_r_, #expr, __FILE__, __LINE__, name_);        \
  } while (0)

absl::StatusOr<ncclDataType_t> NcclType(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return ncclFloat32;
    case at::kDouble: return ncclFloat64;
    case at::kHalf: return ncclFloat16;
    case at::kBFloat16: return ncclBfloat16;
    case at::kInt: return ncclInt32;
    case at::kLong: return ncclInt64;
    case at::kChar: return ncclInt8;
    case at::kByte:
    case at::kBool: return ncclUint8;
    default: return absl::InvalidArgumentError(absl::StrCat("nccl: unsupported dtype ", c10::toString(t)));
  }
}

ncclRedOp_t NcclOp(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return ncclSum;
    case ReduceOp::kAvg: return ncclAvg;
    case ReduceOp::kMax: return ncclMax;
    case ReduceOp::kMin: return ncclMin;
  }
  return ncclSum;
}

struct Event {
  cudaEvent_t e = nullptr;
  ~Event() {
    if (e) cudaEventDestroy(e);
  }
};

class NcclCommunicator;

class NcclWork final : public CommWork {
 public:
  NcclWork(NcclCommunicator* comm, std::shared_ptr<Event> done) : comm_(comm), done_(std::move(done)) {}
  absl::Status Wait() override;

 private:
  NcclCommunicator* comm_;
  std::shared_ptr<Event> done_;
};

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(const NcclCommunicatorOptions& o)
      : o_(o), name_(absl::StrCat(o.name, " rank ", o.rank, "/", o.world_size, " (cuda:", o.device, ")")) {}

  ~NcclCommunicator() override {
    {
      std::lock_guard<std::mutex> l(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (watchdog_.joinable()) watchdog_.join();
    if (comm_ == nullptr) return;
    c10::cuda::CUDAGuard guard(o_.device);
    if (aborted_.load()) return;  // ncclCommAbort already released it
    // Flush queued work (bounded), then free; abort instead when flushing fails or hangs. A
    // destructor has nowhere to report either outcome.
    ncclResult_t st = ncclCommFinalize(comm_);
    const absl::Time deadline = absl::Now() + o_.timeout;
    while (st == ncclInProgress || st == ncclSuccess) {
      if (ncclCommGetAsyncError(comm_, &st) != ncclSuccess) break;
      if (st == ncclSuccess) break;
      if (absl::Now() > deadline) break;
      absl::SleepFor(absl::Milliseconds(1));
    }
    if (st != ncclSuccess) {
      ncclCommAbort(comm_);
      return;
    }
    ncclCommDestroy(comm_);
  }

  absl::Status Init(const NcclIdExchange& exchange) {
    if (o_.world_size < 1 || o_.rank < 0 || o_.rank >= o_.world_size) {
      return absl::InvalidArgumentError(absl::StrCat(name_, ": rank outside world"));
    }
    c10::cuda::CUDAGuard guard(o_.device);
    ncclUniqueId id;
    std::memset(&id, 0, sizeof(id));
    std::string bytes;
    if (!o_.unique_id.empty()) {
      bytes = o_.unique_id;  // handed out by whoever hosts the bootstrap root
    } else {
      if (!exchange) return absl::InvalidArgumentError(absl::StrCat(name_, ": neither a unique id nor an id exchange"));
      if (o_.rank == 0) TIDAL_NCCL_CHECK(ncclGetUniqueId(&id));
      bytes.assign(reinterpret_cast<const char*>(&id), sizeof(id));
      TIDAL_RETURN_IF_ERROR(exchange(bytes));
    }
    if (bytes.size() != sizeof(id)) {
      return absl::InvalidArgumentError(absl::StrCat(name_, ": NCCL unique id has ", bytes.size(), " bytes, expected ", sizeof(id)));
    }
    std::memcpy(&id, bytes.data(), sizeof(id));
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;  // lets init and every call be bounded by the timeout
    TIDAL_NCCL_CHECK(ncclCommInitRankConfig(&comm_, o_.world_size, id, o_.rank, &config));
    TIDAL_RETURN_IF_ERROR(Settle("ncclCommInitRankConfig"));
    comm_stream_ = c10::cuda::getStreamFromPool(/*isHighPriority=*/true, o_.device);
    stream_ = comm_stream_->stream();
    watchdog_ = std::thread([this] { WatchdogLoop(); });
    return absl::OkStatus();
  }

  int rank() const override { return o_.rank; }
  int world_size() const override { return o_.world_size; }
  std::string backend() const override { return "nccl"; }

  absl::Status AllGather(const at::Tensor& input, const at::Tensor& output) override {
    return AllGatherImpl(input, output, nullptr);
  }
  absl::StatusOr<std::unique_ptr<CommWork>> AllGatherAsync(const at::Tensor& input, const at::Tensor& output) override {
    std::unique_ptr<CommWork> work;
    TIDAL_RETURN_IF_ERROR(AllGatherImpl(input, output, &work));
    return work;
  }

  absl::Status ReduceScatter(const at::Tensor& input, const at::Tensor& output, ReduceOp op) override {
    return ReduceScatterImpl(input, output, op, nullptr);
  }
  absl::StatusOr<std::unique_ptr<CommWork>> ReduceScatterAsync(const at::Tensor& input, const at::Tensor& output,
                                                               ReduceOp op) override {
    std::unique_ptr<CommWork> work;
    TIDAL_RETURN_IF_ERROR(ReduceScatterImpl(input, output, op, &work));
    return work;
  }

  absl::Status AllReduce(const at::Tensor& tensor, ReduceOp op) override {
    TIDAL_ASSIGN_OR_RETURN(ncclDataType_t t, NcclType(tensor.scalar_type()));
    return Run("all_reduce", {tensor}, nullptr, [&](ncclComm_t c, cudaStream_t s) {
      return ncclAllReduce(tensor.data_ptr(), tensor.data_ptr(), tensor.numel(), t, NcclOp(op), c, s);
    });
  }

  absl::Status Broadcast(const at::Tensor& tensor, int root) override {
    TIDAL_ASSIGN_OR_RETURN(ncclDataType_t t, NcclType(tensor.scalar_type()));
    return Run("broadcast", {tensor}, nullptr, [&](ncclComm_t c, cudaStream_t s) {
      return ncclBroadcast(tensor.data_ptr(), tensor.data_ptr(), tensor.numel(), t, root, c, s);
    });
  }

  absl::Status Send(const at::Tensor& tensor, int peer) override {
    TIDAL_ASSIGN_OR_RETURN(ncclDataType_t t, NcclType(tensor.scalar_type()));
    return Run("send", {tensor}, nullptr, [&](ncclComm_t c, cudaStream_t s) {
      return ncclSend(tensor.data_ptr(), tensor.numel(), t, peer, c, s);
    });
  }

  absl::Status Recv(const at::Tensor& tensor, int peer) override {
    TIDAL_ASSIGN_OR_RETURN(ncclDataType_t t, NcclType(tensor.scalar_type()));
    return Run("recv", {tensor}, nullptr, [&](ncclComm_t c, cudaStream_t s) {
      return ncclRecv(tensor.data_ptr(), tensor.numel(), t, peer, c, s);
    });
  }

  absl::Status Barrier() override {
    c10::cuda::CUDAGuard guard(o_.device);
    at::Tensor one = at::ones({1}, at::TensorOptions().dtype(at::kFloat).device(at::kCUDA, o_.device));
    std::unique_ptr<CommWork> work;
    TIDAL_RETURN_IF_ERROR(Run("barrier", {one}, &work, [&](ncclComm_t c, cudaStream_t s) {
      return ncclAllReduce(one.data_ptr(), one.data_ptr(), 1, ncclFloat32, ncclSum, c, s);
    }));
    return WaitHost(last_done_, "barrier");
  }

  // Blocks the host until `done` fires, the watchdog aborts, or the timeout passes.
  absl::Status WaitHost(const std::shared_ptr<Event>& done, const char* op) {
    const absl::Time deadline = absl::Now() + o_.timeout;
    while (true) {
      TIDAL_RETURN_IF_ERROR(CheckUsable(op));
      cudaError_t r = cudaEventQuery(done->e);
      if (r == cudaSuccess) return absl::OkStatus();
      if (r != cudaErrorNotReady) TIDAL_CUDA_CHECK(r);
      if (absl::Now() > deadline) {
        return Abort(absl::DeadlineExceededError(absl::StrCat(name_, ": ", op, " did not finish within ",
                                                              absl::FormatDuration(o_.timeout))));
      }
      absl::SleepFor(absl::Microseconds(100));
    }
  }

  absl::Status CheckUsable(const char* op) {
    std::lock_guard<std::mutex> l(mu_);
    if (!error_.ok()) {
      return absl::Status(error_.code(), absl::StrCat(name_, ": ", op, " on a failed communicator: ", error_.message()));
    }
    return absl::OkStatus();
  }

  absl::Status StreamWait(const std::shared_ptr<Event>& done) {
    c10::cuda::CUDAGuard guard(o_.device);
    TIDAL_CUDA_CHECK(cudaStreamWaitEvent(c10::cuda::getCurrentCUDAStream(o_.device).stream(), done->e, 0));
    return absl::OkStatus();
  }

 private:
  absl::Status AllGatherImpl(const at::Tensor& input, const at::Tensor& output, std::unique_ptr<CommWork>* work) {
    if (output.numel() != input.numel() * o_.world_size || input.scalar_type() != output.scalar_type()) {
      return absl::InvalidArgumentError(absl::StrCat(name_, ": all_gather output must hold world_size x input"));
    }
    TIDAL_ASSIGN_OR_RETURN(ncclDataType_t t, NcclType(input.scalar_type()));
    return Run("all_gather", {input, output}, work, [&](ncclComm_t c, cudaStream_t s) {
      return ncclAllGather(input.data_ptr(), output.data_ptr(), input.numel(), t, c, s);
    });
  }

  absl::Status ReduceScatterImpl(const at::Tensor& input, const at::Tensor& output, ReduceOp op,
                                 std::unique_ptr<CommWork>* work) {
    if (input.numel() != output.numel() * o_.world_size || input.scalar_type() != output.scalar_type()) {
      return absl::InvalidArgumentError(absl::StrCat(name_, ": reduce_scatter input must hold world_size x output"));
    }
    TIDAL_ASSIGN_OR_RETURN(ncclDataType_t t, NcclType(input.scalar_type()));
    return Run("reduce_scatter", {input, output}, work, [&](ncclComm_t c, cudaStream_t s) {
      return ncclReduceScatter(input.data_ptr(), output.data_ptr(), output.numel(), t, NcclOp(op), c, s);
    });
  }

  // Waits (bounded) for a non-blocking NCCL call to leave ncclInProgress.
  absl::Status Settle(const char* what) {
    const absl::Time deadline = absl::Now() + o_.timeout;
    while (true) {
      ncclResult_t st;
      {
        std::lock_guard<std::mutex> l(nccl_mu_);
        if (aborted_.load()) return CheckUsable(what);
        TIDAL_NCCL_CHECK(ncclCommGetAsyncError(comm_, &st));
      }
      if (st == ncclSuccess) return absl::OkStatus();
      if (st != ncclInProgress) return Abort(NcclError(st, what, __FILE__, __LINE__, name_));
      if (absl::Now() > deadline) {
        return Abort(absl::DeadlineExceededError(absl::StrCat(name_, ": ", what, " still in progress after ",
                                                              absl::FormatDuration(o_.timeout))));
      }
      absl::SleepFor(absl::Microseconds(50));
    }
  }

  template <typename Fn>
  absl::Status Run(const char* op, std::initializer_list<at::Tensor> tensors, std::unique_ptr<CommWork>* work, Fn fn) {
    TIDAL_RETURN_IF_ERROR(CheckUsable(op));
    for (const at::Tensor& t : tensors) {
      if (!t.defined() || !t.is_cuda() || t.get_device() != o_.device || !t.is_contiguous()) {
        return absl::InvalidArgumentError(absl::StrCat(name_, ": ", op, " needs contiguous tensors on cuda:", o_.device,
                                                       ", found ", t.defined() ? t.device().str() : "undefined"));
      }
    }
    c10::cuda::CUDAGuard guard(o_.device);
    cudaStream_t cur = c10::cuda::getCurrentCUDAStream(o_.device).stream();
    auto ready = std::make_shared<Event>();
    TIDAL_CUDA_CHECK(cudaEventCreateWithFlags(&ready->e, cudaEventDisableTiming));
    TIDAL_CUDA_CHECK(cudaEventRecord(ready->e, cur));
    TIDAL_CUDA_CHECK(cudaStreamWaitEvent(stream_, ready->e, 0));
    {
      std::lock_guard<std::mutex> l(nccl_mu_);
      if (aborted_.load()) return CheckUsable(op);
      TIDAL_NCCL_CHECK(fn(comm_, stream_));
    }
    TIDAL_RETURN_IF_ERROR(Settle(op));
    for (const at::Tensor& t : tensors) {
      c10::cuda::CUDACachingAllocator::recordStream(t.storage().data_ptr(), *comm_stream_);
    }
    auto done = std::make_shared<Event>();
    TIDAL_CUDA_CHECK(cudaEventCreateWithFlags(&done->e, cudaEventDisableTiming));
    TIDAL_CUDA_CHECK(cudaEventRecord(done->e, stream_));
    {
      std::lock_guard<std::mutex> l(mu_);
      pending_.push_back({done, absl::Now(), op, ++seq_});
    }
    cv_.notify_all();
    last_done_ = done;
    if (work != nullptr) {
      *work = std::make_unique<NcclWork>(this, done);
      return absl::OkStatus();
    }
    TIDAL_CUDA_CHECK(cudaStreamWaitEvent(cur, done->e, 0));
    return absl::OkStatus();
  }

  absl::Status Abort(absl::Status why) {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (error_.ok()) error_ = why;
    }
    AbortComm();
    return why;
  }

  // The only place that aborts; nccl_mu_ keeps it from racing a call on the same comm.
  void AbortComm() {
    std::lock_guard<std::mutex> l(nccl_mu_);
    if (comm_ != nullptr && !aborted_.exchange(true)) ncclCommAbort(comm_);
  }

  void WatchdogLoop() {
    cudaSetDevice(o_.device);
    std::unique_lock<std::mutex> l(mu_);
    while (!stop_) {
      cv_.wait_for(l, std::chrono::milliseconds(100));
      if (stop_ || !error_.ok()) continue;
      while (!pending_.empty()) {
        Pending& p = pending_.front();
        cudaError_t r = cudaEventQuery(p.done->e);
        if (r == cudaSuccess) {
          pending_.pop_front();
          continue;
        }
        absl::Status why;
        if (r != cudaErrorNotReady) {
          why = absl::InternalError(absl::StrCat(name_, ": ", p.op, " #", p.seq, " failed: ", cudaGetErrorString(r)));
        } else if (absl::Now() - p.start > o_.timeout) {
          why = absl::DeadlineExceededError(absl::StrCat(name_, ": watchdog: ", p.op, " #", p.seq,
                                                         " did not finish within ", absl::FormatDuration(o_.timeout),
                                                         "; communicator aborted"));
        }
        if (why.ok()) break;
        error_ = why;
        pending_.clear();
        l.unlock();
        AbortComm();
        l.lock();
        break;
      }
      if (error_.ok() && comm_ != nullptr) {
        ncclResult_t st = ncclSuccess;
        ncclResult_t r = ncclSuccess;
        {
          std::lock_guard<std::mutex> nl(nccl_mu_);  // order: mu_ then nccl_mu_, never the reverse
          if (!aborted_.load()) r = ncclCommGetAsyncError(comm_, &st);
        }
        if (r == ncclSuccess && st != ncclSuccess && st != ncclInProgress) {
          error_ = absl::InternalError(absl::StrCat(name_, ": watchdog: async NCCL error: ", ncclGetErrorString(st)));
          l.unlock();
          AbortComm();
          l.lock();
        }
      }
    }
  }

  struct Pending {
    std::shared_ptr<Event> done;
    absl::Time start;
    const char* op;
    uint64_t seq;
  };

  NcclCommunicatorOptions o_;
  std::string name_;
  ncclComm_t comm_ = nullptr;
  std::optional<c10::cuda::CUDAStream> comm_stream_;
  cudaStream_t stream_ = nullptr;
  std::shared_ptr<Event> last_done_;
  std::mutex mu_;  // guards pending_, error_, stop_ (shared with the watchdog)
  std::mutex nccl_mu_;  // held around every NCCL call on comm_, so an abort never races one
  std::condition_variable cv_;
  std::deque<Pending> pending_;
  absl::Status error_;
  bool stop_ = false;
  uint64_t seq_ = 0;
  std::atomic<bool> aborted_{false};
  std::thread watchdog_;
};

absl::Status NcclWork::Wait() {
  TIDAL_RETURN_IF_ERROR(comm_->CheckUsable("wait"));
  return comm_->StreamWait(done_);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Communicator>> CreateNcclCommunicator(const NcclCommunicatorOptions& options,
                                                                     const NcclIdExchange& exchange) {
  auto comm = std::make_unique<NcclCommunicator>(options);
  TIDAL_RETURN_IF_ERROR(comm->Init(exchange));
  return std::unique_ptr<Communicator>(std::move(comm));
}

#endif  // TIDAL_WITH_CUDA

}  // namespace tidal
