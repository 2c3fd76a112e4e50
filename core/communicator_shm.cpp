#include "core/communicator_shm.h"

#include <ATen/ATen.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace tidal {

// Shared layout: Segment header, then world*world Channel headers, then world staging slots of
// slot_bytes, then world*world p2p mailboxes of p2p_bytes. All offsets 64-byte aligned.
struct ShmCommunicator::Segment {
  static constexpr uint64_t kMagic = 0x7469'6461'6c73'686dULL;  // "tidalshm"
  std::atomic<uint64_t> magic;
  uint32_t world_size;
  uint64_t slot_bytes;
  uint64_t p2p_bytes;
  std::atomic<uint32_t> joined;
  alignas(64) std::atomic<uint32_t> barrier_count;
  alignas(64) std::atomic<uint32_t> barrier_gen;
  alignas(64) std::atomic<uint32_t> failed;  // nonzero: some rank gave up; reason below
  char fail_reason[256];
};

namespace {

static_assert(std::atomic<uint32_t>::is_always_lock_free, "futex words must be lock-free");

// One ordered (sender, receiver) mailbox: sender bumps `sent` after filling, receiver bumps
// `acked` after draining; `total_bytes` lets the receiver check the message size.
struct Channel {
  alignas(64) std::atomic<uint32_t> sent;
  alignas(64) std::atomic<uint32_t> acked;
  uint64_t total_bytes;
};

constexpr size_t Align64(size_t x) { return (x + 63) & ~size_t{63}; }

size_t ChannelsOffset() { return Align64(sizeof(ShmCommunicator::Segment)); }
size_t SlotsOffset(int world) { return ChannelsOffset() + Align64(sizeof(Channel) * world * world); }
size_t MailboxOffset(const ShmCommunicatorOptions& o) {
  return SlotsOffset(o.world_size) + Align64(o.slot_bytes) * o.world_size;
}
size_t SegmentBytes(const ShmCommunicatorOptions& o) {
  return MailboxOffset(o) + Align64(o.p2p_bytes) * o.world_size * o.world_size;
}

void FutexWait(std::atomic<uint32_t>* word, uint32_t expected, absl::Duration d) {
  timespec ts = absl::ToTimespec(d);
  // Not FUTEX_PRIVATE: waiters may be in other processes sharing the page.
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT, expected, &ts, nullptr, 0);
}

void FutexWakeAll(std::atomic<uint32_t>* word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE, INT32_MAX, nullptr, nullptr, 0);
}

std::string SegmentName(const std::string& group) { return "/tidal-" + group; }

absl::Status CheckTensor(const at::Tensor& t, const char* op, const char* what) {
  if (!t.defined()) return absl::InvalidArgumentError(absl::StrCat("shm ", op, ": ", what, " is undefined"));
  if (!t.device().is_cpu()) {
    return absl::InvalidArgumentError(
        absl::StrCat("shm ", op, ": ", what, " must be a CPU tensor, found ", t.device().str()));
  }
  if (!t.is_contiguous()) {
    return absl::InvalidArgumentError(absl::StrCat("shm ", op, ": ", what, " must be contiguous"));
  }
  return absl::OkStatus();
}

bool IsReducedFloat(at::ScalarType t) { return t == at::kBFloat16 || t == at::kHalf; }

}  // namespace

