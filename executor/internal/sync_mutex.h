// executor/internal/sync_mutex.h: the lock every sync primitive
// (executor/sync.h) guards its state with, biased towards one thread.
//
// The critical sections are a few loads and stores, so the lock is a
// test-and-test-and-set lock (one atomic exchange to take, a plain release
// store to give back; a waiter spins briefly, then yields its thread).  On
// this project's machines that exchange is most of the cost of a channel
// message between two tasks of one worker (~10 ns of ~34), and a channel or
// mutex used by the tasks of one worker is the common case.  So the lock
// is biased (after the JVM's biased locking and the asymmetric fences of
// liburcu and folly): once one thread has taken it kBiasAfter times in a
// row, that thread (the owner) takes and gives it back with plain loads
// and stores; the first other thread to take it revokes the bias, for good,
// at the price of one membarrier(2) system call (~100 us here).
//
// Protocol (the step names are referred to below and in the model test).
//   State: `locked_` (the exchange lock), `bias_` (the owner's thread id,
//   kNoBias before; written once, under `locked_`), `revoked_` (false ->
//   true once, under `locked_`), `inside_` (written only by the owner: it is
//   in a biased critical section).  `last_`, `run_` (under `locked_`): the
//   thread that took the lock last and how many times in a row.
//   B1. The owner (bias_ == its id) stores inside_ = true, then, after a
//       compiler barrier only, loads revoked_: false -> it holds the lock;
//       true -> it stores inside_ = false and takes the slow path (L1).
//   B2. The owner gives a biased hold back with inside_ = false (release).
//   L1. Anyone else: the exchange lock.  Holding it,
//   L2. if bias_ is set and not revoked: revoked_ = true, then a heavy
//       barrier (membarrier: every running thread of the process executes
//       a full memory barrier), then it waits until inside_ is false
//       (acquire).  B1's store and load against L2's store and load are
//       Dekker's pattern; the heavy barrier stands for the owner's missing
//       fence, so either B1 sees revoked_ or L2 sees inside_ (and waits for
//       B2).  The owner's later attempts see revoked_ (B1) and take L1.
//   L3. if bias_ is not set: counts the run of takes by this thread; at
//       kBiasAfter it sets bias_ to itself (when the heavy barrier is
//       available: membarrier registered at first use; never under
//       ThreadSanitizer, which cannot see the barrier's ordering).
//   Unlock: the owner holding a biased lock runs B2; everyone else stores
//   locked_ = false (release).
// Happens-before between critical sections: through locked_ (exchange
// acquire, store release) between slow holders; B2's release and L2's
// acquire between the owner's last biased section and the revoker; the
// owner set the bias while holding locked_, after every earlier holder.
//
// The steps are templated over an atomics policy, and taken apart (TryB1,
// TryL1, RevokeBegin, OwnerOut, L3) so that the exhaustive interleaving
// test (sync_mutex_model_test.cc) drives the same code with bounded
// retries; lock() and unlock() put them together with spinning.

#ifndef SPINDLE_EXECUTOR_INTERNAL_SYNC_MUTEX_H_
#define SPINDLE_EXECUTOR_INTERNAL_SYNC_MUTEX_H_

#include <atomic>
#include <cstdint>
#include <thread>

#include "executor/internal/cpu_relax.h"
#include "executor/internal/sanitizers.h"
#include "steal/atomics.h"

namespace spindle::executor_internal {

// This thread's id for the bias (0: not assigned yet; ids start at 1).
// constinit: no TLS wrapper call on access.
inline constinit thread_local uint64_t tl_sync_thread_id = 0;
uint64_t AssignSyncThreadId() noexcept;  // assigns and returns it

// Whether a heavy barrier is available (membarrier's private expedited
// command, registered for the process at the first call).  False under
// ThreadSanitizer.
bool HeavyBarrierAvailable() noexcept;
// Makes every running thread of the process execute a full memory barrier.
// Requires HeavyBarrierAvailable().
void HeavyBarrier() noexcept;

// The production barriers.
struct SyncBarriers {
  static bool Available() noexcept { return HeavyBarrierAvailable(); }
  static void Heavy() noexcept { HeavyBarrier(); }
};

template <class Atomics = steal::StdAtomics, class Barriers = SyncBarriers>
class BasicSyncMutex {
 public:
  static constexpr uint64_t kNoBias = ~uint64_t{0};
  static constexpr uint32_t kBiasAfter = 64;

