// io_uring ring setup (flags, feature probes, test quirks) and teardown,
// and the registry of live drivers used by failed WakeFrom sends.
#include "reactor/internal/uring_driver.h"

#include <liburing.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <unordered_set>

#include "absl/base/internal/raw_logging.h"
#include "absl/base/thread_annotations.h"
#include "timing/clock.h"

#include "reactor/internal/uring_compat.h"

namespace spindle::reactor::reactor_internal {

std::atomic<int> g_forced_setup_errno{0};
std::atomic<int> g_setup_attempts{0};

namespace {
std::atomic<uint32_t> g_quirks{0};

// The live drivers, so that a failed WakeFrom send, reaped later on the
// source, wakes its target only if that target still exists (its address
// is all the CQE carries).  Touched when a driver is created or destroyed
// and when a send has failed: never on the hot path.  A new driver at a
// freed one's address just gets a spurious wake-up.
struct LiveDrivers {
  std::mutex mu;
  std::unordered_set<const UringDriver*> set ABSL_GUARDED_BY(mu);
};

LiveDrivers& Live() {
  static LiveDrivers* live = new LiveDrivers();  // Never destroyed.
  return *live;
}
}  // namespace

void SetUringQuirksForTesting(uint32_t quirks) {
  // Relaxed: tests set it before creating the reactors it applies to.
  g_quirks.store(quirks, std::memory_order_relaxed);
}

namespace {

// IORING_ASYNC_CANCEL_ANY arrived in 5.19; there is no feature bit for it.
bool KernelAtLeast(int major, int minor) {
  utsname u;
  if (uname(&u) != 0) return false;
  int ma = 0, mi = 0;
  if (std::sscanf(u.release, "%d.%d", &ma, &mi) != 2) return false;
  return ma > major || (ma == major && mi >= minor);
}

std::string FlagNames(uint32_t f) {
  std::string s;
  auto add = [&](uint32_t bit, const char* name) {
    if (f & bit) {
      if (!s.empty()) s += "|";
      s += name;
    }
  };
  add(IORING_SETUP_SQPOLL, "SQPOLL");
  add(IORING_SETUP_COOP_TASKRUN, "COOP_TASKRUN");
  add(IORING_SETUP_TASKRUN_FLAG, "TASKRUN_FLAG");
  add(IORING_SETUP_SINGLE_ISSUER, "SINGLE_ISSUER");
  add(IORING_SETUP_DEFER_TASKRUN, "DEFER_TASKRUN");
  add(IORING_SETUP_R_DISABLED, "R_DISABLED");
  add(IORING_SETUP_CQSIZE, "CQSIZE");
  return s.empty() ? "none" : s;
}

}  // namespace

std::unique_ptr<UringDriver> UringDriver::Create(Core* core, uint32_t entries,
                                                 UringSetup setup,
                                                 uint32_t sqpoll_idle_ms,
                                                 int* err, std::string* what) {
  const bool sqpoll = setup == UringSetup::kSqpoll;
  g_setup_attempts.fetch_add(1, std::memory_order_relaxed);
  const int forced = g_forced_setup_errno.load(std::memory_order_relaxed);
  if (forced != 0) {
    *err = forced;
    *what = "io_uring_queue_init_params (forced by test hook)";
    return nullptr;
  }
  std::unique_ptr<UringDriver> d(new UringDriver(core));
  // Most capable first; each later set is what an older kernel accepts.
  // DEFER_TASKRUN needs SINGLE_ISSUER (6.1); COOP_TASKRUN is 5.19.
  // TASKRUN_FLAG makes the kernel raise IORING_SQ_TASKRUN while completion
  // work waits for this thread, which HasPendingWork reads without a system
  // call; a kernel that refuses it with DEFER_TASKRUN gets the set without.
  const uint32_t kPlain[] = {
      IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
          IORING_SETUP_R_DISABLED | IORING_SETUP_TASKRUN_FLAG,
      IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
          IORING_SETUP_R_DISABLED,
      IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
      0,
  };
  const uint32_t kSqpoll[] = {IORING_SETUP_SQPOLL};
  const uint32_t* sets = kPlain;
  int nsets = 4;
  switch (setup) {
    case UringSetup::kAuto:
      break;
    case UringSetup::kDeferTaskrun:
      nsets = 2;
      break;
    case UringSetup::kCoopTaskrun:
      sets = kPlain + 2;
      nsets = 1;
      break;
    case UringSetup::kPlain:
      sets = kPlain + 3;
      nsets = 1;
      break;
    case UringSetup::kSqpoll:
      sets = kSqpoll;
      nsets = 1;
      break;
  }
  // Relaxed: set by tests before they create reactors.
  const uint32_t quirks = g_quirks.load(std::memory_order_relaxed);
  const bool no_nodrop = (quirks & kQuirkNoNoDrop) != 0;
  // A large CQ keeps the overflow backlog (NODROP) rare; CQSIZE is 5.5+ and
  // the kernel caps the CQ at 2 * 32768 entries.  Before 5.12 the rings
  // count against RLIMIT_MEMLOCK: ENOMEM retries with the default size.
  const uint32_t cq =
      std::min<uint32_t>(std::max(2 * entries, kMinCqEntries), 65536);
  int ret = -EINVAL;
  io_uring_params p;
  for (int i = 0; i < nsets; ++i) {
    for (const bool big_cq : {!no_nodrop, false}) {
      std::memset(&p, 0, sizeof(p));
      p.flags = sets[i];
      if (big_cq) {
        p.flags |= IORING_SETUP_CQSIZE;
        p.cq_entries = cq;
      }
      if (sqpoll) p.sq_thread_idle = sqpoll_idle_ms;  // then it sleeps
      ret = io_uring_queue_init_params(entries, &d->ring_, &p);
      if (ret != -EINVAL && ret != -ENOMEM) break;
      if (!big_cq) break;
    }
    if (ret == 0 || ret != -EINVAL) break;
  }
  if (ret < 0) {
    *err = -ret;
    *what = setup == UringSetup::kAuto
                ? std::string("io_uring_queue_init_params")
                : "io_uring_queue_init_params (setup " +
                      std::string(UringSetupName(setup)) + ": " +
                      FlagNames(sets[0]) + ")";
    return nullptr;
  }
  d->ring_ready_ = true;
  d->setup_flags_ = p.flags;
  d->enabled_.store((p.flags & IORING_SETUP_R_DISABLED) == 0,
                    std::memory_order_relaxed);  // Not yet shared.
  d->sqpoll_ = sqpoll;
  d->cq_entries_ = p.cq_entries;
  d->nodrop_ = (p.features & IORING_FEAT_NODROP) != 0 && !no_nodrop;
  if (!d->nodrop_) {
    // Capped: the wake read's slot, then kCancelReserve (at most a quarter
    // of the CQ, at least one) for cancels, the rest for operations.
    const uint32_t reserve =
        std::max<uint32_t>(1, std::min(kCancelReserve, p.cq_entries / 4));
    d->cancel_limit_ = p.cq_entries - 1;
    d->op_limit_ = p.cq_entries - 1 - reserve;
  }
  d->cancel_any_ = KernelAtLeast(5, 19) && (quirks & kQuirkNoCancelFd) == 0;
  d->msg_ring_fd_invalid_ = (quirks & kQuirkFailMsgRing) != 0;
  if (io_uring_probe* probe = io_uring_get_probe_ring(&d->ring_)) {
    // MSG_RING is sent with CQE_SKIP_SUCCESS and relies on NODROP.
    d->has_msg_ring_ = io_uring_opcode_supported(probe, IORING_OP_MSG_RING) &&
                       (p.features & IORING_FEAT_CQE_SKIP) != 0 && d->nodrop_;
    io_uring_free_probe(probe);
  }
  // A blocking eventfd: io_uring returns -EAGAIN for O_NONBLOCK files
  // instead of waiting for them.
  d->event_fd_ = eventfd(0, EFD_CLOEXEC);
  if (d->event_fd_ < 0) {
    *err = errno;
    *what = "eventfd";
    return nullptr;
  }
  d->stats_.ring_entries = p.sq_entries;
  d->stats_.cq_entries = p.cq_entries;
  d->stats_.setup_flags = p.flags;
  d->stats_.features = "setup=" + FlagNames(p.flags) +
                       (d->nodrop_ ? " nodrop" : " capped") +
                       (d->cancel_any_ ? " cancel_any" : "") +
                       (d->has_msg_ring_ ? " msg_ring" : "") +
                       ((p.features & IORING_FEAT_EXT_ARG) ? " ext_arg" : "");
  d->ArmWake();
  {
    LiveDrivers& live = Live();
    std::lock_guard<std::mutex> lock(live.mu);
    live.set.insert(d.get());
  }
  return d;
}

UringDriver::~UringDriver() {
  {
    // Before the eventfd closes: a source falling back to it holds the lock.
    LiveDrivers& live = Live();
    std::lock_guard<std::mutex> lock(live.mu);
    live.set.erase(this);
  }
  if (ring_ready_) io_uring_queue_exit(&ring_);
  if (event_fd_ >= 0) close(event_fd_);
}

void UringDriver::WakeIfAlive(const UringDriver* target) noexcept {
  LiveDrivers& live = Live();
  std::lock_guard<std::mutex> lock(live.mu);
  if (live.set.count(target) != 0) const_cast<UringDriver*>(target)->Wake();
}

}  // namespace spindle::reactor::reactor_internal
