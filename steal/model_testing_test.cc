// The explorer itself: it must find the schedules that break a racy
// program, and must not invent outcomes sequential consistency forbids.
#include "steal/model_testing.h"

#include <memory>
#include <set>
#include <string>

#include "gtest/gtest.h"

namespace spindle::steal_testing {
namespace {

TEST(ModelExplorerTest, FindsTheLostUpdateOfALoadStoreIncrement) {
  struct State {
    ModelAtomic<int> counter{0};
  };
  for (bool sleep_sets : {false, true}) {
    ModelOptions options;
    options.sleep_sets = sleep_sets;
    ModelResult r = ModelExplorer::Explore(
        [] {
          auto s = std::make_shared<State>();
          ModelProgram p;
          for (int t = 0; t < 2; ++t) {
            p.threads.push_back(
                [s] { s->counter.store(s->counter.load() + 1); });
          }
          p.verify = [s]() -> std::string {
            return s->counter.load() == 2 ? "" : "lost update";
          };
          return p;
        },
        options);
    EXPECT_EQ(r.failure.substr(0, 11), "lost update") << sleep_sets;
  }
}

TEST(ModelExplorerTest, FetchAddIncrementIsNeverLostAndCountsAreExact) {
  struct State {
    ModelAtomic<int> counter{0};
  };
  ModelOptions full;
  full.sleep_sets = false;
  auto make = [] {
    auto s = std::make_shared<State>();
    ModelProgram p;
    for (int t = 0; t < 3; ++t) {
      p.threads.push_back([s] { s->counter.fetch_add(1); });
    }
    p.verify = [s]() -> std::string {
      return s->counter.load() == 3 ? "" : "lost update";
    };
    return p;
  };
  ModelResult all = ModelExplorer::Explore(make, full);
  EXPECT_TRUE(all.failure.empty());
  EXPECT_TRUE(all.complete);
  EXPECT_EQ(all.executions, 6u);  // 3! orders of three single steps
  ModelResult reduced = ModelExplorer::Explore(make);
  EXPECT_TRUE(reduced.complete);
  EXPECT_EQ(reduced.executions, 6u);  // all dependent: nothing to prune
}

TEST(ModelExplorerTest, StoreBufferingShowsOnlySequentiallyConsistentResults) {
  // x = 1; a = y  ||  y = 1; b = x.  Under SC, a == b == 0 is impossible.
  struct State {
    ModelAtomic<int> x{0}, y{0};
    int a = -1, b = -1;
  };
  for (bool sleep_sets : {false, true}) {
    ModelOptions options;
    options.sleep_sets = sleep_sets;
    ModelResult r = ModelExplorer::Explore(
        [] {
          auto s = std::make_shared<State>();
          ModelProgram p;
          p.threads.push_back([s] {
            s->x.store(1);
            s->a = s->y.load();
          });
          p.threads.push_back([s] {
            s->y.store(1);
            s->b = s->x.load();
          });
          p.outcome = [s] {
            return std::to_string(s->a) + std::to_string(s->b);
          };
          return p;
        },
        options);
    EXPECT_TRUE(r.complete);
    EXPECT_EQ(r.outcomes, (std::set<std::string>{"01", "10", "11"}))
        << sleep_sets;
    if (sleep_sets) {
      EXPECT_EQ(r.executions, 3u);  // one per outcome: one per trace
    } else {
      EXPECT_EQ(r.executions, 6u);  // C(4, 2) interleavings
    }
  }
}

TEST(ModelExplorerTest, IndependentThreadsNeedOneExecution) {
  struct State {
    ModelAtomic<int> a{0}, b{0};
  };
  ModelResult r = ModelExplorer::Explore([] {
    auto s = std::make_shared<State>();
    ModelProgram p;
    p.threads.push_back([s] {
      s->a.store(1);
      s->a.store(2);
    });
    p.threads.push_back([s] {
      s->b.store(1);
      s->b.store(2);
    });
    return p;
  });
  EXPECT_TRUE(r.complete);
  EXPECT_EQ(r.executions, 1u);
}

}  // namespace
}  // namespace spindle::steal_testing
