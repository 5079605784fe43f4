// Exhaustive small-bound check of the biased SyncMutex (protocol in
// executor/internal/sync_mutex.h): the bias owner and one or two other
// threads take the lock a few times each, every interleaving of their
// atomic accesses (sequentially consistent model, steal/model_testing.h;
// the heavy barrier is what makes the real machine behave as this model on
// the Dekker pair, see the protocol comment).  Spinning is bounded: a
// thread retries a step a few times and then stops where it is (a revoker
// that stops keeps the exchange lock, as one still spinning would).  After every execution: never two threads inside at once, and
// no increment of the guarded counter lost.
#include <memory>
#include <string>
#include <vector>

#include "executor/internal/sync_mutex.h"
#include "gtest/gtest.h"
#include "steal/model_testing.h"

namespace spindle::executor_internal {
namespace {

using steal_testing::ModelAtomic;
using steal_testing::ModelAtomics;
using steal_testing::ModelExplorer;
using steal_testing::ModelProgram;
using steal_testing::ModelResult;

// Under the model the heavy barrier is a no-op: every access is already
// sequentially consistent.
struct ModelBarriers {
  static bool Available() noexcept { return true; }
  static void Heavy() noexcept {}
};

using Mutex = BasicSyncMutex<ModelAtomics, ModelBarriers>;

constexpr uint64_t kOwner = 1;
constexpr int kRetries = 3;

struct Model {
  Mutex mu;
  ModelAtomic<int> inside{0};
  ModelAtomic<int> counter{0};  // incremented non-atomically under mu
  int entries = 0;              // plain: each thread's own count, summed
  std::vector<int> per_thread = std::vector<int>(3, 0);
  std::string violation;
  bool skip_revocation = false;  // a broken variant: proves the check bites

  Model() {
    // Setup (no scheduling points): the owner takes the lock kBiasAfter
    // times in a row, which biases it.
    for (uint32_t i = 0; i < Mutex::kBiasAfter; ++i) {
      EXPECT_TRUE(mu.TryL1());
      mu.L3(kOwner);
      mu.Unlock(kOwner);
    }
    EXPECT_EQ(mu.bias_owner(), kOwner);
  }

  void Critical(int who) {
    if (inside.fetch_add(1) != 0 && violation.empty()) {
      violation = "two threads inside the lock";
    }
    const int v = counter.load();
    counter.store(v + 1);
    inside.fetch_sub(1);
    ++per_thread[who];
  }

  // The slow path (L1-L3) with bounded retries; true if it entered.
  bool Slow(int who, uint64_t me) {
    bool got = false;
    for (int i = 0; i < kRetries && !got; ++i) got = mu.TryL1();
    if (!got) return false;
    if (!skip_revocation && mu.BiasedAndNotRevoked(me)) {
      mu.RevokeBegin();
      bool out = false;
      for (int i = 0; i < kRetries && !out; ++i) out = mu.OwnerOut();
      // Still waiting when its retries run out: the execution ends with it
      // holding locked_, as a revoker that is still spinning would (it
      // must not release locked_ before the owner is out: the next holder
      // sees revoked_ and would not wait).
      if (!out) return false;
    }
    mu.L3(me);
    Critical(who);
    mu.Unlock(me);
    return true;
  }

  void Owner(int times) {
    for (int i = 0; i < times; ++i) {
      if (mu.TryB1(kOwner)) {
        Critical(0);
        mu.Unlock(kOwner);
      } else {
        Slow(0, kOwner);
      }
    }
  }

  std::string Verify() const {
    if (!violation.empty()) return violation;
    int sum = 0;
    for (int n : per_thread) sum += n;
    if (counter.load() != sum) {
      return "lost an increment: counter " + std::to_string(counter.load()) +
             ", entries " + std::to_string(sum);
    }
    return "";
  }
};

ModelProgram Make(int owner_times, int others, bool skip_revocation) {
  auto m = std::make_shared<Model>();
  m->skip_revocation = skip_revocation;
  ModelProgram p;
  p.threads.push_back([m, owner_times] { m->Owner(owner_times); });
  for (int t = 1; t <= others; ++t) {
    p.threads.push_back([m, t] { m->Slow(t, kOwner + t); });
  }
  p.verify = [m] { return m->Verify(); };
  p.outcome = [m] {
    return std::to_string(m->per_thread[0]) + "/" +
           std::to_string(m->per_thread[1]) + "/" +
           std::to_string(m->per_thread[2]) +
           (m->mu.revoked() ? " revoked" : "");
  };
  return p;
}

// Explores the real protocol; every execution must pass Verify().
ModelResult ExploreSafe(int owner_times, int others) {
  const ModelResult r = ModelExplorer::Explore(
      [=] { return Make(owner_times, others, false); });
  EXPECT_TRUE(r.complete);
  EXPECT_EQ(r.failure, "");
  return r;
}

TEST(SyncMutexModelTest, OwnerAndOneRevoker) {
  const ModelResult r = ExploreSafe(/*owner_times=*/2, /*others=*/1);
  // Reachable: the revoker enters with the owner in either path, and the
  // owner falls back to the exchange lock after the revocation.
  EXPECT_TRUE(r.outcomes.count("2/1/0 revoked")) << r.executions;
  EXPECT_GT(r.executions, 10u);
}

TEST(SyncMutexModelTest, OwnerAndTwoOthers) {
  const ModelResult r = ExploreSafe(/*owner_times=*/2, /*others=*/2);
  EXPECT_TRUE(r.outcomes.count("2/1/1 revoked")) << r.executions;
}

// The same search over a revoker that skips L2 finds the overlap: the
// check above can fail.
TEST(SyncMutexModelTest, SkippingTheRevocationIsCaught) {
  const ModelResult r = ModelExplorer::Explore(
      [] { return Make(/*owner_times=*/1, /*others=*/1, true); });
  EXPECT_NE(r.failure, "");
}

}  // namespace
}  // namespace spindle::executor_internal
