// dispatch/version_test.cc: dispatch::kVersion is the layer's VERSION file.

#include <cstdlib>
#include <fstream>
#include <string>

#include "dispatch/dispatch.h"
#include "gtest/gtest.h"

namespace spindle::dispatch {
namespace {

// The layer's VERSION file, read at test time from the runfiles (the
// test's `data`), so kVersion cannot drift from it.
std::string VersionFile() {
  const char* dir = std::getenv("TEST_SRCDIR");
  if (dir == nullptr) return "(TEST_SRCDIR is not set)";
  std::ifstream in(std::string(dir) + "/spindle/dispatch/VERSION");
  std::string version;
  std::getline(in, version);
  return version;
}

TEST(DispatchVersionTest, MatchesVersionFile) {
  EXPECT_EQ(kVersion, VersionFile());
}

}  // namespace
}  // namespace spindle::dispatch
