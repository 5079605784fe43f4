// Exhaustive small-bound check of WorkDeque: one owner and one or two
// thieves with a few operations each, every interleaving of their atomic
// accesses (sequentially consistent model, see steal/model_testing.h),
// asserting after each execution that every pushed item was taken exactly
// once and none was lost.  8-bit indices starting next to 255 and rings of 2
// or 4 slots make wrap-around and overflow reachable in a few steps.
#include <cstddef>
#include <cstdint>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "steal/model_testing.h"
#include "steal/work_deque.h"

namespace spindle::steal {
namespace {

// The sanitizer runtimes make every step several times slower; they run
// the one- and two-thread scenarios, the default config runs them all.
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define SPINDLE_SKIP_IF_SANITIZED() \
  GTEST_SKIP() << "three-thread scenario: default config only (size)"
#else
#define SPINDLE_SKIP_IF_SANITIZED() \
  do {                              \
  } while (false)
#endif

using steal_testing::ModelAtomics;
using steal_testing::ModelExplorer;
using steal_testing::ModelOptions;
using steal_testing::ModelProgram;
using steal_testing::ModelResult;

enum class Op {
  kPush,        // owner: Push, a refused item stays with the owner
  kPushOrSink,  // owner: PushOrOverflow into the sink
  kPop,         // owner
  kPublish,     // owner: Publish
  kTakeOldest2,  // owner: TakeOldest(into, 2), into the sink
  kSteal,       // thief
  kBatch2,      // thief: StealBatch(into, 2)
  kBatch4,      // thief: StealBatch(into, 4)
};

struct Item {
  int id;
};

// Who ended up with each item.
constexpr int kNobody = -1;

struct Scenario {
  std::string name;
  int prefill = 0;  // items the owner pushes before the threads start
  // Index the deque starts at (wrap-around scenarios start near 255).
  uint8_t first_index = 0;
  std::vector<Op> owner;
  std::vector<std::vector<Op>> thieves;
};

template <size_t kCap>
class DequeModel {
 public:
  using Deque = WorkDeque<Item, kCap, uint8_t, ModelAtomics>;

  static ModelProgram Make(const Scenario& s) {
    auto m = std::make_shared<DequeModel>(s);
    ModelProgram p;
    p.threads.push_back([m] { m->RunOwner(); });
    for (size_t t = 0; t < s.thieves.size(); ++t) {
      p.threads.push_back([m, t] { m->RunThief(t); });
    }
    p.verify = [m] { return m->Verify(); };
    p.outcome = [m] { return m->Outcome(); };
    return p;
  }

  explicit DequeModel(const Scenario& s)
      : s_(s), deque_(std::make_unique<Deque>(s.first_index)) {
    int pushes = s.prefill;
    for (Op op : s.owner) {
      if (op == Op::kPush || op == Op::kPushOrSink) ++pushes;
    }
    items_.resize(pushes);
    for (int i = 0; i < pushes; ++i) items_[i].id = i;
    taker_.assign(pushes, kNobody);
    count_.assign(pushes, 0);
    for (int i = 0; i < s.prefill; ++i) {
      if (!deque_->Push(&items_[i])) std::abort();  // setup, single-threaded
    }
    // Prefilled items are published: scenarios that need private items
    // push them in the owner's script.
    deque_->Publish();
    pushed_ = s.prefill;
  }

 private:
  // Bucket ids: 0 owner, 1.. thieves, then the sink, then "left in deque",
  // then "refused by Push".
  int SinkBucket() const { return 1 + static_cast<int>(s_.thieves.size()); }
  int LeftBucket() const { return SinkBucket() + 1; }
  int RefusedBucket() const { return SinkBucket() + 2; }

  void Took(Item* item, int who) {
    const auto i = item - items_.data();
    if (i < 0 || i >= static_cast<long>(items_.size())) {
      bad_ = "a pointer that was never pushed came out";
      return;
    }
    ++count_[i];
    taker_[i] = who;
  }

