// bench/workloads_pingpong.cc: `pingpong`, a round trip between two
// Runtime workers (each task wakes the other through a Waker), beside two
// floors on raw threads: IORING_OP_MSG_RING between two rings, and a pair
// of eventfds with blocking reads.
#include <liburing.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <coroutine>
#include <thread>

#include "bench/quiet.h"
#include "bench/raw_ring.h"
#include "bench/workloads.h"
#include "executor/executor.h"
#include "timing/clock.h"

namespace spindle::bench {
namespace {

using timing::MonotonicClock;

// A mailbox one task waits on and the other task posts to, from another
// worker.  `state`: 0 empty, 1 a waiter's Waker is stored, 2 posted.
struct Mailbox {
  std::atomic<int> state{0};
  Waker waiter;

  struct Receive {
    Mailbox* m;
    bool await_ready() const noexcept {
      return m->state.load(std::memory_order_acquire) == 2;
    }
    void await_suspend(std::coroutine_handle<> h) noexcept {
      m->waiter = Waker::SuspendCurrent(h);
      int empty = 0;
      if (!m->state.compare_exchange_strong(empty, 1,
                                            std::memory_order_acq_rel)) {
        Waker w = std::move(m->waiter);  // posted meanwhile
        w.Wake();
      }
    }
    void await_resume() const noexcept {
      m->state.store(0, std::memory_order_relaxed);
    }
  };

  void Post() noexcept {
    if (state.exchange(2, std::memory_order_acq_rel) == 1) {
      Waker w = std::move(waiter);  // the receiver may store its next one
      w.Wake();
    }
  }
};

Task<void> Side(Mailbox* mine, Mailbox* theirs, int64_t rounds, bool serve) {
  for (int64_t i = 0; i < rounds; ++i) {
    if (serve) theirs->Post();
    co_await Mailbox::Receive{mine};
    if (!serve) theirs->Post();
  }
}

Row Wall(const std::string& id, uint64_t t0) {
  return Row{id, static_cast<double>(MonotonicClock::Now() - t0), Unit::kNanos};
}

}  // namespace

absl::StatusOr<Rows> SpindlePingPong(const std::string& id, int64_t rounds) {
  auto rt = QuietRuntime(2).Build();
  if (!rt.ok()) return rt.status();
  RuntimeSpawnOptions on0, on1;
  on0.placement = Placement::Pinned(0);
  on1.placement = Placement::Pinned(1);
  uint64_t t0 = 0;
  for (int pass = 0; pass < 2; ++pass) {  // the first pass warms up
    Mailbox a, b;
    t0 = MonotonicClock::Now();
    JoinHandle<void> ha = (*rt)->Spawn(Side(&a, &b, rounds, true), on0);
    JoinHandle<void> hb = (*rt)->Spawn(Side(&b, &a, rounds, false), on1);
    if (ha.Wait() != JoinStatus::kCompleted ||
        hb.Wait() != JoinStatus::kCompleted) {
      return absl::InternalError("pingpong: a side did not complete");
    }
  }
  return Rows{Wall(id, t0)};
}

absl::StatusOr<Rows> FloorEventfdPingPong(const std::string& id,
                                          int64_t rounds) {
  const int a = eventfd(0, EFD_CLOEXEC);
  const int b = eventfd(0, EFD_CLOEXEC);
  if (a < 0 || b < 0) return absl::InternalError("eventfd failed");
  auto bounce = [&](int mine, int theirs, bool serve) {
    uint64_t v = 1;
    for (int64_t i = 0; i < rounds; ++i) {
      if (serve) (void)!write(theirs, &v, sizeof(v));
      while (read(mine, &v, sizeof(v)) < 0 && errno == EINTR) {
      }
      v = 1;
      if (!serve) (void)!write(theirs, &v, sizeof(v));
    }
  };
  const uint64_t t0 = MonotonicClock::Now();
  std::thread other([&] { bounce(b, a, false); });
  bounce(a, b, true);
  other.join();
  Rows rows{Wall(id, t0)};
  close(a);
  close(b);
  return rows;
}

absl::StatusOr<Rows> FloorMsgRingPingPong(const std::string& id,
                                          int64_t rounds) {
  RawRing ra, rb;
  if (absl::Status s = ra.Init(8); !s.ok()) return s;
  if (absl::Status s = rb.Init(8); !s.ok()) return s;
  std::atomic<bool> failed{false};
  auto bounce = [&](io_uring* mine, io_uring* theirs, bool serve) {
    auto send = [&] {
      io_uring_sqe* sqe = io_uring_get_sqe(mine);
      io_uring_prep_msg_ring(sqe, theirs->ring_fd, 0, 1, 0);
      sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;  // no CQE for the sender
      if (io_uring_submit(mine) < 0) failed = true;
    };
    for (int64_t i = 0; i < rounds && !failed; ++i) {
      if (serve) send();
      io_uring_cqe* cqe = nullptr;
      if (io_uring_wait_cqe(mine, &cqe) < 0 || cqe->res < 0) {
        failed = true;
        break;
      }
      io_uring_cqe_seen(mine, cqe);
      if (!serve) send();
    }
  };
  const uint64_t t0 = MonotonicClock::Now();
  std::thread other([&] { bounce(rb.get(), ra.get(), false); });
  bounce(ra.get(), rb.get(), true);
  other.join();
  if (failed) {
    return absl::UnavailableError("IORING_OP_MSG_RING failed (kernel < 5.18?)");
  }
  return Rows{Wall(id, t0)};
}

}  // namespace spindle::bench
