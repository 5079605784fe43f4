"""Compiler flags shared by every Spindle target (never hand-written in BUILD files)."""

# Our own code: strict warnings, warnings are errors.
DEFAULT_COPTS = [
    "-std=c++20",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Wno-unused-parameter",
]

# Tests: the same, except GoogleTest macros trip -Wsign-compare on gcc.
TEST_COPTS = DEFAULT_COPTS + [
    "-Wno-sign-compare",
]

# Benchmarks are run with -c opt; they keep the warnings too.
BENCHMARK_COPTS = DEFAULT_COPTS

# third_party wrappers wrap system libraries and add no flags of ours.
THIRD_PARTY_COPTS = []

# Benchmark peers (bench/'s Asio and oneTBB wrappers only): the same as
# BENCHMARK_COPTS, except that Asio's headers use std::atomic_thread_fence,
# which gcc's -Wtsan rejects under --config=tsan.
PEER_COPTS = BENCHMARK_COPTS + [
    "-Wno-tsan",
]