  void RunOwner() {
    for (Op op : s_.owner) {
      switch (op) {
        case Op::kPush: {
          Item* item = &items_[pushed_++];
          if (!deque_->Push(item)) Took(item, RefusedBucket());
          break;
        }
        case Op::kPushOrSink: {
          Item* item = &items_[pushed_++];
          deque_->PushOrOverflow(item, [&](Item** moved, size_t n) {
            for (size_t i = 0; i < n; ++i) Took(moved[i], SinkBucket());
          });
          break;
        }
        case Op::kPop:
          if (Item* item = deque_->Pop()) Took(item, 0);
          break;
        case Op::kPublish:
          deque_->Publish();
          break;
        case Op::kTakeOldest2: {
          Item* moved[2];
          const size_t n = deque_->TakeOldest(moved, 2);
          for (size_t i = 0; i < n; ++i) Took(moved[i], SinkBucket());
          break;
        }
        default:
          bad_ = "thief op in owner script";
      }
    }
  }

  void RunThief(size_t t) {
    const int who = 1 + static_cast<int>(t);
    for (Op op : s_.thieves[t]) {
      Item* loot[4];
      size_t n = 0;
      switch (op) {
        case Op::kSteal:
          if ((loot[0] = deque_->Steal()) != nullptr) n = 1;
          break;
        case Op::kBatch2:
          n = deque_->StealBatch(loot, 2);
          break;
        case Op::kBatch4:
          n = deque_->StealBatch(loot, 4);
          break;
        default:
          bad_ = "owner op in thief script";
      }
      for (size_t i = 0; i < n; ++i) Took(loot[i], who);
    }
  }

  std::string Verify() {
    if (!bad_.empty()) return bad_;
    // Drain what is left (single-threaded now: accesses are not scheduled):
    // once published, every item is stealable, oldest first.
    const size_t left = deque_->size();
    deque_->Publish();
    size_t drained = 0;
    while (Item* item = deque_->Steal()) {
      Took(item, LeftBucket());
      ++drained;
    }
    while (Item* item = deque_->Pop()) {
      bad_ = "Pop found an item after Publish and Steal drained the deque";
      Took(item, LeftBucket());
      ++drained;
    }
    if (!bad_.empty()) return bad_;
    if (drained != left) {
      return "size() said " + std::to_string(left) + " but " +
             std::to_string(drained) + " were left";
    }
    for (size_t i = 0; i < items_.size(); ++i) {
      if (count_[i] != 1) {
        return "item " + std::to_string(i) + " taken " +
               std::to_string(count_[i]) + " times";
      }
    }
    // The deque is usable afterwards: indices consistent.
    if (!deque_->empty() || deque_->Steal() != nullptr) {
      return "deque not empty after draining";
    }
    Item probe{-1};
    if (!deque_->Push(&probe) || deque_->Pop() != &probe) {
      return "deque unusable after the run";
    }
    return "";
  }

  std::string Outcome() const {
    std::string o;
    for (int t : taker_) o += std::to_string(t) + ",";
    return o;
  }

