// bench/workloads_channel.cc: the channel rows.
//
//   channel_pingpong (param workers, 1 and 2): two tasks bounce a message
//     through two Channel<int64_t> of capacity 1, pinned to worker 0 and to
//     worker `workers - 1`; the floor: two threads and two mutex +
//     condition-variable queues, both threads on CPU 0 for 1 worker, on
//     CPUs 0 and 1 for 2; Asio: two coroutines and two
//     experimental::concurrent_channel on one io_context thread, or one
//     each on two.  Ops: messages (2 per round trip).
//   channel_throughput (param messages): 4 producer tasks on worker 1 send
//     to 1 consumer task on worker 0 through one channel of capacity 64;
//     the floor: 4 producer threads and 1 consumer thread on a bounded
//     mutex + condition-variable queue of 64.
//   mt_channel (param workers, 2): a root task spawns 8 consumers of one
//     channel of capacity 8 while every other worker is held until they
//     have begun (bench/hold.h: so they begin on the root's worker, as
//     when the others are busy or still waking), sends N messages
//     (N_TASKS/20, 5000), each 20 us of work for its consumer, closes and
//     joins them.  spindle:
//     stealable consumers, which only moves and wakes can spread;
//     spindle_pinned: consumers pinned to the root's worker (the baseline:
//     nothing spreads).  Serial work: N x 20 us.
// Wall time from the start of the exchange to its end; executors and
// threads are made before the clock starts.
#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "bench/hold.h"
#include "bench/quiet.h"
#include "bench/workloads.h"
#include "executor/executor.h"
#include "timing/clock.h"

namespace spindle::bench {
namespace {

using timing::MonotonicClock;

constexpr int kProducers = 4;
constexpr size_t kThroughputCapacity = 64;

Row Wall(const std::string& id, uint64_t t0, uint64_t t1) {
  return Row{id, static_cast<double>(t1 - t0), Unit::kNanos};
}

absl::StatusOr<std::unique_ptr<Runtime>> MakeRuntime(
    int64_t workers, std::vector<int> cpus = {}) {
  RuntimeBuilder b = QuietRuntime(workers);
  if (!cpus.empty()) b.ThreadAffinity(std::move(cpus));
  return b.Build();
}

// ---- channel_pingpong -------------------------------------------------------

Task<int64_t> Bounce(Channel<int64_t>* in, Channel<int64_t>* out,
                     int64_t rounds, bool serve) {
  int64_t sum = 0;
  for (int64_t i = 0; i < rounds; ++i) {
    if (serve) co_await out->Send(i);
    std::optional<int64_t> v = co_await in->Recv();
    sum += v.value_or(0);
    if (!serve) co_await out->Send(*v);
  }
  co_return sum;
}

absl::StatusOr<Rows> SpindleChannelPingPong(const std::string& id,
                                            int64_t workers, int64_t rounds) {
  // One worker runs on the CPU this thread runs on, as the asio variant's
  // io_context and the 1B_yield row (the target's yardstick) do: on a VM
  // whose CPUs differ in speed (bench/README.md), a fresh worker thread
  // placed anywhere would measure the placement, not the channel.
  std::vector<int> cpus;
  if (workers == 1) {
    if (const int cpu = sched_getcpu(); cpu >= 0) cpus.push_back(cpu);
  }
  auto rt = MakeRuntime(workers, std::move(cpus));
  if (!rt.ok()) return rt.status();
  RuntimeSpawnOptions on_a, on_b;
  on_a.placement = Placement::Pinned(0);
  on_b.placement = Placement::Pinned(static_cast<size_t>(workers - 1));
  uint64_t t0 = 0, t1 = 0;
  for (int pass = 0; pass < 2; ++pass) {  // the first pass warms up
    auto ab = Channel<int64_t>::Create(1);
    auto ba = Channel<int64_t>::Create(1);
    if (!ab.ok()) return ab.status();
    if (!ba.ok()) return ba.status();
    t0 = MonotonicClock::Now();
    auto a = (*rt)->Spawn(Bounce(ba->get(), ab->get(), rounds, true), on_a);
    auto b = (*rt)->Spawn(Bounce(ab->get(), ba->get(), rounds, false), on_b);
    const int64_t sa = a.Join();
    const int64_t sb = b.Join();
    t1 = MonotonicClock::Now();
    if (sa != sb || sa != rounds * (rounds - 1) / 2) {
      return absl::InternalError("channel_pingpong: messages were lost");
    }
  }
  return Rows{Wall(id, t0, t1)};
}

Task<int64_t> BounceBoth(LocalExecutor* ex, int64_t rounds) {
  auto ab = Channel<int64_t>::Create(1);
  auto ba = Channel<int64_t>::Create(1);
  if (!ab.ok() || !ba.ok()) co_return -1;
  JoinHandle<int64_t> a = ex->Spawn(Bounce(ba->get(), ab->get(), rounds, true));
  JoinHandle<int64_t> b =
      ex->Spawn(Bounce(ab->get(), ba->get(), rounds, false));
  const int64_t sa = co_await a;
  const int64_t sb = co_await b;
  co_return sa == sb ? sa : -1;
}

// The textbook blocking queue: one mutex, a condition variable per side.
template <typename T>
class FloorQueue {
 public:
  explicit FloorQueue(size_t capacity) : capacity_(capacity) {}
  void Push(T v) {
    std::unique_lock<std::mutex> l(mu_);
    not_full_.wait(l, [&] { return q_.size() < capacity_; });
    q_.push_back(v);
    l.unlock();
    not_empty_.notify_one();
  }
  T Pop() {
    std::unique_lock<std::mutex> l(mu_);
    not_empty_.wait(l, [&] { return !q_.empty(); });
    T v = q_.front();
    q_.pop_front();
    l.unlock();
    not_full_.notify_one();
    return v;
  }

