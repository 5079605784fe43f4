// Benchmarks for //reactor, each beside its floor (see docs/measuring.md).
//
//   BM_NopSuspendResume/backend:0|1   32 Operations, each completing a NOP
//                                     through the Reactor and re-issuing
//                                     itself from its callback (0 = io_uring,
//                                     1 = epoll).  Items: NOPs completed.
//   BM_Floor_RawNopBatch32            raw liburing: 32 NOP SQEs, one
//                                     io_uring_submit_and_wait, reap 32.
//   BM_SleepAccuracy/backend:0|1      100 ops x 10 sleeps of 500 us; counters
//                                     mean_ratio (actual / requested),
//                                     p50_ratio, p99_ratio.
//   BM_Floor_RawTimeoutSleep          the same with raw IORING_OP_TIMEOUT.
//   BM_TimerStartCancel/pending:N     64 timer starts + cancels beside N
//                                     pending sleeps (1e3, 1e6).
//
// Run: ./bazelw run -c opt //reactor:reactor_benchmark --
//        --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
//        --benchmark_enable_random_interleaving=true

#include <liburing.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include "benchmark/benchmark.h"
#include "reactor/reactor.h"
#include "timing/clock.h"

namespace spindle::reactor {
namespace {

using timing::MonotonicClock;

constexpr int kBatch = 32;
constexpr int kNopsPerIteration = 1024;
constexpr int kSleepOps = 100;
constexpr int kSleepsPerOp = 10;
constexpr uint64_t kSleepNs = 500'000;

std::unique_ptr<Reactor> MakeReactor(benchmark::State& state) {
  ReactorOptions o;
  o.backend =
      state.range(0) == 0 ? BackendChoice::kIoUring : BackendChoice::kEpoll;
  absl::StatusOr<std::unique_ptr<Reactor>> r = Reactor::Create(o);
  if (!r.ok()) {
    state.SkipWithError(std::string(r.status().message()).c_str());
    return nullptr;
  }
  return std::move(*r);
}

// The same setup flags the Reactor prefers, so the floor is comparable.
bool InitRawRing(io_uring* ring) {
  io_uring_params p;
  std::memset(&p, 0, sizeof(p));
  p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
  if (io_uring_queue_init_params(256, ring, &p) == 0) return true;
  return io_uring_queue_init(256, ring, 0) == 0;
}

// ---- NOP round trips --------------------------------------------------------

struct NopState {
  Reactor* reactor;
  int completed = 0;
  int target = 0;
};

struct NopOp : Operation {
  NopState* st = nullptr;
};

void OnNop(Operation* op) noexcept {
  auto* n = static_cast<NopOp*>(op);
  NopState* st = n->st;
  // Re-issue until the iteration's quota is started.
  if (++st->completed + kBatch <= st->target) st->reactor->Nop(op);
}

void BM_NopSuspendResume(benchmark::State& state) {
  std::unique_ptr<Reactor> reactor = MakeReactor(state);
  if (reactor == nullptr) return;
  NopState st{reactor.get()};
  NopOp ops[kBatch];
  for (NopOp& op : ops) {
    op.on_complete = &OnNop;
    op.st = &st;
  }
  // Warm-up (unmeasured).
  st.target = kNopsPerIteration;
  for (NopOp& op : ops) reactor->Nop(&op);
  while (st.completed < st.target) reactor->Poll(0);
  for (auto _ : state) {
    st.completed = 0;
    for (NopOp& op : ops) reactor->Nop(&op);
    while (st.completed < st.target) reactor->Poll(0);
  }
  state.SetItemsProcessed(state.iterations() * kNopsPerIteration);
  state.SetLabel(std::string(BackendName(reactor->backend())));
}
BENCHMARK(BM_NopSuspendResume)->ArgName("backend")->Arg(0)->Arg(1);

void BM_Floor_RawNopBatch32(benchmark::State& state) {
  io_uring ring;
  if (!InitRawRing(&ring)) {
    state.SkipWithError("io_uring setup failed");
    return;
  }
  auto round = [&ring] {
    for (int i = 0; i < kBatch; ++i) {
      io_uring_sqe* sqe = io_uring_get_sqe(&ring);
      io_uring_prep_nop(sqe);
      io_uring_sqe_set_data64(sqe, static_cast<uint64_t>(i));
    }
    io_uring_submit_and_wait(&ring, kBatch);
    io_uring_cqe* cqes[kBatch];
    unsigned got = 0;
    while (got < kBatch) {
      const unsigned n = io_uring_peek_batch_cqe(&ring, cqes, kBatch);
      for (unsigned i = 0; i < n; ++i) benchmark::DoNotOptimize(cqes[i]->res);
      io_uring_cq_advance(&ring, n);
      got += n;
      if (got < kBatch) io_uring_get_events(&ring);
    }
  };
  for (int i = 0; i < kNopsPerIteration / kBatch; ++i) round();  // Warm-up.
  for (auto _ : state) {
    for (int i = 0; i < kNopsPerIteration / kBatch; ++i) round();
  }
  state.SetItemsProcessed(state.iterations() * kNopsPerIteration);
  io_uring_queue_exit(&ring);
}
BENCHMARK(BM_Floor_RawNopBatch32);

// ---- Sleep accuracy ---------------------------------------------------------

void ReportSleeps(benchmark::State& state, std::vector<double>& ratios) {
  if (ratios.empty()) return;
  double sum = 0;
  for (double r : ratios) sum += r;
  std::sort(ratios.begin(), ratios.end());
  auto pct = [&](double p) {
    return ratios[std::min(ratios.size() - 1,
                           static_cast<size_t>(p * ratios.size()))];
  };
  state.counters["mean_ratio"] = sum / ratios.size();
  state.counters["p50_ratio"] = pct(0.50);
  state.counters["p99_ratio"] = pct(0.99);
  state.SetItemsProcessed(static_cast<int64_t>(ratios.size()));
}

struct SleepState {
  Reactor* reactor;
  std::vector<double>* ratios;
  int remaining_ops = 0;
};

struct SleepOp : Operation {
  SleepState* st = nullptr;
  uint64_t started = 0;
  int left = 0;
};

void OnSleep(Operation* op) noexcept {
  auto* s = static_cast<SleepOp*>(op);
  const uint64_t now = MonotonicClock::Now();
  s->st->ratios->push_back(static_cast<double>(now - s->started) / kSleepNs);
  if (--s->left > 0) {
    s->started = now;
    s->st->reactor->SleepUntil(op, now + kSleepNs);
  } else {
    --s->st->remaining_ops;
  }
}

void BM_SleepAccuracy(benchmark::State& state) {
  std::unique_ptr<Reactor> reactor = MakeReactor(state);
  if (reactor == nullptr) return;
  std::vector<double> ratios;
  ratios.reserve(static_cast<size_t>(kSleepOps * kSleepsPerOp) * 64);
  std::vector<double> warm;
  warm.reserve(kSleepOps * kSleepsPerOp);
  SleepState st{reactor.get(), &warm};
  std::vector<SleepOp> ops(kSleepOps);
  auto run = [&] {
    st.remaining_ops = kSleepOps;
    for (SleepOp& op : ops) {
      op.on_complete = &OnSleep;
      op.st = &st;
      op.left = kSleepsPerOp;
      op.started = MonotonicClock::Now();
      reactor->SleepUntil(&op, op.started + kSleepNs);
    }
    while (st.remaining_ops > 0) reactor->Poll(UINT64_MAX);
  };
  run();  // Warm-up.
  st.ratios = &ratios;
  for (auto _ : state) run();
  ReportSleeps(state, ratios);
  state.SetLabel(std::string(BackendName(reactor->backend())));
}
BENCHMARK(BM_SleepAccuracy)
    ->ArgName("backend")
    ->Arg(0)
    ->Arg(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_Floor_RawTimeoutSleep(benchmark::State& state) {
  io_uring ring;
  if (!InitRawRing(&ring)) {
    state.SkipWithError("io_uring setup failed");
    return;
  }
  struct Slot {
    __kernel_timespec ts;
    uint64_t started;
    int left;
  };
  std::vector<Slot> slots(kSleepOps);
  std::vector<double> ratios;
  ratios.reserve(static_cast<size_t>(kSleepOps * kSleepsPerOp) * 64);
  std::vector<double> warm;
  auto arm = [&ring](Slot& s, uint64_t idx) {
    s.ts.tv_sec = 0;
    s.ts.tv_nsec = static_cast<long long>(kSleepNs);
    io_uring_sqe* sqe = io_uring_get_sqe(&ring);
    io_uring_prep_timeout(sqe, &s.ts, 0, 0);
    io_uring_sqe_set_data64(sqe, idx);
  };
  auto run = [&](std::vector<double>* out) {
    int remaining = kSleepOps;
    for (int i = 0; i < kSleepOps; ++i) {
      slots[i].left = kSleepsPerOp;
      slots[i].started = MonotonicClock::Now();
      arm(slots[i], static_cast<uint64_t>(i));
    }
    while (remaining > 0) {
      io_uring_submit_and_wait(&ring, 1);
      io_uring_cqe* cqe;
      while (io_uring_peek_cqe(&ring, &cqe) == 0) {
        const uint64_t idx = cqe->user_data;
        io_uring_cqe_seen(&ring, cqe);
        Slot& s = slots[idx];
        const uint64_t now = MonotonicClock::Now();
        out->push_back(static_cast<double>(now - s.started) / kSleepNs);
        if (--s.left > 0) {
          s.started = now;
          arm(s, idx);
        } else {
          --remaining;
        }
      }
    }
  };
  run(&warm);
  for (auto _ : state) run(&ratios);
  ReportSleeps(state, ratios);
  io_uring_queue_exit(&ring);
}
BENCHMARK(BM_Floor_RawTimeoutSleep)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// ---- Timer scaling ----------------------------------------------------------

// Start and cancel 64 timers (plus one non-blocking Poll to run their
// callbacks) beside `pending` long timers: O(log n) keeps this nearly flat
// from a thousand to a million pending sleeps.
void BM_TimerStartCancel(benchmark::State& state) {
  ReactorOptions o;
  o.backend = BackendChoice::kEpoll;  // Timers are backend-independent.
  std::unique_ptr<Reactor> reactor = std::move(*Reactor::Create(o));
  const int64_t pending = state.range(0);
  std::unique_ptr<Operation[]> parked(new Operation[pending]);
  const uint64_t now = MonotonicClock::Now();
  auto noop = [](Operation*) noexcept {};
  for (int64_t i = 0; i < pending; ++i) {
    parked[i].on_complete = noop;
    reactor->SleepUntil(&parked[i],
                        now + 3600'000'000'000u + static_cast<uint64_t>(i));
  }
  Operation ops[64];
  for (Operation& op : ops) op.on_complete = noop;
  for (auto _ : state) {
    for (int i = 0; i < 64; ++i) {
      reactor->SleepUntil(&ops[i], now + 1800'000'000'000u +
                                       static_cast<uint64_t>(i) * 7919);
    }
    for (Operation& op : ops) reactor->Cancel(&op);
    reactor->Poll(0);
  }
  state.SetItemsProcessed(state.iterations() * 64);
  state.counters["timers_pending"] =
      static_cast<double>(reactor->Stats().timers_pending);
  reactor.reset();  // Cancels the parked timers before they are freed.
}
BENCHMARK(BM_TimerStartCancel)
    ->ArgName("pending")
    ->Arg(1000)
    ->Arg(1'000'000);

}  // namespace
}  // namespace spindle::reactor

BENCHMARK_MAIN();