  Scenario s_;
  std::unique_ptr<Deque> deque_;
  std::vector<Item> items_;
  std::vector<int> taker_;
  std::vector<int> count_;
  int pushed_ = 0;
  std::string bad_;
};

template <size_t kCap>
ModelResult Check(const Scenario& s, bool sleep_sets = true) {
  ModelOptions options;
  options.sleep_sets = sleep_sets;
  ModelResult r = ModelExplorer::Explore(
      [&] { return DequeModel<kCap>::Make(s); }, options);
  std::cout << "[model] " << s.name << " (capacity " << kCap
            << ", 8-bit indices from " << int{s.first_index}
            << "): " << r.executions << " interleavings"
            << (sleep_sets ? " (one per trace, sleep sets)" : " (all)") << ", "
            << r.sleep_blocked << " redundant prefixes cut, " << r.steps
            << " steps, " << r.outcomes.size() << " distinct outcomes"
            << std::endl;
  EXPECT_TRUE(r.failure.empty()) << s.name << ": " << r.failure;
  EXPECT_TRUE(r.complete) << s.name;
  return r;
}

uint64_t total_interleavings = 0;

using O = Op;

TEST(WorkDequeModelTest, LastElementPopVersusSteal) {
  Scenario s{"last element: Pop vs Steal", 1, 0, {O::kPop}, {{O::kSteal}}};
  ModelResult r = Check<4>(s);
  total_interleavings += r.executions;
  // Both winners are reachable.
  EXPECT_EQ(r.outcomes.size(), 2u);
}

TEST(WorkDequeModelTest, LastElementPopVersusTwoThieves) {
  Scenario s{"last element: Pop vs 2 Steals",
             1,
             0,
             {O::kPop},
             {{O::kSteal}, {O::kSteal}}};
  ModelResult r = Check<4>(s);
  total_interleavings += r.executions;
  EXPECT_EQ(r.outcomes.size(), 3u);
}

TEST(WorkDequeModelTest, SleepSetsFindEveryOutcomeOfTheFullSearch) {
  // The reduction must reach exactly the final states the full enumeration
  // of every interleaving reaches.
  std::vector<Scenario> cases = {
      {"full vs reduced A", 1, 0, {O::kPop, O::kPush}, {{O::kSteal}}},
      {"full vs reduced B", 2, 254, {O::kPop, O::kPop}, {{O::kSteal}}},
      {"full vs reduced C", 2, 255, {O::kPop}, {{O::kBatch2}, {O::kSteal}}},
      {"full vs reduced D", 2, 0, {O::kPushOrSink}, {{O::kSteal, O::kSteal}}},
  };
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
  // C and D enumerate ~70,000 interleavings in full: default config only.
  cases.resize(2);
#endif
  for (const Scenario& s : cases) {
    ModelResult full = Check<2>(s, /*sleep_sets=*/false);
    ModelResult reduced = Check<2>(s);
    EXPECT_EQ(full.outcomes, reduced.outcomes) << s.name;
    EXPECT_LE(reduced.executions, full.executions) << s.name;
    total_interleavings += full.executions + reduced.executions;
  }
}

TEST(WorkDequeModelTest, OwnerFourOpsOneThiefThreeSteals) {
  Scenario s{"push/pop x4 vs 3 steals",
             1,
             0,
             {O::kPush, O::kPop, O::kPop, O::kPop},
             {{O::kSteal, O::kSteal, O::kSteal}}};
  const ModelResult r = Check<4>(s);
  total_interleavings += r.executions;
  EXPECT_GT(r.executions, 100u);
}

TEST(WorkDequeModelTest, BatchStealVersusPops) {
  Scenario s{"StealBatch(4) vs pops",
             3,
             0,
             {O::kPop, O::kPop, O::kPush, O::kPop},
             {{O::kBatch4, O::kSteal}}};
  total_interleavings += Check<4>(s).executions;
}

TEST(WorkDequeModelTest, TwoThievesBatchAndSteal) {
  SPINDLE_SKIP_IF_SANITIZED();
  Scenario s{"2 thieves: batch + steal vs pops",
             2,
             0,
             {O::kPush, O::kPop, O::kPop},
             {{O::kBatch2, O::kSteal}, {O::kSteal}}};
  total_interleavings += Check<4>(s).executions;
}

TEST(WorkDequeModelTest, OverflowToSinkAndRefusedPush) {
  // Capacity 2, full from the start: pushes overflow or are refused while
  // thieves make room.
  Scenario s{"overflow at capacity 2",
             2,
             0,
             {O::kPushOrSink, O::kPush, O::kPop, O::kPushOrSink},
             {{O::kSteal, O::kBatch2}}};
  total_interleavings += Check<2>(s).executions;
}

// The owner's one-CAS batch of its oldest items against a thief's steals
// and batch, and its own pops of the last items.
TEST(WorkDequeModelTest, OwnerTakesOldestVersusThief) {
  Scenario s{"take oldest vs steals",
             4,
             0,
             {O::kTakeOldest2, O::kPop, O::kTakeOldest2},
             {{O::kSteal, O::kBatch2}}};
  total_interleavings += Check<4>(s).executions;
}

TEST(WorkDequeModelTest, OwnerTakesOldestVersusTwoThievesAcrossWrapAround) {
  SPINDLE_SKIP_IF_SANITIZED();
  Scenario s{"take oldest, 2 thieves, wrap-around",
             3,
             254,
             {O::kTakeOldest2, O::kPush, O::kTakeOldest2, O::kPop},
             {{O::kSteal}, {O::kBatch2}}};
  total_interleavings += Check<4>(s).executions;
}

TEST(WorkDequeModelTest, OverflowWithTwoThieves) {
  SPINDLE_SKIP_IF_SANITIZED();
  Scenario s{"overflow, 2 thieves",
             2,
             0,
             {O::kPushOrSink, O::kPop, O::kPushOrSink},
             {{O::kSteal, O::kSteal}, {O::kBatch2}}};
  total_interleavings += Check<2>(s).executions;
}

TEST(WorkDequeModelTest, IndexWrapAround) {
  // 8-bit indices from 253: every operation crosses 255 -> 0.
  Scenario s{"wrap-around",
             2,
             253,
             {O::kPush, O::kPop, O::kPush, O::kPop},
             {{O::kSteal, O::kBatch2, O::kSteal}}};
  total_interleavings += Check<4>(s).executions;
}

TEST(WorkDequeModelTest, IndexWrapAroundTwoThievesFillingRing) {
  SPINDLE_SKIP_IF_SANITIZED();
  Scenario s{"wrap-around, filling ring, 2 thieves",
             3,
             254,
             {O::kPush, O::kPushOrSink, O::kPop},
             {{O::kSteal, O::kSteal}, {O::kBatch4}}};
  total_interleavings += Check<4>(s).executions;
}

// The private part.  Items the owner pushes in its script stay private until
// it publishes them or a thief's request reaches its next Pop.

// True when some explored execution ended with thief 1 (the first thief's
// bucket, see DequeModel) holding an item.
bool ThiefEverWon(const ModelResult& r) {
  for (const std::string& o : r.outcomes) {
    // Outcome: the taker of each item, comma-terminated ("0,1,-1,").
    if (("," + o).find(",1,") != std::string::npos) return true;
  }
  return false;
}

TEST(WorkDequeModelTest, PrivateItemsReachAThiefThatAsked) {
  // The thief's first Steal finds nothing public and asks; the owner's Pop
  // shares half of what is left; the thief's second Steal can take it.
  Scenario s{"private: steal asks, owner shares",
             0,
             0,
             {O::kPush, O::kPush, O::kPush, O::kPop},
             {{O::kSteal, O::kSteal}}};
  const ModelResult r = Check<4>(s);
  total_interleavings += r.executions;
  EXPECT_TRUE(ThiefEverWon(r)) << "no execution let the thief take a shared "
                                  "item";
}

TEST(WorkDequeModelTest, SharedItemsRaceTheOwnersPops) {
  // What the owner shares on a request is public: its later Pops race the
  // thief for it (down to the last element).
  Scenario s{"private: share, then pops race steals",
             0,
             0,
             {O::kPush, O::kPush, O::kPop, O::kPop},
             {{O::kSteal, O::kSteal, O::kSteal}}};
  const ModelResult r = Check<4>(s);
  total_interleavings += r.executions;
  EXPECT_TRUE(ThiefEverWon(r));
}

TEST(WorkDequeModelTest, PublishThenPopsVersusBatch) {
  Scenario s{"private: publish, pop vs batch",
             1,
             0,
             {O::kPush, O::kPush, O::kPublish, O::kPop},
             {{O::kBatch4, O::kSteal}}};
  const ModelResult r = Check<4>(s);
  total_interleavings += r.executions;
  EXPECT_TRUE(ThiefEverWon(r));
}

TEST(WorkDequeModelTest, PrivateAndPublicWithTwoThieves) {
  SPINDLE_SKIP_IF_SANITIZED();
  Scenario s{"private + public, 2 thieves",
             1,
             0,
             {O::kPush, O::kPop, O::kPush, O::kPop},
             {{O::kSteal, O::kBatch2}, {O::kSteal}}};
  total_interleavings += Check<4>(s).executions;
}

TEST(WorkDequeModelTest, OverflowOfPrivateItemsAcrossWrapAround) {
  // Capacity 2, indices from 254: the owner fills the ring privately, then
  // PushOrOverflow publishes and moves the oldest half while a thief steals.
  Scenario s{"private overflow, wrap-around",
             0,
             254,
             {O::kPush, O::kPush, O::kPushOrSink, O::kPop},
             {{O::kSteal, O::kSteal}}};
  total_interleavings += Check<2>(s).executions;
}

// Prints the total once every test has run (whatever the filter).
class TotalReporter : public ::testing::Environment {
 public:
  void TearDown() override {
    std::cout << "[model] total interleavings explored: " << total_interleavings
              << std::endl;
  }
};
const auto* const kReporter =
    ::testing::AddGlobalTestEnvironment(new TotalReporter);

}  // namespace
}  // namespace spindle::steal