 private:
  const size_t capacity_;
  std::mutex mu_;
  std::condition_variable not_full_, not_empty_;
  std::deque<T> q_;
};

void PinTo(std::thread& t, int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  (void)pthread_setaffinity_np(t.native_handle(), sizeof set, &set);
}

absl::StatusOr<Rows> FloorChannelPingPong(const std::string& id,
                                          int64_t workers, int64_t rounds) {
  FloorQueue<int64_t> ab(1), ba(1);
  int64_t sa = 0, sb = 0;
  const uint64_t t0 = MonotonicClock::Now();
  std::thread a([&] {
    for (int64_t i = 0; i < rounds; ++i) {
      ab.Push(i);
      sa += ba.Pop();
    }
  });
  std::thread b([&] {
    for (int64_t i = 0; i < rounds; ++i) {
      const int64_t v = ab.Pop();
      sb += v;
      ba.Push(v);
    }
  });
  PinTo(a, 0);
  PinTo(b, workers > 1 ? 1 : 0);
  a.join();
  b.join();
  const uint64_t t1 = MonotonicClock::Now();
  if (sa != sb) return absl::InternalError("floor pingpong: mismatch");
  return Rows{Wall(id, t0, t1)};
}

// ---- channel_throughput -----------------------------------------------------

Task<> ProduceRange(Channel<int64_t>* ch, int64_t from, int64_t n) {
  for (int64_t i = from; i < from + n; ++i) co_await ch->Send(i);
}

Task<int64_t> ConsumeAll(Channel<int64_t>* ch) {
  int64_t sum = 0;
  while (std::optional<int64_t> v = co_await ch->Recv()) sum += *v;
  co_return sum;
}

int64_t SumBelow(int64_t n) { return n * (n - 1) / 2; }

absl::StatusOr<Rows> SpindleChannelThroughput(const std::string& id,
                                              int64_t messages) {
  auto rt = MakeRuntime(2);
  if (!rt.ok()) return rt.status();
  RuntimeSpawnOptions on0, on1;
  on0.placement = Placement::Pinned(0);
  on1.placement = Placement::Pinned(1);
  const int64_t per = messages / kProducers;
  auto ch = Channel<int64_t>::Create(kThroughputCapacity);
  if (!ch.ok()) return ch.status();
  const uint64_t t0 = MonotonicClock::Now();
  auto consumer = (*rt)->Spawn(ConsumeAll(ch->get()), on0);
  std::vector<JoinHandle<>> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.push_back(
        (*rt)->Spawn(ProduceRange(ch->get(), p * per, per), on1));
  }
  for (auto& h : producers) h.Join();
  (*ch)->Close();
  const int64_t sum = consumer.Join();
  const uint64_t t1 = MonotonicClock::Now();
  if (sum != SumBelow(per * kProducers)) {
    return absl::InternalError("channel_throughput: messages were lost");
  }
  return Rows{Wall(id, t0, t1)};
}

absl::StatusOr<Rows> FloorChannelThroughput(const std::string& id,
                                            int64_t messages) {
  const int64_t per = messages / kProducers;
  FloorQueue<int64_t> q(kThroughputCapacity);
  int64_t sum = 0;
  const uint64_t t0 = MonotonicClock::Now();
  std::thread consumer([&] {
    for (int64_t i = 0; i < per * kProducers; ++i) sum += q.Pop();
  });
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&q, p, per] {
      for (int64_t i = p * per; i < (p + 1) * per; ++i) q.Push(i);
    });
  }
  for (auto& t : producers) t.join();
  consumer.join();
  const uint64_t t1 = MonotonicClock::Now();
  if (sum != SumBelow(per * kProducers)) {
    return absl::InternalError("floor throughput: messages were lost");
  }
  return Rows{Wall(id, t0, t1)};
}

