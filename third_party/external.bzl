"""One wrapper per external library, built from Debian or from a Bazel module.

Every layer depends on `//third_party:<name>` only.  What such a target
contains depends on how Bazel resolves external dependencies:

- WORKSPACE (Bazel 4.2.3 here, offline): the library is Debian's -dev
  package, headers in /usr/include and `linkopts` naming its libraries.
- bzlmod (Bazel 7+, MODULE.bazel): the target wraps `module`, a label in a
  Bazel Central Registry module that MODULE.bazel declares with `bazel_dep`.

So moving between the two never touches a layer's BUILD file.  A check
(`//third_party:module_deps_test`) keeps MODULE.bazel in step with the
modules named here.
"""

load("@rules_cc//cc:defs.bzl", "cc_library")

# True when this file was loaded under bzlmod: only then do labels print
# with the canonical "@@" prefix.  A WORKSPACE build never sees "@@".
BZLMOD = str(Label("//:BUILD.bazel")).startswith("@@")

def external_library(name, module, linkopts = [], deps = [], defines = [], testonly = False):
    """Declares //third_party:<name>.

    Args:
      name: the wrapper's name, e.g. "absl_status".
      module: the label of the library in its Bazel module (bzlmod builds).
      linkopts: how to link Debian's library (WORKSPACE builds).
      deps: other wrappers Debian's headers need (WORKSPACE builds).
      defines: preprocessor definitions users of the library need (both).
      testonly: for test and benchmark tools.
    """
    if BZLMOD:
        cc_library(
            name = name,
            deps = [module],
            defines = defines,
            testonly = testonly,
        )
    else:
        cc_library(
            name = name,
            linkopts = linkopts,
            deps = deps,
            defines = defines,
            testonly = testonly,
        )