  void lock() noexcept {
    const uint64_t me = tl_sync_thread_id;
    if (TryB1(me)) [[likely]] return;
    LockAfterB1(me);
  }
  // lock()'s rest, for a caller whose TryB1(me) just failed (a second
  // TryB1 would store to this line again while other threads contend).
  void LockAfterB1(uint64_t me) noexcept {
    LockSlow(me != 0 ? me : AssignSyncThreadId());
  }
  bool try_lock() noexcept {
    uint64_t me = tl_sync_thread_id;
    if (TryB1(me)) return true;
    if (me == 0) me = AssignSyncThreadId();
    if (locked_.load(std::memory_order_relaxed) || !TryL1()) return false;
    AfterL1(me);
    return true;
  }
  void unlock() noexcept { Unlock(tl_sync_thread_id); }
  // B2: releases a lock taken by TryB1 (Unlock, and the biased fast paths
  // of the sync primitives, which know how they took it).
  void UnlockB2() noexcept { inside_.store(false, std::memory_order_release); }

  // ---- the steps (public for the model test) ----
  // B1: the owner's attempt; false for everyone else, or once revoked.
  bool TryB1(uint64_t me) noexcept {
    if (bias_.load(std::memory_order_relaxed) != me) return false;
    inside_.store(true, std::memory_order_relaxed);
    // The owner's half of the Dekker pattern: the compiler keeps the store
    // before the load; the CPU's order is the revoker's heavy barrier's job.
    std::atomic_signal_fence(std::memory_order_seq_cst);
    if (!revoked_.load(std::memory_order_relaxed)) [[likely]] return true;
    inside_.store(false, std::memory_order_release);
    return false;
  }
  // L1, one attempt.
  bool TryL1() noexcept {
    return !locked_.exchange(true, std::memory_order_acquire);
  }
  // Holding locked_: whether L2 is needed (bias set by another thread, not
  // revoked yet).
  bool BiasedAndNotRevoked(uint64_t me) noexcept {
    const uint64_t b = bias_.load(std::memory_order_relaxed);
    return b != kNoBias && b != me &&
           !revoked_.load(std::memory_order_relaxed);
  }
  // L2's first half: revoke, then the heavy barrier.
  void RevokeBegin() noexcept {
    revoked_.store(true, std::memory_order_relaxed);
    Barriers::Heavy();
  }
  // L2's wait: the owner is out of its biased section.
  bool OwnerOut() noexcept { return !inside_.load(std::memory_order_acquire); }
  // L3, holding locked_.
  void L3(uint64_t me) noexcept {
    if (bias_.load(std::memory_order_relaxed) != kNoBias ||
        revoked_.load(std::memory_order_relaxed)) {
      return;
    }
    if (last_ != me) {
      last_ = me;
      run_ = 1;
      return;
    }
    if (++run_ >= kBiasAfter && Barriers::Available()) {
      bias_.store(me, std::memory_order_relaxed);
    }
  }
  void Unlock(uint64_t me) noexcept {
    // Only the owner writes inside_, so its own read is exact; for anyone
    // else bias_ != me.
    if (bias_.load(std::memory_order_relaxed) == me &&
        inside_.load(std::memory_order_relaxed)) {
      UnlockB2();
      return;
    }
    locked_.store(false, std::memory_order_release);
  }

  // For tests: whether the lock is biased (and to whom) or revoked.
  uint64_t bias_owner() const noexcept {
    return bias_.load(std::memory_order_relaxed);
  }
  bool revoked() const noexcept {
    return revoked_.load(std::memory_order_relaxed);
  }

 private:
  static void Backoff(int& spins) noexcept {
    if (spins < 100) {
      ++spins;
      CpuRelax();
    } else {
      std::this_thread::yield();  // the holder may be descheduled
    }
  }
  void LockSlow(uint64_t me) noexcept {
    for (int spins = 0;;) {
      while (locked_.load(std::memory_order_relaxed)) Backoff(spins);
      if (TryL1()) break;
    }
    AfterL1(me);
  }
  // L2 and L3, holding locked_.
  void AfterL1(uint64_t me) noexcept {
    if (BiasedAndNotRevoked(me)) {
      RevokeBegin();
      for (int spins = 0; !OwnerOut();) Backoff(spins);
    }
    L3(me);
  }

  template <class V>
  using Atomic = typename Atomics::template Atomic<V>;

  Atomic<bool> locked_{false};
  Atomic<bool> inside_{false};
  Atomic<bool> revoked_{false};
  Atomic<uint64_t> bias_{kNoBias};
  uint64_t last_ = 0;  // guarded by locked_
  uint32_t run_ = 0;   // guarded by locked_
};

using SyncMutex = BasicSyncMutex<>;

}  // namespace spindle::executor_internal

#endif  // SPINDLE_EXECUTOR_INTERNAL_SYNC_MUTEX_H_