// ---- mt_channel -------------------------------------------------------------

constexpr int kFanConsumers = 8;
constexpr uint64_t kFanWorkNs = 20'000;

Task<int64_t> FanConsumer(Channel<int64_t>* ch, StartGate* gate) {
  gate->started.fetch_add(1, std::memory_order_relaxed);
  int64_t sum = 0;
  while (std::optional<int64_t> v = co_await ch->Recv()) {
    SpinFor(kFanWorkNs);
    sum += *v;
  }
  co_return sum;
}

Task<int64_t> FanRoot(int64_t messages, bool pinned) {
  Runtime* rt = Runtime::Current();
  const size_t me = CurrentWorker().value_or(0);
  auto ch = Channel<int64_t>::Create(kFanConsumers).value();
  StartGate gate;
  gate.want = kFanConsumers;
  std::vector<JoinHandle<>> holds;
  HoldOtherWorkers(*rt, me, &gate, &holds);
  RuntimeSpawnOptions here;
  here.placement = Placement::Pinned(me);
  std::vector<JoinHandle<int64_t>> consumers;
  for (int i = 0; i < kFanConsumers; ++i) {
    consumers.push_back(pinned ? rt->Spawn(FanConsumer(ch.get(), &gate), here)
                               : rt->Spawn(FanConsumer(ch.get(), &gate)));
  }
  for (int64_t i = 0; i < messages; ++i) co_await ch->Send(i);
  ch->Close();
  for (auto& h : holds) co_await h;
  int64_t sum = 0;
  for (auto& c : consumers) sum += co_await c;
  co_return sum;
}

absl::StatusOr<Rows> SpindleMtChannel(const std::string& id, int64_t workers,
                                      int64_t messages, bool pinned) {
  auto rt = MakeRuntime(workers);
  if (!rt.ok()) return rt.status();
  const uint64_t t0 = MonotonicClock::Now();
  const int64_t sum = (*rt)->BlockOn(FanRoot(messages, pinned));
  const uint64_t t1 = MonotonicClock::Now();
  if (sum != SumBelow(messages)) {
    return absl::InternalError("mt_channel: messages were lost");
  }
  return Rows{Wall(id, t0, t1)};
}

}  // namespace

