"""The executor package's unit-test rule (keeps executor/BUILD.bazel short)."""

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
