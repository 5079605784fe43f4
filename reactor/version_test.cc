// reactor/version_test.cc: reactor::kVersion is the layer's VERSION file.

#include <cstdlib>
#include <fstream>
#include <string>

#include "gtest/gtest.h"
#include "reactor/reactor.h"

namespace spindle::reactor {
namespace {

// The layer's VERSION file, read at test time from the runfiles (the
// test's `data`), so kVersion cannot drift from it.
std::string VersionFile() {
  const char* dir = std::getenv("TEST_SRCDIR");
  if (dir == nullptr) return "(TEST_SRCDIR is not set)";
  std::ifstream in(std::string(dir) + "/spindle/reactor/VERSION");
  std::string version;
  std::getline(in, version);
  return version;
}

TEST(ReactorVersionTest, MatchesVersionFile) {
  EXPECT_EQ(kVersion, VersionFile());
}

}  // namespace
}  // namespace spindle::reactor
