"""Spindle's layering rule, enforced by `bazel test //...`.

Every layer's BUILD file ends with

    layering_test(layer = "sched")

which creates a test over every cc_library, cc_binary and cc_test declared
above it in that package.  An aspect walks each target's transitive `deps` at
analysis time; the test fails, naming the target and the label it reaches,
when a target reaches a layer (or an external library) that its layer may not
depend on.  LAYER_DEPS below is the one source of the rule:
docs/architecture.md points here instead of copying it, and the CMake build
(CMakeLists.txt) reads it from this file.
"""

# Direct allowances.  Reach is transitive, so the check allows
# the closure of these.
LAYER_DEPS = {
    "timing": [],
    "budget": ["timing"],
    "sched": ["timing"],
    "reactor": ["timing"],
    "steal": [],
    "dispatch": ["timing", "budget", "sched", "steal", "reactor"],
    "executor": ["timing", "budget", "sched", "reactor", "steal", "dispatch"],
    "bench": ["executor"],
}

# third_party targets any layer may reach (Abseil, test and benchmark tools).
_THIRD_PARTY_ANY_PREFIXES = ["absl_", "gtest", "gmock", "benchmark"]

# third_party targets only some layers may reach.
_THIRD_PARTY_RESTRICTED = {
    "liburing": ["reactor", "dispatch", "executor", "bench"],
    "asio": ["bench"],
    "boost_context": ["executor", "bench"],
    "tbb": ["bench"],
}

def _closure(layer):
    seen = {layer: True}
    todo = [layer]
    for _ in range(len(LAYER_DEPS) + 1):
        nxt = []
        for l in todo:
            for d in LAYER_DEPS.get(l, []):
                if d not in seen:
                    seen[d] = True
                    nxt.append(d)
        todo = nxt
    return seen

_ReachInfo = provider(
    doc = "Every label a target reaches through `deps`.",
    fields = ["labels"],
)

def _reach_aspect_impl(target, ctx):
    deps = getattr(ctx.rule.attr, "deps", [])
    if target.label.package.split("/")[0] == "third_party":
        # A wrapper may reach its library's own repository (a Bazel module
        # under bzlmod): that is what wrapping means.  Keep only the wrappers
        # it reaches, so that a layer is judged by the wrappers it uses.
        deps = [d for d in deps if d.label.workspace_name == target.label.workspace_name]
    transitive = [d[_ReachInfo].labels for d in deps if _ReachInfo in d]
    return [_ReachInfo(labels = depset([target.label], transitive = transitive))]

_reach_aspect = aspect(
    implementation = _reach_aspect_impl,
    attr_aspects = ["deps"],
)

def _violation(layer, allowed, label, own_repo):
    if label.workspace_name not in ("", "spindle", own_repo):
        return "external repository @%s is not allowed; wrap it in //third_party" % label.workspace_name
    top = label.package.split("/")[0]
    if top == "third_party":
        name = label.name
        for p in _THIRD_PARTY_ANY_PREFIXES:
            if name.startswith(p):
                return None
        users = _THIRD_PARTY_RESTRICTED.get(name)
        if users == None:
            return "//third_party:%s has no layering rule; add it to layering.bzl" % name
        if layer not in users:
            return "only %s may use //third_party:%s" % (", ".join(users), name)
        return None
    if top in LAYER_DEPS and top not in allowed:
        return "layer '%s' may depend only on [%s] (LAYER_DEPS in layering.bzl; docs/architecture.md)" % (
            layer,
            ", ".join(sorted([k for k in allowed if k != layer])),
        )
    return None

def _layering_test_impl(ctx):
    layer = ctx.attr.layer
    if layer not in LAYER_DEPS:
        fail("layering_test: unknown layer '%s'; valid layers: %s" % (layer, ", ".join(LAYER_DEPS.keys())))
    allowed = _closure(layer)
    violations = []
    checked = 0
    for t in ctx.attr.targets:
        for label in t[_ReachInfo].labels.to_list():
            checked += 1
            why = _violation(layer, allowed, label, ctx.label.workspace_name)
            if why:
                violations.append("%s reaches %s: %s" % (t.label, label, why))
    lines = ["#!/bin/sh"]
    if violations:
        lines.append("echo 'layering violations in //%s:' >&2" % layer)
        for v in violations:
            lines.append("echo '  %s' >&2" % v.replace("'", ""))
        lines.append("exit 1")
    else:
        lines.append("echo 'layer %s: %d targets, %d reached labels, no forbidden edge'" % (
            layer,
            len(ctx.attr.targets),
            checked,
        ))
        lines.append("exit 0")
    out = ctx.actions.declare_file(ctx.label.name + ".sh")
    ctx.actions.write(out, "\n".join(lines) + "\n", is_executable = True)
    return [DefaultInfo(executable = out)]

_layering_test = rule(
    implementation = _layering_test_impl,
    test = True,
    attrs = {
        "layer": attr.string(mandatory = True),
        "targets": attr.label_list(aspects = [_reach_aspect]),
    },
)

def layering_test(layer, name = "layering_test"):
    """Checks every C++ target declared so far in this package against LAYER_DEPS."""
    targets = [
        ":" + r["name"]
        for r in native.existing_rules().values()
        if r["kind"] in ("cc_library", "cc_binary", "cc_test")
    ]
    _layering_test(
        name = name,
        layer = layer,
        targets = targets,
        size = "small",
    )
