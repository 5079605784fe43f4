// dispatch/work_dispatcher_stress_test.cc: many submitters (single and batch,
// mixed priorities) against workers that keep falling asleep, with workers
// retired and attached while work flows.  Every item runs exactly once and
// Wait sees it.  Parameterised over worker count and spin (0 = every idle
// moment goes through the sleep protocol).
#include <atomic>
#include <memory>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "dispatch/work_dispatcher.h"
#include "gtest/gtest.h"

namespace spindle::dispatch {
namespace {

struct Counted : WorkItem {
  Counted() : WorkItem(&Counted::Run) {}
  static void Run(WorkItem* w, bool ran) noexcept {
    auto* c = static_cast<Counted*>(w);
    c->runs.fetch_add(ran ? 1 : 1000, std::memory_order_relaxed);
    c->total->fetch_add(1, std::memory_order_relaxed);
  }
  std::atomic<int> runs{0};
  std::atomic<int>* total = nullptr;
};

class DispatcherStressTest
    : public ::testing::TestWithParam<std::tuple<int, int>> {};

TEST_P(DispatcherStressTest, EveryItemRunsExactlyOnce) {
  const auto [workers, spin] = GetParam();
  constexpr int kProducers = 3;
  constexpr int kPerProducer = 20000;
  DispatcherOptions o;
  o.spin_rounds = spin;
  auto d = std::move(WorkDispatcher::Create(o)).value();
  std::atomic<int> total{0};
  std::vector<std::unique_ptr<Counted[]>> items;
  for (int p = 0; p < kProducers; ++p) {
    items.emplace_back(new Counted[kPerProducer]);
    for (int i = 0; i < kPerProducer; ++i) {
      items[p][i].total = &total;
      items[p][i].priority = static_cast<Priority>((i * 7 + p) % 3);
    }
  }
  std::vector<std::unique_ptr<Worker>> ws;
  std::vector<std::thread> threads;
  std::atomic<int> first_retired{-1};  // the index of the first Run to return
  auto run = [&](int i) {
    ws[i]->Run();
    int none = -1;
    if (first_retired.compare_exchange_strong(none, i)) {
      first_retired.notify_all();
    }
  };
  for (int i = 0; i < workers; ++i) ws.push_back(d->Attach());
  for (int i = 0; i < workers; ++i) threads.emplace_back(run, i);
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      Counted* mine = items[p].get();
      int i = 0;
      while (i < kPerProducer) {
        if (i % 3 == p % 3) {  // a batch of up to 17
          std::vector<WorkItem*> batch;
          for (int k = 0; k < 17 && i < kPerProducer; ++k) {
            batch.push_back(&mine[i++]);
          }
          d->Submit(batch);
        } else {
          d->Submit(&mine[i++]);
        }
        // Let the workers drain now and then, so that they sleep often.
        if (i % 512 < 2) std::this_thread::yield();
      }
    });
  }
  // Retire one worker and attach a fresh one while the work flows.
  // Quit picks an idle worker, whichever that is.
  ASSERT_TRUE(d->Quit(1, absl::Seconds(120)).ok());
  first_retired.wait(-1);
  const int r = first_retired.load();
  threads[r].join();
  ws[r].reset();
  ws[r] = d->Attach();
  threads[r] = std::thread([w = ws[r].get()] { w->Run(); });
  for (auto& t : producers) t.join();
  ASSERT_TRUE(d->Wait(0, 0, absl::Seconds(120)));
  EXPECT_EQ(total.load(), kProducers * kPerProducer);
  for (int p = 0; p < kProducers; ++p) {
    for (int i = 0; i < kPerProducer; ++i) {
      ASSERT_EQ(items[p][i].runs.load(), 1) << "producer " << p << " item " << i;
    }
  }
  ASSERT_TRUE(d->Quit(workers, absl::Seconds(120)).ok());
  for (auto& t : threads) t.join();
}

// Workers park and are woken one item at a time: a ping-pong between the
// submitter and the workers exercises every sleep/wake race.
TEST_P(DispatcherStressTest, OneAtATimeNeverLosesAWake) {
  const auto [workers, spin] = GetParam();
  DispatcherOptions o;
  o.spin_rounds = spin;
  auto d = std::move(WorkDispatcher::Create(o)).value();
  std::vector<std::unique_ptr<Worker>> ws;
  std::vector<std::thread> threads;
  for (int i = 0; i < workers; ++i) {
    ws.push_back(d->Attach());
    threads.emplace_back([w = ws.back().get()] { w->Run(); });
  }
  std::atomic<int> total{0};
  constexpr int kRounds = 3000;
  auto items = std::make_unique<Counted[]>(kRounds);
  for (int i = 0; i < kRounds; ++i) {
    items[i].total = &total;
    d->Submit(&items[i]);
    ASSERT_TRUE(d->Wait(0, 0, absl::Seconds(120))) << "round " << i;
  }
  EXPECT_EQ(total.load(), kRounds);
  ASSERT_TRUE(d->Quit(workers, absl::Seconds(120)).ok());
  for (auto& t : threads) t.join();
}

INSTANTIATE_TEST_SUITE_P(
    WorkersAndSpin, DispatcherStressTest,
    ::testing::Combine(::testing::Values(1, 2, 4), ::testing::Values(0, 256)),
    [](const auto& info) {
      return "workers" + std::to_string(std::get<0>(info.param)) + "_spin" +
             std::to_string(std::get<1>(info.param));
    });

}  // namespace
}  // namespace spindle::dispatch