absl::StatusOr<Rows> SpindleChannelLocal(const std::string& id,
                                         int64_t messages) {
  // No tiers and no monitor: under valgrind a poll can look slow (the
  // monitor thread is scheduled mid-poll), and a task sent up the tiers
  // would take other paths, so the count would not repeat.
  absl::StatusOr<std::unique_ptr<LocalExecutor>> ex =
      ExecutorBuilder().NoTiers().NoMonitor().Build();
  if (!ex.ok()) return ex.status();
  const int64_t rounds = std::max<int64_t>(1, messages / 2);
  const uint64_t t0 = MonotonicClock::Now();
  const int64_t sum = (*ex)->BlockOn(BounceBoth(ex->get(), rounds));
  const uint64_t t1 = MonotonicClock::Now();
  if (sum != rounds * (rounds - 1) / 2) {
    return absl::InternalError("channel ping-pong: messages were lost");
  }
  return Rows{Wall(id, t0, t1)};
}

void AddChannelBenchmarks(const Config& c, std::vector<Benchmark>& all) {
  {
    const std::string id = "channel_pingpong";
    const int64_t rounds = c.n_tasks.value_or(100'000);
    Benchmark b{id,
                "two tasks bounce a message through two channels of "
                "capacity 1, N_TASKS (100k) round trips; param workers (1: "
                "both on one worker); wall time (floor: mutex + condvar "
                "queues between two threads)",
                "floor",
                Or(c.workers, {1, 2}),
                {}};
    b.variants.push_back({"spindle", [id, rounds](int64_t w) {
                            return SpindleChannelPingPong(id, w, rounds);
                          }});
    b.variants.push_back({"floor", [id, rounds](int64_t w) {
                            return FloorChannelPingPong(id, w, rounds);
                          }});
    b.variants.push_back({"asio", [id, rounds](int64_t w) {
                            return AsioChannelPingPong(id, w, rounds);
                          }});
    b.ops = [rounds](int64_t) { return static_cast<double>(2 * rounds); };
    b.op = "message";
    all.push_back(std::move(b));
  }
  {
    const std::string id = "channel_throughput";
    Benchmark b{id,
                "4 producer tasks on worker 1 send param messages in all to "
                "1 consumer task on worker 0, channel capacity 64; wall time "
                "(floor: 4 + 1 threads on a mutex + condvar queue of 64)",
                "floor",
                {c.n_tasks.value_or(1'000'000)},
                {}};
    b.variants.push_back({"spindle", [id](int64_t n) {
                            return SpindleChannelThroughput(id, n);
                          }});
    b.variants.push_back(
        {"floor", [id](int64_t n) { return FloorChannelThroughput(id, n); }});
    b.ops = [](int64_t n) {
      return static_cast<double>(n / kProducers * kProducers);
    };
    b.op = "message";
    all.push_back(std::move(b));
  }
  {
    const std::string id = "mt_channel";
    const int64_t messages =
        std::max<int64_t>(1, c.n_tasks.value_or(100'000) / 20);
    Benchmark b{id,
                "a root spawns 8 consumers of one channel (capacity 8) while "
                "the other workers are held until they began, then sends "
                "N_TASKS/20 "
                "(5000) messages of 20 us of work each; param workers; wall "
                "time (baseline: the consumers pinned to the root's worker)",
                "spindle_pinned",
                Or(c.workers, {2}),
                {}};
    b.variants.push_back({"spindle", [id, messages](int64_t w) {
                            return SpindleMtChannel(id, w, messages, false);
                          }});
    b.variants.push_back({"spindle_pinned", [id, messages](int64_t w) {
                            return SpindleMtChannel(id, w, messages, true);
                          }});
    b.ops = [messages](int64_t) { return static_cast<double>(messages); };
    b.op = "message";
    all.push_back(std::move(b));
  }
}

}  // namespace spindle::bench
