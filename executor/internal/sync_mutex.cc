// executor/internal/sync_mutex.cc: thread ids and the heavy barrier of the
// biased SyncMutex (see the protocol in sync_mutex.h).

#include "executor/internal/sync_mutex.h"

#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace spindle::executor_internal {
namespace {

long Membarrier(int cmd) noexcept {
  return syscall(__NR_membarrier, cmd, 0u, 0);
}

bool RegisterHeavyBarrier() noexcept {
#if defined(SPINDLE_TSAN)
  // ThreadSanitizer does not see the ordering a membarrier gives, so it
  // would report the biased sections as races: the lock stays unbiased.
  return false;
#else
  const long cmds = Membarrier(MEMBARRIER_CMD_QUERY);
  if (cmds < 0 || !(cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED)) return false;
  return Membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0;
#endif
}

}  // namespace

uint64_t AssignSyncThreadId() noexcept {
  static std::atomic<uint64_t> next{1};
  tl_sync_thread_id = next.fetch_add(1, std::memory_order_relaxed);
  return tl_sync_thread_id;
}

bool HeavyBarrierAvailable() noexcept {
  static const bool available = RegisterHeavyBarrier();  // once
  return available;
}

void HeavyBarrier() noexcept {
  if (Membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0) return;
  // A child of fork() does not inherit the registration: register again.
  if (errno == EPERM &&
      Membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0 &&
      Membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0) {
    return;
  }
  // Registered before any bias (HeavyBarrierAvailable), so this cannot
  // fail short of a kernel bug; going on would break mutual exclusion.
  std::fprintf(stderr,
               "spindle: membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) "
               "failed: %s\n",
               std::strerror(errno));
  std::abort();
}

}  // namespace spindle::executor_internal