namespace {

// Waits until pred() holds, spinning first, then futex-sleeping on `word` (which changes when
// pred may have become true). Fails on the group's failure flag or the deadline.
template <typename Pred>
absl::Status WaitUntil(ShmCommunicator::Segment* seg, std::atomic<uint32_t>* word, Pred pred,
                       absl::Time deadline) {
  for (int i = 0; i < 200; ++i) {
    if (pred()) return absl::OkStatus();
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
  }
  while (true) {
    uint32_t seen = word->load(std::memory_order_acquire);
    if (pred()) return absl::OkStatus();
    if (seg->failed.load(std::memory_order_acquire)) {
      return absl::AbortedError(absl::StrCat("peer failed: ", seg->fail_reason));
    }
    absl::Time now = absl::Now();
    if (now >= deadline) return absl::DeadlineExceededError("timed out");
    FutexWait(word, seen, std::min(deadline - now, absl::Milliseconds(50)));
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<ShmCommunicator>> ShmCommunicator::Create(const ShmCommunicatorOptions& o) {
  if (o.group.empty() || o.group.find('/') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("shm communicator: bad group name '", o.group, "'"));
  }
  if (o.world_size < 1 || o.rank < 0 || o.rank >= o.world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("shm communicator '", o.group, "': rank ", o.rank, " outside world of ", o.world_size));
  }
  if (o.slot_bytes < 4096 || o.p2p_bytes < 64) {
    return absl::InvalidArgumentError("shm communicator: slot_bytes >= 4096 and p2p_bytes >= 64 required");
  }
  const std::string name = SegmentName(o.group);
  const size_t bytes = SegmentBytes(o);
  const absl::Time deadline = absl::Now() + o.timeout;
  int fd = -1;
  if (o.rank == 0) {
    shm_unlink(name.c_str());  // leftover of a crashed run under the same name
    fd = shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
    if (fd < 0) return absl::InternalError(absl::StrCat("shm_open(", name, "): ", strerror(errno)));
    if (ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
      int e = errno;
      close(fd);
      shm_unlink(name.c_str());
      return absl::ResourceExhaustedError(absl::StrCat("ftruncate(", name, ", ", bytes, "): ", strerror(e)));
    }
  } else {
    // Attach in two steps: map the header alone, wait for rank 0 to publish its geometry and
    // compare it with ours (so mismatched options give a clear error, not a timeout), then map
    // the whole segment.
    const size_t header = ChannelsOffset();
    while (true) {
      fd = shm_open(name.c_str(), O_RDWR, 0600);
      if (fd >= 0) {
        struct stat st;
        if (fstat(fd, &st) == 0 && static_cast<size_t>(st.st_size) >= header) {
          void* h = mmap(nullptr, header, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
          if (h == MAP_FAILED) {
            close(fd);
            return absl::InternalError(absl::StrCat("mmap(", name, "): ", strerror(errno)));
          }
          auto* seg = static_cast<Segment*>(h);
          while (seg->magic.load(std::memory_order_acquire) != Segment::kMagic && absl::Now() < deadline) {
            absl::SleepFor(absl::Microseconds(200));
          }
          const bool ready = seg->magic.load(std::memory_order_acquire) == Segment::kMagic;
          const bool same = seg->world_size == static_cast<uint32_t>(o.world_size) &&
                            seg->slot_bytes == o.slot_bytes && seg->p2p_bytes == o.p2p_bytes;
          std::string theirs = absl::StrCat("world ", seg->world_size, " vs ", o.world_size, ", slot_bytes ",
                                            seg->slot_bytes, " vs ", o.slot_bytes, ", p2p_bytes ", seg->p2p_bytes,
                                            " vs ", o.p2p_bytes);
          munmap(h, header);
          if (!ready) {
            close(fd);
            return absl::DeadlineExceededError(absl::StrCat("shm communicator rank ", o.rank, ": segment ", name,
                                                            " never initialised by rank 0"));
          }
          if (!same) {
            close(fd);
            return absl::InvalidArgumentError(absl::StrCat("shm communicator '", o.group, "' rank ", o.rank,
                                                           ": options differ from rank 0's (", theirs, ")"));
          }
          break;
        }
        close(fd);
        fd = -1;
      }
      if (absl::Now() > deadline) {
        return absl::DeadlineExceededError(absl::StrCat("shm communicator rank ", o.rank, ": segment ", name,
                                                        " did not appear within ", absl::FormatDuration(o.timeout)));
      }
      absl::SleepFor(absl::Milliseconds(1));
    }
  }
  void* base = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (base == MAP_FAILED) return absl::InternalError(absl::StrCat("mmap(", name, "): ", strerror(errno)));
  auto comm = std::unique_ptr<ShmCommunicator>(new ShmCommunicator(o, base, bytes));
  Segment* seg = comm->seg_;
  if (o.rank == 0) {
    // ftruncate zero-fills, so every atomic starts at 0; publish the geometry, then the magic.
    seg->world_size = o.world_size;
    seg->slot_bytes = o.slot_bytes;
    seg->p2p_bytes = o.p2p_bytes;
    seg->magic.store(Segment::kMagic, std::memory_order_release);
    while (seg->joined.load(std::memory_order_acquire) + 1 < static_cast<uint32_t>(o.world_size)) {
      if (absl::Now() > deadline) {
        shm_unlink(name.c_str());
        return absl::DeadlineExceededError(absl::StrCat("shm communicator '", o.group, "': only ",
                                                        seg->joined.load() + 1, " of ", o.world_size,
                                                        " ranks joined within ", absl::FormatDuration(o.timeout)));
      }
      absl::SleepFor(absl::Microseconds(200));
    }
    shm_unlink(name.c_str());  // everyone has it mapped; nothing to leak from here on
  } else {
    seg->joined.fetch_add(1, std::memory_order_acq_rel);
  }
  return comm;
}

ShmCommunicator::ShmCommunicator(ShmCommunicatorOptions options, void* base, size_t bytes)
    : options_(std::move(options)), base_(base), bytes_(bytes), seg_(static_cast<Segment*>(base)) {}

ShmCommunicator::~ShmCommunicator() {
  if (base_ != nullptr) munmap(base_, bytes_);
}

char* ShmCommunicator::Slot(int r) const {
  return static_cast<char*>(base_) + SlotsOffset(options_.world_size) + Align64(options_.slot_bytes) * r;
}

absl::Status ShmCommunicator::Fail(absl::Status status) {
  if (failed_.ok()) failed_ = status;
  uint32_t expected = 0;
  if (seg_->failed.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) {
    std::string reason = absl::StrCat("rank ", options_.rank, ": ", status.message());
    std::snprintf(seg_->fail_reason, sizeof(seg_->fail_reason), "%s", reason.c_str());
    std::atomic_thread_fence(std::memory_order_release);
  }
  FutexWakeAll(&seg_->barrier_gen);
  Channel* ch = reinterpret_cast<Channel*>(static_cast<char*>(base_) + ChannelsOffset());
  for (int i = 0; i < options_.world_size * options_.world_size; ++i) {
    FutexWakeAll(&ch[i].sent);
    FutexWakeAll(&ch[i].acked);
  }
  return status;
}

absl::Status ShmCommunicator::CheckUsable(const char* op) const {
  if (!failed_.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("shm communicator '", options_.group, "' rank ", options_.rank, ": ", op,
                     " on a failed group (first error: ", failed_.message(), ")"));
  }
  return absl::OkStatus();
}

absl::Status ShmCommunicator::Barrier() {
  TIDAL_RETURN_IF_ERROR(CheckUsable("barrier"));
  Segment* s = seg_;
  const uint32_t gen = s->barrier_gen.load(std::memory_order_acquire);
  if (s->barrier_count.fetch_add(1, std::memory_order_acq_rel) + 1 == static_cast<uint32_t>(options_.world_size)) {
    s->barrier_count.store(0, std::memory_order_relaxed);
    s->barrier_gen.fetch_add(1, std::memory_order_release);
    FutexWakeAll(&s->barrier_gen);
    return absl::OkStatus();
  }
  absl::Status st = WaitUntil(
      s, &s->barrier_gen, [&] { return s->barrier_gen.load(std::memory_order_acquire) != gen; },
      absl::Now() + options_.timeout);
  if (!st.ok()) {
    return Fail(absl::Status(st.code(), absl::StrCat("shm communicator '", options_.group, "' rank ",
                                                     options_.rank, ": barrier: ", st.message(), " after ",
                                                     absl::FormatDuration(options_.timeout))));
  }
  return absl::OkStatus();
}

absl::Status ShmCommunicator::AllGather(const at::Tensor& input, const at::Tensor& output) {
  TIDAL_RETURN_IF_ERROR(CheckUsable("all_gather"));
  TIDAL_RETURN_IF_ERROR(CheckTensor(input, "all_gather", "input"));
  TIDAL_RETURN_IF_ERROR(CheckTensor(output, "all_gather", "output"));
  const int w = options_.world_size;
  if (output.numel() != input.numel() * w || output.scalar_type() != input.scalar_type()) {
    return absl::InvalidArgumentError(absl::StrCat("shm all_gather: output must be ", input.numel() * w, " x ",
                                                   c10::toString(input.scalar_type()), ", found ",
                                                   output.numel(), " x ", c10::toString(output.scalar_type())));
  }
  const size_t n = input.nbytes();
  const char* src = static_cast<const char*>(input.data_ptr());
  char* dst = static_cast<char*>(output.data_ptr());
  // Always at least one round so an empty gather still synchronises the ranks.
  for (size_t off = 0; off < n || off == 0; off += options_.slot_bytes) {
    const size_t c = std::min(options_.slot_bytes, n - off);
    if (c) std::memcpy(Slot(options_.rank), src + off, c);
    TIDAL_RETURN_IF_ERROR(Barrier());
    for (int r = 0; r < w; ++r) {
      if (c) std::memcpy(dst + r * n + off, Slot(r), c);
    }
    TIDAL_RETURN_IF_ERROR(Barrier());
    if (n == 0) break;
  }
  return absl::OkStatus();
}

namespace {

// out <- op over pieces[0..w) (rank order), all views of `bytes` bytes of dtype t.
void ReduceInto(char* out, const std::vector<const char*>& pieces, size_t bytes, at::ScalarType t, ReduceOp op,
                int world) {
  const int64_t elems = static_cast<int64_t>(bytes / c10::elementSize(t));
  if (elems == 0) return;
  auto view = [&](const char* p) {
    return at::from_blob(const_cast<char*>(p), {elems}, at::TensorOptions().dtype(t));
  };
  at::Tensor dst = view(out);
  at::Tensor acc = IsReducedFloat(t) ? view(pieces[0]).to(at::kFloat) : view(pieces[0]).clone();
  for (size_t r = 1; r < pieces.size(); ++r) {
    at::Tensor p = view(pieces[r]);
    switch (op) {
      case ReduceOp::kSum:
      case ReduceOp::kAvg: acc.add_(p); break;
      case ReduceOp::kMax: at::maximum_out(acc, acc, p); break;
      case ReduceOp::kMin: at::minimum_out(acc, acc, p); break;
    }
  }
  if (op == ReduceOp::kAvg) {
    if (at::isIntegralType(acc.scalar_type(), /*includeBool=*/true)) {
      acc.div_(world, "floor");
    } else {
      acc.div_(world);
    }
  }
  dst.copy_(acc);
}

}  // namespace

absl::Status ShmCommunicator::ReduceScatter(const at::Tensor& input, const at::Tensor& output, ReduceOp op) {
  TIDAL_RETURN_IF_ERROR(CheckUsable("reduce_scatter"));
  TIDAL_RETURN_IF_ERROR(CheckTensor(input, "reduce_scatter", "input"));
  TIDAL_RETURN_IF_ERROR(CheckTensor(output, "reduce_scatter", "output"));
  const int w = options_.world_size;
  if (input.numel() != output.numel() * w || output.scalar_type() != input.scalar_type()) {
    return absl::InvalidArgumentError(absl::StrCat("shm reduce_scatter: input must be ", output.numel() * w, " x ",
                                                   c10::toString(output.scalar_type()), ", found ",
                                                   input.numel(), " x ", c10::toString(input.scalar_type())));
  }
  const at::ScalarType t = input.scalar_type();
  const size_t esize = c10::elementSize(t);
  const size_t n = output.nbytes();
  // Each round moves c bytes for every destination: the slot holds w pieces of c bytes.
  const size_t cap = std::max<size_t>(esize, (options_.slot_bytes / w) / esize * esize);
  const char* src = static_cast<const char*>(input.data_ptr());
  char* dst = static_cast<char*>(output.data_ptr());
  std::vector<const char*> pieces(w);
  for (size_t off = 0; off < n || off == 0; off += cap) {
    const size_t c = std::min(cap, n - off);
    char* mine = Slot(options_.rank);
    for (int d = 0; d < w && c; ++d) std::memcpy(mine + d * c, src + d * n + off, c);
    TIDAL_RETURN_IF_ERROR(Barrier());
    for (int r = 0; r < w; ++r) pieces[r] = Slot(r) + options_.rank * c;
    ReduceInto(dst + off, pieces, c, t, op, w);
    TIDAL_RETURN_IF_ERROR(Barrier());
    if (n == 0) break;
  }
  return absl::OkStatus();
}

absl::Status ShmCommunicator::AllReduce(const at::Tensor& tensor, ReduceOp op) {
  TIDAL_RETURN_IF_ERROR(CheckUsable("all_reduce"));
  TIDAL_RETURN_IF_ERROR(CheckTensor(tensor, "all_reduce", "tensor"));
  const at::ScalarType t = tensor.scalar_type();
  const size_t esize = c10::elementSize(t);
  const size_t n = tensor.nbytes();
  const size_t cap = options_.slot_bytes / esize * esize;
  char* data = static_cast<char*>(tensor.data_ptr());
  std::vector<const char*> pieces(options_.world_size);
  for (size_t off = 0; off < n || off == 0; off += cap) {
    const size_t c = std::min(cap, n - off);
    if (c) std::memcpy(Slot(options_.rank), data + off, c);
    TIDAL_RETURN_IF_ERROR(Barrier());
    // Every rank reduces everything in rank order: identical bits everywhere, no second phase.
    for (int r = 0; r < options_.world_size; ++r) pieces[r] = Slot(r);
    ReduceInto(data + off, pieces, c, t, op, options_.world_size);
    TIDAL_RETURN_IF_ERROR(Barrier());
    if (n == 0) break;
  }
  return absl::OkStatus();
}

absl::Status ShmCommunicator::Broadcast(const at::Tensor& tensor, int root) {
  TIDAL_RETURN_IF_ERROR(CheckUsable("broadcast"));
  TIDAL_RETURN_IF_ERROR(CheckTensor(tensor, "broadcast", "tensor"));
  if (root < 0 || root >= options_.world_size) {
    return absl::InvalidArgumentError(absl::StrCat("shm broadcast: root ", root, " outside world of ",
                                                   options_.world_size));
  }
  const size_t n = tensor.nbytes();
  char* data = static_cast<char*>(tensor.data_ptr());
  for (size_t off = 0; off < n || off == 0; off += options_.slot_bytes) {
    const size_t c = std::min(options_.slot_bytes, n - off);
    if (options_.rank == root && c) std::memcpy(Slot(root), data + off, c);
    TIDAL_RETURN_IF_ERROR(Barrier());
    if (options_.rank != root && c) std::memcpy(data + off, Slot(root), c);
    TIDAL_RETURN_IF_ERROR(Barrier());
    if (n == 0) break;
  }
  return absl::OkStatus();
}

absl::Status ShmCommunicator::Send(const at::Tensor& tensor, int peer) {
  TIDAL_RETURN_IF_ERROR(CheckUsable("send"));
  TIDAL_RETURN_IF_ERROR(CheckTensor(tensor, "send", "tensor"));
  if (peer < 0 || peer >= options_.world_size || peer == options_.rank) {
    return absl::InvalidArgumentError(absl::StrCat("shm send: bad peer ", peer, " from rank ", options_.rank));
  }
  const int w = options_.world_size;
  Channel* ch = reinterpret_cast<Channel*>(static_cast<char*>(base_) + ChannelsOffset()) + options_.rank * w + peer;
  char* box = static_cast<char*>(base_) + MailboxOffset(options_) + Align64(options_.p2p_bytes) * (options_.rank * w + peer);
  const size_t n = tensor.nbytes();
  const char* data = static_cast<const char*>(tensor.data_ptr());
  const absl::Time deadline = absl::Now() + options_.timeout;
  for (size_t off = 0; off < n || off == 0; off += options_.p2p_bytes) {
    absl::Status st = WaitUntil(
        seg_, &ch->acked,
        [&] { return ch->acked.load(std::memory_order_acquire) == ch->sent.load(std::memory_order_relaxed); },
        deadline);
    if (!st.ok()) {
      return Fail(absl::Status(st.code(), absl::StrCat("shm communicator '", options_.group, "' rank ",
                                                       options_.rank, ": send to ", peer, ": ", st.message())));
    }
    const size_t c = std::min(options_.p2p_bytes, n - off);
    if (c) std::memcpy(box, data + off, c);
    ch->total_bytes = n;
    ch->sent.fetch_add(1, std::memory_order_release);
    FutexWakeAll(&ch->sent);
    if (n == 0) break;
  }
  return absl::OkStatus();
}

absl::Status ShmCommunicator::Recv(const at::Tensor& tensor, int peer) {
  TIDAL_RETURN_IF_ERROR(CheckUsable("recv"));
  TIDAL_RETURN_IF_ERROR(CheckTensor(tensor, "recv", "tensor"));
  if (peer < 0 || peer >= options_.world_size || peer == options_.rank) {
    return absl::InvalidArgumentError(absl::StrCat("shm recv: bad peer ", peer, " at rank ", options_.rank));
  }
  const int w = options_.world_size;
  Channel* ch = reinterpret_cast<Channel*>(static_cast<char*>(base_) + ChannelsOffset()) + peer * w + options_.rank;
  const char* box =
      static_cast<char*>(base_) + MailboxOffset(options_) + Align64(options_.p2p_bytes) * (peer * w + options_.rank);
  const size_t n = tensor.nbytes();
  char* data = static_cast<char*>(tensor.data_ptr());
  const absl::Time deadline = absl::Now() + options_.timeout;
  for (size_t off = 0; off < n || off == 0; off += options_.p2p_bytes) {
    absl::Status st = WaitUntil(
        seg_, &ch->sent,
        [&] { return ch->sent.load(std::memory_order_acquire) != ch->acked.load(std::memory_order_relaxed); },
        deadline);
    if (!st.ok()) {
      return Fail(absl::Status(st.code(), absl::StrCat("shm communicator '", options_.group, "' rank ",
                                                       options_.rank, ": recv from ", peer, ": ", st.message())));
    }
    if (ch->total_bytes != n) {
      return Fail(absl::InvalidArgumentError(absl::StrCat("shm recv at rank ", options_.rank, " from ", peer,
                                                          ": expected ", n, " bytes, sender sent ",
                                                          ch->total_bytes)));
    }
    const size_t c = std::min(options_.p2p_bytes, n - off);
    if (c) std::memcpy(data + off, box, c);
    ch->acked.fetch_add(1, std::memory_order_release);
    FutexWakeAll(&ch->acked);
    if (n == 0) break;
  }
  return absl::OkStatus();
}

}  // namespace tidal
