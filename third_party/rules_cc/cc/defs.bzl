"""Forwards the rules_cc entry points to Bazel's native C++ rules.

Bazel 4.2.3 (Debian's bazel-bootstrap) cannot load the real rules_cc that
Debian ships, and no network is reachable to fetch a compatible one.  The
names below are the ones our BUILD files and @bazel_tools//tools/cpp load.
On a newer Bazel with the real rules_cc, the BUILD files work unchanged.
"""

def cc_library(**attrs):
    native.cc_library(**attrs)

def cc_binary(**attrs):
    native.cc_binary(**attrs)

def cc_test(**attrs):
    native.cc_test(**attrs)

def cc_import(**attrs):
    native.cc_import(**attrs)

def cc_proto_library(**attrs):
    native.cc_proto_library(**attrs)

def cc_toolchain(**attrs):
    native.cc_toolchain(**attrs)

def cc_toolchain_suite(**attrs):
    native.cc_toolchain_suite(**attrs)

def fdo_prefetch_hints(**attrs):
    native.fdo_prefetch_hints(**attrs)

def fdo_profile(**attrs):
    native.fdo_profile(**attrs)

def objc_library(**attrs):
    native.objc_library(**attrs)

def objc_import(**attrs):
    native.objc_import(**attrs)
