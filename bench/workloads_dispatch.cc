// bench/workloads_dispatch.cc: the `dispatch` row, N empty work items from
// one submitting thread through the WorkDispatcher to 2 worker threads,
// beside the floor: a mutex + condition-variable queue served by 2 threads.
// Wall time from the first submission to the last item run; the workers
// are started (and idle) before the clock starts.
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bench/workloads.h"
#include "dispatch/dispatch.h"
#include "timing/clock.h"

namespace spindle::bench {
namespace {

using timing::MonotonicClock;

constexpr int kWorkers = 2;

struct EmptyItem : dispatch::WorkItem {
  EmptyItem() : WorkItem(&EmptyItem::Run) {}
  static void Run(WorkItem*, bool) noexcept {}
};

absl::StatusOr<Rows> SpindleDispatch(const std::string& id, int64_t n) {
  auto d = dispatch::WorkDispatcher::Create({});
  if (!d.ok()) return d.status();
  std::vector<EmptyItem> items(static_cast<size_t>(n));
  std::vector<std::unique_ptr<dispatch::Worker>> workers;
  std::vector<std::thread> threads;
  for (int i = 0; i < kWorkers; ++i) {
    workers.push_back((*d)->Attach());
    threads.emplace_back([w = workers.back().get()] { w->Run(); });
  }
  const uint64_t t0 = MonotonicClock::Now();
  for (EmptyItem& item : items) (*d)->Submit(&item);
  const bool done = (*d)->Wait(0, 0, absl::Minutes(10));
  const uint64_t t1 = MonotonicClock::Now();
  const absl::Status quit = (*d)->Quit(kWorkers, absl::Minutes(1));
  for (auto& t : threads) t.join();
  if (!done) return absl::DeadlineExceededError("dispatch: items not run");
  if (!quit.ok()) return quit;
  return Rows{{id, static_cast<double>(t1 - t0)}};
}

// The floor: the textbook queue.  One lock, notify_one per push.
absl::StatusOr<Rows> FloorDispatch(const std::string& id, int64_t n) {
  std::vector<EmptyItem> items(static_cast<size_t>(n));
  std::mutex mu;
  std::condition_variable cv, done_cv;
  std::deque<dispatch::WorkItem*> queue;
  bool stop = false;
  int64_t done = 0;
  std::vector<std::thread> threads;
  for (int i = 0; i < kWorkers; ++i) {
    threads.emplace_back([&] {
      for (;;) {
        dispatch::WorkItem* item;
        {
          std::unique_lock<std::mutex> l(mu);
          cv.wait(l, [&] { return stop || !queue.empty(); });
          if (queue.empty()) return;
          item = queue.front();
          queue.pop_front();
        }
        EmptyItem::Run(item, true);
        std::lock_guard<std::mutex> l(mu);
        if (++done == n) done_cv.notify_one();
      }
    });
  }
  const uint64_t t0 = MonotonicClock::Now();
  for (EmptyItem& item : items) {
    {
      std::lock_guard<std::mutex> l(mu);
      queue.push_back(&item);
    }
    cv.notify_one();
  }
  {
    std::unique_lock<std::mutex> l(mu);
    done_cv.wait(l, [&] { return done == n; });
  }
  const uint64_t t1 = MonotonicClock::Now();
  {
    std::lock_guard<std::mutex> l(mu);
    stop = true;
  }
  cv.notify_all();
  for (auto& t : threads) t.join();
  return Rows{{id, static_cast<double>(t1 - t0)}};
}

}  // namespace

void AddDispatchBenchmarks(const Config& c, std::vector<Benchmark>& all) {
  const std::string id = "dispatch";
  Benchmark b{id,
              "N empty work items from one thread to 2 worker threads; wall "
              "time to all run (floor: mutex + condition-variable queue)",
              "floor",
              {c.n_tasks.value_or(1'000'000)},
              {}};
  b.variants.push_back(
      {"spindle", [id](int64_t n) { return SpindleDispatch(id, n); }});
  b.variants.push_back(
      {"floor", [id](int64_t n) { return FloorDispatch(id, n); }});
  b.ops = [](int64_t n) { return static_cast<double>(n); };
  b.op = "item";
  all.push_back(std::move(b));
}

}  // namespace spindle::bench
