"""The executor package's test rules (keep executor/BUILD.bazel short)."""

load("@rules_cc//cc:defs.bzl", "cc_test")
load("//:copts.bzl", "TEST_COPTS")

def executor_test(name, deps = [], **kwargs):
    """A GoogleTest binary `name` built from `name`.cc.

    It links the executor and gtest_main besides `deps`, with the tests'
    warnings (TEST_COPTS).  Every other cc_test attribute (size, tags, data,
    linkopts, ...) passes through.
    """
    cc_test(
        name = name,
        srcs = [name + ".cc"],
        copts = TEST_COPTS,
        deps = [
            ":executor",
            "//third_party:gtest_main",
        ] + deps,
        **kwargs
    )

def _runtime_test(name, src, env):
    cc_test(
        name = name,
        size = "medium",
        srcs = [src],
        copts = TEST_COPTS,
        env = env,
        deps = [
            ":executor",
            ":local_executor_testing",
            ":runtime_testing",
            "//steal",
            "//third_party:gtest_main",
        ],
    )

def runtime_tests(tests):
    """The Runtime's tests: one medium cc_test per (name, epoll_twin).

    `name`.cc links the executor and the Runtime's testing helpers; with
    `epoll_twin`, `<name without _test>_epoll_test` runs the same file with
    SPINDLE_REACTOR=epoll.
    """
    for name, epoll_twin in tests:
        _runtime_test(name, name + ".cc", {})
        if epoll_twin:
            _runtime_test(
                name[:-len("_test")] + "_epoll_test",
                name + ".cc",
                {"SPINDLE_REACTOR": "epoll"},
            )

